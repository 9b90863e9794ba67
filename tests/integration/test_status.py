"""``manage.py rpcstatus`` against real processes: heartbeats, queues, and the warnings a human
needs (a queue nobody serves, a worker whose methods differ from the front-ends')."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis

from tests.integration.harness import REPO, Cluster
from tests.integration.support import ClusterFactory, Connect, wait_until

pytestmark = pytest.mark.anyio


def rpcstatus(cluster: Cluster, *args: str) -> str:
    argv = [sys.executable, "-m", "workers.manage", "rpcstatus", *args]
    done = subprocess.run(
        argv, cwd=REPO, env=cluster.env(), capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


async def beating(redis: AsyncRedis, cluster: Cluster, workers: int, frontends: int) -> None:
    """Wait until every process of ``cluster`` wrote its heartbeat."""

    async def all_there() -> bool:
        keys = [k async for k in redis.scan_iter(match=f"{cluster.prefix}:rpc.status:*")]
        kinds = [key.decode().split(":")[2] for key in keys]
        return kinds.count("worker") == workers and kinds.count("frontend") == frontends

    await wait_until(all_there, timeout=20)


def status_of(cluster: Cluster) -> dict[str, Any]:
    return dict(json.loads(rpcstatus(cluster, "--json", "--sample", "0")))


async def test_a_healthy_cluster_then_a_worker_with_other_methods_than_the_frontends(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, connect: Connect
) -> None:
    cluster = cluster_factory(frontends=1, workers=2, concurrency=8)
    sock = await connect(cluster.url())
    await beating(redis_client, cluster, workers=2, frontends=1)
    status = status_of(cluster)
    assert status["warnings"] == []
    assert {w["pid"] for w in status["workers"]} == {p.pid for p in cluster.workers}
    assert all(w["concurrency"] == 8 and w["age"] < 15 for w in status["workers"])
    assert all("sleep@rpc.default" in w["methods"] for w in status["workers"])
    (frontend,) = status["frontends"]
    assert frontend["pid"] == cluster.frontends[0].pid
    assert frontend["connections"] == 1
    assert "rpc.default" in status["queues"]
    print("\n" + rpcstatus(cluster, "--sample", "0"))

    # A worker of another deploy: it has a method the front-ends do not.
    overrides = json.dumps({"METHOD_MODULES": ["tests.project.stale"]})
    stale = cluster.start_worker(CHANNELS_RPC_OVERRIDES=overrides)
    await beating(redis_client, cluster, workers=3, frontends=1)
    assert status_of(cluster)["warnings"] == [
        f"worker {socket.gethostname()}:{stale.pid}: has stale_only@rpc.default that no "
        "front-end accepts (a stale deploy? restart it)"
    ]
    print("\n" + rpcstatus(cluster, "--sample", "0"))
    await sock.close()


async def test_queues_without_a_worker_and_a_queue_growing_faster_than_it_drains(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, connect: Connect
) -> None:
    # One worker, one slot, rpc.default only; calls of 0.2 s drain at 5 a second while a
    # sender adds 20 a second.
    cluster = cluster_factory(frontends=1, workers=1, queues=["rpc.default"], concurrency=1)
    sock = await connect(cluster.url())
    for _ in range(3):
        await sock.request("frontline_unserved")  # waits on rpc.unserved: nobody serves it
    await beating(redis_client, cluster, workers=1, frontends=1)
    sent = [await sock.request("sleep", [0.2]) for _ in range(20)]

    async def keep_sending() -> None:
        for _ in range(40):
            sent.append(await sock.request("sleep", [0.2]))
            await asyncio.sleep(0.05)

    sender = asyncio.create_task(keep_sending())
    try:
        status = await asyncio.to_thread(status_of_sampled, cluster)
    finally:
        await sender
    warnings = status["warnings"]
    assert any(
        w.startswith("queue rpc.unserved: no live worker serves it (3 requests waiting")
        for w in warnings
    ), warnings
    assert any(w.startswith("queue rpc.default: grew from") for w in warnings), warnings
    assert not any(w.startswith("queue rpc.default: no live worker") for w in warnings)
    print("\n" + render_of(status))
    await sock.wait_for(sent, timeout=60)


def status_of_sampled(cluster: Cluster) -> dict[str, Any]:
    return dict(json.loads(rpcstatus(cluster, "--json", "--sample", "1")))


def render_of(status: dict[str, Any]) -> str:
    return "Warnings\n" + "\n".join(f"- {w}" for w in status["warnings"])
