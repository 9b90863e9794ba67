"""A JSON-RPC 2.0 WebSocket client for services, scripts and tests (extra: ``[client]``).

    async def subscribe(rpc: RpcClient) -> None:           # on every (re)connection
        await rpc.call("subscribe", ["news"])

    async with RpcClient("ws://127.0.0.1:8000/ws/rpc/", on_connect=subscribe) as rpc:
        print(await rpc.call("add", [1, 2]))              # 3
        await rpc.notify("log", {"message": "hi"})
        results = await rpc.batch(("add", [1, 2]), ("nope", None))  # [3, JsonRpcError(...)]
        rpc.on("topic.message", print)                     # or: async for n in rpc.notifications()
        report = await rpc.call("build_report", {"steps": 5}, on_progress=print, rpc_id="r-1")

An error answer raises :class:`~channels_rpc.JsonRpcError` (``code``, ``message``, ``data``).
Cancelling the task awaiting ``call()``, or its ``timeout`` passing, sends ``rpc.cancel`` for it.
``on_progress(params)`` gets the call's ``rpc.progress`` notifications (``{"id", "progress",
"total", "message"}``), in order, before ``call()`` returns; ``rpc_id`` sets the id the call is
sent with (by default the client numbers them 1, 2, 3, ...).

``on_connect(client)``, sync or async, runs after every connection, the first one included (the
counterpart of client.js's ``open`` event): the server forgets a connection's groups when it
drops, so this is where to join them again. Until it returns, other calls wait; its own calls go
out at once. If it raises on the first connection, ``connect()`` raises it; on a reconnection it
is logged and the connection carries on.

When the connection drops, pending calls fail with :class:`ConnectionLost` and the client
reconnects with backoff (unless ``reconnect=False``); calls made while it reconnects wait for
it. ``state`` is "idle", "connecting", "open", "reconnecting" or "closed". A first connection
that cannot be made raises :class:`ConnectionFailed` saying why; a call on a closed client
raises ``ConnectionLost`` at once; a call before ``connect()`` raises ``RuntimeError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

try:
    import websockets
    from websockets.asyncio.client import ClientConnection
except ImportError as exc:  # the library never needs it: only this module does
    raise ImportError(
        'channels_rpc.client needs websockets 14 or later: pip install "channels-rpc[client]"',
        name=exc.name,
    ) from exc

from channels_rpc.exceptions import JsonRpcError

__all__ = ["ConnectionFailed", "ConnectionLost", "Notifications", "RpcClient"]

logger = logging.getLogger("channels_rpc.client")

Handler = Callable[[Any], Any]
OnConnect = Callable[["RpcClient"], Any]

NOT_CONNECTED = (
    "the client is not connected: use `async with RpcClient(url) as rpc:` "
    "or `await rpc.connect()` first"
)

# While an on_connect hook runs, its context (and that of tasks it starts) holds a token of this
# greeting: calls made there skip the wait that holds every other call until the hook is done.
_GREETING: ContextVar[object | None] = ContextVar("channels_rpc_greeting", default=None)


class ConnectionLost(ConnectionError):
    """The connection dropped before the call was answered (it may or may not have run)."""


class ConnectionFailed(ConnectionError):
    """The first connection could not be opened: the message says why (refused, HTTP status)."""


@dataclass
class _Call:
    future: asyncio.Future[Any]
    on_progress: Handler | None = None
    sent: bool = False  # a call not sent yet cannot have run: a drop leaves it queued


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
        on_connect: OnConnect | None = None,
    ) -> None:
        _check_url(url)
        if on_connect is not None and not callable(on_connect):
            raise TypeError(f"on_connect must be callable, not {on_connect!r}")
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
        self._on_connect = on_connect
        self._ids = itertools.count(1)
        self._pending: dict[str, _Call] = {}
        self._handlers: dict[str, list[Handler]] = {}
        self._queues: list[asyncio.Queue[dict[str, Any]]] = []
        self._ws: ClientConnection | None = None
        self._state = "idle"
        self._closed_reason = "the client was closed"
        self._ready = asyncio.Event()  # set while "open", and once "closed" (to wake waiters)
        self._greeting: object | None = None  # the token of the hook running now, if any
        self._runner: asyncio.Task[None] | None = None

    @property
    def state(self) -> str:
        """The connection's: "idle", "connecting", "open", "reconnecting" or "closed", as in JS."""
        return self._state

    # -----------------------------------------------------------------------------------
    # Connection

    async def connect(self) -> RpcClient:
        """Open the connection and run ``on_connect``; raises if either fails (no retry until
        a first connection succeeded, so that a wrong URL shows at once)."""
        if self._state not in ("idle", "closed"):
            raise RuntimeError(f"the client is already {self._state}")
        self._state = "connecting"
        self._ready.clear()
        try:
            ws = await websockets.connect(self.url, **self._connect_options)
        except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake) as exc:
            self._set_closed(f"could not connect to {self.url}")
            raise ConnectionFailed(f"could not connect to {self.url}: {_explain(exc)}") from exc
        self._ws = ws  # close() closes it, even before the runner starts
        greeted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._runner = asyncio.create_task(self._run(ws, greeted), name="channels_rpc-client")
        try:
            await greeted
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        self._set_closed("the client was closed")
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

    def _set_closed(self, reason: str) -> None:
        self._state, self._closed_reason = "closed", reason
        self._ready.set()  # calls waiting for a connection wake up and raise ConnectionLost

    async def _run(self, ws: ClientConnection, greeted: asyncio.Future[None]) -> None:
        """One connection after another: read it, greet it, and when it drops, reconnect."""
        try:
            while await self._serve(ws, greeted) and self._state != "closed":
                ws = await self._reopen()
            # Ends when closed, or when on_connect failed on the first connection: connect()
            # then closes the client and raises it.
        except Exception:
            logger.exception("the client of %s stopped", self.url)
        finally:
            if self._state != "closed":
                self._set_closed("the client stopped")
            self._fail_pending(ConnectionLost(self._closed_reason))
            if not greeted.done():
                greeted.set_exception(ConnectionLost(self._closed_reason))

    async def _serve(self, ws: ClientConnection, greeted: asyncio.Future[None]) -> bool:
        """Run ``on_connect``, then read ``ws`` until it closes; false if the hook failed first."""
        self._ws = ws
        reader = asyncio.create_task(self._read(ws), name="channels_rpc-client-reader")
        try:
            try:
                await self._greet(reader)
            except Exception as exc:
                if not greeted.done():
                    greeted.set_exception(exc)
                    return False
                logger.exception("on_connect failed after reconnecting to %s", self.url)
            if not greeted.done():
                greeted.set_result(None)
            await reader
            return True
        finally:
            reader.cancel()

    async def _greet(self, reader: asyncio.Task[None]) -> None:
        if self._on_connect is not None:
            self._greeting = object()
            token = _GREETING.set(self._greeting)
            try:
                outcome = self._on_connect(self)
                if inspect.isawaitable(outcome):
                    await outcome
            finally:
                _GREETING.reset(token)
                self._greeting = None
        if not reader.done():  # a connection that dropped meanwhile is not open
            self._state = "open"
            self._ready.set()

    async def _reopen(self) -> ClientConnection:
        delay = self._backoff[0]
        while True:
            await asyncio.sleep(delay * (0.5 + random.random()))  # jitter: no herd
            try:
                return await websockets.connect(self.url, **self._connect_options)
            except (OSError, websockets.InvalidHandshake, asyncio.TimeoutError) as exc:
                logger.info("reconnecting to %s failed (%s)", self.url, _explain(exc))
                delay = min(delay * 2, self._backoff[1])

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for frame in ws:
                for item in _items(frame):
                    self._dispatch(item)
        if self._state == "closed":
            reason = self._closed_reason
        elif self._reconnect:
            self._state, reason = "reconnecting", "the connection dropped"
            self._ready.clear()  # calls made from now on wait for the next connection
        else:
            self._set_closed(reason := "the connection dropped (reconnect=False)")
        self._fail_pending(ConnectionLost(reason))

    def _dispatch(self, item: dict[str, Any]) -> None:
        if "method" in item:  # a notification from the server
            self._notified(item)
            return
        call = self._pending.pop(_key(item.get("id")), None)
        if call is None or call.future.done():
            return
        if isinstance(error := item.get("error"), dict):
            call.future.set_exception(
                JsonRpcError(
                    item.get("id"), error["code"], error.get("data"), message=error["message"]
                )
            )
        else:
            call.future.set_result(item.get("result"))

    def _notified(self, item: dict[str, Any]) -> None:
        params = item.get("params")
        if item["method"] == "rpc.progress" and isinstance(params, dict):
            call = self._pending.get(_key(params.get("id")))
            if call is not None and call.on_progress is not None:
                self._run_handler(call.on_progress, params)
        for handler in self._handlers.get(item["method"], []):
            self._run_handler(handler, params)
        for queue in self._queues:
            queue.put_nowait(item)

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
        """Fail the calls sent; the others wait in ``_send``, for a connection or to raise."""
        for key, call in list(self._pending.items()):
            if call.sent:
                del self._pending[key]
                if not call.future.done():
                    call.future.set_exception(error)

    def _check_usable(self) -> None:
        if self._state == "idle":
            raise RuntimeError(NOT_CONNECTED)
        if self._state == "closed":
            raise ConnectionLost(self._closed_reason)

    async def _send(self, payload: Any, calls: Sequence[_Call] = ()) -> None:
        self._check_usable()
        greeting = _GREETING.get()
        if greeting is None or greeting is not self._greeting:  # on_connect's calls go at once
            while not self._ready.is_set():
                await self._ready.wait()
            self._check_usable()
        assert self._ws is not None
        for call in calls:
            call.sent = True  # before the send: the drop that interrupts it fails the call
        try:
            await self._ws.send(json.dumps(payload, separators=(",", ":")))
        except websockets.ConnectionClosed as exc:  # dropped before the reader noticed
            raise ConnectionLost("the connection dropped") from exc

    # -----------------------------------------------------------------------------------
    # Calls

    async def call(
        self,
        method: str,
        params: Any = None,
        *,
        timeout: float | None = None,
        on_progress: Handler | None = None,
        rpc_id: str | int | None = None,
    ) -> Any:
        """Call ``method`` and return its result (raises ``JsonRpcError`` for an error answer).

        Cancelling the awaiting task, or ``timeout`` passing, sends ``rpc.cancel`` for the call.
        ``on_progress(params)`` (sync or async) gets each ``rpc.progress`` notification of this
        call; ``rpc_id`` is the id to send (default: the next free number).
        """
        rpc_id, call = self._new_call(rpc_id, on_progress)

        async def send_and_wait() -> Any:
            await self._send(_request(method, params, rpc_id), [call])
            return await asyncio.shield(call.future)

        try:
            return await asyncio.wait_for(send_and_wait(), timeout or self.timeout)
        except (asyncio.CancelledError, asyncio.TimeoutError):
            if self._forget(rpc_id, call) and call.sent:  # sent, and not answered yet
                await self._cancel_on_server(rpc_id)
            raise
        finally:
            self._forget(rpc_id, call)

    async def _cancel_on_server(self, rpc_id: Any) -> None:
        """Tell the server to stop ``rpc_id`` on the current socket: no wait for a reconnection.

        A server whose connection is gone cancels that connection's calls itself; waiting
        for a new one here would hang the caller's timeout for as long as the server is down.
        """
        if self._ws is None:
            return
        with contextlib.suppress(Exception):
            cancel = _request("rpc.cancel", {"id": rpc_id}, None)
            await asyncio.shield(self._ws.send(json.dumps(cancel, separators=(",", ":"))))

    async def notify(self, method: str, params: Any = None) -> None:
        """Send a notification (no answer comes back)."""
        await self._send(_request(method, params, None))

    async def batch(self, *calls: tuple[str, Any]) -> list[Any]:
        """Several calls in one frame; results in order, a ``JsonRpcError`` in place of errors."""
        if not calls:
            return []  # the server refuses an empty batch
        made = [self._new_call(None, None) for _ in calls]
        payload = [_request(m, p, rpc_id) for (m, p), (rpc_id, _) in zip(calls, made, strict=True)]
        try:
            await self._send(payload, [call for _, call in made])
            return list(await asyncio.gather(*(c.future for _, c in made), return_exceptions=True))
        finally:
            for rpc_id, call in made:
                self._forget(rpc_id, call)

    def _new_call(
        self, rpc_id: str | int | None, on_progress: Handler | None
    ) -> tuple[str | int, _Call]:
        if rpc_id is None:
            rpc_id = next(i for i in self._ids if _key(i) not in self._pending)
        elif isinstance(rpc_id, bool) or not isinstance(rpc_id, (str, int)):
            raise TypeError(f"rpc_id must be a str or an int, not {rpc_id!r}")
        elif _key(rpc_id) in self._pending:
            raise ValueError(f"rpc_id {rpc_id!r} is already used by a pending call")
        self._check_usable()
        call = _Call(asyncio.get_running_loop().create_future(), on_progress)
        self._pending[_key(rpc_id)] = call
        return rpc_id, call

    def _forget(self, rpc_id: Any, call: _Call) -> bool:
        """Drop ``call`` from the pending ones (not another call reusing its id); true if it was."""
        if self._pending.get(_key(rpc_id)) is call:
            del self._pending[_key(rpc_id)]
            return True
        return False

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


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(
            f"{url!r} is not a WebSocket URL: it starts with ws:// or wss:// "
            "(http:// becomes ws://, https:// becomes wss://) and names a host"
        )


# Why a WebSocket handshake is refused, by HTTP status, in a Channels deployment.
_STATUS_HINTS = {
    403: "the server refused the connection (an origin check such as "
    "AllowedHostsOriginValidator, missing authentication, or the consumer closed it in connect)",
    404: "there is no WebSocket endpoint at this path",
    500: "is the path right? Channels' URLRouter fails this way when no route matches it",
}


def _explain(exc: BaseException) -> str:
    """What went wrong opening a connection, in words a newcomer can act on."""
    if isinstance(exc, websockets.InvalidStatus):
        status = exc.response.status_code
        hint = _STATUS_HINTS.get(status, "the server refused the WebSocket handshake")
        return f"HTTP {status}: {hint}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: is the server running, on this host and port?"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "no answer to the WebSocket handshake within open_timeout"
    return str(exc) or type(exc).__name__


def _items(frame: str | bytes) -> Iterator[dict[str, Any]]:
    """The JSON-RPC objects of one frame (a batch is several); anything else is logged."""
    try:
        message = json.loads(frame)
    except ValueError:
        logger.warning("ignoring a frame that is not JSON: %.200r", frame)
        return
    for item in message if isinstance(message, list) else [message]:
        if isinstance(item, dict):
            yield item
        else:
            logger.warning("ignoring a JSON value that is not an object: %.200r", item)


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
