"""Sessions on the real stack (daphne, rpcworker, Redis): what a socket's loss must not lose.

docs/reference/sessions.md is the contract: ``rpc.session`` opens one, ``rpc.resume`` takes it
up on a new socket (on any front-end) with the last ``seq`` the client saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis as AsyncRedis

from tests.integration.client import RpcSocket
from tests.integration.harness import Cluster
from tests.integration.support import ClusterFactory, Connect, counter, wait_until

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
    await closed(sock)


async def closed(sock: RpcSocket) -> None:
    """Wait until ``sock``'s connection is closed (its reader has ended, however)."""
    if sock._reader is not None:
        await asyncio.gather(sock._reader, return_exceptions=True)


@dataclass
class GapRun:
    """What :func:`lose_and_resume` leaves for its test to look at further."""

    sock: RpcSocket  # the socket the session was resumed on
    publisher: RpcSocket  # pushed to the session's group during the gap
    group: str
    waited: float  # seconds the resume's answer took


async def lose_and_resume(
    cluster: Cluster,
    redis: AsyncRedis,
    connect: Connect,
    *,
    open_url: str,
    lose: Callable[[RpcSocket], Awaitable[None]],
    resume_url: str,
) -> GapRun:
    """The promise of a session, whichever way its socket is lost (``lose``).

    20 calls run when the socket goes (10 end during the gap: their answers are kept, 10
    after the resume); 5 pushes to the session's group are sent during the gap; the client
    resumes 3 s later, on ``resume_url``. Every answer and push arrives once, pushes in order,
    the frames numbered on from the last the client saw, and no call was cancelled.
    """
    started = counter(redis, cluster, "cancellable-started")
    completed = counter(redis, cluster, "cancellable-completed")
    finished = counter(redis, cluster, "cancellable-finally")
    group = f"news-{uuid.uuid4().hex[:8]}"
    sock = await connect(open_url)
    session = (await sock.call("rpc.session"))["result"]
    assert session["window"] == 30.0
    assert (await sock.call("join", [group]))["result"] == group
    short = [await sock.request("cancellable", [1.5]) for _ in range(10)]
    long = [await sock.request("cancellable", [6]) for _ in range(10)]

    async def all_started() -> bool:
        return await started() == 20

    await wait_until(all_started, timeout=20)
    seen = last_seq(sock)
    await lose(sock)
    lost_at = time.monotonic()
    publisher = await connect(resume_url)
    for n in range(5):
        assert (await publisher.call("fault_push", [group, "news", n]))["result"] == n

    async def short_ones_done_and_3s_gone() -> bool:
        return await completed() >= 10 and time.monotonic() - lost_at >= 3

    await wait_until(short_ones_done_and_3s_gone, timeout=20)
    resumed = await connect(resume_url)
    asked = time.monotonic()
    answer = await resumed.call("rpc.resume", {"session": session["session"], "seq": seen})
    waited = time.monotonic() - asked
    assert answer["result"]["session"] == session["session"]
    assert sorted(answer["result"]["running"]) == sorted(long)

    answers = await resumed.wait_for(short + long, timeout=20)
    assert all(a.response["result"] == "completed" for a in answers.values())
    assert all(count == 1 for count in answers_per_id(resumed).values())
    news = [n["params"]["n"] for n in resumed.notifications if n["method"] == "news"]
    assert news == [0, 1, 2, 3, 4]
    seqs = [item["seq"] for frame in resumed.frames for item in _items(frame) if "seq" in item]
    assert seqs == sorted(set(seqs))  # numbered on, each once
    assert seqs[0] > seen

    async def all_finished() -> bool:
        return await finished() == 20

    await wait_until(all_finished, timeout=20)
    assert await completed() == 20  # none cancelled
    return GapRun(resumed, publisher, group, waited)


async def test_a_cut_connection_resumes_with_every_answer_and_push_once_in_order(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, connect: Connect
) -> None:
    cluster = cluster_factory(frontends=1, workers=1)
    url = cluster.url()
    await lose_and_resume(cluster, redis_client, connect, open_url=url, lose=cut, resume_url=url)


class HalfOpenRelay:
    """A TCP relay to a front-end whose :meth:`cut` leaves a half-open connection behind.

    The client's side is dropped; the front-end's side stays open, and what the front-end
    writes to it is taken and never delivered (as after a NAT or a load balancer forgot the
    connection): the front-end hears of nothing, its session stays attached.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.path = parts.path
        self.swallowed = bytearray()  # what the front-end wrote after the cut
        self._server: asyncio.Server | None = None
        self._client_writers: list[asyncio.StreamWriter] = []
        self._upstream_writers: list[asyncio.StreamWriter] = []
        self._pumps: set[asyncio.Task[None]] = set()
        self._cut = False

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}{self.path}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._client_writers.append(writer)
        self._upstream_writers.append(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                if self._cut:
                    self.swallowed += data
                    continue
                with contextlib.suppress(ConnectionError):  # (the cut, while writing)
                    sink.write(data)
                    await sink.drain()

    def cut(self) -> None:
        self._cut = True
        for writer in self._client_writers:
            writer.transport.abort()

    async def close(self) -> None:
        for task in list(self._pumps):
            task.cancel()
        for writer in self._upstream_writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def half_open_relay(url: str) -> AsyncIterator[HalfOpenRelay]:
    relay = HalfOpenRelay(url)
    try:
        yield relay
    finally:
        await relay.close()


async def open_session(connect: Connect, url: str, **options: Any) -> tuple[RpcSocket, str]:
    sock = await connect(url, **options)
    return sock, (await sock.call("rpc.session"))["result"]["session"]


async def refused(connect: Connect, url: str, session_id: str, **options: Any) -> dict[str, Any]:
    """The error of a resume of ``session_id`` on a new socket (which then still serves)."""
    sock = await connect(url, **options)
    try:
        answer = await sock.call("rpc.resume", {"session": session_id, "seq": 0})
        assert (await sock.call("sleep", [0]))["result"] == 0  # the socket serves on
    finally:
        await sock.close()
    assert "result" not in answer, answer
    return dict(answer["error"])


async def session_keys(redis: AsyncRedis, session_id: str) -> dict[str, Any]:
    """Every key of a session, with its content: what a refused resume must not change."""
    found: dict[str, Any] = {}
    async for key in redis.scan_iter(match=f"*session:{session_id}*"):
        kind = await redis.type(key)
        if kind == b"hash":
            found[str(key)] = await redis.hgetall(key)
        elif kind == b"list":
            found[str(key)] = await redis.lrange(key, 0, -1)
    return found


async def test_a_half_open_connection_hands_its_calls_and_frames_to_the_resume_elsewhere(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, connect: Connect
) -> None:
    # The old front-end never hears that its socket is gone: the session is still attached
    # to it when the client resumes on the other front-end (the pushes of the gap are written
    # by the old front-end to the dead socket).
    cluster = cluster_factory(frontends=2, workers=1)
    async with half_open_relay(cluster.url(frontend=0)) as relay:

        async def half_open(sock: RpcSocket) -> None:
            relay.cut()
            await closed(sock)

        run = await lose_and_resume(
            cluster,
            redis_client,
            connect,
            open_url=await relay.start(),
            lose=half_open,
            resume_url=cluster.url(frontend=1),
        )
        # The old front-end closed the half-open socket with 4013 (a close frame: 0x88, the
        # payload's length, the code; daphne sends no reason).
        close_4013 = re.compile(rb"\x88[\x02-\x7d]\x0f\xad")
        await wait_until(lambda: _holds(relay.swallowed, close_4013), timeout=10)
    # Live traffic goes on, to the new socket.
    assert (await run.publisher.call("fault_push", [run.group, "news", 5]))["result"] == 5
    await wait_until(lambda: _news_count(run.sock, 6), timeout=10)
    print(f"resume answered {run.waited * 1000:.0f} ms after it was sent (old front-end alive)")


async def test_a_resume_taken_from_a_dead_frontend_is_answered_after_the_wait(
    cluster_factory: ClusterFactory, connect: Connect
) -> None:
    # The old front-end died (SIGKILL) with the session attached: nobody hands over. The resume
    # is answered after handover.WAIT, without the calls only that front-end knew.
    cluster = cluster_factory(frontends=2, workers=1)
    sock, session_id = await open_session(connect, cluster.url(frontend=0))
    lost = await sock.request("cancellable", [3], rpc_id="lost")
    seen = last_seq(sock)
    cluster.frontends[0].send_signal(9)
    assert cluster.frontends[0].wait_stopped(10) != 0
    await closed(sock)
    resumed = await connect(cluster.url(frontend=1))
    asked = time.monotonic()
    answer = await resumed.call("rpc.resume", {"session": session_id, "seq": seen}, timeout=10)
    waited = time.monotonic() - asked
    assert answer["result"]["running"] == []  # so the client knows `lost` was lost
    assert 1.5 <= waited < 6, waited
    assert (await resumed.call("sleep", [3.5]))["result"] == 3.5  # the socket serves, and
    assert lost not in answers_per_id(resumed)  # the lost call's answer was not delivered
    await resumed.close()


async def _holds(data: bytearray, pattern: re.Pattern[bytes]) -> bool:
    return pattern.search(data) is not None


async def _news_count(sock: RpcSocket, count: int) -> bool:
    return len([n for n in sock.notifications if n["method"] == "news"]) >= count


async def test_foreign_random_and_ended_ids_are_refused_alike_and_change_nothing(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, connect: Connect
) -> None:
    from tests.integration.test_promises import SESSION_SCRIPT, manage

    cluster = cluster_factory(frontends=0, workers=1)
    cluster.start_frontend(CHANNELS_RPC_OVERRIDES='{"SESSION_WINDOW": 1.0}')
    done = await asyncio.to_thread(manage, cluster, "shell", "-c", SESSION_SCRIPT)
    assert done.returncode == 0, done.stderr
    cookie = json.loads(done.stdout.splitlines()[-1])["session"]
    carol = {"additional_headers": [("Cookie", f"sessionid={cookie}")]}
    url = cluster.url()

    # Carol's detached session, holding a push: nobody else may take it.
    group = f"g-{uuid.uuid4().hex[:8]}"
    sock, session_id = await open_session(connect, url, **carol)
    await sock.call("join", [group])
    await cut(sock)
    publisher = await connect(url)
    await publisher.call("fault_push", [group, "news", 1])
    before = await session_keys(redis_client, session_id)
    assert before, "the detached session has keys in Redis"
    unknown = {
        "code": -32015,
        "message": "Session Not Found",
        "data": {"reason": "unknown or expired"},
    }
    assert await refused(connect, url, session_id) == unknown  # anonymous, not Carol
    assert await refused(connect, url, "s1." + "A" * 32, **carol) == unknown  # random
    assert await refused(connect, url, "not a session id") == unknown  # forged
    assert await session_keys(redis_client, session_id) == before  # nothing changed
    # Carol herself gets it back, with the push.
    mine = await connect(url, **carol)
    assert "result" in await mine.call("rpc.resume", {"session": session_id, "seq": 0})
    assert (await mine.notification("news"))["params"] == {"n": 1}
    await mine.close()  # close 1000: the session ends at once
    assert await refused(connect, url, session_id, **carol) == unknown
    await publisher.close()


async def test_a_resume_after_the_window_is_refused_and_the_calls_were_cancelled(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, connect: Connect
) -> None:
    cluster = cluster_factory(frontends=0, workers=1)
    cluster.start_frontend(CHANNELS_RPC_OVERRIDES='{"SESSION_WINDOW": 1.0}')
    started = counter(redis_client, cluster, "cancellable-started")
    finished = counter(redis_client, cluster, "cancellable-finally")
    completed = counter(redis_client, cluster, "cancellable-completed")
    sock, session_id = await open_session(connect, cluster.url())
    for _ in range(3):
        await sock.request("cancellable", [20])

    async def running() -> bool:
        return await started() == 3

    await wait_until(running)
    await cut(sock)
    cut_at = time.monotonic()

    async def cancelled_in_the_worker() -> bool:
        return await finished() == 3

    took = await wait_until(cancelled_in_the_worker, timeout=15)
    assert time.monotonic() - cut_at >= 1.0  # the window, then the sweep
    assert took < 5
    assert await completed() == 0
    error = await refused(connect, cluster.url(), session_id)
    assert error["data"] == {"reason": "unknown or expired"}


async def test_a_detached_session_that_overflows_ends_and_says_so_to_its_owner(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, connect: Connect
) -> None:
    cluster = cluster_factory(frontends=0, workers=1)
    cluster.start_frontend(CHANNELS_RPC_OVERRIDES='{"SESSION_MAX_FRAMES": 10}')
    group = f"g-{uuid.uuid4().hex[:8]}"
    sock, session_id = await open_session(connect, cluster.url())
    await sock.call("join", [group])
    await cut(sock)
    publisher = await connect(cluster.url())
    for n in range(12):
        await publisher.call("fault_push", [group, "news", n])
    error = await refused(connect, cluster.url(), session_id)
    assert error["code"] == -32015
    assert error["data"] == {"reason": "overflowed"}
    await publisher.close()


async def test_sigterm_moves_every_session_to_the_other_frontend_without_loss(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, connect: Connect
) -> None:
    cluster = cluster_factory(frontends=2, workers=2, concurrency=100)
    completed = counter(redis_client, cluster, "cancellable-completed")
    started = counter(redis_client, cluster, "cancellable-started")
    clients = [await open_session(connect, cluster.url(frontend=0)) for _ in range(20)]
    calls = [[await sock.request("cancellable", [10]) for _ in range(10)] for sock, _ in clients]

    async def all_running() -> bool:
        return await started() == 200

    await wait_until(all_running, timeout=30)
    signalled = time.monotonic()
    cluster.frontends[0].send_signal(15)
    for sock, _ in clients:
        await asyncio.wait_for(closed(sock), 15)
        assert sock.ws.close_code == 4012
    resumed = []
    for sock, session_id in clients:
        again = await connect(cluster.url(frontend=1))
        answer = await again.call("rpc.resume", {"session": session_id, "seq": last_seq(sock)})
        assert len(answer["result"]["running"]) == 10
        resumed.append(again)
    last_resumed = time.monotonic() - signalled
    assert cluster.frontends[0].wait_stopped(15) == 0
    for again, ids in zip(resumed, calls, strict=True):
        answers = await again.wait_for(ids, timeout=20)
        assert all(a.response["result"] == "completed" for a in answers.values())
        assert all(count == 1 for count in answers_per_id(again).values())
    assert await completed() == 200
    print(f"SIGTERM to the last of 20 clients resumed: {last_resumed:.2f} s")
    for again in resumed:
        await again.close()


async def test_rpc_discover_publishes_the_sessions_methods_in_a_valid_document(
    cluster_factory: ClusterFactory, connect: Connect
) -> None:
    from tests.openrpc.validation import errors as openrpc_errors

    cluster = cluster_factory(frontends=1, workers=1)
    sock = await connect(cluster.url())
    document = (await sock.call("rpc.discover"))["result"]
    names = {method["name"] for method in document["methods"]}
    assert {"rpc.session", "rpc.resume", "rpc.ack"} <= names
    assert document["components"]["errors"]["SESSION_NOT_FOUND"]["code"] == -32015
    assert openrpc_errors(document) == []
