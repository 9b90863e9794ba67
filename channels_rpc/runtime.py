"""The worker loop: take a request off a queue only when a slot is free, run it in its own task.

``runworker`` pulls every message of a channel into an unbounded in-memory queue and hands them
to one consumer, one at a time; a crashed worker then loses its whole backlog. This loop instead
holds at most ``concurrency`` requests: the rest stay in the channel layer, where any other
worker can take them.

One puller serves every queue: it waits for a free slot, then takes up to as many messages as
it has free slots, from whichever queues have them. (A puller per queue would park a slot on
each idle queue.) A work-queue layer (:func:`channels_rpc._layer.work_queue`: this package's
Redis layer) is polled with ``receive_many(channels, limit, timeout)`` (one script, or one
multi-key ``BZPOPMIN`` when nothing waits), so stopping never cancels a pop Redis may already
have performed. Other layers are raced with one ``receive`` per queue and the losers
cancelled, which they survive (the in-memory layer) or repair (channels-redis' backup queue).

A listener receives control messages (cancellations) on a channel of its own, kept in a group
that every worker process of the deployment joins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from channels_rpc._aio import Backoff, TaskSet, cancel_and_wait, first_completed
from channels_rpc._layer import ChannelLayer, group_expiry, work_queue
from channels_rpc.logsafe import protect

__all__ = ["WorkerRuntime"]

logger = protect(logging.getLogger("channels_rpc.worker"))

Handler = Callable[[dict[str, Any]], Awaitable[None]]

#: How long one bounded receive waits before the loop looks at its stop flag and queue list.
POLL_SECONDS = 1.0


class WorkerRuntime:
    """Pulls requests from queues into at most ``concurrency`` concurrent tasks."""

    def __init__(
        self,
        layer: ChannelLayer,
        handler: Handler,
        *,
        concurrency: int,
        control: Handler | None = None,
        control_group: str = "",
        health: Callable[[], str | None] | None = None,
        on_stopped: Callable[[], None] | None = None,
        give_back: bool = True,
    ) -> None:
        self.layer = layer
        self._work_queue = work_queue(layer)  # polled with receive_many when it is one
        # False: nothing put back would reach another worker (a process-local layer).
        self._give_back_taken = give_back
        self._health = health
        self._on_stopped = on_stopped
        self.concurrency = concurrency
        self._handler = handler
        self._control = control
        self._control_group = control_group
        self._listener: asyncio.Task[None] | None = None
        self._free = concurrency  # slots not running a call
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._queues: list[str] = []
        self._queues_changed = asyncio.Event()
        self._ready: deque[dict[str, Any]] = deque()  # won by a race but not yet started
        self._puller: asyncio.Task[None] | None = None
        self._awaiting_slot = False
        #: The channel control messages arrive on, once the listener has one.
        self.control_channel: str | None = None
        self._calls = TaskSet()
        self.handled = 0

    @property
    def queues(self) -> list[str]:
        return sorted(self._queues)

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def problem(self) -> str | None:
        """What keeps this worker from serving calls (for health checks), or None if nothing."""
        return None if self._health is None else self._health()

    async def control(self, message: dict[str, Any]) -> None:
        """Handle a control message handed over in this process (as if it came on the channel)."""
        if self._control is not None:
            await self._control(message)

    def serve(self, queues: Iterable[str]) -> None:
        """Also pull from every queue in ``queues`` (starting the loop on first use)."""
        if self._stopping.is_set():
            return
        new = [queue for queue in queues if queue not in self._queues]
        if new:
            self._queues.extend(new)
            self._queues_changed.set()
        if self._puller is None and self._queues:
            self._puller = asyncio.create_task(self._pull(), name="rpc-puller")
        if self._listener is None and self._control is not None:
            self._listener = asyncio.create_task(self._listen(self._control), name="rpc-control")

    async def stop(self, grace: float) -> None:
        """Stop taking requests, give running calls ``grace`` seconds, then cancel the rest.

        The grace counts from this call: running calls get it while the puller ends its last
        bounded wait (up to ``POLL_SECONDS``), not after, and those still running when it is
        over are cancelled (and answered -32011) without waiting for the puller.

        Cancelling the task that stops the runtime cancels whatever still runs, and waits for
        it, before the cancellation goes on: nothing is left pending on the event loop.
        """
        try:
            await self._stop(grace)
        except asyncio.CancelledError:
            await self._abort()
            raise
        finally:
            if self._on_stopped is not None:
                self._on_stopped()

    async def _stop(self, grace: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        self._stopping.set()
        await cancel_and_wait(self._listener)
        if self._puller is not None and self._awaiting_slot:
            self._puller.cancel()  # every slot is busy: nothing to lose by cancelling
        await self._drain(deadline - loop.time())
        if self._puller is not None:
            await asyncio.gather(self._puller, return_exceptions=True)
        for message in self._ready:  # received, never started: run them like the others
            self._start(message)
        self._ready.clear()
        await self._drain(deadline - loop.time())

    async def _abort(self) -> None:
        await cancel_and_wait(self._listener, self._puller, *self._calls)

    async def _drain(self, grace: float) -> None:
        """Give running calls ``grace`` seconds, then cancel those still running."""
        if self._calls and grace > 0:
            logger.info("waiting up to %.1f s for %d running calls", grace, len(self._calls))
            await asyncio.wait(set(self._calls), timeout=grace)
        await self._calls.cancel_all()

    async def _pull(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        while not self._stopping.is_set():
            slots = await self._take_free_slots()
            try:
                messages = await self._next_messages(slots)
            except Exception as exc:
                self._release(slots)
                if loop.is_closed():  # being collected after its loop closed: no retrying
                    raise
                queues, delay = ",".join(self._queues), backoff.next()
                logger.warning("receive on %s failed (%s); retrying in %.1f s", queues, exc, delay)
                await self._sleep_unless_stopping(delay)
                continue
            except BaseException:
                self._release(slots)
                raise
            backoff.reset()
            if self._stopping.is_set() and self._give_back_taken:
                # Taken during the last bounded wait: another worker may run them.
                self._release(slots)
                await self._give_back(messages)
                return
            self._release(slots - len(messages))
            for message in messages:
                self._start(message)

    async def _give_back(self, messages: list[dict[str, Any]]) -> None:
        """Return requests to the queues they came from, for another worker; run what can't go."""
        for message in messages:
            queue = message.get("queue")
            try:
                if not isinstance(queue, str):
                    raise ValueError("the message does not say which queue it came from")
                await self.layer.send(queue, message)
            except Exception as exc:
                logger.warning("could not put a request back (%s); running it", exc)
                self._start(message)

    async def _take_free_slots(self) -> int:
        """Wait for a free slot, then take every free slot (the puller fills them at once)."""
        self._awaiting_slot = True
        try:
            while not self._free:
                self._slot_freed.clear()
                await self._slot_freed.wait()
        finally:
            self._awaiting_slot = False
        slots, self._free = self._free, 0
        return slots

    def _release(self, slots: int) -> None:
        if slots:
            self._free += slots
            self._slot_freed.set()

    async def _next_messages(self, limit: int) -> list[dict[str, Any]]:
        if self._ready:
            return [self._ready.popleft() for _ in range(min(limit, len(self._ready)))]
        # Rotate the order so that a busy queue listed first cannot starve the others.
        self._queues.append(self._queues.pop(0))
        if self._work_queue is not None:
            return await self._work_queue.receive_many(list(self._queues), limit, POLL_SECONDS)
        message = await self._race(list(self._queues))
        return [] if message is None else [message]

    async def _race(self, queues: list[str]) -> dict[str, Any] | None:
        """The first message any of ``queues`` yields; None if stopped or the queues changed."""
        self._queues_changed.clear()
        ended = await first_completed(
            *(self.layer.receive(queue) for queue in queues),
            self._stopping.wait(),
            self._queues_changed.wait(),
        )
        receives = ended[: len(queues)]
        won = [t for t in receives if not t.cancelled() and t.exception() is None]
        if not won:
            failed = [t.exception() for t in receives if not t.cancelled()]
            if failed and failed[0] is not None:
                raise failed[0]
            return None
        # Two queues may deliver at once: keep the extra, it is ours now and must run.
        self._ready.extend(t.result() for t in won[1:])
        message: dict[str, Any] = won[0].result()
        return message

    async def _listen(self, control: Handler) -> None:
        """Receive control messages; stay in the control group past its expiry."""
        loop = asyncio.get_running_loop()
        layer = self.layer
        channel = self.control_channel = await layer.new_channel()
        refresh = group_expiry(layer) / 2
        rejoin = asyncio.Event()  # set when Redis comes back, empty, after a restart
        if self._work_queue is not None:
            self._work_queue.on_reconnect(rejoin.set)
        backoff = Backoff()
        try:
            while True:
                try:
                    await layer.group_add(self._control_group, channel)
                    renew_at = asyncio.get_running_loop().time() + refresh
                    await self._receive_control(control, channel, renew_at, rejoin)
                    backoff.reset()
                except Exception as exc:
                    if loop.is_closed():
                        raise  # being collected after its loop closed: no retrying
                    delay = backoff.next()
                    logger.warning("control channel failed (%s); retrying in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
        finally:
            with contextlib.suppress(Exception):
                await layer.group_discard(self._control_group, channel)

    async def _receive_control(
        self, control: Handler, channel: str, renew_at: float, rejoin: asyncio.Event
    ) -> None:
        """Handle control messages until the group membership needs renewing."""
        loop = asyncio.get_running_loop()
        rejoin.clear()
        while (remaining := renew_at - loop.time()) > 0 and not rejoin.is_set():
            receive, _ = await first_completed(
                self.layer.receive(channel), rejoin.wait(), timeout=remaining
            )
            if not receive.cancelled():
                message = receive.result()  # a layer error goes to _listen, which retries
                await control(message)

    def _start(self, message: dict[str, Any]) -> None:
        self._calls.spawn(self._run(message)).add_done_callback(self._finished)

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
        self._release(1)
        self.handled += 1

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
