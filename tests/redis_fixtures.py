"""The Redis the tests use: one per session (``redis_server``), or one of a test's own.

Which Redis: ``CHANNELS_RPC_TEST_REDIS_URL`` if set; else a private ``redis-server`` when it is
installed; else, outside CI, an in-process fakeredis TCP server, which speaks the protocol, Lua
included (tests that need a real server skip, and the 20,000-call delivery test runs 2,000,
saying so in the summary). ``CHANNELS_RPC_TEST_REDIS=fakeredis`` forces it, to check that
fallback on any machine. A Redis that merely answers on 127.0.0.1:6379 is never used unasked
(it may be someone else's): give its URL. A CI run (``CI`` set to 1, true, yes or on:
:func:`workers.cluster.in_ci`) refuses fakeredis: it fails instead.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator

import pytest

from tests.integration.harness import Redis, start_fakeredis, start_redis_server
from workers.cluster import in_ci


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
