"""Group memberships of connections: capped, and undone when the connection closes.

A method joins a group for its caller from the worker (``ctx.join_group``), while the caller's
front-end may be closing the connection. Without care, a join that lands after the close
outlives it for the layer's ``group_expiry`` (a day). So every membership made for a
connection is recorded with the connection, and closing the connection marks it closed for
as long as late joins can arrive: a join then finds the mark and is undone.

This package's Redis layer keeps the record and the mark in Redis, where every process sees
them (``join_group`` / ``leave_group`` / ``close_channel``). For other layers the record is kept
in this process, which is exact for the in-memory layer (front-end and embedded worker share
the process) and best effort for others.

A connection's side of this is :class:`Memberships`: the groups it is in, renewed before the
layer's ``group_expiry`` drops them and joined again when the layer gets Redis back (a restarted
or flushed Redis forgot them), all left at the close.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from channels_rpc._layer import expiry, group_expiry
from channels_rpc.config import get_config
from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode
from channels_rpc.logsafe import protect

__all__ = ["CLOSED", "FULL", "JOINED", "JoinResult", "Memberships", "close", "join", "leave"]

# The front-end's records, under the front-end's logger name.
logger = protect(logging.getLogger("channels_rpc"))

JoinResult = Literal["joined", "closed", "full"]
JOINED: Final = "joined"
CLOSED: Final = "closed"  # the connection closed: nothing was joined
FULL: Final = "full"  # the connection is in ``limit`` groups already: nothing was joined


async def join(layer: Any, group: str, channel: str, *, limit: int) -> JoinResult:
    """Add ``channel`` to ``group`` unless it closed or is in ``limit`` other groups."""
    native = getattr(layer, "join_group", None)
    if native is not None:
        result: JoinResult = await native(group, channel, limit=limit)
        return result
    local = _local(layer)
    result = local.admit(group, channel, limit)
    if result == JOINED:
        await layer.group_add(group, channel)
    return result


async def leave(layer: Any, group: str, channel: str) -> None:
    native = getattr(layer, "leave_group", None)
    if native is not None:
        await native(group, channel)
        return
    _local(layer).forget(group, channel)
    await layer.group_discard(group, channel)


async def close(layer: Any, channel: str, *, ttl: float) -> list[str]:
    """Leave every group joined through :func:`join`; refuse joins for ``ttl`` seconds more.

    Returns the groups left. ``ttl`` is how long a join made for this connection may still
    arrive (its longest running call); 0 when none can.
    """
    native = getattr(layer, "close_channel", None)
    if native is not None:
        left: list[str] = await native(channel, ttl=ttl)
        return left
    groups = _local(layer).close(channel, ttl)
    for group in groups:
        await layer.group_discard(group, channel)
    return groups


class Memberships:
    """The groups of one connection: joined, kept past ``group_expiry``, left at its close.

    ``static()`` gives Channels' ``groups`` of the consumer, which Channels joins and leaves
    itself: they are only renewed here. Groups joined with :meth:`join`, or by a method in a worker
    (:meth:`joined_by_worker`), are recorded with the connection, so that :meth:`close` leaves
    them all, and refuses joins made for it as long as a call of the connection may still run
    (:meth:`note_call`). ``spawn`` runs a task for as long as the connection lives; ``closing``
    tells whether it is closing (then it joins nothing again).
    """

    def __init__(
        self,
        layer: Any,
        channel_name: str,
        *,
        static: Callable[[], Collection[str]],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        closing: Callable[[], bool],
    ) -> None:
        self.layer = layer
        self.channel_name = channel_name
        self.spawn = spawn
        self.closing = closing
        self._static = static
        self._joined: set[str] = set()
        self._keeper: asyncio.Task[None] | None = None
        # How long after the close a method of this connection may still join a group for it.
        self._late_joins = 0.0

    async def join(self, group: str) -> None:
        """Join ``group``; ``JsonRpcError`` (-32010) if in ``MAX_GROUPS`` groups already."""
        limit = get_config().max_groups
        joined = await join(self.layer, group, self.channel_name, limit=limit)
        if joined == FULL:
            data = {"reason": "connection is in too many groups", "limit": limit}
            raise JsonRpcError(None, JsonRpcErrorCode.SERVER_BUSY, data)
        if joined == JOINED:
            self._remember(group)

    async def leave(self, group: str) -> None:
        await leave(self.layer, group, self.channel_name)
        self._joined.discard(group)

    def joined_by_worker(self, group: str) -> None:
        self._remember(group)
        track = getattr(self.layer, "track_group", None)
        if track is not None:  # the layer's watchdog checks the groups this process is in
            track(group, self.channel_name)

    def left_by_worker(self, group: str) -> None:
        self._joined.discard(group)
        untrack = getattr(self.layer, "untrack_group", None)
        if untrack is not None:
            untrack(group, self.channel_name)

    def keep_static(self) -> None:
        """Renew ``static`` groups too (once Channels joined them)."""
        if self._static() and self._keeper is None:
            self._keep()

    def _remember(self, group: str) -> None:
        self._joined.add(group)
        if self._keeper is None:
            self._keep()

    def _keep(self) -> None:
        self._keeper = self.spawn(self._renew_forever())
        _rejoin_after_reconnects(self)

    async def _renew_forever(self) -> None:
        # Channel layers drop members group_expiry seconds after they joined (one day by
        # default); a connection that lives longer joins again halfway through.
        interval = group_expiry(self.layer) / 2
        while True:
            await asyncio.sleep(interval)
            await self.renew()

    async def renew(self) -> None:
        # Joined groups go through join(), which keeps the layer's record of them too (a
        # restarted or flushed Redis forgot both); Channels' `groups` leave with the consumer.
        limit = get_config().max_groups
        for group in {*self._static(), *self._joined}:
            try:
                if group in self._joined:
                    await join(self.layer, group, self.channel_name, limit=limit)
                else:
                    await self.layer.group_add(group, self.channel_name)
            except Exception as exc:
                logger.warning("could not renew membership of %s: %s", group, exc)

    def note_call(self, timeout: float | None) -> None:
        """Remember how long a call of ours may run: it may join a group until it ends."""
        longest = group_expiry(self.layer) if timeout is None else timeout
        self._late_joins = max(self._late_joins, longest)

    async def close(self) -> None:
        """Leave every group, including those a method of ours joins after this moment."""
        if self._keeper is not None:
            self._keeper.cancel()
        left: list[str] = []
        try:
            left = await close(self.layer, self.channel_name, ttl=self._late_join_window())
        except Exception as exc:
            logger.warning(
                "could not close the group memberships of %s: %r", self.channel_name, exc
            )
        for group in self._joined.difference(left):  # heard of, but not recorded by the layer
            try:
                await self.layer.group_discard(group, self.channel_name)
            except Exception as exc:
                logger.warning("could not leave %s: %s", group, exc)
        self._joined.clear()

    def _late_join_window(self) -> float:
        if not self._late_joins:
            return 0.0  # nothing was ever sent to a worker: no join can come after the close
        window = expiry(self.layer) + self._late_joins + get_config().reply_grace
        return min(window, group_expiry(self.layer))


_members: weakref.WeakSet[Memberships] = weakref.WeakSet()
_watched_layers: weakref.WeakSet[Any] = weakref.WeakSet()


def _rejoin_after_reconnects(members: Memberships) -> None:
    """Have ``members`` join its groups again as soon as its layer gets Redis back."""
    _members.add(members)
    layer = members.layer
    on_reconnect = getattr(layer, "on_reconnect", None)
    if on_reconnect is not None and layer not in _watched_layers:
        _watched_layers.add(layer)
        on_reconnect(functools.partial(_rejoin_all, weakref.ref(layer)))


def _rejoin_all(layer_ref: weakref.ref[Any]) -> None:
    for members in list(_members):
        if members.layer is layer_ref() and not members.closing():
            members.spawn(members.renew())


@dataclass
class _LocalMemberships:
    """The record of one layer in this process (layers without ``join_group``)."""

    groups: dict[str, set[str]] = field(default_factory=dict)  # channel -> its groups
    closed: dict[str, float] = field(default_factory=dict)  # channel -> mark's end (monotonic)

    def admit(self, group: str, channel: str, limit: int) -> JoinResult:
        now = time.monotonic()
        for gone in [c for c, until in self.closed.items() if until <= now]:
            del self.closed[gone]
        if channel in self.closed:
            return CLOSED
        joined = self.groups.setdefault(channel, set())
        if group not in joined and len(joined) >= limit:
            return FULL
        joined.add(group)
        return JOINED

    def forget(self, group: str, channel: str) -> None:
        joined = self.groups.get(channel)
        if joined is not None:
            joined.discard(group)
            if not joined:
                del self.groups[channel]

    def close(self, channel: str, ttl: float) -> list[str]:
        if ttl > 0:
            self.closed[channel] = time.monotonic() + ttl
        return sorted(self.groups.pop(channel, ()))


_records: weakref.WeakKeyDictionary[Any, _LocalMemberships] = weakref.WeakKeyDictionary()


def _local(layer: Any) -> _LocalMemberships:
    record = _records.get(layer)
    if record is None:
        record = _records[layer] = _LocalMemberships()
    return record
