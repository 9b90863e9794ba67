"""Calls run by the embedded worker: round trips, errors raised by methods, timeouts."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import json
import threading
import time
import uuid
from typing import Any

import pytest

from channels_rpc import AsyncJsonRpcWebsocketConsumer, JsonRpcError, RpcContext
from tests.inprocess.helpers import (
    call,
    connect,
    error,
    notification,
    receive,
    receive_text,
    request,
    result,
    rpc_settings,
    send,
    silent,
)

pytestmark = pytest.mark.anyio


class MathConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


@MathConsumer.rpc_method()
async def add(a: int, b: int) -> int:
    return a + b


@MathConsumer.rpc_method()
async def ping() -> str:
    return "pong"


@MathConsumer.rpc_method()
def sync_thread() -> int:
    return threading.get_ident()


@MathConsumer.rpc_method()
async def context(ctx: RpcContext) -> dict[str, Any]:
    return {
        "method_name": ctx.method_name,
        "rpc_id": ctx.rpc_id,
        "is_notification": ctx.is_notification,
        "path": ctx.scope["path"],
        "type": ctx.scope["type"],
    }


@MathConsumer.rpc_method()
async def announce(ctx: RpcContext, pct: int) -> str:
    await ctx.notify("progress", {"pct": pct})
    return "done"


@MathConsumer.rpc_method()
async def sleep(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


# ---------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize(
    ("method", "params", "expected"),
    [
        ("add", [1, 2], 3),
        ("add", {"b": 2, "a": 40}, 42),
        ("ping", None, "pong"),
        ("ping", [], "pong"),
    ],
)
async def test_params_are_bound_by_position_by_name_or_absent(
    method: str, params: Any, expected: Any
) -> None:
    communicator = await connect(MathConsumer)
    assert await call(communicator, method, params, rpc_id=7) == result(7, expected)
    await communicator.disconnect()


async def test_sync_methods_run_in_a_thread_not_on_the_event_loop() -> None:
    communicator = await connect(MathConsumer)
    answer = await call(communicator, "sync_thread")
    assert isinstance(answer["result"], int)
    assert answer["result"] != threading.get_ident()
    await communicator.disconnect()


async def test_context_is_injected_with_call_metadata_and_scope() -> None:
    communicator = await connect(MathConsumer, "/ws/ctx/")
    answer = await call(communicator, "context", rpc_id="ctx-1")
    assert answer == result(
        "ctx-1",
        {
            "method_name": "context",
            "rpc_id": "ctx-1",
            "is_notification": False,
            "path": "/ws/ctx/",
            "type": "websocket",
        },
    )
    await communicator.disconnect()


async def test_ctx_notify_reaches_only_the_caller_before_the_result() -> None:
    caller = await connect(MathConsumer)
    bystander = await connect(MathConsumer)
    await send(caller, request("announce", [50], rpc_id=3))
    assert await receive_text(caller) == '{"jsonrpc":"2.0","method":"progress","params":{"pct":50}}'
    assert await receive(caller) == result(3, "done")
    assert await silent(bystander)
    await caller.disconnect()
    await bystander.disconnect()


async def test_ctx_notify_encodes_like_results() -> None:
    class ClockConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    @ClockConsumer.rpc_method()
    async def clock(ctx: RpcContext) -> None:
        await ctx.notify("clock", {"at": datetime.datetime(2024, 1, 2, 3, 4, 5)})

    communicator = await connect(ClockConsumer)
    await send(communicator, request("clock"))
    assert await receive(communicator) == notification("clock", {"at": "2024-01-02T03:04:05"})
    assert await receive(communicator) == result(1, None)
    await communicator.disconnect()


async def test_notifications_run_and_are_never_answered() -> None:
    class NotifyConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    ran = asyncio.Event()
    seen: list[Any] = []

    @NotifyConsumer.rpc_notification()
    async def hello(ctx: RpcContext, name: str) -> str:
        seen.append((name, ctx.is_notification, ctx.rpc_id))
        ran.set()
        return "ignored"

    communicator = await connect(NotifyConsumer)
    await send(communicator, notification("hello", {"name": "ada"}))
    await asyncio.wait_for(ran.wait(), 3)
    assert seen == [("ada", True, None)]
    assert await silent(communicator)
    await communicator.disconnect()


async def test_a_fast_call_is_answered_before_an_earlier_slow_one() -> None:
    communicator = await connect(MathConsumer)
    await send(communicator, request("sleep", [0.3], rpc_id="slow"))
    await send(communicator, request("add", [1, 1], rpc_id="fast"))
    assert await receive(communicator) == result("fast", 2)
    assert await receive(communicator) == result("slow", 0.3)
    await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# Errors


class FailingConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


@FailingConsumer.rpc_method()
async def invalid(value: int) -> None:
    raise JsonRpcError(None, -32602, {"field": "value", "error": "bad"})


@FailingConsumer.rpc_method()
async def quota() -> None:
    raise JsonRpcError(None, 4001, {"limit": 10}, message="Quota exceeded")


@FailingConsumer.rpc_method()
async def server_range() -> None:
    raise JsonRpcError(None, -32050)


@FailingConsumer.rpc_method()
async def crash(kind: str) -> None:
    errors = {"runtime": RuntimeError("boom"), "value": ValueError("bad")}
    raise errors.get(kind, ZeroDivisionError("division by zero"))


@FailingConsumer.rpc_method()
def sync_crash() -> None:
    raise RuntimeError("sync boom")


@FailingConsumer.rpc_method()
async def nan() -> float:
    return float("nan")


@FailingConsumer.rpc_method()
async def rich() -> dict[str, Any]:
    return {
        "dt": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "dec": decimal.Decimal("1.10"),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    }


async def test_json_rpc_error_is_answered_with_the_requests_id() -> None:
    communicator = await connect(FailingConsumer)
    assert await call(communicator, "invalid", [1], rpc_id=11) == error(
        11, -32602, "Invalid Params", {"field": "value", "error": "bad"}
    )
    await communicator.disconnect()


async def test_custom_codes_and_messages_are_kept() -> None:
    communicator = await connect(FailingConsumer)
    assert await call(communicator, "quota", rpc_id=1) == error(
        1, 4001, "Quota exceeded", {"limit": 10}
    )
    assert await call(communicator, "server_range", rpc_id=2) == error(2, -32050, "Server Error")
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("method", "params"),
    [("crash", ["runtime"]), ("crash", ["zero"]), ("crash", ["value"]), ("sync_crash", None)],
)
async def test_other_exceptions_are_application_errors_and_the_connection_serves_on(
    method: str, params: Any
) -> None:
    communicator = await connect(FailingConsumer)
    assert await call(communicator, method, params, rpc_id=5) == error(
        5, -32000, "Application error occurred"
    )
    assert await call(communicator, "nan", rpc_id=6) == error(
        6, -32701, "Failed to serialize result"
    )
    await communicator.disconnect()


async def test_unsanitized_errors_carry_the_exception_type_and_message() -> None:
    with rpc_settings(SANITIZE_ERRORS=False):
        communicator = await connect(FailingConsumer)
        assert await call(communicator, "crash", ["runtime"]) == error(
            1, -32000, "Application error occurred", {"type": "RuntimeError", "message": "boom"}
        )
        await communicator.disconnect()


async def test_the_default_encoder_handles_datetime_decimal_and_uuid() -> None:
    communicator = await connect(FailingConsumer)
    assert await call(communicator, "rich") == result(
        1,
        {
            "dt": "2024-01-02T03:04:05",
            "dec": "1.10",
            "uuid": "12345678-1234-5678-1234-567812345678",
        },
    )
    await communicator.disconnect()


class SetEncoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, frozenset):
            return sorted(o)
        return super().default(o)


class EncodingConsumer(AsyncJsonRpcWebsocketConsumer):
    json_encoder_class = SetEncoder


@EncodingConsumer.rpc_method()
async def frozen() -> frozenset[int]:
    return frozenset({3, 1, 2})


@EncodingConsumer.rpc_method()
async def plain_set():  # type: ignore[no-untyped-def]  # unannotated: nothing converts the set
    return {1}


@EncodingConsumer.rpc_method()
async def annotated_set() -> set[int]:
    return {1}


async def test_json_encoder_class_encodes_results() -> None:
    communicator = await connect(EncodingConsumer)
    assert await call(communicator, "frozen") == result(1, [1, 2, 3])
    await communicator.disconnect()


async def test_a_result_the_encoder_cannot_handle_is_a_serialization_error() -> None:
    communicator = await connect(EncodingConsumer)
    assert await call(communicator, "plain_set", rpc_id=31) == error(
        31, -32701, "Failed to serialize result"
    )
    await communicator.disconnect()


async def test_a_result_is_serialized_by_its_return_annotation() -> None:
    communicator = await connect(EncodingConsumer)
    assert await call(communicator, "annotated_set", rpc_id=32) == result(32, [1])
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"a": 1}, "missing a required argument: 'b'"),
        ([1, 2, 3], "too many positional arguments"),
        ({"a": 1, "b": 2, "c": 3}, "got an unexpected keyword argument 'c'"),
    ],
)
async def test_wrong_params_are_refused_without_running_the_method(
    params: Any, problem: str
) -> None:
    class CountingConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    runs: list[int] = []

    @CountingConsumer.rpc_method()
    async def pair(a: int, b: int) -> int:
        runs.append(1)
        return a + b

    communicator = await connect(CountingConsumer)
    assert await call(communicator, "pair", params, rpc_id=4) == error(
        4, -32602, "Invalid Params", {"error": problem}
    )
    assert runs == []
    assert await call(communicator, "pair", [1, 2]) == result(1, 3)
    assert runs == [1]
    await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# Timeouts


async def test_an_async_method_over_its_timeout_is_cancelled_and_answered() -> None:
    class TimeoutConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    cleaned_up: list[bool] = []

    @TimeoutConsumer.rpc_method(timeout=0.3)
    async def stuck() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            cleaned_up.append(True)

    communicator = await connect(TimeoutConsumer)
    started = time.monotonic()
    answer = await call(communicator, "stuck", rpc_id=2)
    elapsed = time.monotonic() - started
    assert answer == error(
        2, -32603, "Internal Error: Method execution timed out after 0.3 seconds", {"timeout": 0.3}
    )
    assert 0.25 <= elapsed < 0.7
    assert cleaned_up == [True]
    await communicator.disconnect()


async def test_a_sync_method_over_its_timeout_is_answered_on_time() -> None:
    class SyncTimeoutConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    release, finished = threading.Event(), threading.Event()

    @SyncTimeoutConsumer.rpc_method(timeout=0.3)
    def blocking() -> str:
        release.wait(5)
        finished.set()
        return "late"

    communicator = await connect(SyncTimeoutConsumer)
    started = time.monotonic()
    answer = await call(communicator, "blocking")
    elapsed = time.monotonic() - started
    assert answer["error"]["code"] == -32603
    assert answer["error"]["data"] == {"timeout": 0.3}
    assert 0.25 <= elapsed < 0.7
    assert not finished.is_set()
    release.set()
    assert await asyncio.to_thread(finished.wait, 3)
    assert await silent(communicator)  # the thread's late result is discarded
    await communicator.disconnect()


async def test_timeout_zero_means_no_limit() -> None:
    class PatientConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    @PatientConsumer.rpc_method(timeout=0)
    async def unlimited() -> str:
        await asyncio.sleep(0.3)
        return "finished"

    @PatientConsumer.rpc_method()
    async def limited() -> str:
        await asyncio.sleep(0.3)
        return "finished"

    with rpc_settings(DEFAULT_TIMEOUT=0.1, REPLY_GRACE=0.05):
        communicator = await connect(PatientConsumer)
        assert await call(communicator, "unlimited") == result(1, "finished")
        assert (await call(communicator, "limited", rpc_id=2))["error"]["data"] == {"timeout": 0.1}
        await communicator.disconnect()
