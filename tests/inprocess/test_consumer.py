"""What the front-end guarantees whatever the workers do: deadlines, limits, ids, batches."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.test import override_settings

from channels_rpc import AsyncJsonRpcWebsocketConsumer
from channels_rpc.envelope import response_message
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

IN_USE = "Request ID is already in use by a pending request"
# Scheduling slack on top of a promised deadline (timeout + REPLY_GRACE) on a shared 2-core
# machine; below 0.8 x the grace used with it, so a deadline of timeout + 1.8 x grace fails.
MARGIN = 0.25
DUPLICATE = error(7, -32600, f"Invalid Request: {IN_USE}", {"field": IN_USE})


class FrontConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


@FrontConsumer.rpc_method(queue="rpc.nobody", timeout=0.3)
async def orphan() -> str:
    return "never run"


@FrontConsumer.rpc_method()
async def add(a: int, b: int) -> int:
    return a + b


@FrontConsumer.rpc_method()
async def sleep(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


def gated_consumer() -> tuple[type[AsyncJsonRpcWebsocketConsumer], asyncio.Event]:
    """A fresh consumer class whose ``hold`` method returns once the event is set."""

    class GateConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    gate = asyncio.Event()

    @GateConsumer.rpc_method()
    async def hold() -> str:
        await gate.wait()
        return "released"

    return GateConsumer, gate


async def receive_all(communicator: Any, count: int) -> list[Any]:
    return [await receive(communicator) for _ in range(count)]


# ---------------------------------------------------------------------------------------------
# Deadlines


async def test_a_call_no_worker_takes_is_answered_at_its_deadline() -> None:
    timeout, grace = 0.3, 0.5  # orphan's timeout; a grace of which 0.8 x exceeds MARGIN
    with rpc_settings(EXECUTION="workers", REPLY_GRACE=grace):
        communicator = await connect(FrontConsumer)
        started = time.monotonic()
        answer = await call(communicator, "orphan", rpc_id=9)
        elapsed = time.monotonic() - started
        assert answer == error(
            9,
            -32012,
            "Deadline Exceeded: no answer within 0.3 seconds",
            {"timeout": timeout, "queue": "rpc.nobody"},
        )
        assert timeout + grace <= elapsed <= timeout + grace + MARGIN
        await communicator.disconnect()


async def test_a_reply_after_the_deadline_is_dropped() -> None:
    with rpc_settings(EXECUTION="workers", REPLY_GRACE=0.2):
        layer = get_channel_layer()
        communicator = await connect(FrontConsumer)
        # Play the worker by hand: a reply in time is delivered...
        await send(communicator, request("orphan", rpc_id=1))
        queued = await layer.receive("rpc.nobody")
        await layer.send(queued["reply"], response_message(queued["call"], True, '"on time"'))
        assert await receive(communicator) == result(1, "on time")
        # ...the same reply after the deadline is not: the call was answered exactly once.
        await send(communicator, request("orphan", rpc_id=2))
        queued = await layer.receive("rpc.nobody")
        assert (await receive(communicator))["error"]["code"] == -32012
        await layer.send(queued["reply"], response_message(queued["call"], True, '"late"'))
        assert await silent(communicator, 0.2)
        await communicator.disconnect()


async def test_a_batch_waits_for_its_elements_deadline() -> None:
    with rpc_settings(EXECUTION="workers", REPLY_GRACE=0.1):
        communicator = await connect(FrontConsumer)
        await send(communicator, [request("orphan", rpc_id=1), request("nope", rpc_id=2)])
        answers = await receive(communicator)
        assert [(a["id"], a["error"]["code"]) for a in answers] == [(1, -32012), (2, -32601)]
        await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# Limits


async def test_max_in_flight_answers_server_busy_then_accepts_again() -> None:
    consumer, gate = gated_consumer()
    with rpc_settings(MAX_IN_FLIGHT=2):
        communicator = await connect(consumer)
        for rpc_id in (1, 2, 3):
            await send(communicator, request("hold", rpc_id=rpc_id))
        busy = {"limit": 2, "reason": "too many calls in flight on this connection"}
        assert await receive(communicator) == error(3, -32010, "Server Busy", busy)
        assert await silent(communicator)
        gate.set()
        answers = await receive_all(communicator, 2)
        assert sorted(answer["id"] for answer in answers) == [1, 2]
        assert await call(communicator, "hold", rpc_id=4) == result(4, "released")
        await communicator.disconnect()


async def test_a_full_queue_is_server_busy_and_the_connection_stays_open() -> None:
    layers = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 2}}
    }
    with override_settings(CHANNEL_LAYERS=layers), rpc_settings(EXECUTION="workers"):
        communicator = await connect(FrontConsumer)
        for rpc_id in (1, 2, 3):
            await send(communicator, request("add", [1, 2], rpc_id=rpc_id))
        full = {"queue": "rpc.default", "reason": "queue is full"}
        assert await receive(communicator) == error(3, -32010, "Server Busy", full)
        assert (await call(communicator, "nope", rpc_id=4))["error"]["code"] == -32601
        await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# Ids


async def test_a_pending_id_cannot_be_reused_until_it_is_answered() -> None:
    consumer, gate = gated_consumer()
    communicator = await connect(consumer)
    await send(communicator, request("hold", rpc_id=7))
    await send(communicator, request("hold", rpc_id=7))
    assert await receive(communicator) == DUPLICATE
    gate.set()
    assert await receive(communicator) == result(7, "released")
    assert await call(communicator, "hold", rpc_id=7) == result(7, "released")
    await communicator.disconnect()


async def test_1_and_1_0_are_the_same_pending_id_but_the_string_1_is_not() -> None:
    consumer, gate = gated_consumer()
    communicator = await connect(consumer)
    await send(communicator, request("hold", rpc_id=1))
    await communicator.send_to(text_data='{"jsonrpc": "2.0", "method": "hold", "id": 1.0}')
    text = await receive_text(communicator)
    assert text.startswith('{"jsonrpc":"2.0","id":1.0,"error":{"code":-32600,')
    await send(communicator, request("hold", rpc_id="1"))
    assert await silent(communicator)
    gate.set()
    answers = await receive_all(communicator, 2)
    assert sorted(answers, key=repr) == [result("1", "released"), result(1, "released")]
    await communicator.disconnect()


async def test_null_ids_may_repeat() -> None:
    consumer, gate = gated_consumer()
    communicator = await connect(consumer)
    await send(communicator, request("hold", rpc_id=None))
    await send(communicator, request("hold", rpc_id=None))
    assert await silent(communicator)
    gate.set()
    assert await receive_all(communicator, 2) == [result(None, "released")] * 2
    await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# Batches


async def test_a_batch_is_answered_as_one_array_in_request_order() -> None:
    communicator = await connect(FrontConsumer)
    batch = [
        request("sleep", [0.2], rpc_id="slow"),
        request("add", [1, 2], rpc_id="fast"),
        notification("add", [1, 2]),
        request("nope", rpc_id="unknown"),
        {"foo": "boo"},
        request("add", {"a": 1}, rpc_id="params"),
    ]
    await send(communicator, batch)
    answers = await receive(communicator)
    assert [(a["id"], a.get("result", a.get("error", {}).get("code"))) for a in answers] == [
        ("slow", 0.2),
        ("fast", 3),
        ("unknown", -32601),
        (None, -32600),
        ("params", -32602),
    ]
    assert await silent(communicator)
    await communicator.disconnect()


async def test_batch_elements_run_in_parallel() -> None:
    communicator = await connect(FrontConsumer)
    started = time.monotonic()
    await send(communicator, [request("sleep", [0.2], rpc_id=n) for n in range(3)])
    answers = await receive(communicator)
    assert time.monotonic() - started < 0.45
    assert answers == [result(n, 0.2) for n in range(3)]
    await communicator.disconnect()


async def test_a_batch_of_notifications_is_not_answered() -> None:
    class NotifyConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    seen: list[int] = []
    both = asyncio.Event()

    @NotifyConsumer.rpc_notification()
    async def tick(n: int) -> None:
        seen.append(n)
        if len(seen) == 2:
            both.set()

    communicator = await connect(NotifyConsumer)
    await send(communicator, [notification("tick", [1]), notification("tick", [2])])
    await asyncio.wait_for(both.wait(), 3)
    assert sorted(seen) == [1, 2]
    assert await silent(communicator)
    await communicator.disconnect()


async def test_a_duplicate_id_inside_one_batch_is_refused_in_the_array() -> None:
    communicator = await connect(FrontConsumer)
    await send(communicator, [request("add", [1, 2], rpc_id=7), request("add", [3, 4], rpc_id=7)])
    assert await receive(communicator) == [result(7, 3), DUPLICATE]
    await communicator.disconnect()
