"""The process pool for sync methods (``rpcworker --pool processes``), in this process.

Each test forks a real zygote and real children from the test process; the pool's ``target``
and the registered methods below exist in the children because they are forked after these
were defined.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import socket
import stat
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError
from django.test import override_settings

from channels_rpc import child_calls
from channels_rpc.child_calls import ChildCall
from channels_rpc.config import get_config
from channels_rpc.context import CallerHandle, CancelFlag, RpcContext
from channels_rpc.envelope import Call
from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode, ResponseTooLargeError
from channels_rpc.execution import Executor
from channels_rpc.management.commands import rpcworker
from channels_rpc.processes import ProcessPool
from channels_rpc.registry import consumer_key, register
from channels_rpc.threads import ThreadPool
from tests.procfs import gone

pytestmark = pytest.mark.anyio


class OddError(Exception):
    """Pickles, but cannot be unpickled: its __init__ takes other arguments than it stores."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"odd {a + b}")


def _echo(arg: Any, caller: CallerHandle | None, cancelled: CancelFlag) -> Any:
    return {"pid": os.getpid(), "arg": arg}


def _spin(seconds: float, caller: CallerHandle | None, cancelled: CancelFlag) -> Any:
    """CPU-bound, for ``seconds`` unless cancelled."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cancelled.is_set():
            return {"pid": os.getpid(), "noticed": True}
    return {"pid": os.getpid(), "noticed": False}


def _write_pid_and_spin(path: str, caller: CallerHandle | None, cancelled: CancelFlag) -> Any:
    """Says where it runs, then never returns by itself."""
    with open(path, "w") as out:
        out.write(str(os.getpid()))
    while True:
        pass


def _raise(error: BaseException, caller: CallerHandle | None, cancelled: CancelFlag) -> Any:
    raise error


def _odd(arg: Any, caller: CallerHandle | None, cancelled: CancelFlag) -> Any:
    raise OddError(1, 2)


def _odd_result(arg: Any, caller: CallerHandle | None, cancelled: CancelFlag) -> Any:
    return OddError(1, 2)


def _too_large(arg: Any, caller: CallerHandle | None, cancelled: CancelFlag) -> Any:
    raise ResponseTooLargeError(10, 5)


def _unpicklable(arg: Any, caller: CallerHandle | None, cancelled: CancelFlag) -> Any:
    return lambda: None


def _exit(arg: Any, caller: CallerHandle | None, cancelled: CancelFlag) -> Any:
    os._exit(3)


def _push(arg: Any, caller: CallerHandle | None, cancelled: CancelFlag) -> Any:
    assert caller is not None
    async_to_sync(caller.notify_channel)("progress", arg)
    try:
        async_to_sync(caller.join_group)("full")
    except JsonRpcError as exc:
        return exc.code
    return None


def _is_socket(fd: int, caller: CallerHandle | None, cancelled: CancelFlag) -> Any:
    return stat.S_ISSOCK(os.fstat(fd).st_mode)


TARGETS: dict[str, Callable[[Any, CallerHandle | None, CancelFlag], Any]] = {
    "echo": _echo,
    "spin": _spin,
    "write_pid_and_spin": _write_pid_and_spin,
    "raise": _raise,
    "odd": _odd,
    "odd_result": _odd_result,
    "too_large": _too_large,
    "unpicklable": _unpicklable,
    "exit": _exit,
    "push": _push,
    "is_socket": _is_socket,
}


def target(payload: Any, caller: CallerHandle | None, cancelled: CancelFlag) -> Any:
    """What the test pools run in their children: ``(what, argument)``."""
    what, arg = payload
    return TARGETS[what](arg, caller, cancelled)


class Handle:
    """The caller's handle a worker would pass (CallerChannel): records pushes."""

    channel_name = "specific.reply"

    def __init__(self) -> None:
        self.pushes: list[tuple[str, Any]] = []

    async def notify_channel(self, method: str, params: Any = None) -> None:
        self.pushes.append((method, params))

    async def join_group(self, group: str) -> None:
        raise JsonRpcError(None, JsonRpcErrorCode.SERVER_BUSY, {"groups": 100})

    async def leave_group(self, group: str) -> None:
        pass


@contextlib.asynccontextmanager
async def started_pool(size: int, **options: Any) -> AsyncIterator[ProcessPool]:
    """A started pool of ``target``, closed after."""
    pool = ProcessPool(target, size, **options)
    pool.start()
    try:
        yield pool
    finally:
        pool.close()
        await asyncio.sleep(0)  # the children's sockets close with the loop's next turn


@pytest.fixture
async def pool() -> AsyncIterator[ProcessPool]:
    async with started_pool(2, grace=0.3) as pool:
        yield pool


async def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"not within 10 s: {what}"
        await asyncio.sleep(0.01)


async def test_a_call_runs_in_a_child_and_its_result_comes_back(pool: ProcessPool) -> None:
    answer = await pool.run(("echo", {"x": [1, "two", None]}), "echo")
    assert answer["arg"] == {"x": [1, "two", None]}
    assert answer["pid"] != os.getpid()
    assert pool.processes == 1


async def test_at_most_size_children_and_the_others_wait(pool: ProcessPool) -> None:
    answers = await asyncio.gather(*(pool.run(("spin", 0.2), "spin") for _ in range(5)))
    assert len({a["pid"] for a in answers}) == 2
    assert pool.processes == 2


async def test_exceptions_cross_with_their_type_and_the_childs_traceback(
    pool: ProcessPool,
) -> None:
    with pytest.raises(ValueError, match="bad value") as caught:
        await pool.run(("raise", ValueError("bad value")), "raise")
    assert "in target" in str(caught.value.__cause__)  # the child's traceback, as the cause
    with pytest.raises(JsonRpcError) as rpc:
        await pool.run(("raise", JsonRpcError(None, 4000, {"why": "no"})), "raise")
    assert rpc.value.error() == {"code": 4000, "message": "Error", "data": {"why": "no"}}
    # One that fails to unpickle crosses as its type name and text; a JSON-RPC error that
    # fails to unpickle crosses as the error it answers with.
    with pytest.raises(Exception, match="odd 3") as odd:
        await pool.run(("odd", None), "odd")
    assert type(odd.value).__name__ == "OddError"
    with pytest.raises(JsonRpcError) as large:
        await pool.run(("too_large", None), "too_large")
    assert large.value.code == JsonRpcErrorCode.RESPONSE_TOO_LARGE
    assert large.value.data == {"size": 10, "limit": 5, "what": "response"}


async def test_the_calls_own_end_is_not_the_childs(pool: ProcessPool) -> None:
    first = await pool.run(("echo", 1), "echo")
    with pytest.raises(SystemExit):
        await pool.run(("raise", SystemExit(2)), "raise")
    with pytest.raises(Exception, match="pickle"):
        await pool.run(("unpicklable", None), "unpicklable")
    with pytest.raises(TypeError):  # it pickles, but the child cannot unpickle it
        await pool.run(("echo", ResponseTooLargeError(10, 5)), "echo")
    assert (await pool.run(("echo", 2), "echo"))["pid"] == first["pid"]


async def test_a_result_that_cannot_be_read_here_is_the_calls_error(pool: ProcessPool) -> None:
    with pytest.raises(TypeError):
        await pool.run(("odd_result", None), "odd_result")
    assert (await pool.run(("echo", 1), "echo"))["arg"] == 1


async def test_a_child_that_dies_answers_its_call_and_is_replaced(pool: ProcessPool) -> None:
    with pytest.raises(JsonRpcError) as caught:
        await pool.run(("exit", None), "exit")
    assert caught.value.code == JsonRpcErrorCode.INTERNAL_ERROR
    assert caught.value.data == {"reason": "the process running exit exited before it answered"}
    assert pool.processes == 0
    assert (await pool.run(("echo", 1), "echo"))["arg"] == 1


async def running_in(where: Path) -> int:
    """The pid a ``write_pid_and_spin`` call runs in, once it runs."""

    def pid() -> str:
        return where.read_text() if where.exists() else ""

    await eventually(lambda: bool(pid()), "the call running")
    return int(pid())


async def spinning(
    pool: ProcessPool, where: Path, caller: CallerHandle | None = None
) -> tuple[asyncio.Future[Any], int]:
    """A call that never returns by itself (``write_pid_and_spin``), and its child's pid once
    it runs there."""
    running = asyncio.ensure_future(pool.run(("write_pid_and_spin", str(where)), "spin", caller))
    return running, await running_in(where)


async def cancel(running: asyncio.Future[Any]) -> None:
    """Stop waiting for ``running``, as a caller cancelled."""
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running


async def test_a_method_without_context_is_killed_when_its_caller_stops_waiting(
    pool: ProcessPool, tmp_path: Path
) -> None:
    running, pid = await spinning(pool, tmp_path / "pid")
    await cancel(running)
    await eventually(lambda: gone(pid), f"child {pid} killed")
    assert pool.processes == 0
    assert pool.stuck().total() == 0
    assert (await pool.run(("echo", 1), "echo"))["pid"] != pid


async def test_a_method_with_context_sees_cancelled_and_keeps_its_child(pool: ProcessPool) -> None:
    running = asyncio.ensure_future(pool.run(("spin", 30), "spin", Handle()))
    await eventually(lambda: pool.processes == 1, "a child running")
    child = next(iter(pool._children))
    await cancel(running)
    await eventually(lambda: not pool.stuck(), "the child back from its call")
    assert (await pool.run(("echo", 1), "echo"))["pid"] == child.pid


async def test_a_method_with_context_that_ignores_cancelled_is_killed_after_the_grace(
    tmp_path: Path,
) -> None:
    async with started_pool(1, grace=2.0) as pool:
        running, pid = await spinning(pool, tmp_path / "pid", Handle())
        await cancel(running)
        assert pool.stuck() == {"spin": 1}  # within its grace
        await eventually(lambda: gone(pid), f"child {pid} killed")
        assert not pool.stuck()


async def test_pushes_are_made_by_the_parent_and_their_errors_raised_in_the_child(
    pool: ProcessPool,
) -> None:
    handle = Handle()
    assert await pool.run(("push", {"done": 1}), "push", handle) == JsonRpcErrorCode.SERVER_BUSY
    assert handle.pushes == [("progress", {"done": 1})]


async def test_children_do_not_hold_the_workers_sockets() -> None:
    # A socket the worker closes must close: a child holding a copy would keep it open.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        async with started_pool(1) as pool:
            assert await pool.run(("is_socket", listener.fileno()), "is_socket") is False


async def test_close_kills_busy_children_and_ends_the_zygote(
    pool: ProcessPool, tmp_path: Path
) -> None:
    running, pid = await spinning(pool, tmp_path / "pid")
    pool.close()
    with pytest.raises(JsonRpcError):
        await running
    await eventually(lambda: gone(pid), "the busy child killed")
    assert gone(pool._zygote.pid)  # ended, and reaped
    with pytest.raises(JsonRpcError) as refused:
        await pool.run(("echo", 1), "echo")
    assert refused.value.code == JsonRpcErrorCode.SERVICE_UNAVAILABLE


async def test_a_pool_without_its_zygote_says_so() -> None:
    async with started_pool(1) as pool:
        os.kill(pool._zygote.pid, 9)
        await asyncio.to_thread(os.waitpid, pool._zygote.pid, 0)
        with pytest.raises(JsonRpcError):
            await pool.run(("echo", 1), "echo")
        assert (pool.problem() or "").startswith("cannot fork a process for sync methods")


# Through the executor, as the worker runs methods (child_calls)


class Methods:
    pass


def whoami(ctx: RpcContext, word: str) -> dict[str, Any]:
    async_to_sync(ctx.progress)(1, 2)
    return {
        "pid": os.getpid(),
        "word": word,
        "method": ctx.method_name,
        "id": ctx.rpc_id,
        "path": ctx.scope["path"],
    }


def burn(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


WHOAMI = register(Methods, whoami, name=None, notification=False)
BURN = register(Methods, burn, name=None, notification=False)


def make_call(method: str, timeout: float | None = None) -> Call:
    return Call(
        consumer=consumer_key(Methods),
        method=method,
        body="{}",
        queue="rpc.default",
        call=1,
        reply_to="specific.reply",
        deadline=None if timeout is None else time.time() + timeout,
        timeout=timeout,
        sent_at=time.time(),
        scope={"path": "/rpc/"},
    )


@pytest.fixture
async def executor() -> AsyncIterator[Executor]:
    pool = child_calls.process_pool(2)
    pool.start()
    try:
        yield Executor(
            run_sync=ThreadPool(2).run,
            run_method=functools.partial(child_calls.send_to_child, pool),
        )
    finally:
        pool.close()
        await asyncio.sleep(0)


async def test_a_method_runs_in_a_child_with_its_context(executor: Executor) -> None:
    call, handle = make_call("whoami"), Handle()
    context = RpcContext(handle, "whoami", 7, False, scope={"path": "/rpc/"})
    outcome = await executor.run(call, WHOAMI, ["hi"], context, None)
    assert outcome.ok, outcome.body
    answer = json.loads(outcome.body)
    assert answer["pid"] != os.getpid()
    assert {k: v for k, v in answer.items() if k != "pid"} == {
        "word": "hi",
        "method": "whoami",
        "id": 7,
        "path": "/rpc/",
    }
    assert handle.pushes == [("rpc.progress", {"id": 7, "progress": 1, "total": 2})]


async def test_a_timed_out_method_is_answered_as_with_threads(executor: Executor) -> None:
    call = make_call("burn", timeout=0.3)
    context = RpcContext(Handle(), "burn", 1, False)
    outcome = await executor.run(call, BURN, [30], context, None)
    assert json.loads(outcome.body) == {
        "code": -32603,
        "message": "Internal Error: Method execution timed out after 0.3 seconds",
        "data": {"timeout": 0.3},
    }
    assert context.cancelled


def test_a_child_knows_only_the_methods_registered_before_the_fork() -> None:
    job = ChildCall(consumer_key(Methods), "nope", False, 1, {}, (), {}, ())
    with pytest.raises(JsonRpcError) as caught:
        child_calls.run_in_child(job, None, _Never())
    assert caught.value.code == JsonRpcErrorCode.METHOD_NOT_FOUND


class _Never:
    def is_set(self) -> bool:
        return False

    def set(self) -> None:
        pass


# Settings and command line


@pytest.mark.parametrize(
    ("setting", "match"),
    [({"WORKER_POOL": "forks"}, "one of"), ({"WORKER_PROCESSES": 0}, "positive integer")],
)
def test_the_pool_settings_are_checked(setting: dict[str, Any], match: str) -> None:
    with override_settings(CHANNELS_RPC=setting), pytest.raises(ImproperlyConfigured, match=match):
        get_config()


def test_the_command_line_wins_over_the_settings() -> None:
    config = replace(get_config(), worker_pool="threads", worker_processes=3)
    given = {"concurrency": None, "pool": "processes", "processes": None}
    chosen = rpcworker._worker_config(config, given)
    assert (chosen.worker_pool, chosen.worker_processes) == ("processes", 3)
    with pytest.raises(CommandError, match="--processes must be at least 1"):
        rpcworker._worker_config(config, {**given, "processes": 0})
