"""Cancellation in the worker: ``CallHandler.control`` and the revocations of calls to come."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import anyio
import pytest
from channels.layers import InMemoryChannelLayer

from channels_rpc import JsonRpcErrorCode, RpcContext, registry, worker
from channels_rpc.config import RpcConfig
from channels_rpc.envelope import Call, cancel_message, response_message
from channels_rpc.worker import CallHandler, _Revocations

pytestmark = pytest.mark.anyio

REPLY_A = "front.inmemory!connectionA"
REPLY_B = "front.inmemory!connectionB"


class Probe:
    """Events the methods below set, per tag, and the contexts they ran with."""

    def __init__(self) -> None:
        self.events: dict[str, asyncio.Event] = {}
        self.contexts: dict[str, RpcContext] = {}

    def event(self, name: str) -> asyncio.Event:
        return self.events.setdefault(name, asyncio.Event())

    def seen(self, name: str) -> bool:
        return name in self.events and self.events[name].is_set()

    def cancelled(self, tag: str) -> bool:
        """Whether the context ``hold(tag)`` ran with says it was cancelled."""
        return self.contexts[tag].cancelled


PROBE = Probe()


@pytest.fixture(autouse=True)
def _fresh_probe() -> None:
    global PROBE
    PROBE = Probe()


class Methods:
    """Stands in for a consumer class: a worker only needs its registry table."""


async def hold(ctx: RpcContext, tag: str) -> str:
    PROBE.contexts[tag] = ctx
    PROBE.event(f"{tag}:started").set()
    try:
        await PROBE.event(f"{tag}:release").wait()
        return tag
    finally:
        PROBE.event(f"{tag}:finally").set()


registry.register(Methods, hold, name=None, notification=False)
registry.register(Methods, hold, name=None, notification=True)


def call_message(tag: str, token: int | None, reply_to: str = REPLY_A) -> dict[str, Any]:
    """An ``rpc.request`` for ``hold(tag)``; a notification when ``token`` is None."""
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": "hold", "params": {"tag": tag}}
    if token is not None:
        body["id"] = tag
    return Call(
        consumer=registry.consumer_key(Methods),
        method="hold",
        body=json.dumps(body),
        queue="rpc.default",
        call=token,
        reply_to=reply_to,
        deadline=None,
        timeout=None,
        sent_at=time.time(),
        scope={},
    ).to_message()


def start(handler: CallHandler, message: dict[str, Any]) -> asyncio.Task[None]:
    return asyncio.create_task(handler(message))


async def started(*tags: str) -> None:
    with anyio.fail_after(2):
        for tag in tags:
            await PROBE.event(f"{tag}:started").wait()


async def finished(*tasks: asyncio.Task[None]) -> None:
    with anyio.fail_after(2):
        await asyncio.gather(*tasks, return_exceptions=True)


async def next_reply(layer: InMemoryChannelLayer, channel: str) -> dict[str, Any]:
    with anyio.fail_after(2):
        message: dict[str, Any] = await layer.receive(channel)
    return message


async def no_reply(layer: InMemoryChannelLayer, channel: str) -> bool:
    """True if nothing was sent to ``channel``.

    Asked once the calls ended, by which time every send they make is done: the in-memory
    layer queues a message before ``send`` returns. So nothing can arrive later, and the
    channel's queue says it all, with no window for a late reply to outrun.
    """
    queue = layer.channels.get(channel)
    return queue is None or queue.empty()


# ---------------------------------------------------------------------------------------------
# Cancelling running calls


async def test_a_running_call_cancelled_by_token_stops_without_a_reply() -> None:
    layer = InMemoryChannelLayer()
    handler = CallHandler(layer, RpcConfig())
    task = start(handler, call_message("a", token=1))
    await started("a")
    assert not PROBE.cancelled("a")

    await handler.control(cancel_message(REPLY_A, [1]))
    await finished(task)

    assert task.cancelled()
    assert PROBE.cancelled("a")
    assert PROBE.seen("a:finally")
    assert await no_reply(layer, REPLY_A)


async def test_only_the_listed_calls_are_cancelled() -> None:
    layer = InMemoryChannelLayer()
    handler = CallHandler(layer, RpcConfig())
    kept, dropped = start(handler, call_message("kept", 1)), start(handler, call_message("gone", 2))
    await started("kept", "gone")

    await handler.control(cancel_message(REPLY_A, [2, 99]))
    await finished(dropped)
    assert dropped.cancelled()
    assert not kept.done()
    assert not PROBE.cancelled("kept")

    PROBE.event("kept:release").set()
    await finished(kept)
    assert await next_reply(layer, REPLY_A) == response_message(1, True, '"kept"')
    assert await no_reply(layer, REPLY_A)


async def test_cancelling_every_call_of_a_connection_spares_the_other_connections() -> None:
    layer = InMemoryChannelLayer()
    handler = CallHandler(layer, RpcConfig())
    mine = [start(handler, call_message("a1", 1)), start(handler, call_message("a2", 2))]
    note = start(handler, call_message("a-note", None))  # a notification: no token
    other = start(handler, call_message("b1", 1, reply_to=REPLY_B))
    await started("a1", "a2", "a-note", "b1")

    await handler.control(cancel_message(REPLY_A, None))
    await finished(*mine)

    assert all(task.cancelled() for task in mine)
    assert all(PROBE.cancelled(tag) for tag in ("a1", "a2"))
    assert all(PROBE.seen(f"{tag}:finally") for tag in ("a1", "a2"))
    # A closed connection's notification runs to its end: nobody waits for it to be cancelled.
    assert not note.done()
    assert not PROBE.cancelled("a-note")
    PROBE.event("a-note:release").set()
    await finished(note)
    assert not other.done()
    assert not PROBE.cancelled("b1")

    PROBE.event("b1:release").set()
    await finished(other)
    assert await next_reply(layer, REPLY_B) == response_message(1, True, '"b1"')
    assert await no_reply(layer, REPLY_A)


async def test_control_messages_of_another_type_are_ignored() -> None:
    layer = InMemoryChannelLayer()
    handler = CallHandler(layer, RpcConfig())
    task = start(handler, call_message("a", 1))
    await started("a")

    await handler.control({**cancel_message(REPLY_A, None), "type": "rpc.something"})
    await asyncio.sleep(0)
    assert not task.done()
    assert not PROBE.cancelled("a")

    PROBE.event("a:release").set()
    await finished(task)
    assert await next_reply(layer, REPLY_A) == response_message(1, True, '"a"')


async def test_a_call_cancelled_by_anything_else_is_answered_as_stopped() -> None:
    # What tells a cancellation by the caller (no answer) from a stopping worker (an answer).
    layer = InMemoryChannelLayer()
    handler = CallHandler(layer, RpcConfig())
    task = start(handler, call_message("a", 1))
    await started("a")
    task.cancel()
    await finished(task)
    reply = await next_reply(layer, REPLY_A)
    assert (reply["call"], reply["ok"]) == (1, False)
    assert json.loads(reply["body"])["code"] == JsonRpcErrorCode.SERVICE_UNAVAILABLE


# ---------------------------------------------------------------------------------------------
# Calls revoked before they arrive


async def test_a_call_revoked_before_it_arrives_is_skipped() -> None:
    layer = InMemoryChannelLayer()
    handler = CallHandler(layer, RpcConfig())
    await handler.control(cancel_message(REPLY_A, [7]))

    with anyio.fail_after(1):
        await handler(call_message("late", 7))

    assert not PROBE.seen("late:started")
    assert await no_reply(layer, REPLY_A)
    # Other calls of the same connection still run.
    task = start(handler, call_message("next", 8))
    await started("next")
    PROBE.event("next:release").set()
    await finished(task)
    assert await next_reply(layer, REPLY_A) == response_message(8, True, '"next"')


async def test_revoking_a_whole_connection_skips_its_calls_only() -> None:
    layer = InMemoryChannelLayer()
    handler = CallHandler(layer, RpcConfig())
    await handler.control(cancel_message(REPLY_A, None))

    PROBE.event("note:release").set()
    with anyio.fail_after(1):
        await handler(call_message("call", 3))
        await handler(call_message("note", None))
    assert not PROBE.seen("call:started")
    assert PROBE.seen("note:finally")  # a notification its client sent before closing runs
    assert await no_reply(layer, REPLY_A)

    task = start(handler, call_message("b", 3, reply_to=REPLY_B))
    await started("b")
    PROBE.event("b:release").set()
    await finished(task)
    assert await next_reply(layer, REPLY_B) == response_message(3, True, '"b"')


class FakeClock:
    """Replaces the ``time`` module of channels_rpc.worker: monotonic time moves on demand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time()


class RecordingLayer(InMemoryChannelLayer):
    """A channel layer that records what it is sent, with a chosen message expiry."""

    def __init__(self, expiry: float | None) -> None:
        super().__init__()
        if expiry is None:
            del self.expiry  # as a layer that does not say
        else:
            self.expiry: float = expiry
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        self.sent.append((channel, message))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(worker, "time", fake)
    return fake


async def run_released(handler: CallHandler, tag: str, token: int) -> None:
    """Run ``hold(tag)`` to completion (unless it is skipped)."""
    PROBE.event(f"{tag}:release").set()
    with anyio.fail_after(1):
        await handler(call_message(tag, token))


@pytest.mark.parametrize(("expiry", "ttl"), [(5.0, 5.0), (None, 60.0)], ids=["layer", "default"])
async def test_revocations_last_as_long_as_the_layer_keeps_messages(
    clock: FakeClock, expiry: float | None, ttl: float
) -> None:
    layer = RecordingLayer(expiry)
    handler = CallHandler(layer, RpcConfig())
    await handler.control(cancel_message(REPLY_A, [1, 2]))

    clock.now += ttl - 0.1
    await run_released(handler, "before", 1)
    assert not PROBE.seen("before:started")
    assert layer.sent == []

    clock.now += 0.2
    await run_released(handler, "after", 2)
    assert PROBE.seen("after:started")
    assert layer.sent == [(REPLY_A, response_message(2, True, '"after"'))]


async def test_a_tiny_layer_expiry_forgets_revocations_quickly(clock: FakeClock) -> None:
    layer = RecordingLayer(0.02)
    handler = CallHandler(layer, RpcConfig())
    await handler.control(cancel_message(REPLY_A, None))
    await run_released(handler, "skipped", 1)
    assert layer.sent == []
    clock.now += 0.03
    await run_released(handler, "runs", 2)
    assert layer.sent == [(REPLY_A, response_message(2, True, '"runs"'))]


# ---------------------------------------------------------------------------------------------
# _Revocations


def test_revocations_cover_the_listed_calls_or_the_whole_connection(clock: FakeClock) -> None:
    revoked = _Revocations(10)
    revoked.add(REPLY_A, [1, 2])
    assert revoked.covers(REPLY_A, 1)
    assert revoked.covers(REPLY_A, 2)
    assert not revoked.covers(REPLY_A, 3)
    assert not revoked.covers(REPLY_A, None)
    assert not revoked.covers(REPLY_B, 1)
    revoked.add(REPLY_B, None)
    assert revoked.covers(REPLY_B, 3)
    assert revoked.covers(REPLY_B, None)
    assert not revoked.covers(REPLY_A, 3)


def test_revocations_expire_and_are_forgotten(clock: FakeClock) -> None:
    revoked = _Revocations(10)
    revoked.add(REPLY_A, [1])
    clock.now += 6
    revoked.add(REPLY_B, None)
    clock.now += 4.5  # A's revocation is 10.5 s old, B's 4.5 s
    assert not revoked.covers(REPLY_A, 1)
    assert revoked.covers(REPLY_B, 1)
    revoked.add(REPLY_A, [2])  # adding prunes what expired
    assert set(revoked._until) == {(REPLY_B, None), (REPLY_A, 2)}
    clock.now += 6
    assert not revoked.covers(REPLY_B, 1)
    assert revoked.covers(REPLY_A, 2)


def test_revoking_again_extends_a_revocation(clock: FakeClock) -> None:
    revoked = _Revocations(10)
    revoked.add(REPLY_A, [1])
    clock.now += 8
    revoked.add(REPLY_A, [1])
    clock.now += 8
    assert revoked.covers(REPLY_A, 1)
    clock.now += 3
    assert not revoked.covers(REPLY_A, 1)
