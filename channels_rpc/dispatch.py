"""Channels dispatch without the per-message database cleanup, for both of our consumers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer

from channels_rpc._aio import cancel_and_wait

__all__ = ["DirectDispatch", "dispatch_each"]


class DirectDispatch:
    """Calls the handler for a message's type, and nothing else.

    Channels >= 4.2 closes stale database connections before every message, a thread hop that
    costs more than validating a request (perf.md: 150-250 us of 400 per message). Neither
    consumer touches the database on its event loop: the front-end reaches it only through
    ``database_sync_to_async`` (permission checks), and the worker runs sync methods in
    threads that clean up around each call, both of which do that cleanup themselves.

    Messages reach it through :func:`dispatch_each` rather than Channels' ``await_many_dispatch``
    (see there); otherwise ``__call__`` is ``AsyncConsumer.__call__`` (Channels 4).
    """

    channel_layer_alias: str
    scope: dict[str, Any]
    channel_receive: Callable[[], Awaitable[dict[str, Any]]]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        sources = [receive]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            # Set, then read back: a session's consumer wraps it (resumable.py).
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            sources.append(self.channel_receive)
        self.base_send = send  # (both consumers are async ones)
        with contextlib.suppress(StopConsumer):
            await dispatch_each(sources, self.dispatch)

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


async def dispatch_each(
    sources: Sequence[Callable[[], Awaitable[Any]]],
    dispatch: Callable[[Any], Awaitable[None]],
) -> None:
    """Pass what each source gives to ``dispatch``, one message at a time, in arrival order.

    What Channels' ``await_many_dispatch`` does, with one reader task per source for the life of
    the connection, where it makes a task per message and an ``asyncio.wait`` over all of them
    (about 20 us a message, twice per call: the request and its answer). As there, a source is
    read again only once its last message was dispatched, and what a source raises is raised
    here; the readers end with the dispatch.
    """
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue[tuple[Any, asyncio.Future[None]]] = asyncio.Queue()

    async def read(source: Callable[[], Awaitable[Any]]) -> None:
        while True:
            try:
                message = await source()
            except Exception as exc:
                arrived.put_nowait((_Failed(exc), loop.create_future()))
                return
            dispatched = loop.create_future()
            arrived.put_nowait((message, dispatched))
            await dispatched

    readers = [loop.create_task(read(source)) for source in sources]
    try:
        while True:
            message, dispatched = await arrived.get()
            if isinstance(message, _Failed):
                raise message.error
            try:
                await dispatch(message)
            finally:
                dispatched.set_result(None)
    finally:
        await cancel_and_wait(*readers)
