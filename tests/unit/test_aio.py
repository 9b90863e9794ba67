"""The shared async plumbing (channels_rpc._aio): backoff, kept tasks, races."""

from __future__ import annotations

import asyncio
import gc

import anyio
import pytest

from channels_rpc._aio import Backoff, TaskSet, cancel_and_wait, first_completed

pytestmark = pytest.mark.anyio


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_reset() -> None:
    backoff = Backoff()
    assert [backoff.next() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next() == 0.1
    custom = Backoff(first=0.05, cap=0.15)
    assert [custom.next() for _ in range(3)] == [0.05, 0.1, 0.15]


async def test_a_spawned_task_nobody_else_holds_runs_to_its_end() -> None:
    tasks, done = TaskSet(), asyncio.Event()
    gate = asyncio.get_running_loop().create_future()

    async def work(gate: asyncio.Future[None]) -> None:
        await gate
        done.set()

    tasks.spawn(work(gate), name="kept")
    gc.collect()  # nothing but the set holds the task
    assert [task.get_name() for task in tasks] == ["kept"]
    gate.set_result(None)
    with anyio.fail_after(1):
        await done.wait()
    await asyncio.sleep(0)  # the done callback runs
    assert len(tasks) == 0


async def test_cancel_all_cancels_and_waits_for_every_task() -> None:
    tasks, ended = TaskSet(), []

    async def forever(n: int) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            ended.append(n)

    started = [tasks.spawn(forever(n)) for n in range(3)]
    await asyncio.sleep(0)
    await tasks.cancel_all()
    assert sorted(ended) == [0, 1, 2]
    assert all(task.cancelled() for task in started)


async def test_first_completed_keeps_the_winner_and_ends_the_losers() -> None:
    loser_ended = asyncio.Event()

    async def slow() -> str:
        try:
            await asyncio.sleep(60)
        finally:
            loser_ended.set()
        return "slow"

    async def fast() -> str:
        return "fast"

    loser, winner = await first_completed(slow(), fast())
    assert winner.result() == "fast"
    assert loser.cancelled()
    assert loser_ended.is_set()  # ended before first_completed returned


async def test_first_completed_keeps_an_error_and_times_out() -> None:
    async def fails() -> None:
        raise ConnectionError("down")

    [failed] = await first_completed(fails())
    assert isinstance(failed.exception(), ConnectionError)
    never = asyncio.get_running_loop().create_future()
    [waited] = await first_completed(never, timeout=0.01)
    assert waited.cancelled()


async def test_cancel_and_wait_skips_nones_and_finished_tasks() -> None:
    async def value() -> int:
        return 1

    finished = asyncio.ensure_future(value())
    await finished
    await cancel_and_wait(None, finished)
    assert finished.result() == 1
