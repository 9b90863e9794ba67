"""What the sessions' route check costs a send to a reply channel (issue 13).

``python -m benchmarks.sessions_send``: sends to one reply channel of
``channels_rpc.layers.RedisChannelLayer`` in three ways, in interleaved rounds of one run:

* ``no check``: the send script without the channel's name, as before sessions existed;
* ``checked, no session``: what every send to a reply channel now does (``GET`` of the
  channel's route, which is not there);
* ``checked, session attached``: a channel with an attached session (the route, and the
  session's state, read).

Twice: one message in flight (a lone answer: the round trip dominates), and ``--concurrency``
senders at once (a busy worker: batches of many messages per script call, where the script's
own work shows). The figure is each way's best round, in sends per second, and its ratio to
``no check``.

Then pings at the layer: ``--concurrency`` askers, each with a reply channel of its own whose
session is attached, send to a queue; a worker process answers each on its reply channel,
with or without the route check (rounds alternate). Calls per second, best round of each.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from channels_rpc.layers import RedisChannelLayer

WAYS = ("no check", "checked, no session", "checked, session attached")
QUEUE = "sessions_send.queue"


async def _round(
    layer: RedisChannelLayer, senders: Sequence[tuple[str, Sequence[str]]], sends: int
) -> float:
    """Sends per second of ``sends`` messages by ``senders``: each its (channel, routes)."""
    target = layer.non_local_name(senders[0][0])
    index, key = layer.consistent_hash(target), layer.prefix + target
    sender = layer._sender()

    async def one_sender(channel: str, routes: Sequence[str], count: int) -> None:
        member = layer.serialize({"type": "rpc.response", "call": 1, "__asgi_channel__": channel})
        for _ in range(count):
            await sender.send(
                index, key, member, capacity=10**9, byte_capacity=10**12, routes=routes
            )

    count = sends // len(senders)
    started = time.perf_counter()
    await asyncio.gather(*(one_sender(c, r, count) for c, r in senders))
    elapsed = time.perf_counter() - started
    await layer.connection(index).delete(key)
    return count * len(senders) / elapsed


async def measure(
    url: str, sends: int = 5000, concurrency: int = 1, rounds: int = 5
) -> dict[str, float]:
    """The best round of each way, in sends per second (see the module docstring).

    Each sender sends to a channel of its own (a front-end's connections share one key): a
    script call reads each channel's route once, so senders sharing a channel would hide it.
    """
    layer = RedisChannelLayer(hosts=[url], prefix=f"bench{uuid.uuid4().hex[:6]}")
    plain = [await layer.new_channel() for _ in range(concurrency)]
    attached = [await layer.new_channel() for _ in range(concurrency)]
    sessions = [await layer.sessions.open(c, "bench", 30.0, 100, 65536) for c in attached]
    ways: dict[str, list[tuple[str, Sequence[str]]]] = {
        WAYS[0]: [(c, ()) for c in plain],
        WAYS[1]: [(c, (c,)) for c in plain],
        WAYS[2]: [(c, (c,)) for c in attached],
    }
    best = dict.fromkeys(WAYS, 0.0)
    try:
        await _round(layer, ways[WAYS[1]], 200)  # scripts loaded, pool warm
        for _ in range(rounds):
            for way, senders in ways.items():
                best[way] = max(best[way], await _round(layer, senders, sends))
    finally:
        for session_id in sessions:
            await layer.sessions.end(session_id)
        await layer.flush()
    return best


async def answer(url: str, prefix: str) -> None:
    """The worker of the pings: answers each on its reply channel, checking routes or not."""
    layer = RedisChannelLayer(hosts=[url], prefix=prefix, capacity=100_000)
    sender = layer._sender()
    print("ready", flush=True)

    async def reply(message: dict[str, object]) -> None:
        channel = str(message["reply"])
        target = layer.non_local_name(channel)
        member = layer.serialize({"type": "rpc.response", "__asgi_channel__": channel})
        routes = (channel,) if message["check"] else ()
        index, key = layer.consistent_hash(target), layer.prefix + target
        await sender.send(index, key, member, capacity=10**6, byte_capacity=10**9, routes=routes)

    while True:
        messages = await layer.receive_many([QUEUE], 256, 5.0)
        if any(m.get("stop") for m in messages):
            return
        await asyncio.gather(*(reply(m) for m in messages))


async def pings(url: str, prefix: str, calls: int, concurrency: int, rounds: int) -> list[float]:
    """Calls per second, best round: [without the route check, with it]."""
    layer = RedisChannelLayer(hosts=[url], prefix=prefix, capacity=100_000)
    replies = [await layer.new_channel() for _ in range(concurrency)]
    sessions = [await layer.sessions.open(c, "bench", 30.0, 100, 65536) for c in replies]

    async def asker(reply: str, count: int, check: bool) -> None:
        for _ in range(count):
            await layer.send(QUEUE, {"type": "ask", "reply": reply, "check": check})
            await layer.receive(reply)

    async def one_round(check: bool, total: int) -> float:
        started = time.perf_counter()
        count = total // concurrency
        await asyncio.gather(*(asker(reply, count, check) for reply in replies))
        return count * concurrency / (time.perf_counter() - started)

    best = [0.0, 0.0]
    try:
        await one_round(True, concurrency * 5)  # warm
        for _ in range(rounds):
            for check in (False, True):
                best[check] = max(best[check], await one_round(check, calls))
        await layer.send(QUEUE, {"type": "ask", "stop": True})
    finally:
        for session_id in sessions:
            await layer.sessions.end(session_id)
        await layer.flush()
    return best


def ping_table(best: list[float], concurrency: int) -> str:
    return "\n".join(
        [
            "| pings at the layer, in flight | way | calls/s | vs no check |",
            "|---|---|---|---|",
            f"| {concurrency} | no check | {best[0]:,.0f} | 1.00 |",
            f"| {concurrency} | checked, session attached | {best[1]:,.0f} | "
            f"{best[1] / best[0]:.2f} |",
        ]
    )


def run_pings(url: str, calls: int, concurrency: int, rounds: int) -> list[float]:
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    argv = [sys.executable, "-m", "benchmarks.sessions_send", "--answer", url, "--prefix", prefix]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        child.stdout.readline()  # "ready"
        best = asyncio.run(pings(url, prefix, calls, concurrency, rounds))
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return best


def table(results: dict[int, dict[str, float]]) -> str:
    lines = ["| in flight | way | sends/s | vs no check |", "|---|---|---|---|"]
    for concurrency, best in results.items():
        for way, rate in best.items():
            ratio = rate / best[WAYS[0]]
            lines.append(f"| {concurrency} | {way} | {rate:,.0f} | {ratio:.2f} |")
    return "\n".join(lines)


def main() -> None:
    from benchmarks.run import bench_redis

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sends", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--answer", metavar="REDIS_URL", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.answer:
        asyncio.run(answer(args.answer, args.prefix))
        return
    redis = bench_redis(Path(tempfile.mkdtemp(prefix="channels-rpc-sessions-")))
    try:
        results = {
            n: asyncio.run(measure(redis.url, args.sends, n, args.rounds))
            for n in (1, args.concurrency)
        }
        best = run_pings(redis.url, args.calls, min(args.concurrency, 64), args.rounds)
    finally:
        redis.stop()
    print(table(results))
    print()
    print(ping_table(best, min(args.concurrency, 64)))


if __name__ == "__main__":
    main()
