"""An OpenRPC 1.3 document generated from the registry (what ``rpc.discover`` answers).

Methods are described from their signatures: each parameter becomes a content descriptor whose
JSON Schema comes from its type annotation, the return annotation becomes the result, and the
docstring's first line the summary. Client notifications (``rpc_notification``) are methods
without a result (OpenRPC 1.3: "MUST only be used as a notification") marked
``"x-notification": true``. What the server pushes is listed under ``x-notifications``, which
OpenRPC has no field for.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import decimal
import enum
import inspect
import types
import typing
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final

from channels_rpc.exceptions import RPC_ERRORS, JsonRpcErrorCode
from channels_rpc.registry import MethodSpec

__all__ = [
    "OPENRPC_VERSION",
    "PROGRESS",
    "add_sessions",
    "describe_api",
    "document",
    "for_consumer",
    "schema_for",
]

OPENRPC_VERSION: Final = "1.3.2"
#: The notification ``ctx.progress()`` sends, listed in every consumer's document.
PROGRESS: Final[Mapping[str, Any]] = {
    "description": "Progress of a pending call, sent before its answer (ctx.progress()).",
    "params": [
        {"name": "id", "required": True, "schema": {"type": ["string", "number", "null"]}},
        {"name": "progress", "required": True, "schema": {"type": "number"}},
        {"name": "total", "required": False, "schema": {"type": "number"}},
        {"name": "message", "required": False, "schema": {"type": "string"}},
    ],
}
_MAX_DEPTH: Final = 8  # nested annotations deeper than this are described as "any"

_SCALARS: Final[dict[Any, dict[str, Any]]] = {
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
    bytes: {"type": "string"},
    type(None): {"type": "null"},
    datetime.datetime: {"type": "string", "format": "date-time"},
    datetime.date: {"type": "string", "format": "date"},
    datetime.time: {"type": "string", "format": "time"},
    uuid.UUID: {"type": "string", "format": "uuid"},
    decimal.Decimal: {"type": "string"},  # how DjangoJSONEncoder writes it
}
# Generic aliases such as typing.Sequence[int] report the collections.abc class as their origin.
_ARRAYS: Final = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Set)

# Errors any call may be answered with, beyond its own JsonRpcErrors.
_CALL_ERRORS: Final = (
    JsonRpcErrorCode.INVALID_PARAMS,
    JsonRpcErrorCode.INTERNAL_ERROR,
    JsonRpcErrorCode.GENERIC_APPLICATION_ERROR,
    JsonRpcErrorCode.REQUEST_TOO_LARGE,
    JsonRpcErrorCode.SERVER_BUSY,
    JsonRpcErrorCode.SERVICE_UNAVAILABLE,
    JsonRpcErrorCode.DEADLINE_EXCEEDED,
    JsonRpcErrorCode.RESPONSE_TOO_LARGE,
    JsonRpcErrorCode.PARSE_RESULT_ERROR,
    JsonRpcErrorCode.REQUEST_CANCELLED,
)


def schema_for(annotation: Any, depth: int = 0) -> dict[str, Any]:
    """A JSON Schema for values of a type annotation ({} when it says nothing useful)."""
    if depth > _MAX_DEPTH or annotation in (inspect.Parameter.empty, Any, object):
        return {}
    if annotation in _SCALARS:
        return dict(_SCALARS[annotation])
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": [member.value for member in annotation]}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return {"enum": [arg.value if isinstance(arg, enum.Enum) else arg for arg in args]}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [schema_for(arg, depth + 1) for arg in args]}
    if origin is not None and (origin in _ARRAYS or _is_subclass(origin, _ARRAYS)):
        return _array(origin, args, depth)
    if annotation in _ARRAYS or annotation in (typing.Sequence, typing.AbstractSet):
        return {"type": "array"}
    if origin in (dict, typing.Mapping) or _is_subclass(origin, (Mapping,)):
        values = schema_for(args[1], depth + 1) if len(args) == 2 else {}
        return {"type": "object", "additionalProperties": values or True}
    if annotation in (dict, typing.Mapping):
        return {"type": "object"}
    return _structured(annotation, depth)


def _is_subclass(origin: Any, bases: tuple[Any, ...]) -> bool:
    return isinstance(origin, type) and issubclass(
        origin, tuple(b for b in bases if isinstance(b, type))
    )


def _array(origin: Any, args: tuple[Any, ...], depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array"}
    if origin is tuple and args and args[-1] is not Ellipsis:
        schema["items"] = [schema_for(arg, depth + 1) for arg in args]
    elif args:
        schema["items"] = schema_for(args[0], depth + 1)
    if origin in (set, frozenset) or _is_subclass(origin, (collections.abc.Set,)):
        schema["uniqueItems"] = True
    return schema


def _structured(annotation: Any, depth: int) -> dict[str, Any]:
    """TypedDicts and dataclasses as objects with properties; anything else as "any"."""
    if typing.is_typeddict(annotation):
        hints = _type_hints(annotation)
        required = sorted(annotation.__required_keys__)
    elif dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        hints = _type_hints(annotation)
        required = [
            f.name
            for f in dataclasses.fields(annotation)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
    else:
        return {}
    schema: dict[str, Any] = {
        "type": "object",
        "title": annotation.__name__,
        "properties": {name: schema_for(hint, depth + 1) for name, hint in hints.items()},
    }
    if required:
        schema["required"] = required
    return schema


def document(
    specs: Iterable[MethodSpec],
    *,
    info: Mapping[str, Any],
    server_notifications: Mapping[str, str | Mapping[str, Any]],
    default_queue: str = "rpc.default",
) -> dict[str, Any]:
    """The OpenRPC document for ``specs``."""
    doc: dict[str, Any] = {
        "openrpc": OPENRPC_VERSION,
        "info": dict(info),
        "methods": [_method(spec, default_queue) for spec in specs],
        "components": {"errors": {_error_key(code): _error(code) for code in _CALL_ERRORS}},
        "x-notifications": [
            _server_notification(name, about) for name, about in server_notifications.items()
        ],
        "x-cancellation": {"notifications": ["rpc.cancel", "$/cancelRequest"], "params": ["id"]},
    }
    return doc


def for_consumer(
    consumer: type[Any], specs: Iterable[MethodSpec], *, default_queue: str
) -> dict[str, Any]:
    """The document of a consumer class: its ``openrpc_info`` and ``server_notifications``."""
    notifications = {**consumer.server_notifications, "rpc.progress": PROGRESS}
    info = {"title": consumer.__name__, "version": "1.0.0", **consumer.openrpc_info}
    return document(
        specs, info=info, server_notifications=notifications, default_queue=default_queue
    )


_SESSION_FIELDS: Final[dict[str, Any]] = {
    "session": {"type": "string"},
    "window": {"type": "number"},
}
_SESSION: Final[dict[str, Any]] = {
    "type": "object",
    "properties": _SESSION_FIELDS,
    "required": ["session", "window"],
}
_ID_LIST: Final = {"type": "array", "items": {"type": ["string", "number"]}}
#: The sessions' methods (docs/sessions.md), published where the layer has sessions.
SESSION_METHODS: Final = (
    {
        "name": "rpc.session",
        "summary": "Open a session: this connection's calls and pushes outlive its socket.",
        "description": "From then on every frame carries 'seq'; acknowledge with rpc.ack.",
        "params": [],
        "result": {"name": "session", "schema": _SESSION},
    },
    {
        "name": "rpc.resume",
        "summary": "Take a session up on this new socket; the first call of the connection.",
        "description": "The frames not yet seen come first, then this answer, then live traffic.",
        "params": [
            {"name": "session", "required": True, "schema": {"type": "string"}},
            {"name": "seq", "required": True, "schema": {"type": "integer", "minimum": 0}},
        ],
        "paramStructure": "by-name",
        "result": {
            "name": "resumed",
            "schema": {
                **_SESSION,
                "properties": {**_SESSION_FIELDS, "running": _ID_LIST},
                "required": ["session", "window", "running"],
            },
        },
        "errors": [{"$ref": "#/components/errors/SESSION_NOT_FOUND"}],
    },
    {
        "name": "rpc.ack",
        "summary": "Acknowledge every frame up to 'seq' (a notification).",
        "params": [{"name": "seq", "required": True, "schema": {"type": "integer"}}],
        "paramStructure": "by-name",
        "x-notification": True,
    },
)


def add_sessions(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with the sessions' methods and their error (docs/sessions.md)."""
    doc["methods"] = [*doc["methods"], *SESSION_METHODS]
    code = JsonRpcErrorCode.SESSION_NOT_FOUND
    doc["components"]["errors"][_error_key(code)] = _error(code)
    return doc


def describe_api(consumer_name: str, specs: Iterable[MethodSpec]) -> dict[str, Any]:
    """channels-rpc 1.0.1's description of a consumer's methods (``describe_api()``)."""
    specs = list(specs)
    return {
        "jsonrpc": "2.0",
        "consumer": consumer_name,
        "methods": [_describe(spec, transports=True) for spec in specs if not spec.is_notification],
        "notifications": [_describe(spec) for spec in specs if spec.is_notification],
    }


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


def _method(spec: MethodSpec, default_queue: str) -> dict[str, Any]:
    hints = _hints(spec)
    summary, description = _docstring(spec.func)
    method: dict[str, Any] = {"name": spec.name, "params": _params(spec, hints)}
    if summary:
        method["summary"] = summary
    if description:
        method["description"] = description
    structure = _param_structure(spec.signature)
    if structure != "either":
        method["paramStructure"] = structure
    if spec.is_notification:
        method["x-notification"] = True
    else:
        method["result"] = {"name": "result", "schema": schema_for(hints.get("return", Any))}
        method["errors"] = [{"$ref": f"#/components/errors/{_error_key(c)}"} for c in _CALL_ERRORS]
    method["x-timeout"] = spec.timeout
    method["x-queue"] = spec.queue or default_queue
    method["x-sync"] = not spec.is_async
    return method


def _params(spec: MethodSpec, hints: Mapping[str, Any]) -> list[dict[str, Any]]:
    params = []
    for parameter in spec.signature.parameters.values():
        schema = schema_for(hints.get(parameter.name, parameter.annotation))
        descriptor: dict[str, Any] = {"name": parameter.name, "schema": schema}
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            descriptor["x-variadic"] = "positional"  # any number of these, by position
        elif parameter.kind is inspect.Parameter.VAR_KEYWORD:
            descriptor["x-variadic"] = "named"
        else:
            descriptor["required"] = parameter.default is inspect.Parameter.empty
        params.append(descriptor)
    return params


def _param_structure(signature: inspect.Signature) -> str:
    required = [p.kind for p in signature.parameters.values() if p.default is p.empty]
    if inspect.Parameter.POSITIONAL_ONLY in required:
        return "by-position"  # a call by name could never pass it
    if inspect.Parameter.KEYWORD_ONLY in required:
        return "by-name"  # a call by position could never pass it
    kinds = {p.kind for p in signature.parameters.values()}
    if kinds <= {inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL} and kinds:
        return "by-position"
    if kinds & {inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD} and not kinds & {
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.VAR_POSITIONAL,
    }:
        return "by-name" if inspect.Parameter.POSITIONAL_OR_KEYWORD not in kinds else "either"
    return "either"


def _hints(spec: MethodSpec) -> dict[str, Any]:
    return _type_hints(inspect.unwrap(spec.func))


def _type_hints(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj)
    except Exception:  # an annotation that does not resolve (a TYPE_CHECKING import) says nothing
        return {}


def _docstring(func: Any) -> tuple[str, str]:
    text = inspect.getdoc(func) or ""
    summary, _, rest = text.partition("\n")
    return summary.strip(), rest.strip()


def _server_notification(name: str, about: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(about, str):
        return {"name": name, "description": about}
    return {"name": name, **about}


def _error_key(code: int) -> str:
    return JsonRpcErrorCode(code).name


def _error(code: int) -> dict[str, Any]:
    return {"code": int(code), "message": RPC_ERRORS[code]}
