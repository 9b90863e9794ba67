"""The front-end: a WebSocket consumer that validates, enqueues and answers, and never runs methods.

The consumer is the connection: it reads frames and writes answers, and hands everything else to
pieces with one job each, none of which holds the socket. A request goes, in this order:

1. :meth:`~AsyncJsonRpcWebsocketConsumer.receive` parses and validates the frame
   (:mod:`~channels_rpc.protocol`);
2. ``process_request`` middleware runs (:func:`~channels_rpc.middleware.apply_request`), the
   method is resolved and its params bound (:mod:`~channels_rpc.registry`), here, so that
   unknown methods, denied permissions, wrong params and protocol errors are answered without a
   worker hop;
3. :class:`~channels_rpc.sending.Calls` takes it from there: the call is remembered in the
   connection's :class:`~channels_rpc.pending.PendingCalls` (which owns "every call is answered
   exactly once"), put on its queue with this connection's channel as the reply address, and
   given its deadline;
4. the worker's ``rpc.response`` settles it, after ``process_response`` middleware
   (:func:`~channels_rpc.middleware.apply_response`), and the answer is written; answers are
   written as they arrive, in any order. If none came by the deadline, the front-end answers
   ``DEADLINE_EXCEEDED`` itself, whatever happened to the worker.

The groups the connection is in are :class:`~channels_rpc.groups.Memberships`; what of its scope
travels with each call is :mod:`~channels_rpc.scope`; the class methods of channels-rpc 1.0.1
(``rpc_method``, ``describe_api``, ...) are :class:`~channels_rpc.registration.RpcRegistration`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, ClassVar

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import InMemoryChannelLayer
from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder

from channels_rpc import checks, draining, embedded, metrics, registry, signals, status, tracing
from channels_rpc._aio import TaskSet
from channels_rpc._daphne import stops_on_sigterm
from channels_rpc.config import RpcConfig, get_config
from channels_rpc.dispatch import DirectDispatch
from channels_rpc.flow import Inbox
from channels_rpc.groups import Memberships
from channels_rpc.guards import TokenBucket
from channels_rpc.logsafe import protect
from channels_rpc.middleware import apply_response
from channels_rpc.observing import frontend_observers, frontend_status
from channels_rpc.pending import Pending, PendingCalls
from channels_rpc.protocol import utf8_size
from channels_rpc.push import push_frame
from channels_rpc.registration import RpcRegistration, queues_of
from channels_rpc.requests import CLOSE_AUTH_EXPIRED, RequestHandling
from channels_rpc.resumable import SessionHandling
from channels_rpc.scope import expires_at, portable_scope, validate_scope
from channels_rpc.sending import Calls, CallSender
from channels_rpc.session import SessionLink, drain, principal_of

__all__ = ["AsyncJsonRpcWebsocketConsumer"]

#: The close code for a client sending more than RATE_LIMIT requests a second (an application
#: may close with 1000 or 3000-4999 only; 4008 echoes 1008 "policy violation").
CLOSE_RATE_LIMITED = 4008
#: The close code when a frame could not be handed to the server (4011 echoes 1011 "internal
#: error"): a socket that cannot be written to is closed, never left half alive.
CLOSE_WRITE_FAILED = 4011
#: The WebSocket subprotocol accepted when a client offers it (browsers that offer any
#: subprotocol fail the handshake unless the server picks one).
SUBPROTOCOL = "jsonrpc"
#: Answers the outbound ceiling leaves room for (answers to calls taken before reading paused)
#: when MAX_IN_FLIGHT is 0: as many as the default limit lets a connection have.
_ROOM_WITHOUT_LIMIT = 64
#: Tasks that outlive their connection: keeping what reaches a detached session's channel.
_drains = TaskSet()

# Client text (method names, error messages) reaches this logger: one line per record.
logger = protect(logging.getLogger("channels_rpc"))


class AsyncJsonRpcWebsocketConsumer(
    RpcRegistration,
    RequestHandling,
    SessionHandling,
    DirectDispatch,
    AsyncJsonWebsocketConsumer,  # type: ignore[misc]
):
    """JSON-RPC 2.0 over a WebSocket; methods run in worker processes (or inline, see settings).

    Register module-level functions with ``@MyConsumer.rpc_method()`` and
    ``@MyConsumer.rpc_notification()`` (:class:`~channels_rpc.registration.RpcRegistration`).
    Override ``connect()`` to authenticate before ``accept()``, as with any Channels consumer.
    """

    #: Encodes method results (in the process that runs them); None: Django's JSON encoder.
    json_encoder_class: ClassVar[type[json.JSONEncoder] | None] = None
    #: Objects with ``process_request(data, consumer)`` / ``process_response(response, consumer)``.
    middleware: ClassVar[Sequence[Any] | None] = None

    # Made at websocket_connect, once the connection's channel layer is known.
    _calls: Calls
    _memberships: Memberships

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = get_config()
        self._pending = PendingCalls(config.max_in_flight, observers=frontend_observers(config))
        self._bucket = TokenBucket(config.rate_limit, 2 * config.rate_limit)
        self._closing = False
        self._accepted = False
        self._connected_at = time.monotonic()
        self._subprotocol: str | None = None
        self._portable: dict[str, Any] | None = None
        self._release_worker: Callable[[], Awaitable[None]] | None = None  # embedded mode
        self._session: SessionLink | None = None  # on a layer with sessions
        self._ending = False  # closed for cause: a session ends with the connection
        self._undispatched: dict[str, Any] | None = None  # see channel_receive
        self._detached = False  # the session was kept: what comes now is kept too
        # asyncio holds tasks weakly; tasks this connection starts are kept here.
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the connection, its frames read by an :class:`~channels_rpc.flow.Inbox`.

        Channels dispatches one message at a time, and daphne queues every frame it reads until
        the application takes it: the inbox takes them as they arrive, so the rate limit and the
        byte bounds hold whatever the consumer is awaiting.
        """
        config = get_config()
        room = config.max_in_flight or _ROOM_WITHOUT_LIMIT
        inbox = Inbox.for_server(
            receive,
            send,
            bucket=self._bucket,
            max_bytes=config.max_inbound_bytes,
            max_outbound=config.max_outbound_bytes,
            max_unsent=config.max_outbound_bytes + room * config.max_response_size,
            refuse=self._close_abusive,
        )
        if stops_on_sigterm(send):  # daphne, uvicorn: SIGTERM closes sockets with 4012 first
            draining.install(config.shutdown_grace, _drains.wait)
        async with inbox.reading():
            await super().__call__(scope, inbox.receive, send)

    # ----------------------------------------------------------------------------------------
    # Connection lifecycle

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        if self.channel_layer is None:
            raise ImproperlyConfigured(
                "channels-rpc needs a channel layer: set CHANNEL_LAYERS (for one process, "
                "{'default': {'BACKEND': 'channels.layers.InMemoryChannelLayer'}})."
            )
        if draining.draining.stopping:  # refused before the handshake (403): go elsewhere
            await self.close()
            return
        self.channel_layer: Any = checks.connection_layer(self)  # refuses calls it cannot serve
        layer, channel, spawn = self.channel_layer, self.channel_name, self._spawn
        # Channels' own `groups` are joined by super().websocket_connect, and only renewed here.
        self._memberships = Memberships(
            layer, channel, static=lambda: self.groups, spawn=spawn, closing=lambda: self._closing
        )
        key = registry.consumer_key(type(self))
        sender = CallSender(layer, channel, key, scope=self._portable_scope, spawn=spawn)
        self._calls = Calls(
            self._pending,
            sender,
            write=self._write,
            result_frame=self._result_frame,
            spawn=spawn,
            on_send=self._memberships.note_call,
            trace_parent=tracing.parents(self.scope) if tracing.enabled(get_config()) else None,
        )
        sessions = getattr(layer, "sessions", None)
        if sessions is not None and not self._runs_inline(get_config()):
            principal = database_sync_to_async(principal_of)
            self._session = SessionLink(
                sessions, channel, self._pending, lambda: principal(self.scope)
            )
        status.ensure_frontend_beat(layer, frontend_status)
        await super().websocket_connect(message)
        self._memberships.keep_static()

    async def connect(self) -> None:
        """Accept the connection, choosing the ``jsonrpc`` subprotocol if the client offers it.

        Override to authenticate first (close before accepting to refuse: daphne answers 403).
        """
        offered = self.scope.get("subprotocols") or ()
        await self.accept(SUBPROTOCOL if SUBPROTOCOL in offered else None)

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        await super().accept(subprotocol, headers)
        if not self._accepted:
            self._accepted = True
            metrics.CONNECTIONS.inc()
            draining.track(self)
            self._subprotocol = subprotocol
            if self._runs_inline(get_config()):
                self._release_worker = embedded.attach(
                    self.channel_layer, self._queues(), self.channel_name
                )
            if (expiry := expires_at(self.scope)) is not None:
                self._spawn(self._close_at_expiry(expiry))
            signals.send(signals.rpc_client_connected, type(self), consumer=self, scope=self.scope)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        self._closing = True
        current = asyncio.current_task()
        for task in list(self._tasks):  # deadline answers, the expiry close, the group keeper
            if task is not current:
                task.cancel()
        code = message.get("code")
        detached = self._detached or await self._detach(code)
        if detached:
            first = [*(self._held or ()), *filter(None, [self._undispatched])]
            keep = self.channel_layer.sessions
            _drains.spawn(drain(keep, self.channel_name, self._channel_receive, first))
        else:
            await self._calls.close()
            await self._memberships.close()
        if self._release_worker is not None:
            await self._release_worker()
        if self._accepted:
            metrics.CONNECTIONS.dec()
            signals.send(
                signals.rpc_client_disconnected,
                type(self),
                consumer=self,
                scope=self.scope,
                duration=time.monotonic() - self._connected_at,
                close_code=code,
            )
        draining.untrack(self)
        if detached:  # Channels' own groups stay the session's too
            await self.disconnect(code)
            raise StopConsumer()
        await super().websocket_disconnect(message)

    # ----------------------------------------------------------------------------------------
    # Closing for cause

    async def _close_abusive(self, reason: str) -> None:
        logger.warning("closing %s: %s", self.scope.get("client"), reason)
        metrics.REFUSALS.labels("rate_limit").inc()
        self._ending = True
        await self.close(code=CLOSE_RATE_LIMITED, reason=reason)

    async def _close_at_expiry(self, expiry: float) -> None:
        """Close an idle connection when its credentials expire (pushes would go on otherwise)."""
        await asyncio.sleep(max(0.0, expiry - time.time()))
        if not self._closing:
            self._ending = True
            await self.close(code=CLOSE_AUTH_EXPIRED, reason="credentials expired")

    # ----------------------------------------------------------------------------------------
    # Answers, and what else comes for this connection over the channel layer

    async def rpc_response(self, message: dict[str, Any]) -> None:
        """A worker's answer to a call of this connection."""
        await self._calls.answered(message)

    async def _result_frame(self, pending: Pending, body: str) -> str:
        middleware, encoder = self.middleware or (), self.json_encoder_class
        return await apply_response(
            middleware, pending.id_json, body, self, method=pending.method, encoder=encoder
        )

    async def rpc_taken(self, message: dict[str, Any]) -> None:
        """A worker took a request sent with ``ack``: a notification, or a call without limit."""
        self._calls.taken(message["ack"])

    async def rpc_push(self, message: dict[str, Any]) -> None:
        """A notification pushed to this connection from any process."""
        frame = message["body"]
        limit = get_config().max_response_size
        if (size := utf8_size(frame)) > limit:
            # Senders of this package refuse such pushes; writing one would fail anyway.
            logger.warning("dropping a push of %d bytes (MAX_RESPONSE_SIZE %d)", size, limit)
            return
        await self._write(frame)

    async def rpc_membership(self, message: dict[str, Any]) -> None:
        """A method joined or left a group for this connection (the worker did it already)."""
        if message.get("join"):
            self._memberships.joined_by_worker(message["join"])
        if message.get("leave"):
            self._memberships.left_by_worker(message["leave"])

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message is self._undispatched:
            self._undispatched = None
        if (
            (self._detached or self._held is not None)
            and not message["type"].startswith("websocket.")
            and await self._diverted(message)
        ):
            return
        await super().dispatch(message)

    async def notify_channel(self, method: str, params: Any = None) -> None:
        """Send a JSON-RPC notification to this connection's client.

        Raises ``ResponseTooLargeError`` if it would exceed ``MAX_RESPONSE_SIZE``.
        """
        encoder = self.json_encoder_class or DjangoJSONEncoder
        limit = get_config().max_response_size
        await self._write(push_frame(method, params, encoder=encoder, limit=limit))

    async def join_group(self, group: str) -> None:
        """Add this connection to ``group`` (left when it closes, kept past ``group_expiry``).

        Raises ``JsonRpcError`` (-32010) when the connection is in ``MAX_GROUPS`` groups already.
        """
        await self._memberships.join(group)

    async def leave_group(self, group: str) -> None:
        await self._memberships.leave(group)

    # ----------------------------------------------------------------------------------------
    # Writing

    async def _write(self, frame: str, *, numbered: bool = True) -> None:
        """Write a frame unless the socket is closing; if the server refuses it, close.

        A socket that takes no more frames must not stay open: its client would wait forever
        for answers while pings still succeed. So a failed write closes it (4011); when the
        peer is gone already, the close is a no-op and websocket.disconnect cleans up.
        """
        if self._closing:
            return
        if numbered and self._session is not None:
            frame = self._session.write(frame)
        try:
            await self.send(text_data=frame)
        except Exception as exc:
            logger.warning("could not write to %s (%r): closing", self.scope.get("client"), exc)
            self._closing = True
            try:
                await super().close(code=CLOSE_WRITE_FAILED)
            except Exception as close_exc:
                logger.debug("could not close %s: %r", self.scope.get("client"), close_exc)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        self._closing = True  # from here on, answers and pushes are dropped, not written
        await super().close(code, reason)
        if self._release_worker is not None:
            # Not only at websocket.disconnect: a test may never send it after this close.
            await self._release_worker()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ----------------------------------------------------------------------------------------
    # Helpers

    def _runs_inline(self, config: RpcConfig) -> bool:
        if config.execution == "auto":
            return isinstance(self.channel_layer, InMemoryChannelLayer)
        return config.execution == "inline"

    def _queues(self) -> set[str]:
        return queues_of(type(self), get_config().default_queue)

    def rpc_scope(self) -> dict[str, Any]:
        """The part of the ASGI scope sent with every call (JSON-able values only).

        Override to add what your methods need (for example a tenant id); never copy
        client-controlled values into fields a method trusts for identity, nor credentials.
        """
        return portable_scope(self.scope, subprotocol=self._subprotocol)

    def _portable_scope(self) -> dict[str, Any]:
        if self._portable is None:
            self._portable = self.rpc_scope()
        return self._portable

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        if cls.json_encoder_class is not None:
            return json.dumps(content, cls=cls.json_encoder_class)
        return json.dumps(content, default=str)

    def validate_scope(self) -> None:
        """Sanity checks on the scope (kept from channels-rpc 1.0.1): raises if not a dict."""
        validate_scope(self.scope)


def _utf8_or_none(data: bytes | None) -> str | None:
    try:
        return (data or b"").decode("utf-8")
    except UnicodeDecodeError:
        return None
