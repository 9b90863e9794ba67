"""LAYER_TIMEOUT and the layer's breaker against a Redis that is slow or unreachable, not down.

A stopped Redis refuses connections at once (T10, T11), so it never makes the front-end wait.
Here it does: a blackholed port (a TCP proxy of the test's own that accepts connections and
stops forwarding anything) or a paused Redis (``CLIENT PAUSE ... WRITE`` on a private
redis-server). The docs (reference/reliability.md, Guarantees; guides/operations.md, Redis
outages) promise: the first call waits at most ``LAYER_TIMEOUT`` and is answered -32010 with
``data.reason`` "channel layer unavailable"; for the breaker's cooldown (a second) new calls
are refused at once instead of waiting again; once Redis answers, calls work again; and a call
so answered never runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from redis.asyncio import Redis as AsyncRedis

from channels_rpc import JsonRpcErrorCode
from tests.integration.client import Answer, RpcSocket
from tests.integration.harness import Cluster, Redis
from tests.integration.reliability.report import Figures
from tests.integration.support import Connect, logs_on_failure

pytestmark = pytest.mark.anyio

LAYER_TIMEOUT = 1.0  # given to the front-end (the default, 2 s, only makes the test longer)
COOLDOWN = 1.0  # how long the front-end's breaker refuses after a failure (channels_rpc.consumer)
# Scheduling slack on this shared 2-core machine for "at most LAYER_TIMEOUT" and "at once":
# under the cooldown, and well under LAYER_TIMEOUT, so a breaker that lets every call wait
# again fails "at once".
MARGIN = 0.25
UNAVAILABLE = "channel layer unavailable"


class Stall(Protocol):
    """A way to make Redis stop answering the front-end, and answer again."""

    async def stall(self) -> None: ...

    async def resume(self) -> None: ...


class BlackholeProxy:
    """A TCP proxy to a Redis Unix socket that can stop forwarding: a blackholed port.

    Stalled, it still accepts connections (and opens its own to Redis), but forwards nothing
    either way: what it reads waits, in order, until it resumes, as over a network that lost
    its route and got it back.
    """

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.url = ""
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}/0"

    async def stall(self) -> None:
        self._flowing.clear()

    async def resume(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        """Hang up every connection and stop listening; the relays end on their own."""
        self._flowing.set()
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=10)
        if self._server is not None:
            await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        except OSError:
            writer.close()
            return
        self._writers.append(up_writer)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        try:
            # One side hung up (after what it sent was forwarded): hang up the other.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            writer.close()
            up_writer.close()
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._handlers.discard(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            await self._flowing.wait()
            sink.write(data)
            await sink.drain()


@dataclass
class PausedRedis:
    """``CLIENT PAUSE ... WRITE``: Redis holds every write (sends are scripts that write)."""

    admin: AsyncRedis

    async def stall(self) -> None:
        await self.admin.client_pause(60_000, all=False)

    async def resume(self) -> None:
        await self.admin.client_unpause()


@pytest.fixture
def cluster_on(
    request: pytest.FixtureRequest, database: Path, tmp_path: Path
) -> Iterator[Callable[[str], Cluster]]:
    """Builds an empty cluster whose processes reach Redis at a given URL; stops it after."""
    clusters: list[Cluster] = []

    def build(url: str) -> Cluster:
        clusters.append(Cluster(Redis(url, "external"), tmp_path, database))
        return clusters[-1]

    yield build
    for cluster in clusters:
        cluster.stop()
        logs_on_failure(request, "cluster logs", cluster.logs)


@contextlib.asynccontextmanager
async def stalled_by(kind: str, redis: Redis) -> AsyncIterator[tuple[Stall, str]]:
    """A way to stall ``redis``, and the URL processes must use for it to work on them."""
    if redis.kind != "redis-server":
        pytest.skip("needs a redis-server of the test's own (Unix socket, CLIENT PAUSE)")
    if kind == "blackholed port":
        proxy = BlackholeProxy(redis.url.removeprefix("unix://"))
        await proxy.start()
        try:
            yield proxy, proxy.url
        finally:
            await proxy.resume()
            await proxy.close()
        return
    admin = AsyncRedis.from_url(redis.url)
    try:
        yield PausedRedis(admin), redis.url
    finally:
        with contextlib.suppress(Exception):
            await admin.client_unpause()
        await admin.aclose()


def reason(answer: Answer | None) -> tuple[Any, Any]:
    """(code, data.reason) of an error answer; (None, None) for a result or no answer."""
    error = (answer.response.get("error") if answer else None) or {}
    return error.get("code"), (error.get("data") or {}).get("reason")


async def answer_to(sock: RpcSocket, rpc_id: Any, timeout: float) -> Answer | None:
    with contextlib.suppress(AssertionError):
        await sock.wait_for([rpc_id], timeout)
    return sock.answers.get(json.dumps(rpc_id))


async def executions(redis: Redis, cluster: Cluster, tokens: list[str]) -> int:
    """How many times the ``fault_record`` calls of these tokens ran, in all."""
    client = AsyncRedis.from_url(redis.url)
    try:
        runs = await client.hmget(cluster.counter_key("fault-executions"), tokens)
    finally:
        await client.aclose()
    return sum(int(count or 0) for count in runs)


async def first_success(sock: RpcSocket, timeout: float) -> float | None:
    """Seconds until a call succeeds, calling every 0.1 s; None if none did in ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        rpc_id = await sock.request("pid")
        answer = await answer_to(sock, rpc_id, LAYER_TIMEOUT + 5)
        if answer is not None and "result" in answer.response:
            return answer.at - started
        await asyncio.sleep(0.1)
    return None


@pytest.mark.parametrize("kind", ["blackholed port", "paused Redis"])
async def test_t47_a_stalled_redis_costs_one_layer_timeout_then_the_breaker_answers(
    cluster_on: Callable[[str], Cluster],
    private_redis: Redis,
    connect: Connect,
    figures: Figures,
    kind: str,
) -> None:
    async with stalled_by(kind, private_redis) as (redis, url):
        cluster = cluster_on(url)
        cluster.start_frontend(CHANNELS_RPC_OVERRIDES=json.dumps({"LAYER_TIMEOUT": LAYER_TIMEOUT}))
        worker = cluster.start_worker()
        sock = await connect(cluster.url())
        assert (await sock.call("pid"))["result"] == worker.pid  # served before the stall
        tokens = [uuid.uuid4().hex for _ in range(6)]
        await redis.stall()
        # The first call finds out: it waits for the layer, LAYER_TIMEOUT at most.
        first_sent = time.monotonic()
        first_id = await sock.request("fault_record", [tokens[0]])
        first = await answer_to(sock, first_id, LAYER_TIMEOUT + 5)
        waited = first.at - first_sent if first else float("inf")
        # The next ones, within the cooldown, are answered at once without waiting again.
        sent = {
            await sock.request("fault_record", [token]): time.monotonic() for token in tokens[1:]
        }
        refused = {i: await answer_to(sock, i, LAYER_TIMEOUT + 5) for i in sent}
        slowest = max((a.at - sent[i] if a else float("inf") for i, a in refused.items()))
        await redis.resume()
        back_after = await first_success(sock, timeout=10)
        # A call sent now is taken after anything Redis still held: once it has run, so has
        # any refused call that was going to.
        sentinel = await sock.call("fault_record", [uuid.uuid4().hex])
    ran = await executions(private_redis, cluster, tokens)
    answers = {reason(a) for a in refused.values()}
    busy = (JsonRpcErrorCode.SERVER_BUSY, UNAVAILABLE)
    measured = (
        f"{kind}: the first call answered {reason(first)} after {waited:.2f} s "
        f"(LAYER_TIMEOUT {LAYER_TIMEOUT} s); the next 5 {sorted(answers, key=str)} within "
        f"{slowest * 1000:.0f} ms; calls served again {back_after and round(back_after, 2)} s "
        f"after Redis answered; {ran} of the 6 refused calls ran"
    )
    figures.check(
        "T47",
        measured,
        first_call_refused_with_the_reason=reason(first) == busy,
        one_layer_timeout_wait=LAYER_TIMEOUT <= waited <= LAYER_TIMEOUT + MARGIN,
        the_next_refused_alike=answers == {busy},
        the_breaker_answers_at_once=slowest <= MARGIN,
        calls_work_again=back_after is not None and back_after <= COOLDOWN + 1.0,
        a_later_call_runs_in_the_worker=sentinel.get("result") == worker.pid,
        no_refused_call_ran=ran == 0,
        socket_open=sock.open,
        processes_alive=all(p.alive for p in [*cluster.frontends, *cluster.workers]),
    )
