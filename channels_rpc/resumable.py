"""The session half of the front-end consumer: keep a session when its socket goes, resume it.

:class:`SessionHandling` is mixed into
:class:`~channels_rpc.consumer.AsyncJsonRpcWebsocketConsumer`; the session itself, between the
connection and Redis, is :class:`~channels_rpc.session.SessionLink` (docs/reference/sessions.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from channels_rpc import draining, handover
from channels_rpc.config import get_config
from channels_rpc.logsafe import protect
from channels_rpc.protocol import dumps, result_frame
from channels_rpc.session import FRAME, SessionLink, release

if TYPE_CHECKING:
    from channels_rpc.groups import Memberships
    from channels_rpc.pending import PendingCalls
    from channels_rpc.sending import Calls

__all__ = ["SessionHandling"]

logger = protect(logging.getLogger("channels_rpc"))


class SessionHandling:
    """What a connection does for its session (see the module docstring)."""

    # The consumer's.
    channel_layer: Any
    channel_name: str
    _session: SessionLink | None
    _pending: PendingCalls
    _calls: Calls
    _memberships: Memberships
    _closing: bool
    _ending: bool
    _detached: bool
    _undispatched: dict[str, Any] | None
    _channel_receive: Callable[[], Awaitable[dict[str, Any]]]

    #: While a resume waits for a handover (handover.py): what came meanwhile, held back.
    _held: list[dict[str, Any]] | None = None
    _resume_id_json = "null"

    if TYPE_CHECKING:

        async def _write(self, frame: str, *, numbered: bool = True) -> None: ...

        async def close(
            self, code: int | bool | None = None, reason: str | None = None
        ) -> None: ...

        async def dispatch(self, message: dict[str, Any]) -> None: ...

        def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]: ...

    async def _detach(self, code: Any) -> bool:
        """Keep the session past its socket, unless it ends with it; True if kept.

        A close 1000 from the client, or one the server made for cause, ends it; its calls on
        earlier channels are then cancelled here (this channel's by ``Calls.close``).
        """
        session = self._session
        if session is None or not session.active:
            return False
        if code == 1000 or self._ending:
            await release(self.channel_layer, await session.end())
            return False
        calls = [pending for pending in self._pending if not pending.is_notification]
        try:
            kept = await session.detach(calls, get_config().reply_grace)
        except Exception as exc:
            logger.warning("could not keep the session of %s: %r", self.channel_name, exc)
            kept = "unknown"
        if kept == "moved":
            # The client resumed elsewhere while this socket still looked open: the front-end
            # it resumed on waits for what this one holds.
            await self._hand_over(session)
            return True
        if kept != "detached":  # closed as a connection without a session is
            return False
        self._pending.drain("detached")  # they run on, for the session
        self._detached = True
        return True

    async def restart(self) -> None:
        """SIGTERM: keep the session, then close with 4012, so that a client that reconnects
        at once, elsewhere, finds its session detached with everything in it."""
        if self._closing:
            return
        await self._detach(draining.CLOSE_RESTARTING)
        await self.close(code=draining.CLOSE_RESTARTING, reason=draining.REASON)

    async def rpc_frame(self, message: dict[str, Any]) -> None:
        """A frame written before a resumed session's socket went, not acknowledged since."""
        session = self._session
        if session is None or session.outbox is None or message["seq"] <= session.seen:
            return  # (the client had it)
        session.outbox.add(message["seq"], message["body"])
        await self._write(message["body"], numbered=False)

    async def _resumed(self, id_json: str) -> None:
        """A resume succeeded: take the session's calls and groups, deliver what it kept, and
        answer (once the old front-end handed over, if the session was taken from one)."""
        session = self._session
        if session is None:  # (resumes are served on session connections only)
            return
        self._calls.adopted(session.adopted)
        for group in session.groups:
            self._memberships.joined_by_worker(group)
        for message in session.kept():
            await self.dispatch(message)
        self._resume_id_json = id_json
        if session.taken_from is None or session.id is None:
            await self._answer_resume(session)
            return
        self._held = []
        request = handover.request(session.id, self.channel_name)
        try:
            await self.channel_layer.enqueue(session.taken_from, request, routed=False)
        except Exception as exc:
            logger.warning("could not ask %s to hand over: %r", session.taken_from, exc)
        self._spawn(self._stop_waiting(session.id))

    async def _answer_resume(self, session: SessionLink) -> None:
        # Last: a client knows then that a call it waits on, neither answered by now nor
        # running, was lost. What was held back meanwhile follows.
        held, self._held, session.taken_from = self._held or [], None, None
        await self._write(
            result_frame(self._resume_id_json, dumps(session.answer())), numbered=False
        )
        for message in held:
            await self.dispatch(message)

    async def _stop_waiting(self, session_id: str) -> None:
        """The old front-end did not hand over in time (it is gone): answer without it."""
        await asyncio.sleep(handover.WAIT)
        if self._held is not None:
            message = handover.handed(session_id, 0, ())
            await self.channel_layer.enqueue(self.channel_name, message, routed=False)

    async def rpc_handover(self, message: dict[str, Any]) -> None:
        """The session was resumed on another connection while this socket looked open."""
        session = self._session
        if session is None or session.id != message.get("session") or self._detached:
            return
        if message.get("to") == self.channel_name:  # (our own request, sent back on)
            return
        await self._hand_over(session)
        await self.close(code=handover.CLOSE_TAKEN_OVER, reason=handover.REASON)

    async def _hand_over(self, session: SessionLink) -> None:
        """Send this connection's pending calls and unacknowledged frames to where the session
        is now (this channel's route leads there), and forget them: they are not cancelled."""
        calls = [pending for pending in self._pending if not pending.is_notification]
        records = session.records(calls, get_config().reply_grace)
        self._pending.drain("detached")
        self._detached = True  # what comes for this channel from now on is sent on too
        outbox, send = session.outbox, self.channel_layer.send
        if session.id is None or outbox is None:
            return
        # What this connection held back, waiting for a handover itself, goes on after them.
        held, self._held = self._held or [], None
        try:
            for seq, frame in outbox.unacked():
                await send(self.channel_name, {"type": FRAME, "seq": seq, "body": frame})
            await send(self.channel_name, handover.handed(session.id, outbox.seq, records))
            for message in held:
                await self.channel_layer.sessions.keep(self.channel_name, message)
        except Exception as exc:
            logger.warning("could not hand the session of %s over: %r", self.channel_name, exc)

    async def rpc_handed(self, message: dict[str, Any]) -> None:
        """The calls of the connection this one took the session from (see handover.py)."""
        session = self._session
        if session is None or session.id != message.get("session"):
            return
        if session.outbox is not None:
            session.outbox.seq = max(session.outbox.seq, int(message.get("seq", 0)))
        self._calls.adopted(session.adopt(handover.calls_of(message)))
        if self._held is not None:
            await self._answer_resume(session)

    async def _diverted(self, message: dict[str, Any]) -> bool:
        """Keep what comes for a detached session; hold back what comes while a resume waits
        for a handover (frames and the handover itself go through). True if taken."""
        if self._detached:
            await self.channel_layer.sessions.keep(self.channel_name, message)
            return True
        if self._held is not None and message["type"] not in (FRAME, handover.HANDED):
            self._held.append(message)
            return True
        return False

    # Channels sets `channel_receive` in __call__ and loses a message it took but had not yet
    # dispatched when the socket went; a session keeps it (see _detach).

    @property
    def channel_receive(self) -> Callable[[], Awaitable[dict[str, Any]]]:
        return self._receive_noted

    @channel_receive.setter
    def channel_receive(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self._channel_receive = receive

    async def _receive_noted(self) -> dict[str, Any]:
        self._undispatched = message = await self._channel_receive()
        return message
