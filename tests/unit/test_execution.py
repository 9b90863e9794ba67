from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from channels_rpc.context import RpcContext
from channels_rpc.envelope import Call
from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode
from channels_rpc.execution import Executor, Outcome, timeout_error
from channels_rpc.protocol import MAX_ID_LENGTH
from channels_rpc.registry import MethodSpec, register
from channels_rpc.threads import ThreadPool

pytestmark = pytest.mark.anyio


#: The threads of the sync methods these tests run (the worker has one pool per process too).
run_sync = ThreadPool(16).run


def make_spec(func: Callable[..., Any], **options: Any) -> MethodSpec:
    return register(type("Consumer", (), {}), func, name=None, notification=False, **options)


def make_call(
    method: str = "m", *, deadline: float | None = None, timeout: float | None = None
) -> Call:
    return Call(
        consumer="tests.Consumer",
        method=method,
        body="{}",
        queue="rpc.default",
        call=1,
        reply_to="reply",
        deadline=deadline,
        timeout=timeout,
        sent_at=time.time(),
        scope={},
    )


def in_seconds(seconds: float) -> tuple[float, float]:
    """``deadline`` and ``timeout`` for a call that may run ``seconds``."""
    return time.time() + seconds, seconds


class Handle:
    channel_name = "reply"

    async def notify_channel(self, method: str, params: Any = None) -> None:
        pass


def make_context(call: Call) -> RpcContext:
    return RpcContext(Handle(), call.method, 1, False, scope={"path": "/"})


def decode(outcome: Outcome) -> Any:
    return json.loads(outcome.body)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def started(self, call: Call, context: RpcContext, params: Any) -> None:
        self.events.append(("started", call, context, params))

    def completed(self, call: Call, context: RpcContext, result: Any, duration: float) -> None:
        self.events.append(("completed", call, context, result, duration))

    def failed(
        self, call: Call, context: RpcContext, error: BaseException, duration: float
    ) -> None:
        self.events.append(("failed", call, context, error, duration))


async def execute(
    func: Callable[..., Any],
    params: Any = None,
    *,
    executor: Executor | None = None,
    call: Call | None = None,
    encoder: type[json.JSONEncoder] | None = None,
    **options: Any,
) -> Outcome:
    call = call or make_call()
    executor = executor or Executor(run_sync=run_sync)
    spec = make_spec(func, **options)
    return await executor.run(
        call, spec, [] if params is None else params, make_context(call), encoder
    )


# --------------------------------------------------------------------------------------------
# Results


async def test_async_result() -> None:
    async def add(a: int, b: int) -> int:
        await anyio.lowlevel.checkpoint()
        return a + b

    outcome = await execute(add, [1, 2])
    assert outcome == Outcome(True, "3")


async def test_sync_result_runs_in_a_thread() -> None:
    threads: list[int] = []

    def where(a: int, *, b: int = 0) -> dict[str, int]:
        threads.append(threading.get_ident())
        return {"sum": a + b}

    outcome = await execute(where, {"a": 1, "b": 2})
    assert outcome.ok
    assert decode(outcome) == {"sum": 3}
    assert threads != [threading.get_ident()]


async def test_sync_callable_returning_an_awaitable_is_awaited() -> None:
    async def inner() -> str:
        return "inner"

    def outer() -> Any:
        return inner()

    assert await execute(outer) == Outcome(True, '"inner"')


async def test_result_is_compact_json_in_utf8() -> None:
    async def data() -> Any:
        return {"a": [1, 2], "é": None}

    outcome = await execute(data)
    assert outcome.body == '{"a":[1,2],"é":null}'


@pytest.mark.parametrize("result", [{1, 2}, float("nan"), float("inf"), object(), b"x"])
async def test_result_that_is_not_json(result: Any) -> None:
    async def bad() -> Any:
        return result

    outcome = await execute(bad)
    assert not outcome.ok
    assert decode(outcome) == {"code": -32701, "message": "Failed to serialize result"}


async def test_deeply_nested_result_is_a_serialisation_error() -> None:
    value: Any = 1
    for _ in range(50_000):
        value = [value]

    async def deep() -> Any:
        return value

    assert decode(await execute(deep))["code"] == -32701


async def test_encoder_is_used_for_results() -> None:
    class SetEncoder(json.JSONEncoder):
        def default(self, o: Any) -> Any:
            return sorted(o) if isinstance(o, set) else super().default(o)

    async def numbers() -> set[int]:
        return {3, 1, 2}

    assert await execute(numbers, encoder=SetEncoder) == Outcome(True, "[1,2,3]")


async def test_context_is_injected() -> None:
    seen: list[RpcContext] = []

    async def whoami(ctx: RpcContext, suffix: str) -> str:
        seen.append(ctx)
        return ctx.method_name + suffix

    def sync_whoami(ctx: RpcContext) -> Any:
        return dict(ctx.scope)

    call = make_call("whoami")
    context = make_context(call)
    outcome = await Executor(run_sync=run_sync).run(call, make_spec(whoami), ["!"], context, None)
    assert outcome == Outcome(True, '"whoami!"')
    assert seen == [context]
    assert decode(await execute(sync_whoami)) == {"path": "/"}


async def test_unannotated_first_parameter_gets_params_not_the_context() -> None:
    async def echo(ctx, value):  # type: ignore[no-untyped-def]
        return [ctx, value]

    assert decode(await execute(echo, ["a", "b"])) == ["a", "b"]


# --------------------------------------------------------------------------------------------
# Errors


async def test_invalid_params_are_answered_with_32602() -> None:
    recorder = Recorder()

    async def one(a: int) -> int:
        return a

    outcome = await execute(one, [1, 2], executor=Executor(run_sync=run_sync, hooks=recorder))
    error = decode(outcome)
    assert error["code"] == -32602
    assert "too many positional arguments" in error["data"]["error"]
    assert [event[0] for event in recorder.events] == ["failed"]


@pytest.mark.parametrize("is_async", [True, False])
async def test_json_rpc_error_passes_through(is_async: bool) -> None:
    def sync_refuse() -> None:
        raise JsonRpcError(999, 4000, {"reason": "no"}, message="Refused")

    async def async_refuse() -> None:
        sync_refuse()

    outcome = await execute(async_refuse if is_async else sync_refuse)
    assert not outcome.ok
    assert decode(outcome) == {"code": 4000, "message": "Refused", "data": {"reason": "no"}}
    assert "999" not in outcome.body


async def test_json_rpc_error_message_rules_apply() -> None:
    async def missing() -> None:
        raise JsonRpcError(None, JsonRpcErrorCode.METHOD_NOT_FOUND, {"method": "x"})

    assert decode(await execute(missing)) == {
        "code": -32601,
        "message": "Method Not Found: 'x'",
        "data": {"method": "x"},
    }


async def test_json_rpc_error_with_non_json_data_drops_the_data() -> None:
    async def odd() -> None:
        raise JsonRpcError(None, 4001, {"obj": object()})

    assert decode(await execute(odd)) == {"code": 4001, "message": "Error"}


@pytest.mark.parametrize("is_async", [True, False])
async def test_other_exceptions_are_sanitized(
    is_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    def sync_boom() -> None:
        raise ValueError("secret detail")

    async def async_boom() -> None:
        sync_boom()

    with caplog.at_level(logging.ERROR, logger="channels_rpc.worker"):
        outcome = await execute(async_boom if is_async else sync_boom)
    assert decode(outcome) == {"code": -32000, "message": "Application error occurred"}
    assert "secret detail" not in outcome.body
    assert any(record.exc_info for record in caplog.records)


async def test_other_exceptions_carry_details_when_not_sanitized() -> None:
    async def boom() -> None:
        raise KeyError("which")

    outcome = await execute(boom, executor=Executor(run_sync=run_sync, sanitize_errors=False))
    assert decode(outcome) == {
        "code": -32000,
        "message": "Application error occurred",
        "data": {"type": "KeyError", "message": "'which'"},
    }


async def test_a_method_raising_timeout_error_is_an_application_error() -> None:
    async def own_timeout() -> None:
        raise TimeoutError("upstream service")

    assert decode(await execute(own_timeout))["code"] == -32000


async def test_json_rpc_error_with_too_deep_data_is_still_answered() -> None:
    data: Any = 1
    for _ in range(50_000):
        data = [data]

    async def deep_error() -> None:
        raise JsonRpcError(None, 4002, data)

    assert decode(await execute(deep_error)) == {"code": 4002, "message": "Error"}


async def test_json_rpc_error_with_odd_timeout_data_is_still_answered() -> None:
    async def odd_timeout() -> None:
        raise JsonRpcError(None, JsonRpcErrorCode.INTERNAL_ERROR, {"timeout": "soon"})

    assert decode(await execute(odd_timeout))["code"] == -32603


# --------------------------------------------------------------------------------------------
# Deadlines


async def test_async_method_is_cancelled_at_its_deadline() -> None:
    cleanup: list[str] = []

    async def slow() -> None:
        try:
            await anyio.sleep(10)
        except anyio.get_cancelled_exc_class():
            cleanup.append("cancelled")
            raise
        finally:
            cleanup.append("finally")

    deadline, timeout = in_seconds(0.2)
    started = time.monotonic()
    outcome = await execute(slow, call=make_call(deadline=deadline, timeout=timeout))
    elapsed = time.monotonic() - started
    assert 0.15 <= elapsed < 0.5
    assert cleanup == ["cancelled", "finally"]
    assert decode(outcome) == {
        "code": -32603,
        "message": "Internal Error: Method execution timed out after 0.2 seconds",
        "data": {"timeout": 0.2},
    }


async def test_cancelled_method_may_still_await_in_its_finally_block() -> None:
    cleanup: list[str] = []

    async def tidy() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.01)
            cleanup.append("released")

    deadline, timeout = in_seconds(0.05)
    outcome = await execute(tidy, call=make_call(deadline=deadline, timeout=timeout))
    assert cleanup == ["released"]
    assert decode(outcome)["code"] == -32603


async def test_sync_method_past_its_deadline_is_answered_on_time() -> None:
    release, done = threading.Event(), threading.Event()

    def block() -> str:
        try:
            release.wait(5)
            return "late"
        finally:
            done.set()

    deadline, timeout = in_seconds(0.2)
    started = time.monotonic()
    try:
        outcome = await execute(block, call=make_call(deadline=deadline, timeout=timeout))
        elapsed = time.monotonic() - started
        assert not done.is_set()
    finally:
        release.set()
        assert await anyio.to_thread.run_sync(done.wait, 1)
    assert elapsed < 0.5
    assert decode(outcome)["code"] == -32603
    assert decode(outcome)["data"] == {"timeout": 0.2}


async def test_method_finishing_before_its_deadline_is_answered_normally() -> None:
    async def quick() -> str:
        await anyio.sleep(0.01)
        return "ok"

    deadline, timeout = in_seconds(1)
    outcome = await execute(quick, call=make_call(deadline=deadline, timeout=timeout))
    assert outcome == Outcome(True, '"ok"')


@pytest.mark.parametrize("is_async", [True, False])
async def test_expired_call_is_not_executed(is_async: bool) -> None:
    runs: list[int] = []
    recorder = Recorder()

    def sync_count() -> None:
        runs.append(1)

    async def async_count() -> None:
        runs.append(1)

    executor = Executor(run_sync=run_sync, hooks=recorder, clock=lambda: 1000.0)
    call = make_call(deadline=1000.0, timeout=3.0)
    outcome = await execute(async_count if is_async else sync_count, executor=executor, call=call)
    assert runs == []
    assert recorder.events == []
    assert outcome == timeout_error(3.0)
    assert (
        decode(outcome)["message"] == "Internal Error: Method execution timed out after 3.0 seconds"
    )


async def test_clock_decides_the_remaining_time() -> None:
    async def fine() -> int:
        return 1

    executor = Executor(run_sync=run_sync, clock=lambda: 1000.0)
    assert await execute(fine, executor=executor, call=make_call(deadline=1000.5, timeout=9)) == (
        Outcome(True, "1")
    )


async def test_cancellation_from_outside_escapes() -> None:
    entered = anyio.Event()
    cleanup: list[str] = []
    outcomes: list[Outcome] = []

    async def forever() -> None:
        entered.set()
        try:
            await anyio.sleep(10)
        finally:
            cleanup.append("finally")

    async def runner() -> None:
        outcomes.append(await execute(forever))

    with anyio.fail_after(1):
        async with anyio.create_task_group() as group:
            group.start_soon(runner)
            await entered.wait()
            group.cancel_scope.cancel()
    assert outcomes == []
    assert cleanup == ["finally"]


# --------------------------------------------------------------------------------------------
# Hooks and logging


class Stopwatch:
    """The run time of a method by its own clock: the duration its hooks get must enclose it."""

    def __init__(self) -> None:
        self.started = self.stopped = 0.0

    def __enter__(self) -> Stopwatch:
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopped = time.monotonic()

    @property
    def seconds(self) -> float:
        return self.stopped - self.started


async def timed_run(
    executor: Executor, call: Call, spec: MethodSpec, params: Any, context: RpcContext
) -> float:
    """Run a call; the seconds ``executor.run`` took (a duration it reports fits in them)."""
    started = time.monotonic()
    await executor.run(call, spec, params, context, None)
    return time.monotonic() - started


async def test_hooks_on_success() -> None:
    recorder = Recorder()
    run = Stopwatch()

    async def echo(value: Any) -> Any:
        with run:
            await asyncio.sleep(0.05)
            return value

    call = make_call("echo")
    context = make_context(call)
    executor = Executor(run_sync=run_sync, hooks=recorder)
    elapsed = await timed_run(executor, call, make_spec(echo), {"value": [1]}, context)
    assert [event[:4] for event in recorder.events] == [
        ("started", call, context, {"value": [1]}),
        ("completed", call, context, [1]),
    ]
    duration = recorder.events[1][4]
    assert isinstance(duration, float)
    assert run.seconds >= 0.05
    assert run.seconds <= duration <= elapsed


async def test_hooks_on_failure() -> None:
    recorder = Recorder()
    problem = RuntimeError("x")
    run = Stopwatch()

    def fail() -> None:
        with run:
            time.sleep(0.05)
            raise problem

    call = make_call("fail")
    context = make_context(call)
    executor = Executor(run_sync=run_sync, hooks=recorder)
    elapsed = await timed_run(executor, call, make_spec(fail), [], context)
    assert [event[0] for event in recorder.events] == ["started", "failed"]
    assert recorder.events[1][1:4] == (call, context, problem)
    assert run.seconds >= 0.05
    assert run.seconds <= recorder.events[1][4] <= elapsed


async def test_hooks_on_timeout() -> None:
    recorder = Recorder()

    async def slow() -> None:
        await anyio.sleep(10)

    deadline, timeout = in_seconds(0.05)
    executor = Executor(run_sync=run_sync, hooks=recorder)
    await execute(slow, executor=executor, call=make_call(deadline=deadline, timeout=timeout))
    assert [event[0] for event in recorder.events] == ["started", "failed"]
    error = recorder.events[1][3]
    assert isinstance(error, TimeoutError)
    assert recorder.events[1][4] >= 0.04


async def test_failure_of_result_encoding_still_reports_completed() -> None:
    recorder = Recorder()

    unencodable_result = object()

    async def unencodable() -> object:
        return unencodable_result

    outcome = await execute(unencodable, executor=Executor(run_sync=run_sync, hooks=recorder))
    assert decode(outcome)["code"] == -32701
    assert [event[0] for event in recorder.events] == ["started", "completed"]
    assert recorder.events[1][3] is unencodable_result


@pytest.mark.parametrize("log_params", [True, False])
async def test_params_are_logged_only_when_asked(
    log_params: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async def noop(secret: str) -> None:
        pass

    executor = Executor(run_sync=run_sync, log_params=log_params)
    with caplog.at_level(logging.DEBUG, logger="channels_rpc.worker"):
        await execute(noop, ["hunter2"], executor=executor)
    assert ("hunter2" in caplog.text) is log_params


def test_outcome_error_encodes_an_error_object() -> None:
    outcome = Outcome.error(JsonRpcErrorCode.SERVER_BUSY, data={"limit": 3})
    assert not outcome.ok
    assert decode(outcome) == {
        "code": -32010,
        "message": "Server Busy",
        "data": {"limit": 3},
    }


# --------------------------------------------------------------------------------------------
# Issue 10: BaseException, answer sizes, the clock, threads, log lines


async def outcome_of(executor: Executor, func: Callable[..., Any], **options: Any) -> Outcome:
    """The outcome of running ``func``; fails (not crashes) when an exception escapes."""
    try:
        return await execute(func, executor=executor, **options)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # before the fix: SystemExit and KeyboardInterrupt escaped
        pytest.fail(f"{exc!r} escaped the executor")


class Halt(BaseException):
    pass


@pytest.mark.parametrize("is_async", [True, False])
@pytest.mark.parametrize(
    "exc", [SystemExit(3), KeyboardInterrupt(), GeneratorExit(), Halt("odd")], ids=repr
)
async def test_a_base_exception_is_the_calls_error(
    is_async: bool, exc: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()

    def sync_raise() -> None:
        raise exc

    async def async_raise() -> None:
        sync_raise()

    executor = Executor(run_sync=run_sync, hooks=recorder)
    with caplog.at_level(logging.ERROR, logger="channels_rpc.worker"):
        outcome = await outcome_of(executor, async_raise if is_async else sync_raise)
    assert decode(outcome) == {"code": -32000, "message": "Application error occurred"}
    assert [event[0] for event in recorder.events] == ["started", "failed"]
    assert recorder.events[1][3] is exc
    assert any(record.exc_info and record.exc_info[1] is exc for record in caplog.records)


def frame_size(rpc_id: Any, outcome: Outcome) -> int:
    key = "result" if outcome.ok else "error"
    frame = '{"jsonrpc":"2.0","id":' + json.dumps(rpc_id) + f',"{key}":' + outcome.body + "}"
    return len(frame.encode())


async def test_non_ascii_results_are_utf8_not_six_byte_escapes() -> None:
    async def text() -> str:
        return "é" * 200_000

    outcome = await execute(text, executor=Executor(run_sync=run_sync, max_response_size=2**20))
    assert outcome.ok
    assert frame_size(1, outcome) == 400_000 + len('{"jsonrpc":"2.0","id":1,"result":""}')


async def test_a_lone_surrogate_still_encodes() -> None:
    async def odd() -> str:
        return "\ud800é"

    assert await execute(odd) == Outcome(True, '"\\ud800\\u00e9"')


@pytest.mark.parametrize(("size", "ok"), [(100, True), (101, False)])
async def test_the_whole_answer_frame_is_measured_against_the_limit(size: int, ok: bool) -> None:
    # The frame {"jsonrpc":"2.0","id":1,"result":"éé..."}: 36 bytes around the text.
    async def text() -> str:
        return "é" * ((size - 36) // 2) + "x" * ((size - 36) % 2)

    executor = Executor(run_sync=run_sync, max_response_size=100)
    outcome = await execute(text, executor=executor)
    assert outcome.ok is ok
    if ok:
        assert frame_size(1, outcome) == 100
    else:
        assert decode(outcome) == {
            "code": -32014,
            "message": "Response Too Large: 101 bytes, over the limit of 100",
            "data": {"size": 101, "limit": 100, "what": "response"},
        }


@pytest.mark.parametrize("fits", [True, False])
async def test_the_longest_id_is_counted_in_the_frame(fits: bool) -> None:
    # The worker skips encoding the id when no id could push the frame over: the bound it
    # uses must hold for the longest id, 256 characters that are all six-byte escapes.
    rpc_id = "\u0001" * MAX_ID_LENGTH
    around = len(('{"jsonrpc":"2.0","id":' + json.dumps(rpc_id) + ',"result":}').encode())
    limit = 10_000
    text = "x" * (limit - around - 2 + (0 if fits else 1))  # 2: the quotes of the result

    async def big() -> str:
        return text

    call = make_call()
    context = RpcContext(Handle(), call.method, rpc_id, False, scope={"path": "/"})
    executor = Executor(run_sync=run_sync, max_response_size=limit)
    outcome = await executor.run(call, make_spec(big), [], context, None)
    assert outcome.ok is fits
    if fits:
        assert frame_size(rpc_id, outcome) == limit


async def test_an_error_too_large_for_the_frame_is_answered_32014() -> None:
    async def loud() -> None:
        raise JsonRpcError(None, 4000, {"detail": "x" * 5000})

    outcome = await execute(loud, executor=Executor(run_sync=run_sync, max_response_size=1000))
    assert decode(outcome)["code"] == -32014


async def test_a_push_too_large_raised_in_the_method_answers_its_call() -> None:
    from channels_rpc.exceptions import ResponseTooLargeError

    async def publish() -> None:
        raise ResponseTooLargeError(2_000_000, 1_048_576, what="push")

    assert decode(await execute(publish))["data"] == {
        "size": 2_000_000,
        "limit": 1_048_576,
        "what": "push",
    }


async def test_the_deadline_is_read_on_the_given_clock() -> None:
    # This host's clock runs 10 s ahead of the layer's: the call still has 5 s to run.
    ran: list[int] = []

    async def work() -> int:
        ran.append(1)
        return 1

    layer_now = time.time() - 10
    executor = Executor(run_sync=run_sync, clock=lambda: time.time() - 10)
    outcome = await execute(work, executor=executor, call=make_call(deadline=layer_now + 5))
    assert outcome == Outcome(True, "1")
    assert ran == [1]


# ThreadPool


async def test_pool_runs_in_threads_with_the_callers_context_variables() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    pool = ThreadPool(2)
    where = await pool.run(lambda: (threading.get_ident(), var.get()), "m")
    assert where[0] != threading.get_ident()
    assert where[1] == "caller"


async def test_pool_passes_base_exceptions_to_the_caller() -> None:
    def leave() -> None:
        raise SystemExit(2)

    with pytest.raises(SystemExit):
        await ThreadPool(1).run(leave, "leave")


async def test_pool_counts_abandoned_threads_until_they_return(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = ThreadPool(2)
    release = threading.Event()
    running = []

    def stuck() -> str:
        running.append(1)
        release.wait(10)
        return "late"

    try:
        with caplog.at_level(logging.WARNING, logger="channels_rpc.worker"):
            for _ in range(2):
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(pool.run(stuck, "stuck"), 0.05)
        assert "2 of 2 threads are stuck" in caplog.text
        assert pool.threads == 2
        assert pool.problem() == (
            "all 2 threads for sync methods are stuck in calls that timed out (stuck x2)"
        )
        with pytest.raises(JsonRpcError) as refused:
            await pool.run(lambda: "quick", "quick")
        assert refused.value.code == JsonRpcErrorCode.SERVER_BUSY
        assert refused.value.data == {
            "reason": "all 2 threads for sync methods are busy, 2 of them in calls that "
            "timed out (stuck x2)",
            "threads": 2,
            "stuck": 2,
        }
        assert len(running) == 2
    finally:
        release.set()

    async def freed() -> bool:
        return not pool.stuck()

    await wait_for_condition(freed)
    assert pool.problem() is None
    assert await pool.run(lambda: "quick", "quick") == "quick"
    assert pool.threads <= 2


async def test_pool_threads_exit_when_idle() -> None:
    pool = ThreadPool(3, idle_seconds=0.05)
    await asyncio.gather(*(pool.run(lambda: time.sleep(0.05), "nap") for _ in range(3)))
    assert pool.threads >= 1

    async def gone() -> bool:
        return pool.threads == 0

    await wait_for_condition(gone)
    assert await pool.run(lambda: "again", "again") == "again"


async def wait_for_condition(condition: Callable[[], Any]) -> None:
    deadline = time.monotonic() + 5
    while not await condition():
        assert time.monotonic() < deadline, "condition not met within 5 s"
        await asyncio.sleep(0.01)


# Log lines

FORGED = "2026-01-01 00:00:00,000 ERROR channels_rpc.worker forged"


def forged_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(FORGED)]


@pytest.mark.parametrize("is_async", [True, False])
async def test_exception_text_cannot_forge_log_lines(
    is_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    def sync_fail(message: str) -> None:
        raise RuntimeError(message)

    async def async_fail(message: str) -> None:
        sync_fail(message)

    message = "boom\n" + FORGED + "\r\n" + FORGED + "\x85\u2028\x1b[31m"
    with caplog.at_level(logging.ERROR, logger="channels_rpc.worker"):
        outcome = await execute(async_fail if is_async else sync_fail, [message])
    assert decode(outcome)["code"] == -32000
    assert forged_lines(caplog.text) == []
    assert "Traceback (most recent call last)" in caplog.text  # developers still get it
    assert "RuntimeError: boom\\n" + FORGED + "\\r\\n" + FORGED + "\\x85\\u2028\\x1b[31m" in (
        caplog.text
    )


async def test_chained_exception_texts_are_escaped_too(caplog: pytest.LogCaptureFixture) -> None:
    async def wrapped(message: str) -> None:
        try:
            raise ValueError(message)
        except ValueError as exc:
            raise RuntimeError("outer\n" + FORGED) from exc

    with caplog.at_level(logging.ERROR, logger="channels_rpc.worker"):
        await execute(wrapped, ["inner\n" + FORGED])
    assert forged_lines(caplog.text) == []
    assert "ValueError: inner\\n" + FORGED in caplog.text
    assert "RuntimeError: outer\\n" + FORGED in caplog.text


async def test_params_logged_on_request_are_one_bounded_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def noop(text: str) -> None:
        pass

    executor = Executor(run_sync=run_sync, log_params=True)
    with caplog.at_level(logging.DEBUG, logger="channels_rpc.worker"):
        await execute(noop, ["\n" + FORGED + "x" * 50_000], executor=executor)
    (record,) = [r for r in caplog.records if "calling" in r.getMessage()]
    assert "\n" not in record.getMessage()
    assert len(record.getMessage()) < 2100
    assert "more characters" in record.getMessage()


def test_every_record_of_the_worker_logger_is_one_line(caplog: pytest.LogCaptureFixture) -> None:
    from channels_rpc.logsafe import loggable

    with caplog.at_level(logging.INFO, logger="channels_rpc.worker"):
        logging.getLogger("channels_rpc.worker").info(
            "notification %r failed: %s", "m", "\n" + FORGED
        )
    assert forged_lines(caplog.text) == []
    assert loggable("plain") == "plain"
    assert loggable("a\tb\x00c\x7f") == "a\\tb\\x00c\\x7f"
    assert loggable("x" * 10, limit=4) == "xxxx... (6 more characters)"


def test_an_exception_text_of_one_newline_escapes_only_its_own_line() -> None:
    from channels_rpc.logsafe import format_exception

    def raise_it() -> None:
        raise RuntimeError("\n")

    try:
        raise_it()
    except RuntimeError as exc:
        text = format_exception(exc)
    lines = text.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert any(line.strip().startswith("raise RuntimeError") for line in lines)
    assert lines[-1] == "RuntimeError: \\n"
