"""The load generator: C connections, N calls in flight on each, every answer matched by id.

Runs in its own process (``python -m benchmarks.loadgen ...``), prints one JSON line, so that
its CPU does not count as the server's and the server's does not slow it down in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
from typing import Any

import websockets


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def _open_session(ws: Any) -> None:
    """Ask for a session (docs/reference/sessions.md), as this package's clients do by default."""
    await ws.send('{"jsonrpc":"2.0","method":"rpc.session","id":"session"}')
    answer = json.loads(await ws.recv())
    if "result" not in answer:
        raise SystemExit(f"no session: {answer}")


class _Acks:
    """Acknowledges the highest ``seq`` seen, at most once a second (as the clients do)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.seen = 0
        self.sent_at = time.perf_counter()

    async def saw(self, answer: dict[str, Any], now: float) -> None:
        self.seen = max(self.seen, answer.get("seq", 0))
        if now - self.sent_at >= 1.0:
            self.sent_at = now
            ack = {"jsonrpc": "2.0", "method": "rpc.ack", "params": {"seq": self.seen}}
            await self.ws.send(json.dumps(ack))


async def _connection(
    url: str,
    calls: int,
    in_flight: int,
    payload: str,
    latencies: list[float],
    tally: dict[str, int],
    session: bool = False,
) -> None:
    async with websockets.connect(url, max_size=None, compression=None) as ws:
        window = asyncio.Semaphore(in_flight)
        sent: dict[int, float] = {}
        done = asyncio.Event()
        expected = calls
        if session:
            await _open_session(ws)
        acks = _Acks(ws) if session else None

        async def reader() -> None:
            nonlocal expected
            async for frame in ws:
                now = time.perf_counter()
                answer = json.loads(frame)
                if acks is not None:
                    await acks.saw(answer, now)
                started = sent.pop(answer.get("id"), None)
                if started is None:
                    tally["foreign"] += 1
                    continue
                latencies.append(now - started)
                tally["errors" if "error" in answer else "ok"] += 1
                window.release()
                expected -= 1
                if expected == 0:
                    done.set()
                    return

        task = asyncio.create_task(reader())
        for n in range(calls):
            await window.acquire()
            sent[n] = time.perf_counter()
            await ws.send(payload.replace('"id":0', f'"id":{n}', 1))
        await asyncio.wait_for(done.wait(), 120)
        await task
        tally["missing"] += len(sent)


async def run(
    url: str,
    connections: int,
    in_flight: int,
    calls: int,
    request: dict[str, Any],
    session: bool = False,
) -> dict[str, Any]:
    payload = json.dumps({**request, "jsonrpc": "2.0", "id": 0}, separators=(",", ":"))
    latencies: list[float] = []
    tally = {"ok": 0, "errors": 0, "foreign": 0, "missing": 0}
    per = calls // connections
    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _connection(url, per, in_flight, payload, latencies, tally, session)
            for _ in range(connections)
        )
    )
    elapsed = time.perf_counter() - started
    return {
        "calls": per * connections,
        "seconds": elapsed,
        "calls_per_s": per * connections / elapsed,
        "p50_ms": _percentile(latencies, 0.5) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else 0.0,
        "client_cpu_s": time.process_time() - cpu,
        **tally,
    }


async def hold_idle(url: str, connections: int) -> None:
    """Open ``connections`` sockets, say so on stdout, keep them until stdin closes."""
    sockets = []
    for _ in range(connections):
        sockets.append(await websockets.connect(url, compression=None, open_timeout=30))
    print(json.dumps({"open": len(sockets)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    open_at_end = sum(1 for ws in sockets if ws.state.name == "OPEN")
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    print(json.dumps({"still_open": open_at_end}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--in-flight", type=int, default=1)
    parser.add_argument("--calls", type=int, default=1000)
    # "-" reads the request from stdin: a 256 KiB payload does not fit in an argument list.
    parser.add_argument("--request", default='{"method": "ping"}', help='JSON, or "-" for stdin')
    parser.add_argument("--idle", type=int, default=0, help="Only hold this many idle sockets.")
    parser.add_argument("--session", action="store_true", help="Each connection opens a session.")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.idle:
        asyncio.run(hold_idle(args.url, args.idle))
        return
    request = json.loads(sys.stdin.read() if args.request == "-" else args.request)
    load = (args.url, args.connections, args.in_flight, args.calls, request, args.session)
    result = asyncio.run(run(*load))
    result["pid"] = os.getpid()
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
