"""What a method receives when its first parameter is annotated ``RpcContext``.

The same object is built wherever a method runs (a worker process, or the front-end process in
embedded mode), from the serializable request envelope, so code behaves alike in both.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

__all__ = ["CallerHandle", "CancelFlag", "RpcContext"]


class CallerHandle(Protocol):
    """The connection a call came from, as seen by the process running the call."""

    channel_name: str

    async def notify_channel(self, method: str, params: Any = None) -> None: ...

    async def join_group(self, group: str) -> None: ...

    async def leave_group(self, group: str) -> None: ...


class CancelFlag(Protocol):
    """What ``ctx.cancelled`` reads: a ``threading.Event``, or in a child process a flag the
    worker sets from outside (see :mod:`channels_rpc.processes`)."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...


class RpcContext:
    """Call metadata and a handle on the caller.

    ``RpcContext(consumer, method_name, rpc_id, is_notification)`` keeps the positional order of
    channels-rpc 1.0.1. ``consumer`` is a handle on the caller's connection (``notify_channel``,
    ``join_group``, ``leave_group``), not the live consumer, which lives in another process.
    ``scope`` is a serializable subset of the connection's ASGI scope; ``scope["user"]`` loads
    the user lazily (sync code only, use ``await ctx.get_user()`` in async methods).
    ``cancelled`` turns true when the client cancels the call, its connection closes or its
    timeout passes: sync methods, which cannot be interrupted, can poll it and stop early.
    """

    __slots__ = (
        "_cancelled",
        "_scope",
        "_user_loader",
        "consumer",
        "is_notification",
        "method_name",
        "rpc_id",
    )

    def __init__(
        self,
        consumer: Any,
        method_name: str,
        rpc_id: str | int | float | None,
        is_notification: bool,
        *,
        scope: Mapping[str, Any] | None = None,
        user_loader: Callable[[], Awaitable[Any]] | None = None,
        cancelled: CancelFlag | None = None,
    ) -> None:
        self.consumer = consumer
        self.method_name = method_name
        self.rpc_id = rpc_id
        self.is_notification = is_notification
        self._scope = scope
        self._user_loader = user_loader
        # Made on the first cancel: an Event per call was 4% of a worker's time at ping load.
        self._cancelled = cancelled

    @property
    def scope(self) -> Mapping[str, Any]:
        if self._scope is not None:
            return self._scope
        scope: Mapping[str, Any] = getattr(self.consumer, "scope", {})
        return scope

    @property
    def cancelled(self) -> bool:
        return self._cancelled is not None and self._cancelled.is_set()

    def _cancel(self) -> None:
        """Set ``cancelled`` (done by the worker, from any thread)."""
        if self._cancelled is None:
            event = threading.Event()
            event.set()
            self._cancelled = event  # (a reader sees None or a set Event, never an unset one)
        else:
            self._cancelled.set()

    async def notify(self, method: str, params: Any = None) -> None:
        """Send a JSON-RPC notification to the caller's connection only.

        Raises ``ResponseTooLargeError`` (-32014) if the notification would be over
        ``MAX_RESPONSE_SIZE`` bytes: the transport would refuse it.
        """
        await self.consumer.notify_channel(method, params)

    async def progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Tell the caller how far the call got: an ``rpc.progress`` notification.

        The client receives ``{"jsonrpc": "2.0", "method": "rpc.progress", "params": {"id":
        <the call's id>, "progress": ..., "total": ..., "message": ...}}`` (``total`` and
        ``message`` only when given), always before the call's answer. Nothing is sent for a
        notification, which has no id to report on.
        """
        if self.is_notification:
            return
        params: dict[str, Any] = {"id": self.rpc_id, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self.consumer.notify_channel("rpc.progress", params)

    async def join_group(self, group: str) -> None:
        """Add the caller's connection to ``group``: it receives what is pushed there.

        Left when the connection closes, also if it closed before the join was made (then
        nothing is joined). A connection in ``MAX_GROUPS`` groups already cannot join more:
        ``JsonRpcError`` -32010.
        """
        await self.consumer.join_group(group)

    async def leave_group(self, group: str) -> None:
        await self.consumer.leave_group(group)

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
