"""The async plumbing the package's long-lived loops share: retry delays, kept tasks, races.

Pure: the standard library only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["Backoff", "TaskSet", "cancel_and_wait", "first_completed"]

T = TypeVar("T")


class Backoff:
    """Delays between retries: ``first``, doubling up to ``cap``; :meth:`reset` after a success.

    The defaults suit a lost Redis: retrying once a second costs nothing and finds it back
    within a second.
    """

    def __init__(self, first: float = 0.1, cap: float = 1.0) -> None:
        self.first = first
        self.cap = cap
        self._delay = first

    def next(self) -> float:
        """The delay before the next retry (the one after it doubles, up to ``cap``)."""
        delay = self._delay
        self._delay = min(delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._delay = self.first


class TaskSet:
    """Tasks kept until they end, and cancelled together.

    asyncio holds tasks only weakly: a task nobody else references can be garbage-collected
    mid-flight, and what it was doing (a call and its reply) silently lost.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    async def wait(self) -> None:
        """Wait until every task running now has ended."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def cancel_all(self) -> None:
        """Cancel every task, and wait until all have ended."""
        await cancel_and_wait(*self._tasks)


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel ``tasks`` (None: no task) and wait until they have ended, whatever their end."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


async def first_completed(
    *aws: Awaitable[Any], timeout: float | None = None
) -> list[asyncio.Future[Any]]:
    """Wait for the first of ``aws`` to end (or ``timeout``), then cancel the others.

    Returns them all as futures, in order, each one ended: with its result or exception, or
    cancelled. The losers have ended too: nothing is left running.
    """
    futures: list[asyncio.Future[Any]] = [asyncio.ensure_future(aw) for aw in aws]
    try:
        await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(*futures)
    return futures
