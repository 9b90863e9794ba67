"""What the benchmarks call, the same on every target (see upstream_app/asgi.py and
celery_peer/tasks.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from channels_rpc import AsyncJsonRpcWebsocketConsumer, RpcContext


class BenchConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


@BenchConsumer.rpc_method()
async def ping() -> str:
    return "pong"


@BenchConsumer.rpc_method()
async def echo(value: Any) -> Any:
    return value


@BenchConsumer.rpc_method()
async def add(a: float, b: float) -> float:
    return a + b


@BenchConsumer.rpc_method()
async def add_untyped(a, b):  # type: ignore[no-untyped-def]  # add without its validation
    return a + b


@BenchConsumer.rpc_method()
async def sleep(ms: float) -> float:
    await asyncio.sleep(ms / 1000)
    return ms


@BenchConsumer.rpc_method()
def cpu(ms: float) -> float:
    """Burn ``ms`` milliseconds of CPU (a sync method: it runs in a worker thread)."""
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass
    return ms


# The same work on a queue of its own, served by its own worker: how a project keeps heavy
# methods from delaying light ones (scenario d, second row).
BenchConsumer.rpc_method("cpu_apart", queue="rpc.cpu")(cpu)


@BenchConsumer.rpc_method()
async def join(ctx: RpcContext, group: str) -> str:
    """Join ``group`` (the sessions' memory benchmark pushes to it)."""
    await ctx.join_group(group)
    return group
