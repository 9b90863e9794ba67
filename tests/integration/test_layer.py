"""channels_rpc.layers.RedisChannelLayer against a real Redis."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import pytest
from channels.exceptions import ChannelFull
from channels_redis.core import RedisChannelLayer as StockRedisChannelLayer
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ResponseError

from channels_rpc._redis import scripts
from channels_rpc._redis import sender as sender_module
from channels_rpc.layers import RedisChannelLayer
from tests.integration.harness import Proc, Redis
from workers.cluster import in_ci

pytestmark = pytest.mark.anyio


def make_layer(redis: Redis, **config: Any) -> RedisChannelLayer:
    return RedisChannelLayer(hosts=[redis.url], prefix=f"t{uuid.uuid4().hex[:8]}", **config)


async def counted(client: AsyncRedis, key: str) -> int:
    """The byte counter of channel key ``key``."""
    return int(cast(bytes, await client.get(scripts.byte_counter(key))))


@pytest.fixture
async def layer(redis_server: Redis) -> AsyncIterator[RedisChannelLayer]:
    layer = make_layer(redis_server, capacity=10_000)
    yield layer
    await layer.flush()


async def test_competing_receivers_get_each_message_exactly_once(
    redis_server: Redis, layer: RedisChannelLayer
) -> None:
    # Three layer instances stand for three worker processes (separate pools, separate loops of
    # receive), all popping one queue while messages are sent.
    receivers = [make_layer(redis_server) for _ in range(3)]
    for receiver in receivers:
        receiver.prefix = layer.prefix
    total = 3000
    seen: Counter[int] = Counter()
    done = asyncio.Event()

    async def drain(receiver: RedisChannelLayer) -> None:
        while not done.is_set():
            message = await receiver.receive_within("rpc.queue", 0.2)
            if message is not None:
                seen[message["n"]] += 1
                if sum(seen.values()) >= total:
                    done.set()

    tasks = [asyncio.create_task(drain(receiver)) for receiver in receivers]
    for n in range(total):
        await layer.send("rpc.queue", {"type": "rpc.request", "n": n})
    await asyncio.wait_for(done.wait(), 30)
    await asyncio.gather(*tasks)
    assert sorted(seen) == list(range(total))
    assert set(seen.values()) == {1}
    for receiver in receivers:
        await receiver.close_pools()


async def test_send_raises_channel_full_at_capacity(redis_server: Redis) -> None:
    layer = make_layer(redis_server, capacity=3)
    for n in range(3):
        await layer.send("rpc.small", {"type": "x", "n": n})
    with pytest.raises(ChannelFull):
        await layer.send("rpc.small", {"type": "x", "n": 3})
    assert (await layer.receive("rpc.small"))["n"] == 0  # FIFO; room for one more now
    await layer.send("rpc.small", {"type": "x", "n": 4})
    await layer.flush()


async def test_receive_within_returns_none_when_nothing_comes(layer: RedisChannelLayer) -> None:
    assert await layer.receive_within("rpc.empty", 0.1) is None
    with pytest.raises(ValueError, match="process-local"):
        await layer.receive_within(await layer.new_channel(), 0.1)


async def test_expired_messages_are_not_delivered(redis_server: Redis) -> None:
    layer = make_layer(redis_server, expiry=1)
    await layer.send("rpc.stale", {"type": "x"})
    await asyncio.sleep(1.1)  # the subject of this test is time passing: expiry is 1 s
    assert await layer.receive_within("rpc.stale", 0.1) is None
    await layer.flush()


async def test_process_local_channels_keep_working(layer: RedisChannelLayer) -> None:
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "rpc.response", "n": 1})
    assert await layer.receive(channel) == {"type": "rpc.response", "n": 1}


async def test_groups_are_unchanged(layer: RedisChannelLayer) -> None:
    channel = await layer.new_channel()
    await layer.group_add("watchers", channel)
    await layer.group_send("watchers", {"type": "push", "n": 2})
    assert await layer.receive(channel) == {"type": "push", "n": 2}


def test_read_timeout_outlasts_the_blocking_pop(redis_server: Redis) -> None:
    layer = make_layer(redis_server)
    assert layer.hosts[0]["socket_timeout"] > layer.brpop_timeout
    stock = StockRedisChannelLayer(hosts=[redis_server.url])
    assert "socket_timeout" not in stock.hosts[0]  # redis-py's default: 5 s since redis-py 8
    with pytest.raises(ValueError, match="socket_timeout"):
        RedisChannelLayer(hosts=[{"address": redis_server.url, "socket_timeout": 5}])
    unlimited = RedisChannelLayer(hosts=[{"address": redis_server.url, "socket_timeout": None}])
    assert unlimited.hosts[0]["socket_timeout"] is None


async def test_one_pop_serves_several_queues(layer: RedisChannelLayer) -> None:
    await layer.send("rpc.b", {"type": "x", "queue": "b"})
    assert await layer.receive_within(["rpc.a", "rpc.b"], 1.0) == {"type": "x", "queue": "b"}
    assert await layer.receive_within(["rpc.a", "rpc.b"], 0.1) is None


async def test_cancelled_receives_never_lose_another_channels_messages(
    layer: RedisChannelLayer,
) -> None:
    # Channels cancels a consumer's receive when its connection closes. Here connections come and
    # go on one process key while replies stream to a long-lived channel of the same process.
    steady = await layer.new_channel()
    received: list[int] = []

    async def listen() -> None:
        while len(received) < 500:
            received.append((await layer.receive(steady))["n"])

    listener = asyncio.create_task(listen())
    for n in range(500):
        churn = asyncio.create_task(layer.receive(await layer.new_channel()))
        await layer.send(steady, {"type": "rpc.response", "n": n})
        await asyncio.sleep(0)
        churn.cancel()
    await asyncio.wait_for(listener, 30)
    assert received == list(range(500))


async def test_unread_reply_buffers_are_dropped_after_expiry(redis_server: Redis) -> None:
    layer = make_layer(redis_server, expiry=1)
    layer.brpop_timeout = 0.5  # the reader sweeps after each pop or pop timeout
    reader = await layer.new_channel()
    orphan = await layer.new_channel()  # a connection that closed before its reply came
    await layer.send(orphan, {"type": "rpc.response"})
    await layer.send(reader, {"type": "rpc.response"})
    await layer.receive(reader)
    inbox = next(iter(layer._inboxes[asyncio.get_running_loop()].values()))
    assert orphan in inbox.buffers
    # Time passing is the subject: a buffer nobody reads goes after `expiry` (1 s here).
    waiter = asyncio.create_task(layer.receive(reader))
    await asyncio.sleep(layer.brpop_timeout + 1.5)
    assert orphan not in inbox.buffers
    waiter.cancel()
    await layer.flush()


async def test_withdraw_takes_back_only_messages_still_queued(layer: RedisChannelLayer) -> None:
    handles = [await layer.enqueue("rpc.w", {"type": "x", "n": n}) for n in range(3)]
    first, second, _ = handles
    assert first is not None
    assert second is not None
    assert await layer.withdraw("rpc.w", [second]) == 1
    assert (await layer.receive("rpc.w"))["n"] == 0
    assert await layer.withdraw("rpc.w", [first]) == 0  # already received
    assert (await layer.receive("rpc.w"))["n"] == 2
    assert await layer.receive_within("rpc.w", 0.1) is None


async def test_one_senders_messages_to_a_channel_keep_their_order(layer: RedisChannelLayer) -> None:
    # Scores only grow, so messages sent within one clock tick cannot swap places (a worker's
    # progress notifications must not overtake each other or the final answer).
    channel = await layer.new_channel()

    async def sender(name: str) -> None:
        for n in range(300):
            await layer.send(channel, {"type": "x", "from": name, "n": n})

    await asyncio.gather(sender("a"), sender("b"))
    got = [await layer.receive(channel) for _ in range(600)]
    for name in ("a", "b"):
        assert [m["n"] for m in got if m["from"] == name] == list(range(300))


async def test_sends_of_one_turn_share_a_script_call(
    layer: RedisChannelLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batch sizes as Redis sees them: the real script, counted on its way out.
    batches: list[int] = []
    send_many = scripts.SEND_MANY

    async def counted(connection: Any, keys: list[str], args: list[Any]) -> Any:
        result = await send_many(connection, keys, args)
        batches.append(len(result))  # a score or a refusal per message (none expired here)
        return result

    monkeypatch.setattr(sender_module, "SEND_MANY", counted)

    async def burst(size: int) -> None:
        await asyncio.gather(*(layer.send("rpc.b", {"type": "x"}) for _ in range(size)))

    await layer.send("rpc.b", {"type": "x"})
    assert batches == [1]  # light load: a lone message goes at once
    await burst(20)
    assert batches[1:] == [1, 19]  # the first still went alone; the rest gathered meanwhile
    await burst(20)
    assert batches[3:] == [20]  # after a crowded batch, the whole turn leaves together
    await layer.send("rpc.b", {"type": "x"})
    await layer.send("rpc.b", {"type": "x"})
    assert batches[4:] == [1, 1]
    assert len(await layer.receive_many(["rpc.b"], 100, 1.0)) == 43


# ---------------------------------------------------------------------------------------------
# "a normal channel is popped atomically (BZMPOP ... COUNT n on Redis >= 7, BZPOPMIN plus a
# script on older servers)". An older server is played by a real redis-server whose BZMPOP is
# renamed away: it answers "unknown command" as Redis 6 does, and the layer must notice.


@pytest.fixture
def redis_before_7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    if shutil.which("redis-server") is None:
        if in_ci():
            pytest.fail("a CI run needs redis-server for the Redis < 7 pop path")
        pytest.skip("needs redis-server (to rename BZMPOP away)")
    log_dir = tmp_path_factory.mktemp("redis6")  # short: a Unix socket path has ~100 bytes
    sock = log_dir / "redis.sock"
    argv = [
        "redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
        "--save", "", "--appendonly", "no", "--dir", str(log_dir),
        "--rename-command", "BZMPOP", "",
    ]  # fmt: skip
    proc = Proc("redis-before-7", argv, dict(os.environ), log_dir)
    try:
        proc.wait_for(r"[Rr]eady to accept connections")
        yield Redis(f"unix://{sock}", "redis-server", proc=proc)
    finally:
        proc.stop()


@pytest.fixture
async def old_admin(redis_before_7: Redis) -> AsyncIterator[AsyncRedis]:
    client = AsyncRedis.from_url(redis_before_7.url)
    yield client
    await client.aclose()


async def test_a_server_without_bzmpop_is_popped_with_bzpopmin_in_order_and_counted(
    redis_before_7: Redis, old_admin: AsyncRedis
) -> None:
    with pytest.raises(ResponseError, match="unknown command"):
        await old_admin.bzmpop(0.1, 1, ["x"], min=True)
    layer = make_layer(redis_before_7)
    key = layer.prefix + "rpc.old"
    for n in range(4):
        await layer.send("rpc.old", {"type": "x", "n": n, "pad": "p" * 10_000})
    sizes = [len(m) for m in await old_admin.zrange(key, 0, -1)]
    assert await counted(old_admin, key) == sum(sizes)
    assert [m["n"] for m in await layer.receive_many(["rpc.old"], 2, 1.0)] == [0, 1]
    assert layer.popper.bzmpop is False  # found out at the first pop, which still delivered
    assert await counted(old_admin, key) == sum(sizes)  # owed until the next pop of the key
    assert [m["n"] for m in await layer.receive_many(["rpc.old"], 1, 1.0)] == [2]
    assert await counted(old_admin, key) == sum(sizes[2:])  # the first pop's bytes, settled
    # One pop takes from several queues, earlier ones first, each oldest first.
    await layer.send("rpc.other", {"type": "x", "n": 10})
    await layer.send("rpc.other", {"type": "x", "n": 11})
    taken = await layer.receive_many(["rpc.old", "rpc.other"], 10, 1.0)
    assert [m["n"] for m in taken] == [3, 10, 11]
    assert await layer.receive_within(["rpc.old", "rpc.other"], 0.1) is None
    await layer.flush()


async def test_competing_receivers_of_a_server_without_bzmpop_get_each_message_once(
    redis_before_7: Redis,
) -> None:
    sender = make_layer(redis_before_7)
    receivers = [make_layer(redis_before_7) for _ in range(3)]
    for receiver in receivers:
        receiver.prefix = sender.prefix
    total = 1500
    got: list[list[dict[str, Any]]] = [[] for _ in receivers]
    done = asyncio.Event()

    async def drain(mine: list[dict[str, Any]], receiver: RedisChannelLayer) -> None:
        while not done.is_set():
            mine.extend(await receiver.receive_many(["rpc.a", "rpc.b"], 10, 0.2))
            if sum(map(len, got)) >= total:
                done.set()

    tasks = [asyncio.create_task(drain(mine, r)) for mine, r in zip(got, receivers, strict=True)]
    for n in range(total):
        await sender.send("rpc.a" if n % 2 else "rpc.b", {"type": "rpc.request", "n": n})
    await asyncio.wait_for(done.wait(), 30)
    await asyncio.gather(*tasks)
    assert sorted(m["n"] for mine in got for m in mine) == list(range(total))
    for mine in got:  # each pop takes the oldest: what one receiver got of a queue is in order
        for parity in (0, 1):
            numbers = [m["n"] for m in mine if m["n"] % 2 == parity]
            assert numbers == sorted(numbers)
    assert [r.popper.bzmpop for r in receivers] == [False] * 3
    for receiver in receivers:
        await receiver.close_pools()
    await sender.flush()
