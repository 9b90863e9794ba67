"""The session half of the front-end consumer: keep a session when its socket goes, resume it.

:class:`SessionHandling` is mixed into
:class:`~channels_rpc.consumer.AsyncJsonRpcWebsocketConsumer`; the session itself, between the
connection and Redis, is :class:`~channels_rpc.session.SessionLink` (docs/sessions.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from channels_rpc import draining
from channels_rpc.config import get_config
from channels_rpc.logsafe import protect
from channels_rpc.session import SessionLink, release

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

    if TYPE_CHECKING:

        async def _write(self, frame: str, *, numbered: bool = True) -> None: ...

        async def close(
            self, code: int | bool | None = None, reason: str | None = None
        ) -> None: ...

        async def dispatch(self, message: dict[str, Any]) -> None: ...

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
        if kept != "detached":
            # "unknown": closed as a connection without a session is. "moved": the client
            # resumed elsewhere while this socket still looked open; nobody will take the
            # answers of its calls (the resume told the client they were lost): cancelled.
            return False
        self._pending.drain()  # they run on, for the session
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
        if self._session is not None and self._session.outbox is not None:
            self._session.outbox.add(message["seq"], message["body"])
        await self._write(message["body"], numbered=False)

    async def _resumed(self, answer: str) -> None:
        """A resume was answered: take the session's calls and groups, deliver what it kept."""
        if self._session is None:  # (resumes are served on session connections only)
            return
        self._calls.adopted(self._session.adopted)
        for group in self._session.groups:
            self._memberships.joined_by_worker(group)
        for message in self._session.kept():
            await self.dispatch(message)
        # Last: a client knows then that a call it waits on, neither answered by now nor
        # running, was lost.
        await self._write(answer, numbered=False)

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
