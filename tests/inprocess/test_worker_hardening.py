"""The worker side of issue 10, in process: what a method does must never take the worker down.

A method's ``sys.exit()`` is its call's error; sync methods that never return keep at most
``WORKER_CONCURRENCY`` threads; requests sent with ``ack`` are acknowledged when taken; answers
and pushes are sized in UTF-8 bytes where they are encoded; deadlines are read on the layer's
clock; joins from methods are capped; client text cannot forge worker log lines.

Requests are built as plain dicts (not with ``Call``) so that these tests run unchanged against
the code before the fixes, where they fail.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.management import CommandError, call_command

from channels_rpc import AsyncJsonRpcWebsocketConsumer, RpcContext, embedded, notify_group, registry
from channels_rpc._layer import CAPABILITIES
from channels_rpc.config import RpcConfig
from channels_rpc.envelope import cancel_message
from channels_rpc.health import beat
from channels_rpc.worker import CallHandler
from tests.inprocess.helpers import (
    call,
    connect,
    error,
    receive,
    receive_text,
    request,
    result,
    rpc_settings,
    send,
    silent,
)

pytestmark = pytest.mark.anyio

FORGED = "2026-01-01 00:00:00,000 ERROR channels_rpc.worker forged"
MIB = 1024 * 1024


class Halt(BaseException):
    """A BaseException of a method's own."""


BASE_EXCEPTIONS: dict[str, type[BaseException]] = {
    "exit": SystemExit,
    "interrupt": KeyboardInterrupt,
    "generator-exit": GeneratorExit,
    "own": Halt,
}


class Blocker:
    """A sync method's gate: how many threads wait in it now, and the most that ever did."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.idle = threading.Event()  # no thread waits in it
        self.idle.set()
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def block(self) -> str:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.idle.clear()
        try:
            self.release.wait(30)
            return "released"
        finally:
            with self._lock:
                self.running -= 1
                if not self.running:
                    self.idle.set()


BLOCKER = Blocker()
GATE: dict[str, asyncio.Event] = {}


@pytest.fixture(autouse=True)
def _fresh_probes() -> Iterator[None]:
    global BLOCKER
    BLOCKER = Blocker()
    GATE.clear()
    yield
    BLOCKER.release.set()  # threads a test left blocked finish


class HardConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


@HardConsumer.rpc_method()
async def ping() -> str:
    return "pong"


@HardConsumer.rpc_method()
def sync_ping() -> str:
    return "pong"


@HardConsumer.rpc_method()
async def leave(kind: str) -> None:
    raise BASE_EXCEPTIONS[kind]()


@HardConsumer.rpc_method()
def sync_leave(kind: str) -> None:
    raise BASE_EXCEPTIONS[kind]()


@HardConsumer.rpc_method(timeout=0.2)
def blocked() -> str:
    return BLOCKER.block()


@HardConsumer.rpc_method()
async def text(char: str, times: int) -> str:
    return char * times


@HardConsumer.rpc_method()
async def tell(ctx: RpcContext, char: str, times: int) -> str:
    await ctx.notify("tell", char * times)
    return "told"


@HardConsumer.rpc_method()
async def shout(group: str, char: str, times: int) -> str:
    await notify_group(group, "shout", char * times)
    return "shouted"


@HardConsumer.rpc_method()
async def subscribe(ctx: RpcContext, group: str) -> str:
    await ctx.join_group(group)
    return group


@HardConsumer.rpc_method()
async def fail(message: str) -> None:
    raise RuntimeError(message)


def frame_bytes(frame: str) -> int:
    return len(frame.encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# Item 9: a method's BaseException is its call's error


@pytest.mark.parametrize("method", ["leave", "sync_leave"])
@pytest.mark.parametrize("kind", list(BASE_EXCEPTIONS))
async def test_a_base_exception_in_a_method_is_that_calls_error(
    method: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: SystemExit and KeyboardInterrupt left the event loop (the worker process exited);
    # GeneratorExit from a sync method closed the worker's task and the call went unanswered.
    communicator = await connect(HardConsumer)
    with caplog.at_level(logging.ERROR, logger="channels_rpc.worker"):
        answer = await call(communicator, method, [kind], rpc_id=1)
    assert answer == error(1, -32000, "Application error occurred")
    assert f"method {method!r} raised {BASE_EXCEPTIONS[kind].__name__}" in caplog.text
    assert "Traceback (most recent call last)" in caplog.text
    assert await call(communicator, "ping", rpc_id=2) == result(2, "pong")
    assert await call(communicator, "sync_ping", rpc_id=3) == result(3, "pong")
    await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# Item 11: threads of sync methods stay bounded


async def test_sync_methods_that_outlive_their_timeout_never_grow_the_threads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Before: each timed-out call gave its thread's slot back while the thread ran on, so every
    # new call started one more thread (10 blocked threads here, with 3 allowed).
    with rpc_settings(WORKER_CONCURRENCY=3), caplog.at_level(logging.WARNING, "channels_rpc"):
        communicator = await connect(HardConsumer)
        for rpc_id in range(3):
            answer = await call(communicator, "blocked", rpc_id=rpc_id)
            assert answer["error"]["data"] == {"timeout": 0.2}
        for rpc_id in range(3, 10):
            answer = await call(communicator, "blocked", rpc_id=rpc_id)
            assert answer["error"]["code"] == -32010, answer
        assert answer["error"]["data"] == {
            "reason": "all 3 threads for sync methods are busy, 3 of them in calls that timed "
            "out (blocked x3)",
            "threads": 3,
            "stuck": 3,
        }
        assert (await call(communicator, "sync_ping", rpc_id=10))["error"]["code"] == -32010
        assert await call(communicator, "ping", rpc_id=11) == result(11, "pong")
        assert BLOCKER.peak == 3
        runtime = embedded.ensure_worker(get_channel_layer(), [])
        assert runtime.problem() == (
            "all 3 threads for sync methods are stuck in calls that timed out (blocked x3)"
        )
        assert "3 of 3 threads are stuck" in caplog.text

        BLOCKER.release.set()
        assert await asyncio.to_thread(BLOCKER.idle.wait, 5)
        assert await call(communicator, "sync_ping", rpc_id=12) == result(12, "pong")
        assert runtime.problem() is None
        await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# Items 10 and 14: rpc.taken


class Methods:
    """Stands in for a consumer class: a worker only needs its registry table."""


async def gated(tag: str) -> str:
    await GATE.setdefault(tag, asyncio.Event()).wait()
    return tag


async def echo_value(value: Any) -> Any:
    return value


for _func in (gated, echo_value):
    registry.register(Methods, _func, name=None, notification=False)
    registry.register(Methods, _func, name=None, notification=True)


def request_message(
    method: str,
    params: Any,
    *,
    token: int | None,
    reply_to: str,
    ack: int | None = None,
    deadline: float | None = None,
    sent: float | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if token is not None:
        body["id"] = token
    return {
        "type": "rpc.request",
        "v": 1,
        "consumer": registry.consumer_key(Methods),
        "method": method,
        "body": json.dumps(body),
        "queue": "rpc.default",
        "call": token,
        "reply": reply_to,
        "deadline": deadline,
        "timeout": None if deadline is None else 5.0,
        "sent": time.time() if sent is None else sent,
        "scope": {},
        "ack": ack,
    }


def taken(ack: int) -> dict[str, Any]:
    return {"type": "rpc.taken", "v": 1, "ack": ack}


async def next_message(layer: InMemoryChannelLayer, channel: str) -> dict[str, Any]:
    with anyio.fail_after(2):
        message: dict[str, Any] = await layer.receive(channel)
    return message


async def nothing_more(layer: InMemoryChannelLayer, channel: str) -> bool:
    try:
        await asyncio.wait_for(layer.receive(channel), 0.05)
    except asyncio.TimeoutError:
        return True
    return False


async def test_a_request_with_ack_is_acknowledged_when_taken_before_it_runs() -> None:
    layer = InMemoryChannelLayer()
    handler = CallHandler(layer, RpcConfig())
    reply = await layer.new_channel()
    task = asyncio.create_task(
        handler(request_message("gated", ["a"], token=1, reply_to=reply, ack=7))
    )
    assert await next_message(layer, reply) == taken(7)
    assert not task.done()  # acknowledged while the method still runs
    GATE.setdefault("a", asyncio.Event()).set()
    await task
    response = await next_message(layer, reply)
    assert (response["type"], response["call"], response["body"]) == ("rpc.response", 1, '"a"')
    assert await nothing_more(layer, reply)


async def test_a_request_without_ack_gets_its_answer_and_nothing_else() -> None:
    layer = InMemoryChannelLayer()
    handler = CallHandler(layer, RpcConfig())
    reply = await layer.new_channel()
    await handler(request_message("echo_value", [5], token=1, reply_to=reply))
    assert (await next_message(layer, reply))["type"] == "rpc.response"
    assert await nothing_more(layer, reply)


async def test_notifications_and_skipped_requests_are_acknowledged_too() -> None:
    layer = InMemoryChannelLayer()
    handler = CallHandler(layer, RpcConfig())
    reply = await layer.new_channel()
    # A notification: taken, never answered.
    await handler(request_message("echo_value", [1], token=None, reply_to=reply, ack=1))
    assert await next_message(layer, reply) == taken(1)
    assert await nothing_more(layer, reply)
    # Cancelled before a worker took it: skipped, but it did leave the queue.
    await handler.control(cancel_message(reply, [2]))
    await handler(request_message("echo_value", [2], token=2, reply_to=reply, ack=2))
    assert await next_message(layer, reply) == taken(2)
    assert await nothing_more(layer, reply)
    # Expired in the queue: taken, answered with a timeout, never run.
    expired = request_message(
        "echo_value", [3], token=3, reply_to=reply, ack=3, deadline=time.time() - 1
    )
    await handler(expired)
    assert await next_message(layer, reply) == taken(3)
    assert json.loads((await next_message(layer, reply))["body"])["data"] == {"timeout": 5.0}


# ---------------------------------------------------------------------------------------------
# Item 13: one clock


class SkewedLayer(InMemoryChannelLayer):
    """A work-queue layer whose clock is 10 s behind this host's (this host runs 10 s ahead).

    Only its clock is used; the rest of the work-queue interface (``_unused``) is there so that
    the worker takes it for a work queue, the layers that keep a clock, as it takes ours.
    """

    def clock(self) -> float:
        return time.time() - 10

    async def _unused(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


for _name in set(CAPABILITIES) - {"clock"}:
    setattr(SkewedLayer, _name, SkewedLayer._unused)


async def test_deadlines_and_queue_time_are_read_on_the_layers_clock() -> None:
    # Before: the worker read its own clock, 10 s ahead, and answered every call with a
    # timeout without running it.
    from channels_rpc import signals

    layer = SkewedLayer()
    handler = CallHandler(layer, RpcConfig())
    reply = await layer.new_channel()
    queue_times: list[float] = []

    def completed(sender: Any, queue_time: float, **kwargs: Any) -> None:
        queue_times.append(queue_time)

    signals.rpc_method_completed.connect(completed, weak=False)
    try:
        now = layer.clock()
        message = request_message(
            "echo_value", ["ran"], token=1, reply_to=reply, deadline=now + 5, sent=now
        )
        await handler(message)
    finally:
        signals.rpc_method_completed.disconnect(completed)
    assert (await next_message(layer, reply))["body"] == '"ran"'
    assert len(queue_times) == 1
    assert queue_times[0] < 1.0


# ---------------------------------------------------------------------------------------------
# Item 1: answers and pushes sized where they are encoded


async def test_non_ascii_answers_travel_as_utf8() -> None:
    # Before: 1,200,036 bytes (six-byte escapes), over daphne's 1 MiB cap.
    communicator = await connect(HardConsumer)
    await send(communicator, request("text", ["é", 200_000]))
    frame = await receive_text(communicator)
    assert json.loads(frame)["result"] == "é" * 200_000
    assert frame_bytes(frame) == 400_000 + len('{"jsonrpc":"2.0","id":1,"result":""}')
    await communicator.disconnect()


async def test_an_answer_over_the_frame_cap_is_answered_32014_and_the_socket_serves_on() -> None:
    communicator = await connect(HardConsumer)
    await send(communicator, request("text", ["x", MIB], rpc_id=1))
    frame = await receive_text(communicator)
    assert frame_bytes(frame) < 1000
    size = MIB + len('{"jsonrpc":"2.0","id":1,"result":""}')
    assert json.loads(frame) == error(
        1,
        -32014,
        f"Response Too Large: {size} bytes, over the limit of {MIB}",
        {"size": size, "limit": MIB, "what": "response"},
    )
    assert await call(communicator, "ping", rpc_id=2) == result(2, "pong")
    await communicator.disconnect()


async def test_a_push_to_the_caller_over_the_frame_cap_fails_in_the_method() -> None:
    communicator = await connect(HardConsumer)
    answer = await call(communicator, "tell", ["é", 600_000], rpc_id=1)  # 1.2 MB of UTF-8
    assert answer["error"]["code"] == -32014
    assert answer["error"]["data"]["what"] == "push"
    assert await silent(communicator)
    await communicator.disconnect()


async def test_a_group_push_over_the_frame_cap_fails_in_the_publisher_not_the_subscribers() -> None:
    # Before: every subscriber was sent the 3.6 MB frame, which daphne refuses: all silenced.
    subscriber = await connect(HardConsumer)
    publisher = await connect(HardConsumer)
    assert await call(subscriber, "subscribe", ["news"], rpc_id=1) == result(1, "news")
    answer = await call(publisher, "shout", ["news", "é", 600_000], rpc_id=2)
    assert answer["error"]["code"] == -32014
    assert answer["error"]["data"]["what"] == "push"
    assert await silent(subscriber)
    assert await call(subscriber, "ping", rpc_id=3) == result(3, "pong")
    # One that fits is delivered, in UTF-8.
    assert await call(publisher, "shout", ["news", "é", 200_000], rpc_id=4) == result(4, "shouted")
    frame = await receive_text(subscriber)
    assert frame_bytes(frame) < 400_100
    assert json.loads(frame)["params"] == "é" * 200_000
    await subscriber.disconnect()
    await publisher.disconnect()


# ---------------------------------------------------------------------------------------------
# Items 4 and 18: joins from methods


async def test_joins_from_methods_are_capped_per_connection() -> None:
    with rpc_settings(MAX_GROUPS=2):
        communicator = await connect(HardConsumer)
        assert await call(communicator, "subscribe", ["a"], rpc_id=1) == result(1, "a")
        assert await call(communicator, "subscribe", ["b"], rpc_id=2) == result(2, "b")
        assert await call(communicator, "subscribe", ["a"], rpc_id=3) == result(3, "a")
        assert await call(communicator, "subscribe", ["c"], rpc_id=4) == error(
            4, -32010, "Server Busy", {"reason": "connection is in too many groups", "limit": 2}
        )
        layer = get_channel_layer()
        await layer.group_send("c", {"type": "rpc.push", "v": 1, "body": '{"never":1}'})
        await layer.group_send("b", {"type": "rpc.push", "v": 1, "body": '{"pushed":"b"}'})
        assert await receive(communicator) == {"pushed": "b"}
        await communicator.disconnect()


async def test_a_join_for_a_closed_connection_joins_nothing() -> None:
    from channels_rpc import groups
    from channels_rpc.worker import CallerChannel

    layer = InMemoryChannelLayer()
    reply = await layer.new_channel()
    await groups.close(layer, reply, ttl=5)
    config = RpcConfig()
    caller = CallerChannel(
        layer, reply, None, max_push=config.max_response_size, max_groups=config.max_groups
    )
    await caller.join_group("late")
    await layer.group_send("late", {"type": "rpc.push", "v": 1, "body": "{}"})
    assert await nothing_more(layer, reply)  # neither a membership message nor the push


# ---------------------------------------------------------------------------------------------
# Item 19: client text in the worker's log


async def test_a_methods_exception_text_cannot_forge_worker_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    communicator = await connect(HardConsumer)
    with caplog.at_level(logging.INFO, logger="channels_rpc"):
        answer = await call(communicator, "fail", ["boom\n" + FORGED + "\r" + FORGED])
    assert answer["error"]["code"] == -32000
    assert [line for line in caplog.text.splitlines() if line.startswith(FORGED)] == []
    assert "RuntimeError: boom\\n" + FORGED + "\\r" + FORGED in caplog.text
    await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# Item 11: the heartbeat says why a worker is unhealthy


@pytest.mark.parametrize("problem", [None, "all 2 threads for sync methods are stuck"])
async def test_the_heartbeat_reports_what_keeps_the_worker_from_serving(
    problem: str | None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    health_file = tmp_path / "worker.health"
    with caplog.at_level(logging.WARNING, logger="channels_rpc"):
        heartbeat = asyncio.create_task(beat(InMemoryChannelLayer(), health_file, lambda: problem))
        try:
            deadline = time.monotonic() + 5
            while not health_file.exists() or not health_file.read_text():
                assert time.monotonic() < deadline, "no heartbeat written"
                await asyncio.sleep(0.01)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
    if problem is None:
        call_command("rpchealth", "--file", str(health_file), stdout=io.StringIO())
        assert "health:" not in caplog.text
    else:
        with pytest.raises(CommandError, match=f"unhealthy: {problem}"):
            call_command("rpchealth", "--file", str(health_file), stdout=io.StringIO())
        assert f"health: {problem}" in caplog.text
