"""The transport floor: a message to a worker queue and its answer, between two processes.

``python -m benchmarks.roundtrip``: this process sends ``{"n": i}`` to a queue of
``channels_rpc.layers.RedisChannelLayer`` and waits for the answer on its reply channel; a
child process pops the queue and answers. One message in flight: the figure is the hop's
latency with no JSON-RPC, no WebSocket and no method around it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.run import bench_redis
from channels_rpc.layers import RedisChannelLayer

QUEUE = "roundtrip.queue"


def _layer(url: str) -> RedisChannelLayer:
    return RedisChannelLayer(hosts=[url], prefix="roundtrip", capacity=100_000)


async def answer(url: str) -> None:
    layer = _layer(url)
    print("ready", flush=True)
    while True:
        for message in await layer.receive_many([QUEUE], 64, 5.0):
            if message.get("stop"):
                return
            await layer.send(message["reply"], {"type": "answer", "n": message["n"]})


async def ask(url: str, calls: int) -> list[float]:
    layer = _layer(url)
    reply = await layer.new_channel()
    seconds = []
    for n in range(calls):
        start = time.perf_counter()
        await layer.send(QUEUE, {"type": "ask", "reply": reply, "n": n})
        message = await layer.receive(reply)
        seconds.append(time.perf_counter() - start)
        if message["n"] != n:
            raise RuntimeError(f"answer {message['n']} came for message {n}")
    await layer.send(QUEUE, {"type": "ask", "stop": True})
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--answer", metavar="REDIS_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.answer:
        asyncio.run(answer(args.answer))
        return
    redis = bench_redis(Path(tempfile.mkdtemp(prefix="channels-rpc-roundtrip-")))
    argv = [sys.executable, "-m", "benchmarks.roundtrip", "--answer", redis.url]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        child.stdout.readline()  # "ready"
        ms = sorted(s * 1000 for s in asyncio.run(ask(redis.url, args.calls)))
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        redis.stop()
    p99 = ms[int(len(ms) * 0.99)]
    print(
        f"| layer round trip, 1 in flight | p50 {statistics.median(ms):.3f} ms | p99 {p99:.3f} ms |"
    )


if __name__ == "__main__":
    main()
