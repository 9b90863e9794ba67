from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import anyio
import pytest
from channels.layers import InMemoryChannelLayer

from channels_rpc.layers import RedisChannelLayer
from channels_rpc.runtime import WorkerRuntime

pytestmark = pytest.mark.anyio

QUEUE = "rpc.unit-test"


async def fill(layer: InMemoryChannelLayer, count: int, queue: str = QUEUE) -> None:
    for number in range(count):
        await layer.send(queue, {"type": "rpc.request", "n": number})


async def settle() -> None:
    """Let every ready task run a few steps (pullers that could take more would do so now)."""
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.sleep(0.02)


async def wait_for(event: asyncio.Event, seconds: float = 1.0) -> None:
    with anyio.fail_after(seconds):
        await event.wait()


async def test_never_more_than_concurrency_handlers_at_once() -> None:
    layer = InMemoryChannelLayer()
    await fill(layer, 6)
    release, two_running, all_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    running: list[int] = []
    handled: list[int] = []
    peak = 0

    async def handler(message: dict[str, Any]) -> None:
        nonlocal peak
        running.append(message["n"])
        peak = max(peak, len(running))
        if len(running) == 2:
            two_running.set()
        await release.wait()
        running.remove(message["n"])
        handled.append(message["n"])
        if len(handled) == 6:
            all_done.set()

    runtime = WorkerRuntime(layer, handler, concurrency=2)
    runtime.serve([QUEUE])
    try:
        await wait_for(two_running)
        await settle()
        assert peak == 2
        assert runtime.in_flight == 2
        assert sorted(running) == [0, 1]
        assert layer.channels[QUEUE].qsize() == 4
        release.set()
        await wait_for(all_done)
        assert peak == 2
        assert sorted(handled) == list(range(6))
    finally:
        release.set()
        await runtime.stop(1)
    assert runtime.handled == 6


async def test_waiting_requests_stay_in_the_layer_for_other_workers() -> None:
    layer = InMemoryChannelLayer()
    await fill(layer, 3)
    entered, gate = asyncio.Event(), asyncio.Event()

    async def handler(message: dict[str, Any]) -> None:
        entered.set()
        await gate.wait()

    runtime = WorkerRuntime(layer, handler, concurrency=1)
    runtime.serve([QUEUE])
    await wait_for(entered)
    await settle()
    await runtime.stop(0.01)
    with anyio.fail_after(1):
        left = [await layer.receive(QUEUE), await layer.receive(QUEUE)]
    assert [message["n"] for message in left] == [1, 2]


async def test_stop_lets_running_calls_finish_within_grace_and_cancels_the_rest() -> None:
    layer = InMemoryChannelLayer()
    await layer.send(QUEUE, {"type": "rpc.request", "kind": "quick"})
    await layer.send(QUEUE, {"type": "rpc.request", "kind": "stuck"})
    both_started = asyncio.Event()
    started: set[str] = set()
    finished: list[str] = []
    cancelled: list[str] = []

    async def handler(message: dict[str, Any]) -> None:
        kind = message["kind"]
        started.add(kind)
        if len(started) == 2:
            both_started.set()
        try:
            await asyncio.sleep(0.1 if kind == "quick" else 10)
        except asyncio.CancelledError:
            cancelled.append(kind)
            raise
        finished.append(kind)

    runtime = WorkerRuntime(layer, handler, concurrency=2)
    runtime.serve([QUEUE])
    await wait_for(both_started)
    begun = time.monotonic()
    await runtime.stop(0.3)
    elapsed = time.monotonic() - begun
    assert finished == ["quick"]
    assert cancelled == ["stuck"]
    assert 0.25 <= elapsed < 0.8
    assert runtime.in_flight == 0


async def test_stop_returns_as_soon_as_running_calls_finish() -> None:
    layer = InMemoryChannelLayer()
    await fill(layer, 1)
    entered = asyncio.Event()
    done: list[int] = []

    async def handler(message: dict[str, Any]) -> None:
        entered.set()
        await asyncio.sleep(0.05)
        done.append(message["n"])

    runtime = WorkerRuntime(layer, handler, concurrency=4)
    runtime.serve([QUEUE])
    await wait_for(entered)
    begun = time.monotonic()
    await runtime.stop(5)
    assert time.monotonic() - begun < 1
    assert done == [0]


async def test_stop_with_zero_grace_cancels_at_once() -> None:
    layer = InMemoryChannelLayer()
    await fill(layer, 1)
    entered, gate, exited = asyncio.Event(), asyncio.Event(), asyncio.Event()
    cancelled: list[int] = []

    async def handler(message: dict[str, Any]) -> None:
        entered.set()
        try:
            await gate.wait()
        except asyncio.CancelledError:
            cancelled.append(message["n"])
            raise
        finally:
            exited.set()

    runtime = WorkerRuntime(layer, handler, concurrency=1)
    runtime.serve([QUEUE])
    await wait_for(entered)
    try:
        with anyio.fail_after(1):
            await runtime.stop(0)
    finally:
        gate.set()
        await wait_for(exited)
    assert cancelled == [0]


async def test_a_handler_that_raises_does_not_stop_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = InMemoryChannelLayer()
    await fill(layer, 3)
    handled: list[int] = []
    both = asyncio.Event()

    async def handler(message: dict[str, Any]) -> None:
        if message["n"] == 0:
            raise RuntimeError("handler bug")
        handled.append(message["n"])
        if len(handled) == 2:
            both.set()

    runtime = WorkerRuntime(layer, handler, concurrency=1)
    with caplog.at_level(logging.ERROR, logger="channels_rpc.worker"):
        runtime.serve([QUEUE])
        try:
            await wait_for(both)
        finally:
            await runtime.stop(1)
    assert handled == [1, 2]
    assert runtime.handled == 3
    assert "unhandled error while handling a request" in caplog.text
    assert "handler bug" in caplog.text


class FlakyLayer(InMemoryChannelLayer):
    """Raises on the first ``failures`` receives, then hands out queued messages."""

    def __init__(self, failures: int = 1) -> None:
        super().__init__()
        self.failures = failures
        self.calls = 0
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive(self, channel: str) -> dict[str, Any]:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("layer down")
        return await self.queue.get()

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        self.queue.put_nowait(message)


async def test_receive_errors_are_retried(caplog: pytest.LogCaptureFixture) -> None:
    layer = FlakyLayer()
    layer.queue.put_nowait({"type": "rpc.request", "n": 1})
    handled = asyncio.Event()

    async def handler(message: dict[str, Any]) -> None:
        assert message["n"] == 1
        handled.set()

    runtime = WorkerRuntime(layer, handler, concurrency=2)
    with caplog.at_level(logging.WARNING, logger="channels_rpc.worker"):
        runtime.serve(["q"])
        try:
            await wait_for(handled)
        finally:
            await runtime.stop(1)
    assert layer.calls >= 2
    assert "receive on q failed (layer down)" in caplog.text
    assert runtime.handled == 1


async def test_a_failed_receive_gives_its_slot_back() -> None:
    layer = FlakyLayer(failures=3)
    for number in range(2):
        layer.queue.put_nowait({"type": "rpc.request", "n": number})
    gate, both = asyncio.Event(), asyncio.Event()
    started: list[int] = []

    async def handler(message: dict[str, Any]) -> None:
        started.append(message["n"])
        if len(started) == 2:
            both.set()
        await gate.wait()

    runtime = WorkerRuntime(layer, handler, concurrency=2)
    runtime.serve(["q"])
    try:
        await wait_for(both, 1.9)
        assert runtime.in_flight == 2
    finally:
        gate.set()
        await runtime.stop(1)


class PollingLayer(RedisChannelLayer):
    """A work-queue layer (ours, its queue in this process): polled, never cancelled on stop."""

    def __init__(self) -> None:
        super().__init__(hosts=[("127.0.0.1", 9)])  # never connected to
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.polls = 0
        self.cancelled = 0
        self.polled_thrice = asyncio.Event()

    async def receive(self, channel: str) -> dict[str, Any]:
        raise AssertionError("receive_many should be used")

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        self.queue.put_nowait(message)

    async def receive_many(
        self, channels: Sequence[str], limit: int, seconds: float
    ) -> list[dict[str, Any]]:
        self.polls += 1
        if self.polls >= 3:
            self.polled_thrice.set()
        try:
            return [await asyncio.wait_for(self.queue.get(), 0.02)]
        except asyncio.TimeoutError:
            return []
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


async def test_layers_with_receive_many_are_polled_and_never_cancelled() -> None:
    layer = PollingLayer()
    handled = asyncio.Event()

    async def handler(message: dict[str, Any]) -> None:
        assert message["n"] == 5
        handled.set()

    runtime = WorkerRuntime(layer, handler, concurrency=1)
    runtime.serve(["q"])
    await wait_for(layer.polled_thrice)
    layer.queue.put_nowait({"type": "rpc.request", "n": 5})
    await wait_for(handled)
    await runtime.stop(1)
    assert layer.cancelled == 0
    assert runtime.handled == 1


async def test_serve_is_idempotent_and_does_nothing_after_stop() -> None:
    layer = InMemoryChannelLayer()
    called: list[dict[str, Any]] = []

    async def handler(message: dict[str, Any]) -> None:
        called.append(message)

    runtime = WorkerRuntime(layer, handler, concurrency=1)
    runtime.serve(["b", "a"])
    runtime.serve(["a", "c"])
    assert runtime.queues == ["a", "b", "c"]
    await runtime.stop(0.1)
    runtime.serve(["d"])
    assert runtime.queues == ["a", "b", "c"]
    await fill(layer, 1, queue="a")
    await fill(layer, 1, queue="d")
    await settle()
    assert called == []
    assert runtime.handled == 0


async def test_concurrency_is_shared_by_every_queue() -> None:
    layer = InMemoryChannelLayer()
    await fill(layer, 4, queue="first")
    await fill(layer, 4, queue="second")
    gate, busy, all_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    running = 0
    finished = 0
    peak = 0

    async def handler(message: dict[str, Any]) -> None:
        nonlocal running, peak, finished
        running += 1
        peak = max(peak, running)
        if running >= 2:
            busy.set()
        await gate.wait()
        running -= 1
        finished += 1
        if finished == 8:
            all_done.set()

    runtime = WorkerRuntime(layer, handler, concurrency=3)
    runtime.serve(["first", "second"])
    try:
        await wait_for(busy)
        await settle()
        assert 2 <= runtime.in_flight <= 3
        gate.set()
        await wait_for(all_done)
        assert peak <= 3
    finally:
        gate.set()
        await runtime.stop(1)


async def test_an_idle_queue_does_not_starve_another() -> None:
    layer = InMemoryChannelLayer()
    await fill(layer, 1, queue="busy")
    handled = asyncio.Event()

    async def handler(message: dict[str, Any]) -> None:
        handled.set()

    runtime = WorkerRuntime(layer, handler, concurrency=1)
    runtime.serve(["idle", "busy"])
    try:
        await wait_for(handled, 0.5)
    finally:
        await runtime.stop(0.1)


def test_problem_is_what_the_handler_reports() -> None:
    async def handler(message: dict[str, Any]) -> None:
        pass

    problems: list[str | None] = [None]
    layer = InMemoryChannelLayer()
    runtime = WorkerRuntime(layer, handler, concurrency=1, health=lambda: problems[-1])
    assert runtime.problem() is None
    problems.append("all 1 threads for sync methods are stuck")
    assert runtime.problem() == "all 1 threads for sync methods are stuck"
    assert WorkerRuntime(layer, handler, concurrency=1).problem() is None
