"""Fixtures of the reliability suite: a Redis client for the probes' counters, client sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis as AsyncRedis

from tests.integration.client import RpcSocket
from tests.integration.harness import Redis
from tests.integration.reliability.support import Connect


@pytest.fixture
async def redis_client(redis_server: Redis) -> AsyncIterator[AsyncRedis]:
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
