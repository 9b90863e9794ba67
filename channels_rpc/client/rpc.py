"""``RpcClient``: calls, notifications and batches over a ``Connection`` (see the package doc)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from channels_rpc.client.calls import Call, CallTable
from channels_rpc.client.connection import Connection
from channels_rpc.client.errors import ConnectionLost, check_hooks, check_url
from channels_rpc.client.frames import encode, request
from channels_rpc.client.notifications import Fanout, Handler, Notifications
from channels_rpc.client.session import Session

OnConnect = Callable[["RpcClient"], Any]


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
        sessions: bool = True,
        on_resume: Handler | None = None,
        on_session_lost: Handler | None = None,
    ) -> None:
        check_url(url)
        check_hooks(on_connect=on_connect, on_resume=on_resume, on_session_lost=on_session_lost)
        self.url = url
        self.timeout = timeout  # default per-call timeout, seconds (None: wait for the server)
        self._on_connect = on_connect
        self._calls = CallTable()
        self._session = Session(
            self._calls, enabled=sessions, on_resume=on_resume, on_lost=on_session_lost
        )
        self._fanout = Fanout()
        self._link = Connection(
            url,
            {
                "additional_headers": headers or {},
                "subprotocols": list(subprotocols),
                "open_timeout": open_timeout,
                "max_size": None,
            },
            reconnect=reconnect,
            backoff=backoff,
            greet=self._greet,
            on_frame=self._received,
            on_lost=self._lost,
        )

    @property
    def state(self) -> str:
        """The connection's: "idle", "connecting", "open", "reconnecting" or "closed", as in JS."""
        return self._link.state

    @property
    def session_id(self) -> str | None:
        """The id of the client's session (None without one): it outlives dropped sockets."""
        return self._session.id

    @property
    def resumed(self) -> bool:
        """Whether this connection resumed the session: its groups are still joined."""
        return self._session.resumed

    # -----------------------------------------------------------------------------------
    # Connection

    async def connect(self) -> RpcClient:
        """Open the connection and run ``on_connect``; raises if either fails (no retry until
        a first connection succeeded, so that a wrong URL shows at once)."""
        await self._link.open()
        return self

    async def close(self) -> None:
        """Close the connection (code 1000: the server ends the session and cancels its calls)."""
        await self._link.close()
        await self._session.close()

    async def __aenter__(self) -> RpcClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _greet(self) -> None:
        """A new socket: the session first (``rpc.resume`` is its first frame), then the hook."""
        await self._session.greet(self.call, self._link.write_now)
        if self._on_connect is not None and inspect.isawaitable(outcome := self._on_connect(self)):
            await outcome

    def _lost(self, reason: str) -> None:
        """The socket went: its calls fail, unless the session keeps them for the next one."""
        if self._link.taken_over:  # another connection resumed the session: it is theirs
            self._session.taken_over()
        self._session.detached(ConnectionLost(reason), self._link.state == "reconnecting")

    def _received(self, frame: list[dict[str, Any]]) -> None:
        """The JSON-RPC objects of one frame: answers, or notifications."""
        if not self._session.fresh(frame):
            return  # seen already
        for item in frame:
            if "method" not in item:
                self._calls.answer(item)
                continue
            params = item.get("params")
            if item["method"] == "rpc.progress" and isinstance(params, dict):
                self._calls.progress(params)
            self._fanout.deliver(item)

    async def _send(self, payload: Any, calls: Sequence[Call] = ()) -> None:
        await self._link.wait_open()
        for call in calls:
            call.sent = True  # before the send: the drop that interrupts it fails the call
        await self._link.write(encode(payload))

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
            await self._send(request(method, params, rpc_id), [call])
            return await asyncio.shield(call.future)

        try:
            return await asyncio.wait_for(send_and_wait(), timeout or self.timeout)
        except (asyncio.CancelledError, asyncio.TimeoutError):
            if self._calls.forget(rpc_id, call) and call.sent:  # sent, and not answered yet
                await self._cancel_on_server(rpc_id)
            raise
        finally:
            self._calls.forget(rpc_id, call)

    async def _cancel_on_server(self, rpc_id: Any) -> None:
        """Tell the server to stop ``rpc_id`` on the current socket: no wait for a reconnection.

        A server whose connection is gone cancels that connection's calls itself; waiting
        for a new one here would hang the caller's timeout for as long as the server is down.
        A session resumed later cancels the call then, if it still runs.
        """
        if not self._session.attached:
            self._session.abandon(rpc_id)
            return
        await self._link.write_now(encode(request("rpc.cancel", {"id": rpc_id}, None)))

    async def notify(self, method: str, params: Any = None) -> None:
        """Send a notification (no answer comes back)."""
        await self._send(request(method, params, None))

    async def batch(self, *calls: tuple[str, Any]) -> list[Any]:
        """Several calls in one frame; results in order, a ``JsonRpcError`` in place of errors."""
        if not calls:
            return []  # the server refuses an empty batch
        made = [self._new_call(None, None) for _ in calls]
        payload = [request(m, p, rpc_id) for (m, p), (rpc_id, _) in zip(calls, made, strict=True)]
        try:
            await self._send(payload, [call for _, call in made])
            return list(await asyncio.gather(*(c.future for _, c in made), return_exceptions=True))
        finally:
            for rpc_id, call in made:
                self._calls.forget(rpc_id, call)

    def _new_call(
        self, rpc_id: str | int | None, on_progress: Handler | None
    ) -> tuple[str | int, Call]:
        rpc_id = self._calls.choose_id(rpc_id)
        self._link.check_usable()
        return rpc_id, self._calls.add(rpc_id, on_progress, bound=self._link.in_greeting())

    # -----------------------------------------------------------------------------------
    # Notifications from the server

    def on(self, method: str, handler: Handler) -> None:
        """Call ``handler(params)`` (sync or async) for every notification ``method``."""
        self._fanout.on(method, handler)

    def notifications(self) -> Notifications:
        """Every notification from this moment on: ``async for note in rpc.notifications()``.

        Notifications arriving before the first iteration are kept, not lost; ``aclose()`` (or
        leaving an ``async with``) stops collecting them.
        """
        return self._fanout.iterator()
