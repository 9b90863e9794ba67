"""A small WebSocket JSON-RPC client for tests: send anything, collect answers by id with times."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection


@dataclass
class Answer:
    response: dict[str, Any]
    at: float  # time.monotonic() when it arrived


@dataclass
class RpcSocket:
    ws: ClientConnection
    answers: dict[Any, Answer] = field(default_factory=dict)
    frames: list[Any] = field(default_factory=list)  # every decoded frame, in arrival order
    texts: list[str] = field(default_factory=list)  # the same frames as received
    notifications: list[dict[str, Any]] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _waiters: dict[Any, asyncio.Future[None]] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None
    _next_id: int = 0

    @classmethod
    async def connect(cls, url: str, **options: Any) -> RpcSocket:
        """Connect; ``options`` go to ``websockets.connect`` (``subprotocols``, say)."""
        ws = await websockets.connect(url, max_size=None, open_timeout=10, **options)
        sock = cls(ws)
        sock._reader = asyncio.create_task(sock._read())
        return sock

    async def _read(self) -> None:
        async for frame in self.ws:
            now = time.monotonic()
            self.texts.append(str(frame))
            decoded = json.loads(frame)
            self.frames.append(decoded)
            for item in decoded if isinstance(decoded, list) else [decoded]:
                if "method" in item:
                    self.notifications.append(item)
                    continue
                key = _key(item.get("id"))
                self.answers[key] = Answer(item, now)
                waiter = self._waiters.pop(key, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            self._arrived.set()
        for waiter in self._waiters.values():  # the socket closed: wake everyone up
            if not waiter.done():
                waiter.set_result(None)

    async def send(self, payload: Any) -> None:
        await self.ws.send(payload if isinstance(payload, (str, bytes)) else json.dumps(payload))

    async def request(self, method: str, params: Any = None, rpc_id: Any = None) -> Any:
        """Send a call and return its id (generated unless given)."""
        if rpc_id is None:
            self._next_id += 1
            rpc_id = self._next_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rpc_id}
        if params is not None:
            message["params"] = params
        await self.send(message)
        return rpc_id

    async def call(self, method: str, params: Any = None, timeout: float = 10.0) -> dict[str, Any]:
        rpc_id = await self.request(method, params)
        return (await self.wait_for([rpc_id], timeout))[rpc_id].response

    async def wait_for(self, ids: list[Any], timeout: float = 10.0) -> dict[Any, Answer]:
        """The answers to ``ids``, waiting at most ``timeout`` seconds for the missing ones."""
        loop = asyncio.get_running_loop()
        waiters = []
        for rpc_id in ids:
            key = _key(rpc_id)
            if key not in self.answers and self.open:
                waiters.append(self._waiters.setdefault(key, loop.create_future()))
        if waiters:
            await asyncio.wait(waiters, timeout=timeout)
        missing = [i for i in ids if _key(i) not in self.answers]
        if missing:
            raise AssertionError(f"{len(missing)} of {len(ids)} calls unanswered: {missing[:10]}")
        return {i: self.answers[_key(i)] for i in ids}

    async def notification(self, method: str, timeout: float = 10.0) -> dict[str, Any]:
        """The first notification ``method`` received (waiting for it if needed)."""
        deadline = time.monotonic() + timeout
        while True:
            for item in self.notifications:
                if item["method"] == method:
                    return item
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {method!r} notification arrived")
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def next_frame(self, timeout: float = 10.0) -> Any:
        count = len(self.frames)
        deadline = time.monotonic() + timeout
        while len(self.frames) == count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no frame arrived")
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return self.frames[count]

    @property
    def open(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def _key(rpc_id: Any) -> Any:
    return json.dumps(rpc_id)
