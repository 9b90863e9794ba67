"""What the integration modules share: waiting on a condition, reading a probe's counter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import pytest
from redis.asyncio import Redis as AsyncRedis

from tests.integration.client import RpcSocket
from tests.integration.harness import Cluster

__all__ = ["ClusterFactory", "Connect", "counter", "wait_until"]

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
