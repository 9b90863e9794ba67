"""Noticing, within seconds, that Redis lost state this process relies on; keeping its clock.

A restart shows on the next new connection (the layer's epoch marker), but ``FLUSHDB``,
``FLUSHALL`` or the eviction of a group key happen on live connections: pushes and
``rpc.cancel`` would stop reaching anyone, silently, until the memberships' renewal half a day
later. So one task per event loop asks every Redis host, every ``interval`` seconds and in one
round trip per host, whether the epoch marker still holds the value this process knows and
whether the groups in which this process holds members still exist; the same round trip reads
Redis' clock, which keeps the layer's clock offset fresh.

A group key also disappears when its last member leaves, legitimately: only groups in which
this process still holds a member are checked, a group whose membership changed during a check
is not judged by it, and a group must be found missing by two checks in a row (a method that
left a group for a connection has told the front-end by then).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any, Final

from channels_rpc._aio import cancel_and_wait, cancel_requested
from channels_rpc._redis.scripts import Script
from channels_rpc._redis.sentinel import sentinel_endpoint

__all__ = ["WATCH_INTERVAL", "Watchdog", "endpoint_of"]

logger = logging.getLogger("channels_rpc.layers")

#: Seconds between two checks.
WATCH_INTERVAL: Final = 2.0

# KEYS[1]: the epoch marker; KEYS[2..]: group keys. ARGV[1]: a new epoch, set if the marker is
# gone. Returns the marker as found (false if gone), the 1-based positions (among the group
# keys) of missing groups, and Redis' TIME. TIME comes last: Redis before 5 refuses writes
# after a non-deterministic command in a script. Runs even over maxmemory (its one write is a
# marker that Redis just lost): a check must not go blind when memory is short.
WATCH: Final = Script(
    """
local epoch = redis.call('GET', KEYS[1])
if not epoch then redis.call('SET', KEYS[1], ARGV[1]) end
local missing = {}
for i = 2, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 0 then missing[#missing + 1] = i - 1 end
end
return {epoch or false, missing, redis.call('TIME')}
""",
    flags="allow-oom",
)


@dataclass
class _Tracked:
    """This process's own channels in each group, and when each group's membership changed."""

    channels: dict[str, set[str]] = field(default_factory=dict)  # group -> our channels in it
    groups: dict[str, set[str]] = field(default_factory=dict)  # channel -> its groups
    changed: dict[str, int] = field(default_factory=dict)  # group -> generation of last change
    generation: int = 0  # counts changes

    def add(self, group: str, channel: str) -> None:
        self.channels.setdefault(group, set()).add(channel)
        self.groups.setdefault(channel, set()).add(group)
        self._change(group)

    def discard(self, group: str, channel: str) -> None:
        members = self.channels.get(group)
        if members is None or channel not in members:
            return
        members.discard(channel)
        joined = self.groups[channel]
        joined.discard(group)
        if not joined:
            del self.groups[channel]
        self._change(group)
        if not members:  # no longer ours to check
            del self.channels[group]
            del self.changed[group]

    def discard_channel(self, channel: str) -> None:
        for group in list(self.groups.get(channel, ())):
            self.discard(group, channel)

    def forget(self, group: str) -> None:
        for channel in list(self.channels.get(group, ())):
            self.discard(group, channel)

    def unchanged_since(self, group: str, generation: int) -> bool:
        """Whether ``group`` is tracked and its membership unchanged since ``generation``."""
        return group in self.changed and self.changed[group] <= generation

    def _change(self, group: str) -> None:
        self.generation += 1
        self.changed[group] = self.generation


class Watchdog:
    """The checks of one layer: what it tracks, and one checking task per event loop."""

    def __init__(self, layer: Any, interval: float = WATCH_INTERVAL) -> None:
        self.layer = layer
        self.interval = interval
        self.tracked = _Tracked()
        self._suspects: dict[str, int] = {}  # group -> generation when first found missing
        self._tasks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
            weakref.WeakKeyDictionary()
        )

    def start(self) -> None:
        """Run the checks in the running event loop, unless they run there already."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called from sync code: the next call from a loop starts it
            return
        task = self._tasks.get(loop)
        if task is None or task.done():
            self._tasks[loop] = loop.create_task(self._run(), name="channels_rpc-watchdog")

    async def stop(self) -> None:
        """Stop the checks of every loop; wait for the running loop's to end."""
        current = asyncio.get_running_loop()
        for loop, task in list(self._tasks.items()):
            if loop is current:
                await cancel_and_wait(task)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(task.cancel)
        self._tasks.clear()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception as exc:  # Redis down: reconnecting is the connections' business
                logger.debug("watchdog check failed: %r", exc)
            if cancel_requested():  # a cancel redis-py lost: stop() waits for this task
                raise asyncio.CancelledError

    async def check(self) -> list[str]:
        """One check of every host; what was found lost (also logged and acted upon)."""
        generation = self.tracked.generation
        groups = list(self.tracked.channels)
        by_host: dict[int, list[str]] = {}
        for group in groups:
            by_host.setdefault(self.layer.consistent_hash(group), []).append(group)
        results = await asyncio.gather(
            *(self._check_host(i, by_host.get(i, [])) for i in range(self.layer.ring_size))
        )
        reasons: list[str] = []
        missing: list[str] = []
        gone: list[str] = []
        for index, (reason, host_missing) in enumerate(results):
            if reason is None:
                missing += host_missing
            else:  # every group of that host went with its data
                reasons.append(reason)
                gone += by_host.get(index, [])
        confirmed = self._confirmed(missing, generation)
        reasons += [f"group {g!r} (evicted or deleted)" for g in confirmed]
        if reasons:
            self._lost(reasons, [*gone, *confirmed])
        return reasons

    def _lost(self, reasons: list[str], groups: list[str]) -> None:
        # The lost groups are no longer counted on; the joins the callbacks make count them
        # again. A membership nobody renews (a leave this process was not told of) thus raises
        # one alarm, not one every other check.
        for group in groups:
            self.tracked.forget(group)
        self._suspects.clear()
        logger.warning("Redis lost %s: joining groups again", ", ".join(reasons))
        self.layer.notify_reconnected()

    async def _check_host(self, index: int, groups: list[str]) -> tuple[str | None, list[str]]:
        """(what this host lost, if its data; the groups found missing) in one round trip."""
        connection = self.layer.connection(index)
        fresh = uuid.uuid4().hex.encode()
        keys = [self.layer._epoch_key, *(self.layer._group_key(g) for g in groups)]
        before = time.time()
        epoch, missing, server_time = await WATCH(connection, keys, [fresh])
        self.layer.redis_clock.adjust(before, time.time(), server_time)
        endpoint = endpoint_of(connection.connection_pool.connection_kwargs)
        known = self.layer._epochs.get(endpoint)
        self.layer._epochs[endpoint] = fresh if epoch is None else epoch
        reason = None
        if epoch is None:
            reason = f"its data at {endpoint} (the epoch marker is gone: FLUSHDB or FLUSHALL?)"
        elif known is not None and epoch != known:
            reason = f"its data at {endpoint} (the epoch marker changed)"
        return reason, [groups[i - 1] for i in missing]

    def _confirmed(self, missing: list[str], generation: int) -> list[str]:
        """The groups found missing twice in a row, their membership unchanged meanwhile.

        ``generation`` is the tracker's when this check began: a group that changed since (a
        leave, a join racing the check) is not judged by it.
        """
        tracked = self.tracked
        unchanged = [g for g in missing if tracked.unchanged_since(g, generation)]
        confirmed = [
            g
            for g in unchanged
            if g in self._suspects and tracked.unchanged_since(g, self._suspects[g])
        ]
        self._suspects = {g: generation for g in unchanged if g not in confirmed}
        return confirmed


def endpoint_of(attributes: Any) -> str:
    """Which Redis server and database: from a connection or a pool's connection arguments.

    For a Sentinel host, the name of the primary rather than the server that serves it now:
    its data (and the epoch marker) moves with a failover.
    """
    sentinel = sentinel_endpoint(attributes)
    if sentinel is not None:
        return sentinel

    def get(name: str, default: object) -> object:
        if isinstance(attributes, dict):
            return attributes.get(name, default)
        return getattr(attributes, name, default)

    where = ":".join(str(get(a, "")) for a in ("host", "port", "path"))
    return f"{where}/{get('db', 0)}"
