"""A JSON-RPC 2.0 WebSocket client for services, scripts and tests (extra: ``[client]``).

    async with RpcClient("ws://127.0.0.1:8000/ws/rpc/") as rpc:
        print(await rpc.call("add", [1, 2]))              # 3
        await rpc.notify("log", {"message": "hi"})
        results = await rpc.batch(("add", [1, 2]), ("nope", None))  # [3, JsonRpcError(...)]
        rpc.on("topic.message", print)                     # or: async for n in rpc.notifications()

An error answer raises :class:`~channels_rpc.JsonRpcError` (``code``, ``message``, ``data``).
Cancelling the task awaiting ``call()`` sends ``rpc.cancel`` for that call. When the connection
drops, pending calls fail with :class:`ConnectionLost` and the client reconnects with backoff
(unless ``reconnect=False``); calls made while it reconnects wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from channels_rpc.exceptions import JsonRpcError

__all__ = ["ConnectionLost", "Notifications", "RpcClient"]

logger = logging.getLogger("channels_rpc.client")

Handler = Callable[[Any], Any]


class ConnectionLost(ConnectionError):
    """The connection dropped before the call was answered (it may or may not have run)."""


class RpcClient:
    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        subprotocols: Sequence[str] = ("jsonrpc",),
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.2, 10.0),
        open_timeout: float = 10.0,
        timeout: float | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout  # default per-call timeout, seconds (None: wait for the server)
        self._connect_options: dict[str, Any] = {
            "additional_headers": headers or {},
            "subprotocols": list(subprotocols),
            "open_timeout": open_timeout,
            "max_size": None,
        }
        self._reconnect = reconnect
        self._backoff = backoff
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[Any]] = {}
        self._handlers: dict[str, list[Handler]] = {}
        self._queues: list[asyncio.Queue[dict[str, Any]]] = []
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._closing = False

    # -----------------------------------------------------------------------------------
    # Connection

    async def connect(self) -> RpcClient:
        """Open the connection (raises if the first attempt fails); keeps it open after."""
        self._ws = await websockets.connect(self.url, **self._connect_options)
        self._connected.set()
        self._runner = asyncio.create_task(self._run(), name="channels_rpc-client")
        return self

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            # A connection the server dropped has nothing left to close.
            with contextlib.suppress(websockets.ConnectionClosed):
                await self._ws.close()
        if self._runner is not None:
            self._runner.cancel()  # it may be waiting to reconnect to a server that is gone
            await asyncio.gather(self._runner, return_exceptions=True)
        self._fail_pending(ConnectionLost("the client was closed"))

    async def __aenter__(self) -> RpcClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self) -> None:
        delay = self._backoff[0]
        while True:
            assert self._ws is not None
            with contextlib.suppress(websockets.ConnectionClosed):
                await self._read(self._ws)
            self._connected.clear()
            self._fail_pending(ConnectionLost("the connection dropped"))
            if self._closing or not self._reconnect:
                return
            while not self._closing:
                await asyncio.sleep(delay * (0.5 + random.random()))  # jitter: no herd
                try:
                    self._ws = await websockets.connect(self.url, **self._connect_options)
                except (OSError, websockets.InvalidHandshake, asyncio.TimeoutError) as exc:
                    logger.info("reconnecting to %s failed (%s)", self.url, exc)
                    delay = min(delay * 2, self._backoff[1])
                    continue
                delay = self._backoff[0]
                self._connected.set()
                break

    async def _read(self, ws: ClientConnection) -> None:
        async for frame in ws:
            message = json.loads(frame)
            for item in message if isinstance(message, list) else [message]:
                self._dispatch(item)

    def _dispatch(self, item: dict[str, Any]) -> None:
        if "method" in item:  # a notification from the server
            for handler in self._handlers.get(item["method"], []):
                self._run_handler(handler, item.get("params"))
            for queue in self._queues:
                queue.put_nowait(item)
            return
        future = self._pending.pop(_key(item.get("id")), None)
        if future is None or future.done():
            return
        if "error" in item:
            error = item["error"]
            future.set_exception(
                JsonRpcError(
                    item.get("id"), error["code"], error.get("data"), message=error["message"]
                )
            )
        else:
            future.set_result(item.get("result"))

    def _run_handler(self, handler: Handler, params: Any) -> None:
        try:
            outcome = handler(params)
        except Exception:
            logger.exception("notification handler %r raised", handler)
            return
        if asyncio.iscoroutine(outcome):
            task = asyncio.ensure_future(outcome)
            task.add_done_callback(_log_failure)

    def _fail_pending(self, error: Exception) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    async def _send(self, payload: Any) -> None:
        await self._connected.wait()
        assert self._ws is not None
        try:
            await self._ws.send(json.dumps(payload, separators=(",", ":")))
        except websockets.ConnectionClosed as exc:  # dropped before the reader noticed
            raise ConnectionLost("the connection dropped") from exc

    # -----------------------------------------------------------------------------------
    # Calls

    async def call(self, method: str, params: Any = None, *, timeout: float | None = None) -> Any:
        """Call ``method`` and return its result (raises ``JsonRpcError`` for an error answer).

        Cancelling the awaiting task, or ``timeout`` passing, sends ``rpc.cancel`` for the call.
        """
        rpc_id, future = self._new_call()

        async def send_and_wait() -> Any:
            await self._send(_request(method, params, rpc_id))
            return await asyncio.shield(future)

        try:
            return await asyncio.wait_for(send_and_wait(), timeout or self.timeout)
        except (asyncio.CancelledError, asyncio.TimeoutError):
            if self._pending.pop(_key(rpc_id), None) is not None:
                await self._cancel_on_server(rpc_id)
            raise

    async def _cancel_on_server(self, rpc_id: Any) -> None:
        """Tell the server to stop ``rpc_id``, if connected: no wait for a reconnection.

        A server whose connection is gone cancels that connection's calls itself; waiting
        for a new one here would hang the caller's timeout for as long as the server is down.
        """
        if not self._connected.is_set() or self._ws is None:
            return
        with contextlib.suppress(Exception):
            cancel = _request("rpc.cancel", {"id": rpc_id}, None)
            await asyncio.shield(self._ws.send(json.dumps(cancel, separators=(",", ":"))))

    async def notify(self, method: str, params: Any = None) -> None:
        """Send a notification (no answer comes back)."""
        await self._send(_request(method, params, None))

    async def batch(self, *calls: tuple[str, Any]) -> list[Any]:
        """Several calls in one frame; results in order, a ``JsonRpcError`` in place of errors."""
        futures = []
        payload = []
        for method, params in calls:
            rpc_id, future = self._new_call()
            futures.append(future)
            payload.append(_request(method, params, rpc_id))
        await self._send(payload)
        return list(await asyncio.gather(*futures, return_exceptions=True))

    def _new_call(self) -> tuple[int, asyncio.Future[Any]]:
        rpc_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[_key(rpc_id)] = future
        return rpc_id, future

    # -----------------------------------------------------------------------------------
    # Notifications from the server

    def on(self, method: str, handler: Handler) -> None:
        """Call ``handler(params)`` (sync or async) for every notification ``method``."""
        self._handlers.setdefault(method, []).append(handler)

    def notifications(self) -> Notifications:
        """Every notification from this moment on: ``async for note in rpc.notifications()``.

        Notifications arriving before the first iteration are kept, not lost; ``aclose()`` (or
        leaving an ``async with``) stops collecting them.
        """
        return Notifications(self._queues)


class Notifications:
    """An async iterator of ``{"jsonrpc", "method", "params"}`` dicts, collecting from creation."""

    def __init__(self, registry: list[asyncio.Queue[dict[str, Any]]]) -> None:
        self._registry = registry
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        registry.append(self._queue)

    def __aiter__(self) -> Notifications:
        return self

    async def __anext__(self) -> dict[str, Any]:
        return await self._queue.get()

    async def aclose(self) -> None:
        if self._queue in self._registry:
            self._registry.remove(self._queue)

    async def __aenter__(self) -> Notifications:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _request(method: str, params: Any, rpc_id: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    if rpc_id is not None:
        message["id"] = rpc_id
    return message


def _key(rpc_id: Any) -> str:
    return json.dumps(rpc_id)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("notification handler failed", exc_info=task.exception())
