"""Flow control on one WebSocket connection: what a client may make the front-end hold.

Channels dispatches one message at a time: while the consumer awaits the channel layer, nothing
takes the client's frames, and daphne queues every frame it reads for the application, without
limit. So an :class:`Inbox` looks at each frame as it arrives: on daphne, as daphne queues it
(its queue's ``put_nowait`` is the inbox's, which costs no task and no extra hop per frame);
elsewhere, from a reader task that takes frames off the ASGI ``receive`` and hands them to the
dispatcher in order through a queue of its own. On arrival it applies the rate limit (refused:
the connection is closed at once) and counts the bytes received but not yet dispatched; past
``max_bytes`` it stops reading the socket until half of them are dispatched.

On the way out, daphne's ``send`` returns at once and the bytes wait in Twisted's buffer; past
``max_outbound`` bytes unsent, reading stops too, so a client that does not read its answers
cannot make new calls, and daphne's ping timeout closes it (it never answers pings it cannot
read). The answers to calls it made before are still written; past ``max_unsent`` bytes (room
for those), what else is pushed to it drops the connection. Reading is paused while either side
asks and resumed when neither does.

The server hooks come from :mod:`channels_rpc._daphne`. On other servers, and with
``channels.testing``, reading cannot be paused: the inbound bound closes the connection instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, Protocol

from channels_rpc._daphne import socket_for
from channels_rpc.guards import TokenBucket
from channels_rpc.protocol import utf8_size

__all__ = ["INBOUND", "OUTBOUND", "Inbox", "ReadGate"]

logger = logging.getLogger("channels_rpc")

#: Why reading is paused: frames not yet dispatched, or answers not yet taken by the client.
INBOUND: Final = "inbound"
OUTBOUND: Final = "outbound"

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Refuse = Callable[[str], Awaitable[None]]


class Socket(Protocol):
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class ReadGate:
    """Reading from the client: paused while any reason holds, resumed when none does."""

    def __init__(self, socket: Socket | None) -> None:
        self._socket = socket
        self._reasons: set[str] = set()

    @property
    def can_pause(self) -> bool:
        return self._socket is not None

    @property
    def paused(self) -> bool:
        return bool(self._reasons)

    def hold(self, reason: str, on: bool) -> None:
        if self._socket is None or on == (reason in self._reasons):
            return
        was_paused = self.paused
        if on:
            self._reasons.add(reason)
        else:
            self._reasons.discard(reason)
        if self.paused != was_paused:
            logger.debug("%s reading (%s)", "pausing" if on else "resuming", reason)
            (self._socket.pause_reading if on else self._socket.resume_reading)()


class Inbox:
    """The client's frames, read as they arrive, checked, and dispatched in order.

    ``websocket.connect`` and ``websocket.disconnect`` pass through unchanged, in their place.
    A frame over the rate limit, or over ``max_bytes`` where reading cannot be paused, calls
    ``refuse(reason)`` (which closes the connection); frames after that are dropped.
    """

    def __init__(
        self,
        receive: Receive,
        gate: ReadGate,
        *,
        bucket: TokenBucket,
        max_bytes: int,
        refuse: Refuse,
    ) -> None:
        self._receive = receive
        self._gate = gate
        self._bucket = bucket
        self._max_bytes = max_bytes
        self._refuse = refuse
        # (message, its size in the backlog); an exception if the reader died.
        self._queue: asyncio.Queue[tuple[Message | Exception, int]] = asyncio.Queue()
        self._refused = False
        self._refusals: set[asyncio.Task[None]] = set()
        #: daphne's queue for this connection, when frames are checked as it queues them.
        self.server_queue: Any = None
        #: Bytes of the frames received but not yet handed to the dispatcher.
        self.backlog = 0

    @classmethod
    def for_server(
        cls,
        receive: Receive,
        send: Callable[..., Any],
        *,
        bucket: TokenBucket,
        max_bytes: int,
        max_outbound: int,
        max_unsent: int,
        refuse: Refuse,
    ) -> Inbox:
        """An inbox pausing the server's socket where the server lets us (daphne).

        Past ``max_outbound`` bytes unsent, reading stops; past ``max_unsent`` (room for the
        answers to the calls taken before that), the connection is dropped.
        """
        socket = socket_for(send)
        gate = ReadGate(socket)
        inbox = cls(receive, gate, bucket=bucket, max_bytes=max_bytes, refuse=refuse)
        if socket is not None:
            socket.watch_output(max_outbound, max_unsent, lambda full: gate.hold(OUTBOUND, full))
            inbox.server_queue = socket.input_queue(receive)
        return inbox

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[None]:
        """Look at frames as they arrive for as long as the block runs."""
        queue = self.server_queue
        if queue is not None:
            put = queue.put_nowait
            queue.put_nowait = functools.partial(self._arrived, put)
            try:
                yield
            finally:
                queue.put_nowait = put
            return
        task = asyncio.create_task(self._read())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def receive(self) -> Message:
        """The next message for the dispatcher (an ASGI ``receive``)."""
        if self.server_queue is not None:
            message: Message = await self._receive()
            self._dispatched(_size(message) if _is_frame(message) else 0)
            return message
        item, size = await self._queue.get()
        self._dispatched(size)
        if isinstance(item, Exception):
            raise item
        return item

    def _dispatched(self, size: int) -> None:
        if size:
            self.backlog -= size
            if self.backlog <= self._max_bytes // 2:
                self._gate.hold(INBOUND, False)

    def _arrived(self, put: Callable[[Message], None], message: Message) -> None:
        """daphne queues ``message`` (in the event loop's thread): check it, then let it in."""
        refusal = self._take(message, put)
        if refusal is not None:
            self._refused = True
            task = asyncio.ensure_future(self._refuse(refusal))
            self._refusals.add(task)
            task.add_done_callback(self._refusals.discard)

    async def _read(self) -> None:
        def put(message: Message) -> None:
            self._queue.put_nowait((message, _size(message) if _is_frame(message) else 0))

        try:
            while True:
                refusal = self._take(await self._receive(), put)
                if refusal is not None:
                    self._refused = True
                    await self._refuse(refusal)
        except Exception as exc:
            # The dispatcher must not wait forever on a reader that died: it raises there.
            self._queue.put_nowait((exc, 0))

    def _take(self, message: Message, put: Callable[[Message], None]) -> str | None:
        """Pass ``message`` on with ``put``; returns why the client is refused, if it is."""
        if not _is_frame(message):
            put(message)
            return None
        if self._refused:
            return None  # the connection is closing: nothing more is read into memory
        if not self._bucket.take(1):
            return "rate limit exceeded"
        size = _size(message)
        if self.backlog + size > self._max_bytes:
            if not self._gate.can_pause:
                return "too many bytes received and not yet handled"
            self._gate.hold(INBOUND, True)
        self.backlog += size
        put(message)
        return None


def _is_frame(message: Message) -> bool:
    return message.get("type") == "websocket.receive"


def _size(message: Message) -> int:
    text = message.get("text")
    if text is not None:
        return utf8_size(text)
    return len(message.get("bytes") or b"")
