"""The worker loop: take a request off a queue only when a slot is free, run it in its own task.

``runworker`` pulls every message of a channel into an unbounded in-memory queue and hands them
to one consumer, one at a time; a crashed worker then loses its whole backlog. This loop instead
holds at most ``concurrency`` requests: the rest stay in the channel layer, where any other
worker can take them.

It needs only ``receive`` from the channel layer. A layer that offers ``receive_within(channel,
timeout)`` (this package's Redis layer) is polled with it, so that stopping never cancels a pop
that Redis may already have performed; other layers' ``receive`` is cancelled on stop, which
they survive (the in-memory layer) or repair (channels-redis' backup queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

__all__ = ["Receiver", "WorkerRuntime"]

logger = logging.getLogger("channels_rpc.worker")

Handler = Callable[[dict[str, Any]], Awaitable[None]]

#: How long one bounded receive waits before the loop checks whether it should stop.
POLL_SECONDS = 1.0
_BACKOFF_FIRST, _BACKOFF_MAX = 0.1, 5.0


class Receiver(Protocol):
    async def receive(self, channel: str) -> dict[str, Any]: ...


class WorkerRuntime:
    """Pulls requests from queues into at most ``concurrency`` concurrent tasks."""

    def __init__(self, layer: Receiver, handler: Handler, *, concurrency: int) -> None:
        self.layer = layer
        self.concurrency = concurrency
        self._handler = handler
        self._slots = asyncio.Semaphore(concurrency)
        self._stopping = asyncio.Event()
        self._pullers: dict[str, asyncio.Task[None]] = {}
        # asyncio keeps only weak references to tasks: without this set a running call can be
        # garbage-collected mid-flight and its reply silently lost.
        self._calls: set[asyncio.Task[None]] = set()
        self.handled = 0

    @property
    def queues(self) -> list[str]:
        return sorted(self._pullers)

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    def serve(self, queues: Iterable[str]) -> None:
        """Start pulling from every queue in ``queues`` not served yet."""
        for queue in queues:
            if queue not in self._pullers and not self._stopping.is_set():
                self._pullers[queue] = asyncio.create_task(
                    self._pull(queue), name=f"rpc-pull:{queue}"
                )

    async def stop(self, grace: float) -> None:
        """Stop taking requests, give running calls ``grace`` seconds, then cancel the rest."""
        self._stopping.set()
        pullers = list(self._pullers.values())
        for task in pullers:
            if not getattr(self.layer, "receive_within", None):
                task.cancel()
        await asyncio.gather(*pullers, return_exceptions=True)
        if self._calls:
            logger.info("waiting up to %.1f s for %d running calls", grace, len(self._calls))
            await asyncio.wait(set(self._calls), timeout=grace or None)
        for task in list(self._calls):
            task.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)

    async def _pull(self, queue: str) -> None:
        backoff = _BACKOFF_FIRST
        while not self._stopping.is_set():
            await self._slots.acquire()
            try:
                message = await self._receive(queue)
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except Exception as exc:
                self._slots.release()
                logger.warning("receive on %s failed (%s); retrying in %.1f s", queue, exc, backoff)
                await self._sleep_unless_stopping(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            backoff = _BACKOFF_FIRST
            if message is None:
                self._slots.release()
                continue
            self._start(message)

    async def _receive(self, queue: str) -> dict[str, Any] | None:
        receive_within = getattr(self.layer, "receive_within", None)
        if receive_within is not None:
            message: dict[str, Any] | None = await receive_within(queue, POLL_SECONDS)
            return message
        return await self.layer.receive(queue)

    def _start(self, message: dict[str, Any]) -> None:
        task = asyncio.create_task(self._run(message))
        self._calls.add(task)
        task.add_done_callback(self._finished)

    async def _run(self, message: dict[str, Any]) -> None:
        try:
            await self._handler(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The handler answers every call itself; reaching here is a bug, but one call's bug
            # must not take the worker down.
            logger.exception("unhandled error while handling a request")

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._calls.discard(task)
        self._slots.release()
        self.handled += 1

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
