"""Endpoints of the test project: /ws/test/ (behaviour probes) and /ws/spec/ (JSON-RPC vectors)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from channels_rpc import AsyncJsonRpcWebsocketConsumer, RpcContext
from channels_rpc.decorators import permission_required
from tests.project import counters


class ProbeConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


class SpecConsumer(AsyncJsonRpcWebsocketConsumer):
    """The methods the JSON-RPC 2.0 specification's examples assume.

    Each counts its runs under the pid that ran it (``spec-pids``), so that the live vectors
    can tell a worker ran them and not daphne; the notifications also count under their name.
    """


async def _ran_here() -> None:
    await counters.hincr("spec-pids", str(os.getpid()))


@ProbeConsumer.rpc_method()
async def pid() -> int:
    return os.getpid()


@ProbeConsumer.rpc_method()
async def sleep(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@ProbeConsumer.rpc_method(timeout=1.0)
async def slow(seconds: float) -> float:
    try:
        await asyncio.sleep(seconds)
    finally:
        await counters.incr("slow-finally")
    return seconds


@ProbeConsumer.rpc_method(timeout=1.0)
def sync_slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@ProbeConsumer.rpc_method()
async def record(token: str) -> int:
    """Count one execution of ``token``; returns the pid that ran it."""
    await counters.hincr("executions", token)
    return os.getpid()


@ProbeConsumer.rpc_method()
async def hold(seconds: float) -> int:
    """Mark this worker as busy, then sleep: tests wait for the mark before killing it."""
    await counters.incr(f"started:{os.getpid()}")
    await asyncio.sleep(seconds)
    return os.getpid()


@ProbeConsumer.rpc_method(queue="rpc.narrow", timeout=1.0)
async def narrow(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@ProbeConsumer.rpc_method(timeout=30)
async def cancellable(seconds: float) -> str:
    """Count starts, completions and finally blocks: cancellation tests read the counters."""
    await counters.incr("cancellable-started")
    try:
        await asyncio.sleep(seconds)
        await counters.incr("cancellable-completed")
        return "completed"
    finally:
        await counters.incr("cancellable-finally")


@ProbeConsumer.rpc_method()
async def stream(ctx: RpcContext, steps: int) -> int:
    for step in range(steps):
        await ctx.progress(step + 1, steps, f"step {step + 1}")
        await asyncio.sleep(0.01)
    return steps


@ProbeConsumer.rpc_method()
async def join(ctx: RpcContext, group: str) -> str:
    await ctx.join_group(group)
    return group


@ProbeConsumer.rpc_method()
@permission_required("auth.view_user")
async def secret() -> str:
    return "only for users who may view users"


@SpecConsumer.rpc_method()
async def subtract(minuend: float, subtrahend: float) -> float:
    await _ran_here()
    return minuend - subtrahend


@SpecConsumer.rpc_method("sum")
async def sum_(*numbers: float) -> float:
    await _ran_here()
    return sum(numbers)


@SpecConsumer.rpc_method()
async def get_data() -> list[Any]:
    await _ran_here()
    return ["hello", 5]


@SpecConsumer.rpc_notification()
async def update(*args: Any) -> None:
    await _ran_here()
    await counters.incr("update")


@SpecConsumer.rpc_notification()
async def notify_hello(*args: Any) -> None:
    await _ran_here()
    await counters.incr("notify_hello")


@SpecConsumer.rpc_notification()
async def notify_sum(*args: Any) -> None:
    await _ran_here()
    await counters.incr("notify_sum")


@SpecConsumer.rpc_notification()
async def notify_fail() -> None:
    await _ran_here()
    raise RuntimeError("a notification that fails is logged, never answered")
