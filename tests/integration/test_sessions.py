"""Sessions on the real stack (daphne, rpcworker, Redis): what a socket's loss must not lose.

docs/sessions.md is the contract: ``rpc.session`` opens one, ``rpc.resume`` takes it up on a new
socket (on any front-end) with the last ``seq`` the client saw.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis

from tests.integration.client import RpcSocket
from tests.integration.support import ClusterFactory, counter, wait_until

pytestmark = pytest.mark.anyio


def last_seq(sock: RpcSocket) -> int:
    """The highest ``seq`` among the frames ``sock`` received (what a client acknowledges)."""
    seqs = [item.get("seq", 0) for frame in sock.frames for item in _items(frame)]
    return max(seqs, default=0)


def _items(frame: Any) -> list[dict[str, Any]]:
    return frame if isinstance(frame, list) else [frame]


def answers_per_id(sock: RpcSocket) -> Counter[Any]:
    return Counter(
        item["id"] for frame in sock.frames for item in _items(frame) if "method" not in item
    )


async def cut(sock: RpcSocket) -> None:
    """Drop the TCP connection without a WebSocket close (as a network failure does)."""
    sock.ws.transport.abort()
    if sock._reader is not None:
        await asyncio.gather(sock._reader, return_exceptions=True)


async def test_a_cut_connection_resumes_with_every_answer_and_push_once_in_order(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis
) -> None:
    cluster = cluster_factory(frontends=1, workers=1)
    started = counter(redis_client, cluster, "cancellable-started")
    completed = counter(redis_client, cluster, "cancellable-completed")
    finished = counter(redis_client, cluster, "cancellable-finally")
    group = f"news-{uuid.uuid4().hex[:8]}"

    sock = await RpcSocket.connect(cluster.url())
    session = (await sock.call("rpc.session"))["result"]
    assert session["window"] == 30.0
    assert (await sock.call("join", [group]))["result"] == group
    # 10 calls end during the gap (their answers are kept), 10 after the resume.
    short = [await sock.request("cancellable", [1.5]) for _ in range(10)]
    long = [await sock.request("cancellable", [6]) for _ in range(10)]

    async def all_started() -> bool:
        return await started() == 20

    await wait_until(all_started, timeout=20)
    seen = last_seq(sock)
    await cut(sock)
    cut_at = time.monotonic()

    publisher = await RpcSocket.connect(cluster.url())
    for n in range(5):
        assert (await publisher.call("fault_push", [group, "news", n]))["result"] == n

    async def short_ones_done_and_3s_gone() -> bool:
        return await completed() >= 10 and time.monotonic() - cut_at >= 3

    await wait_until(short_ones_done_and_3s_gone, timeout=20)
    resumed = await RpcSocket.connect(cluster.url())
    answer = await resumed.call("rpc.resume", {"session": session["session"], "seq": seen})
    assert answer["result"]["session"] == session["session"]
    assert sorted(answer["result"]["running"]) == sorted(long)

    answers = await resumed.wait_for(short + long, timeout=20)
    assert all(a.response["result"] == "completed" for a in answers.values())
    news = [n for n in resumed.notifications if n["method"] == "news"]
    assert [n["params"]["n"] for n in news] == [0, 1, 2, 3, 4]
    assert all(count == 1 for count in answers_per_id(resumed).values())
    seqs = [item["seq"] for frame in resumed.frames[1:] for item in _items(frame)]
    assert seqs == sorted(set(seqs)) and seqs[0] > seen  # numbered on, each once

    async def all_finished() -> bool:
        return await finished() == 20

    await wait_until(all_finished, timeout=20)
    assert await completed() == 20  # none cancelled
    await resumed.close()
    await publisher.close()
