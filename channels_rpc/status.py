"""Who serves what: heartbeats of workers and front-ends in Redis, and what ``rpcstatus`` reads.

Every worker and every front-end process writes a small heartbeat every :data:`BEAT_SECONDS`
(one Redis ``SET`` with an expiry of :data:`BEAT_TTL`: a process that died vanishes on its own):
its host and pid, and, for a worker, its queues, concurrency, busy slots and the methods it can
run; for a front-end, its connections, the calls they wait on, and the methods it accepts.
:func:`snapshot` reads them with each queue's depth and oldest request, and :func:`warnings`
says what a human should look at (``manage.py rpcstatus``; docs/guides/operations.md).

Methods are named ``name@queue``: a worker and a front-end that disagree about a method's queue
disagree about the method.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from channels_rpc import registry
from channels_rpc._redis.backlog import backlog, on_redis

__all__ = [
    "BEAT_SECONDS",
    "BEAT_TTL",
    "Snapshot",
    "beat_forever",
    "ensure_frontend_beat",
    "methods_served",
    "on_redis",
    "snapshot",
    "warnings",
]

logger = logging.getLogger("channels_rpc")

#: Seconds between two heartbeats of a process; a heartbeat lives :data:`BEAT_TTL` seconds.
BEAT_SECONDS: Final = 5.0
BEAT_TTL: Final = 15
_KEY: Final = ":rpc.status:"  # after the layer's prefix, as its group and session keys


def methods_served(queues: Iterable[str] | None, default: str) -> list[str]:
    """``name@queue`` of every registered method on ``queues`` (None: on any queue)."""
    wanted = None if queues is None else set(queues)
    return sorted(
        {
            f"{spec.name}@{spec.queue or default}"
            for table in registry.live_tables()
            for spec in table.specs()
            if wanted is None or (spec.queue or default) in wanted
        }
    )


def _key(layer: Any, kind: str) -> str:
    return f"{layer.prefix}{_KEY}{kind}:{socket.gethostname()}:{os.getpid()}"


def _connection(layer: Any) -> Any:
    """Heartbeats live on one host of the layer's ring: the one ``rpc.status`` hashes to."""
    return layer.connection(layer.consistent_hash(_KEY))


async def beat_forever(layer: Any, kind: str, describe: Callable[[], dict[str, Any]]) -> None:
    """Write this process's heartbeat now and every :data:`BEAT_SECONDS` (until cancelled)."""
    key, started = _key(layer, kind), layer.clock()
    while True:
        beat = {
            "kind": kind,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": started,
            "beat": layer.clock(),
            **describe(),
        }
        try:
            await _connection(layer).set(key, json.dumps(beat), ex=BEAT_TTL)
        except Exception as exc:  # Redis away: the next beat tries again
            logger.debug("could not write the %s heartbeat: %r", kind, exc)
        await asyncio.sleep(BEAT_SECONDS)


_frontend_beats: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)


def ensure_frontend_beat(layer: Any, describe: Callable[[], dict[str, Any]]) -> None:
    """Beat for this front-end process from the running loop, once per loop (on Redis only)."""
    if not on_redis(layer):
        return
    loop = asyncio.get_running_loop()
    task = _frontend_beats.get(loop)
    if task is None or task.done():
        beat = beat_forever(layer, "frontend", describe)
        _frontend_beats[loop] = loop.create_task(beat, name="channels_rpc-status")


# -------------------------------------------------------------------------------------------
# Reading


@dataclass
class Snapshot:
    """What ``rpcstatus`` shows: queues (depth, oldest age, and depth again after a pause),
    workers and front-ends (their heartbeats, each with ``age``: seconds since it beat)."""

    now: float
    queues: dict[str, dict[str, Any]] = field(default_factory=dict)
    workers: list[dict[str, Any]] = field(default_factory=list)
    frontends: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "queues": self.queues,
            "workers": self.workers,
            "frontends": self.frontends,
            "warnings": warnings(self),
        }


async def snapshot(layer: Any, queues: Iterable[str], sample: float = 1.0) -> Snapshot:
    """Read every heartbeat and every queue (those given, and those workers serve); with
    ``sample`` > 0, each queue's depth once more ``sample`` seconds later."""
    connection = _connection(layer)
    beats = []
    async for key in connection.scan_iter(match=f"{layer.prefix}{_KEY}*", count=500):
        raw = await connection.get(key)
        if raw is not None:
            beats.append(json.loads(raw))
    found = Snapshot(now=layer.clock())
    for beat in sorted(beats, key=lambda b: (b.get("host", ""), b.get("pid", 0))):
        beat["age"] = round(max(0.0, found.now - float(beat.get("beat", found.now))), 1)
        (found.workers if beat.get("kind") == "worker" else found.frontends).append(beat)
    names = set(queues) | {q for w in found.workers for q in w.get("queues", ())}
    for queue in sorted(names):
        depth, oldest = await backlog(layer, queue)
        found.queues[queue] = {"depth": depth, "oldest": round(oldest, 1)}
    if sample > 0:
        await asyncio.sleep(sample)
        for queue, entry in found.queues.items():
            entry["depth_after"], _ = await backlog(layer, queue)
            entry["sample"] = sample
    return found


def warnings(found: Snapshot) -> list[str]:
    """What a human should look at, in plain words."""
    out = []
    serving = {q for w in found.workers for q in w.get("queues", ())}
    fe_methods = {m for f in found.frontends for m in f.get("methods", ())}
    for queue, entry in found.queues.items():
        if queue not in serving:
            out.append(
                f"queue {queue}: no live worker serves it "
                f"({entry['depth']} requests waiting, the oldest {entry['oldest']:.1f} s)"
            )
        after = entry.get("depth_after")
        if after is not None and after > entry["depth"] and queue in serving:
            out.append(
                f"queue {queue}: grew from {entry['depth']} to {after} requests in "
                f"{entry['sample']:.1f} s (its workers do not keep up)"
            )
    if found.frontends:
        for worker in found.workers:
            out += _stale(worker, fe_methods)
    return out


def _stale(worker: dict[str, Any], frontend_methods: set[str]) -> list[str]:
    """A worker whose methods on its queues are not the front-ends' (a stale deploy)."""
    queues = set(worker.get("queues", ()))
    theirs = {m for m in frontend_methods if m.rpartition("@")[2] in queues}
    mine = set(worker.get("methods", ()))
    missing, extra = sorted(theirs - mine), sorted(mine - theirs)
    if not missing and not extra:
        return []
    parts = []
    if missing:
        parts.append(f"lacks {', '.join(missing)}")
    if extra:
        parts.append(f"has {', '.join(extra)} that no front-end accepts")
    who = f"{worker.get('host')}:{worker.get('pid')}"
    return [f"worker {who}: {'; '.join(parts)} (a stale deploy? restart it)"]
