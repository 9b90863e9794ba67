"""Fixtures of the reliability suite: clusters on a Redis of the test's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Cluster, Redis
from tests.integration.support import logs_on_failure


@pytest.fixture
def private_cluster(
    request: pytest.FixtureRequest, private_redis: Redis, database: Path, tmp_path: Path
) -> Iterator[Cluster]:
    """An empty cluster on this test's own Redis (which the test may stop, pause or fill)."""
    cluster = Cluster(private_redis, tmp_path, database)
    try:
        yield cluster
    finally:
        cluster.stop()
        logs_on_failure(request, "cluster logs", cluster.logs)
