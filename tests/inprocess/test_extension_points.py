"""Middleware, permission_required and signals, seen from a client."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest
from channels.layers import get_channel_layer
from django.dispatch import Signal

from channels_rpc import (
    AsyncJsonRpcWebsocketConsumer,
    JsonRpcError,
    LoggingMiddleware,
    embedded,
    permission_required,
    signals,
)
from tests.inprocess.helpers import (
    WAIT,
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


# ---------------------------------------------------------------------------------------------
# Middleware


class Seen:
    """Records the requests it sees; sync."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def process_request(self, data: dict[str, Any], consumer: Any) -> dict[str, Any]:
        self.requests.append(data)
        return data


class AsyncSeen:
    def __init__(self) -> None:
        self.requests: list[Any] = []

    async def process_request(self, data: dict[str, Any], consumer: Any) -> dict[str, Any]:
        self.requests.append(data)
        return data


class Doubler:
    """Returns a new request object with every positional param doubled."""

    def process_request(self, data: dict[str, Any], consumer: Any) -> dict[str, Any]:
        return {**data, "params": [2 * p for p in data["params"]]}


class AsyncDoubler:
    async def process_request(self, data: dict[str, Any], consumer: Any) -> dict[str, Any]:
        return {**data, "params": [2 * p for p in data["params"]]}


class InPlaceDoubler:
    """Changes the request object it is given and returns it (the common middleware idiom)."""

    def process_request(self, data: dict[str, Any], consumer: Any) -> dict[str, Any]:
        data["params"] = [2 * p for p in data["params"]]
        return data


class Rejecter:
    def process_request(self, data: dict[str, Any], consumer: Any) -> None:
        return None


class Forbidder:
    async def process_request(self, data: dict[str, Any], consumer: Any) -> dict[str, Any]:
        raise JsonRpcError(None, 4003, {"reason": "quota"}, message="Forbidden")


class Broken:
    def process_request(self, data: dict[str, Any], consumer: Any) -> dict[str, Any]:
        raise RuntimeError("middleware bug")


class Tag:
    """Appends its name to list results."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.responses: list[Any] = []

    def process_response(self, response: dict[str, Any], consumer: Any) -> dict[str, Any]:
        self.responses.append(response)
        return {**response, "result": [*response["result"], self.name]}


class AsyncTag(Tag):
    async def process_response(  # type: ignore[override]
        self, response: dict[str, Any], consumer: Any
    ) -> dict[str, Any]:
        return super().process_response(response, consumer)


class BrokenResponse:
    def process_response(self, response: dict[str, Any], consumer: Any) -> dict[str, Any]:
        raise RuntimeError("response middleware bug")


def consumer_with(*middleware: Any) -> tuple[type[AsyncJsonRpcWebsocketConsumer], list[Any]]:
    """A fresh consumer class with ``middleware``; the list records the calls its methods run."""

    class MiddlewareConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    MiddlewareConsumer.middleware = list(middleware)
    runs: list[Any] = []

    @MiddlewareConsumer.rpc_method()
    async def add(a: int, b: int) -> int:
        runs.append((a, b))
        return a + b

    @MiddlewareConsumer.rpc_method()
    async def empty() -> list[str]:
        return []

    @MiddlewareConsumer.rpc_method()
    async def fail() -> list[str]:
        raise RuntimeError("method failed")

    @MiddlewareConsumer.rpc_notification()
    async def note() -> None:
        runs.append("note")

    return MiddlewareConsumer, runs


async def test_process_request_sees_each_request_and_each_batch_element() -> None:
    seen, async_seen = Seen(), AsyncSeen()
    consumer, _ = consumer_with(seen, async_seen)
    communicator = await connect(consumer)
    assert await call(communicator, "add", [1, 2]) == result(1, 3)
    await send(communicator, [request("add", [2, 2], rpc_id=2), request("empty", rpc_id=3)])
    assert await receive(communicator) == [result(2, 4), result(3, [])]
    for middleware in (seen, async_seen):
        assert [(r["method"], r["id"]) for r in middleware.requests] == [
            ("add", 1),
            ("add", 2),
            ("empty", 3),
        ]
    await communicator.disconnect()


@pytest.mark.parametrize("middleware", [Doubler(), AsyncDoubler()], ids=["sync", "async"])
async def test_process_request_can_change_params(middleware: Any) -> None:
    consumer, runs = consumer_with(middleware)
    communicator = await connect(consumer)
    assert await call(communicator, "add", [1, 2]) == result(1, 6)
    assert runs == [(2, 4)]
    await communicator.disconnect()


async def test_process_request_can_change_params_in_place() -> None:
    consumer, _ = consumer_with(InPlaceDoubler())
    communicator = await connect(consumer)
    # What travels to the worker is the request after middleware, not the frame's text: for a
    # batch element and for a request alone.
    await send(communicator, [request("add", [1, 2], rpc_id=1)])
    assert await receive(communicator) == [result(1, 6)]
    assert await call(communicator, "add", [1, 2], rpc_id=2) == result(2, 6)
    await communicator.disconnect()


async def test_process_request_returning_none_rejects_the_request() -> None:
    consumer, runs = consumer_with(Rejecter())
    communicator = await connect(consumer)
    assert await call(communicator, "add", [1, 2], rpc_id=4) == error(
        4, -32600, "Request rejected by middleware"
    )
    await send(communicator, notification("note"))
    assert await silent(communicator)
    assert runs == []
    await communicator.disconnect()


async def test_process_request_raising_json_rpc_error_answers_with_that_error() -> None:
    consumer, runs = consumer_with(Forbidder())
    communicator = await connect(consumer)
    assert await call(communicator, "add", [1, 2], rpc_id=5) == error(
        5, 4003, "Forbidden", {"reason": "quota"}
    )
    assert runs == []
    await communicator.disconnect()


async def test_process_request_raising_anything_else_is_an_internal_error() -> None:
    consumer, runs = consumer_with(Broken())
    communicator = await connect(consumer)
    assert await call(communicator, "add", [1, 2], rpc_id=6) == error(
        6, -32603, "Middleware error occurred"
    )
    assert await call(communicator, "add", [1, 2], rpc_id=7) == error(
        7, -32603, "Middleware error occurred"
    )
    assert runs == []
    await communicator.disconnect()


async def test_process_response_runs_in_reverse_order_on_results_only() -> None:
    first, second = Tag("first"), AsyncTag("second")
    consumer, _ = consumer_with(first, second)
    communicator = await connect(consumer)
    assert await call(communicator, "empty") == result(1, ["second", "first"])
    assert (await call(communicator, "fail", rpc_id=2))["error"]["code"] == -32000
    assert (await call(communicator, "nope", rpc_id=3))["error"]["code"] == -32601
    assert [r["id"] for r in first.responses] == [1]
    assert [r["id"] for r in second.responses] == [1]
    await communicator.disconnect()


async def test_a_raising_process_response_keeps_the_response_it_was_given() -> None:
    consumer, _ = consumer_with(Tag("outer"), BrokenResponse(), Tag("inner"))
    communicator = await connect(consumer)
    assert await call(communicator, "empty") == result(1, ["inner", "outer"])
    await communicator.disconnect()


async def test_logging_middleware_logs_calls_and_responses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer, _ = consumer_with(
        LoggingMiddleware(), LoggingMiddleware("rpc.params", log_params=True)
    )
    caplog.set_level(logging.DEBUG, logger="channels_rpc.middleware")
    caplog.set_level(logging.DEBUG, logger="rpc.params")
    communicator = await connect(consumer)
    assert await call(communicator, "add", [1, 2], rpc_id=9) == result(9, 3)
    await communicator.disconnect()
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "rpc.params"]
    assert logged[0] == ("INFO", "RPC call: method='add' id=9 params=[1, 2]")
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name.endswith("ware")]
    assert logged[0] == ("INFO", "RPC call: method='add' id=9")
    assert len(logged) == 2
    level, message = logged[1]
    assert level == "DEBUG"
    assert message.startswith("RPC response: id=9 in ")
    assert message.endswith(" ms")


# ---------------------------------------------------------------------------------------------
# permission_required


class StubUser:
    pk = 42

    def __init__(self, *, authenticated: bool = True, allowed: bool = True) -> None:
        self.is_authenticated = authenticated
        self.allowed = allowed
        self.checked: list[tuple[str, ...]] = []

    def has_perms(self, perms: Any) -> bool:
        self.checked.append(tuple(perms))
        return self.allowed


class GuardedConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


class OpenConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


@permission_required("app.view_secret")
@GuardedConsumer.rpc_method()
async def secret() -> str:
    return "the secret"


@GuardedConsumer.rpc_method()
@permission_required("app.view_secret", "app.change_secret")
def secret_below() -> str:
    return "the other secret"


DENIED_USERS = {
    "no-user": None,
    "anonymous": StubUser(authenticated=False),
    "lacking-permission": StubUser(allowed=False),
}


async def answer_text(consumer: type[AsyncJsonRpcWebsocketConsumer], method: str, user: Any) -> str:
    communicator = await connect(consumer, user=user)
    await send(communicator, request(method, rpc_id="p-1"))
    text = await receive_text(communicator)
    await communicator.disconnect()
    return text


@pytest.mark.parametrize("method", ["secret", "secret_below"])
@pytest.mark.parametrize("user", DENIED_USERS.values(), ids=DENIED_USERS.keys())
async def test_a_denied_call_is_indistinguishable_from_an_unknown_method(
    method: str, user: Any
) -> None:
    denied = await answer_text(GuardedConsumer, method, user)
    assert denied == await answer_text(OpenConsumer, method, user)
    assert '"code":-32601' in denied


@pytest.mark.parametrize(
    ("method", "perms", "value"),
    [
        ("secret", ("app.view_secret",), "the secret"),
        ("secret_below", ("app.view_secret", "app.change_secret"), "the other secret"),
    ],
)
async def test_an_allowed_user_runs_the_method(
    method: str, perms: tuple[str, ...], value: str
) -> None:
    user = StubUser()
    communicator = await connect(GuardedConsumer, user=user)
    assert await call(communicator, method) == result(1, value)
    assert user.checked == [perms]
    await communicator.disconnect()


async def test_permission_required_needs_permission_names() -> None:
    with pytest.raises(ValueError, match="permission names"):
        permission_required()


class FailingPermissionsUser(StubUser):
    def has_perms(self, perms: Any) -> bool:
        raise RuntimeError("database unavailable")


async def test_a_failing_permission_check_is_answered_and_the_connection_survives() -> None:
    communicator = await connect(GuardedConsumer, user=FailingPermissionsUser())
    await send(communicator, request("secret", rpc_id=3))
    answer = await receive(communicator, timeout=0.5)  # the dead consumer's error is raised here
    assert (answer["id"], answer["error"]["code"]) == (3, -32603)
    assert (await call(communicator, "nope", rpc_id=4))["error"]["code"] == -32601
    await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# Signals


class SignalConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


PAYLOAD = {"sum": 3}


@SignalConsumer.rpc_method()
async def payload(a: int, b: int) -> dict[str, int]:
    return PAYLOAD


@SignalConsumer.rpc_method()
async def explode() -> None:
    raise RuntimeError("boom")


@SignalConsumer.rpc_method(timeout=0.1)
def sync_stall() -> None:
    time.sleep(0.3)


@SignalConsumer.rpc_method()
async def nap(seconds: float) -> float:
    """Sleeps; returns how long it ran by its own clock (its signal's duration encloses that)."""
    started = time.monotonic()
    await asyncio.sleep(seconds)
    return time.monotonic() - started


@SignalConsumer.rpc_method()
def sync_nap(seconds: float) -> float:
    started = time.monotonic()
    time.sleep(seconds)
    return time.monotonic() - started


@SignalConsumer.rpc_method()
async def nap_and_fail(seconds: float) -> None:
    await asyncio.sleep(seconds)
    raise RuntimeError("failed after its nap")


#: Slack for comparing the wall clock (send times, queue_time) with the monotonic one
#: (duration, the tests' own measures), and for timers firing at their clock's resolution.
CLOCKS = 0.01


@contextmanager
def receiving(signal: Signal, sender: type) -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs)

    signal.connect(receiver, sender=sender, weak=False)
    try:
        yield received
    finally:
        signal.disconnect(receiver, sender=sender)


async def test_started_and_completed_carry_the_call_and_its_return_value() -> None:
    with (
        receiving(signals.rpc_method_started, SignalConsumer) as started,
        receiving(signals.rpc_method_completed, SignalConsumer) as completed,
        receiving(signals.rpc_method_failed, SignalConsumer) as failed,
    ):
        communicator = await connect(SignalConsumer)
        sent = time.monotonic()
        assert await call(communicator, "payload", [1, 2], rpc_id=5) == result(5, PAYLOAD)
        round_trip = time.monotonic() - sent
        await communicator.disconnect()
    assert [(s["method_name"], s["params"], s["rpc_id"]) for s in started] == [
        ("payload", [1, 2], 5)
    ]
    [done] = completed
    assert (done["method_name"], done["rpc_id"]) == ("payload", 5)
    assert done["result"] is PAYLOAD
    # Both fit in the round trip (their real values: test_queue_time_is_the_wait_...).
    assert done["duration"] >= 0
    assert done["queue_time"] >= 0
    assert done["duration"] + done["queue_time"] <= round_trip + CLOCKS
    assert failed == []


async def test_failed_carries_the_exception() -> None:
    with (
        receiving(signals.rpc_method_completed, SignalConsumer) as completed,
        receiving(signals.rpc_method_failed, SignalConsumer) as failed,
    ):
        communicator = await connect(SignalConsumer)
        sent = time.monotonic()
        assert (await call(communicator, "explode", rpc_id=6))["error"]["code"] == -32000
        assert (await call(communicator, "sync_stall", rpc_id=7))["error"]["code"] == -32603
        both_round_trips = time.monotonic() - sent
        await communicator.disconnect()
    assert completed == []
    assert [(f["method_name"], f["rpc_id"], type(f["error"])) for f in failed] == [
        ("explode", 6, RuntimeError),
        ("sync_stall", 7, TimeoutError),
    ]
    assert str(failed[0]["error"]) == "boom"
    assert failed[1]["duration"] >= 0.1 - CLOCKS  # sync_stall ran until its timeout
    assert all(f["queue_time"] >= 0 for f in failed)
    assert sum(f["duration"] + f["queue_time"] for f in failed) <= both_round_trips + CLOCKS


QUEUE_WAIT = 0.3  # how long a call waits in the queue for a worker (the subject: a sleep)
RUN = 0.2  # how long the method runs


@pytest.mark.parametrize(
    ("method", "signal"),
    [
        ("nap", signals.rpc_method_completed),
        ("sync_nap", signals.rpc_method_completed),
        ("nap_and_fail", signals.rpc_method_failed),
    ],
)
async def test_queue_time_is_the_wait_for_a_worker_and_duration_the_run(
    method: str, signal: Signal
) -> None:
    # No worker runs until the test starts one, QUEUE_WAIT after the call was queued.
    with rpc_settings(EXECUTION="workers"), receiving(signal, SignalConsumer) as received:
        layer = get_channel_layer()
        communicator = await connect(SignalConsumer)
        before_send = time.time()
        await send(communicator, request(method, [RUN], rpc_id=1))
        await until_queued(layer, "rpc.default")
        queued_at = time.time()
        await asyncio.sleep(QUEUE_WAIT)
        worker_started_at, worker_started = time.time(), time.monotonic()
        embedded.ensure_worker(layer, ["rpc.default"])
        answer = await receive(communicator)
        answered_at, answered = time.time(), time.monotonic()
        await communicator.disconnect()
    [sent] = received
    run = answer.get("result", RUN)  # the method's own measure, else at least its nap
    assert run >= RUN - CLOCKS
    assert run <= sent["duration"] <= answered - worker_started
    # From the front-end's send to the start of the run: between the wait the test saw and the
    # whole round trip but the run.
    waited = worker_started_at - queued_at
    assert waited >= QUEUE_WAIT - CLOCKS  # so the lower bound below says something
    assert waited - CLOCKS <= sent["queue_time"]
    assert sent["queue_time"] <= answered_at - before_send - sent["duration"] + CLOCKS


async def until_queued(layer: Any, queue: str) -> None:
    """Wait until ``queue`` of the in-memory layer holds a message."""
    with anyio.fail_after(WAIT):
        while True:
            waiting = layer.channels.get(queue)
            if waiting is not None and not waiting.empty():
                return
            await asyncio.sleep(0.005)


async def test_client_connected_and_disconnected_are_sent() -> None:
    with (
        receiving(signals.rpc_client_connected, SignalConsumer) as connected,
        receiving(signals.rpc_client_disconnected, SignalConsumer) as disconnected,
    ):
        before_connect = time.monotonic()
        communicator = await connect(SignalConsumer, "/ws/signals/")
        connected_at = time.monotonic()
        assert [c["scope"]["path"] for c in connected] == ["/ws/signals/"]
        assert disconnected == []
        assert await call(communicator, "payload", [1, 2]) == result(1, PAYLOAD)
        closing_at = time.monotonic()
        await communicator.disconnect(code=4000)
        closed_at = time.monotonic()
    [gone] = disconnected
    assert gone["close_code"] == 4000
    assert gone["scope"]["path"] == "/ws/signals/"
    assert closing_at - connected_at <= gone["duration"] <= closed_at - before_connect
    assert gone["consumer"] is connected[0]["consumer"]


async def test_a_raising_receiver_does_not_break_the_call(caplog: pytest.LogCaptureFixture) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    for signal in (signals.rpc_method_started, signals.rpc_method_completed):
        signal.connect(broken, sender=SignalConsumer, weak=False)
    try:
        communicator = await connect(SignalConsumer)
        assert await call(communicator, "payload", [1, 2]) == result(1, PAYLOAD)
        await communicator.disconnect()
    finally:
        for signal in (signals.rpc_method_started, signals.rpc_method_completed):
            signal.disconnect(broken, sender=SignalConsumer)
    raised = [r for r in caplog.records if r.getMessage().startswith("signal receiver")]
    assert len(raised) == 2
