"""The async plumbing the package's long-lived loops share: retry delays, kept tasks, races.

Pure: the standard library only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = [
    "Backoff",
    "TaskSet",
    "cancel_and_wait",
    "cancel_requested",
    "first_completed",
]

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


def cancel_requested() -> bool:
    """Whether the running task was cancelled and runs on all the same, the cancel lost.

    On Python < 3.12 a cancel can be lost inside redis-py: it sends each command through
    ``asyncio.wait_for``, which returns the command's result instead of raising when the
    command completes in the same turn of the loop as the cancel (CPython gh-86296, fixed in
    3.12). A loop that must end when cancelled asks after each command; Python 3.11 still
    counts the cancel (``Task.cancelling()``), 3.10 does not (False).
    """
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    return cancelling is not None and cancelling() > 0


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
