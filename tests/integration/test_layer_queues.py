"""The Redis layer's queues against a real Redis: withdraw cost, given-up sends, bytes, clocks.

Issue 10, items 3 (withdraw read the whole queue), 5 (a send whose caller gave up was sent
later anyway), 6 (``maxmemory`` did not hold), 7 (queues bounded in messages only) and 13
(the send script took its times from the sender's clock). Fast: each test runs in seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import pytest
from channels.exceptions import ChannelFull
from redis.asyncio import Redis as AsyncRedis

from channels_rpc._redis import scripts
from channels_rpc.layers import Handle, LayerFull, RedisChannelLayer
from tests.integration.harness import Redis, start_fakeredis
from tests.integration.support import wait_until

pytestmark = pytest.mark.anyio


def make_layer(redis: Redis, **config: Any) -> RedisChannelLayer:
    return RedisChannelLayer(hosts=[redis.url], prefix=f"t{uuid.uuid4().hex[:8]}", **config)


@pytest.fixture
async def private_admin(private_redis: Redis) -> AsyncIterator[AsyncRedis]:
    client = AsyncRedis.from_url(private_redis.url)
    yield client
    await client.aclose()


@pytest.fixture
def fakeredis_server() -> Iterator[Redis]:
    server = start_fakeredis()
    yield server
    server.stop()


def needs_redis_server(redis: Redis) -> None:
    if redis.kind == "fakeredis":
        pytest.skip("needs a real redis-server (CLIENT PAUSE, INFO, maxmemory)")


async def redis_time(client: AsyncRedis) -> float:
    reply: Any = await client.time()  # (seconds, microseconds)
    return float(reply[0]) + float(reply[1]) / 1e6


async def counted(client: AsyncRedis, key: str) -> int:
    """The byte counter of channel key ``key``."""
    return int(cast(bytes, await client.get(scripts.byte_counter(key))))


async def enqueued(layer: RedisChannelLayer, channel: str, message: dict[str, Any]) -> Handle:
    handle = await layer.enqueue(channel, message)
    assert handle is not None  # (only random_prefix_length=0 gives none)
    return handle


async def fill(layer: RedisChannelLayer, channel: str, count: int, size: int) -> None:
    """Queue ``count`` messages of about ``size`` bytes, 500 sends per turn (one script call)."""
    for start in range(0, count, 500):
        batch = range(start, min(count, start + 500))
        await asyncio.gather(
            *(layer.send(channel, {"type": "x", "pad": "p" * size}) for _ in batch)
        )


# ------------------------------------------------------------------------------------------------
# Item 3: withdraw costs O(log N)


async def withdraw_usec(layer: RedisChannelLayer, redis_client: AsyncRedis, channel: str) -> float:
    """Redis' own microseconds per withdraw of one message queued behind the whole backlog."""
    handles = [await enqueued(layer, channel, {"type": "x", "n": n}) for n in range(200)]
    before = (await redis_client.info("commandstats"))["cmdstat_evalsha"]["usec"]
    for handle in handles:
        assert await layer.withdraw(channel, [handle]) == 1
    after = (await redis_client.info("commandstats"))["cmdstat_evalsha"]["usec"]
    return float(after - before) / len(handles)


async def test_withdraw_cost_does_not_grow_with_the_queue(
    redis_server: Redis, redis_client: AsyncRedis
) -> None:
    needs_redis_server(redis_server)
    layer = make_layer(redis_server, capacity=100_000)
    await fill(layer, "rpc.short", 1_000, 200)
    await fill(layer, "rpc.long", 20_000, 200)
    short = await withdraw_usec(layer, redis_client, "rpc.short")
    long = await withdraw_usec(layer, redis_client, "rpc.long")
    # O(log N): about the same cost; reading the queue (before) cost 20 times as much.
    assert long < 3 * short + 20, f"{short:.1f} us per withdraw at 1k queued, {long:.1f} at 20k"
    await layer.flush()


# ------------------------------------------------------------------------------------------------
# Item 5: a send whose caller gave up is never sent


async def pause_writes(redis_client: AsyncRedis, ms: int) -> None:
    await redis_client.client_pause(ms, all=False)  # CLIENT PAUSE ms WRITE


async def queued(layer: RedisChannelLayer, channel: str) -> list[Any]:
    """Everything still queued on ``channel`` (taking it)."""
    return [m.get("n") for m in await layer.receive_many([channel], 1000, 0.05)]


async def test_sends_whose_callers_gave_up_are_never_sent(
    private_redis: Redis, private_admin: AsyncRedis
) -> None:
    # The front-end's old pattern: a time limit around send. While Redis is slow, one send is in
    # flight and the others wait behind it; all give up. They used to wait in the sender until an
    # unrelated send, then go out with it: calls answered -32010 ran anyway.
    needs_redis_server(private_redis)  # CLIENT PAUSE
    layer = make_layer(private_redis)
    await layer.send("rpc.q", {"type": "x", "n": "warm"})
    assert await queued(layer, "rpc.q") == ["warm"]
    await pause_writes(private_admin, 5_000)
    outcomes = await asyncio.gather(
        *(asyncio.wait_for(layer.send("rpc.q", {"type": "x", "n": n}), 0.3) for n in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(o, TimeoutError) for o in outcomes), outcomes
    await private_admin.client_unpause()
    await layer.send("rpc.q", {"type": "x", "n": "after"})  # the unrelated send
    assert await queued(layer, "rpc.q") == ["after"]
    await layer.flush()


async def test_a_time_limited_send_is_never_sent_after_its_limit(
    private_redis: Redis, private_admin: AsyncRedis
) -> None:
    needs_redis_server(private_redis)  # CLIENT PAUSE
    layer = make_layer(private_redis)
    await layer.send("rpc.q", {"type": "x", "n": "warm"})
    assert await queued(layer, "rpc.q") == ["warm"]
    await pause_writes(private_admin, 5_000)
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(layer.enqueue("rpc.q", {"type": "x", "n": n}, timeout=0.3) for n in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(o, TimeoutError) for o in outcomes), outcomes
    assert time.monotonic() - started < 1.0  # the layer keeps the limit itself
    await private_admin.client_unpause()
    await layer.send("rpc.q", {"type": "x", "n": "after"})
    await asyncio.sleep(0.1)  # the withdrawals' turn, should anything have been queued
    assert await queued(layer, "rpc.q") == ["after"]
    await layer.flush()


class SlowAnswers:
    """A TCP relay to Redis that holds every answer for ``delay`` seconds (requests go at once).

    Redis runs each command at once and its answer arrives late: past a sender's time limit,
    it is lost with the cancelled call, or it comes to a batch whose senders gave up.
    """

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.delay = 0.0
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.redis_url.startswith("unix://"):
            up_reader, up_writer = await asyncio.open_unix_connection(self.redis_url[7:])
        else:
            host, port = self.redis_url.split("//")[1].split("/")[0].split(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        for source, sink, slow in ((reader, up_writer, False), (up_reader, writer, True)):
            task = asyncio.create_task(self._pump(source, sink, slow))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, slow: bool
    ) -> None:
        try:
            while data := await source.read(65536):
                if slow and self.delay:
                    await asyncio.sleep(self.delay)
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
async def slow_answers(redis_server: Redis) -> AsyncIterator[SlowAnswers]:
    relay = SlowAnswers(redis_server.url)
    yield relay
    await relay.stop()


async def test_a_send_whose_answer_came_after_its_limit_is_withdrawn(
    redis_server: Redis, redis_client: AsyncRedis, slow_answers: SlowAnswers
) -> None:
    layer = make_layer(Redis(await slow_answers.start(), "relay"))
    await layer.send("rpc.late", {"type": "x", "n": "warm"})  # scripts loaded, pool open
    assert await queued(layer, "rpc.late") == ["warm"]
    key = layer.prefix + "rpc.late"
    slow_answers.delay = 0.5
    with pytest.raises(TimeoutError):
        await layer.enqueue("rpc.late", {"type": "x", "n": 1}, timeout=0.2)
    assert await redis_client.zcard(key) == 1  # Redis took it; its answer was lost
    slow_answers.delay = 0.0

    async def withdrawn() -> bool:
        return int(await redis_client.zcard(key)) == 0

    await wait_until(withdrawn, 10)  # once Redis' clock had passed the limit
    assert await queued(layer, "rpc.late") == []
    await layer.flush()


async def test_a_batch_answered_after_its_senders_gave_up_is_withdrawn(
    redis_server: Redis, redis_client: AsyncRedis, slow_answers: SlowAnswers
) -> None:
    layer = make_layer(Redis(await slow_answers.start(), "relay"))
    await asyncio.gather(*(layer.send("rpc.late", {"type": "x", "n": "warm"}) for _ in range(3)))
    assert len(await queued(layer, "rpc.late")) == 3
    key = layer.prefix + "rpc.late"
    # After a crowded batch, sends leave together from a task: this batch is not cancelled with
    # its callers; its answer comes, saying Redis queued messages nobody waits for any more.
    slow_answers.delay = 0.5
    outcomes = await asyncio.gather(
        *(layer.enqueue("rpc.late", {"type": "x", "n": n}, timeout=0.2) for n in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(o, TimeoutError) for o in outcomes), outcomes
    assert await redis_client.zcard(key) == 3
    slow_answers.delay = 0.0

    async def withdrawn() -> bool:
        return int(await redis_client.zcard(key)) == 0

    await wait_until(withdrawn, 10)
    await layer.flush()


async def test_the_send_script_refuses_a_message_past_its_limit_on_redis_clock(
    redis_server: Redis, redis_client: AsyncRedis
) -> None:
    key = f"t{uuid.uuid4().hex[:8]}rpc.limit"
    now = await redis_time(redis_client)
    keys = [key, scripts.byte_counter(key)]
    # One key (capacity 10 messages and 10,000 bytes), 3 messages: past their time limit,
    # within it, without one.
    args = [60, "10 10000 3", b"m1", repr(now - 1), b"m2", repr(now + 30), b"m3", ""]
    late, on_time, unlimited = await scripts.SEND_MANY(redis_client, keys, args)
    assert late == -3
    assert now * 1e6 - 1 <= on_time <= unlimited  # microseconds (the next: within one more)
    pairs: Any = await redis_client.zrange(key, 0, -1, withscores=True)
    (m2, s2), (m3, s3) = pairs
    assert (m2, m3) == (b"m2", b"m3")
    assert abs(s2 * 1e6 - on_time) < 2
    assert abs(s3 * 1e6 - unlimited) < 2
    await redis_client.delete(key, scripts.byte_counter(key))


# ------------------------------------------------------------------------------------------------
# Item 6: Redis' maxmemory holds


async def test_sends_are_refused_when_redis_is_out_of_memory(
    private_redis: Redis, private_admin: AsyncRedis
) -> None:
    needs_redis_server(private_redis)
    layer = make_layer(private_redis, capacity=10_000)
    await layer.send("rpc.big", {"type": "x"})  # scripts loaded, pool open
    used = int((await private_admin.info("memory"))["used_memory"])
    limit = used + 2 * 1024 * 1024
    await private_admin.config_set("maxmemory", limit)
    await private_admin.config_set("maxmemory-policy", "noeviction")
    handles: list[Handle] = []
    refusals: list[BaseException] = []
    for _ in range(100):  # 10 MB tried, in batches as a busy front-end sends them
        outcomes = await asyncio.gather(
            *(layer.enqueue("rpc.big", {"type": "x", "pad": "p" * 25_000}) for _ in range(4)),
            return_exceptions=True,
        )
        handles += [o for o in outcomes if isinstance(o, Handle)]
        refusals += [o for o in outcomes if isinstance(o, BaseException)]
        if refusals:
            break
    assert refusals, "Redis took 10 MB past a 2 MB limit"
    for refusal in refusals:
        assert isinstance(refusal, LayerFull)
        assert str(refusal) == refusal.reason == "Redis is out of memory (maxmemory)"
    peak = int((await private_admin.info("memory"))["used_memory_peak"])
    assert peak < limit + 1.5 * 1024 * 1024, (
        f"peak {peak / 2**20:.1f} MiB, limit {limit / 2**20:.1f}"
    )
    # Taking messages back works when Redis is full (that is when it is needed most).
    assert await layer.withdraw("rpc.big", handles[:10]) == 10
    assert len(await layer.receive_many(["rpc.big"], 1000, 0.1)) == 1 + len(handles) - 10
    await private_admin.config_set("maxmemory", 0)
    await layer.flush()


# ------------------------------------------------------------------------------------------------
# Item 7: queues bounded in bytes


async def test_a_queue_refuses_bytes_past_its_byte_capacity(redis_server: Redis) -> None:
    layer = make_layer(redis_server, channel_byte_capacity={"rpc.bytes": 100_000})
    message = {"type": "x", "pad": "p" * 20_000}
    handles = [await enqueued(layer, "rpc.bytes", message) for _ in range(4)]
    with pytest.raises(LayerFull) as refused:
        await layer.send("rpc.bytes", message)
    assert refused.value.reason == "queue holds too many bytes"
    assert isinstance(refused.value, ChannelFull)  # what the front-end answers -32010 to
    await layer.send("rpc.other", message)  # the default byte capacity: 64 MiB
    # A withdrawal gives its bytes back at once.
    assert await layer.withdraw("rpc.bytes", handles[-1:]) == 1
    await layer.send("rpc.bytes", message)
    with pytest.raises(LayerFull):
        await layer.send("rpc.bytes", message)
    # So do receivers: what one pop took is subtracted along with its next pop.
    assert len(await layer.receive_many(["rpc.bytes"], 2, 0.1)) == 2
    assert len(await layer.receive_many(["rpc.bytes"], 1, 0.1)) == 1
    await layer.send("rpc.bytes", message)
    await layer.send("rpc.bytes", message)
    # And an empty queue holds no bytes, whatever its receivers still owe.
    assert len(await layer.receive_many(["rpc.bytes"], 100, 0.1)) == 3
    for _ in range(4):
        await layer.send("rpc.bytes", message)
    await layer.flush()


async def test_message_capacity_refusals_say_so(redis_server: Redis) -> None:
    layer = make_layer(redis_server, capacity=2)
    await layer.send("rpc.two", {"type": "x"})
    await layer.send("rpc.two", {"type": "x"})
    with pytest.raises(LayerFull, match="queue is full"):
        await layer.send("rpc.two", {"type": "x"})
    await layer.flush()


async def test_the_byte_counter_follows_the_queue(
    redis_server: Redis, redis_client: AsyncRedis
) -> None:
    layer = make_layer(redis_server, expiry=1)
    key = layer.prefix + "rpc.count"
    handles = [await enqueued(layer, "rpc.count", {"type": "x", "n": n}) for n in range(3)]
    members = await redis_client.zrange(key, 0, -1)
    assert await counted(redis_client, key) == sum(map(len, members))
    assert 0 < await redis_client.ttl(scripts.byte_counter(key)) <= 1  # expires with its queue
    await layer.withdraw("rpc.count", handles[:1])
    assert await counted(redis_client, key) == sum(map(len, members[1:]))
    await layer.send("rpc.other", {"type": "x"})
    await asyncio.sleep(1.2)  # the subject: messages expiring while queued (expiry is 1 s)
    await layer.send("rpc.count", {"type": "x", "n": 9})  # expired ones go, with their bytes
    members = await redis_client.zrange(key, 0, -1)
    assert len(members) == 1
    assert await counted(redis_client, key) == len(members[0])
    await layer.flush()


# ------------------------------------------------------------------------------------------------
# Item 13: one clock


async def test_scripts_take_time_from_redis_not_the_sender(
    redis_server: Redis, redis_client: AsyncRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    if redis_server.kind == "fakeredis":
        pytest.skip("an in-process fakeredis reads the patched clock too")
    receiver = make_layer(redis_server)
    await receiver.send("rpc.clock", {"type": "x", "n": 1})
    # A front-end whose clock is 65 s ahead: its send used to expire every message queued
    # (older than its now - 60 s) and give its own a score 65 s in the future.
    ahead = make_layer(redis_server)
    ahead.prefix = receiver.prefix
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 65)
    await ahead.send("rpc.clock", {"type": "x", "n": 2})
    monkeypatch.undo()
    now = await redis_time(redis_client)
    pairs: Any = await redis_client.zrange(receiver.prefix + "rpc.clock", 0, -1, withscores=True)
    scores = [score for _, score in pairs]
    assert all(abs(s - now) < 5 for s in scores), scores
    assert await queued(receiver, "rpc.clock") == [1, 2]
    await receiver.flush()
    await ahead.close_pools()


async def test_a_group_send_from_a_host_ahead_expires_nothing_of_its_members(
    redis_server: Redis, redis_client: AsyncRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # channels-redis' group_send expires every member key's messages on the pusher's clock:
    # a worker 65 s ahead pushing to a group wiped the answers waiting for its members.
    if redis_server.kind == "fakeredis":
        pytest.skip("an in-process fakeredis reads the patched clock too")
    frontend = make_layer(redis_server)
    channel = await frontend.new_channel()
    await frontend.group_add("news", channel)
    await frontend.send(channel, {"type": "rpc.response", "n": 1})  # an answer, not yet read
    ahead = make_layer(redis_server)
    ahead.prefix = frontend.prefix
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 65)
    await ahead.group_send("news", {"type": "rpc.push", "n": 2})
    monkeypatch.undo()
    key = frontend.prefix + frontend.non_local_name(channel)
    now = await redis_time(redis_client)
    pairs: Any = await redis_client.zrange(key, 0, -1, withscores=True)
    scores = [score for _, score in pairs]
    assert len(scores) == 2
    assert all(abs(score - now) < 5 for score in scores), scores
    received = [await asyncio.wait_for(frontend.receive(channel), 5) for _ in range(2)]
    assert [message["n"] for message in received] == [1, 2]
    await frontend.flush()
    await frontend.close_pools()
    await ahead.close_pools()


async def test_expired_requests_are_dropped_with_a_warning(
    redis_server: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    layer = make_layer(redis_server, expiry=2)
    # The subject of this test is time passing: expiry is 2 s. Sends keep the queue alive
    # (its key expires 2 s after the last send); its old messages are dropped when a receiver
    # pops them, or when a send finds them, and either one says how many.
    for n in range(2):
        await layer.send("rpc.stale", {"type": "x", "secret": "do-not-log", "n": n})
    await layer.send("rpc.popped", {"type": "x", "secret": "do-not-log"})
    await asyncio.sleep(1.0)
    await layer.send("rpc.stale", {"type": "x", "n": "fresh"})
    await layer.send("rpc.popped", {"type": "x", "n": "fresh"})
    await asyncio.sleep(1.1)
    with caplog.at_level(logging.WARNING, logger="channels_rpc.layers"):
        assert await queued(layer, "rpc.popped") == ["fresh"]
        await layer.send("rpc.stale", {"type": "x", "n": "fresher"})
    assert await queued(layer, "rpc.stale") == ["fresh", "fresher"]
    logged = [r for r in caplog.records if r.name == "channels_rpc.layers"]
    assert [r.levelno for r in logged] == [logging.WARNING] * 2
    assert "dropped 1 messages from rpc.popped" in logged[0].getMessage()
    assert "dropped 2 messages from rpc.stale" in logged[1].getMessage()
    assert "do-not-log" not in caplog.text
    await layer.flush()


# ------------------------------------------------------------------------------------------------
# Redis without shebangs (fakeredis, Redis < 7)


async def test_the_plain_scripts_run_where_shebangs_are_refused(
    fakeredis_server: Redis,
) -> None:
    layer = make_layer(fakeredis_server, channel_byte_capacity={"rpc.f": 50_000})
    handles = [await enqueued(layer, "rpc.f", {"type": "x", "pad": "p" * 20_000}) for _ in range(2)]
    with pytest.raises(LayerFull, match="too many bytes"):
        await layer.send("rpc.f", {"type": "x", "pad": "p" * 20_000})
    connection = layer.connection(0)
    assert scripts.SEND_MANY._chosen[connection] is scripts.SEND_MANY.variants[1]  # plain
    assert await layer.withdraw("rpc.f", handles[:1]) == 1
    await layer.send("rpc.f", {"type": "x", "n": 2})
    assert len(await layer.receive_many(["rpc.f"], 10, 0.1)) == 2
    await layer.flush()


async def test_the_pop_path_of_redis_before_7_keeps_the_counters_too(
    redis_server: Redis, redis_client: AsyncRedis
) -> None:
    # Redis < 7 has no BZMPOP: BZPOPMIN, then a script for the rest. What it takes is
    # subtracted from the byte counter the same way, with a later pop.
    layer = make_layer(redis_server)
    layer.popper.bzmpop = False  # as after Redis < 7 answered "unknown command"
    key = layer.prefix + "rpc.old"
    for n in range(3):
        await layer.send("rpc.old", {"type": "x", "n": n, "pad": "p" * 10_000})
    assert [m["n"] for m in await layer.receive_many(["rpc.old"], 2, 1.0)] == [0, 1]
    await layer.send("rpc.old", {"type": "x", "n": 3})
    before = await counted(redis_client, key)
    assert [m["n"] for m in await layer.receive_many(["rpc.old"], 1, 1.0)] == [2]
    assert await counted(redis_client, key) < before - 20_000  # the first pop's bytes, settled
    assert layer.popper.bzmpop is False
    await layer.flush()
