"""What a session costs in memory: in the front-end, and in Redis while detached (issue 13).

``python -m benchmarks.sessions_memory``: a front-end and a worker of the benchmark project
on a redis-server of the run's own, then

* front-end: ``--connections`` sockets without a session, then as many with one (each has
  called ``rpc.session`` and had one answer); daphne's RSS growth per socket, each way;
* Redis: ``--sessions`` sessions join a group, their sockets are cut (no close frame), 100
  pushes of about 200 bytes go to the group, and the size of each detached session's keys
  (``MEMORY USAGE``) is what holding those 100 frames costs.

Prints a table. Loopback only, bounded counts; every process it starts, it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import websockets
from redis.asyncio import Redis as AsyncRedis

from benchmarks.run import start
from channels_rpc.envelope import notification_frame, push_message
from channels_rpc.layers import RedisChannelLayer
from workers.cluster import Process

PUSHES = 100
GROUP = "memory"


async def open_sockets(url: str, count: int, session: bool) -> list[Any]:
    sockets = []
    for index in range(count):
        ws = await websockets.connect(url, compression=None, open_timeout=30)
        if session:
            await ws.send(json.dumps({"jsonrpc": "2.0", "method": "rpc.session", "id": index}))
            assert "result" in json.loads(await ws.recv())
        sockets.append(ws)
    return sockets


async def rss_per_socket(server: Process, url: str, count: int) -> tuple[float, float]:
    """KiB per socket without a session, then with one (opened while the first are held, so
    that the second batch cannot reuse memory the first one freed)."""
    growth = []
    held = []
    for session in (False, True):
        before = server.rss_kib()
        held += await open_sockets(url, count, session)
        await asyncio.sleep(1.0)  # let the server settle what the connections allocated
        growth.append((server.rss_kib() - before) / count)
    await asyncio.gather(*(ws.close() for ws in held), return_exceptions=True)
    return growth[0], growth[1]


async def redis_per_session(url: str, redis_url: str, prefix: str, count: int) -> float:
    """Bytes of Redis per detached session holding PUSHES pushes (MEMORY USAGE of its keys;
    ``used_memory`` moves by as much with what the rest of the run frees)."""
    redis = AsyncRedis.from_url(redis_url)
    layer = RedisChannelLayer(hosts=[redis_url], prefix=prefix)
    sockets = await open_sockets(url, count, session=True)
    for ws in sockets:
        await ws.send(json.dumps({"jsonrpc": "2.0", "method": "join", "params": [GROUP], "id": 0}))
        await ws.recv()
    for ws in sockets:
        ws.transport.abort()  # cut: the front-end detaches each session
    await asyncio.sleep(2.0)  # the front-end notices and detaches (no event to wait on here)
    text = "x" * 150
    for n in range(PUSHES):
        frame = notification_frame("news", {"n": n, "text": text})
        await layer.group_send(GROUP, push_message(frame))
    kept = held = 0
    async for key in redis.scan_iter(match=f"{prefix}*session:*"):
        held += int(await redis.memory_usage(key) or 0)
        if key.endswith(b":kept"):
            kept += int(await redis.llen(key))
    await redis.aclose()
    if kept != count * PUSHES:
        raise SystemExit(f"expected {count * PUSHES} kept frames, found {kept}")
    return held / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=50)
    args = parser.parse_args()
    targets = start(1, baseline=False)
    try:
        url, server = targets.urls["rpc"], targets.servers["rpc"]
        prefix = targets.cluster.prefix
        plain, with_session = asyncio.run(rss_per_socket(server, url, args.connections))
        redis_url = targets.cluster.redis.url
        keys = asyncio.run(redis_per_session(url, redis_url, prefix, args.sessions))
    finally:
        targets.stop()
    print("\n| what | per connection or session |\n|---|---|")
    print(f"| daphne RSS, socket without a session ({args.connections}) | {plain:.1f} KiB |")
    print(f"| daphne RSS, socket with a session ({args.connections}) | {with_session:.1f} KiB |")
    print(f"| Redis, detached session holding {PUSHES} pushes: its keys ({args.sessions}) | "
          f"{keys / 1024:.1f} KiB |")  # fmt: skip


if __name__ == "__main__":
    main()
