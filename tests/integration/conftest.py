"""Fixtures for multi-process tests: a fresh cluster per test, on the session's Redis.

Which Redis, and when a test may have one of its own: tests/redis_fixtures.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis

from tests.integration.client import RpcSocket
from tests.integration.harness import (
    REPO,
    Cluster,
    Redis,
    child_env,
)
from tests.integration.support import Connect, logs_on_failure

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


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
        logs_on_failure(request, "cluster logs", lambda: "\n".join(c.logs() for c in clusters))


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

    async def open_socket(url: str, **options: Any) -> RpcSocket:
        sock = await RpcSocket.connect(url, **options)
        opened.append(sock)
        return sock

    yield open_socket
    for sock in opened:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sock.close(), 5)
