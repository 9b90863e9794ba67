"""Example methods of the reference project (they run in rpcworker processes)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from channels_rpc import JsonRpcError, JsonRpcErrorCode, RpcContext
from workers.consumers import RpcConsumer
from workers.models import Note


@RpcConsumer.rpc_method()
async def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@RpcConsumer.rpc_method()
async def subtract(minuend: float, subtrahend: float) -> float:
    return minuend - subtrahend


@RpcConsumer.rpc_method()
async def echo(value: Any) -> Any:
    """Return ``value`` unchanged."""
    return value


@RpcConsumer.rpc_method(timeout=60)
async def sleep(seconds: float) -> float:
    """Wait ``seconds`` (at most 60) without blocking the worker, then return them."""
    await asyncio.sleep(seconds)
    return seconds


@RpcConsumer.rpc_method()
def add_note(text: str) -> dict[str, Any]:
    """Store a note (sync: runs in a worker thread with the Django ORM)."""
    note = Note.objects.create(text=text)
    return {"id": note.pk, "text": note.text, "created": note.created}


@RpcConsumer.rpc_method()
def count_notes() -> int:
    count: int = Note.objects.count()
    return count


@RpcConsumer.rpc_method()
async def divide(a: float, b: float) -> float:
    """Raises for b == 0: the caller gets an error, the worker carries on."""
    if b == 0:
        raise JsonRpcError(
            None, JsonRpcErrorCode.INVALID_PARAMS, {"field": "b", "error": "must not be 0"}
        )
    return a / b


@RpcConsumer.rpc_method()
async def fail(message: str = "boom") -> None:
    """Raise an unexpected exception (answered with -32000, details kept in the logs)."""
    raise RuntimeError(message)


@RpcConsumer.rpc_method()
async def whoami(ctx: RpcContext) -> dict[str, Any]:
    """Which process ran the call, and what the worker knows about the caller."""
    return {"worker_pid": os.getpid(), "path": ctx.scope.get("path"), "rpc_id": ctx.rpc_id}


@RpcConsumer.rpc_notification()
async def log(ctx: RpcContext, message: str) -> None:
    """A notification: runs, is never answered."""
    await ctx.notify("logged", {"message": message})
