"""What the integration modules share: waiting on a condition, reading a probe's counter,
running a JSON-RPC vector (tests/vectors) over a live front-end."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import websockets
from redis.asyncio import Redis as AsyncRedis
from websockets.asyncio.client import ClientConnection

from tests.integration.client import RpcSocket
from tests.integration.harness import Cluster, Redis
from tests.vectors import loader

__all__ = [
    "ClusterFactory",
    "Connect",
    "SocketConnection",
    "counter",
    "run_live_vector",
    "spec_connection",
    "vector_cluster",
    "wait_until",
]

ClusterFactory = Callable[..., Cluster]


class Connect(Protocol):
    """Opens a client socket (``options`` for ``websockets.connect``), closed after the test."""

    def __call__(self, url: str, **options: Any) -> Awaitable[RpcSocket]: ...


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> float:
    """Poll ``condition`` (cheap reads) until it holds; the seconds it took; fail after timeout."""
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def counter(redis: AsyncRedis, cluster: Cluster, name: str) -> Callable[[], Awaitable[int]]:
    async def read() -> int:
        return int(await redis.get(cluster.counter_key(name)) or 0)

    return read


def logs_on_failure(request: pytest.FixtureRequest, title: str, logs: Callable[[], str]) -> None:
    """In a fixture's teardown: attach ``logs()`` to the test's report if the test failed
    (tests/conftest.py keeps each phase's report on the item)."""
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        request.node.add_report_section("call", title, logs())


class SocketConnection:
    """A socket to a cluster's /ws/spec/, as ``tests.vectors.loader.run`` drives it."""

    def __init__(self, ws: ClientConnection, redis: AsyncRedis, cluster: Cluster) -> None:
        self.ws = ws
        self.redis = redis
        self.cluster = cluster

    async def send(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def receive(self, timeout: float) -> str:
        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(frame, str)
        return frame

    async def silent(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            return True
        return False

    async def ran(self, notification: str) -> int:
        return int(await self.redis.get(self.cluster.counter_key(notification)) or 0)


@contextlib.asynccontextmanager
async def spec_connection(cluster: Cluster, redis: AsyncRedis) -> AsyncIterator[SocketConnection]:
    """A connection to the test project's spec consumer (the vectors' methods) of ``cluster``."""
    async with websockets.connect(cluster.url("/ws/spec/"), max_size=None) as ws:
        yield SocketConnection(ws, redis, cluster)


async def runs_by_pid(redis: AsyncRedis, cluster: Cluster) -> Counter[int]:
    """How many spec methods each process has run (tests.project.consumers counts them)."""
    runs = await redis.hgetall(cluster.counter_key("spec-pids"))
    return Counter({int(pid): int(count) for pid, count in runs.items()})


async def run_live_vector(vector: loader.Vector, cluster: Cluster, redis: AsyncRedis) -> None:
    """Run ``vector`` on a connection of its own, then check that whatever it ran, the
    cluster's worker ran it (the probe at least): never the front-end itself."""
    async with spec_connection(cluster, redis) as connection:
        before = await runs_by_pid(redis, cluster)
        await loader.run(vector, connection)
        ran = await runs_by_pid(redis, cluster) - before
    worker, frontend = cluster.workers[0].pid, cluster.frontends[0].pid
    assert set(ran) == {worker}, f"runs by pid {dict(ran)} (worker {worker}, front-end {frontend})"


@contextlib.contextmanager
def vector_cluster(
    redis: Redis, database: Path, log_dir: Path, server: str = "daphne"
) -> Iterator[Cluster]:
    """A front-end (``server``) and a worker of the test project, whose /ws/spec/ consumer
    runs the vectors' methods; one for a module's vectors, each on a connection of its own."""
    cluster = Cluster(redis, log_dir, database)
    try:
        cluster.start_frontend(server=server)
        cluster.start_worker()
        yield cluster
    finally:
        cluster.stop()
