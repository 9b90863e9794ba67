"""What of daphne's socket the flow control can reach: pause reading, and hear of a full output.

Everything server-specific lives here, found by duck typing and without importing daphne,
Twisted or autobahn. On daphne an ASGI ``send`` is ``functools.partial(Server.handle_reply,
protocol)``, possibly wrapped by Channels' session middleware (``InstanceSessionWrapper.send``,
with the original as ``.real_send``); the protocol is an autobahn ``WebSocketServerProtocol``
whose ``transport`` is a Twisted TCP transport. Anything else, or anything missing: None, and the
caller falls back to what works on every server.

One thing reaches uvicorn too: whether the server stops on a SIGTERM handler of its own that
:mod:`channels_rpc.draining` can run after closing the sockets (:func:`stops_on_sigterm`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["DaphneSocket", "socket_for", "stops_on_sigterm"]

logger = logging.getLogger("channels_rpc")

#: Wrappers unwrapped before giving up (middleware stacks are shallow).
_MAX_WRAPPERS = 8


def socket_for(send: Callable[..., Any]) -> DaphneSocket | None:
    """The daphne connection behind an ASGI ``send``, or None on any other server."""
    protocol = _protocol_of(send)
    transport = getattr(protocol, "transport", None)
    needed = [
        (protocol, "registerProducer"),
        (protocol, "dropConnection"),
        (transport, "pauseProducing"),
        (transport, "resumeProducing"),
        (transport, "unregisterProducer"),
    ]
    if protocol is None or not all(callable(getattr(o, name, None)) for o, name in needed):
        return None
    return DaphneSocket(protocol, transport)


def stops_on_sigterm(send: Callable[..., Any]) -> bool:
    """Whether the server behind ``send`` is daphne or uvicorn.

    Both stop on a SIGTERM handler installed with ``signal.signal`` in the main thread (Twisted's;
    uvicorn's ``Server.handle_exit``), which draining calls once the sockets are closed.
    uvicorn's ``send`` is a method of its WebSocket protocol (any of its implementations).
    """
    if _protocol_of(send) is not None:
        return True
    owner = getattr(_innermost(send), "__self__", None)
    return type(owner).__module__.startswith("uvicorn.protocols.websockets.")


def _protocol_of(send: Any) -> Any:
    send = _innermost(send)
    if not isinstance(send, functools.partial) or len(send.args) != 1:
        return None
    return send.args[0] if getattr(send.func, "__name__", None) == "handle_reply" else None


def _innermost(send: Any) -> Any:
    """``send`` without the session middleware's wrappers around it."""
    for _ in range(_MAX_WRAPPERS):
        inner = getattr(getattr(send, "__self__", None), "real_send", None)
        if inner is None:
            return send
        send = inner
    return None


class DaphneSocket:
    """Reading paused and resumed on the TCP transport; its output watched by a push producer."""

    def __init__(self, protocol: Any, transport: Any) -> None:
        self._protocol = protocol
        self._transport = transport

    def input_queue(self, receive: Callable[..., Any]) -> Any:
        """The queue daphne puts this connection's messages in, if ``receive`` reads it.

        daphne hands the application ``receive=queue.get`` and puts every message it reads with
        ``queue.put_nowait`` (the protocol's ``application_queue``), in the event loop's thread.
        None if ``receive`` is anything else (wrapped by middleware, say).
        """
        queue = getattr(receive, "__self__", None)
        if queue is None or queue is not getattr(self._protocol, "application_queue", None):
            return None
        return queue if callable(getattr(queue, "put_nowait", None)) else None

    def pause_reading(self) -> None:
        # The kernel's receive buffer fills and the client's writes block: TCP backpressure.
        self._transport.pauseProducing()

    def resume_reading(self) -> None:
        self._transport.resumeProducing()

    def watch_output(self, limit: int, ceiling: int, on_full: Callable[[bool], None]) -> bool:
        """Call ``on_full(True)`` past ``limit`` bytes unsent, ``on_full(False)`` once drained;
        past ``ceiling`` bytes, drop the connection (nothing of it is being taken).

        False when the transport cannot tell (no ``bufferSize``): output is then unbounded.
        """
        if not isinstance(getattr(self._transport, "bufferSize", None), int):
            return False
        displaced = getattr(self._transport, "producer", None)
        if displaced is not None:
            # daphne leaves the HTTP channel that upgraded the socket registered: its pauses do
            # nothing once the request is upgraded. It is still told when the connection ends.
            self._transport.unregisterProducer()
        producer = _OutputProducer(self._protocol, limit, ceiling, on_full, displaced)
        self._protocol.registerProducer(producer, True)
        return True


class _OutputProducer:
    """A Twisted push producer that reports when the transport's buffer passes ``limit``.

    Twisted asks its producer to pause on every write while more than ``bufferSize`` bytes are
    buffered, and to resume once the buffer is empty. ``bufferSize`` is also how much one
    ``recv`` reads (64 KiB), and raising it for good would make every read allocate ``limit``
    bytes (measured: 2 us a read become 17 us at 4 MiB). So it is raised only while output is
    backed up, one stage at a time: the first pause means "over 64 KiB", the next "over the
    limit" (reading stops, so no recv happens at the larger sizes), the last "over the ceiling".
    """

    def __init__(
        self,
        protocol: Any,
        limit: int,
        ceiling: int,
        on_full: Callable[[bool], None],
        displaced: Any,
    ) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        self._limit = limit
        self._ceiling = max(ceiling, limit + 1)
        self._on_full = on_full
        self._displaced = displaced
        self._normal = min(self._transport.bufferSize, limit)
        self._transport.bufferSize = self._normal
        self._full = False

    # Twisted's IPushProducer.

    def pauseProducing(self) -> None:
        size = self._transport.bufferSize
        if size < self._limit:
            self._transport.bufferSize = self._limit
        elif size < self._ceiling:
            self._transport.bufferSize = self._ceiling
            self._full = True
            self._on_full(True)
        else:
            logger.warning(
                "dropping %s: over %d bytes unsent, the client is not reading",
                getattr(self._protocol, "client_addr", None),
                self._ceiling,
            )
            self._protocol.dropConnection(abort=True)

    def resumeProducing(self) -> None:
        self._transport.bufferSize = self._normal
        if self._full:
            self._full = False
            self._on_full(False)

    def stopProducing(self) -> None:
        if self._displaced is not None:
            self._displaced.stopProducing()
