"""Push from any process, cancellation and progress on the real stack (daphne, workers, Redis)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

import pytest
from redis.asyncio import Redis as AsyncRedis

from channels_rpc import JsonRpcErrorCode
from tests.integration.client import RpcSocket
from tests.integration.harness import REPO
from tests.integration.support import ClusterFactory, counter, wait_until
from tests.openrpc.validation import errors as openrpc_errors

pytestmark = pytest.mark.anyio


async def test_a_push_from_another_process_reaches_clients_on_two_frontends(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(frontends=2, workers=1)
    clients = [await RpcSocket.connect(cluster.url(frontend=i)) for i in (0, 1)]
    for client in clients:
        assert (await client.call("join", ["news"]))["result"] == "news"
    # Not a worker, not a front-end: a management command in a process of its own.
    command = ["-m", "workers.manage", "rpcnotify", "news", "headline", '{"n": 1}']
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command, cwd=REPO, env=cluster.env()
    )
    assert await asyncio.wait_for(process.wait(), 60) == 0
    for client in clients:
        frame = await client.notification("headline")
        assert frame == {"jsonrpc": "2.0", "method": "headline", "params": {"n": 1}}
        await client.close()


async def test_cancelling_a_running_call_answers_at_once_and_stops_it_in_the_worker(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis
) -> None:
    cluster = cluster_factory(frontends=1, workers=1)
    started = counter(redis_client, cluster, "cancellable-started")
    finished = counter(redis_client, cluster, "cancellable-finally")
    sock = await RpcSocket.connect(cluster.url())
    rpc_id = await sock.request("cancellable", [10])

    async def running() -> bool:
        return await started() == 1

    await wait_until(running)
    sent = time.monotonic()
    await sock.send({"jsonrpc": "2.0", "method": "rpc.cancel", "params": {"id": rpc_id}})
    answer = (await sock.wait_for([rpc_id], timeout=5))[rpc_id]
    latency = answer.at - sent

    async def finally_ran() -> bool:
        return await finished() == 1

    await wait_until(finally_ran, timeout=5)
    print(f"\nrpc.cancel of a running 10 s call: -32800 after {latency * 1000:.1f} ms")
    assert answer.response["error"]["code"] == JsonRpcErrorCode.REQUEST_CANCELLED
    # At once: not when the call would have ended (10 s; its timeout is 30 s); typically a few
    # ms. 2 s leaves a busy 2-core machine room, and no other way to answer it.
    assert latency < 2.0
    assert int(await redis_client.get(cluster.counter_key("cancellable-completed")) or 0) == 0
    assert (await sock.call("pid"))["result"] == cluster.workers[0].pid  # nothing else came
    assert len(sock.frames) == 2
    await sock.close()


async def test_a_call_cancelled_while_queued_never_runs(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis
) -> None:
    cluster = cluster_factory(frontends=1, workers=1, concurrency=1)
    worker = cluster.workers[0]
    sock = await RpcSocket.connect(cluster.url())
    busy = await sock.request("hold", [1.0])

    async def slot_taken() -> bool:
        return int(await redis_client.get(cluster.counter_key(f"started:{worker.pid}")) or 0) == 1

    await wait_until(slot_taken)
    token = uuid.uuid4().hex
    queued = await sock.request("record", [token])  # waits in Redis: the only slot is busy
    await sock.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": queued}})
    cancelled = (await sock.wait_for([queued]))[queued].response
    assert cancelled["error"]["code"] == JsonRpcErrorCode.REQUEST_CANCELLED
    assert (await sock.wait_for([busy]))[busy].response["result"] == worker.pid
    control = uuid.uuid4().hex  # the slot is free again: this one runs
    assert (await sock.call("record", [control]))["result"] == worker.pid
    executions = await redis_client.hgetall(cluster.counter_key("executions"))
    print(f"\nqueued then cancelled: executions {sorted(executions.values())} (control only)")
    assert executions == {control.encode(): b"1"}
    await sock.close()


async def test_closing_a_socket_cancels_its_running_calls_in_the_workers(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis
) -> None:
    cluster = cluster_factory(frontends=1, workers=2)
    started = counter(redis_client, cluster, "cancellable-started")
    finished = counter(redis_client, cluster, "cancellable-finally")
    sock = await RpcSocket.connect(cluster.url())
    for _ in range(20):
        await sock.request("cancellable", [30])

    async def all_running() -> bool:
        return await started() == 20

    await wait_until(all_running)
    closed = time.monotonic()
    await sock.close()

    async def all_cancelled() -> bool:
        return await finished() == 20

    await wait_until(all_cancelled, timeout=5)
    print(f"\nclosing a socket: 20 running calls cancelled in {time.monotonic() - closed:.2f} s")
    assert int(await redis_client.get(cluster.counter_key("cancellable-completed")) or 0) == 0


async def test_progress_notifications_arrive_in_order_before_the_result(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(frontends=1, workers=1)
    sock = await RpcSocket.connect(cluster.url())
    rpc_id = await sock.request("stream", [20])
    await sock.wait_for([rpc_id])
    progress = [f["params"]["progress"] for f in sock.frames if f.get("method") == "rpc.progress"]
    assert progress == list(range(1, 21))
    assert sock.frames[-1] == {"jsonrpc": "2.0", "id": rpc_id, "result": 20}
    assert sock.frames[:20] == [
        {
            "jsonrpc": "2.0",
            "method": "rpc.progress",
            "params": {"id": rpc_id, "progress": n, "total": 20, "message": f"step {n}"},
        }
        for n in range(1, 21)
    ]
    await sock.close()


async def test_rpc_discover_is_a_valid_openrpc_document(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(frontends=1, workers=1)
    sock = await RpcSocket.connect(cluster.url())
    document = (await sock.call("rpc.discover"))["result"]
    assert openrpc_errors(document) == []
    names = {method["name"] for method in document["methods"]}
    assert {"sleep", "cancellable", "stream"} <= names
    assert "secret" not in names  # this anonymous caller may not call it
    await sock.close()


async def test_a_denied_call_is_answered_exactly_like_an_unknown_method(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(frontends=1, workers=1)
    probe = await RpcSocket.connect(cluster.url("/ws/test/"))  # has `secret`, with a permission
    spec = await RpcSocket.connect(cluster.url("/ws/spec/"))  # has no `secret` at all
    for sock, rpc_id in ((probe, 41), (spec, 42)):
        await sock.request("secret", rpc_id=rpc_id)
        await sock.wait_for([rpc_id])
    denied, unknown = probe.texts[0], spec.texts[0].replace('"id":42', '"id":41')
    print(f"\ndenied:  {denied}\nunknown: {unknown}")
    assert denied == unknown
    assert json.loads(denied)["error"]["code"] == JsonRpcErrorCode.METHOD_NOT_FOUND
    await probe.close()
    await spec.close()
