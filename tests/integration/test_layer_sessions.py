"""Sessions in the Redis layer (issue 13, part 3), against a real Redis.

Several layer instances on one prefix stand for several processes: the old front-end (``old``),
the front-end a client resumes on (``new``) and a worker or pusher (``worker``). What reaches a
channel is read from its process's key in Redis, where it waits until that process receives:
nobody receives here, so nothing is taken before the test looks.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis as AsyncRedis

from channels_rpc._redis.sender import LayerFull
from channels_rpc._redis.sessions import OVERFLOWED, UNKNOWN, PendingCall, Refused, Resumed
from channels_rpc.layers import RedisChannelLayer
from tests.integration.harness import Redis
from tests.integration.support import wait_until

pytestmark = pytest.mark.anyio

ALICE = "user:1"
MALLORY = "user:2"


def make_layer(hosts: str | list[str], prefix: str) -> RedisChannelLayer:
    # Nobody receives here: the channels must hold what the tests send.
    hosts = [hosts] if isinstance(hosts, str) else hosts
    return RedisChannelLayer(hosts=hosts, prefix=prefix, capacity=100_000)


@dataclass
class Processes:
    old: RedisChannelLayer  # the front-end whose socket went
    new: RedisChannelLayer  # the front-end the client resumes on
    worker: RedisChannelLayer  # a worker answering, a pusher pushing
    admin: AsyncRedis

    async def queued(self, channel: str) -> list[Any]:
        """The ``n`` of each message waiting for ``channel`` in its process's key, in order."""
        layer = self.old
        key = layer.prefix + layer.non_local_name(channel)
        found = []
        for member in await self.admin.zrange(key, 0, -1):
            message = layer.deserialize(member)
            names = message.pop("__asgi_channel__")
            if channel in (names if isinstance(names, list) else [names]):
                found.append(message["n"])
        return found

    async def members(self, group: str) -> list[str]:
        found = cast(list[bytes], await self.admin.zrange(self.old._group_key(group), 0, -1))
        return sorted(m.decode() for m in found)

    async def session_keys(self, session_id: str) -> list[bytes]:
        pattern = f"{self.old.prefix}:rpc.session:{session_id}*"
        return sorted([key async for key in self.admin.scan_iter(match=pattern)])


@pytest.fixture
async def procs(redis_server: Redis, redis_client: AsyncRedis) -> AsyncIterator[Processes]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    layers = [make_layer(redis_server.url, prefix) for _ in range(3)]
    yield Processes(old=layers[0], new=layers[1], worker=layers[2], admin=redis_client)
    for layer in layers:
        await layer.flush()


def push(n: Any, size: int = 0) -> dict[str, Any]:
    return {"type": "rpc.push", "n": n, "pad": "x" * size}


async def detached_session(procs: Processes, **limits: Any) -> tuple[str, str]:
    channel = await procs.old.new_channel()
    options = {"max_frames": 100, "max_bytes": 64 * 1024, **limits}
    session_id = await procs.old.sessions.open(channel, ALICE, 30.0, **options)
    assert await procs.old.sessions.detach(session_id, channel, 30.0, seq=4) == "detached"
    return channel, session_id


async def resumed(procs: Processes, session_id: str) -> tuple[Resumed, str]:
    """Resume on a new channel of the ``new`` front-end: what it handed over, and the channel."""
    channel = await procs.new.new_channel()
    result = await procs.new.sessions.resume(session_id, ALICE, channel)
    assert isinstance(result, Resumed), result
    return result, channel


def numbers(result: Resumed) -> list[Any]:
    return [m["n"] for m in result.messages]


# ------------------------------------------------------------------------------------------------
# Kept while detached, handed over once, in order; sent on after the resume


async def test_a_detached_session_keeps_what_comes_and_a_resume_hands_it_over_once_in_order(
    procs: Processes,
) -> None:
    channel = await procs.old.new_channel()
    session_id = await procs.old.sessions.open(channel, ALICE, 30.0, 100, 64 * 1024)
    assert session_id.startswith("s1.")
    assert len(session_id) == 35
    await procs.worker.send(channel, push("live"))  # attached: the normal way
    assert await procs.old.sessions.detach(session_id, channel, 30.0, seq=7) == "detached"
    await procs.worker.send(channel, push(2))
    # The old front-end received this one before the detach (it was sent before): it goes
    # ahead of what the send script kept.
    assert await procs.old.sessions.keep(channel, push(1)) == "kept"
    await procs.worker.send(channel, {"type": "rpc.response", "n": 3})
    await procs.worker.send(channel, push(4))
    assert await procs.queued(channel) == ["live"]  # nothing more reached the old channel

    first, first_channel = await resumed(procs, session_id)
    assert numbers(first) == [1, 2, 3, 4]
    assert "__asgi_channel__" not in first.messages[0]
    assert (first.seq, first.window, first.previous) == (7, 30.0, channel)
    assert await procs.session_keys(session_id) == [
        f"{procs.old.prefix}:rpc.session:{session_id}".encode()
    ]  # the kept lists went with the resume

    second, second_channel = await resumed(procs, session_id)  # it reconnects again at once
    assert second.messages == []  # nothing old comes twice
    assert second.previous == first_channel

    # Answers to calls made on the old channels, sent after the resume: they reach the
    # channel the session is attached to now, once.
    await procs.worker.send(channel, push(5))
    await procs.worker.send(first_channel, push(6))
    assert await procs.queued(second_channel) == [5, 6]
    assert await procs.queued(first_channel) == []
    assert await procs.queued(channel) == ["live"]


async def test_nothing_is_lost_or_doubled_while_a_session_detaches_and_resumes_under_load(
    procs: Processes,
) -> None:
    # A worker answers on the old channel and a pusher pushes to its group, without pause,
    # while the socket goes and the client resumes elsewhere: each message arrives once, in
    # the order sent, whichever of the three ways it took.
    channel = await procs.old.new_channel()
    session_id = await procs.old.sessions.open(channel, ALICE, 30.0, 10_000, 10**7)
    assert await procs.worker.join_group("room", channel, limit=10) == "joined"
    sent = {"answer": 0, "push": 0}
    stop = asyncio.Event()

    async def answers() -> None:
        while not stop.is_set():
            await procs.worker.send(channel, push(("answer", sent["answer"])))
            sent["answer"] += 1

    async def pushes() -> None:
        while not stop.is_set():
            await procs.worker.group_send("room", push(("push", sent["push"])))
            sent["push"] += 1

    async def after(count: int) -> None:
        async def reached() -> bool:
            return min(sent.values()) >= count

        await wait_until(reached, timeout=30)

    load = asyncio.gather(answers(), pushes())
    try:
        await after(50)
        assert await procs.old.sessions.detach(session_id, channel, 30.0) == "detached"
        await after(100)
        new_channel = await procs.new.new_channel()
        result = await procs.new.sessions.resume(session_id, ALICE, new_channel)
        await after(150)
    finally:
        stop.set()
        await load
    assert isinstance(result, Resumed)
    before, kept, after_resume = (
        await procs.queued(channel),
        numbers(result),
        await procs.queued(new_channel),
    )
    for kind in ("answer", "push"):
        ways = [[n for k, n in got if k == kind] for got in (before, kept, after_resume)]
        assert all(ways), ways  # each way was taken
        assert [n for way in ways for n in way] == list(range(sent[kind])), kind


async def test_pending_calls_are_handed_over_with_the_channel_they_were_made_on(
    procs: Processes,
) -> None:
    channel = await procs.old.new_channel()
    session_id = await procs.old.sessions.open(channel, ALICE, 30.0, 100, 64 * 1024)
    assert await procs.old.sessions.track(session_id, 1, '"a"', 1e9 + 5, "rpc.default")
    assert await procs.old.sessions.track(session_id, 2, "[1,2]", None, "rpc.slow")
    assert await procs.old.sessions.track(session_id, 3, "3", None, "rpc.default")
    assert await procs.old.sessions.untrack(session_id, 3)  # answered
    assert not await procs.old.sessions.track("s1." + "A" * 32, 1, "1", None, "q")  # unknown
    await procs.old.sessions.detach(session_id, channel, 30.0)
    result, _ = await resumed(procs, session_id)
    calls = sorted(result.calls, key=lambda c: c.token)
    assert [(c.channel, c.token, c.rpc_id_json, c.deadline, c.queue) for c in calls] == [
        (channel, "1", '"a"', 1e9 + 5, "rpc.default"),
        (channel, "2", "[1,2]", None, "rpc.slow"),
    ]
    # The new front-end untracks an old call by the channel it was made on.
    assert await procs.new.sessions.untrack(session_id, 1, channel=channel)
    again, now_on = await resumed(procs, session_id)
    assert [c.token for c in again.calls] == ["2"]
    # A front-end may also hand its pending calls over at the detach, in the same step.
    late = PendingCall(now_on, "7", '{"k": 1}', None, "rpc.default")
    assert await procs.new.sessions.detach(session_id, now_on, 30.0, calls=[late]) == "detached"
    last, _ = await resumed(procs, session_id)
    assert sorted(last.calls, key=lambda c: c.token) == [calls[1], late]


async def test_a_session_taken_over_while_attached_sends_the_old_channel_on(
    procs: Processes,
) -> None:
    # The old socket is half-open: its front-end has not noticed yet when the client resumes.
    channel = await procs.old.new_channel()
    session_id = await procs.old.sessions.open(channel, ALICE, 30.0, 100, 64 * 1024)
    _, first_channel = await resumed(procs, session_id)
    _, new_channel = await resumed(procs, session_id)
    await procs.worker.send(channel, push(1))
    await procs.worker.send(first_channel, push(2))
    assert await procs.queued(new_channel) == [1, 2]
    # The old front-end notices at last: its detach must not touch the session.
    assert await procs.old.sessions.detach(session_id, channel, 30.0) == "moved"
    assert await procs.old.sessions.end(session_id, channel) == []
    # Messages it still had for the old channel are sent on too.
    assert await procs.old.sessions.keep(channel, push(3)) == "forwarded"
    assert await procs.queued(new_channel) == [1, 2, 3]


# ------------------------------------------------------------------------------------------------
# Groups


async def test_group_pushes_are_kept_while_detached_and_reach_the_new_channel_after_resume(
    procs: Processes,
) -> None:
    channel = await procs.old.new_channel()
    session_id = await procs.old.sessions.open(channel, ALICE, 30.0, 100, 64 * 1024)
    bystander = await procs.old.new_channel()  # same front-end, same key: no session
    for group in ("news", "sports"):
        assert await procs.worker.join_group(group, channel, limit=10) == "joined"
    assert await procs.worker.join_group("news", bystander, limit=10) == "joined"
    await procs.old.sessions.detach(session_id, channel, 30.0)

    await procs.worker.group_send("news", push(1))
    await procs.worker.group_send("sports", push(2))
    # The copy to the shared key named both: the bystander gets it alone, once; the detached
    # channel's old front-end gets nothing it would keep a second time.
    assert await procs.queued(bystander) == [1]
    assert await procs.queued(channel) == []
    # Kept in a copy naming the session's channel alone: a copy naming every member on that
    # front-end took 4 KB a push with 50 of them.
    kept = await procs.admin.lrange(f"{procs.old.prefix}:rpc.session:{session_id}:kept", 0, -1)
    names = [procs.old.deserialize(m)["__asgi_channel__"] for m in kept]
    assert [n if isinstance(n, list) else [n] for n in names] == [[channel], [channel]]

    result, c2 = await resumed(procs, session_id)
    assert numbers(result) == [1, 2]
    assert result.groups == ["news", "sports"]
    await procs.worker.group_send("news", push(3))
    await procs.worker.group_send("sports", push(4))
    assert await procs.queued(c2) == [3, 4]
    assert await procs.queued(channel) == []
    assert await procs.queued(bystander) == [1, 3]
    assert await procs.members("news") == sorted([bystander, c2])


async def test_joins_and_leaves_for_the_old_channel_after_a_resume_act_on_the_new_one(
    procs: Processes,
) -> None:
    # A call begun before the resume joins or leaves groups for the channel it was made on.
    channel, session_id = await detached_session(procs)
    assert await procs.worker.join_group("news", channel, limit=10) == "joined"
    result, _ = await resumed(procs, session_id)
    assert result.groups == ["news"]
    _, new_channel = await resumed(procs, session_id)  # and once more
    assert await procs.worker.join_group("sports", channel, limit=10) == "joined"
    await procs.worker.leave_group("news", channel)
    assert await procs.members("sports") == [new_channel]
    assert await procs.members("news") == []
    await procs.worker.group_send("sports", push(1))
    assert await procs.queued(new_channel) == [1]


async def test_a_session_moved_back_to_a_channel_it_had_takes_joins_there(
    procs: Processes,
) -> None:
    # A client that resumes on its first socket again (it was half-open, not gone).
    channel = await procs.old.new_channel()
    session_id = await procs.old.sessions.open(channel, ALICE, 30.0, 100, 64 * 1024)
    _, second = await resumed(procs, session_id)
    assert isinstance(await procs.old.sessions.resume(session_id, ALICE, channel), Resumed)
    assert await procs.worker.join_group("news", second, limit=10) == "joined"
    assert await procs.worker.join_group("sports", channel, limit=10) == "joined"
    assert await procs.members("news") == [channel]
    assert await procs.members("sports") == [channel]


# ------------------------------------------------------------------------------------------------
# Overflow, refusals, expiry


@pytest.mark.parametrize(
    ("limits", "sizes"),
    [({"max_frames": 3}, [10, 10, 10, 10]), ({"max_bytes": 1000}, [400, 400, 400])],
    ids=["by-frames", "by-bytes"],
)
async def test_a_session_whose_kept_messages_overflow_is_refused_overflowed_to_its_owner_only(
    procs: Processes, limits: dict[str, int], sizes: list[int]
) -> None:
    channel, session_id = await detached_session(procs, **limits)
    for n, size in enumerate(sizes):
        await procs.worker.send(channel, push(n, size))
    assert await procs.session_keys(session_id) == [
        f"{procs.old.prefix}:rpc.session:{session_id}".encode()
    ]  # kept frames deleted (no calls tracked)
    await procs.worker.send(channel, push("late"))  # dropped, not queued for a dead socket
    assert await procs.queued(channel) == []
    other = await procs.new.new_channel()
    assert await procs.new.sessions.resume(session_id, ALICE, other) == Refused(OVERFLOWED)
    assert await procs.new.sessions.resume(session_id, MALLORY, other) == Refused(UNKNOWN)
    assert await procs.new.sessions.resume(session_id, ALICE, other) == Refused(OVERFLOWED)
    assert [c for c, _ in await procs.new.sessions.sweep(time.time() + 3600)] == [channel]


async def test_refused_resumes_all_look_alike_and_change_nothing(procs: Processes) -> None:
    channel, session_id = await detached_session(procs)
    await procs.worker.send(channel, push(1))
    other = await procs.new.new_channel()
    for sid, principal in [
        (session_id, MALLORY),  # another principal's id
        ("s1." + "A" * 32, ALICE),  # a random id
        (session_id[:-1], ALICE),  # not an id at all
        ("", ALICE),
    ]:
        assert await procs.new.sessions.resume(sid, principal, other) == Refused(UNKNOWN)
    assert await procs.queued(other) == []
    await procs.worker.send(channel, push(2))  # still detached: kept
    result, _ = await resumed(procs, session_id)
    assert numbers(result) == [1, 2]


async def test_an_expired_session_is_unknown_and_swept_once_with_its_keys(
    procs: Processes,
) -> None:
    channel = await procs.old.new_channel()
    session_id = await procs.old.sessions.open(channel, ALICE, 0.5, 100, 64 * 1024)
    await procs.old.sessions.track(session_id, 1, "1", None, "rpc.default")
    await procs.old.sessions.detach(session_id, channel, 0.5)
    await procs.worker.send(channel, push(1))
    assert await procs.old.sessions.sweep() == []  # (its window has not ended)
    key = f"{procs.old.prefix}:rpc.session:{session_id}"
    ends = float(cast(bytes, await procs.admin.hget(key, "expires_at")))

    async def window_ended() -> bool:
        seconds, micros = await procs.admin.time()
        return seconds + micros / 1e6 > ends

    await wait_until(window_ended, timeout=5)
    other = await procs.new.new_channel()
    assert await procs.new.sessions.resume(session_id, ALICE, other) == Refused(UNKNOWN)
    # Two front-ends sweep at once: one of them gets it.
    swept = await asyncio.gather(procs.old.sessions.sweep(), procs.new.sessions.sweep())
    assert sorted(swept, key=len) == [[], [(channel, session_id)]]
    assert await procs.old.sessions.sweep() == []
    assert await procs.session_keys(session_id) == []
    assert await procs.admin.exists(f"{procs.old.prefix}:rpc.route:{channel}") == 0
    await procs.worker.send(channel, push(2))  # no route: the normal way
    assert await procs.queued(channel) == [2]


async def test_a_session_ended_by_its_client_is_gone_with_its_routes(procs: Processes) -> None:
    channel = await procs.old.new_channel()
    session_id = await procs.old.sessions.open(channel, ALICE, 30.0, 100, 64 * 1024)
    result, current = await resumed(procs, session_id)
    assert result.previous == channel
    assert sorted(await procs.new.sessions.end(session_id)) == sorted([channel, current])
    assert await procs.session_keys(session_id) == []
    assert (
        await procs.admin.exists(
            f"{procs.old.prefix}:rpc.route:{channel}", f"{procs.old.prefix}:rpc.route:{current}"
        )
        == 0
    )
    assert await procs.new.sessions.end(session_id) == []


async def test_a_send_to_a_channel_without_a_session_is_unaffected(procs: Processes) -> None:
    channel = await procs.old.new_channel()
    handle = await procs.worker.enqueue(channel, push(1))
    await procs.worker.group_add("plain", channel)
    await procs.worker.group_send("plain", push(2))
    assert await procs.queued(channel) == [1, 2]
    assert handle is not None
    assert handle.score_us > 0
    assert [k async for k in procs.admin.scan_iter(match=f"{procs.old.prefix}:rpc.*")] == []
    assert await procs.old.sessions.keep(channel, push(3)) == "none"


async def test_flushdb_loses_sessions_and_resume_says_unknown(private_redis: Redis) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    old, new = make_layer(private_redis.url, prefix), make_layer(private_redis.url, prefix)
    admin = AsyncRedis.from_url(private_redis.url)
    try:
        channel = await old.new_channel()
        session_id = await old.sessions.open(channel, ALICE, 30.0, 100, 64 * 1024)
        await old.sessions.detach(session_id, channel, 30.0)
        await admin.flushdb()
        result = await new.sessions.resume(session_id, ALICE, await new.new_channel())
        assert result == Refused(UNKNOWN)
        assert await old.sessions.detach(session_id, channel, 30.0) == "unknown"
    finally:
        await admin.aclose()
        await old.flush()
        await new.flush()


async def test_writes_are_refused_as_errors_when_redis_is_out_of_memory(
    private_redis: Redis,
) -> None:
    if private_redis.kind == "fakeredis":
        pytest.skip("needs a real redis-server (maxmemory)")
    prefix = f"t{uuid.uuid4().hex[:8]}"
    layer = make_layer(private_redis.url, prefix)
    admin = AsyncRedis.from_url(private_redis.url)
    try:
        channel = await layer.new_channel()
        session_id = await layer.sessions.open(channel, ALICE, 30.0, 100, 64 * 1024)
        await layer.sessions.detach(session_id, channel, 30.0)
        await layer.send(channel, push(1))
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", 1)  # below what Redis uses: every write refused
        with pytest.raises(LayerFull, match="maxmemory"):
            await layer.send(channel, push(2))
        with pytest.raises(LayerFull, match="maxmemory"):
            await layer.sessions.keep(channel, push(0))
        with pytest.raises(LayerFull, match="maxmemory"):
            await layer.sessions.open(await layer.new_channel(), ALICE, 30.0, 10, 1000)
        result = await layer.sessions.resume(session_id, ALICE, await layer.new_channel())
        assert isinstance(result, Resumed)  # it frees memory: it runs
        assert numbers(result) == [1]
    finally:
        await admin.config_set("maxmemory", 0)
        await admin.aclose()
        await layer.flush()


# ------------------------------------------------------------------------------------------------
# A session resumed on a channel of another Redis host


def other_database(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return urlunsplit(parts._replace(query="db=1"))
    return urlunsplit(parts._replace(path="/1"))


async def test_a_session_resumed_on_another_host_keeps_and_sends_on_through_its_home(
    redis_server: Redis,
) -> None:
    hosts = [redis_server.url, other_database(redis_server.url)]
    prefix = f"t{uuid.uuid4().hex[:8]}"
    layers = [make_layer(hosts, prefix) for _ in range(2)]
    old = layers[0]
    home = old.consistent_hash(old.non_local_name(await old.new_channel()))
    while True:  # a front-end whose channels live on the other host
        new = make_layer(hosts, prefix)
        layers.append(new)
        if new.consistent_hash(new.non_local_name(await new.new_channel())) != home:
            break
    worker = layers[1]
    try:
        channel = await old.new_channel()
        session_id = await old.sessions.open(channel, ALICE, 30.0, 100, 64 * 1024)
        assert old.consistent_hash(session_id) == home
        assert await worker.join_group("news", channel, limit=10) == "joined"
        remote = await new.new_channel()
        assert isinstance(await new.sessions.resume(session_id, ALICE, remote), Resumed)
        assert await new.sessions.detach(session_id, remote, 30.0, seq=2) == "detached"
        assert await new.sessions.keep(remote, push(0)) == "kept"  # kept at the session's host
        await worker.send(remote, push(1))  # its route says: ask the session's host
        await worker.send(channel, push(2))  # the old channel: sent on, then kept there
        await worker.group_send("news", push(3))
        back = await old.new_channel()
        result = await old.sessions.resume(session_id, ALICE, back)
        assert isinstance(result, Resumed)
        assert (numbers(result), result.previous, result.seq) == ([0, 1, 2, 3], remote, 2)
        assert result.groups == ["news"]
        assert sorted(await old.sessions.end(session_id)) == sorted([channel, remote, back])
        routes = [old.sessions._route(c) for c in (channel, remote, back)]
        for index in range(2):
            assert await old.connection(index).exists(*routes) == 0
    finally:
        for layer in layers:
            await layer.flush()


# ------------------------------------------------------------------------------------------------
# What it costs


async def test_memory_of_a_detached_session_with_100_kept_pushes(
    procs: Processes, redis_server: Redis
) -> None:
    if redis_server.kind == "fakeredis":
        pytest.skip("needs a real redis-server (MEMORY USAGE)")
    channel, session_id = await detached_session(procs)
    await procs.old.sessions.track(session_id, 1, "1", None, "rpc.default")
    frame = '{"jsonrpc": "2.0", "method": "topic.message", "params": {"text": "%s"}}'
    body = frame % ("x" * (200 - len(frame) + 2))
    assert len(body) == 200
    message = {"type": "rpc.push", "v": 1, "body": body}
    for _ in range(100):
        await procs.worker.send(channel, message)
    # Each is kept as it was sent: the layer's member (random prefix, msgpack, the channel).
    member = len(procs.worker.serialize({**message, "__asgi_channel__": channel}))
    keys = [
        *await procs.session_keys(session_id),
        f"{procs.old.prefix}:rpc.route:{channel}".encode(),
    ]
    usage = [cast(int, await procs.admin.memory_usage(key)) for key in keys]
    total = sum(usage)
    print(
        f"\nRedis memory of a detached session holding 100 pushes of 200-byte frames "
        f"({member} bytes each as sent): {total} bytes in {len(keys)} keys, "
        f"{total / 100:.0f} per push"
    )
    # The kept list costs its members and a few bytes each; the rest (hash, calls, route) is
    # small and fixed.
    assert total <= 100 * (member + 24) + 2048
