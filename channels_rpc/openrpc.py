"""An OpenRPC 1.3 document generated from the registry (what ``rpc.discover`` answers).

Methods are described from their signatures: each parameter becomes a content descriptor whose
JSON Schema comes from its type annotation, the return annotation becomes the result, and the
docstring's first line the summary. Client notifications (``rpc_notification``) are methods
without a result (OpenRPC 1.3: "MUST only be used as a notification") marked
``"x-notification": true``. What the server pushes is listed under ``x-notifications``, which
OpenRPC has no field for.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any, Final

from channels_rpc.exceptions import RPC_ERRORS, JsonRpcErrorCode
from channels_rpc.registry import MethodSpec
from channels_rpc.validation import Adapted, json_schemas, method_types, schema_for

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


def document(
    specs: Iterable[MethodSpec],
    *,
    info: Mapping[str, Any],
    server_notifications: Mapping[str, str | Mapping[str, Any]],
    default_queue: str = "rpc.default",
) -> dict[str, Any]:
    """The OpenRPC document for ``specs``."""
    specs = list(specs)
    schemas, definitions = _schemas(specs)
    components: dict[str, Any] = {
        "errors": {_error_key(code): _error(code) for code in _CALL_ERRORS}
    }
    if definitions:
        components["schemas"] = definitions
    doc: dict[str, Any] = {
        "openrpc": OPENRPC_VERSION,
        "info": dict(info),
        "methods": [_method(spec, default_queue, schemas) for spec in specs],
        "components": components,
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
#: The sessions' methods (docs/reference/sessions.md), published where the layer has sessions.
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
    """``doc`` with the sessions' methods and their error (docs/reference/sessions.md)."""
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


_Schemas = dict[tuple[str, bool, str | None], dict[str, Any]]


def _schemas(specs: list[MethodSpec]) -> tuple[_Schemas, dict[str, Any]]:
    """Every param's and result's schema, by (method, is notification, param or None), with
    the definitions they share (the validators' own: what is published is what is checked)."""
    entries: list[tuple[Any, str, Adapted]] = []
    for spec in specs:
        types = spec.types or method_types(spec.name, spec.func, spec.signature)
        params, result = types.described()
        for name, adapted in params.items():
            entries.append(((spec.name, spec.is_notification, name), "validation", adapted))
        entries.append(((spec.name, spec.is_notification, None), "serialization", result))
    return json_schemas(entries)


def _method(spec: MethodSpec, default_queue: str, schemas: _Schemas) -> dict[str, Any]:
    summary, description = _docstring(spec.func)
    method: dict[str, Any] = {"name": spec.name, "params": _params(spec, schemas)}
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
        result = schemas[(spec.name, spec.is_notification, None)]
        method["result"] = {"name": "result", "schema": result}
        method["errors"] = [{"$ref": f"#/components/errors/{_error_key(c)}"} for c in _CALL_ERRORS]
    method["x-timeout"] = spec.timeout
    method["x-queue"] = spec.queue or default_queue
    method["x-sync"] = not spec.is_async
    return method


def _params(spec: MethodSpec, schemas: _Schemas) -> list[dict[str, Any]]:
    params = []
    for parameter in spec.signature.parameters.values():
        schema = schemas[(spec.name, spec.is_notification, parameter.name)]
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
