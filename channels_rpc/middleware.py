"""Middleware: objects with ``process_request`` and/or ``process_response`` (sync or async).

Set ``middleware = [...]`` on a consumer class. In the front-end, for every request (each batch
element on its own):

* ``process_request(data, consumer)`` runs in list order on the validated request object and
  returns it (possibly changed, then validated again) or None to reject it with -32600
  "Request rejected by middleware". Raising ``JsonRpcError`` answers with that error; raising
  anything else answers -32603 "Middleware error occurred".
* ``process_response(response, consumer)`` runs in reverse order on successful responses and
  returns the response to send; if it raises, the response it was given is kept.

:func:`apply_request` and :func:`apply_response` are how the front-end runs them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode, error_object
from channels_rpc.logsafe import protect
from channels_rpc.protocol import (
    Rejection,
    Request,
    RpcLimits,
    dumps,
    encode_error,
    error_frame,
    result_frame,
    validate,
)

__all__ = ["LoggingMiddleware", "RpcMiddleware"]

# The front-end's records, under the front-end's logger name.
logger = protect(logging.getLogger("channels_rpc"))

_MAX_TIMED = 1024  # start times kept per connection


class RpcMiddleware(Protocol):
    def process_request(self, data: dict[str, Any], consumer: Any) -> dict[str, Any] | None: ...

    def process_response(self, response: dict[str, Any], consumer: Any) -> dict[str, Any]: ...


class LoggingMiddleware:
    """Logs each call (INFO) and each successful response with its round-trip time (DEBUG)."""

    def __init__(
        self, logger_name: str = "channels_rpc.middleware", *, log_params: bool = False
    ) -> None:
        self.logger = logging.getLogger(logger_name)
        self.log_params = log_params
        self._started: weakref.WeakKeyDictionary[Any, dict[str, float]] = (
            weakref.WeakKeyDictionary()
        )

    def process_request(self, data: dict[str, Any], consumer: Any) -> dict[str, Any]:
        rpc_id = data.get("id", "notification")
        if self.log_params:
            self.logger.info(
                "RPC call: method=%r id=%r params=%r",
                data.get("method"),
                rpc_id,
                data.get("params"),
            )
        else:
            self.logger.info("RPC call: method=%r id=%r", data.get("method"), rpc_id)
        if "id" in data:
            started = self._started.setdefault(consumer, {})
            if len(started) >= _MAX_TIMED:  # errors never reach process_response: forget the oldest
                del started[next(iter(started))]
            started[repr(data["id"])] = time.monotonic()
        return data

    def process_response(self, response: dict[str, Any], consumer: Any) -> dict[str, Any]:
        started = self._started.get(consumer, {}).pop(repr(response.get("id")), None)
        elapsed = f"{(time.monotonic() - started) * 1000:.1f} ms" if started is not None else "?"
        self.logger.debug("RPC response: id=%r in %s", response.get("id"), elapsed)
        return response


async def apply_request(
    middleware: Sequence[Any], request: Request, consumer: Any, limits: RpcLimits
) -> Request:
    """The request after every ``process_request``; raises ``JsonRpcError`` to answer it."""
    data: Any = request.data
    for item in middleware:
        hook = getattr(item, "process_request", None)
        if hook is None:
            continue
        data = await _run_hook(hook, data, consumer)
        if data is None:
            raise JsonRpcError(
                None, JsonRpcErrorCode.INVALID_REQUEST, message="Request rejected by middleware"
            )
    # Validated again even when the same object comes back: it may have been changed in place.
    checked = validate(data, limits)
    if isinstance(checked, Rejection):
        raise JsonRpcError(
            None,
            checked.error["code"],
            checked.error.get("data"),
            message=checked.error["message"],
        )
    return checked


async def apply_response(
    middleware: Sequence[Any],
    id_json: str,
    body: str,
    consumer: Any,
    *,
    method: str,
    encoder: type[json.JSONEncoder] | None,
) -> str:
    """The result frame of the call ``id_json`` with result ``body``, after process_response."""
    frame = result_frame(id_json, body)
    hooks = [m.process_response for m in reversed(middleware) if hasattr(m, "process_response")]
    if not hooks:
        return frame
    try:
        response = json.loads(frame)
    except RecursionError:  # nested deeper than this process can decode: answer, not crash
        logger.error("result of %r too deeply nested for process_response", method)
        return _internal_error(id_json)
    for hook in hooks:
        try:
            response = await _maybe_await(hook(response, consumer))
        except Exception:
            logger.exception("process_response of %r raised; keeping the response", hook)
    try:
        return dumps(response, encoder)
    except (TypeError, ValueError, RecursionError) as exc:
        logger.error("process_response made an answer that is not JSON: %r", exc)
        return _internal_error(id_json)


def _internal_error(id_json: str) -> str:
    return error_frame(id_json, encode_error(error_object(JsonRpcErrorCode.INTERNAL_ERROR)))


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
