"""Redis state the layer must not lose track of (reliability plan T35, T40, T44).

T35 empties Redis under a running cluster without restarting it (``FLUSHDB``); T40 runs
daphne and rpcworker processes whose clocks are off (``TEST_CLOCK_SKEW`` of the test
project's settings shifts ``time.time`` in that process); T44 measures the work one reply costs
the front-end's reader as the number of open reply channels grows, on the real layer and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis

from channels_rpc import JsonRpcErrorCode
from channels_rpc.layers import RedisChannelLayer
from tests.integration.client import Answer, RpcSocket
from tests.integration.harness import Cluster, Redis
from tests.integration.reliability.report import Figures
from tests.integration.support import ClusterFactory, Connect, counter, wait_until
from tests.integration.test_layer_state import CountingDict, make_layer

pytestmark = pytest.mark.anyio

TIMEOUT = 5.0  # DEFAULT_TIMEOUT of tests.project.settings
WATCH_INTERVAL = 2.0  # the layer's default


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


# ------------------------------------------------------------------------------------------------
# T35: FLUSHDB without a restart


async def pushes_arrive_after(
    sock: RpcSocket, group: str, since: float, timeout: float
) -> float | None:
    """Push to ``group`` every 0.2 s; seconds from ``since`` to the first push received."""
    n = 0
    while time.monotonic() - since < timeout:
        n += 1
        assert (await sock.call("fault_push", [group, "state.after", n]))["result"] == n
        with contextlib.suppress(AssertionError):
            await sock.notification("state.after", timeout=0.2)
            return time.monotonic() - since
    return None


async def cancel_reaches_worker(sock: RpcSocket, redis: AsyncRedis, cluster: Cluster) -> bool:
    """Start ``cancellable(3)``, cancel it: True if the worker stopped it, False if it ran out."""
    started = counter(redis, cluster, "cancellable-started")
    finished = counter(redis, cluster, "cancellable-finally")
    completed = counter(redis, cluster, "cancellable-completed")
    before = await started(), await finished(), await completed()
    rpc_id = await sock.request("cancellable", [3])

    async def running() -> bool:
        return await started() > before[0]

    async def ended() -> bool:
        return await finished() > before[1]

    await wait_until(running, timeout=5)
    await sock.send({"jsonrpc": "2.0", "method": "rpc.cancel", "params": {"id": rpc_id}})
    answer = (await sock.wait_for([rpc_id], timeout=2))[rpc_id].response
    assert answer["error"]["code"] == JsonRpcErrorCode.REQUEST_CANCELLED
    await wait_until(ended, timeout=5)
    return await completed() == before[2]


async def test_t35_flushdb_is_noticed_and_pushes_and_cancels_work_again(
    private_cluster: Cluster, private_redis: Redis, connect: Connect, figures: Figures
) -> None:
    cluster = private_cluster
    cluster.start_frontend()
    cluster.start_worker()
    sock = await connect(cluster.url())
    group = f"state-{uuid.uuid4().hex[:8]}"
    assert (await sock.call("join", [group]))["result"] == group
    redis = AsyncRedis.from_url(private_redis.url)
    try:
        assert await cancel_reaches_worker(sock, redis, cluster)  # works before
        await redis.flushdb()
        flushed = time.monotonic()
        pushed = await pushes_arrive_after(sock, group, flushed, timeout=10)
        cancelled_at = None
        while cancelled_at is None and time.monotonic() - flushed < 10:
            if await cancel_reaches_worker(sock, redis, cluster):
                cancelled_at = time.monotonic() - flushed
    finally:
        await redis.aclose()
    warned = sum(p.output().count("Redis lost") for p in [*cluster.frontends, *cluster.workers])
    measured = (
        f"after FLUSHDB, pushes reach the group's member again after {seconds(pushed)}, "
        f"rpc.cancel stops a running call again after {seconds(cancelled_at)} (target 5 s); "
        f"{warned} processes logged the loss (before the fix: never, until the 12 h renewal)"
    )
    print(f"\nT35: {measured}")
    figures.check(
        "T35",
        measured,
        pushes_arrive_within_5_s=pushed is not None and pushed <= 5,
        cancel_reaches_the_worker_within_5_s=cancelled_at is not None and cancelled_at <= 5,
        both_processes_logged_the_loss=warned == 2,
    )


# ------------------------------------------------------------------------------------------------
# T40: clock skew


def codes(answers: dict[Any, Answer]) -> list[str]:
    found = {
        str(a.response["error"]["code"]) if "error" in a.response else "result"
        for a in answers.values()
    }
    return sorted(found)


async def collect(sock: RpcSocket, ids: list[Any], timeout: float) -> dict[Any, Answer]:
    with contextlib.suppress(AssertionError):
        await sock.wait_for(ids, timeout)
    return {i: sock.answers[json.dumps(i)] for i in ids if json.dumps(i) in sock.answers}


@pytest.mark.parametrize("skew", [10.0, -10.0, 65.0])
async def test_t40_a_worker_whose_clock_is_off_answers_calls(
    cluster_factory: ClusterFactory, connect: Connect, figures: Figures, skew: float
) -> None:
    cluster = cluster_factory(frontends=1, workers=0)
    cluster.start_worker(TEST_CLOCK_SKEW=str(skew))
    sock = await connect(cluster.url())
    ids = [await sock.request("sleep", [0.05]) for _ in range(20)]
    answers = await collect(sock, ids, timeout=TIMEOUT + 2)
    results = sum(1 for a in answers.values() if "result" in a.response)
    worker_log = cluster.workers[0].output()
    measured = (
        f"worker {skew:+.0f} s: {results}/20 calls answered with their result "
        f"(answers: {codes(answers)}; {20 - len(answers)} unanswered; "
        f"{worker_log.count('expired')} log lines about expired requests)"
    )
    print(f"\nT40: {measured}")
    figures.check("T40", measured, all_20_answered_with_their_result=results == 20)


async def test_t40_a_front_end_65_s_ahead_wipes_no_other_front_ends_calls(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, connect: Connect, figures: Figures
) -> None:
    # Calls of front-end A wait in the queue (no worker yet) when front-end B, 65 s ahead,
    # sends one: expiry is 60 s, so B's clock finds A's calls expired.
    cluster = cluster_factory(frontends=1, workers=0)
    cluster.start_frontend(TEST_CLOCK_SKEW="65")
    a = await connect(cluster.url(frontend=0))
    b = await connect(cluster.url(frontend=1))
    queue = f"{cluster.prefix}rpc.default"
    ids = [await a.request("fault_record", [f"t40-{uuid.uuid4().hex}", 0]) for _ in range(10)]

    async def queued(count: int) -> bool:
        return int(await redis_client.zcard(queue)) >= count

    await wait_until(lambda: queued(10))
    b_id = await b.request("pid")

    async def b_sent() -> bool:
        # Either B's call joined A's (11 queued), or it wiped them (1 left: B's own).
        return int(await redis_client.zcard(queue)) in (1, 11)

    await wait_until(b_sent)
    left = int(await redis_client.zcard(queue))
    cluster.start_worker()
    answers = await collect(a, ids, timeout=30 + 2)
    b_answer = await collect(b, [b_id], timeout=TIMEOUT + 2)
    results = sum(1 for x in answers.values() if "result" in x.response)
    measured = (
        f"front-end +65 s sent a call while 10 of another front-end's waited: {left} left "
        f"queued, {results}/10 answered with their result (answers {codes(answers)}); "
        f"its own call: {codes(b_answer) or 'unanswered'}"
    )
    print(f"\nT40: {measured}")
    figures.check(
        "T40",
        measured,
        nothing_wiped=left == 11,
        all_10_answered_with_their_result=results == 10,
        its_own_call_answered=codes(b_answer) == ["result"],
    )


# ------------------------------------------------------------------------------------------------
# T44: reply cost with many idle connections


async def replies_to(layer: RedisChannelLayer, channel: str, count: int) -> None:
    for n in range(count):
        await layer.send(channel, {"type": "x", "n": n})
        assert (await layer.receive(channel))["n"] == n


async def sweep_cost(layer: RedisChannelLayer, idle: int, replies: int) -> tuple[float, float]:
    """(entries read, microseconds) of the stale sweep per reply while ``idle`` channels wait."""
    channels = [await layer.new_channel() for _ in range(idle)]
    waiters = [asyncio.create_task(layer.receive(c)) for c in channels]
    live = await layer.new_channel()
    try:
        await layer.send(live, {"type": "x"})
        await layer.receive(live)
        inbox = next(iter(layer._inboxes[asyncio.get_running_loop()].values()))

        async def all_waiting() -> bool:
            return sum(inbox.waiting.values()) == idle

        await wait_until(all_waiting, timeout=30)
        sweep = inbox._evict_stale
        spent = [0.0]

        def timed() -> None:
            started = time.perf_counter()
            sweep()
            spent[0] += time.perf_counter() - started

        inbox._evict_stale = timed  # type: ignore[method-assign]
        await replies_to(layer, live, replies)
        inbox._evict_stale = sweep  # type: ignore[method-assign]
        counting = inbox.touched = CountingDict(inbox.touched)  # counting slows it: apart
        await replies_to(layer, live, replies)
        return counting.examined / replies, spent[0] / replies * 1e6
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def test_t44_a_replys_cost_does_not_grow_with_idle_connections(
    redis_server: Redis, figures: Figures
) -> None:
    layer = make_layer(redis_server.url, capacity=10_000)
    costs: dict[int, tuple[float, float]] = {}
    try:
        for idle in (100, 4000, 20_000):
            costs[idle] = await sweep_cost(layer, idle, 200)
    finally:
        await layer.flush()
    measured = (
        "stale sweep per reply with 100 / 4,000 / 20,000 open reply channels: "
        + " / ".join(f"{examined:.0f} entries, {us:.1f} us" for examined, us in costs.values())
        + " (before the fix: 101 / 4,001 / 20,001 entries, 2.5 / 288 / 1,406 us)"
    )
    few, many, most = (costs[n][0] for n in (100, 4000, 20_000))
    print(f"\nT44: {measured}")
    figures.check(
        "T44",
        measured,
        cost_at_4000_as_at_100=many <= few + 1,
        cost_at_20000_as_at_100=most <= few + 1,
    )
