"""uvicorn instead of daphne as the front-end: the same application, rpcworker and Redis.

The reference project (``workers.asgi``) answers calls, errors and batches, pushes, cancels,
and drains on SIGTERM as it does on daphne (tests/integration/test_sessions.py): every socket
closed with 4012, sessions resumed on another front-end with their calls answered once, calls
of a connection without a session cancelled. Then the JSON-RPC vectors (tests/vectors) over
uvicorn, on the test project.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis as AsyncRedis

from channels_rpc import JsonRpcErrorCode
from tests.integration.client import RpcSocket
from tests.integration.harness import Cluster, Redis
from tests.integration.support import Connect, logs_on_failure, run_live_vector, vector_cluster
from tests.vectors import loader
from workers.cluster import LocalCluster

pytestmark = pytest.mark.anyio

#: Worker slots: the cancellation test fills them all; the SIGTERM test runs 7 calls at once.
SLOTS = 8


@pytest.fixture(scope="module")
def uvicorn_reference(
    redis_server: Redis, database: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """The reference project: a uvicorn front-end and an rpcworker, shared by this module."""
    log_dir = tmp_path_factory.mktemp("uvicorn")
    cluster = LocalCluster(redis_server, log_dir, env_extra={"DJANGO_DB_PATH": str(database)})
    try:
        cluster.start_frontend(server="uvicorn")
        cluster.start_worker(concurrency=SLOTS)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def reference(
    request: pytest.FixtureRequest, uvicorn_reference: LocalCluster
) -> Iterator[LocalCluster]:
    yield uvicorn_reference
    logs_on_failure(request, "cluster logs", uvicorn_reference.logs)


async def test_calls_errors_and_a_batch_are_answered_by_the_worker(
    reference: LocalCluster, connect: Connect
) -> None:
    sock = await connect(reference.url())
    assert (await sock.call("add", [2, 3]))["result"] == 5
    ran_by = (await sock.call("whoami"))["result"]["worker_pid"]
    assert ran_by == reference.workers[0].pid != reference.frontends[0].pid
    error = (await sock.call("divide", [1, 0]))["error"]
    assert error["code"] == JsonRpcErrorCode.INVALID_PARAMS
    assert error["data"] == {"field": "b", "error": "must not be 0"}
    assert (await sock.call("fail"))["error"]["code"] == -32000
    assert (await sock.call("nope"))["error"]["code"] == JsonRpcErrorCode.METHOD_NOT_FOUND
    await sock.send(
        [
            {"jsonrpc": "2.0", "method": "add", "params": [1, 1], "id": "a"},
            {"jsonrpc": "2.0", "method": "echo", "params": ["x"], "id": "b"},
            {"jsonrpc": "2.0", "method": "log", "params": ["no answer"]},
        ]
    )
    answers = await sock.wait_for(["a", "b"])
    assert answers["a"].response["result"] == 2
    assert answers["b"].response["result"] == "x"


async def test_pushes_reach_the_caller_and_a_subscriber(
    reference: LocalCluster, connect: Connect
) -> None:
    listener, caller = await connect(reference.url()), await connect(reference.url())
    assert (await listener.call("subscribe", ["uvicorn"]))["result"] == "uvicorn"
    assert (await caller.call("publish", ["uvicorn", "hello"]))["result"] is True
    pushed = await listener.notification("topic.message")
    assert pushed["params"]["message"] == "hello"
    assert pushed["params"]["worker_pid"] == reference.workers[0].pid
    await caller.send({"jsonrpc": "2.0", "method": "log", "params": ["hi"]})
    assert (await caller.notification("logged"))["params"] == {"message": "hi"}


async def test_cancelled_calls_answer_at_once_and_free_the_workers_slots(
    reference: LocalCluster, connect: Connect
) -> None:
    sock = await connect(reference.url())
    ids = [await sock.request("count_to", [3000]) for _ in range(SLOTS - 1)]  # 30 s each
    ids.append(await sock.request("build_report", {"steps": 100, "delay": 0.3}))
    await sock.notification("rpc.progress")  # the last one runs: so do the others
    sent = time.monotonic()
    for rpc_id in ids:
        await sock.send({"jsonrpc": "2.0", "method": "rpc.cancel", "params": {"id": rpc_id}})
    answers = await sock.wait_for(ids, timeout=5)
    assert {a.response["error"]["code"] for a in answers.values()} == {
        JsonRpcErrorCode.REQUEST_CANCELLED
    }
    # Every slot was taken by a 30 s loop: an answer now means they stopped in the worker.
    assert (await sock.call("add", [1, 2], timeout=10))["result"] == 3
    assert time.monotonic() - sent < 10


async def test_the_health_view_answers_over_http(reference: LocalCluster) -> None:
    url = f"http://127.0.0.1:{reference.ports[0]}/healthz/"
    with await asyncio.to_thread(urllib.request.urlopen, url, timeout=10) as response:
        assert response.status == 200
        assert json.loads(response.read()) == {"status": "ok"}


async def closed(sock: RpcSocket) -> int | None:
    """The close code of ``sock`` once its connection has closed."""
    if sock._reader is not None:
        await asyncio.wait_for(asyncio.gather(sock._reader, return_exceptions=True), 15)
    return sock.ws.close_code


async def test_sigterm_closes_with_4012_and_sessions_resume_elsewhere_with_their_answers(
    reference: LocalCluster, connect: Connect
) -> None:
    stopping = reference.start_frontend(server="uvicorn")
    url = reference.url(frontend=len(reference.frontends) - 1)
    opened = [await connect(url) for _ in range(3)]
    sessions = [(sock, (await sock.call("rpc.session"))["result"]["session"]) for sock in opened]
    plain = await connect(url)
    calls = [[await sock.request("sleep", [1]) for _ in range(2)] for sock in opened]
    unanswered = await plain.request("sleep", [1])
    for sock in [*opened, plain]:
        await sock.call("nope")  # answered by the front-end: the calls before it were queued
    stopping.send_signal(signal.SIGTERM)

    assert [await closed(sock) for sock in [*opened, plain]] == [4012] * 4
    for (sock, session_id), ids in zip(sessions, calls, strict=True):
        seen = max(frame.get("seq", 0) for frame in sock.frames)
        again = await connect(reference.url())
        resumed = await again.call("rpc.resume", {"session": session_id, "seq": seen})
        assert set(resumed["result"]["running"]) <= set(ids)  # the others: answered before
        before = {f.get("id") for f in sock.frames}
        await again.wait_for([i for i in ids if i not in before])
        # Each answered once, on the old socket before the signal or on the new one.
        frames = [f for s in (sock, again) for f in s.frames if f.get("id") in ids]
        assert Counter(f["id"] for f in frames) == dict.fromkeys(ids, 1)
        assert {f["result"] for f in frames} == {1}
    assert unanswered not in {f.get("id") for f in plain.frames}
    # uvicorn raises the SIGTERM it caught again once it has stopped: it ends by the signal.
    assert stopping.wait_stopped(15) == -signal.SIGTERM
    assert "SIGTERM: closed 4 connections with 4012" in stopping.output()


@pytest.fixture(scope="module")
def uvicorn_spec(
    redis_server: Redis, database: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """The test project (its /ws/spec/ consumer runs the vectors' methods) behind uvicorn."""
    log_dir = tmp_path_factory.mktemp("uvicorn-vectors")
    with vector_cluster(redis_server, database, log_dir, server="uvicorn") as cluster:
        yield cluster


@pytest.mark.parametrize("vector", loader.load(), ids=lambda v: v.id)
async def test_vector(
    vector: loader.Vector, uvicorn_spec: Cluster, redis_client: AsyncRedis
) -> None:
    await run_live_vector(vector, uvicorn_spec, redis_client)
