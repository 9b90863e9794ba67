"""Flow control on the front-end socket (issue 10, item 12): limits hold while the consumer waits.

Channels dispatches one message at a time. Before, the rate limit ran in ``receive()``, which is
not reached while the consumer awaits the channel layer, and nothing bounded the frames waiting
for it. Here the channel layer is the in-memory one with sends to the queues held on an event,
so the consumer is stuck in its first enqueue while the client keeps sending.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from channels_rpc import AsyncJsonRpcWebsocketConsumer
from channels_rpc.flow import INBOUND, OUTBOUND, Inbox, ReadGate
from channels_rpc.guards import TokenBucket
from tests.inprocess.helpers import WAIT, connect, receive, request, rpc_settings, send
from tests.integration.support import wait_until

pytestmark = pytest.mark.anyio

CLOSE_RATE_LIMITED = 4008


class FlowConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


@FlowConsumer.rpc_method()
async def echo(value: Any) -> Any:
    return value


class HeldLayer(InMemoryChannelLayer):
    """The in-memory layer; sends to the RPC queues wait until ``release`` is set."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.release = asyncio.Event()
        self.held = asyncio.Event()  # a send is waiting
        self.queued: list[Any] = []  # request ids, in the order they were enqueued

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        if channel.startswith("rpc."):
            self.held.set()
            await self.release.wait()
            self.queued.append(json.loads(message["body"])["id"])
        await super().send(channel, message)


def held_layer() -> override_settings:
    return override_settings(CHANNEL_LAYERS={"default": {"BACKEND": f"{__name__}.HeldLayer"}})


async def stuck_in_enqueue(communicator: WebsocketCommunicator) -> HeldLayer:
    """Send a first call; returns once the consumer waits in the layer's send."""
    layer = get_channel_layer()
    assert isinstance(layer, HeldLayer)
    await send(communicator, request("echo", ["first"], rpc_id=0))
    await asyncio.wait_for(layer.held.wait(), WAIT)
    return layer


async def closed_with(communicator: WebsocketCommunicator) -> int | None:
    """The close code of the next message to the client (it must be a close)."""
    message = await communicator.receive_output(WAIT)
    assert message["type"] == "websocket.close", message
    code: int | None = message.get("code")
    return code


# ---------------------------------------------------------------------------------------------
# Through the consumer (channels.testing: the server cannot pause reading)


async def test_rate_limit_closes_4008_while_the_consumer_awaits_the_layer() -> None:
    # Before: the bucket was checked in receive(), reached only once the enqueue returned.
    with held_layer(), rpc_settings(EXECUTION="workers", RATE_LIMIT=5, LAYER_TIMEOUT=30):
        communicator = await connect(FlowConsumer)
        layer = await stuck_in_enqueue(communicator)
        for rpc_id in range(1, 20):  # a burst of 10 is allowed, then refused
            await send(communicator, request("echo", [rpc_id], rpc_id=rpc_id))
        assert await closed_with(communicator) == CLOSE_RATE_LIMITED
        assert not layer.release.is_set()  # closed while the consumer was still waiting
        layer.release.set()
        await communicator.disconnect()
        assert layer.queued == [0]  # nothing the client sent after the limit was enqueued


async def test_bytes_waiting_for_the_consumer_are_bounded_by_a_4008_close() -> None:
    # Before: every frame waited in memory for the consumer, without limit.
    limits = {"MAX_MESSAGE_SIZE": 64 * 1024, "MAX_INBOUND_BYTES": 64 * 1024}
    with held_layer(), rpc_settings(EXECUTION="workers", LAYER_TIMEOUT=30, **limits):
        communicator = await connect(FlowConsumer)
        layer = await stuck_in_enqueue(communicator)
        for rpc_id in range(1, 10):  # 9 x 10 KB: more than 64 KiB waiting
            await send(communicator, request("echo", ["x" * 10_000], rpc_id=rpc_id))
        assert await closed_with(communicator) == CLOSE_RATE_LIMITED
        assert not layer.release.is_set()
        layer.release.set()
        await communicator.disconnect()


async def test_frames_within_the_limits_are_dispatched_in_order_once_the_layer_answers() -> None:
    with held_layer(), rpc_settings(EXECUTION="workers", RATE_LIMIT=100, LAYER_TIMEOUT=30):
        communicator = await connect(FlowConsumer)
        layer = await stuck_in_enqueue(communicator)
        for rpc_id in range(1, 50):
            await send(communicator, request("echo", ["x" * 1000], rpc_id=rpc_id))
        assert await communicator.receive_nothing(0.2)  # nothing refused, nothing closed
        layer.release.set()

        await until(lambda: len(layer.queued) == 50)
        assert layer.queued == list(range(50))
        await communicator.disconnect()


async def test_a_connection_within_the_limits_is_served_normally() -> None:
    # The inline worker answers: the inbox is on the path of every frame and reply.
    with rpc_settings(RATE_LIMIT=100):
        communicator = await connect(FlowConsumer)
        for rpc_id in range(20):
            await send(communicator, request("echo", [rpc_id], rpc_id=rpc_id))
        answers = {(await receive(communicator))["id"] for _ in range(20)}
        assert answers == set(range(20))
        await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# The inbox itself, with a socket that can pause (what daphne's transport offers)


class Transport:
    """Records pause/resume calls, as daphne's transport would receive them."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


async def refuse_nothing(reason: str) -> None:
    raise AssertionError(f"refused: {reason}")


async def until(condition: Callable[[], bool]) -> None:
    async def holds() -> bool:
        return condition()

    await wait_until(holds, WAIT)


def frame(size: int) -> dict[str, Any]:
    return {"type": "websocket.receive", "text": "x" * size}


async def test_inbox_pauses_reading_past_the_bound_and_resumes_at_half() -> None:
    source: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    transport = Transport()
    inbox = Inbox(
        source.get,
        ReadGate(transport),
        bucket=TokenBucket(0, 0),
        max_bytes=1000,
        refuse=refuse_nothing,
    )
    messages = [{"type": "websocket.connect"}, *(frame(300) for _ in range(5))]
    messages.append({"type": "websocket.disconnect", "code": 1000})
    async with inbox.reading():
        for message in messages:
            source.put_nowait(message)
        await until(lambda: inbox.backlog == 1500)  # the reader takes every frame at once

        assert transport.calls == ["pause"]  # at the 4th frame (1200 > 1000)
        received = [await inbox.receive() for _ in range(3)]  # connect, 2 frames: 900 left
        assert transport.calls == ["pause"]
        received.append(await inbox.receive())  # 600 left: still over half
        assert transport.calls == ["pause"]
        received.append(await inbox.receive())  # 300 left: resume
        assert transport.calls == ["pause", "resume"]
        received += [await inbox.receive() for _ in range(2)]
    assert received == messages  # unchanged and in order, connect and disconnect included
    assert inbox.backlog == 0


async def test_inbox_refuses_over_the_rate_and_drops_what_follows() -> None:
    source: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    reasons: list[str] = []

    async def refuse(reason: str) -> None:
        reasons.append(reason)

    inbox = Inbox(
        source.get,
        ReadGate(Transport()),
        bucket=TokenBucket(1, 2),
        max_bytes=1000,
        refuse=refuse,
    )
    async with inbox.reading():
        for _ in range(6):
            source.put_nowait(frame(10))
        source.put_nowait({"type": "websocket.disconnect", "code": 1006})
        first, second, last = [await inbox.receive() for _ in range(3)]
    assert reasons == ["rate limit exceeded"]  # once, however many frames follow
    assert first == second == frame(10)
    assert last == {"type": "websocket.disconnect", "code": 1006}


def test_reading_is_paused_while_either_side_asks() -> None:
    transport = Transport()
    gate = ReadGate(transport)
    gate.hold(OUTBOUND, True)
    gate.hold(INBOUND, True)
    gate.hold(OUTBOUND, True)
    gate.hold(OUTBOUND, False)
    assert transport.calls == ["pause"]
    gate.hold(INBOUND, False)
    assert transport.calls == ["pause", "resume"]
    assert not gate.paused


async def test_a_reader_that_fails_fails_the_dispatcher_instead_of_hanging_it() -> None:
    async def broken() -> dict[str, Any]:
        raise RuntimeError("server gone")

    inbox = Inbox(
        broken, ReadGate(None), bucket=TokenBucket(0, 0), max_bytes=1000, refuse=refuse_nothing
    )
    async with inbox.reading():
        with pytest.raises(RuntimeError, match="server gone"):
            await asyncio.wait_for(inbox.receive(), WAIT)


async def test_frames_are_checked_as_the_server_queues_them() -> None:
    # On daphne the inbox takes the place of the connection queue's put_nowait: every frame is
    # counted and rate-checked as it arrives, and the dispatcher reads daphne's queue directly
    # (no reader task, no extra hop per frame).
    server_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    transport = Transport()
    reasons: list[str] = []

    async def refuse(reason: str) -> None:
        reasons.append(reason)

    inbox = Inbox(
        server_queue.get,
        ReadGate(transport),
        bucket=TokenBucket(1, 3),
        max_bytes=500,
        refuse=refuse,
    )
    inbox.server_queue = server_queue
    async with inbox.reading():
        server_queue.put_nowait({"type": "websocket.connect"})
        for _ in range(3):  # within the burst: over 500 bytes, so reading pauses at once
            server_queue.put_nowait(frame(200))
        assert transport.calls == ["pause"]
        assert inbox.backlog == 600
        server_queue.put_nowait(frame(200))  # over the rate: refused before any dispatch
        server_queue.put_nowait(frame(200))  # and what follows is dropped
        assert server_queue.qsize() == 4
        await until(lambda: reasons == ["rate limit exceeded"])
        received = [await inbox.receive() for _ in range(4)]
        assert inbox.backlog == 0
        assert transport.calls == ["pause", "resume"]
    assert received == [{"type": "websocket.connect"}, frame(200), frame(200), frame(200)]
    assert server_queue.put_nowait.__func__ is asyncio.Queue.put_nowait  # type: ignore[attr-defined]
