"""Middleware: objects with ``process_request`` and/or ``process_response`` (sync or async).

Set ``middleware = [...]`` on a consumer class. In the front-end, for every request (each batch
element on its own):

* ``process_request(data, consumer)`` runs in list order on the validated request object and
  returns it (possibly changed, then validated again) or None to reject it with -32600
  "Request rejected by middleware". Raising ``JsonRpcError`` answers with that error; raising
  anything else answers -32603 "Middleware error occurred".
* ``process_response(response, consumer)`` runs in reverse order on successful responses and
  returns the response to send; if it raises, the response it was given is kept.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any, Protocol

__all__ = ["LoggingMiddleware", "RpcMiddleware"]

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
