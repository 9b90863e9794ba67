"""The consumer's class side, as channels-rpc 1.0.1 has it: registering methods, describing them.

``@MyConsumer.rpc_method()`` and ``@MyConsumer.rpc_notification()`` register module-level
functions for that class (not its subclasses) in :mod:`~channels_rpc.registry`; the class methods
below read them back: by name, in 1.0.1's ``describe_api()`` shape, or as an OpenRPC document
(:mod:`~channels_rpc.openrpc`). :class:`RpcRegistration` is mixed into
:class:`~channels_rpc.consumer.AsyncJsonRpcWebsocketConsumer`, whose module is the connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, TypeVar, overload

from channels_rpc import openrpc, registry
from channels_rpc.config import get_config
from channels_rpc.registry import MethodInfo, MethodSpec

__all__ = ["RpcRegistration", "queues_of", "specs_of"]

F = TypeVar("F", bound=Callable[..., Any])


class RpcRegistration:
    """Registration and introspection class methods (the API of channels-rpc 1.0.1)."""

    #: The ``info`` of the OpenRPC document (``title`` and ``version`` default to the class).
    openrpc_info: ClassVar[Mapping[str, Any]] = {}
    #: Notifications the server pushes, for ``rpc.discover``: name -> description, or name ->
    #: ``{"description": ..., "params": [content descriptors]}``.
    server_notifications: ClassVar[Mapping[str, str | Mapping[str, Any]]] = {}

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
        return openrpc.describe_api(cls.__name__, specs_of(cls))

    @classmethod
    def openrpc_document(cls, specs: Iterable[MethodSpec] | None = None) -> dict[str, Any]:
        """An OpenRPC 1.3 document of ``specs`` (by default every method of this class)."""
        if specs is None:
            specs = [spec for spec in specs_of(cls) if spec.websocket]
        return openrpc.for_consumer(cls, specs, default_queue=get_config().default_queue)


def specs_of(cls: type[Any]) -> list[MethodSpec]:
    """Every method and notification registered for ``cls``."""
    table = registry.table_of(cls)
    return list(table.specs()) if table else []


def queues_of(cls: type[Any], default: str) -> set[str]:
    """The queues the calls of ``cls`` go to (``default`` for methods that name none)."""
    return {default} | {spec.queue or default for spec in specs_of(cls)}
