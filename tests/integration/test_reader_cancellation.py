"""The reply reader ends when it is cancelled, wherever the cancel lands (on a real Redis).

``flush()`` and ``close_pools()`` cancel each process's reply reader
(:mod:`channels_rpc._redis.inbox`) and wait for it to end; so does ``asyncio.run`` when its loop
shuts down. A cancel that lands
while redis-py sends the reader's next pop can be lost inside redis-py on Python < 3.12: it sends
each command through ``asyncio.wait_for``, which returns the command's result instead of raising
when the command completes in the same turn of the loop as the cancel (CPython gh-86296). The
reader then went on popping, and ``flush()`` hung (test_layer_state, 4 runs in 5, once a yield
after each delivery moved the reader's next pop into the window; here, on 3.11, a cancel 0 to 2
turns after a delivery was lost every time).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable

import pytest
from redis.asyncio import Redis as AsyncRedis

from channels_rpc._redis.inbox import Inbox
from channels_rpc.layers import RedisChannelLayer
from tests.integration.harness import Redis
from tests.integration.support import wait_until

pytestmark = pytest.mark.anyio

#: Seconds a reader gets to end. A lost cancel shows as the pop's whole block (the layer's
#: ``brpop_timeout``, 5 s) at best, for ever at worst.
PROMPT = 2.0
#: Turns of the event loop between a delivery and the cancel: the reader's next pop goes out
#: (taking or opening a connection, sending) and then blocks, somewhere in these.
TURNS = range(12)
ROUNDS = 3


@pytest.fixture
async def layer(redis_server: Redis) -> AsyncIterator[RedisChannelLayer]:
    layer = RedisChannelLayer(hosts=[redis_server.url], prefix=f"c{uuid.uuid4().hex[:8]}")
    yield layer
    await ends(layer.flush(), "the final flush")


async def ends(awaitable: Awaitable[object], what: str) -> None:
    """Await ``awaitable``, failing if it takes more than ``PROMPT`` seconds."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=PROMPT)
    if not done:
        task.cancel()
        raise AssertionError(f"{what} did not end within {PROMPT} s")
    task.result()


async def delivered(layer: RedisChannelLayer) -> tuple[Inbox, asyncio.Task[None]]:
    """The inbox whose reader just delivered a message, and so went straight back to its pop."""
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "m"})
    assert await layer.receive(channel) == {"type": "m"}
    (inbox,) = layer._inboxes[asyncio.get_running_loop()].values()
    assert inbox.reader is not None
    return inbox, inbox.reader


async def turns(count: int) -> None:
    """Let the loop run ``count`` times round (what else is ready runs; no time goes by)."""
    for _ in range(count):
        await asyncio.sleep(0)


async def test_close_ends_the_reader_cancelled_wherever_the_cancel_lands(
    layer: RedisChannelLayer,
) -> None:
    for _ in range(ROUNDS):
        for count in TURNS:
            inbox, reader = await delivered(layer)
            await turns(count)
            await ends(inbox.close(), f"close() {count} turns after a delivery")
            assert reader.cancelled()


async def test_flush_returns_promptly_after_a_delivery(layer: RedisChannelLayer) -> None:
    for _ in range(ROUNDS):
        for count in TURNS:
            _, reader = await delivered(layer)
            await turns(count)
            await ends(layer.flush(), f"flush() {count} turns after a delivery")
            assert reader.cancelled()


async def test_flush_returns_promptly_while_the_reader_blocks_in_its_pop(
    layer: RedisChannelLayer, redis_client: AsyncRedis
) -> None:
    async def blocked() -> bool:
        clients = await redis_client.client_list()
        return any(c["cmd"] == "bzmpop" and "b" in c["flags"] for c in clients)

    for _ in range(ROUNDS):
        _, reader = await delivered(layer)
        await wait_until(blocked)
        await ends(layer.flush(), "flush() while the reader blocks")
        assert reader.cancelled()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.cancelling() is new in 3.11")
async def test_a_cancel_lost_in_the_pop_ends_the_reader_once_the_pop_returns(
    layer: RedisChannelLayer,
) -> None:
    # One cancel, as asyncio.run gives each task at shutdown, and no close() to cancel again:
    # the reader must not go round to another pop (that one would be waited for, for ever).
    for _ in range(ROUNDS):
        for count in TURNS:
            _, reader = await delivered(layer)
            await turns(count)
            reader.cancel()
            # A message for this inbox, so that a pop still running returns at once.
            await layer.send(await layer.new_channel(), {"type": "wake"})
            await ends(asyncio.wait({reader}), f"a reader cancelled {count} turns after a delivery")
            assert reader.cancelled()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.cancelling() is new in 3.11")
async def test_the_watchdog_stops_when_its_check_loses_the_cancel(
    layer: RedisChannelLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The watchdog's check is Redis commands, each through the same asyncio.wait_for: a check
    # that loses the cancel, as redis-py's may, returns and the loop would go round for ever
    # (close_pools() and flush() wait for it).
    watchdog = layer._watchdog
    checking = asyncio.Event()

    async def check_losing_the_cancel() -> list[str]:
        checking.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return []  # what wait_for does when the command completes in the cancel's turn
        return []

    monkeypatch.setattr(watchdog, "check", check_losing_the_cancel)
    monkeypatch.setattr(watchdog, "interval", 0)
    watchdog.start()
    await asyncio.wait_for(checking.wait(), PROMPT)
    await ends(watchdog.stop(), "the watchdog's stop()")
