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
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = ["CLOSED", "FULL", "JOINED", "JoinResult", "close", "join", "leave"]

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
