"""Which functions a consumer class exposes, checked once when they are registered.

Registrations belong to the exact class they were made on (subclasses do not inherit them, as in
channels-rpc 1.0.1). Everything a call needs later is decided here: whether the function takes
an :class:`~channels_rpc.context.RpcContext`, whether it is a coroutine function, its signature
without the context (so the front-end can answer -32602 before any worker is involved), its
queue and its timeout.

Worker processes find a class again by its dotted path (:func:`consumer_key`), importing it if
this process has not seen it yet.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import math
import re
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Final

from channels_rpc.context import RpcContext
from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode
from channels_rpc.validation import MethodTypes, method_types

__all__ = [
    "RESERVED_PREFIX",
    "MethodInfo",
    "MethodSpec",
    "MethodTable",
    "RegistrationError",
    "consumer_key",
    "known_queues",
    "live_tables",
    "protect",
    "register",
    "resolve_consumer",
    "table_of",
    "valid_queue_name",
]

#: Method names starting with this are reserved by the JSON-RPC 2.0 spec for extensions.
RESERVED_PREFIX: Final = "rpc."
_PERMISSIONS_ATTR: Final = "__rpc_permissions__"
_REGISTRATIONS_ATTR: Final = "__rpc_registrations__"
# Channel names as Channels accepts them, minus the process-local "!" part.
_QUEUE_NAME: Final = re.compile(r"[A-Za-z0-9\-_.]{1,99}")
# First parameters that look like a context but, unannotated, are params (as in 1.0.1).
_CONTEXT_LOOKALIKES: Final = frozenset({"ctx", "context"})

logger = logging.getLogger("channels_rpc")


class RegistrationError(ValueError):
    """A method could not be registered; the message says why and how to fix it."""


@dataclass(frozen=True, slots=True)
class MethodInfo:
    """What :meth:`get_method_info` returns (the shape of channels-rpc 1.0.1)."""

    name: str
    func: Callable[..., Any]
    signature: str
    docstring: str | None
    accepts_context: bool
    transport_options: dict[str, bool]
    is_notification: bool


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """One registered method or notification."""

    name: str
    func: Callable[..., Any]
    is_notification: bool
    is_async: bool
    accepts_context: bool
    signature: inspect.Signature  # without the context parameter
    timeout: float | None  # None: the configured default; 0: no limit
    queue: str | None  # None: the configured default queue
    websocket: bool = True
    permissions: tuple[str, ...] = ()
    context_name: str | None = None  # the parameter that receives the RpcContext
    #: The checks and conversions its annotations ask for (channels_rpc.validation).
    types: MethodTypes | None = None
    #: (required, total) when the signature has positional parameters only (no ``*args``,
    #: ``**kwargs`` or keyword-only ones), so that a list of params fits by its length alone:
    #: most methods, bound per call on both sides of the hop without ``Signature.bind``.
    arity: tuple[int, int] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        parameters = self.signature.parameters.values()
        if all(p.kind in positional for p in parameters):
            required = sum(p.default is inspect.Parameter.empty for p in parameters)
            object.__setattr__(self, "arity", (required, len(parameters)))

    def bind(self, params: list[Any] | dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Match ``params`` to the signature and its annotations, or raise -32602 saying why.

        The values come back converted to the annotated types (channels_rpc.validation).
        """
        args, kwargs = self._bind(params)
        types = self.types
        if types is not None and types.checks:
            return types.convert(args, kwargs)
        return args, kwargs

    def _bind(self, params: list[Any] | dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self.arity is not None:
            required, total = self.arity
            if isinstance(params, list) and required <= len(params) <= total:
                return tuple(params), {}
            if not params and required == 0:
                return (), {}
        if isinstance(params, dict) and self.context_name in params:
            # Without this, a **kwargs method would accept it and then fail with a TypeError.
            raise JsonRpcError(
                None,
                JsonRpcErrorCode.INVALID_PARAMS,
                {"error": f"got an unexpected keyword argument {self.context_name!r}"},
            )
        try:
            bound = (
                self.signature.bind(*params)
                if isinstance(params, list)
                else self.signature.bind(**params)
            )
        except TypeError as exc:
            raise JsonRpcError(None, JsonRpcErrorCode.INVALID_PARAMS, {"error": str(exc)}) from None
        return bound.args, bound.kwargs

    def info(self) -> MethodInfo:
        return MethodInfo(
            name=self.name,
            func=self.func,
            signature=str(inspect.signature(self.func)),
            docstring=self.func.__doc__,
            accepts_context=self.accepts_context,
            transport_options={"websocket": self.websocket},
            is_notification=self.is_notification,
        )


@dataclass
class MethodTable:
    """The methods and notifications of one consumer class (two separate namespaces)."""

    key: str
    methods: dict[str, MethodSpec] = field(default_factory=dict)
    notifications: dict[str, MethodSpec] = field(default_factory=dict)

    def lookup(self, name: str, *, notification: bool) -> MethodSpec | None:
        return (self.notifications if notification else self.methods).get(name)

    def specs(self) -> Iterator[MethodSpec]:
        yield from self.methods.values()
        yield from self.notifications.values()

    def add(self, spec: MethodSpec) -> None:
        namespace = self.notifications if spec.is_notification else self.methods
        if spec.name in namespace:
            kind = "notification" if spec.is_notification else "method"
            raise RegistrationError(
                f"An RPC {kind} named {spec.name!r} is already registered on {self.key}; "
                "pass another name to the decorator."
            )
        namespace[spec.name] = spec

    def replace_spec(self, spec: MethodSpec) -> None:
        namespace = self.notifications if spec.is_notification else self.methods
        namespace[spec.name] = spec


_consumers: dict[str, weakref.ref[type]] = {}


def consumer_key(cls: type) -> str:
    """The dotted path a worker imports ``cls`` by."""
    return f"{cls.__module__}.{cls.__qualname__}"


def table_of(cls: type, *, create: bool = False) -> MethodTable | None:
    """The table registered on exactly ``cls`` (not inherited), created on demand."""
    table: MethodTable | None = cls.__dict__.get("_rpc_table")
    if table is None and create:
        table = MethodTable(consumer_key(cls))
        type.__setattr__(cls, "_rpc_table", table)
        _consumers[table.key] = weakref.ref(cls)
    return table


def resolve_consumer(key: str) -> type | None:
    """The consumer class registered under ``key`` in this process, importing it if needed."""
    ref = _consumers.get(key)
    cls = ref() if ref is not None else None
    if cls is not None:
        return cls
    module_name, _, qualname = key.rpartition(".")
    while module_name:
        try:
            target: Any = importlib.import_module(module_name)
        except ImportError:
            module_name, _, head = module_name.rpartition(".")
            qualname = f"{head}.{qualname}"
            continue
        for part in qualname.split("."):
            target = getattr(target, part, None)
        return target if isinstance(target, type) else None
    return None


def live_tables() -> list[MethodTable]:
    """The tables of every consumer class still alive in this process."""
    tables = []
    for ref in list(_consumers.values()):
        cls = ref()
        table = table_of(cls) if cls is not None else None
        if table is not None:
            tables.append(table)
    return tables


def known_queues(default: str) -> set[str]:
    """Every queue a registered method of a live consumer class is routed to."""
    return {spec.queue or default for table in live_tables() for spec in table.specs()}


def register(
    cls: type,
    func: Callable[..., Any],
    *,
    name: str | None,
    notification: bool,
    websocket: bool = True,
    timeout: float | None = None,
    queue: str | None = None,
) -> MethodSpec:
    """Check ``func`` and its options, then add it to ``cls``'s table."""
    if not callable(func):
        raise RegistrationError(f"RPC methods must be callable, got {func!r}.")
    name = _checked_name(name if name is not None else getattr(func, "__name__", ""))
    target = inspect.unwrap(func)
    if inspect.isasyncgenfunction(target) or inspect.isgeneratorfunction(target):
        raise RegistrationError(
            f"{name!r} is a generator function; RPC methods must return their result."
        )
    signature = inspect.signature(func)
    accepts_context = _accepts_context(signature)
    parameters = list(signature.parameters.values())
    if accepts_context:
        signature = signature.replace(parameters=parameters[1:])
    else:
        _warn_about_lookalike(name, parameters)
    spec = MethodSpec(
        name=name,
        func=func,
        is_notification=notification,
        is_async=inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(func),
        accepts_context=accepts_context,
        signature=signature,
        timeout=_checked_timeout(name, timeout),
        queue=_checked_queue(name, queue),
        websocket=bool(websocket),
        permissions=tuple(getattr(func, _PERMISSIONS_ATTR, ())),
        context_name=parameters[0].name if accepts_context else None,
        types=method_types(name, func, signature),
    )
    table = table_of(cls, create=True)
    assert table is not None
    table.add(spec)
    _remember_registration(func, table, spec)
    return spec


def protect(func: Callable[..., Any], permissions: tuple[str, ...]) -> None:
    """Attach permissions to ``func`` and to every registration already made of it.

    This is why ``@permission_required`` protects a method whichever side of ``@rpc_method`` it
    is written on.
    """
    merged = tuple(dict.fromkeys((*getattr(func, _PERMISSIONS_ATTR, ()), *permissions)))
    setattr(func, _PERMISSIONS_ATTR, merged)
    for table, name, is_notification in getattr(func, _REGISTRATIONS_ATTR, ()):
        spec = table.lookup(name, notification=is_notification)
        if spec is not None:
            table.replace_spec(replace(spec, permissions=merged))


def _remember_registration(func: Callable[..., Any], table: MethodTable, spec: MethodSpec) -> None:
    registrations = (
        *getattr(func, _REGISTRATIONS_ATTR, ()),
        (table, spec.name, spec.is_notification),
    )
    # A builtin or slotted callable takes no attributes: it can be protected before, not after.
    with contextlib.suppress(AttributeError, TypeError):
        setattr(func, _REGISTRATIONS_ATTR, registrations)


def _checked_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise RegistrationError(f"RPC method names must be non-empty strings, got {name!r}.")
    if name.startswith(RESERVED_PREFIX):
        raise RegistrationError(
            f"{name!r}: names starting with {RESERVED_PREFIX!r} are reserved by JSON-RPC 2.0."
        )
    return name


def _checked_timeout(name: str, timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise RegistrationError(f"{name!r}: timeout must be a number of seconds, got {timeout!r}.")
    if not math.isfinite(timeout) or timeout < 0:
        raise RegistrationError(
            f"{name!r}: timeout must be a finite number >= 0 (0 means no limit), got {timeout!r}."
        )
    return float(timeout)


def valid_queue_name(name: Any) -> bool:
    """Whether ``name`` can name a queue: a normal (not process-local) Channels channel name."""
    return isinstance(name, str) and _QUEUE_NAME.fullmatch(name) is not None


def _checked_queue(name: str, queue: Any) -> str | None:
    if queue is None:
        return None
    if not valid_queue_name(queue):
        raise RegistrationError(
            f"{name!r}: queue must be a channel name of 1-99 ASCII letters, digits, '-', '_' "
            f"or '.', got {queue!r}."
        )
    return str(queue)


def _warn_about_lookalike(name: str, parameters: list[inspect.Parameter]) -> None:
    """Say so when an unannotated first ``ctx`` is taken as a param, not as the context.

    channels-rpc 1.0.1 passes the context only to a parameter annotated ``RpcContext``, and so
    does this package (an unannotated ``context`` may well be a client's param): the call
    binding and ``rpc.discover`` both treat ``ctx`` as a param the client must send. Whoever
    meant the context learns it here, at startup, rather than from -32602 answers.
    """
    first = parameters[0] if parameters else None
    if (
        first is not None
        and first.name in _CONTEXT_LOOKALIKES
        and first.annotation is inspect.Parameter.empty
    ):
        logger.warning(
            "RPC method %r: its first parameter %r has no annotation, so clients must send it "
            "as a param; annotate it `%s: RpcContext` to receive the call's context instead",
            name,
            first.name,
            first.name,
        )


def _accepts_context(signature: inspect.Signature) -> bool:
    """Whether the first parameter is annotated as RpcContext (by class, string or name)."""
    first = next(iter(signature.parameters.values()), None)
    if first is None or first.kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        return False
    annotation = first.annotation
    if annotation is RpcContext:
        return True
    if isinstance(annotation, str):
        return annotation == "RpcContext" or annotation.endswith(".RpcContext")
    return getattr(annotation, "__name__", None) == "RpcContext"
