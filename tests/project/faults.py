"""Probe methods for the worker and Redis fault tests (tests/integration/reliability).

Each probe leaves a trace in Redis (under the cluster's prefix, like ``tests.project.counters``)
that the tests poll instead of sleeping: which worker holds calls right now, which call ran how
often, when a method that outlived its timeout finally returned.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import redis
import redis.asyncio

from channels_rpc import notify_group
from tests.project import counters
from tests.project.consumers import ProbeConsumer

#: The queue of ``fault_queued``; the tests give it a small capacity and no worker.
FAULT_QUEUE = "rpc.fault"
_sync_clients: dict[int, Any] = {}


def _sync_incr(name: str) -> None:
    """``counters.incr`` for sync methods (they run in a worker thread, without a loop)."""
    url = os.environ.get("REDIS_URL")
    if not url:
        return
    pid = os.getpid()
    if pid not in _sync_clients:
        _sync_clients[pid] = redis.Redis.from_url(url)
    _sync_clients[pid].incr(counters.key(name))


_async_clients: dict[asyncio.AbstractEventLoop, Any] = {}


async def _decr(name: str) -> None:
    url = os.environ.get("REDIS_URL")
    if not url:
        return
    loop = asyncio.get_running_loop()
    if loop not in _async_clients:
        _async_clients[loop] = redis.asyncio.Redis.from_url(url)
    await _async_clients[loop].decr(counters.key(name))


@ProbeConsumer.rpc_method()
async def fault_hold(seconds: float) -> int:
    """Hold a slot for ``seconds``: ``busy:<pid>`` counts the calls this worker holds now."""
    name = f"busy:{os.getpid()}"
    await counters.incr(name)
    try:
        await asyncio.sleep(seconds)
    finally:
        await _decr(name)
    return os.getpid()


@ProbeConsumer.rpc_method(timeout=30)
async def fault_record(token: str, seconds: float = 0.0) -> int:
    """Count one execution of ``token`` (at its start), hold ``seconds``; returns the pid."""
    await counters.hincr("fault-executions", token)
    await asyncio.sleep(seconds)
    return os.getpid()


@ProbeConsumer.rpc_method()
async def fault_record_default(token: str, seconds: float = 0.0) -> int:
    """``fault_record`` with the default timeout (5 s in the test project)."""
    await counters.hincr("fault-executions", token)
    await asyncio.sleep(seconds)
    return os.getpid()


@ProbeConsumer.rpc_method()
async def fault_raise() -> None:
    raise RuntimeError("fault probe: a method that raises")


@ProbeConsumer.rpc_method(timeout=1.0)
async def fault_slow_async(seconds: float) -> float:
    """Outlives its 1 s timeout; ``fault-slow-async-finally`` counts its finally blocks."""
    try:
        await asyncio.sleep(seconds)
    finally:
        await counters.incr("fault-slow-async-finally")
    return seconds


@ProbeConsumer.rpc_method(timeout=1.0)
def fault_slow_sync(seconds: float) -> float:
    """Outlives its 1 s timeout in a thread; ``fault-slow-sync-done`` counts its returns."""
    time.sleep(seconds)
    _sync_incr("fault-slow-sync-done")
    return seconds


@ProbeConsumer.rpc_method()
def fault_sync_pid() -> int:
    """A sync method: needs a free worker thread."""
    return os.getpid()


@ProbeConsumer.rpc_method(queue=FAULT_QUEUE, timeout=2.0)
async def fault_queued() -> int:
    return os.getpid()


@ProbeConsumer.rpc_method()
async def fault_push(group: str, method: str, n: int) -> int:
    """Push ``method({"n": n})`` to ``group`` from the worker running this call."""
    await notify_group(group, method, {"n": n})
    return n
