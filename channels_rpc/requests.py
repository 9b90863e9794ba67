"""What a frame asks of the front-end, in order: parse, middleware, resolve, then a call.

:class:`RequestHandling` is the request half of
:class:`~channels_rpc.consumer.AsyncJsonRpcWebsocketConsumer`: a frame is parsed and validated
(:mod:`~channels_rpc.protocol`), each request answered here when it can be (protocol errors,
unknown or forbidden methods, wrong params, ``rpc.discover``, cancellations and the sessions'
own methods), else handed to :class:`~channels_rpc.sending.Calls`. What it returns is what to
write now; answers that come later are written by the consumer as they arrive.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final

from channels.db import database_sync_to_async
from django.core.serializers.json import DjangoJSONEncoder

from channels_rpc import decorators, registry
from channels_rpc.batches import Batch, answer_now
from channels_rpc.config import RpcConfig, get_config
from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode, error_object
from channels_rpc.logsafe import protect
from channels_rpc.middleware import apply_request
from channels_rpc.openrpc import add_sessions
from channels_rpc.pending import DuplicateId, TooManyInFlight
from channels_rpc.protocol import (
    Rejection,
    Request,
    dumps,
    encode_error,
    encode_id,
    error_frame,
    parse,
    result_frame,
)
from channels_rpc.registration import specs_of
from channels_rpc.registry import MethodSpec
from channels_rpc.scope import credentials_expired
from channels_rpc.session import ACK, RESUME, SESSION, SessionLink

if TYPE_CHECKING:
    from channels_rpc.guards import TokenBucket
    from channels_rpc.sending import Calls

__all__ = ["CANCEL_METHODS", "CLOSE_AUTH_EXPIRED", "DISCOVER", "RequestHandling"]

logger = protect(logging.getLogger("channels_rpc"))

#: Notifications that cancel a pending call: ours, and the Language Server Protocol's.
CANCEL_METHODS = frozenset({"rpc.cancel", "$/cancelRequest"})
#: The OpenRPC service discovery method.
DISCOVER = "rpc.discover"
#: The sessions' methods (docs/reference/sessions.md), served here on a layer that has sessions.
BUILTINS: Final = frozenset({SESSION, RESUME, ACK})
#: The close code once the credentials the connection was opened with have expired.
CLOSE_AUTH_EXPIRED = 4001


class RequestHandling:
    """Reads frames and answers what can be answered without a worker (see the module)."""

    # Provided by the consumer.
    scope: Any
    middleware: ClassVar[Sequence[Any] | None]
    _closing: bool
    _bucket: TokenBucket
    _calls: Calls
    _session: SessionLink | None

    if TYPE_CHECKING:  # the consumer's (stubs here would shadow Channels' in the MRO)

        async def _write(self, frame: str, *, numbered: bool = True) -> None: ...

        async def close(
            self, code: int | bool | None = None, reason: str | None = None
        ) -> None: ...

        async def _close_abusive(self, reason: str) -> None: ...

        async def _resumed(self, id_json: str) -> None: ...

        def openrpc_document(self, specs: list[MethodSpec]) -> dict[str, Any]: ...

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Handle one frame; never raises for anything a client sends."""
        if self._closing:
            return  # frames daphne had buffered before the close took effect
        text = text_data if text_data is not None else _utf8_or_none(bytes_data)
        if credentials_expired(self.scope):
            await self._close_expired(text or "")
            return
        if text is None:
            error = error_object(
                JsonRpcErrorCode.PARSE_ERROR, data={"error": "frame is not UTF-8 text"}
            )
            await self._send_error(None, error)
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

    async def _close_expired(self, text: str) -> None:
        """Answer the frame's call, if it is one, then close: the credentials ran out."""
        message = parse(text, get_config().limits)
        error = error_object(JsonRpcErrorCode.UNAUTHORIZED, data={"reason": "credentials expired"})
        if isinstance(message, Request) and not message.is_notification:
            await self._send_error(message.id, error)
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
            return self._local_error(item.id, error_object(JsonRpcErrorCode.INTERNAL_ERROR), batch)

    async def _dispatch_one(
        self, item: Request | Rejection, config: RpcConfig, batch: Batch | None, text: str | None
    ) -> str | None:
        if isinstance(item, Rejection):
            return self._local_error(item.id, item.error, batch) if item.answer else None
        if item.is_notification and item.method in CANCEL_METHODS:
            await self._calls.cancel(item.params)
            return None
        if item.method in BUILTINS and self._session is not None:
            return await self._session_request(self._session, item, config, batch)
        if not item.is_notification and item.method == DISCOVER and config.discovery:
            id_json, document = encode_id(item.id), dumps(await self._discover(), DjangoJSONEncoder)
            limit = config.max_response_size
            return answer_now(id_json, result_frame(id_json, document), batch, limit)
        try:
            request = item
            if self.middleware:
                request = await apply_request(self.middleware, item, self, config.limits)
                text = None  # the frame no longer says what the request is: it is re-encoded
            spec = await self._resolve(request)
            spec.bind(request.params)
        except JsonRpcError as exc:
            if item.is_notification:
                logger.info("notification %r dropped: %s", item.method, exc.error()["message"])
                return None
            return self._local_error(item.id, exc.error(), batch)
        if request.is_notification:
            await self._calls.notify(request, spec, text, config)
            return None
        try:
            return await self._calls.call(request, spec, text, config, batch)
        except (DuplicateId, TooManyInFlight) as exc:  # the pending table refused it
            return self._local_error(request.id, exc.error(), batch)

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
        # The worker and a direct call ask the same question (decorators.allowed).
        check = database_sync_to_async(decorators.allowed)
        try:
            allowed: bool = await check(self.scope.get("user"), spec.permissions)
        except Exception as exc:
            logger.exception("permission check for %r failed", spec.name)
            raise JsonRpcError(None, JsonRpcErrorCode.INTERNAL_ERROR) from exc
        return allowed

    async def _discover(self) -> dict[str, Any]:
        """What ``rpc.discover`` answers: only the methods this connection may call."""
        specs = [s for s in specs_of(type(self)) if s.websocket and await self._permitted(s)]
        document = self.openrpc_document(specs)
        return document if self._session is None else add_sessions(document)

    def _local_error(self, rpc_id: Any, error: dict[str, Any], batch: Batch | None) -> str | None:
        """An error answered here, the call never pending: what to write now."""
        id_json = encode_id(rpc_id)
        frame = error_frame(id_json, encode_error(error))
        return answer_now(id_json, frame, batch, get_config().max_response_size)

    async def _send_error(self, rpc_id: Any, error: dict[str, Any]) -> None:
        await self._write(error_frame(encode_id(rpc_id), encode_error(error)))

    async def _session_request(
        self, session: SessionLink, item: Request, config: RpcConfig, batch: Batch | None
    ) -> str | None:
        """``rpc.session``, ``rpc.resume`` and ``rpc.ack`` (docs/reference/sessions.md)."""
        if item.method == ACK:
            session.ack(item.params)
            return None
        if item.is_notification:
            return None
        id_json = encode_id(item.id)
        try:
            if item.method == SESSION:
                result = await session.open(config)
            elif batch is not None:
                raise JsonRpcError(
                    None,
                    JsonRpcErrorCode.SESSION_NOT_FOUND,
                    {"reason": "resume only as a single call, the first of its connection"},
                )
            else:
                await session.resume(item.params, config)
                await self._resumed(id_json)
                return None
        except JsonRpcError as exc:
            return self._local_error(item.id, exc.error(), batch)
        return answer_now(
            id_json, result_frame(id_json, dumps(result)), batch, config.max_response_size
        )


def _utf8_or_none(data: bytes | None) -> str | None:
    try:
        return (data or b"").decode("utf-8")
    except UnicodeDecodeError:
        return None
