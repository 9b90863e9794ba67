"""Fixtures of the reliability suite: clusters on a Redis of the test's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Cluster, Redis


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
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            request.node.add_report_section("call", "cluster logs", cluster.logs())
