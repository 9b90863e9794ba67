"""Probe methods for the front-end hardening tests (issue 10: sizes, notifications, groups)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

from channels_rpc import AsyncJsonRpcWebsocketConsumer, RpcContext
from tests.project import counters
from tests.project.consumers import ProbeConsumer

#: A queue no worker of the tests serves (calls on it wait until they expire).
UNSERVED_QUEUE = "rpc.unserved"


@ProbeConsumer.rpc_notification()
async def frontline_note(seconds: float) -> None:
    """A slow notification: ``frontline-note`` counts those that ran."""
    await counters.incr("frontline-note")
    await asyncio.sleep(seconds)


@ProbeConsumer.rpc_method(queue=UNSERVED_QUEUE, timeout=0)
async def frontline_forever() -> str:
    """No time limit, on a queue nobody serves: only the queue's expiry can answer it."""
    return "never"


@ProbeConsumer.rpc_method(queue=UNSERVED_QUEUE)
async def frontline_unserved(*args: Any) -> None:
    """Stays queued (nobody serves its queue): tests read what the queue holds."""


@ProbeConsumer.rpc_method()
async def frontline_scope(ctx: RpcContext) -> dict[str, Any]:
    """The scope the worker got, without the user (a lazy object)."""
    return {key: value for key, value in ctx.scope.items() if key != "user"}


@ProbeConsumer.rpc_method()
async def frontline_join(ctx: RpcContext, *groups: str) -> list[str]:
    for group in groups:
        await ctx.join_group(group)
    return list(groups)


class _Nesting(json.JSONEncoder):
    """Encodes every result as an array nested deeper than any decoder will follow."""

    def encode(self, o: Any) -> str:
        return "[" * 100_000 + "]" * 100_000


class _Observer:
    """Response middleware that looks at every answer (so the front-end decodes them)."""

    def process_response(self, response: dict[str, Any], consumer: Any) -> dict[str, Any]:
        return response


class MiddlewareConsumer(AsyncJsonRpcWebsocketConsumer):
    """/ws/middleware/: results pass through ``process_response`` middleware."""

    json_encoder_class = _Nesting
    middleware: ClassVar[list[Any]] = [_Observer()]


@MiddlewareConsumer.rpc_method()
async def deep() -> list[Any]:
    return []
