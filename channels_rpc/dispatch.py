"""Channels dispatch without the per-message database cleanup, for both of our consumers."""

from __future__ import annotations

from typing import Any

from channels.consumer import get_handler_name

__all__ = ["DirectDispatch"]


class DirectDispatch:
    """Calls the handler for a message's type, and nothing else.

    Channels >= 4.2 closes stale database connections before every message, a thread hop that
    costs more than validating a request (perf.md: 150-250 us of 400 per message). Neither
    consumer touches the database on its event loop: the front-end reaches it only through
    ``database_sync_to_async`` (permission checks), and the worker runs sync methods in
    threads that clean up around each call, both of which do that cleanup themselves.
    """

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
