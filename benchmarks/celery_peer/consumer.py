"""What a Django team builds without this package: a Channels consumer that hands each JSON-RPC
call to a Celery task and waits for its result in a thread.

Each call of a socket runs as an asyncio task of its own, so that the calls of one socket run
concurrently, as they do with this package. Publishing and ``AsyncResult.get`` block, so both
run in a thread of asyncio's default pool (``asyncio.to_thread``). Each call in flight holds a
thread until its answer comes, but more threads do not help: with 6, 64 and 512 threads the
peer measured the same at 50 x 10, where each call costs it milliseconds of CPU (publishing,
waiting on the result's channel, and the worker's side).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from benchmarks.celery_peer.tasks import TASKS

#: Seconds a call waits for its task's result.
RESULT_TIMEOUT = 60.0


def run_task(method: str, params: Any) -> Any:
    """Publish the call as a task of ``method`` and wait for its result (blocking)."""
    args, kwargs = (params, {}) if isinstance(params, list) else ([], params)
    return TASKS[method].apply_async(args, kwargs).get(timeout=RESULT_TIMEOUT)


def error(rpc_id: Any, code: int, message: str) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": rpc_id, "error": {"code": code, "message": message}})


class CeleryRpcConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.calls: set[asyncio.Task[None]] = set()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for call in self.calls:
            call.cancel()  # the task itself runs on: Celery has no cancel for a started task

    async def receive(self, text_data: str | None = None, bytes_data: Any = None) -> None:
        try:
            request = json.loads(text_data or "")
        except ValueError:
            await self.send(text_data=error(None, -32700, "Parse error"))
            return
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            await self.send(text_data=error(None, -32600, "Invalid Request"))
            return
        call = asyncio.create_task(self.call(request))
        self.calls.add(call)
        call.add_done_callback(self.calls.discard)

    async def call(self, request: dict[str, Any]) -> None:
        rpc_id, method = request.get("id"), request["method"]
        if method not in TASKS:
            frame = error(rpc_id, -32601, "Method not found")
        else:
            params = request.get("params", [])
            try:
                result = await asyncio.to_thread(run_task, method, params)
            except Exception as exc:
                frame = error(rpc_id, -32000, repr(exc))
            else:
                frame = json.dumps({"jsonrpc": "2.0", "id": rpc_id, "result": result})
        if "id" in request:
            await self.send(text_data=frame)
