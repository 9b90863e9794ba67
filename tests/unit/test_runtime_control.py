"""The worker loop's control listener: a channel of its own, kept in a group, left on stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from channels.layers import InMemoryChannelLayer

from channels_rpc.runtime import WorkerRuntime

pytestmark = pytest.mark.anyio

QUEUE = "rpc.unit-control"
GROUP = "g"


async def idle(message: dict[str, Any]) -> None:
    raise AssertionError(f"no request was sent, got {message!r}")


class Controls:
    """A control handler that records what it receives."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self._fail = fail_first

    async def __call__(self, message: dict[str, Any]) -> None:
        if self._fail:
            self._fail -= 1
            raise RuntimeError("control handler failed")
        self.received.append(message)
        self.arrived.set()

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(2):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()


async def eventually(condition: Callable[[], object], seconds: float = 2.0) -> None:
    """Wait until ``condition()`` holds (state that no event reports is polled)."""
    with anyio.fail_after(seconds):
        while True:
            if condition():
                return
            await asyncio.sleep(0.005)


async def member(layer: InMemoryChannelLayer, group: str = GROUP) -> str:
    """The channel the runtime keeps in ``group``, once it joined."""
    await eventually(lambda: layer.groups.get(group))
    [channel] = layer.groups[group]
    assert isinstance(channel, str)
    return channel


async def test_the_listener_joins_the_group_receives_group_sends_and_leaves_on_stop() -> None:
    layer = InMemoryChannelLayer()
    controls = Controls()
    runtime = WorkerRuntime(layer, idle, concurrency=1, control=controls, control_group=GROUP)
    runtime.serve([QUEUE])
    try:
        channel = await member(layer)
        assert "!" in channel  # a process-local channel of its own, not a queue
        await layer.group_send(GROUP, {"type": "rpc.cancel", "n": 1})
        await layer.group_send(GROUP, {"type": "rpc.cancel", "n": 2})
        await controls.wait_for(2)
        assert [m["n"] for m in controls.received] == [1, 2]
    finally:
        await runtime.stop(0)
    assert GROUP not in layer.groups


async def test_without_a_control_handler_no_group_is_joined() -> None:
    layer = InMemoryChannelLayer()
    handled = asyncio.Event()

    async def handle(message: dict[str, Any]) -> None:
        handled.set()

    runtime = WorkerRuntime(layer, handle, concurrency=1, control_group=GROUP)
    runtime.serve([QUEUE])
    try:
        # A request went through: the loop runs, and a listener started with it (before the
        # puller took anything) would have joined by now.
        await layer.send(QUEUE, {"type": "rpc.request"})
        with anyio.fail_after(2):
            await handled.wait()
        assert layer.groups == {}
    finally:
        await runtime.stop(0)


async def test_control_messages_arrive_while_every_slot_is_busy() -> None:
    layer = InMemoryChannelLayer()
    busy, release = asyncio.Event(), asyncio.Event()

    async def stuck(message: dict[str, Any]) -> None:
        busy.set()
        await release.wait()

    controls = Controls()
    runtime = WorkerRuntime(layer, stuck, concurrency=1, control=controls, control_group=GROUP)
    runtime.serve([QUEUE])
    try:
        await layer.send(QUEUE, {"type": "rpc.request"})
        with anyio.fail_after(2):
            await busy.wait()
        await member(layer)
        await layer.group_send(GROUP, {"type": "rpc.cancel", "n": 1})
        await controls.wait_for(1)
        assert runtime.in_flight == 1
    finally:
        release.set()
        await runtime.stop(1)


async def test_a_failing_control_handler_does_not_stop_the_listener(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = InMemoryChannelLayer()
    controls = Controls(fail_first=1)
    runtime = WorkerRuntime(layer, idle, concurrency=1, control=controls, control_group=GROUP)
    runtime.serve([QUEUE])
    try:
        await member(layer)
        with caplog.at_level(logging.WARNING, logger="channels_rpc.worker"):
            await layer.group_send(GROUP, {"type": "rpc.cancel", "n": 1})
            # The listener backs off, joins again and hears the next message.
            await eventually(lambda: "control channel failed" in caplog.text)
            await member(layer)
            await layer.group_send(GROUP, {"type": "rpc.cancel", "n": 2})
            await controls.wait_for(1)
        assert [m["n"] for m in controls.received] == [2]
    finally:
        await runtime.stop(0)
    assert GROUP not in layer.groups


async def test_the_membership_is_renewed_before_the_group_expires() -> None:
    layer = InMemoryChannelLayer(group_expiry=0.2)  # renewed every 0.1 s
    controls = Controls()
    runtime = WorkerRuntime(layer, idle, concurrency=1, control=controls, control_group=GROUP)
    runtime.serve([QUEUE])
    try:
        channel = await member(layer)
        joined = layer.groups[GROUP][channel]
        await eventually(lambda: layer.groups[GROUP][channel] != joined, 1)
        assert layer.groups[GROUP][channel] > joined
        # Still the same channel, still hearing the group.
        await layer.group_send(GROUP, {"type": "rpc.cancel", "n": 1})
        await controls.wait_for(1)
    finally:
        await runtime.stop(0)
    assert GROUP not in layer.groups


async def test_the_listener_starts_with_serve_even_before_any_queue() -> None:
    layer = InMemoryChannelLayer()
    controls = Controls()
    runtime = WorkerRuntime(layer, idle, concurrency=1, control=controls, control_group=GROUP)
    runtime.serve([])
    try:
        await member(layer)
        await layer.group_send(GROUP, {"type": "rpc.cancel", "n": 1})
        await controls.wait_for(1)
    finally:
        await runtime.stop(0)
    assert GROUP not in layer.groups
