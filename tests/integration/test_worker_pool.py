"""``rpcworker --pool processes``: sync methods in forked children of a real worker.

Real daphne, real rpcworker processes and Redis; the methods are tests/project/pool.py's. The
tests assert on what happens and in which order; how fast pings are is the benchmark's business
(docs/workers.md has the figures).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from channels_rpc import JsonRpcErrorCode
from tests.integration.client import RpcSocket
from tests.integration.harness import Cluster
from tests.integration.support import ClusterFactory, Connect, wait_until

pytestmark = pytest.mark.anyio

METHODS = json.dumps({"METHOD_MODULES": ["tests.project.pool"]})


def pool_cluster(cluster_factory: ClusterFactory, processes: int, *args: str) -> Cluster:
    """A front-end and one worker running sync methods in ``processes`` children."""
    cluster = cluster_factory(frontends=0, workers=0)
    cluster.env_extra["CHANNELS_RPC_OVERRIDES"] = METHODS
    cluster.start_frontend()
    cluster.start_worker(args=["--pool", "processes", "--processes", str(processes), *args])
    return cluster


def parent_of(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[1])


def gone(pid: int) -> bool:
    """Ended: no such process, or a zombie (dead, not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def until_gone(pid: int) -> None:
    async def check() -> bool:
        return gone(pid)

    await wait_until(check)


async def started(sock: RpcSocket, rpc_id: int) -> int:
    """Wait for ``pool_spin``'s first progress report for ``rpc_id``: the pid it runs in."""

    async def reported() -> bool:
        return any(_progress_of(n, rpc_id) for n in sock.notifications)

    await wait_until(reported)
    note = next(n for n in sock.notifications if _progress_of(n, rpc_id))
    return int(note["params"]["message"])


def _progress_of(note: dict[str, Any], rpc_id: int) -> bool:
    return bool(note["method"] == "rpc.progress" and note["params"]["id"] == rpc_id)


async def cancel(sock: RpcSocket, rpc_id: int) -> dict[str, Any]:
    await sock.send({"jsonrpc": "2.0", "method": "rpc.cancel", "params": {"id": rpc_id}})
    return (await sock.wait_for([rpc_id]))[rpc_id].response


async def test_sync_methods_run_in_children_forked_from_the_worker(
    cluster_factory: ClusterFactory, connect: Connect
) -> None:
    cluster = pool_cluster(cluster_factory, 2)
    worker = cluster.workers[0]
    assert " pool=processes:2 " in worker.output()  # the ready line says so
    sock = await connect(cluster.url())
    answers = await asyncio.gather(*(sock.call("pool_pid") for _ in range(4)))
    pids = {answer["result"] for answer in answers}
    assert worker.pid not in pids
    assert len(pids) <= 2
    zygotes = {parent_of(pid) for pid in pids}  # forked by the zygote, itself the worker's child
    assert [parent_of(zygote) for zygote in zygotes] == [worker.pid]
    assert (await sock.call("pid"))["result"] == worker.pid  # async methods: on its loop


async def test_a_method_in_a_child_joins_groups_and_pushes(
    cluster_factory: ClusterFactory, connect: Connect
) -> None:
    cluster = pool_cluster(cluster_factory, 1)
    sock = await connect(cluster.url())
    child = (await sock.call("pool_publish", ["pool.topic"]))["result"]
    note = await sock.notification("pool.note")
    assert note["params"] == {"pid": child}
    assert child != cluster.workers[0].pid


async def test_a_timed_out_cpu_bound_method_loses_its_child_and_the_pool_serves_on(
    cluster_factory: ClusterFactory, connect: Connect
) -> None:
    cluster = pool_cluster(cluster_factory, 1)
    sock = await connect(cluster.url())
    child = (await sock.call("pool_pid"))["result"]
    timed_out = await sock.call("pool_burn", [60])
    assert timed_out["error"] == {
        "code": JsonRpcErrorCode.INTERNAL_ERROR,
        "message": "Internal Error: Method execution timed out after 1.0 seconds",
        "data": {"timeout": 1.0},
    }
    await until_gone(child)  # killed: a thread would have burnt on for a minute
    replacement = (await sock.call("pool_pid"))["result"]
    assert replacement != child
    assert (await sock.call("pool_burn", [0.01]))["result"] == 0.01


async def test_a_cancelled_method_sees_ctx_cancelled_and_keeps_its_child(
    cluster_factory: ClusterFactory, connect: Connect
) -> None:
    cluster = pool_cluster(cluster_factory, 1)
    sock = await connect(cluster.url())
    rpc_id = await sock.request("pool_spin", [60])
    child = await started(sock, rpc_id)
    answer = await cancel(sock, rpc_id)
    assert answer["error"]["code"] == JsonRpcErrorCode.REQUEST_CANCELLED
    # The method returned on its own (ctx.cancelled), so its child serves the next call.
    assert (await sock.call("pool_pid"))["result"] == child


async def test_a_cancelled_method_that_does_not_look_loses_its_child(
    cluster_factory: ClusterFactory, connect: Connect
) -> None:
    cluster = pool_cluster(cluster_factory, 1)
    sock = await connect(cluster.url())
    rpc_id = await sock.request("pool_spin", {"seconds": 60, "deaf": True})
    child = await started(sock, rpc_id)
    answer = await cancel(sock, rpc_id)
    assert answer["error"]["code"] == JsonRpcErrorCode.REQUEST_CANCELLED
    await until_gone(child)  # killed once its grace ran out
    assert (await sock.call("pool_pid"))["result"] != child


async def test_pings_are_answered_while_cpu_bound_calls_run(
    cluster_factory: ClusterFactory, connect: Connect
) -> None:
    cluster = pool_cluster(cluster_factory, 2)
    burners = await connect(cluster.url())
    spins = [await burners.request("pool_spin", [60]) for _ in range(2)]
    for rpc_id in spins:
        await started(burners, rpc_id)
    pinger = await connect(cluster.url())
    latencies = []
    for _ in range(20):
        sent = time.monotonic()
        rpc_id = await pinger.request("pid")
        answer = (await pinger.wait_for([rpc_id]))[rpc_id]
        assert answer.response["result"] == cluster.workers[0].pid
        latencies.append(answer.at - sent)
    assert not [frame for frame in burners.frames if "id" in frame]  # both still burning
    for rpc_id in spins:
        cancelled = await cancel(burners, rpc_id)
        assert cancelled["error"]["code"] == JsonRpcErrorCode.REQUEST_CANCELLED
    latencies.sort()
    print(
        f"\n20 pings beside 2 CPU-bound calls: p50 {latencies[10] * 1000:.1f} ms, "
        f"max {latencies[-1] * 1000:.1f} ms"
    )


async def test_a_stopping_worker_ends_its_busy_children_and_exits_0(
    cluster_factory: ClusterFactory, connect: Connect
) -> None:
    cluster = pool_cluster(cluster_factory, 1, "--grace", "0.2")
    worker = cluster.workers[0]
    sock = await connect(cluster.url())
    rpc_id = await sock.request("pool_spin", {"seconds": 60, "deaf": True})
    child = await started(sock, rpc_id)
    zygote = parent_of(child)
    worker.send_signal(signal.SIGTERM)
    answer = (await sock.wait_for([rpc_id]))[rpc_id].response
    assert answer["error"]["code"] == JsonRpcErrorCode.SERVICE_UNAVAILABLE
    assert await asyncio.to_thread(worker.popen.wait, 10) == 0
    await until_gone(child)
    await until_gone(zygote)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_a_worker_killed_outright_takes_its_children_along(
    cluster_factory: ClusterFactory, connect: Connect
) -> None:
    cluster = pool_cluster(cluster_factory, 1)
    worker = cluster.workers[0]
    sock = await connect(cluster.url())
    rpc_id = await sock.request("pool_spin", {"seconds": 60, "deaf": True})
    child = await started(sock, rpc_id)
    zygote = parent_of(child)
    worker.send_signal(signal.SIGKILL)
    await asyncio.to_thread(worker.popen.wait, 10)
    await until_gone(zygote)
    await until_gone(child)  # busy as it was: no orphan burns on


async def test_calls_in_children_finish_when_every_process_gets_sigterm(
    cluster_factory: ClusterFactory, connect: Connect
) -> None:
    # What systemd's stop does (KillMode=control-group): SIGTERM to the worker, its zygote and
    # its children at once. The worker drains; the call it waits for must finish.
    cluster = pool_cluster(cluster_factory, 1, "--grace", "30")
    worker = cluster.workers[0]
    sock = await connect(cluster.url())
    rpc_id = await sock.request("pool_spin", [1.0])
    child = await started(sock, rpc_id)
    for pid in (worker.pid, parent_of(child), child):
        os.kill(pid, signal.SIGTERM)
    answer = (await sock.wait_for([rpc_id]))[rpc_id].response
    assert answer["result"] == {"pid": child, "cancelled": False}
    assert await asyncio.to_thread(worker.popen.wait, 10) == 0
    await until_gone(child)
