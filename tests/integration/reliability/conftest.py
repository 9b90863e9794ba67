"""Fixtures of the reliability suite: client sockets closed after each test, private clusters."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.integration.client import RpcSocket
from tests.integration.harness import Cluster, Redis
from tests.integration.support import Connect


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
