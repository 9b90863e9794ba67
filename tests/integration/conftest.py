"""Fixtures for multi-process tests: one Redis per session, a fresh cluster per test.

Which Redis: ``CHANNELS_RPC_TEST_REDIS_URL`` if set; else a private ``redis-server`` when it is
installed; else, outside CI, an in-process fakeredis TCP server, which speaks the protocol, Lua
included (tests that need a real server skip, and the 20,000-call delivery test runs 2,000,
saying so in the summary). ``CHANNELS_RPC_TEST_REDIS=fakeredis`` forces it, to check that
fallback on any machine. A Redis that merely answers on 127.0.0.1:6379 is never used unasked
(it may be someone else's): give its URL. A CI run (``CI`` set to 1, true, yes or on:
:func:`workers.cluster.in_ci`) refuses fakeredis: it fails instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis as AsyncRedis

from tests.integration.client import RpcSocket
from tests.integration.harness import (
    REPO,
    Cluster,
    Redis,
    child_env,
    start_fakeredis,
    start_redis_server,
)
from tests.integration.support import Connect
from workers.cluster import in_ci

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    log_dir = tmp_path_factory.mktemp("redis")
    if url := os.environ.get("CHANNELS_RPC_TEST_REDIS_URL"):
        redis = Redis(url, "external")
    elif can_start_redis_server():
        redis = start_redis_server(log_dir)
    else:
        refuse_fakeredis_in_ci("CHANNELS_RPC_TEST_REDIS_URL, or redis-server installed")
        redis = start_fakeredis()
    print(f"\nintegration tests use Redis at {redis.url} ({redis.kind})", file=sys.stderr)
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    """A Redis of this test's own, which it may stop and start again (a restart loses data)."""
    log_dir = tmp_path_factory.mktemp("private-redis")
    if can_start_redis_server():
        redis = start_redis_server(log_dir)
    else:
        refuse_fakeredis_in_ci("redis-server installed, for tests that restart Redis")
        redis = start_fakeredis(log_dir)
    try:
        yield redis
    finally:
        redis.stop()


def can_start_redis_server() -> bool:
    """redis-server is installed, and fakeredis was not asked for."""
    forced = os.environ.get("CHANNELS_RPC_TEST_REDIS") == "fakeredis"
    return not forced and shutil.which("redis-server") is not None


def refuse_fakeredis_in_ci(needed: str) -> None:
    if in_ci():
        pytest.fail(f"a CI run refuses fakeredis: it needs {needed}", pytrace=False)


@pytest.fixture(scope="session")
def database(tmp_path_factory: pytest.TempPathFactory, redis_server: Redis) -> Path:
    """A migrated SQLite file shared by the processes of every cluster."""
    path = tmp_path_factory.mktemp("db") / "db.sqlite3"
    env = child_env(redis_server.url, "migrate", path)
    subprocess.run(
        [sys.executable, "-m", "workers.manage", "migrate", "--verbosity", "0"],
        cwd=REPO,
        env=env,
        check=True,
        timeout=120,
    )
    return path


@pytest.fixture
def cluster_factory(
    request: pytest.FixtureRequest,
    redis_server: Redis,
    database: Path,
    tmp_path: Path,
) -> Iterator[Callable[..., Cluster]]:
    """Builds clusters (``frontends`` daphne + ``workers`` rpcworker); stops them all after."""
    clusters: list[Cluster] = []

    def build(frontends: int = 1, workers: int = 1, **worker_options: object) -> Cluster:
        cluster = Cluster(redis_server, tmp_path, database)
        clusters.append(cluster)
        for _ in range(frontends):
            cluster.start_frontend()
        for _ in range(workers):
            cluster.start_worker(**worker_options)  # type: ignore[arg-type]
        return cluster

    try:
        yield build
    finally:
        for cluster in clusters:
            cluster.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for cluster in clusters:
                request.node.add_report_section("call", "cluster logs", cluster.logs())


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def redis_client(redis_server: Redis) -> AsyncIterator[AsyncRedis]:
    """A client of the tests' Redis, for reading the counters the test project's methods write."""
    client = AsyncRedis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Opens client sockets and closes whatever is left open after the test."""
    opened: list[RpcSocket] = []

    async def open_socket(url: str) -> RpcSocket:
        sock = await RpcSocket.connect(url)
        opened.append(sock)
        return sock

    yield open_socket
    for sock in opened:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sock.close(), 5)
