"""The scaling story in numbers: what a call costs Redis, and what more processes do.

    python -m benchmarks.scaling [--quick] [--repeats N]

1. Redis commands per call, by command, and Redis CPU per call, at (a) ping over 1 connection
   with 1 call in flight (nothing to batch) and (b) ping over 50 connections x 10 in flight,
   through 1 front-end + 1 worker: ``INFO commandstats``, ``INFO stats`` and ``INFO cpu``
   read before and after each load. Commands that Lua scripts run count as well as the ones
   clients send (``EVALSHA`` itself is one).
2. From (b): the calls per second one Redis core would sustain, ``1 s / Redis CPU per call``.
   A projection, not a measurement: it assumes Redis runs commands on one thread and that the
   command mix per call stays as measured (the same batching per front-end and per worker).
3. 2 front-ends x 3 workers against 1 x 1, load (b) split across the front-ends (two load
   generators at once, 25 x 10 each), every answer matched by id, CPU per call by kind of
   process.
4. Redis over loopback TCP against Redis over a Unix socket (``unix:///path/redis.sock?db=0``),
   1 front-end + 1 worker each: (a) p50 and (b) calls/s.

One redis-server of the run's own serves all of it, on a loopback port and a Unix socket;
every cluster has its own key prefix. The variants of 3 and 4 run interleaved, ``--repeats``
times, and the tables show medians. On a machine with few cores the load generators,
front-ends, workers and Redis share them: the figures are ratios and costs per call from one
run, not the capacity of a deployment.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.run import Load, loadgen
from workers.cluster import LocalCluster, Process, Redis

APP = "benchmarks.app.asgi:application"
SETTINGS = "benchmarks.app.settings"
PING = {"method": "ping"}
#: The process kinds whose CPU is counted per call (Redis' own comes from INFO cpu).
KINDS = ("frontend", "worker", "redis", "loadgen")
#: The commands that cost a round trip each, for a batch of messages: the send script and the
#: pop. (The byte counters' DECRBY and EXPIRE ride in the pop's pipeline; the other commands
#: counted run inside the scripts.)
ROUND_TRIPS = ("EVALSHA", "BZMPOP")


# -------------------------------------------------------------------------------------------
# Redis' counters: the pure part (tests/unit/test_bench_scaling.py)


def parse_info(text: str) -> dict[str, str]:
    """``INFO`` output as a mapping of its ``key:value`` lines (section headers dropped)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            key, value = line.split(":", 1)
            fields[key] = value.strip()
    return fields


@dataclass(frozen=True)
class RedisCounters:
    """What Redis has counted so far: commands (by name), their time, and its CPU."""

    calls: dict[str, int]  # command name (lower case, "client|setname" for subcommands) -> calls
    total: int  # total_commands_processed
    cpu: float  # used_cpu_sys + used_cpu_user, seconds

    @classmethod
    def parse(cls, text: str) -> RedisCounters:
        """From ``INFO commandstats stats cpu`` output."""
        info = parse_info(text)
        calls: dict[str, int] = {}
        for key, value in info.items():
            if key.startswith("cmdstat_"):
                stats = dict(item.split("=", 1) for item in value.split(","))
                calls[key.removeprefix("cmdstat_")] = int(stats["calls"])
        cpu = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        return cls(calls, int(info["total_commands_processed"]), cpu)


def per_call(before: RedisCounters, after: RedisCounters, calls: int) -> dict[str, Any]:
    """Redis' work between two readings, per RPC call.

    The INFO that took ``before`` is counted in ``after``: it is left out (``info`` by name,
    and one from the total).
    """
    calls = max(calls, 1)
    by_command = {
        name.upper(): (count - before.calls.get(name, 0)) / calls
        for name, count in sorted(after.calls.items())
        if name != "info" and count > before.calls.get(name, 0)
    }
    return {
        "commands_per_call": (after.total - before.total - 1) / calls,
        "round_trips_per_call": sum(by_command.get(name, 0.0) for name in ROUND_TRIPS),
        "by_command": by_command,
        "redis_us_per_call": (after.cpu - before.cpu) * 1e6 / calls,
    }


def projected_rate(redis_us_per_call: float) -> float:
    """Calls per second one Redis core sustains if each call costs it this much CPU."""
    return 1e6 / redis_us_per_call if redis_us_per_call > 0 else float("inf")


def combine(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The load generators of one load, run at once, as one result.

    calls/s: all calls over the longest run. p50: the mean of theirs (equal shares of one
    load); p99: the worst of theirs. Answer counts add up.
    """
    calls = sum(r["calls"] for r in results)
    seconds = max(r["seconds"] for r in results)
    out: dict[str, Any] = {
        "calls": calls,
        "seconds": seconds,
        "calls_per_s": calls / seconds,
        "p50_ms": statistics.fmean(r["p50_ms"] for r in results),
        "p99_ms": max(r["p99_ms"] for r in results),
        "client_cpu_s": sum(r["client_cpu_s"] for r in results),
    }
    for key in ("ok", "errors", "missing", "foreign"):
        out[key] = sum(r[key] for r in results)
    return out


def transports(client_list: str) -> dict[str, int]:
    """Redis' connected clients (``CLIENT LIST``) by transport, the asking one left out."""
    counts = {"tcp": 0, "unix": 0}
    for line in client_list.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields and fields.get("cmd") != "client|list":
            counts["unix" if fields.get("laddr", "").startswith("/") else "tcp"] += 1
    return counts


def resp(*args: str) -> bytes:
    """A command in the Redis protocol."""
    parts = [f"*{len(args)}\r\n"] + [f"${len(a.encode())}\r\n{a}\r\n" for a in args]
    return "".join(parts).encode()


# -------------------------------------------------------------------------------------------
# The servers


@dataclass
class BenchRedis:
    """A redis-server of the run's own, on a loopback port and a Unix socket."""

    proc: Process
    port: int
    sock: Path

    def tcp(self) -> Redis:
        return Redis(f"redis://127.0.0.1:{self.port}/0", "redis-server")

    def unix(self) -> Redis:
        return Redis(f"unix://{self.sock}?db=0", "redis-server")

    def counters(self) -> RedisCounters:
        return RedisCounters.parse(self.command("INFO", "commandstats", "stats", "cpu"))

    def command(self, *args: str) -> str:
        """One command over the Unix socket, its bulk-string answer as text."""
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(10)
            conn.connect(str(self.sock))
            conn.sendall(resp(*args))
            reply = conn.makefile("rb")
            header = reply.readline()
            if not header.startswith(b"$"):
                raise RuntimeError(f"redis answered {header!r}")
            return reply.read(int(header[1:])).decode()

    def stop(self) -> None:
        self.proc.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_redis(log_dir: Path) -> BenchRedis:
    port, sock = free_port(), log_dir / "redis.sock"
    argv = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--unixsocket", str(sock),
        "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", str(log_dir),
    ]  # fmt: skip
    proc = Process("redis", argv, dict(os.environ), log_dir)
    try:
        proc.wait_for(r"[Rr]eady to accept connections")
    except BaseException:
        proc.stop()
        raise
    return BenchRedis(proc, port, sock)


def start_cluster(redis: Redis, log_dir: Path, frontends: int, workers: int) -> LocalCluster:
    """Front-ends and workers on their own key prefix, warmed up (scripts loaded, pools open)."""
    log_dir.mkdir()
    cluster = LocalCluster(redis, log_dir, app=APP, settings=SETTINGS)
    try:
        for _ in range(frontends):
            cluster.start_frontend()
        for _ in range(workers):
            cluster.start_worker()
        for index in range(frontends):
            loadgen(cluster.url("/rpc/", index), Load(10, 10, 500, PING))
    except BaseException:
        cluster.stop()
        raise
    return cluster


# -------------------------------------------------------------------------------------------
# Measuring


def measure(cluster: LocalCluster, redis: BenchRedis, load: Load) -> dict[str, Any]:
    """``load`` split evenly across the cluster's front-ends, one load generator each, at once;
    with the CPU each kind of process spent per call and Redis' work per call."""
    n = len(cluster.frontends)
    share = Load(load.connections // n, load.in_flight, load.calls // n, load.request)
    kinds = {"frontend": cluster.frontends, "worker": cluster.workers}
    cpu_before = {kind: sum(p.cpu_seconds() for p in procs) for kind, procs in kinds.items()}
    before = redis.counters()
    with ThreadPoolExecutor(n) as pool:
        runs = list(pool.map(lambda i: loadgen(cluster.url("/rpc/", i), share), range(n)))
    after = redis.counters()
    result = combine(runs)
    calls = max(result["ok"] + result["errors"], 1)
    for kind, procs in kinds.items():
        spent = sum(p.cpu_seconds() for p in procs) - cpu_before[kind]
        result[f"{kind}_us_per_call"] = spent * 1e6 / calls
    result["loadgen_us_per_call"] = result["client_cpu_s"] * 1e6 / calls
    result.update(per_call(before, after, calls))
    return result


def loads(quick: bool) -> dict[str, Load]:
    return {
        "a": Load(1, 1, 800 if quick else 3000, PING),
        "b": Load(50, 10, 5000 if quick else 20000, PING),
    }


def median_of(runs: Sequence[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs) if runs else float("nan")


def median_commands(runs: Sequence[dict[str, Any]]) -> dict[str, float]:
    names = sorted({name for r in runs for name in r["by_command"]})
    return {n: statistics.median(r["by_command"].get(n, 0.0) for r in runs) for n in names}


def _show(label: str, result: dict[str, Any]) -> None:
    print(
        f"  {label}: {result['calls_per_s']:,.0f} calls/s, p50 {result['p50_ms']:.2f} ms, "
        f"p99 {result['p99_ms']:.2f} ms, {result['commands_per_call']:.2f} Redis commands and "
        f"{result['redis_us_per_call']:.1f} us Redis CPU per call, ok={result['ok']} "
        f"errors={result['errors']} missing={result['missing']} foreign={result['foreign']}",
        flush=True,
    )


def scaling_story(quick: bool, repeats: int | None = None) -> dict[str, Any]:
    """Run the four parts (module docstring) and return their figures and their tables."""
    repeats = repeats or (1 if quick else 3)
    load = loads(quick)
    log_dir = Path(tempfile.mkdtemp(prefix="channels-rpc-scaling-"))
    redis = start_redis(log_dir)
    clusters: list[LocalCluster] = []

    def start(name: str, url: Redis, frontends: int, workers: int) -> LocalCluster:
        clusters.append(start_cluster(url, log_dir / name, frontends, workers))
        return clusters[-1]

    runs: dict[str, list[dict[str, Any]]] = {}

    def run(name: str, cluster: LocalCluster, key: str) -> None:
        runs.setdefault(f"{name} {key}", []).append(measure(cluster, redis, load[key]))
        _show(f"{name} ({key})", runs[f"{name} {key}"][-1])

    started = time.monotonic()
    try:
        small = start("tcp-1x1", redis.tcp(), 1, 1)
        print("1. Redis commands per call: 1 front-end + 1 worker over TCP, alone", flush=True)
        for _ in range(repeats):
            for key in ("a", "b"):
                run("alone", small, key)
        big = start("tcp-2x3", redis.tcp(), 2, 3)
        unix, unix_error = start_unix(start, redis)
        clients = transports(redis.command("CLIENT", "LIST"))
        print(f"Redis clients: {clients['tcp']} over TCP, {clients['unix']} over the Unix socket")
        print("3, 4. 1 x 1 (TCP), 1 x 1 (Unix socket), 2 x 3 (TCP), interleaved", flush=True)
        plan = [("tcp", small, "a"), ("unix", unix, "a"), ("tcp", small, "b"),
                ("unix", unix, "b"), ("2x3", big, "b")]  # fmt: skip
        for repeat in range(repeats):
            # A B ... then ... B A: no variant always runs first (the machine drifts).
            for name, cluster, key in plan if repeat % 2 == 0 else plan[::-1]:
                if cluster is not None:
                    run(name, cluster, key)
    finally:
        for cluster in clusters:
            cluster.stop()
        redis.stop()
    story = summarize(runs, repeats, quick, unix_error)
    story["transport"]["clients"] = clients
    story["seconds"] = time.monotonic() - started
    story["table"] = table(story)
    return story


def start_unix(
    start: Callable[[str, Redis, int, int], LocalCluster], redis: BenchRedis
) -> tuple[LocalCluster | None, str | None]:
    """A 1 x 1 cluster on the Unix socket, or what failed when the library cannot use it."""
    try:
        return start("unix-1x1", redis.unix(), 1, 1), None
    except Exception as exc:  # reported in the table: the comparison is then left out
        return None, f"{type(exc).__name__}: {exc}"[:2000]


def summarize(
    runs: dict[str, list[dict[str, Any]]], repeats: int, quick: bool, unix_error: str | None
) -> dict[str, Any]:
    def medians(name: str) -> dict[str, Any]:
        figures = runs.get(name, [])
        keys = ("calls_per_s", "p50_ms", "p99_ms", "commands_per_call", "round_trips_per_call")
        out: dict[str, Any] = {k: median_of(figures, k) for k in keys}
        out.update({f"{k}_us_per_call": median_of(figures, f"{k}_us_per_call") for k in KINDS})
        out["by_command"] = median_commands(figures) if figures else {}
        answers = ("ok", "errors", "missing", "foreign")
        out["answers"] = {k: sum(r[k] for r in figures) for k in answers}
        return out

    alone = {key: medians(f"alone {key}") for key in ("a", "b")}
    return {
        "repeats": repeats,
        "quick": quick,
        "cores": os.cpu_count(),
        "loads": {k: vars(v) for k, v in loads(quick).items()},
        "per_call": alone,
        "projected_calls_per_s_per_redis_core": projected_rate(alone["b"]["redis_us_per_call"]),
        "one_by_one": medians("tcp b"),
        "two_by_three": medians("2x3 b"),
        "transport": {
            "tcp": {"a": medians("tcp a"), "b": medians("tcp b")},
            "unix": {"a": medians("unix a"), "b": medians("unix b")} if not unix_error else {},
            "unix_error": unix_error,
        },
        "runs": runs,
    }


# -------------------------------------------------------------------------------------------
# The tables


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def per_call_table(story: dict[str, Any]) -> list[str]:
    a, b = story["per_call"]["a"], story["per_call"]["b"]
    rows = [
        "Redis per call, 1 front-end + 1 worker over TCP (ping; commands run by scripts included)",
        "",
        _row("", "(a) 1 connection, 1 in flight", "(b) 50 connections x 10 in flight"),
        "|---|---|---|",
        _row("calls/s", f"{a['calls_per_s']:,.0f}", f"{b['calls_per_s']:,.0f}"),
        _row("Redis commands per call", f"{a['commands_per_call']:.2f}",
             f"{b['commands_per_call']:.2f}"),
    ]  # fmt: skip
    rows.append(_row("... EVALSHA + BZMPOP (round trips)", f"{a['round_trips_per_call']:.3f}",
                     f"{b['round_trips_per_call']:.3f}"))  # fmt: skip
    for name in sorted(set(a["by_command"]) | set(b["by_command"])):
        rows.append(
            _row(f"... {name}", f"{a['by_command'].get(name, 0.0):.3f}",
                 f"{b['by_command'].get(name, 0.0):.3f}")
        )  # fmt: skip
    rows += [
        _row("Redis CPU per call (INFO cpu)", f"{a['redis_us_per_call']:.1f} us",
             f"{b['redis_us_per_call']:.1f} us"),
    ]  # fmt: skip
    rate = story["projected_calls_per_s_per_redis_core"]
    rows += [
        "",
        f"Projected calls/s one Redis core sustains at the (b) mix: 1 s / "
        f"{b['redis_us_per_call']:.1f} us = {rate:,.0f} (a projection: Redis runs commands on "
        f"one thread; the command mix per call stays as measured; loopback TCP).",
    ]
    return rows


def scale_table(story: dict[str, Any]) -> list[str]:
    one, two = story["one_by_one"], story["two_by_three"]

    def line(label: str, key: str, fmt: Callable[[float], str]) -> str:
        ratio = two[key] / one[key] if one[key] else float("nan")
        return _row(label, fmt(one[key]), fmt(two[key]), f"{ratio:.2f}x")

    def us(value: float) -> str:
        return f"{value:.0f} us"

    def ms(value: float) -> str:
        return f"{value:.2f} ms"

    pairs = (("1", one), ("2", two))
    total = {name: sum(f[f"{k}_us_per_call"] for k in KINDS) for name, f in pairs}
    busy = {name: total[name] * f["calls_per_s"] / 1e6 for name, f in pairs}
    answers = [", ".join(f"{v:,} {k}" for k, v in f["answers"].items()) for f in (one, two)]
    return [
        f"1 x 1 against 2 front-ends x 3 workers, ping 50 x 10 (2 x 3: two load generators "
        f"of 25 x 10, one per front-end); {story['cores']} cores shared by every process",
        "",
        _row("", "1 front-end x 1 worker", "2 front-ends x 3 workers", "2x3 / 1x1"),
        "|---|---|---|---|",
        line("calls/s", "calls_per_s", lambda v: f"{v:,.0f}"),
        line("p50 (2x3: mean of the two)", "p50_ms", ms),
        line("p99 (2x3: worse of the two)", "p99_ms", ms),
        _row("answers, all runs", answers[0], answers[1], ""),
        line("front-end CPU per call (all)", "frontend_us_per_call", us),
        line("worker CPU per call (all)", "worker_us_per_call", us),
        line("Redis CPU per call", "redis_us_per_call", us),
        line("load generator CPU per call", "loadgen_us_per_call", us),
        _row("CPU per call, every process", us(total["1"]), us(total["2"]),
             f"{total['2'] / total['1']:.2f}x"),
        _row("cores busy (calls/s x CPU per call)", f"{busy['1']:.2f}", f"{busy['2']:.2f}",
             f"of {story['cores']}"),
        line("Redis commands per call", "commands_per_call", lambda v: f"{v:.2f}"),
    ]  # fmt: skip


def transport_table(story: dict[str, Any]) -> list[str]:
    transport = story["transport"]
    if transport["unix_error"]:
        return [f"Redis on a Unix socket failed: {transport['unix_error']}"]
    tcp, unix, clients = transport["tcp"], transport["unix"], transport["clients"]

    def line(label: str, key: str, metric: str, fmt: str) -> str:
        t, u = tcp[key][metric], unix[key][metric]
        return _row(label, format(t, fmt), format(u, fmt), f"{u / t:.2f}x")

    return [
        "Redis over loopback TCP against a Unix socket, 1 front-end + 1 worker",
        "",
        _row("", "TCP 127.0.0.1", "Unix socket", "Unix / TCP"),
        "|---|---|---|---|",
        line("(a) ping p50, ms", "a", "p50_ms", ".3f"),
        line("(b) ping calls/s", "b", "calls_per_s", ",.0f"),
        line("(b) Redis CPU per call, us", "b", "redis_us_per_call", ".1f"),
        line("(b) front-end CPU per call, us", "b", "frontend_us_per_call", ".0f"),
        "",
        f"Redis clients while both ran: {clients['tcp']} over TCP, {clients['unix']} over the "
        "Unix socket (only the Unix-socket cluster was given it).",
    ]


def table(story: dict[str, Any]) -> str:
    parts = [per_call_table(story), scale_table(story), transport_table(story)]
    footer = f"medians of {story['repeats']} runs, interleaved; {story['cores']} cores"
    return "\n\n".join("\n".join(p) for p in parts) + f"\n\n{footer}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer calls, one run")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    story = scaling_story(args.quick, args.repeats)
    if args.json is not None:
        args.json.write_text(json.dumps(story, indent=2))
    print("\n" + story["table"] + f"\n\n({story['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
