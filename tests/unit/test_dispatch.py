"""dispatch_each: what Channels' await_many_dispatch promises, with a reader per source."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from channels_rpc.dispatch import dispatch_each

pytestmark = pytest.mark.anyio


async def test_messages_of_every_source_are_dispatched_one_at_a_time_in_arrival_order() -> None:
    first: asyncio.Queue[str] = asyncio.Queue()
    second: asyncio.Queue[str] = asyncio.Queue()
    dispatched: list[str] = []
    all_five = asyncio.Event()
    busy = False

    async def dispatch(message: str) -> None:
        nonlocal busy
        assert not busy, "dispatched while another message was still being dispatched"
        busy = True
        await asyncio.sleep(0.001)
        dispatched.append(message)
        busy = False
        if len(dispatched) == 5:
            all_five.set()

    task = asyncio.ensure_future(dispatch_each([first.get, second.get], dispatch))
    for message in ("a1", "b1", "a2", "b2", "b3"):
        (first if message[0] == "a" else second).put_nowait(message)
        await asyncio.sleep(0.005)
    with anyio.fail_after(1):
        await all_five.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert dispatched == ["a1", "b1", "a2", "b2", "b3"]


async def test_a_source_is_read_again_only_once_its_message_was_dispatched() -> None:
    reads = 0
    release = asyncio.Event()

    async def source() -> int:
        nonlocal reads
        reads += 1
        return reads

    async def dispatch(message: int) -> None:
        await release.wait()

    task = asyncio.ensure_future(dispatch_each([source], dispatch))
    for _ in range(20):
        await asyncio.sleep(0)
    assert reads == 1  # the first message waits in dispatch: nothing more is taken meanwhile
    release.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert reads > 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_what_a_source_raises_is_raised_and_every_reader_ends() -> None:
    idle_cancelled = asyncio.Event()

    async def idle() -> Any:
        try:
            await asyncio.Event().wait()
        finally:
            idle_cancelled.set()

    async def broken() -> Any:
        raise ConnectionError("gone")

    async def dispatch(message: Any) -> None:
        raise AssertionError("nothing to dispatch")

    with pytest.raises(ConnectionError, match="gone"):
        await dispatch_each([idle, broken], dispatch)
    assert idle_cancelled.is_set()


async def test_what_dispatch_raises_ends_it_and_its_readers() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    queue.put_nowait(1)
    before = asyncio.all_tasks()

    async def dispatch(message: int) -> None:
        raise ValueError(f"bad {message}")

    with pytest.raises(ValueError, match="bad 1"):
        await dispatch_each([queue.get], dispatch)
    assert asyncio.all_tasks() == before  # no reader left behind
    queue.put_nowait(2)
    for _ in range(10):
        await asyncio.sleep(0)
    assert queue.qsize() == 1  # and nothing reads on
