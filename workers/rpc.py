"""Example methods of the reference project (they run in rpcworker processes).

An installed app's ``rpc`` module is imported on startup by every process (daphne and each
worker), so these exist wherever a call is checked or run; nothing else needs to import it.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from channels_rpc import JsonRpcError, JsonRpcErrorCode, RpcContext, notify_group
from workers.consumers import RpcConsumer
from workers.models import Note

_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,64}")


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


@RpcConsumer.rpc_method(timeout=120)
async def build_report(ctx: RpcContext, steps: int = 10, delay: float = 0.3) -> dict[str, Any]:
    """A long call that streams its progress (rpc.progress) and can be cancelled (rpc.cancel)."""
    for step in range(1, steps + 1):
        await asyncio.sleep(delay)
        await ctx.progress(step, steps, f"section {step} of {steps}")
    return {"sections": steps, "worker_pid": os.getpid()}


@RpcConsumer.rpc_method(timeout=60)
def count_to(ctx: RpcContext, n: int) -> int:
    """A sync loop that stops early once the call is cancelled or times out."""
    count = 0
    while count < n and not ctx.cancelled:
        time.sleep(0.01)
        count += 1
    return count


def _topic_group(topic: str) -> str:
    if not isinstance(topic, str) or not _TOPIC.fullmatch(topic):
        raise JsonRpcError(
            None,
            JsonRpcErrorCode.INVALID_PARAMS,
            {"field": "topic", "error": "1-64 of A-Z a-z 0-9 _ -"},
        )
    return f"topic.{topic}"


@RpcConsumer.rpc_method()
async def subscribe(ctx: RpcContext, topic: str) -> str:
    """Receive `topic.message` notifications for ``topic`` until unsubscribe or disconnect."""
    await ctx.join_group(_topic_group(topic))
    return topic


@RpcConsumer.rpc_method()
async def unsubscribe(ctx: RpcContext, topic: str) -> str:
    await ctx.leave_group(_topic_group(topic))
    return topic


@RpcConsumer.rpc_method()
async def publish(topic: str, message: Any) -> bool:
    """Push ``message`` to every subscriber of ``topic``, on any front-end."""
    params = {"topic": topic, "message": message, "worker_pid": os.getpid()}
    await notify_group(_topic_group(topic), "topic.message", params)
    return True


# Typed params: annotated params are validated (and converted) before a call is enqueued, and
# rpc.discover and `manage.py rpcschema` publish the same schemas.


@dataclass
class Point:
    x: float
    y: float


@RpcConsumer.rpc_method("geometry.distance")
async def distance(a: Point, b: Point) -> float:
    """The distance between two points (each arrives as a Point, not a dict)."""
    return float(((a.x - b.x) ** 2 + (a.y - b.y) ** 2) ** 0.5)


@dataclass
class Report:
    title: str
    steps: int
    format: Literal["text", "html"] = "text"
    sections: list[str] = field(default_factory=list)


@RpcConsumer.rpc_method("reports.build", timeout=120)
async def build(
    ctx: RpcContext, steps: int = 3, format: Literal["text", "html"] = "text", delay: float = 0.0
) -> Report:
    """Build a report of ``steps`` sections, streaming progress; the result is a Report."""
    report = Report(title=f"Report of {steps} steps", steps=steps, format=format)
    for step in range(1, steps + 1):
        await asyncio.sleep(delay)
        report.sections.append(f"section {step} of {steps}")
        await ctx.progress(step, steps, report.sections[-1])
    return report
