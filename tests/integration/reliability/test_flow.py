"""Flow control on the front-end socket (reliability plan T29, T39; issue 10 items 2 and 12).

Real daphne, ``rpcworker`` and redis-server processes, the reference project's ``echo`` on
``/ws/rpc/`` with the library's default limits (the test project relaxes RATE_LIMIT and
MAX_IN_FLIGHT; these tests put the defaults back). The abusive clients are raw sockets that
never read (:mod:`.rawws`): the kernel buffers fill, and what piles up after that is daphne's.
Memory is daphne's VmRSS, sampled every 20 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis as AsyncRedis

from tests.integration.harness import Cluster, Redis
from tests.integration.reliability.rawws import RawWebSocket
from tests.integration.reliability.report import Figures
from tests.integration.reliability.test_clients_and_security import RssPeak, rss_mb
from tests.integration.support import ClusterFactory, Connect

pytestmark = pytest.mark.anyio

HOST = "127.0.0.1"
#: The library's defaults (tests/project/settings.py turns the rate limit off, allows 200).
DEFAULTS = json.dumps({"RATE_LIMIT": 200, "MAX_IN_FLIGHT": 64})
#: daphne's ping options: (arguments, the latest a peer that answers no ping is dropped once
#: reading stopped: ping interval + daphne's 2 s check period + ping timeout). Short pings keep
#: the test fast; daphne's defaults (20 s, 30 s) are the long variant.
SHORT_PINGS = (("--ping-interval", "2", "--ping-timeout", "3"), 2 + 2 + 3)
DEFAULT_PINGS = ((), 20 + 2 + 30)
ECHO_SIZE = 400 * 1024


def echo_frame(rpc_id: int, value: str) -> bytes:
    """A masked text frame calling ``echo(value)``. The mask key is zero, which RFC 6455 allows
    and which leaves the payload as is: 400 KB frames cost a copy, not an XOR."""
    payload = json.dumps(
        {"jsonrpc": "2.0", "method": "echo", "params": [value], "id": rpc_id}
    ).encode()
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
    return header + b"\0\0\0\0" + payload


@dataclass
class Flood:
    """Sends ``echo`` frames at ``rate`` a second (0: as fast as the socket takes them) for
    ``duration`` seconds, and never reads. Counts what the server's socket accepted."""

    sock: RawWebSocket
    rate: float
    duration: float
    size: int = ECHO_SIZE
    sent: int = 0  # frames the socket took (drain returned)
    sent_bytes: int = 0
    broken_at: float | None = None  # when a write failed: the server dropped the connection
    started: float = 0.0

    async def run(self) -> None:
        value = "x" * self.size
        self.started = time.monotonic()
        until = self.started + self.duration
        while (now := time.monotonic()) < until:
            if self.rate:
                await asyncio.sleep(max(0.0, self.started + self.sent / self.rate - now))
            frame = echo_frame(self.sent, value)
            try:
                self.sock.writer.write(frame)
                await asyncio.wait_for(self.sock.writer.drain(), until - time.monotonic())
            except (asyncio.TimeoutError, TimeoutError):
                break  # the server stopped reading: the client is stuck until it gives up
            except ConnectionError:
                self.broken_at = time.monotonic()
                break
            self.sent += 1
            self.sent_bytes += len(frame)

    def mib(self) -> float:
        return self.sent_bytes / 2**20


async def served(cluster: Cluster, connect: Connect) -> bool:
    """A new client is answered normally."""
    sock = await connect(cluster.url("/ws/rpc/"))
    answer = await sock.call("echo", ["still here"], timeout=10)
    return answer.get("result") == "still here"


# ------------------------------------------------------------------------------------------------
# T29: a client that never reads


@pytest.mark.parametrize(
    "pings",
    [
        pytest.param(SHORT_PINGS, id="short-pings"),
        pytest.param(DEFAULT_PINGS, id="daphne-default-pings", marks=pytest.mark.long),
    ],
)
async def test_t29_a_client_that_never_reads_cannot_grow_daphne_and_is_dropped(
    cluster_factory: ClusterFactory,
    connect: Connect,
    figures: Figures,
    pings: tuple[tuple[str, ...], float],
) -> None:
    daphne_args, ping_bound = pings
    cluster = cluster_factory(frontends=0, workers=0)
    frontend = cluster.start_frontend(*daphne_args, CHANNELS_RPC_OVERRIDES=DEFAULTS)
    cluster.start_worker()
    neighbour = await connect(cluster.url("/ws/rpc/"))
    assert (await neighbour.call("echo", ["warm"]))["result"] == "warm"
    sock = await RawWebSocket.connect(HOST, cluster.ports[0], "/ws/rpc/")
    before = rss_mb(frontend.pid)
    # Reading stops within a second or two (kernel buffers, then 4 MiB in daphne's); the
    # client's writes stall; daphne's ping, stuck behind the answers, is never answered.
    flood = Flood(sock, rate=200, duration=4 + ping_bound)
    with RssPeak(frontend.pid) as rss:
        await flood.run()  # ends when a write fails: daphne dropped the connection
    sock.abort()
    dropped_after = (flood.broken_at or float("nan")) - flood.started
    growth = rss.peak - before
    answered = (await neighbour.call("echo", ["neighbour"], timeout=10)).get("result")
    new_client = await served(cluster, connect)
    after = rss_mb(frontend.pid) - before
    gone = flood.broken_at is not None
    pinging = " ".join(daphne_args) or "daphne's default pings"
    measured = (
        f"echo({ECHO_SIZE // 1024} KiB) at 200/s, never read: daphne took {flood.sent} calls "
        f"({flood.mib():.0f} MiB), then stopped reading; RSS peak +{growth:.0f} MiB, "
        f"+{after:.0f} MiB after (before the fix: +1,179 MiB in 15 s; here 2,200 calls, 860 MiB "
        f"in 11 s, +872 MiB, still +871 MiB after, never dropped); dropped by the ping timeout "
        f"{dropped_after:.1f} s after the flood began ({pinging}: bound {ping_bound} s once "
        f"reading stopped); neighbour served: "
        f"{answered == 'neighbour'}, new client served: {new_client}"
    )
    print(f"\nT29: {measured}")
    figures.check(
        "T29",
        measured,
        rss_growth_under_100_mib=growth < 100,
        dropped_by_the_ping_timeout=gone,
        neighbour_served=answered == "neighbour",
        new_client_served=new_client,
    )


async def test_t29_pushes_to_a_subscriber_that_never_reads_drop_it_past_the_ceiling(
    cluster_factory: ClusterFactory, connect: Connect, figures: Figures
) -> None:
    # Pushes are not calls: pausing its reading does not stop them. With daphne's default pings
    # (20 + 30 s) nothing else would stop them for close to a minute.
    cluster = cluster_factory(frontends=0, workers=0)
    frontend = cluster.start_frontend(CHANNELS_RPC_OVERRIDES=DEFAULTS)
    cluster.start_worker()
    subscriber = await RawWebSocket.connect(HOST, cluster.ports[0], "/ws/rpc/")
    await subscriber.send_text(
        json.dumps({"jsonrpc": "2.0", "method": "subscribe", "params": ["flow"], "id": 1})
    )
    assert json.loads(await subscriber.recv_text())["result"] == "flow"
    publisher = await connect(cluster.url("/ws/rpc/"))
    mark = frontend.line_count()
    dropped = asyncio.create_task(
        asyncio.to_thread(frontend.wait_for, r"dropping .* the client is not reading", 15, mark)
    )
    before = rss_mb(frontend.pid)
    message = "x" * ECHO_SIZE
    published = 0
    started = time.monotonic()
    with RssPeak(frontend.pid) as rss:
        while not dropped.done() and time.monotonic() - started < 10:
            await publisher.call("publish", ["flow", message], timeout=10)  # one at a time
            published += 1
        with contextlib.suppress(RuntimeError):  # not dropped: the assertions say so
            await dropped
    dropped_after = time.monotonic() - started
    subscriber.abort()
    growth = rss.peak - before
    was_dropped = dropped.exception() is None
    new_client = await served(cluster, connect)
    measured = (
        f"pushes of {ECHO_SIZE // 1024} KiB to a subscriber that never reads, one at a time: "
        f"{published} ({published * ECHO_SIZE / 2**20:.0f} MiB) in {dropped_after:.1f} s, "
        f"subscriber dropped: {was_dropped} (ceiling: MAX_OUTBOUND_BYTES + MAX_IN_FLIGHT x "
        f"MAX_RESPONSE_SIZE = 68 MiB unsent); daphne RSS peak +{growth:.0f} MiB (before the "
        f"fix: 947 pushes, 370 MiB in 10 s, +370 MiB, not dropped: only daphne's ping timeout, "
        f"20 + 30 s, would have); new client served: {new_client}"
    )
    print(f"\nT29: {measured}")
    figures.check(
        "T29",
        measured,
        subscriber_dropped=was_dropped,
        rss_growth_under_150_mib=growth < 150,
        new_client_served=new_client,
    )


# ------------------------------------------------------------------------------------------------
# T39: a flood while the consumer awaits a slow Redis


async def pause_redis_writes(redis: Redis, ms: int) -> AsyncRedis:
    """Hold every write to ``redis`` for ``ms`` (a slow Redis); returns the admin client."""
    if redis.kind == "fakeredis":
        pytest.skip("needs a real redis-server (CLIENT PAUSE)")
    client = AsyncRedis.from_url(redis.url)
    await client.client_pause(ms, all=False)
    return client


async def test_t39_reading_pauses_while_the_consumer_waits_on_a_slow_redis(
    private_cluster: Cluster, private_redis: Redis, connect: Connect, figures: Figures
) -> None:
    cluster = private_cluster
    frontend = cluster.start_frontend(CHANNELS_RPC_OVERRIDES=DEFAULTS)
    cluster.start_worker()
    sock = await RawWebSocket.connect(HOST, cluster.ports[0], "/ws/rpc/")
    before = rss_mb(frontend.pid)
    # Redis slow, not down: writes wait 1.9 s, under LAYER_TIMEOUT (2 s), so the consumer
    # waits in its first enqueue for all of the flood. 400 KiB frames at full speed make fewer
    # than 400 calls: within the rate limit, only the byte bound can stop them.
    admin = await pause_redis_writes(private_redis, 1900)
    try:
        flood = Flood(sock, rate=0, duration=1.8)
        with RssPeak(frontend.pid) as rss:
            await flood.run()
        growth = rss.peak - before
        await admin.client_unpause()
        # Once Redis answers, the connection works through its backlog and serves again.
        sock.writer.write(echo_frame(10**6, "after"))
        answered = await answered_by(sock, 10**6, timeout=30)
    finally:
        with contextlib.suppress(Exception):
            await admin.client_unpause()
        await admin.aclose()
        sock.abort()
    new_client = await served(cluster, connect)
    measured = (
        f"Redis writes paused 1.9 s (CLIENT PAUSE WRITE), one client writing 400 KiB frames as "
        f"fast as it can for 1.8 s: daphne took {flood.sent} ({flood.mib():.1f} MiB), then "
        f"stopped reading; RSS peak +{growth:.0f} MiB (before the fix: +657 MiB in 2 s; here "
        f"1,350 frames, 527 MiB taken, +525 MiB); once Redis came back the client's next call "
        f"was answered: {answered}; new client served: {new_client}"
    )
    print(f"\nT39: {measured}")
    figures.check(
        "T39",
        measured,
        rss_growth_under_100_mib=growth < 100,
        reading_paused_under_50_mib_taken=flood.mib() < 50,
        next_call_answered_once_redis_came_back=answered,
        new_client_served=new_client,
    )


async def answered_by(sock: RawWebSocket, rpc_id: int, timeout: float) -> bool:
    """Whether the answer to ``rpc_id`` arrives within ``timeout`` (other frames skipped)."""
    deadline = time.monotonic() + timeout
    marker = f'"id":{rpc_id}'
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            text = await sock.recv_text(timeout=remaining)
        except (ConnectionError, asyncio.TimeoutError, TimeoutError):
            return False
        if marker in text.replace(" ", ""):
            return True
    return False


async def test_t39_the_rate_limit_closes_4008_while_the_consumer_waits_on_redis(
    private_cluster: Cluster, private_redis: Redis, figures: Figures
) -> None:
    cluster = private_cluster
    frontend = cluster.start_frontend(CHANNELS_RPC_OVERRIDES=DEFAULTS)
    cluster.start_worker()
    sock = await RawWebSocket.connect(HOST, cluster.ports[0], "/ws/rpc/")
    admin = await pause_redis_writes(private_redis, 3000)
    try:
        # Small frames far above the rate limit (200/s, bursts of 400), read as they come.
        flood = Flood(sock, rate=2000, duration=1.5, size=100)
        paused_at = time.monotonic()
        reader = asyncio.create_task(sock.wait_closed(timeout=5))
        await flood.run()
        closed = await reader
    finally:
        with contextlib.suppress(Exception):
            await admin.client_unpause()
        await admin.aclose()
        sock.abort()
    # The bucket is exceeded at about the 400th frame; the close must not wait for Redis.
    exceeded = flood.started + 400 / 2000
    close_at = closed.close_frame.at if closed.close_frame else None
    after = None if close_at is None else close_at - exceeded
    since_pause = float("nan") if close_at is None else close_at - paused_at
    measured = (
        f"Redis writes paused for 3 s, 100-byte calls at 2000/s: {closed.describe()} "
        f"{after if after is not None else float('nan'):.2f} s after the bucket (200/s, bursts "
        f"of 400) ran out, {since_pause:.2f} s into the pause (before the fix: 1.86 s after, "
        f"once the first enqueue gave up at LAYER_TIMEOUT); daphne tracebacks: "
        f"{frontend.output().count('Traceback')}"
    )
    print(f"\nT39: {measured}")
    figures.check(
        "T39",
        measured,
        closed_4008=closed.code == 4008,
        # Not at LAYER_TIMEOUT (2 s), when the stalled enqueue gives up, as before the fix.
        closed_within_1_s_of_the_bucket_running_out=after is not None and after < 1.0,
    )
