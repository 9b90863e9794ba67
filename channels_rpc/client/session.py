"""The client's side of sessions (docs/reference/sessions.md): open one on the first socket,
keep the highest ``seq`` seen and acknowledge it now and then, and resume it first thing on every
new socket, so that the calls pending when a connection dropped are answered after the reconnection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from channels_rpc.client.calls import CallTable
from channels_rpc.client.errors import SessionLost
from channels_rpc.client.frames import encode, key, request
from channels_rpc.client.notifications import Handler, run_handler
from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode

logger = logging.getLogger("channels_rpc.client")

#: Seconds between two acknowledgements, at most (the server forgets the frames acknowledged).
ACK_INTERVAL = 1.0

Write = Callable[[str], Awaitable[None]]  # a frame on the current socket, errors dropped


class Call(Protocol):  # RpcClient.call, on the socket being greeted
    def __call__(self, method: str, params: Any = None, *, rpc_id: str | int) -> Awaitable[Any]: ...


class Session:
    """The session of one client, across its sockets; ``id`` None while it has none."""

    def __init__(
        self,
        calls: CallTable,
        *,
        enabled: bool,
        on_resume: Handler | None = None,
        on_lost: Handler | None = None,
        ack_interval: float = ACK_INTERVAL,
    ) -> None:
        self.enabled = enabled  # off too once the server says it has no sessions
        self.id: str | None = None
        self.window: float | None = None
        self.highest = 0  # the highest seq seen: what the client acknowledges and resumes from
        self.ack_interval = ack_interval
        self._calls = calls
        self._on_resume = on_resume
        self._on_lost = on_lost
        self.attached = False  # this socket is greeted: it may carry any frame now
        self.resumed = False  # this socket resumed the session (its groups are still joined)
        self._abandoned: set[str] = set()  # calls given up while detached: cancelled on resume
        self._arrived = asyncio.Event()  # a frame with a new seq came
        self._acks: asyncio.Task[None] | None = None

    def fresh(self, frame: list[dict[str, Any]]) -> bool:
        """Note the seq of a frame (each element of a batch carries the frame's); false for a
        frame seen already (a resume delivers each once: this is the defence if it did not)."""
        seq = frame[0].get("seq") if frame else None
        if not isinstance(seq, int) or isinstance(seq, bool):
            return True  # no session, or the resume's answer
        if seq <= self.highest:
            return False
        self.highest = seq
        self._arrived.set()
        return True

    async def greet(self, call: Call, write: Write) -> None:
        """First thing on a new socket: resume the session held, else open one."""
        acked, self.resumed = self.highest, False
        if self.enabled and (self.id is None or not await self._resume(call, write)):
            acked = 0
            if self.enabled:
                await self._open(call)
        if self.id is not None:
            self._acks = asyncio.create_task(self._acknowledge(write, acked), name="rpc-acks")
        self.attached = True
        self._abandoned.clear()

    def abandon(self, rpc_id: Any) -> None:
        """A call given up while detached: cancelled after the resume if it still runs (the
        first frame of the next socket must be the resume)."""
        self._abandoned.add(key(rpc_id))

    def detached(self, error: Exception, reconnecting: bool) -> None:
        """The socket went: nothing goes out until the session is resumed on the next. Its calls
        fail with ``error``, unless the session keeps them for the next socket (the calls not
        sent yet wait for it either way)."""
        self.attached = False
        if self._acks is not None:
            self._acks.cancel()
        self._calls.fail_sent(error, bound_only=reconnecting and self.id is not None)

    def taken_over(self) -> None:
        """The server closed the socket with 4013: another connection resumed the session. Its
        calls are lost to this client, which opens a new session rather than take it back."""
        if self.id is not None:
            self._lost("taken over")

    async def close(self) -> None:
        if self._acks is not None:
            self._acks.cancel()
            await asyncio.gather(self._acks, return_exceptions=True)
            self._acks = None

    async def _open(self, call: Call) -> None:
        self.id, self.highest = None, 0  # a new session numbers from 1
        try:
            result = await call("rpc.session", rpc_id=self._calls.own_id())
        except JsonRpcError as exc:
            if exc.code == JsonRpcErrorCode.METHOD_NOT_FOUND:
                self.enabled = False  # a server without sessions (the in-memory layer)
            else:  # tried again on the next connection
                logger.warning("could not open a session, going on without one: %s", exc)
            return
        if isinstance(result, dict) and isinstance(result.get("session"), str):
            self.id, self.window = result["session"], result.get("window")
        else:
            logger.warning("ignoring a session answer without a session id: %.200r", result)

    async def _resume(self, call: Call, write: Write) -> bool:
        """Resume the session; false if it is lost (its pending calls then fail)."""
        try:
            params = {"session": self.id, "seq": self.highest}
            result = await call("rpc.resume", params, rpc_id=self._calls.own_id())
        except JsonRpcError as exc:
            if exc.code == JsonRpcErrorCode.METHOD_NOT_FOUND:
                self.enabled = False
            reason = exc.data.get("reason") if isinstance(exc.data, dict) else None
            self._lost(str(reason or exc.message or f"error {exc.code}"))
            return False
        result = result if isinstance(result, dict) else {}
        running = result.get("running")
        running = running if isinstance(running, list) else []
        self.window = result.get("window", self.window)
        # The frames kept for the session came before the answer, each handled in turn: a call
        # still waiting, and not running, was lost (its socket went before the server knew it).
        lost = SessionLost("not received", "the resumed session did not have the call")
        self._calls.fail_keys(self._calls.unheard(running), lost)
        for rpc_id in running:  # given up while disconnected (a timeout, a cancelled task)
            if key(rpc_id) in self._abandoned:
                await write(encode(request("rpc.cancel", {"id": rpc_id}, None)))
        self.resumed = True
        if self._on_resume is not None:
            run_handler(self._on_resume, result)
        return True

    def _lost(self, reason: str) -> None:
        logger.warning("session %s lost: %s", self.id, reason)
        self.id = None
        self._calls.fail_sent(SessionLost(reason))
        if self._on_lost is not None:
            run_handler(self._on_lost, reason)

    async def _acknowledge(self, write: Write, acked: int) -> None:
        """Acknowledge the highest seq at most once an ``ack_interval``, while frames come."""
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            if self.highest > acked:
                acked = self.highest
                await write(encode(request("rpc.ack", {"seq": acked}, None)))
                await asyncio.sleep(self.ack_interval)
