"""State the Redis layer must not lose track of: its clock, lost data, memberships, reply buffers.

Issue 10, items 4 and 18 (memberships undone at close, capped), 8 (FLUSHDB noticed), 13 (one
clock: Redis') and 17 (a reply's cost independent of the number of connections), against a
real Redis. Several layer instances in one process stand for several processes.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis as AsyncRedis

from channels_rpc.layers import RedisChannelLayer
from tests.integration.harness import Redis
from tests.integration.support import wait_until

pytestmark = pytest.mark.anyio


def make_layer(url: str | list[str], **config: Any) -> RedisChannelLayer:
    hosts = [url] if isinstance(url, str) else url
    return RedisChannelLayer(hosts=hosts, prefix=f"t{uuid.uuid4().hex[:8]}", **config)


def other_database(url: str) -> str:
    """The same server's database 1: a second "host" for the layer's consistent hashing."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return urlunsplit(parts._replace(query="db=1"))
    return urlunsplit(parts._replace(path="/1"))


async def redis_time(client: AsyncRedis) -> float:
    seconds, micros = await client.time()
    return float(seconds) + micros / 1e6


# ------------------------------------------------------------------------------------------------
# Item 13: the layer's clock is Redis' clock


@pytest.fixture
def skewed_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """This process's wall clock, shifted by the list's one value (a host whose clock is off)."""
    skew = [65.0]
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + skew[0])
    return skew


async def test_the_clock_is_redis_time_on_a_host_whose_clock_is_65_s_ahead(
    redis_server: Redis, redis_client: AsyncRedis, skewed_clock: list[float]
) -> None:
    layer = make_layer(redis_server.url)
    try:
        await layer.connection(0).ping()  # a first connection: the offset is measured on it
        before = layer.clock()
        now = await redis_time(redis_client)
        after = layer.clock()
        assert before - 0.05 <= now <= after + 0.05, (before - now, after - now)
    finally:
        await layer.close_pools()


async def test_the_clock_follows_a_host_clock_that_jumps(
    redis_server: Redis, redis_client: AsyncRedis, skewed_clock: list[float]
) -> None:
    # No new connection is made after the jump: the watchdog's checks measure again.
    layer = make_layer(redis_server.url, watch_interval=0.05)
    channel = await layer.new_channel()
    try:
        await layer.group_add("clock", channel)  # starts the watchdog
        skewed_clock[0] = -10.0

        async def agrees() -> bool:
            before = layer.clock()
            now = await redis_time(redis_client)
            return before - 0.05 <= now <= layer.clock() + 0.05

        await wait_until(agrees, timeout=10)
    finally:
        await layer.flush()


# ------------------------------------------------------------------------------------------------
# Item 8: data lost without a restart


async def test_flushdb_is_noticed_within_the_watch_interval(private_redis: Redis) -> None:
    layer = make_layer(private_redis.url)  # the default interval, 2 s
    noticed: list[float] = []
    layer.on_reconnect(lambda: noticed.append(time.monotonic()))
    channel = await layer.new_channel()
    client = AsyncRedis.from_url(private_redis.url)
    try:
        await layer.group_add("news", channel)
        await client.flushdb()
        flushed = time.monotonic()

        async def called() -> bool:
            return bool(noticed)

        await wait_until(called, timeout=10)
        assert noticed[0] - flushed <= 2.0 + 1.0
        await layer.group_add("news", channel)  # what the callbacks make members do
        assert await layer._watchdog.check() == []  # noticed once, not again and again
        assert len(noticed) == 1
    finally:
        await client.aclose()
        await layer.flush()


async def test_an_evicted_group_key_is_noticed(private_redis: Redis) -> None:
    layer = make_layer(private_redis.url, watch_interval=0.05)
    noticed: list[float] = []
    layer.on_reconnect(lambda: noticed.append(time.monotonic()))
    channel = await layer.new_channel()
    client = AsyncRedis.from_url(private_redis.url)
    try:
        await layer.group_add("news", channel)
        await client.delete(layer._group_key("news"))  # the epoch marker stays: no restart

        async def called() -> bool:
            return bool(noticed)

        await wait_until(called, timeout=5)
    finally:
        await client.aclose()
        await layer.flush()


async def test_groups_that_empty_legitimately_raise_no_alarm(redis_server: Redis) -> None:
    # Checks are made by hand here (the interval is an hour): each one is a whole check.
    frontend = make_layer(redis_server.url, watch_interval=3600)
    worker = make_layer(redis_server.url)
    worker.prefix = frontend.prefix
    noticed: list[float] = []
    frontend.on_reconnect(lambda: noticed.append(time.monotonic()))
    mine, theirs = await frontend.new_channel(), await worker.new_channel()
    try:
        await frontend.group_add("solo", mine)
        await frontend.group_discard("solo", mine)  # our last member left: the key is gone
        await frontend.join_group("joined", mine, limit=10)
        await frontend.leave_group("joined", mine)
        await frontend.join_group("closed", mine, limit=10)
        await frontend.close_channel(mine, ttl=0)
        await worker.group_add("elsewhere", theirs)  # not this process's channel: not tracked
        frontend.track_group("elsewhere", theirs)
        await worker.group_discard("elsewhere", theirs)
        # A worker joins one of our connections and leaves again: the front-end hears of both,
        # the leave after the group is gone. One check in between finds it missing.
        await worker.group_add("method", mine)
        frontend.track_group("method", mine)
        await worker.group_discard("method", mine)
        assert await frontend._watchdog.check() == []
        frontend.untrack_group("method", mine)
        assert await frontend._watchdog.check() == []
        assert noticed == []
        # Not told of the leave, the front-end would count on a membership that is gone.
        await worker.group_add("method", mine)
        frontend.track_group("method", mine)
        await worker.group_discard("method", mine)
        assert await frontend._watchdog.check() == []
        assert len(await frontend._watchdog.check()) == 1
        assert len(noticed) == 1
        # One alarm, not one every other check: a lost group counts again once joined again.
        assert await frontend._watchdog.check() == []
        assert await frontend._watchdog.check() == []
        assert len(noticed) == 1
    finally:
        await worker.close_pools()
        await frontend.flush()


async def test_close_pools_stops_the_watchdog(redis_server: Redis) -> None:
    layer = make_layer(redis_server.url)
    await layer.group_add("g", await layer.new_channel())
    assert any(t.get_name() == "channels_rpc-watchdog" for t in asyncio.all_tasks())
    await layer.flush()  # flush ends with close_pools
    assert not any(t.get_name() == "channels_rpc-watchdog" for t in asyncio.all_tasks())


# ------------------------------------------------------------------------------------------------
# Items 4 and 18: memberships undone at close, capped


@pytest.fixture
async def two_hosts(redis_server: Redis) -> AsyncIterator[tuple[RedisChannelLayer, ...]]:
    """A front-end's and a worker's layer on two "hosts" (databases 0 and 1 of the server)."""
    hosts = [redis_server.url, other_database(redis_server.url)]
    frontend, worker = make_layer(hosts), make_layer(hosts)
    worker.prefix = frontend.prefix
    yield frontend, worker
    await worker.close_pools()
    await frontend.flush()


async def members(layer: RedisChannelLayer, group: str) -> list[bytes]:
    connection = layer.connection(layer.consistent_hash(group))
    found: list[bytes] = await connection.zrange(layer._group_key(group), 0, -1)
    return found


async def test_a_join_after_the_close_is_undone(two_hosts: tuple[RedisChannelLayer, ...]) -> None:
    frontend, worker = two_hosts
    channel = await frontend.new_channel()
    assert await frontend.close_channel(channel, ttl=30) == []
    assert await worker.join_group("late", channel, limit=10) == "closed"
    assert await members(worker, "late") == []
    # Without a mark (ttl 0: no call of the connection can still join), a join is a join.
    other = await frontend.new_channel()
    await frontend.close_channel(other, ttl=0)
    assert await worker.join_group("late", other, limit=10) == "joined"


async def test_3000_joins_racing_their_close_leave_no_member(
    two_hosts: tuple[RedisChannelLayer, ...],
) -> None:
    # A method joins its caller to a group (the worker) while the caller's socket closes (the
    # front-end): either first, or both at once (their round trips interleaved).
    frontend, worker = two_hosts
    groups = [f"topic{n}" for n in range(7)]
    rng = random.Random(10)
    outcomes: list[str] = []
    channels: list[str] = []

    async def after_some_turns(step: Any) -> Any:
        for _ in range(rng.randrange(4)):
            await asyncio.sleep(0)
        return await step

    async def cycle(n: int) -> None:
        channel = await frontend.new_channel()
        channels.append(channel)
        join = worker.join_group(groups[n % 7], channel, limit=100)
        close = frontend.close_channel(channel, ttl=30)
        if n % 3 == 0:  # the join first, then the close
            outcomes.append(await join)
            await close
        elif n % 3 == 1:  # the close first, then the join
            await close
            outcomes.append(await join)
        else:  # both at once, their round trips interleaved as the loop schedules them
            joined, _ = await asyncio.gather(after_some_turns(join), after_some_turns(close))
            outcomes.append(joined)

    for start in range(0, 3000, 100):
        await asyncio.gather(*(cycle(n) for n in range(start, start + 100)))
    stale = sum([len(await members(frontend, group)) for group in groups])
    assert stale == 0
    assert set(outcomes) == {"joined", "closed"}
    # Group and record on different hosts, and on the same one: both came up.
    same = {
        frontend.consistent_hash(g) == frontend.consistent_hash(c) for g in groups for c in channels
    }
    assert same == {True, False}
    for index in range(2):
        pattern = f"{frontend.prefix}:rpc.joined:*"
        assert [k async for k in frontend.connection(index).scan_iter(pattern)] == []


async def test_a_join_cancelled_between_its_steps_leaves_no_member(
    two_hosts: tuple[RedisChannelLayer, ...],
) -> None:
    # A closing connection cancels the method that is joining it to a group. Stopped after
    # adding the member and before recording it, the join left a member no close could find
    # (seen end to end: 2 of 150 subscribe-and-close cycles, T31).
    frontend, worker = two_hosts
    stale = 0
    for turns in range(1, 6):
        channel = await frontend.new_channel()
        join = asyncio.ensure_future(worker.join_group("cut", channel, limit=10))
        for _ in range(turns):  # stop it at a different step each time
            await asyncio.sleep(0)
        join.cancel()
        await asyncio.gather(join, return_exceptions=True)
        await frontend.close_channel(channel, ttl=30)

        async def finished() -> bool:  # a join still finishing for its cancelled caller
            return not worker._memberships._running

        await wait_until(finished, timeout=5)
        stale += len(await members(frontend, "cut"))
    assert stale == 0


async def test_joins_are_capped_per_channel(two_hosts: tuple[RedisChannelLayer, ...]) -> None:
    frontend, worker = two_hosts
    channel = await frontend.new_channel()
    for n in range(3):
        assert await worker.join_group(f"g{n}", channel, limit=3) == "joined"
    assert await worker.join_group("g3", channel, limit=3) == "full"
    assert await members(worker, "g3") == []
    assert await worker.join_group("g1", channel, limit=3) == "joined"  # joined already
    await worker.leave_group("g0", channel)
    assert await members(worker, "g0") == []
    assert await worker.join_group("g3", channel, limit=3) == "joined"
    assert await frontend.close_channel(channel, ttl=0) == ["g1", "g2", "g3"]
    for n in range(4):
        assert await members(worker, f"g{n}") == []


async def test_group_add_and_discard_are_channels_redis_own(redis_server: Redis) -> None:
    # Channels' ``groups`` attribute uses them: no record, no cap, no mark.
    layer = make_layer(redis_server.url)
    channel = await layer.new_channel()
    try:
        await layer.close_channel(channel, ttl=30)
        await layer.group_add("plain", channel)
        await layer.group_send("plain", {"type": "push", "n": 1})
        assert await layer.receive(channel) == {"type": "push", "n": 1}
        assert await layer.close_channel(channel, ttl=0) == []
        await layer.group_discard("plain", channel)
        assert await members(layer, "plain") == []
    finally:
        await layer.flush()


# ------------------------------------------------------------------------------------------------
# Item 17: a reply costs the same whatever the number of connections


class CountingDict(dict[str, float]):
    """The inbox's ``touched``: counts the entries read by iterating it (the stale sweep).

    T44 (tests/integration/reliability/test_redis_state.py) counts with it.
    """

    examined = 0

    def items(self) -> Any:
        for item in super().items():
            self.examined += 1
            yield item

    def __iter__(self) -> Any:
        for key in super().__iter__():
            self.examined += 1
            yield key
