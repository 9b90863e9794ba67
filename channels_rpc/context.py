"""What a method receives when its first parameter is annotated ``RpcContext``.

The same object is built wherever a method runs (a worker process, or the front-end process in
embedded mode), from the serializable request envelope, so code behaves alike in both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

__all__ = ["CallerHandle", "RpcContext"]


class CallerHandle(Protocol):
    """The connection a call came from, as seen by the process running the call."""

    channel_name: str

    async def notify_channel(self, method: str, params: Any = None) -> None: ...


class RpcContext:
    """Call metadata and a handle on the caller.

    ``RpcContext(consumer, method_name, rpc_id, is_notification)`` keeps the positional order of
    channels-rpc 1.0.1. ``consumer`` is a handle that can push to the caller (``notify_channel``),
    not the live consumer, which lives in another process. ``scope`` is a serializable subset of
    the connection's ASGI scope; ``scope["user"]`` loads the user lazily (sync code only, use
    ``await ctx.get_user()`` in async methods).
    """

    __slots__ = ("_scope", "_user_loader", "consumer", "is_notification", "method_name", "rpc_id")

    def __init__(
        self,
        consumer: Any,
        method_name: str,
        rpc_id: str | int | float | None,
        is_notification: bool,
        *,
        scope: Mapping[str, Any] | None = None,
        user_loader: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        self.consumer = consumer
        self.method_name = method_name
        self.rpc_id = rpc_id
        self.is_notification = is_notification
        self._scope = scope
        self._user_loader = user_loader

    @property
    def scope(self) -> Mapping[str, Any]:
        if self._scope is not None:
            return self._scope
        scope: Mapping[str, Any] = getattr(self.consumer, "scope", {})
        return scope

    async def notify(self, method: str, params: Any = None) -> None:
        """Send a JSON-RPC notification to the caller's connection only."""
        await self.consumer.notify_channel(method, params)

    async def get_user(self) -> Any:
        """The caller's user, loaded without blocking the event loop."""
        if self._user_loader is None:
            return self.scope.get("user")
        return await self._user_loader()

    def __repr__(self) -> str:
        return (
            f"RpcContext(method_name={self.method_name!r}, rpc_id={self.rpc_id!r}, "
            f"is_notification={self.is_notification!r})"
        )
