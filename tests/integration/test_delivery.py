"""Queues on Redis hand each request to exactly one worker, and idle processes stay alive."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable

import pytest
from redis.asyncio import Redis as AsyncRedis

from tests.integration.client import RpcSocket
from tests.integration.support import ClusterFactory

pytestmark = pytest.mark.anyio

CONNECTIONS = 10
CALLS, WINDOW = 20_000, 100
# fakeredis (machines without Redis, never in CI) is a functional stand-in, running in this
# process and far slower: fewer calls, fewer in flight, so that none of them waits past its 5 s
# timeout. The session's summary says so (the ``reduced`` fixture).
FAKEREDIS_LOAD = (2_000, 10)


async def _drive(sock: RpcSocket, tokens: list[str], in_flight: int) -> None:
    """Keep ``in_flight`` calls in flight on one connection until every token was sent."""
    window = asyncio.Semaphore(in_flight)

    async def one(token: str) -> None:
        async with window:
            await sock.request("record", [token], rpc_id=token)
            await sock.wait_for([token], timeout=60)

    await asyncio.gather(*(one(token) for token in tokens))


@pytest.mark.parametrize(
    "calls",
    # 20,000 in `make reliability`; `make test` sends a quarter, to stay short.
    [pytest.param(5_000, id="5000"), pytest.param(CALLS, id="20000", marks=pytest.mark.long)],
)
async def test_three_workers_execute_each_call_exactly_once(
    cluster_factory: ClusterFactory,
    redis_client: AsyncRedis,
    reduced: Callable[[str], None],
    calls: int,
) -> None:
    cluster = cluster_factory(frontends=1, workers=3)
    in_flight = WINDOW
    if cluster.redis.kind == "fakeredis":
        asked, (calls, in_flight) = calls, FAKEREDIS_LOAD
        reduced(f"{calls:,} calls instead of {asked:,}, {in_flight} in flight: fakeredis")
    socks = [await RpcSocket.connect(cluster.url()) for _ in range(CONNECTIONS)]
    tokens = [uuid.uuid4().hex for _ in range(calls)]
    shares = [tokens[i::CONNECTIONS] for i in range(CONNECTIONS)]
    started = time.monotonic()
    await asyncio.gather(
        *(_drive(sock, share, in_flight) for sock, share in zip(socks, shares, strict=True))
    )
    elapsed = time.monotonic() - started

    answers = [sock.answers for sock in socks]
    results = [a.response.get("result") for per_sock in answers for a in per_sock.values()]
    executions = await redis_client.hgetall(cluster.counter_key("executions"))
    counts = Counter(int(n) for n in executions.values())
    by_worker = Counter(results)
    print(
        f"\n{calls} calls, 3 workers, {CONNECTIONS} connections x {in_flight} in flight: "
        f"{elapsed:.1f} s ({calls / elapsed:.0f} calls/s); executions per id {dict(counts)}; "
        f"per worker {sorted(by_worker.values())}"
    )
    assert len(results) == calls  # every reply arrived...
    assert None not in results  # ...and none is an error
    assert len(executions) == calls  # every id ran...
    assert counts == {1: calls}  # ...exactly once
    assert set(by_worker) == {w.pid for w in cluster.workers}  # all three took work
    for sock in socks:
        await sock.close()


# T12 checks the same in make test (idle past redis-py 8's read timeout, 12 s): this longer
# idle runs with make reliability.
@pytest.mark.long
async def test_idle_frontend_and_worker_survive_30_seconds(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(frontends=1, workers=1)
    worker, frontend = cluster.workers[0], cluster.frontends[0]
    sock = await RpcSocket.connect(cluster.url())
    assert (await sock.call("pid"))["result"] == worker.pid
    # The point of this test is time passing with nothing to do: redis-py 8's default 5 s read
    # timeout used to kill idle receivers (front-end reply channel and worker queue) every 5 s.
    await asyncio.sleep(30)
    assert sock.open
    assert (await sock.call("pid"))["result"] == worker.pid
    fresh = await RpcSocket.connect(cluster.url())
    assert (await fresh.call("pid"))["result"] == worker.pid
    assert worker.alive
    assert frontend.alive
    for proc in (worker, frontend):
        assert "Traceback" not in proc.output(), proc.output()[-3000:]
    await sock.close()
    await fresh.close()
