"""The fan-out of server notifications: handlers by method, and ``Notifications`` iterators."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("channels_rpc.client")

Handler = Callable[[Any], Any]


class Notifications:
    """An async iterator of ``{"jsonrpc", "method", "params"}`` dicts, collecting from creation."""

    def __init__(self, registry: list[asyncio.Queue[dict[str, Any]]]) -> None:
        self._registry = registry
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        registry.append(self._queue)

    def __aiter__(self) -> Notifications:
        return self

    async def __anext__(self) -> dict[str, Any]:
        return await self._queue.get()

    async def aclose(self) -> None:
        if self._queue in self._registry:
            self._registry.remove(self._queue)

    async def __aenter__(self) -> Notifications:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Fanout:
    """Hands each notification to the handlers of its method, then to every open iterator."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._queues: list[asyncio.Queue[dict[str, Any]]] = []

    def on(self, method: str, handler: Handler) -> None:
        self._handlers.setdefault(method, []).append(handler)

    def iterator(self) -> Notifications:
        return Notifications(self._queues)

    def deliver(self, item: dict[str, Any]) -> None:
        for handler in self._handlers.get(item["method"], []):
            run_handler(handler, item.get("params"))
        for queue in self._queues:
            queue.put_nowait(item)


def run_handler(handler: Handler, params: Any) -> None:
    """Call a sync or async ``handler``; what it raises is logged, never the reader's end."""
    try:
        outcome = handler(params)
    except Exception:
        logger.exception("notification handler %r raised", handler)
        return
    if asyncio.iscoroutine(outcome):
        task = asyncio.ensure_future(outcome)
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("notification handler failed", exc_info=task.exception())
