"""Fixtures of the reliability suite: client sockets closed after each test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.integration.client import RpcSocket
from tests.integration.support import Connect


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
