"""The JSON-RPC 2.0 wire format: frame text in, requests or rejections out; responses as text.

No I/O and no Django here. Every input gives a value, never an exception: a frame decodes to one
:class:`Request`, one :class:`Rejection` (answered with an error), or a batch list of both.

Hardening, in the order it is applied (each step guards the next one):

1. the size check runs on the text, before anything is parsed;
2. the nesting depth is bounded with a linear scan before ``json.loads`` could recurse;
3. ``json.loads`` rejects NaN, Infinity, numbers that overflow to infinity (all -32700),
   integers too long for ``int`` (-32700) and duplicate object keys (-32600, to avoid two
   parsers reading one message differently);
4. each request object is validated on its own: ``jsonrpc``, ``id`` (bool, array and object
   ids are invalid), ``method``, ``params`` (must be an array or an object when present), then
   the size limits of channels-rpc 1.0.1 on ``params``.

Responses are built as text around JSON fragments that were encoded once, where they were
produced (the result in the worker, the id here), so a reply is never decoded to be re-encoded.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from channels_rpc._json import dumps
from channels_rpc.exceptions import JsonRpcErrorCode, error_object

__all__ = [
    "MAX_ID_LENGTH",
    "JsonId",
    "Message",
    "Rejection",
    "Request",
    "RpcLimits",
    "dumps",
    "encode_error",
    "encode_id",
    "error_frame",
    "params_violation",
    "parse",
    "result_frame",
    "utf8_size",
    "validate",
]

JsonId: TypeAlias = str | int | float | None
Params: TypeAlias = list[Any] | dict[str, Any]

#: Ids longer than this (as text) are refused, as in channels-rpc 1.0.1.
MAX_ID_LENGTH: Final = 256
_ID_INT_CEILING: Final = 10**MAX_ID_LENGTH  # the first integer whose text is too long


@dataclass(frozen=True, slots=True)
class RpcLimits:
    """Size limits applied to every frame (the ``CHANNELS_RPC`` keys in capitals)."""

    max_message_size: int = 512 * 1024
    max_array_length: int = 10_000
    max_string_length: int = 1024 * 1024
    max_nesting_depth: int = 20
    max_method_name_length: int = 256
    max_batch_size: int = 100


@dataclass(frozen=True, slots=True)
class Request:
    """A valid request object. ``is_notification`` is true when the ``id`` member is absent."""

    method: str
    params: Params
    id: JsonId
    is_notification: bool
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message or batch element answered with ``error`` and ``id`` without being dispatched.

    ``answer`` is false only for well-formed notifications (over a size limit): the spec forbids
    answering a notification, while an invalid request is answered even without an id.
    """

    error: dict[str, Any]
    id: JsonId = None
    answer: bool = True


Message: TypeAlias = Request | Rejection | list[Request | Rejection]


# --------------------------------------------------------------------------------------------
# Parsing


class _DuplicateKeyError(ValueError):
    pass


class _NonStandardNumberError(ValueError):
    pass


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return obj


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonStandardNumberError(f"number out of range: {text[:32]}")
    return value


def _no_constant(name: str) -> Any:
    raise _NonStandardNumberError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates,
    parse_float=_finite_float,
    parse_constant=_no_constant,
)

# A string token (so brackets inside strings are skipped) or one bracket. The closing quote is
# optional so that an unterminated string is consumed once, to the end, instead of being
# rescanned from each of its quotes (quadratic time on '"\\"\\"...').
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]')


def _too_deep(text: str, openers: int, limit: int) -> bool:
    """Whether brackets nest deeper than ``limit``; linear, and skipped for shallow frames."""
    if openers <= limit:
        return False
    depth = 0
    for token in _STRUCTURE.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _oversize(text: str, limit: int) -> int | None:
    """The frame's size in UTF-8 bytes when it exceeds ``limit``, else None."""
    # A character takes 1 to 4 bytes, so most frames are decided without encoding them.
    if 4 * len(text) <= limit:
        return None
    size = len(text.encode("utf-8", "surrogatepass"))
    return size if size > limit else None


def _too_large(limit_type: str, limit: int, **extra: Any) -> dict[str, Any]:
    return error_object(
        JsonRpcErrorCode.REQUEST_TOO_LARGE, data={"limit_type": limit_type, "limit": limit, **extra}
    )


def parse(text: str, limits: RpcLimits) -> Message:
    """Decode and validate one WebSocket text frame."""
    size = _oversize(text, limits.max_message_size)
    if size is not None:
        return Rejection(
            error_object(
                JsonRpcErrorCode.REQUEST_TOO_LARGE,
                f"Message size {size} exceeds limit of {limits.max_message_size} bytes",
                {"limit_type": "message_size", "limit": limits.max_message_size},
            )
        )
    openers = text.count("[") + text.count("{")
    # A batch array, a request object and the params container sit above the params' own levels.
    if _too_deep(text, openers, limits.max_nesting_depth + 3):
        return Rejection(_too_large("nesting_depth", limits.max_nesting_depth))
    try:
        document = _decoder.decode(text)
    except _DuplicateKeyError as exc:
        return Rejection(
            error_object(
                JsonRpcErrorCode.INVALID_REQUEST,
                data={"field": f"Duplicate key {str(exc)[:64]!r} in object"},
            )
        )
    except (ValueError, RecursionError) as exc:
        return Rejection(error_object(JsonRpcErrorCode.PARSE_ERROR, data={"error": str(exc)[:200]}))
    check_params = (
        len(text) > limits.max_string_length
        or len(text) >= 2 * limits.max_array_length
        or openers > limits.max_nesting_depth
    )
    return _dispatch_shape(document, limits, check_params)


def _dispatch_shape(document: Any, limits: RpcLimits, check_params: bool) -> Message:
    if not isinstance(document, list):
        return validate(document, limits, check_params=check_params)
    if not document:
        return Rejection(
            error_object(JsonRpcErrorCode.INVALID_REQUEST, data={"field": "Empty batch"})
        )
    if len(document) > limits.max_batch_size:
        return Rejection(_too_large("batch_size", limits.max_batch_size))
    return [validate(item, limits, check_params=check_params) for item in document]


# --------------------------------------------------------------------------------------------
# Validation of one request object


def _invalid(field: str, rpc_id: JsonId = None) -> Rejection:
    return Rejection(error_object(JsonRpcErrorCode.INVALID_REQUEST, data={"field": field}), rpc_id)


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool))


def validate(obj: Any, limits: RpcLimits, *, check_params: bool = True) -> Request | Rejection:
    """Validate one decoded request object (a whole frame or one batch element).

    ``check_params=False`` skips the walk over ``params`` when the caller knows from the frame's
    length and bracket count that no limit can be broken (a string of N characters needs N
    characters of frame, an array of N items about 2N, a depth of N at least N brackets).
    """
    if not isinstance(obj, dict):
        return _invalid(f"Request must be an object, got {_json_type(obj)}")
    rejection = (
        _id_problem(obj) or _member_problem(obj) or _limit_problem(obj, limits, check_params)
    )
    if rejection is not None:
        return rejection
    return Request(obj["method"], obj.get("params", {}), obj.get("id"), "id" not in obj, obj)


def _id_problem(obj: dict[str, Any]) -> Rejection | None:
    rpc_id = obj.get("id")
    if not _valid_id(rpc_id):
        return _invalid(f"'id' must be a string, number or null, got {_json_type(rpc_id)}")
    if "id" in obj and _id_too_long(rpc_id):
        message = f"Request ID too long (max: {MAX_ID_LENGTH} chars)"
        return Rejection(error_object(JsonRpcErrorCode.INVALID_REQUEST, message))
    return None


def _id_too_long(rpc_id: JsonId) -> bool:
    if isinstance(rpc_id, int):
        # Compared, not converted: str() refuses integers of more than 4,300 digits.
        return rpc_id >= _ID_INT_CEILING or rpc_id <= -_ID_INT_CEILING // 10
    return len(str(rpc_id)) > MAX_ID_LENGTH


def _member_problem(obj: dict[str, Any]) -> Rejection | None:
    """``jsonrpc``, ``method`` and ``params``; the id is known to be valid by now."""
    rpc_id = obj.get("id")
    version = obj.get("jsonrpc")
    if version != "2.0" or not isinstance(version, str):
        shown = (
            version if isinstance(version, (str, int, float, type(None))) else _json_type(version)
        )
        error = error_object(JsonRpcErrorCode.INVALID_REQUEST, data={"version": _clip(shown)})
        return Rejection(error, rpc_id)
    if "method" not in obj:
        return _invalid("Missing required 'method' field", rpc_id)
    if not isinstance(obj["method"], str):
        return _invalid(f"'method' must be a string, got {_python_type(obj['method'])}", rpc_id)
    params = obj.get("params", {})
    if not isinstance(params, (list, dict)):
        return _invalid(f"'params' must be an array or an object, got {_json_type(params)}", rpc_id)
    return None


def _limit_problem(obj: dict[str, Any], limits: RpcLimits, check_params: bool) -> Rejection | None:
    rpc_id, has_id = obj.get("id"), "id" in obj
    if len(obj["method"]) > limits.max_method_name_length:
        return _over_limit("method_name_length", limits.max_method_name_length, rpc_id, has_id)
    violation = params_violation(obj.get("params", {}), limits) if check_params else None
    if violation is not None:
        return _over_limit(*violation, rpc_id, has_id)
    return None


def _over_limit(limit_type: str, limit: int, rpc_id: JsonId, has_id: bool) -> Rejection:
    return Rejection(_too_large(limit_type, limit), rpc_id, answer=has_id)


def params_violation(params: Any, limits: RpcLimits) -> tuple[str, int] | None:
    """The first size limit ``params`` breaks, as ``(limit_type, limit)``, or None.

    Depth counts as in channels-rpc 1.0.1: ``params`` itself is at depth 0 and every list item,
    object key and object value one level below its container. Values are visited in document
    order (an explicit stack, not recursion), so the first violation is the one 1.0.1 reported.
    """
    stack: list[tuple[Any, int]] = [(params, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > limits.max_nesting_depth:
            return "nesting_depth", limits.max_nesting_depth
        if isinstance(value, str):
            if len(value) > limits.max_string_length:
                return "string_length", limits.max_string_length
        elif isinstance(value, list):
            if len(value) > limits.max_array_length:
                return "array_length", limits.max_array_length
            stack.extend((item, depth + 1) for item in reversed(value))
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                stack.append((item, depth + 1))
                stack.append((key, depth + 1))
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _python_type(value: Any) -> str:
    return type(value).__name__


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 32:
        return value[:32] + "..."
    return value


# --------------------------------------------------------------------------------------------
# Responses


def utf8_size(text: str) -> int:
    """The size of ``text`` in UTF-8 bytes, which is what a WebSocket frame cap counts."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def encode_id(rpc_id: JsonId) -> str:
    """The id as JSON text, ASCII-only so that lone surrogates survive the socket."""
    return json.dumps(rpc_id)


def encode_error(error: dict[str, Any]) -> str:
    """An error object as JSON text; data that is not JSON is dropped rather than failing."""
    try:
        return json.dumps(error, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        bare = {"code": error["code"], "message": str(error.get("message", ""))}
        return json.dumps(bare, separators=(",", ":"))


def result_frame(id_json: str, result_json: str) -> str:
    return '{"jsonrpc":"2.0","id":' + id_json + ',"result":' + result_json + "}"


def error_frame(id_json: str, error_json: str) -> str:
    return '{"jsonrpc":"2.0","id":' + id_json + ',"error":' + error_json + "}"
