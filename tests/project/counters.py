"""Counters shared by every process of a test: Redis when configured, else this process's memory."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any

_local: Counter[str] = Counter()
_clients: dict[asyncio.AbstractEventLoop, Any] = {}


def _key(name: str) -> str:
    return f"{os.environ.get('CHANNELS_PREFIX', 'asgi')}:test:{name}"


def _client() -> Any:
    url = os.environ.get("REDIS_URL")
    if not url:
        return None
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        from redis.asyncio import Redis

        _clients[loop] = Redis.from_url(url)
    return _clients[loop]


async def incr(name: str) -> None:
    client = _client()
    if client is None:
        _local[name] += 1
    else:
        await client.incr(_key(name))


async def hincr(name: str, field: str) -> None:
    client = _client()
    if client is None:
        _local[f"{name}:{field}"] += 1
    else:
        await client.hincrby(_key(name), field, 1)


def local(name: str) -> int:
    return _local[name]


def key(name: str) -> str:
    """The Redis key holding counter ``name`` (for tests reading it directly)."""
    return _key(name)
