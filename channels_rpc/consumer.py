"""The front-end: a WebSocket consumer that validates, enqueues and answers, and never runs methods.

For every frame: parse and validate (:mod:`~channels_rpc.protocol`), resolve the method and bind
its params (:mod:`~channels_rpc.registry`), then put an ``rpc.request`` on the method's queue with
this consumer's channel as the reply address, and remember the call with a deadline
(:mod:`~channels_rpc.pending`). Answers come back as ``rpc.response`` messages and are written as
they arrive, in any order. Whatever happens to the worker, every call is answered by its
deadline: if no reply came by then, the front-end answers with ``DEADLINE_EXCEEDED`` itself.

Everything that can be decided here is: unknown methods, denied permissions, wrong params and
protocol errors are answered without a worker hop.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar, overload

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import InMemoryChannelLayer
from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder

from channels_rpc import checks, embedded, groups, openrpc, registry, signals
from channels_rpc._compat import timeout as time_limit
from channels_rpc.config import RpcConfig, get_config
from channels_rpc.dispatch import DirectDispatch
from channels_rpc.envelope import (
    VERSION,
    WORKERS_GROUP,
    Call,
    cancel_message,
    notification_frame,
)
from channels_rpc.exceptions import (
    JsonRpcError,
    JsonRpcErrorCode,
    ResponseTooLargeError,
    error_object,
)
from channels_rpc.flow import Inbox
from channels_rpc.guards import Breaker, TokenBucket
from channels_rpc.logsafe import protect
from channels_rpc.pending import (
    Batch,
    DuplicateId,
    Pending,
    PendingCalls,
    TooManyInFlight,
    Unanswered,
    too_large_frame,
)
from channels_rpc.protocol import (
    Rejection,
    Request,
    dumps,
    encode_error,
    encode_id,
    error_frame,
    parse,
    result_frame,
    utf8_size,
    validate,
)
from channels_rpc.registry import MethodInfo, MethodSpec
from channels_rpc.security import AUTH_EXPIRES_AT

__all__ = ["AsyncJsonRpcWebsocketConsumer"]

#: Notifications that cancel a pending call: ours, and the Language Server Protocol's.
CANCEL_METHODS = frozenset({"rpc.cancel", "$/cancelRequest"})
#: The close code for a client sending more than RATE_LIMIT requests a second (an application
#: may close with 1000 or 3000-4999 only; 4008 echoes 1008 "policy violation").
CLOSE_RATE_LIMITED = 4008
#: The close code once the credentials the connection was opened with have expired.
CLOSE_AUTH_EXPIRED = 4001
#: The close code when a frame could not be handed to the server (4011 echoes 1011 "internal
#: error"): a socket that cannot be written to is closed, never left half alive.
CLOSE_WRITE_FAILED = 4011
#: The WebSocket subprotocol accepted when a client offers it (browsers that offer any
#: subprotocol fail the handshake unless the server picks one).
SUBPROTOCOL = "jsonrpc"
#: Answers the outbound ceiling leaves room for (answers to calls taken before reading paused)
#: when MAX_IN_FLIGHT is 0: as many as the default limit lets a connection have.
_ROOM_WITHOUT_LIMIT = 64
#: The OpenRPC service discovery method.
DISCOVER = "rpc.discover"
_PROGRESS = {
    "description": "Progress of a pending call, sent before its answer (ctx.progress()).",
    "params": [
        {"name": "id", "required": True, "schema": {"type": ["string", "number", "null"]}},
        {"name": "progress", "required": True, "schema": {"type": "number"}},
        {"name": "total", "required": False, "schema": {"type": "number"}},
        {"name": "message", "required": False, "schema": {"type": "string"}},
    ],
}

# Client text (method names, error messages) reaches this logger: one line per record.
logger = protect(logging.getLogger("channels_rpc"))

F = TypeVar("F", bound=Callable[..., Any])


class AsyncJsonRpcWebsocketConsumer(DirectDispatch, AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """JSON-RPC 2.0 over a WebSocket; methods run in worker processes (or inline, see settings).

    Register module-level functions with ``@MyConsumer.rpc_method()`` and
    ``@MyConsumer.rpc_notification()``. Override ``connect()`` to authenticate before
    ``accept()``, as with any Channels consumer.
    """

    #: Encodes method results (in the process that runs them); None: Django's JSON encoder.
    json_encoder_class: ClassVar[type[json.JSONEncoder] | None] = None
    #: Objects with ``process_request(data, consumer)`` / ``process_response(response, consumer)``.
    middleware: ClassVar[Sequence[Any] | None] = None
    #: The ``info`` of the OpenRPC document (``title`` and ``version`` default to the class).
    openrpc_info: ClassVar[Mapping[str, Any]] = {}
    #: Notifications the server pushes, for ``rpc.discover``: name -> description, or name ->
    #: ``{"description": ..., "params": [content descriptors]}``.
    server_notifications: ClassVar[Mapping[str, str | Mapping[str, Any]]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = get_config()
        self._pending = PendingCalls(config.max_in_flight)
        self._bucket = TokenBucket(config.rate_limit, 2 * config.rate_limit)
        self._closing = False
        self._consumer_key = registry.consumer_key(type(self))
        self._portable: dict[str, Any] | None = None
        self._connected_at = time.monotonic()
        self._accepted = False
        self._joined: set[str] = set()
        # How long after the close a method of this connection may still join a group for it.
        self._late_joins = 0.0
        self._subprotocol: str | None = None
        self._group_keeper: asyncio.Task[None] | None = None
        self._release_worker: Callable[[], Awaitable[None]] | None = None  # embedded mode
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
        async with inbox.reading():
            await super().__call__(scope, inbox.receive, send)

    # ----------------------------------------------------------------------------------------
    # Registration and introspection (the API of channels-rpc 1.0.1)

    @overload
    @classmethod
    def rpc_method(cls, method_name: F) -> F: ...

    @overload
    @classmethod
    def rpc_method(
        cls,
        method_name: str | None = None,
        *,
        websocket: bool = True,
        timeout: float | None = None,
        queue: str | None = None,
    ) -> Callable[[F], F]: ...

    @classmethod
    def rpc_method(
        cls,
        method_name: str | Callable[..., Any] | None = None,
        *,
        websocket: bool = True,
        timeout: float | None = None,
        queue: str | None = None,
    ) -> Any:
        """Register a function as a method of this consumer class (not of its subclasses).

        ``timeout`` in seconds (None: ``DEFAULT_TIMEOUT``; 0: no limit), ``queue`` the channel
        its calls are enqueued on (None: ``DEFAULT_QUEUE``).
        """
        return cls._registrar(method_name, False, websocket, timeout, queue)

    @overload
    @classmethod
    def rpc_notification(cls, notification_name: F) -> F: ...

    @overload
    @classmethod
    def rpc_notification(
        cls,
        notification_name: str | None = None,
        *,
        websocket: bool = True,
        timeout: float | None = None,
        queue: str | None = None,
    ) -> Callable[[F], F]: ...

    @classmethod
    def rpc_notification(
        cls,
        notification_name: str | Callable[..., Any] | None = None,
        *,
        websocket: bool = True,
        timeout: float | None = None,
        queue: str | None = None,
    ) -> Any:
        """Register a function called by notifications (requests without an id, never answered)."""
        return cls._registrar(notification_name, True, websocket, timeout, queue)

    @classmethod
    def _registrar(
        cls,
        name: str | Callable[..., Any] | None,
        notification: bool,
        websocket: bool,
        timeout: float | None,
        queue: str | None,
    ) -> Callable[[F], F]:
        def decorator(func: F) -> F:
            registry.register(
                cls,
                func,
                name=None if callable(name) else name,
                notification=notification,
                websocket=websocket,
                timeout=timeout,
                queue=queue,
            )
            return func

        if callable(name):  # used bare, as @Consumer.rpc_method
            return decorator(name)
        return decorator

    @classmethod
    def get_rpc_methods(cls) -> list[str]:
        table = registry.table_of(cls)
        return list(table.methods) if table else []

    @classmethod
    def get_rpc_notifications(cls) -> list[str]:
        table = registry.table_of(cls)
        return list(table.notifications) if table else []

    @classmethod
    def get_method_info(cls, method_name: str) -> MethodInfo:
        table = registry.table_of(cls)
        spec = table and (
            table.lookup(method_name, notification=False)
            or table.lookup(method_name, notification=True)
        )
        if not spec:
            raise KeyError(f"Method '{method_name}' not registered")
        return spec.info()

    @classmethod
    def describe_api(cls) -> dict[str, Any]:
        table = registry.table_of(cls)
        specs = list(table.specs()) if table else []
        return {
            "jsonrpc": "2.0",
            "consumer": cls.__name__,
            "methods": [
                _describe(spec, transports=True) for spec in specs if not spec.is_notification
            ],
            "notifications": [_describe(spec) for spec in specs if spec.is_notification],
        }

    @classmethod
    def openrpc_document(cls, specs: Iterable[MethodSpec] | None = None) -> dict[str, Any]:
        """An OpenRPC 1.3 document of ``specs`` (by default every method of this class)."""
        table = registry.table_of(cls)
        if specs is None:
            specs = [spec for spec in (table.specs() if table else ()) if spec.websocket]
        notifications = {**cls.server_notifications, "rpc.progress": _PROGRESS}
        info = {"title": cls.__name__, "version": "1.0.0", **cls.openrpc_info}
        return openrpc.document(
            specs,
            info=info,
            server_notifications=notifications,
            default_queue=get_config().default_queue,
        )

    async def _discover(self) -> dict[str, Any]:
        """What ``rpc.discover`` answers: only the methods this connection may call."""
        table = registry.table_of(type(self))
        specs = [
            spec
            for spec in (table.specs() if table else ())
            if spec.websocket and await self._permitted(spec)
        ]
        return self.openrpc_document(specs)

    # ----------------------------------------------------------------------------------------
    # Connection lifecycle

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        if self.channel_layer is None:
            raise ImproperlyConfigured(
                "channels-rpc needs a channel layer: set CHANNEL_LAYERS (for one process, "
                "{'default': {'BACKEND': 'channels.layers.InMemoryChannelLayer'}})."
            )
        self.channel_layer: Any = checks.connection_layer(self)  # refuses calls it cannot serve
        await super().websocket_connect(message)
        if self.groups and self._group_keeper is None:  # Channels' own `groups` attribute
            self._group_keeper = self._spawn(self._keep_groups())
            _rejoin_after_reconnects(self)

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
            self._subprotocol = subprotocol
            if self._runs_inline(get_config()):
                self._release_worker = embedded.attach(
                    self.channel_layer, self._queues(), self.channel_name
                )
            if (expires_at := self.scope.get(AUTH_EXPIRES_AT)) is not None:
                self._spawn(self._close_at_expiry(expires_at))
            signals.send(signals.rpc_client_connected, type(self), consumer=self, scope=self.scope)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        self._closing = True
        current = asyncio.current_task()
        for task in list(self._tasks):  # deadline answers, the expiry close, the group keeper
            if task is not current:
                task.cancel()
        abandoned = self._pending.drain()
        for pending in abandoned:
            _cancel_timer(pending)
        calls = [pending for pending in abandoned if not pending.is_notification]
        if calls:
            # The calls this connection still waits on are of no use now. Its notifications
            # were accepted: they stay queued, or run on, within their timeout.
            await self._revoke(calls, everything=True)
        await self._leave_groups()
        if self._release_worker is not None:
            await self._release_worker()
        if self._accepted:
            signals.send(
                signals.rpc_client_disconnected,
                type(self),
                consumer=self,
                scope=self.scope,
                duration=time.monotonic() - self._connected_at,
                close_code=message.get("code"),
            )
        await super().websocket_disconnect(message)

    # ----------------------------------------------------------------------------------------
    # Requests

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Handle one frame; never raises for anything a client sends."""
        if self._closing:
            return  # frames daphne had buffered before the close took effect
        if self._credentials_expired():
            await self._close_expired(text_data, bytes_data)
            return
        text = text_data if text_data is not None else _utf8_or_none(bytes_data)
        if text is None:
            await self._send_error(
                None,
                error_object(
                    JsonRpcErrorCode.PARSE_ERROR, data={"error": "frame is not UTF-8 text"}
                ),
            )
            return
        config = get_config()
        message = parse(text, config.limits)
        if isinstance(message, list):
            if not self._bucket.take(len(message) - 1):  # a batch costs what its calls would
                await self._close_abusive("rate limit exceeded")
                return
            await self._receive_batch(message, config)
            return
        frame = await self._dispatch(message, config, None, text)
        if frame is not None:
            await self._write(frame)

    async def _close_abusive(self, reason: str) -> None:
        logger.warning("closing %s: %s", self.scope.get("client"), reason)
        await self.close(code=CLOSE_RATE_LIMITED, reason=reason)

    def _credentials_expired(self) -> bool:
        expires_at = self.scope.get(AUTH_EXPIRES_AT)
        return expires_at is not None and time.time() >= expires_at

    async def _close_expired(self, text_data: str | None, bytes_data: bytes | None) -> None:
        """Answer the frame's call, if it is one, then close: the credentials ran out."""
        message = parse(
            text_data if text_data is not None else _utf8_or_none(bytes_data) or "",
            get_config().limits,
        )
        error = error_object(JsonRpcErrorCode.UNAUTHORIZED, data={"reason": "credentials expired"})
        if isinstance(message, Request) and not message.is_notification:
            await self._send_error(message.id, error)
        await self.close(code=CLOSE_AUTH_EXPIRED, reason="credentials expired")

    async def _close_at_expiry(self, expires_at: float) -> None:
        """Close an idle connection when its credentials expire (pushes would go on otherwise)."""
        await asyncio.sleep(max(0.0, expires_at - time.time()))
        if not self._closing:
            await self.close(code=CLOSE_AUTH_EXPIRED, reason="credentials expired")

    async def _receive_batch(self, items: list[Request | Rejection], config: RpcConfig) -> None:
        batch = Batch(limit=config.max_response_size)
        for item in items:
            await self._dispatch(item, config, batch, None)
        frame = batch.seal()
        if frame is not None:
            await self._write(frame)

    async def _dispatch(
        self, item: Request | Rejection, config: RpcConfig, batch: Batch | None, text: str | None
    ) -> str | None:
        """Dispatch one request; returns what to write now (an error, or a completed batch)."""
        try:
            return await self._dispatch_one(item, config, batch, text)
        except Exception:
            # A bug here must cost one call an answer, not the whole connection.
            logger.exception("unexpected error while dispatching a request")
            if isinstance(item, Request) and item.is_notification:
                return None
            return self._local_answer(item.id, error_object(JsonRpcErrorCode.INTERNAL_ERROR), batch)

    async def _dispatch_one(
        self, item: Request | Rejection, config: RpcConfig, batch: Batch | None, text: str | None
    ) -> str | None:
        if isinstance(item, Rejection):
            return self._local_answer(item.id, item.error, batch) if item.answer else None
        if item.is_notification and item.method in CANCEL_METHODS:
            await self._cancel_request(item)
            return None
        if not item.is_notification and item.method == DISCOVER and config.discovery:
            return self._local_result(item.id, await self._discover(), batch)
        try:
            request, text = await self._apply_request_middleware(item, config, text)
            spec = await self._resolve(request)
            spec.bind(request.params)
        except JsonRpcError as exc:
            if item.is_notification:
                logger.info("notification %r dropped: %s", item.method, exc.error()["message"])
                return None
            return self._local_answer(item.id, exc.error(), batch)
        body = text if text is not None and _bare(request) else _request_body(request)
        if request.is_notification:
            await self._enqueue_notification(request, spec, body, config)
            return None
        return await self._enqueue_call(request, spec, body, config, batch)

    async def _resolve(self, request: Request) -> MethodSpec:
        """The spec a request calls; unknown, disabled and forbidden methods look alike."""
        table = registry.table_of(type(self))
        spec = table.lookup(request.method, notification=request.is_notification) if table else None
        if spec is None or not spec.websocket or not await self._permitted(spec):
            raise JsonRpcError(None, JsonRpcErrorCode.METHOD_NOT_FOUND, {"method": request.method})
        return spec

    async def _permitted(self, spec: MethodSpec) -> bool:
        if not spec.permissions:
            return True
        user = self.scope.get("user")
        if user is None or not getattr(user, "is_authenticated", False):
            return False
        try:
            allowed: bool = await database_sync_to_async(user.has_perms)(spec.permissions)
        except Exception as exc:
            logger.exception("permission check for %r failed", spec.name)
            raise JsonRpcError(None, JsonRpcErrorCode.INTERNAL_ERROR) from exc
        return allowed

    async def _enqueue_call(
        self, request: Request, spec: MethodSpec, body: str, config: RpcConfig, batch: Batch | None
    ) -> str | None:
        try:
            pending = self._pending.open(
                request.id, spec.name, config.timeout_for(spec.timeout), batch
            )
        except DuplicateId:
            field = "Request ID is already in use by a pending request"
            return self._local_answer(request.id, _invalid_request(field), batch)
        except TooManyInFlight as exc:
            reason = "too many calls in flight on this connection"
            busy = error_object(
                JsonRpcErrorCode.SERVER_BUSY, data={"limit": exc.args[0], "reason": reason}
            )
            return self._local_answer(request.id, busy, batch)
        # A call without a time limit asks to hear when a worker takes it: until then, the
        # queue's expiry is its deadline (an expired request is dropped, never answered).
        ack = pending.token if pending.timeout is None else None
        try:
            pending.queue, pending.handle = await self._send_call(
                spec, body, pending.token, pending.timeout, config, ack=ack
            )
        except JsonRpcError as exc:
            self._pending.take(pending.token)
            return pending.route(error_frame(pending.id_json, encode_error(exc.error())))
        loop = asyncio.get_running_loop()
        if pending.timeout is not None:
            when = loop.time() + pending.timeout + config.reply_grace
            pending.timer = loop.call_at(when, self._expire, pending.token)
        else:
            when = loop.time() + self._queue_expiry() + config.reply_grace
            pending.timer = loop.call_at(when, self._unclaimed, pending.token)
        return None

    async def _enqueue_notification(
        self, request: Request, spec: MethodSpec, body: str, config: RpcConfig
    ) -> None:
        """Enqueue a notification; it counts against MAX_IN_FLIGHT until a worker takes it."""
        timeout = config.timeout_for(spec.timeout)
        try:
            pending = self._pending.open_notification(spec.name, timeout)
        except TooManyInFlight:
            logger.warning("notification %r dropped: too many calls in flight", request.method)
            return
        try:
            pending.queue, pending.handle = await self._send_call(
                spec, body, None, timeout, config, ack=pending.token
            )
        except JsonRpcError as exc:
            self._pending.take(pending.token)
            logger.warning("notification %r dropped: %s", request.method, exc.error()["message"])
            return
        # Past its deadline or the queue's expiry, no worker will start it: stop counting it.
        wait = self._queue_expiry() if timeout is None else min(timeout, self._queue_expiry())
        loop = asyncio.get_running_loop()
        pending.timer = loop.call_at(
            loop.time() + wait + config.reply_grace, self._unclaimed, pending.token
        )

    async def _send_call(
        self,
        spec: MethodSpec,
        body: str,
        token: int | None,
        timeout: float | None,
        config: RpcConfig,
        *,
        ack: int | None = None,
    ) -> tuple[str, Any]:
        """Put a call on its queue; returns the queue and the layer's handle to withdraw it.

        Raises ``JsonRpcError`` (-32010) when the queue is full or the layer fails.
        """
        queue = spec.queue or config.default_queue
        # The layer's clock (Redis' for our Redis layer): workers on other hosts read the
        # deadline on that same clock, whatever their own says.
        now = getattr(self.channel_layer, "clock", time.time)()
        self._note_late_joins(timeout)
        call = Call(
            consumer=self._consumer_key,
            method=spec.name,
            body=body,
            queue=queue,
            call=token,
            reply_to=self.channel_name,
            deadline=None if timeout is None else now + timeout,
            timeout=timeout,
            sent_at=now,
            scope=self._portable_scope(),
            ack=ack,
        )
        breaker = _breaker(self.channel_layer)
        if not breaker.allows():  # the layer just failed: answer now rather than wait again
            raise _busy(queue, "channel layer unavailable")
        # channels_rpc.layers.RedisChannelLayer hands back a handle that can take the request
        # back off the queue if it is cancelled before a worker took it.
        # Given the time limit, it also makes sure a call it gave up on never reaches a worker:
        # the caller is answered -32010, so the call must not run.
        enqueue = getattr(self.channel_layer, "enqueue", None)
        try:
            if enqueue is not None:
                handle = await enqueue(queue, call.to_message(), timeout=config.layer_timeout)
            else:
                async with time_limit(config.layer_timeout):
                    handle = await self.channel_layer.send(queue, call.to_message())
        except ChannelFull as exc:
            # Our Redis layer says why (count, bytes, or Redis out of memory); others don't.
            raise _busy(queue, getattr(exc, "reason", None) or "queue is full") from None
        except Exception as exc:  # includes the timeout
            # Like a full queue, a layer that cannot take the call now is a "try again later".
            logger.error("could not enqueue %r on %s: %r", spec.name, queue, exc)
            breaker.failed()
            if token is not None:
                # The layer withdraws a send it gave up on, but a worker may have taken it in
                # between: the workers skip or stop it, since its caller hears "not sent".
                self._spawn(self._cancel_in_workers([token]))
            raise _busy(queue, "channel layer unavailable") from None
        breaker.succeeded()
        return queue, handle

    # ----------------------------------------------------------------------------------------
    # Cancellation

    async def _cancel_request(self, request: Request) -> None:
        """``rpc.cancel`` / ``$/cancelRequest`` ``{"id": X}``: answer X with -32800, stop it."""
        params = request.params
        target = params.get("id") if isinstance(params, dict) else None
        valid = isinstance(target, (str, int, float)) and not isinstance(target, bool)
        pending = self._pending.find(target) if valid else None
        if pending is None:
            return  # unknown or already answered: nothing to do
        self._pending.take(pending.token)
        _cancel_timer(pending)
        error = error_object(JsonRpcErrorCode.REQUEST_CANCELLED, data={"id": target})
        frame = pending.route(error_frame(pending.id_json, encode_error(error)))
        if frame is not None:
            await self._write(frame)
        await self._revoke([pending], everything=False)

    async def _revoke(self, calls: list[Pending], *, everything: bool) -> None:
        """Take calls back from their queues, and tell the workers to stop the rest.

        ``everything``: every call of this connection (it is closing). A close never takes back
        nor cancels notifications; one is withdrawn only once no worker would start it anyway.
        """
        leftover = [pending.token for pending in calls if not pending.is_notification]
        withdraw = getattr(self.channel_layer, "withdraw", None)
        if withdraw is not None:
            try:
                async with time_limit(get_config().layer_timeout):
                    leftover = await self._withdraw(withdraw, calls)
            except Exception as exc:  # includes the timeout
                # The workers must still hear of it: a failed withdraw leaves calls queued.
                logger.warning("could not withdraw %d calls: %r", len(calls), exc)
        if everything or leftover:
            await self._cancel_in_workers(None if everything else leftover)

    async def _cancel_in_workers(self, tokens: list[int] | None) -> None:
        """Tell every worker to skip or stop these calls of ours (all of them: None)."""
        message = cancel_message(self.channel_name, tokens)
        try:
            async with time_limit(get_config().layer_timeout):
                await self.channel_layer.group_send(WORKERS_GROUP, message)
        except Exception as exc:
            count = "all" if tokens is None else len(tokens)
            logger.warning("could not cancel %s calls in the workers: %r", count, exc)

    async def _withdraw(self, withdraw: Any, calls: list[Pending]) -> list[int]:
        """Withdraw queued calls; returns the tokens that may already be running."""
        by_queue: dict[str, list[Pending]] = {}
        for pending in calls:
            by_queue.setdefault(pending.queue, []).append(pending)
        leftover: list[int] = []
        for queue, group in by_queue.items():
            handles = [pending.handle for pending in group if pending.handle is not None]
            if await withdraw(queue, handles) < len(group):
                leftover.extend(p.token for p in group if not p.is_notification)
        return leftover

    # ----------------------------------------------------------------------------------------
    # Groups

    async def join_group(self, group: str) -> None:
        """Add this connection to ``group`` (left when it closes, kept past ``group_expiry``).

        Raises ``JsonRpcError`` (-32010) when the connection is in ``MAX_GROUPS`` groups already.
        """
        limit = get_config().max_groups
        joined = await groups.join(self.channel_layer, group, self.channel_name, limit=limit)
        if joined == groups.FULL:
            raise _too_many_groups(limit)
        if joined == groups.JOINED:
            self._remember_group(group)

    async def leave_group(self, group: str) -> None:
        await groups.leave(self.channel_layer, group, self.channel_name)
        self._joined.discard(group)

    async def rpc_membership(self, message: dict[str, Any]) -> None:
        """A method joined or left a group for this connection (the worker did it already)."""
        if message.get("join"):
            self._remember_group(message["join"])
            track = getattr(self.channel_layer, "track_group", None)
            if track is not None:  # the layer's watchdog checks the groups this process is in
                track(message["join"], self.channel_name)
        if message.get("leave"):
            self._joined.discard(message["leave"])
            untrack = getattr(self.channel_layer, "untrack_group", None)
            if untrack is not None:
                untrack(message["leave"], self.channel_name)

    def _remember_group(self, group: str) -> None:
        self._joined.add(group)
        if self._group_keeper is None:
            self._group_keeper = self._spawn(self._keep_groups())
            _rejoin_after_reconnects(self)

    async def _keep_groups(self) -> None:
        # Channel layers drop members group_expiry seconds after they joined (one day by
        # default); a connection that lives longer joins again halfway through.
        interval = getattr(self.channel_layer, "group_expiry", 86400) / 2
        while True:
            await asyncio.sleep(interval)
            await self._rejoin_groups()

    async def _rejoin_groups(self) -> None:
        # Joined groups go through groups.join, which keeps the layer's record of them too (a
        # restarted or flushed Redis forgot both); Channels' `groups` leave with the consumer.
        limit = get_config().max_groups
        for group in {*self.groups, *self._joined}:
            try:
                if group in self._joined:
                    await groups.join(self.channel_layer, group, self.channel_name, limit=limit)
                else:
                    await self.channel_layer.group_add(group, self.channel_name)
            except Exception as exc:
                logger.warning("could not renew membership of %s: %s", group, exc)

    async def _leave_groups(self) -> None:
        """Leave every group, including those a method of ours joins after this moment."""
        if self._group_keeper is not None:
            self._group_keeper.cancel()
        left: list[str] = []
        try:
            left = await groups.close(
                self.channel_layer, self.channel_name, ttl=self._late_join_window()
            )
        except Exception as exc:
            logger.warning(
                "could not close the group memberships of %s: %r", self.channel_name, exc
            )
        for group in self._joined.difference(left):  # heard of, but not recorded by the layer
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception as exc:
                logger.warning("could not leave %s: %s", group, exc)
        self._joined.clear()

    def _note_late_joins(self, timeout: float | None) -> None:
        """Remember how long a call of ours may run: it may join a group until it ends."""
        longest = getattr(self.channel_layer, "group_expiry", 86400) if timeout is None else timeout
        self._late_joins = max(self._late_joins, longest)

    def _late_join_window(self) -> float:
        if not self._late_joins:
            return 0.0  # nothing was ever sent to a worker: no join can come after the close
        window = self._queue_expiry() + self._late_joins + get_config().reply_grace
        return float(min(window, getattr(self.channel_layer, "group_expiry", 86400)))

    # ----------------------------------------------------------------------------------------
    # Answers

    async def rpc_response(self, message: dict[str, Any]) -> None:
        """A worker's answer: write it (or its completed batch) unless the call was settled."""
        if message.get("v") != VERSION:
            logger.error("ignoring an rpc.response of version %r", message.get("v"))
            return
        pending = self._pending.take(message["call"])
        if pending is None:
            return  # answered already (deadline) or from before this connection: drop
        _cancel_timer(pending)
        ok, body = message["ok"], message["body"]
        frame = (
            error_frame(pending.id_json, body)
            if not ok
            else await self._result_frame(pending, body)
        )
        out = pending.route(self._fit(pending.id_json, frame))
        if out is not None:
            await self._write(out)

    async def rpc_taken(self, message: dict[str, Any]) -> None:
        """A worker took a request sent with ``ack``: a notification, or a call without limit."""
        pending = self._pending.get(message["ack"])
        if pending is None:
            return
        _cancel_timer(pending)
        pending.timer = None
        if pending.is_notification:
            self._pending.take(pending.token)  # its in-flight slot is free again

    async def rpc_push(self, message: dict[str, Any]) -> None:
        """A notification pushed to this connection from any process."""
        frame = message["body"]
        limit = get_config().max_response_size
        if (size := utf8_size(frame)) > limit:
            # Senders of this package refuse such pushes; writing one would fail anyway.
            logger.warning("dropping a push of %d bytes (MAX_RESPONSE_SIZE %d)", size, limit)
            return
        await self._write(frame)

    async def notify_channel(self, method: str, params: Any = None) -> None:
        """Send a JSON-RPC notification to this connection's client.

        Raises ``ResponseTooLargeError`` if it would exceed ``MAX_RESPONSE_SIZE``.
        """
        encoder = self.json_encoder_class or DjangoJSONEncoder
        frame = notification_frame(method, params, encoder=encoder)
        limit = get_config().max_response_size
        if (size := utf8_size(frame)) > limit:
            raise ResponseTooLargeError(size, limit, what="push")
        await self._write(frame)

    def _expire(self, token: int) -> None:
        pending = self._pending.take(token)
        if pending is None:
            return
        error = error_object(
            JsonRpcErrorCode.DEADLINE_EXCEEDED,
            f"Deadline Exceeded: no answer within {pending.timeout:.1f} seconds",
            {"timeout": pending.timeout, "queue": pending.queue},
        )
        frame = pending.route(error_frame(pending.id_json, encode_error(error)))
        if frame is not None:
            self._spawn(self._write(frame))
        _report_unanswered(pending)
        # Still queued (no worker took it in time): take it back rather than leave it to expire.
        self._spawn(self._revoke([pending], everything=False))

    def _unclaimed(self, token: int) -> None:
        """No worker took the request before the queue's expiry: it will never run."""
        pending = self._pending.take(token)
        if pending is None:
            return
        _report_unanswered(pending)
        self._spawn(self._revoke([pending], everything=False))
        if pending.is_notification:
            return
        wait = self._queue_expiry()
        reason = f"no worker took the call within {wait:.0f} seconds"
        error = error_object(
            JsonRpcErrorCode.SERVICE_UNAVAILABLE,
            f"Service Unavailable: {reason}",
            {"queue": pending.queue, "reason": reason},
        )
        frame = pending.route(error_frame(pending.id_json, encode_error(error)))
        if frame is not None:
            self._spawn(self._write(frame))

    def _queue_expiry(self) -> float:
        """Seconds a request may wait in its queue before the layer drops it."""
        return float(getattr(self.channel_layer, "expiry", 60))

    def _fit(self, id_json: str, frame: str) -> str:
        """``frame``, or a -32014 answer for its id if it exceeds ``MAX_RESPONSE_SIZE``.

        Workers of this package never send such answers; a result rewritten by
        ``process_response`` middleware, or ``rpc.discover`` in a batch, might.
        """
        limit = get_config().max_response_size
        if (size := utf8_size(frame)) <= limit:
            return frame
        logger.warning("answer of %d bytes over MAX_RESPONSE_SIZE (%d): -32014", size, limit)
        return too_large_frame(id_json, size, limit)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _write(self, frame: str) -> None:
        """Write a frame unless the socket is closing; if the server refuses it, close.

        A socket that takes no more frames must not stay open: its client would wait forever
        for answers while pings still succeed. So a failed write closes it (4011); when the
        peer is gone already, the close is a no-op and websocket.disconnect cleans up.
        """
        if self._closing:
            return
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

    def _local_result(self, rpc_id: Any, result: Any, batch: Batch | None) -> str | None:
        id_json = encode_id(rpc_id)
        frame = self._fit(id_json, result_frame(id_json, dumps(result, DjangoJSONEncoder)))
        return batch.add(frame, id_json) if batch is not None else frame

    def _local_answer(self, rpc_id: Any, error: dict[str, Any], batch: Batch | None) -> str | None:
        id_json = encode_id(rpc_id)
        frame = self._fit(id_json, error_frame(id_json, encode_error(error)))
        return batch.add(frame, id_json) if batch is not None else frame

    async def _send_error(self, rpc_id: Any, error: dict[str, Any]) -> None:
        await self._write(error_frame(encode_id(rpc_id), encode_error(error)))

    # ----------------------------------------------------------------------------------------
    # Middleware (the protocol of channels-rpc 1.0.1)

    async def _apply_request_middleware(
        self, request: Request, config: RpcConfig, text: str | None
    ) -> tuple[Request, str | None]:
        if not self.middleware:
            return request, text
        data: Any = request.data
        for middleware in self.middleware:
            hook = getattr(middleware, "process_request", None)
            if hook is None:
                continue
            data = await _run_hook(hook, data, self)
            if data is None:
                raise JsonRpcError(
                    None, JsonRpcErrorCode.INVALID_REQUEST, message="Request rejected by middleware"
                )
        # Validated again even when the same object comes back: it may have been changed in place.
        checked = validate(data, config.limits)
        if isinstance(checked, Rejection):
            raise JsonRpcError(
                None,
                checked.error["code"],
                checked.error.get("data"),
                message=checked.error["message"],
            )
        return checked, None

    async def _result_frame(self, pending: Pending, body: str) -> str:
        frame = result_frame(pending.id_json, body)
        hooks = [
            m.process_response
            for m in reversed(self.middleware or ())
            if hasattr(m, "process_response")
        ]
        if not hooks:
            return frame
        try:
            response = json.loads(frame)
        except RecursionError:  # nested deeper than this process can decode: answer, not crash
            logger.error("result of %r too deeply nested for process_response", pending.method)
            return _internal_error(pending.id_json)
        for hook in hooks:
            try:
                response = await _maybe_await(hook(response, self))
            except Exception:
                logger.exception("process_response of %r raised; keeping the response", hook)
        try:
            return dumps(response, self.json_encoder_class)
        except (TypeError, ValueError, RecursionError) as exc:
            logger.error("process_response made an answer that is not JSON: %r", exc)
            return _internal_error(pending.id_json)

    # ----------------------------------------------------------------------------------------
    # Helpers

    def _runs_inline(self, config: RpcConfig) -> bool:
        if config.execution == "auto":
            return isinstance(self.channel_layer, InMemoryChannelLayer)
        return config.execution == "inline"

    def _queues(self) -> set[str]:
        default = get_config().default_queue
        table = registry.table_of(type(self))
        return {default} | {spec.queue or default for spec in (table.specs() if table else ())}

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
        if not isinstance(self.scope, dict):
            raise ValueError("Scope must be a dict")
        if self.scope.get("type") not in ("websocket", "websocket.receive", "websocket.disconnect"):
            logger.warning("unexpected scope type %r", self.scope.get("type"))
        client = self.scope.get("client")
        if client is not None and not (isinstance(client, (list, tuple)) and len(client) == 2):
            logger.warning("malformed client in scope: %r", client)


def portable_scope(scope: Mapping[str, Any], *, subprotocol: str | None = None) -> dict[str, Any]:
    """What of a connection's scope travels with its calls: no cookies, headers or objects.

    Of the subprotocols the client offered, only ``subprotocol`` (the one accepted) travels:
    clients that cannot set headers (browsers) offer credentials as subprotocols
    (``bearer.<token>``), and credentials never leave the front-end.
    """
    route = scope.get("url_route") or {}
    portable: dict[str, Any] = {
        "type": scope.get("type"),
        "path": scope.get("path"),
        "query_string": bytes(scope.get("query_string", b"")).decode("latin-1"),
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "subprotocols": [subprotocol] if subprotocol else [],
        "url_route": {
            "args": [str(arg) for arg in route.get("args", ())],
            "kwargs": {str(k): str(v) for k, v in route.get("kwargs", {}).items()},
        },
        "user": _portable_user(scope.get("user")),
    }
    session = scope.get("session")
    if session is not None:
        portable["session_key"] = getattr(session, "session_key", None)
    return portable


def _portable_user(user: Any) -> dict[str, Any] | None:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return {"pk": str(user.pk)}


def _describe(spec: MethodSpec, *, transports: bool = False) -> dict[str, Any]:
    info = spec.info()
    entry: dict[str, Any] = {
        "name": info.name,
        "signature": info.signature,
        "doc": info.docstring,
        "accepts_context": info.accepts_context,
    }
    if transports:
        entry["transports"] = [name for name, on in info.transport_options.items() if on]
    return entry


_group_members: weakref.WeakSet[AsyncJsonRpcWebsocketConsumer] = weakref.WeakSet()
_watched_layers: weakref.WeakSet[Any] = weakref.WeakSet()


def _rejoin_after_reconnects(consumer: AsyncJsonRpcWebsocketConsumer) -> None:
    """Have ``consumer`` join its groups again as soon as its layer gets Redis back."""
    _group_members.add(consumer)
    layer = consumer.channel_layer
    on_reconnect = getattr(layer, "on_reconnect", None)
    if on_reconnect is not None and layer not in _watched_layers:
        _watched_layers.add(layer)
        on_reconnect(functools.partial(_rejoin_all, weakref.ref(layer)))


def _rejoin_all(layer_ref: weakref.ref[Any]) -> None:
    for member in list(_group_members):
        if member.channel_layer is layer_ref() and not member._closing:
            member._spawn(member._rejoin_groups())


_breakers: weakref.WeakKeyDictionary[Any, Breaker] = weakref.WeakKeyDictionary()


def _breaker(layer: Any) -> Breaker:
    """One breaker per channel layer: every connection of the process learns of an outage."""
    breaker = _breakers.get(layer)
    if breaker is None:
        breaker = _breakers[layer] = Breaker(cooldown=1.0)
    return breaker


_unanswered = Unanswered(interval=60.0)


def _report_unanswered(pending: Pending) -> None:
    """Warn, at most once a minute per queue, that requests on it went unanswered.

    Without it a missing worker shows only as clients waiting out their timeouts: no worker
    logs what it never received.
    """
    report = _unanswered.expired(pending.queue, pending.method)
    if report is None:
        return
    count, method = report
    logger.warning(
        "%d %s on queue %s got no answer from a worker in time (e.g. %r): "
        "is an rpcworker serving %s?",
        count,
        "request" if count == 1 else "requests",
        pending.queue,
        method,
        pending.queue,
    )


def _busy(queue: str, reason: str) -> JsonRpcError:
    return JsonRpcError(None, JsonRpcErrorCode.SERVER_BUSY, {"queue": queue, "reason": reason})


def _too_many_groups(limit: int) -> JsonRpcError:
    data = {"reason": "connection is in too many groups", "limit": limit}
    return JsonRpcError(None, JsonRpcErrorCode.SERVER_BUSY, data)


def _internal_error(id_json: str) -> str:
    return error_frame(id_json, encode_error(error_object(JsonRpcErrorCode.INTERNAL_ERROR)))


#: The members of a request object that a worker needs; anything else stays here.
_REQUEST_MEMBERS = frozenset({"jsonrpc", "method", "params", "id"})


def _bare(request: Request) -> bool:
    """Whether the request object holds only the members a worker needs."""
    return _REQUEST_MEMBERS.issuperset(request.data)


def _request_body(request: Request) -> str:
    """The request as the worker needs it: unknown members are not queued."""
    return dumps({key: value for key, value in request.data.items() if key in _REQUEST_MEMBERS})


def _cancel_timer(pending: Pending) -> None:
    if pending.timer is not None:
        pending.timer.cancel()


def _utf8_or_none(data: bytes | None) -> str | None:
    try:
        return (data or b"").decode("utf-8")
    except UnicodeDecodeError:
        return None


def _invalid_request(field: str) -> dict[str, Any]:
    return error_object(JsonRpcErrorCode.INVALID_REQUEST, data={"field": field})


async def _run_hook(hook: Callable[..., Any], data: Any, consumer: Any) -> Any:
    try:
        return await _maybe_await(hook(data, consumer))
    except JsonRpcError:
        raise
    except Exception as exc:
        logger.exception("process_request of %r raised", hook)
        raise JsonRpcError(
            None, JsonRpcErrorCode.INTERNAL_ERROR, message="Middleware error occurred"
        ) from exc


async def _maybe_await(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future) else value
