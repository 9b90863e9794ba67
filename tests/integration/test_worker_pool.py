"""``rpcworker --pool processes``: sync methods in forked children of a real worker.

Real daphne, real rpcworker processes and Redis; the methods are tests/project/pool.py's. The
tests assert on what happens and in which order; how fast pings are is the benchmark's business
(docs/guides/worker-pools.md has the figures).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import pytest

from channels_rpc import JsonRpcErrorCode
from tests.integration.client import RpcSocket
from tests.integration.harness import Cluster, Proc
from tests.integration.support import ClusterFactory, Connect, wait_until
from tests.procfs import gone, parent_of

pytestmark = pytest.mark.anyio

METHODS = json.dumps({"METHOD_MODULES": ["tests.project.pool"]})
#: A call that spins for a minute without looking at ctx.cancelled: only a kill ends it early.
DEAF_SPIN = {"seconds": 60, "deaf": True}


def pool_cluster(cluster_factory: ClusterFactory, processes: int, *args: str) -> Cluster:
    """A front-end and one worker running sync methods in ``processes`` children."""
    cluster = cluster_factory(frontends=0, workers=0)
    cluster.env_extra["CHANNELS_RPC_OVERRIDES"] = METHODS
    cluster.start_frontend()
    cluster.start_worker(args=["--pool", "processes", "--processes", str(processes), *args])
    return cluster


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


@dataclass(frozen=True)
class Spinning:
    """A pool worker whose one child runs ``pool_spin`` for the call ``rpc_id`` on ``sock``."""

    worker: Proc
    sock: RpcSocket
    rpc_id: int
    child: int


async def spinning(
    cluster_factory: ClusterFactory, connect: Connect, params: Any, *worker_args: str
) -> Spinning:
    """A front-end and a worker with one child (``worker_args`` added), busy with a call of
    ``pool_spin`` (``params``) once this returns."""
    cluster = pool_cluster(cluster_factory, 1, *worker_args)
    sock = await connect(cluster.url())
    rpc_id = await sock.request("pool_spin", params)
    return Spinning(cluster.workers[0], sock, rpc_id, await started(sock, rpc_id))


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
    spin = await spinning(cluster_factory, connect, [60])
    answer = await cancel(spin.sock, spin.rpc_id)
    assert answer["error"]["code"] == JsonRpcErrorCode.REQUEST_CANCELLED
    # The method returned on its own (ctx.cancelled), so its child serves the next call.
    assert (await spin.sock.call("pool_pid"))["result"] == spin.child


async def test_a_cancelled_method_that_does_not_look_loses_its_child(
    cluster_factory: ClusterFactory, connect: Connect
) -> None:
    spin = await spinning(cluster_factory, connect, DEAF_SPIN)
    answer = await cancel(spin.sock, spin.rpc_id)
    assert answer["error"]["code"] == JsonRpcErrorCode.REQUEST_CANCELLED
    await until_gone(spin.child)  # killed once its grace ran out
    assert (await spin.sock.call("pool_pid"))["result"] != spin.child


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
    spin = await spinning(cluster_factory, connect, DEAF_SPIN, "--grace", "0.2")
    zygote = parent_of(spin.child)
    spin.worker.send_signal(signal.SIGTERM)
    answer = (await spin.sock.wait_for([spin.rpc_id]))[spin.rpc_id].response
    assert answer["error"]["code"] == JsonRpcErrorCode.SERVICE_UNAVAILABLE
    assert await asyncio.to_thread(spin.worker.popen.wait, 10) == 0
    await until_gone(spin.child)
    await until_gone(zygote)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_a_worker_killed_outright_takes_its_children_along(
    cluster_factory: ClusterFactory, connect: Connect
) -> None:
    spin = await spinning(cluster_factory, connect, DEAF_SPIN)
    zygote = parent_of(spin.child)
    spin.worker.send_signal(signal.SIGKILL)
    await asyncio.to_thread(spin.worker.popen.wait, 10)
    await until_gone(zygote)
    await until_gone(spin.child)  # busy as it was: no orphan burns on


async def test_calls_in_children_finish_when_every_process_gets_sigterm(
    cluster_factory: ClusterFactory, connect: Connect
) -> None:
    # What systemd's stop does (KillMode=control-group): SIGTERM to the worker, its zygote and
    # its children at once. The worker drains; the call it waits for must finish.
    spin = await spinning(cluster_factory, connect, [1.0], "--grace", "30")
    for pid in (spin.worker.pid, parent_of(spin.child), spin.child):
        os.kill(pid, signal.SIGTERM)
    answer = (await spin.sock.wait_for([spin.rpc_id]))[spin.rpc_id].response
    assert answer["result"] == {"pid": spin.child, "cancelled": False}
    assert await asyncio.to_thread(spin.worker.popen.wait, 10) == 0
    await until_gone(spin.child)
