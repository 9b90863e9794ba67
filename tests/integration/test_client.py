"""channels_rpc.client.RpcClient against the real stack (daphne + rpcworker + Redis)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis

from channels_rpc import JsonRpcError, JsonRpcErrorCode
from channels_rpc.client import ConnectionFailed, ConnectionLost, RpcClient, SessionLost
from tests.integration.client import RpcSocket
from tests.integration.harness import Cluster
from tests.integration.support import ClusterFactory, counter, wait_until

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


async def test_on_connect_subscribes_again_before_queued_calls_after_a_restart(
    cluster_factory: ClusterFactory,
) -> None:
    # The server forgets a connection's groups when it drops: the hook joins them again, on
    # the new connection, before the calls queued meanwhile go out.
    cluster = cluster_factory(frontends=1, workers=1)
    port = cluster.ports[0]
    joined: list[str] = []

    async def subscribe(client: RpcClient) -> None:
        await client.call("sleep", [0.3])  # calls queued meanwhile wait for the whole hook
        joined.append(await client.call("subscribe", ["news"]))

    url = cluster.url("/ws/rpc/")
    async with RpcClient(url, on_connect=subscribe, backoff=(0.05, 0.5)) as rpc:
        assert joined == ["news"]
        assert rpc.state == "open"
        stream = rpc.notifications()
        cluster.frontends[0].stop()

        async def reconnecting() -> bool:
            return rpc.state == "reconnecting"

        await wait_until(reconnecting)
        # Queued until the front-end is back and the hook has run: then its push reaches us.
        queued = asyncio.create_task(rpc.call("publish", ["news", "sent while down"], timeout=30))
        cluster.start_frontend(port=port)
        assert await asyncio.wait_for(queued, 30) is True
        assert joined == ["news", "news"]
        pushed = await asyncio.wait_for(anext(stream), 10)
        assert pushed["method"] == "topic.message"
        assert pushed["params"]["message"] == "sent while down"
        await stream.aclose()


async def test_a_queued_call_outlives_a_drop_during_on_connect(
    cluster_factory: ClusterFactory,
) -> None:
    # A call not sent yet cannot have run: a drop while on_connect runs (the front-end goes
    # away again) leaves it queued for the next connection, instead of failing it.
    cluster = cluster_factory(frontends=1, workers=1)
    port = cluster.ports[0]
    greetings = 0
    hook_waits, hook_goes_on = asyncio.Event(), asyncio.Event()

    async def subscribe(client: RpcClient) -> None:
        nonlocal greetings
        greetings += 1
        if greetings == 2:
            hook_waits.set()
            await hook_goes_on.wait()
        await client.call("subscribe", ["news"])  # on the 2nd connection: ConnectionLost, logged

    async with RpcClient(cluster.url("/ws/rpc/"), on_connect=subscribe, backoff=(0.05, 0.5)) as rpc:
        cluster.frontends[0].stop()

        async def reconnecting() -> bool:
            return rpc.state == "reconnecting"

        await wait_until(reconnecting)
        queued = asyncio.create_task(rpc.call("add", [1, 2], timeout=60))
        cluster.start_frontend(port=port)
        await asyncio.wait_for(hook_waits.wait(), 30)  # 2nd connection, in its hook
        cluster.frontends[1].stop()
        hook_goes_on.set()
        cluster.start_frontend(port=port)
        assert await asyncio.wait_for(queued, 30) == 3
        assert greetings == 3
        assert rpc.state == "open"


async def test_on_progress_gets_the_steps_in_order_and_rpc_id_is_the_id_sent(
    rpc: RpcClient,
) -> None:
    steps: list[dict[str, Any]] = []
    report = await rpc.call(
        "build_report", {"steps": 3, "delay": 0.05}, on_progress=steps.append, rpc_id="report-7"
    )
    assert steps == [  # all of them before the result, and only this call's
        {"id": "report-7", "progress": n, "total": 3, "message": f"section {n} of 3"}
        for n in (1, 2, 3)
    ]
    assert report["sections"] == 3
    assert (await rpc.call("whoami", rpc_id=42))["rpc_id"] == 42  # the id the worker saw

    # A chosen id that the client's own numbering reaches later is skipped, not reused.
    progress: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    slow = asyncio.create_task(
        rpc.call(
            "build_report", {"steps": 2, "delay": 0.3}, on_progress=progress.put_nowait, rpc_id=1
        )
    )
    assert (await asyncio.wait_for(progress.get(), 10))["id"] == 1  # call 1 is running
    with pytest.raises(ValueError, match="rpc_id 1 is already used by a pending call"):
        await rpc.call("echo", ["x"], rpc_id=1)
    assert await rpc.call("echo", ["auto"]) == "auto"  # numbered 2, not 1
    assert (await asyncio.wait_for(slow, 10))["sections"] == 2
    assert progress.get_nowait()["progress"] == 2


async def test_what_a_newcomer_sees_for_a_wrong_path_a_dropped_server_and_a_closed_client(
    cluster: Cluster,
) -> None:
    wrong = cluster.url("/ws/nope/")
    with pytest.raises(ConnectionFailed) as failed:
        await RpcClient(wrong).connect()
    assert str(failed.value) == (
        f"could not connect to {wrong}: "
        "HTTP 500: is the path right? Channels' URLRouter fails this way when no route matches it"
    )

    url = cluster.url("/ws/rpc/")
    async with (
        RpcClient(url, reconnect=False) as once,
        RpcClient(url, backoff=(0.05, 0.5)) as again,
    ):
        cluster.frontends[0].stop()

        async def dropped() -> bool:
            return once.state == "closed" and again.state == "reconnecting"

        await wait_until(dropped)
        # These used to wait forever: for a reconnection that reconnect=False never makes,
        # and, after close(), for one that a closed client never makes.
        with pytest.raises(ConnectionLost, match=r"^the connection dropped \(reconnect=False\)$"):
            await asyncio.wait_for(once.call("add", [1, 2]), 5)
        waiting = asyncio.create_task(again.call("add", [1, 2]))
        await asyncio.sleep(0)  # it starts, and waits for the server to come back
        assert not waiting.done()
        await again.close()
        with pytest.raises(ConnectionLost, match=r"^the client was closed$"):
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(ConnectionLost, match=r"^the client was closed$"):
            await asyncio.wait_for(again.notify("log", {"message": "hi"}), 5)


# -------------------------------------------------------------------------------------------
# Sessions (docs/reference/sessions.md): on by default, resumed after a dropped connection


def cut(client: RpcClient) -> None:
    """Drop the client's TCP connection without a WebSocket close (as a network failure does)."""
    ws = client._link._ws
    assert ws is not None
    ws.transport.abort()


async def test_calls_pending_when_the_connection_is_cut_complete_after_the_resume(
    cluster: Cluster, redis_client: AsyncRedis
) -> None:
    started = counter(redis_client, cluster, "cancellable-started")
    completed = counter(redis_client, cluster, "cancellable-completed")
    resumed: list[dict[str, Any]] = []
    connected: list[bool] = []  # on_connect runs after the resume: nothing to join again
    url = cluster.url()
    async with RpcClient(
        url,
        backoff=(0.05, 0.5),
        on_resume=resumed.append,
        on_connect=lambda rpc: connected.append(rpc.resumed),
    ) as client:
        session = client.session_id
        assert session is not None
        assert session.startswith("s1.")
        ids = [f"c{n}" for n in range(5)]
        calls = [asyncio.create_task(client.call("cancellable", [2], rpc_id=i)) for i in ids]

        async def all_started() -> bool:
            return await started() == 5

        await wait_until(all_started)
        cut(client)
        assert await asyncio.wait_for(asyncio.gather(*calls), 20) == ["completed"] * 5
        assert await completed() == 5
        assert client.session_id == session
        assert [sorted(r["running"]) for r in resumed] == [ids]
        assert resumed[0]["session"] == session
        assert await client.call("pid") == cluster.workers[0].pid  # after on_connect
        assert connected == [False, True]
    # close() sent 1000: the session ended with it.
    sock = await RpcSocket.connect(url)
    refused = await sock.call("rpc.resume", {"session": session, "seq": 0})
    assert refused["error"]["data"] == {"reason": "unknown or expired"}
    await sock.close()


async def test_a_push_sent_while_the_connection_is_cut_arrives_once_after_the_resume(
    cluster: Cluster,
) -> None:
    group = f"news-{uuid.uuid4().hex[:8]}"
    events: list[str] = []
    pushes: asyncio.Queue[Any] = asyncio.Queue()
    # A backoff of 1.5 s at least: the push goes out while the client is away.
    async with (
        RpcClient(
            cluster.url(), backoff=(3, 3), on_resume=lambda _: events.append("resumed")
        ) as client,
        RpcClient(cluster.url()) as publisher,
    ):
        client.on("news", pushes.put_nowait)
        assert await client.call("join", [group]) == group
        cut(client)
        assert await publisher.call("fault_push", [group, "news", 0]) == 0
        events.append("pushed")
        assert await asyncio.wait_for(pushes.get(), 20) == {"n": 0}
        assert events == ["pushed", "resumed"]
        # Still in the group, and the first push came once: the next one is the next.
        assert await publisher.call("fault_push", [group, "news", 1]) == 1
        assert await asyncio.wait_for(pushes.get(), 10) == {"n": 1}
        assert pushes.empty()


async def test_a_refused_resume_fails_the_pending_calls_and_opens_a_new_session(
    cluster: Cluster, redis_client: AsyncRedis
) -> None:
    started = counter(redis_client, cluster, "cancellable-started")
    lost: list[str] = []
    async with RpcClient(cluster.url(), backoff=(0.05, 0.5), on_session_lost=lost.append) as client:
        first = client.session_id
        calls = [asyncio.create_task(client.call("cancellable", [2])) for _ in range(3)]

        async def all_started() -> bool:
            return await started() == 3

        await wait_until(all_started)
        unknown = "s1." + secrets.token_urlsafe(24)  # one the server never gave
        client._session.id = unknown
        cut(client)
        outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 20)
        assert all(isinstance(o, SessionLost) for o in outcomes), outcomes
        assert all(isinstance(o, JsonRpcError) and o.code == -32015 for o in outcomes)
        assert {o.reason for o in outcomes if isinstance(o, SessionLost)} == {"unknown or expired"}
        assert str(outcomes[0]).startswith("the session was lost (unknown or expired)")
        assert lost == ["unknown or expired"]
        assert await client.call("pid") == cluster.workers[0].pid  # after the new session
        assert client.session_id not in (None, first, unknown)


async def test_without_sessions_no_session_frame_goes_out_and_a_drop_fails_the_calls(
    cluster: Cluster,
) -> None:
    sent: list[dict[str, Any]] = []
    received: list[dict[str, Any]] = []
    async with RpcClient(cluster.url(), sessions=False, backoff=(0.05, 0.5)) as client:
        link = client._link
        write, on_frame = link.write, link._on_frame

        async def recorded_write(text: str) -> None:
            sent.append(json.loads(text))
            await write(text)

        def recorded_frame(frame: list[dict[str, Any]]) -> None:
            received.extend(frame)
            on_frame(frame)

        link.write, link._on_frame = recorded_write, recorded_frame  # type: ignore[method-assign]
        assert await client.call("pid") == cluster.workers[0].pid
        pending = asyncio.create_task(client.call("sleep", [30]))
        await wait_until(lambda: _sent(sent, "sleep"))
        cut(client)
        with pytest.raises(ConnectionLost, match="the connection dropped"):
            await asyncio.wait_for(pending, 10)
        assert await client.call("pid") == cluster.workers[0].pid
        assert client.session_id is None
    assert [m["method"] for m in sent] == ["pid", "sleep", "pid"]
    assert received
    assert not any("seq" in item for item in received)


async def _sent(sent: list[dict[str, Any]], method: str) -> bool:
    return any(m["method"] == method for m in sent)


async def test_a_call_given_up_while_disconnected_is_cancelled_once_resumed(
    cluster: Cluster, redis_client: AsyncRedis
) -> None:
    started = counter(redis_client, cluster, "cancellable-started")
    finished = counter(redis_client, cluster, "cancellable-finally")
    async with RpcClient(cluster.url(), backoff=(2, 2)) as client:
        task = asyncio.create_task(client.call("cancellable", [30]))

        async def running() -> bool:
            return await started() == 1

        async def reconnecting() -> bool:
            return client.state == "reconnecting"

        async def cancelled_in_the_worker() -> bool:
            return await finished() == 1

        await wait_until(running)
        cut(client)
        await wait_until(reconnecting)
        task.cancel()  # no socket to send rpc.cancel on: it goes after the resume
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_until(cancelled_in_the_worker, timeout=15)  # long before its 30 s
        assert await counter(redis_client, cluster, "cancellable-completed")() == 0
