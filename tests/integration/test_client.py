"""channels_rpc.client.RpcClient against the real stack (daphne + rpcworker + Redis)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis

from channels_rpc import JsonRpcError, JsonRpcErrorCode
from channels_rpc.client import ConnectionLost, RpcClient
from tests.integration.harness import Cluster
from tests.integration.support import ClusterFactory, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
def cluster(cluster_factory: ClusterFactory) -> Cluster:
    return cluster_factory(frontends=1, workers=1)


@pytest.fixture
async def rpc(cluster: Cluster) -> AsyncIterator[RpcClient]:
    async with RpcClient(cluster.url("/ws/rpc/")) as client:
        yield client


async def test_calls_errors_notifications_and_batches(rpc: RpcClient) -> None:
    assert await rpc.call("add", [1, 2]) == 3
    assert await rpc.call("subtract", {"minuend": 5, "subtrahend": 2}) == 3
    with pytest.raises(JsonRpcError) as error:
        await rpc.call("divide", [1, 0])
    assert error.value.code == JsonRpcErrorCode.INVALID_PARAMS
    assert error.value.data == {"field": "b", "error": "must not be 0"}
    logged: asyncio.Queue[Any] = asyncio.Queue()
    rpc.on("logged", logged.put_nowait)
    await rpc.notify("log", {"message": "hi"})
    assert await asyncio.wait_for(logged.get(), 10) == {"message": "hi"}
    results = await rpc.batch(("add", [2, 2]), ("nope", None), ("echo", ["x"]))
    assert results[0] == 4
    assert isinstance(results[1], JsonRpcError)
    assert results[1].code == JsonRpcErrorCode.METHOD_NOT_FOUND
    assert results[2] == "x"


async def test_pushes_arrive_through_the_iterator(cluster: Cluster) -> None:
    async with (
        RpcClient(cluster.url("/ws/rpc/")) as listener,
        RpcClient(cluster.url("/ws/rpc/")) as publisher,
    ):
        assert await listener.call("subscribe", ["news"]) == "news"
        stream = listener.notifications()
        assert await publisher.call("publish", ["news", {"n": 1}]) is True
        notification = await asyncio.wait_for(anext(stream), 10)
        assert notification["method"] == "topic.message"
        assert notification["params"]["message"] == {"n": 1}
        await stream.aclose()


async def test_cancelling_the_awaiting_task_cancels_the_call_on_the_server(
    cluster: Cluster, redis_server: Any
) -> None:
    redis = AsyncRedis.from_url(redis_server.url)
    key = cluster.counter_key("cancellable-finally")
    try:
        async with RpcClient(cluster.url("/ws/test/")) as client:
            task = asyncio.create_task(client.call("cancellable", [30]))
            started = cluster.counter_key("cancellable-started")
            deadline = time.monotonic() + 10
            while int(await redis.get(started) or 0) < 1:
                assert time.monotonic() < deadline, "the call never started"
                await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            while int(await redis.get(key) or 0) < 1:  # its finally block ran in the worker
                assert time.monotonic() < deadline + 5, "the call was not cancelled"
                await asyncio.sleep(0.02)
            assert await client.call("pid") == cluster.workers[0].pid
            with pytest.raises(asyncio.TimeoutError):  # a timeout cancels it the same way
                await client.call("cancellable", [30], timeout=0.3)
    finally:
        await redis.aclose()


async def test_reconnects_after_the_server_closes_the_socket(
    cluster_factory: ClusterFactory,
) -> None:
    # A rate limit of 5 requests a second closes a burst of 20 (4008); the client comes back.
    cluster = cluster_factory(frontends=0, workers=1)
    cluster.start_frontend(CHANNELS_RPC_OVERRIDES='{"RATE_LIMIT": 5}')
    async with RpcClient(cluster.url("/ws/test/"), backoff=(0.05, 0.5)) as client:
        burst = [asyncio.ensure_future(client.call("pid")) for _ in range(20)]
        outcomes = await asyncio.gather(*burst, return_exceptions=True)
        assert any(isinstance(o, ConnectionLost) for o in outcomes)

        async def back() -> bool:  # a call made while the socket is going down is lost too
            try:
                return bool(await client.call("pid", timeout=10) == cluster.workers[0].pid)
            except ConnectionLost:
                return False

        await wait_until(back, timeout=15)


async def test_a_call_times_out_on_time_while_the_server_is_gone(
    cluster_factory: ClusterFactory,
) -> None:
    # On a timeout the client sends rpc.cancel, which used to wait for a connection: with the
    # server down for good, call(timeout=1) never returned.
    cluster = cluster_factory(frontends=1, workers=0)
    async with RpcClient(cluster.url("/ws/test/"), backoff=(0.05, 0.2)) as client:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):  # queued, no worker: it times out
            await client.call("pid", timeout=0.5)
        assert time.monotonic() - started < 2
        cluster.frontends[0].stop()
        started = time.monotonic()
        with pytest.raises((asyncio.TimeoutError, ConnectionLost)):
            await asyncio.wait_for(client.call("pid", timeout=0.5), 10)
        assert time.monotonic() - started < 2
