"""JSON-RPC error codes and the exception methods raise to answer with an error.

    Exception
     └── JsonRpcError                 code + optional message + data, answered as a JSON-RPC error
          ├── RequestTooLargeError    -32001, a size limit was exceeded
          └── ResponseTooLargeError   -32014, an answer or push too large for the transport

Codes keep the values of channels-rpc 1.0.1 and add the server codes this package answers with
(-32010..-32014) and LSP's -32800 for cancelled requests. Base messages keep 1.0.1's wording
("Method Not Found"), because clients of 1.0.1 may match on them; the JSON-RPC spec leaves the
text free.
"""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any

__all__ = [
    "RPC_ERRORS",
    "JsonRpcError",
    "JsonRpcErrorCode",
    "RequestTooLargeError",
    "ResponseTooLargeError",
    "error_object",
    "generate_error_response",
]


class JsonRpcErrorCode(IntEnum):
    """Error codes: the JSON-RPC 2.0 ones, then the server range (-32099..-32000)."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603

    GENERIC_APPLICATION_ERROR = -32000
    REQUEST_TOO_LARGE = -32001
    SERVER_BUSY = -32010
    SERVICE_UNAVAILABLE = -32011
    DEADLINE_EXCEEDED = -32012
    UNAUTHORIZED = -32013
    RESPONSE_TOO_LARGE = -32014
    SESSION_NOT_FOUND = -32015

    PARSE_RESULT_ERROR = -32701
    REQUEST_CANCELLED = -32800


RPC_ERRORS: dict[int, str] = {
    JsonRpcErrorCode.PARSE_ERROR: "Parse Error",
    JsonRpcErrorCode.INVALID_REQUEST: "Invalid Request",
    JsonRpcErrorCode.METHOD_NOT_FOUND: "Method Not Found",
    JsonRpcErrorCode.INVALID_PARAMS: "Invalid Params",
    JsonRpcErrorCode.INTERNAL_ERROR: "Internal Error",
    JsonRpcErrorCode.GENERIC_APPLICATION_ERROR: "Application Error",
    JsonRpcErrorCode.REQUEST_TOO_LARGE: "Request Too Large",
    JsonRpcErrorCode.SERVER_BUSY: "Server Busy",
    JsonRpcErrorCode.SERVICE_UNAVAILABLE: "Service Unavailable",
    JsonRpcErrorCode.DEADLINE_EXCEEDED: "Deadline Exceeded",
    JsonRpcErrorCode.UNAUTHORIZED: "Unauthorized",
    JsonRpcErrorCode.RESPONSE_TOO_LARGE: "Response Too Large",
    JsonRpcErrorCode.SESSION_NOT_FOUND: "Session Not Found",
    JsonRpcErrorCode.PARSE_RESULT_ERROR: "Error while parsing result",
    JsonRpcErrorCode.REQUEST_CANCELLED: "Request Cancelled",
}


def _base_message(code: int) -> str:
    if code in RPC_ERRORS:
        return RPC_ERRORS[code]
    return "Server Error" if -32099 <= code <= -32000 else "Error"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _detailed_message(code: int, data: Any) -> str:
    """The base message, extended from ``data`` by the rules of channels-rpc 1.0.1."""
    message = _base_message(code)
    if not data or not isinstance(data, dict):
        return message
    if code == JsonRpcErrorCode.METHOD_NOT_FOUND and data.get("method"):
        return f"{message}: '{data['method']}'"
    if code == JsonRpcErrorCode.INVALID_REQUEST:
        if "version" in data:
            return f"{message}: Invalid JSON-RPC version '{data['version']}', expected '2.0'"
        if "field" in data:
            return f"{message}: {data['field']}"
    if code == JsonRpcErrorCode.INVALID_PARAMS and "expected" in data and "actual" in data:
        return f"{message}: Expected {data['expected']}, got {data['actual']}"
    if code == JsonRpcErrorCode.REQUEST_TOO_LARGE:
        limit_type = data.get("limit_type", "unknown")
        limit = data.get("limit", "unknown")
        return f"{message}: {limit_type} exceeds limit of {limit}"
    if code == JsonRpcErrorCode.RESPONSE_TOO_LARGE and "size" in data and "limit" in data:
        return f"{message}: {data['size']} bytes, over the limit of {data['limit']}"
    timeout = data.get("timeout")
    if code == JsonRpcErrorCode.INTERNAL_ERROR and _is_number(timeout):
        return f"{message}: Method execution timed out after {timeout:.1f} seconds"
    return message


def error_object(code: int, message: str | None = None, data: Any = None) -> dict[str, Any]:
    """The ``error`` member of a response: ``{"code", "message"[, "data"]}``."""
    error: dict[str, Any] = {
        "code": int(code),
        "message": message if message is not None else _detailed_message(code, data),
    }
    if data is not None:
        error["data"] = data
    return error


def generate_error_response(
    rpc_id: Any, code: int, message: str, data: Any = None
) -> dict[str, Any]:
    """A whole error response as a dict (kept from channels-rpc 1.0.1)."""
    return {"jsonrpc": "2.0", "id": rpc_id, "error": error_object(code, message, data)}


class JsonRpcError(Exception):
    """Raise from a method to answer the call with a JSON-RPC error.

    ``JsonRpcError(rpc_id, code, data=None, *, message=None)``: the positional form is the one of
    channels-rpc 1.0.1. The response always carries the id of the request being answered;
    ``rpc_id`` only matters for :meth:`as_dict`. Any integer code works; without ``message`` the
    text comes from :data:`RPC_ERRORS` and ``data``, as it did in 1.0.1.
    """

    def __init__(
        self, rpc_id: Any, code: int, data: Any = None, *, message: str | None = None
    ) -> None:
        super().__init__(rpc_id, code, data)
        self.rpc_id = rpc_id
        self.code = int(code)
        self.data = data
        self.message = message

    def error(self) -> dict[str, Any]:
        """The ``error`` member this exception answers with."""
        return error_object(self.code, self.message, self.data)

    def as_dict(self) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": self.rpc_id, "error": self.error()}

    def __str__(self) -> str:
        return json.dumps(self.as_dict(), default=repr)


class RequestTooLargeError(JsonRpcError):
    """A request exceeded one of the size limits (``limit_type`` names which)."""

    def __init__(self, rpc_id: Any, limit_type: str, limit_value: int) -> None:
        super().__init__(
            rpc_id,
            JsonRpcErrorCode.REQUEST_TOO_LARGE,
            {"limit_type": limit_type, "limit": limit_value},
        )
        self.limit_type = limit_type
        self.limit_value = limit_value


class ResponseTooLargeError(JsonRpcError):
    """An answer or push would be larger than ``MAX_RESPONSE_SIZE`` bytes once encoded.

    Raised where the frame is encoded, before it crosses the channel layer: by the worker for a
    result (the call is answered with this error instead), and by ``notify_group`` and
    ``ctx.notify`` for a push (a method that does not catch it answers its call with it).
    """

    def __init__(self, size: int, limit: int, *, what: str = "response") -> None:
        super().__init__(
            None, JsonRpcErrorCode.RESPONSE_TOO_LARGE, {"size": size, "limit": limit, "what": what}
        )
        self.size = size
        self.limit = limit
