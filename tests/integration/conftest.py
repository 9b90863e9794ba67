"""Fixtures for multi-process tests: one Redis per session, a fresh cluster per test.

Which Redis: ``CHANNELS_RPC_TEST_REDIS_URL`` if set; else a private ``redis-server`` when it is
installed; else a Redis answering on 127.0.0.1:6379; else (never under ``CI=true``) an
in-process fakeredis TCP server, which speaks the protocol, Lua included.
``CHANNELS_RPC_TEST_REDIS=fakeredis`` forces the last, to check that fallback on any machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis as AsyncRedis

from tests.integration.harness import (
    REPO,
    Cluster,
    Redis,
    child_env,
    reachable,
    start_fakeredis,
    start_redis_server,
)

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    log_dir = tmp_path_factory.mktemp("redis")
    in_ci = os.environ.get("CI", "").lower() == "true"
    forced = os.environ.get("CHANNELS_RPC_TEST_REDIS", "")
    if url := os.environ.get("CHANNELS_RPC_TEST_REDIS_URL"):
        redis = Redis(url, "external")
    elif forced == "fakeredis" and not in_ci:
        redis = start_fakeredis()
    elif shutil.which("redis-server"):
        redis = start_redis_server(log_dir)
    elif reachable("127.0.0.1", 6379):
        redis = Redis("redis://127.0.0.1:6379/0", "external")
    elif in_ci:
        pytest.fail("CI=true needs a real Redis: install redis-server or run one on :6379.")
    else:
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
    if shutil.which("redis-server"):
        redis = start_redis_server(log_dir)
    elif os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true needs redis-server installed for tests that restart Redis.")
    else:
        redis = start_fakeredis(log_dir)
    try:
        yield redis
    finally:
        redis.stop()


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
