"""Front-end hardening (issue 10): frame sizes, notifications in flight, unclaimed calls, groups.

Each test reproduces a finding on the in-memory layer; the reliability suite repeats the ones
that need real daphne, workers and Redis (T28, T31, T34, T37, T41-T43, T45).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, ClassVar

import pytest
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from channels_rpc import AsyncJsonRpcWebsocketConsumer, ResponseTooLargeError, RpcContext
from channels_rpc.envelope import WORKERS_GROUP, response_message, taken_message
from channels_rpc.groups import CLOSED, join
from tests.inprocess.helpers import (
    call,
    connect,
    notification,
    receive,
    receive_text,
    request,
    result,
    rpc_settings,
    send,
    silent,
)
from tests.project.frontline import MiddlewareConsumer

pytestmark = pytest.mark.anyio

LIMIT = 20_000  # MAX_RESPONSE_SIZE in the size tests: small, so that answers cross it


class HardConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


@HardConsumer.rpc_method()
async def echo(value: Any) -> Any:
    return value


@HardConsumer.rpc_method(timeout=0)
async def forever() -> str:
    return "done"


@HardConsumer.rpc_method()
async def join_groups(ctx: RpcContext, *names: str) -> list[str]:
    for name in names:
        await ctx.join_group(name)
    return list(names)


@HardConsumer.rpc_notification()
async def note(*args: Any) -> None:
    pass


_late_join_gate = asyncio.Event()
_late_join_done: list[str] = []
_late_join_finished = asyncio.Event()


@HardConsumer.rpc_method()
async def join_late(ctx: RpcContext, group: str) -> None:
    """Joins once the gate opens, even if the call was cancelled meanwhile (a slow cancel)."""

    async def later() -> None:
        await _late_join_gate.wait()
        await ctx.join_group(group)
        _late_join_done.append(group)
        _late_join_finished.set()

    await asyncio.shield(later())


def frame_size(text: str) -> int:
    return len(text.encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# T28: no frame over MAX_RESPONSE_SIZE reaches the transport


async def test_a_batch_too_large_for_one_frame_keeps_every_answer_and_fits() -> None:
    # Before: a batch of rpc.discover answers (1.28 MB at the default 100) was handed to daphne,
    # which refused it, and the connection went silent for good.
    with rpc_settings(MAX_RESPONSE_SIZE=LIMIT):
        communicator = await connect(HardConsumer)
        batch = [request("rpc.discover", rpc_id=i) for i in range(12)]
        await send(communicator, batch)
        text = await receive_text(communicator)
        answers = json.loads(text)
        assert frame_size(text) <= LIMIT
        assert sorted(answer["id"] for answer in answers) == list(range(12))
        too_large = [a for a in answers if "error" in a]
        assert too_large
        assert {a["error"]["code"] for a in too_large} == {-32014}
        assert too_large[0]["error"]["data"]["limit"] == LIMIT
        assert await call(communicator, "echo", ["still here"], rpc_id=99) == result(
            99, "still here"
        )
        await communicator.disconnect()


class Padding:
    """Response middleware that makes every result larger than the transport takes."""

    def process_response(self, response: dict[str, Any], consumer: Any) -> dict[str, Any]:
        if "result" in response:
            response["result"] = "x" * (2 * LIMIT)
        return response


class PaddedConsumer(AsyncJsonRpcWebsocketConsumer):
    middleware: ClassVar[list[Any]] = [Padding()]


@PaddedConsumer.rpc_method()
async def small() -> str:
    return "small"


async def test_an_answer_grown_past_the_limit_becomes_an_error_for_that_call() -> None:
    with rpc_settings(MAX_RESPONSE_SIZE=LIMIT):
        communicator = await connect(PaddedConsumer)
        answer = await call(communicator, "small", rpc_id=1)
        assert answer["error"]["code"] == -32014
        assert answer["error"]["data"]["size"] > LIMIT
        assert (await call(communicator, "nope", rpc_id=2))["error"]["code"] == -32601
        await communicator.disconnect()


async def test_a_push_too_large_is_refused_where_it_is_sent_or_dropped_on_arrival() -> None:
    with rpc_settings(MAX_RESPONSE_SIZE=LIMIT):
        communicator = await connect(HardConsumer)
        layer = get_channel_layer()
        await send(communicator, request("join_groups", ["big"], rpc_id=1))
        assert await receive(communicator) == result(1, ["big"])
        # A raw rpc.push (from code that bypasses notify_group) is dropped, the socket lives on.
        body = json.dumps({"jsonrpc": "2.0", "method": "m", "params": ["y" * LIMIT]})
        await layer.group_send("big", {"type": "rpc.push", "v": 1, "body": body})
        assert await silent(communicator, 0.2)
        assert await call(communicator, "echo", [1], rpc_id=2) == result(2, 1)
        await communicator.disconnect()


async def test_notify_channel_raises_for_a_push_too_large() -> None:
    with rpc_settings(MAX_RESPONSE_SIZE=LIMIT):
        consumer = HardConsumer()
        consumer.scope = {"type": "websocket"}
        with pytest.raises(ResponseTooLargeError) as caught:
            await consumer.notify_channel("m", ["é" * LIMIT])
        assert caught.value.error()["code"] == -32014
        assert caught.value.size > LIMIT


async def test_a_write_the_server_refuses_closes_the_socket() -> None:
    # Before: the write error was taken for "peer gone" and logged at DEBUG; the socket stayed
    # open, answered pings, and delivered nothing ever again.
    sent: list[dict[str, Any]] = []

    async def base_send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            raise ValueError("message exceeds the frame cap")
        sent.append(message)

    consumer = HardConsumer()
    consumer.scope = {"type": "websocket", "client": ["127.0.0.1", 1]}
    consumer.base_send = base_send
    await consumer._write('{"jsonrpc":"2.0","id":1,"result":1}')
    assert sent == [{"type": "websocket.close", "code": 4011}]
    await consumer._write('{"jsonrpc":"2.0","id":2,"result":2}')
    assert len(sent) == 1  # closing: nothing more is written


# ---------------------------------------------------------------------------------------------
# T37: notifications count against MAX_IN_FLIGHT until a worker takes them


async def test_notifications_hold_in_flight_slots_until_a_worker_takes_them() -> None:
    # Before: notifications bypassed the limit; one connection queued 568 of them.
    with rpc_settings(EXECUTION="workers", MAX_IN_FLIGHT=3):
        layer = get_channel_layer()
        communicator = await connect(HardConsumer)
        for _ in range(3):
            await send(communicator, notification("note"))
        answer = await call(communicator, "echo", [1], rpc_id=1)
        assert answer["error"]["code"] == -32010
        assert answer["error"]["data"]["limit"] == 3
        # Play the worker: take one notification; its slot frees once the front-end hears so.
        taken = await layer.receive("rpc.default")
        assert taken["call"] is None
        assert isinstance(taken["ack"], int)
        await layer.send(taken["reply"], taken_message(taken["ack"]))
        rpc_id = await first_accepted(communicator, "echo", [2])
        queued = await wait_for_request(layer, "echo")
        await layer.send(queued["reply"], response_message(queued["call"], True, "2"))
        assert await receive(communicator) == result(rpc_id, 2)
        await communicator.disconnect()


async def first_accepted(communicator: WebsocketCommunicator, method: str, params: Any) -> int:
    """Call until a call is not refused as busy (the ack and the call race to the consumer)."""
    for rpc_id in range(100, 150):
        await send(communicator, request(method, params, rpc_id=rpc_id))
        if await silent(communicator, 0.05):
            return rpc_id
        assert (await receive(communicator))["error"]["code"] == -32010
    raise AssertionError("every call was refused")


async def wait_for_request(layer: Any, method: str) -> dict[str, Any]:
    """The next request for ``method`` on rpc.default, skipping the others."""
    while True:
        message: dict[str, Any] = await asyncio.wait_for(layer.receive("rpc.default"), 3)
        if message["method"] == method:
            return message


def short_expiry_layers(expiry: float) -> dict[str, Any]:
    backend = "channels.layers.InMemoryChannelLayer"
    return {"default": {"BACKEND": backend, "CONFIG": {"expiry": expiry}}}


async def test_a_notification_no_worker_takes_frees_its_slot_at_expiry() -> None:
    with (
        override_settings(CHANNEL_LAYERS=short_expiry_layers(0.5)),
        rpc_settings(EXECUTION="workers", MAX_IN_FLIGHT=1, REPLY_GRACE=0.1),
    ):
        communicator = await connect(HardConsumer)
        await send(communicator, notification("note"))
        assert (await call(communicator, "echo", [1], rpc_id=1))["error"]["code"] == -32010
        await asyncio.sleep(0.7)  # the expiry is what is tested: 0.5 s + 0.1 s grace
        await send(communicator, request("echo", [2], rpc_id=2))
        assert await silent(communicator, 0.2)  # queued, not refused
        await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# T41: a call without a time limit that no worker takes is answered at the queue's expiry


async def test_an_unlimited_call_no_worker_takes_is_answered_at_expiry() -> None:
    # Before: never answered; it held its id and its slot for as long as the socket lived.
    with (
        override_settings(CHANNEL_LAYERS=short_expiry_layers(0.5)),
        rpc_settings(EXECUTION="workers", REPLY_GRACE=0.1, MAX_IN_FLIGHT=1),
    ):
        communicator = await connect(HardConsumer)
        started = time.monotonic()
        answer = await call(communicator, "forever", rpc_id="f")
        elapsed = time.monotonic() - started
        assert answer["error"]["code"] == -32011
        assert answer["error"]["data"]["queue"] == "rpc.default"
        assert "no worker took the call" in answer["error"]["data"]["reason"]
        assert 0.55 <= elapsed < 1.5
        await send(communicator, request("forever", rpc_id="g"))  # the slot is free
        assert await silent(communicator, 0.2)
        await communicator.disconnect()


async def test_an_unlimited_call_a_worker_took_is_not_expired() -> None:
    with (
        override_settings(CHANNEL_LAYERS=short_expiry_layers(0.3)),
        rpc_settings(EXECUTION="workers", REPLY_GRACE=0.1),
    ):
        layer = get_channel_layer()
        communicator = await connect(HardConsumer)
        await send(communicator, request("forever", rpc_id=1))
        taken = await layer.receive("rpc.default")
        assert taken["ack"] == taken["call"]
        await layer.send(taken["reply"], taken_message(taken["ack"]))
        assert await silent(communicator, 0.6)  # past expiry + grace: still running
        await layer.send(taken["reply"], response_message(taken["call"], True, '"late"'))
        assert await receive(communicator) == result(1, "late")
        await communicator.disconnect()


async def test_calls_with_a_time_limit_ask_for_no_ack() -> None:
    with rpc_settings(EXECUTION="workers"):
        layer = get_channel_layer()
        communicator = await connect(HardConsumer)
        await send(communicator, request("echo", [1], rpc_id=1))
        queued = await layer.receive("rpc.default")
        assert queued["ack"] is None
        await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# T34 (front-end part): only what the worker needs is queued


async def test_unknown_request_members_are_not_queued() -> None:
    # Before: the frame text was queued as is: a 500 KB unknown member cost 500 KB of Redis.
    with rpc_settings(EXECUTION="workers"):
        layer = get_channel_layer()
        communicator = await connect(HardConsumer)
        await send(communicator, {**request("echo", ["é"], rpc_id=1), "junk": "j" * 10_000})
        queued = await layer.receive("rpc.default")
        assert json.loads(queued["body"]) == request("echo", ["é"], rpc_id=1)
        assert len(queued["body"]) < 100
        await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# T42: credentials never leave the front-end


@HardConsumer.rpc_method()
async def scope_of(ctx: RpcContext) -> Any:
    return {"subprotocols": ctx.scope.get("subprotocols")}


async def test_a_token_offered_as_a_subprotocol_is_not_queued_nor_in_ctx_scope() -> None:
    # Before: "bearer.<token>" was copied into every queued request and into ctx.scope.
    secret = "bearer.s3cr3t-t0ken"
    communicator = WebsocketCommunicator(
        HardConsumer.as_asgi(), "/ws/", subprotocols=["jsonrpc", secret]
    )
    connected, subprotocol = await communicator.connect()
    assert connected
    assert subprotocol == "jsonrpc"
    answer = await call(communicator, "scope_of", rpc_id=1)
    assert answer == result(1, {"subprotocols": ["jsonrpc"]})
    await communicator.disconnect()


async def test_a_token_offered_as_a_subprotocol_is_not_queued() -> None:
    secret = "bearer.s3cr3t-t0ken"
    with rpc_settings(EXECUTION="workers"):
        layer = get_channel_layer()
        communicator = WebsocketCommunicator(HardConsumer.as_asgi(), "/ws/", subprotocols=[secret])
        assert (await communicator.connect())[0]
        await send(communicator, request("scope_of", rpc_id=2))
        queued = await asyncio.wait_for(layer.receive("rpc.default"), 3)
        assert "s3cr3t" not in json.dumps(queued)
        await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# T43: an answer process_response cannot decode costs that call, not the connection


async def test_a_result_too_deep_for_process_response_is_an_error_not_a_close() -> None:
    # Before: RecursionError escaped rpc_response; daphne closed with 1011, losing every call.
    communicator = await connect(MiddlewareConsumer)  # results nested 100,000 deep
    await send(communicator, request("deep", rpc_id=1))
    await send(communicator, request("rpc.discover", rpc_id=2))
    answers = {a["id"]: a for a in [await receive(communicator), await receive(communicator)]}
    assert answers[1]["error"]["code"] == -32603
    assert "result" in answers[2]
    await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# T45 and T31: groups per connection are capped, and die with the connection


def members(group: str) -> set[str]:
    return set(get_channel_layer().groups.get(group, {}))


async def test_a_connection_may_join_at_most_max_groups() -> None:
    # Before: no cap (one anonymous socket joined 5,000 groups in 28 s).
    with rpc_settings(MAX_GROUPS=2):
        communicator = await connect(HardConsumer)
        assert await call(communicator, "join_groups", ["a", "b"], rpc_id=1) == result(
            1, ["a", "b"]
        )
        answer = await call(communicator, "join_groups", ["c"], rpc_id=2)
        assert answer["error"]["code"] == -32010
        assert answer["error"]["data"] == {"reason": "connection is in too many groups", "limit": 2}
        assert not members("c")
        # Joining a group it is in already is not a new group.
        assert await call(communicator, "join_groups", ["a"], rpc_id=3) == result(3, ["a"])
        await communicator.disconnect()
        assert not members("a")
        assert not members("b")


async def test_a_join_that_lands_after_the_close_is_undone() -> None:
    # Before: the membership outlived the connection for group_expiry (a day).
    _late_join_gate.clear()
    _late_join_finished.clear()
    _late_join_done.clear()
    communicator = await connect(HardConsumer)
    await send(communicator, request("join_late", ["late"], rpc_id=1))
    await asyncio.sleep(0.05)  # let the embedded worker start the call
    await communicator.disconnect()
    _late_join_gate.set()
    await asyncio.wait_for(_late_join_finished.wait(), 3)
    assert _late_join_done == ["late"]
    assert not members("late")


async def test_joins_for_a_closed_channel_are_refused_by_the_local_record() -> None:
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    from channels_rpc import groups

    assert await groups.join(layer, "g", channel, limit=5) == "joined"
    assert await groups.close(layer, channel, ttl=10) == ["g"]
    assert await join(layer, "g", channel, limit=5) == CLOSED
    assert not layer.groups.get("g")


# ---------------------------------------------------------------------------------------------
# Cancellation still reaches the workers when withdraw fails (item 3)


class FailingWithdrawLayer(InMemoryChannelLayer):
    """An in-memory layer whose withdraw always fails, recording what reaches the workers."""

    broadcasts: ClassVar[list[dict[str, Any]]] = []

    async def enqueue(self, channel: str, message: dict[str, Any], *, timeout: float) -> str:
        await self.send(channel, message)
        return "handle"

    async def withdraw(self, channel: str, handles: list[Any]) -> int:
        raise ConnectionError("withdraw failed")

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if group == WORKERS_GROUP:
            self.broadcasts.append(message)
        await super().group_send(group, message)


async def test_a_failed_withdraw_does_not_suppress_the_cancel_broadcast() -> None:
    # Before: withdraw and broadcast shared one try block: a failing withdraw cancelled nothing.
    FailingWithdrawLayer.broadcasts.clear()
    backend = f"{__name__}.FailingWithdrawLayer"
    with (
        override_settings(CHANNEL_LAYERS={"default": {"BACKEND": backend}}),
        rpc_settings(EXECUTION="workers"),
    ):
        communicator = await connect(HardConsumer)
        await send(communicator, request("echo", [1], rpc_id=1))
        await send(communicator, request("echo", [2], rpc_id=2))
        await send(communicator, notification("rpc.cancel", {"id": 1}))
        assert (await receive(communicator))["error"]["code"] == -32800
        await communicator.disconnect()  # with call 2 pending
    assert [m["type"] for m in FailingWithdrawLayer.broadcasts] == ["rpc.cancel", "rpc.cancel"]
    assert FailingWithdrawLayer.broadcasts[0]["calls"] is not None
    assert FailingWithdrawLayer.broadcasts[1]["calls"] is None  # the close: everything


class LateLayer(InMemoryChannelLayer):
    """Takes the message, but answers too late: the sender has given up (LAYER_TIMEOUT)."""

    async def enqueue(self, channel: str, message: dict[str, Any], *, timeout: float) -> str:
        await self.send(channel, message)
        raise TimeoutError


async def test_a_call_answered_busy_after_a_late_send_is_cancelled_in_the_workers() -> None:
    # Item 5: "a call answered -32010 must never run". The layer withdraws what it gave up
    # on; a worker that took it meanwhile hears the cancellation and skips or stops it.
    backend = f"{__name__}.LateLayer"
    layers = {"default": {"BACKEND": backend}}
    with override_settings(CHANNEL_LAYERS=layers), rpc_settings(EXECUTION="workers"):
        layer = get_channel_layer()
        worker = await layer.new_channel()  # plays a worker: hears what the workers hear
        await layer.group_add(WORKERS_GROUP, worker)
        communicator = await connect(HardConsumer)
        answer = await call(communicator, "echo", [1], rpc_id=1)
        assert answer["error"]["code"] == -32010
        assert answer["error"]["data"]["reason"] == "channel layer unavailable"
        queued = await asyncio.wait_for(layer.receive("rpc.default"), 3)
        cancel = await asyncio.wait_for(layer.receive(worker), 3)
        assert cancel["type"] == "rpc.cancel"
        assert cancel["calls"] == [queued["call"]]
        await communicator.disconnect()


def test_response_too_large_error_names_size_and_limit() -> None:
    error = ResponseTooLargeError(2_000_000, 1_048_576, what="push").error()
    assert error == {
        "code": -32014,
        "message": "Response Too Large: 2000000 bytes, over the limit of 1048576",
        "data": {"size": 2_000_000, "limit": 1_048_576, "what": "push"},
    }
