"""``make bench`` / ``make bench-quick``: this package against channels-rpc 1.0.1, in one run.

Targets, all on daphne and loopback, measured in the same sitting (the machine drifts by tens of
percent between sittings, so only ratios from one run mean anything):

* ``rpc``: this package, 1 front-end + rpcworker process(es) + Redis (methods in the workers);
* ``uvicorn``: the same, through a second front-end of the cluster that is uvicorn, not daphne;
* ``v1``: channels-rpc 1.0.1 from PyPI, in a virtualenv of its own (methods in the front-end);
* ``raw``: a bare Channels consumer answering each frame, no JSON-RPC library (the floor);
* ``celery``: what a Django team builds instead (benchmarks/celery_peer): a Channels consumer
  on daphne that hands each call to a Celery task on the same Redis and waits for its result in
  a thread; a prefork Celery worker, a process per core. It runs fewer calls (it is slower).

Each scenario runs every target in turn, ``--repeats`` times interleaved; the table shows
medians. Every answer is matched to its request by id: a run with a lost, duplicated or foreign
answer is reported, never averaged away.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.cluster import (
    LISTENING,
    REPO,
    LocalCluster,
    Process,
    Redis,
    frontend_command,
    reachable,
    start_redis_server,
)

UPSTREAM_VENV = REPO / ".bench" / "upstream"
UPSTREAM_PINS = ["channels-rpc==1.0.1", "channels==4.3.2", "daphne==4.2.3", "Django==5.2.19"]


@dataclass(frozen=True)
class Load:
    connections: int
    in_flight: int
    calls: int
    request: dict[str, Any]


@dataclass
class Targets:
    """The servers of one run: this package's cluster and channels-rpc 1.0.1's daphne."""

    cluster: LocalCluster
    urls: dict[str, str] = field(default_factory=dict)
    servers: dict[str, Process] = field(default_factory=dict)
    #: This package with METRICS off: a front-end and workers of their own, same Redis.
    unmetered: LocalCluster | None = None
    #: The Celery peer's worker (the prefork master; its pool are its children).
    celery_worker: Process | None = None

    @property
    def workers(self) -> list[Process]:
        return self.cluster.workers

    def workers_of(self, target: str) -> list[Process]:
        if target == NO_METRICS and self.unmetered is not None:
            return self.unmetered.workers
        if target == CELERY and self.celery_worker is not None:
            return [self.celery_worker]
        return self.workers if target in ("rpc", SESSIONS, UVICORN) else []

    def stop(self) -> None:
        """Stop every process started, by pid: the front-ends before what they wait on."""
        for name in ("v1", CELERY):
            if name in self.servers:
                self.servers[name].stop()
        if self.celery_worker is not None:
            self.celery_worker.stop_with_children()
        self.cluster.stop()
        if self.unmetered is not None:
            self.unmetered.stop()
        self.cluster.redis.stop()


def ensure_upstream_venv() -> Path:
    python = UPSTREAM_VENV / "bin" / "python"
    if not python.exists():
        print("creating the channels-rpc 1.0.1 virtualenv in .bench/upstream ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(UPSTREAM_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *UPSTREAM_PINS], check=True)
    return python


def bench_redis(log_dir: Path) -> Redis:
    """A redis-server of the run's own (unmeasured traffic stays out), else 127.0.0.1:6379."""
    if shutil.which("redis-server"):
        return start_redis_server(log_dir)
    if reachable("127.0.0.1", 6379):
        return Redis("redis://127.0.0.1:6379/0", "external")
    raise SystemExit("the benchmarks need Redis: install redis-server or run one on :6379")


def start(
    workers: int,
    queues: Sequence[Sequence[str]] = (),
    *,
    baseline: bool = True,
    peers: bool = False,
    worker_args: Sequence[str] = (),
) -> Targets:
    """The servers; ``queues`` names each worker's queues (default: every queue, each).

    ``baseline``: also start channels-rpc 1.0.1, for the scenarios that compare with it;
    ``peers``: also a uvicorn front-end of the cluster, and the Celery peer.
    """
    log_dir = Path(tempfile.mkdtemp(prefix="channels-rpc-bench-"))
    cluster = LocalCluster(
        bench_redis(log_dir),
        log_dir,
        app="benchmarks.app.asgi:application",
        settings="benchmarks.app.settings",
    )
    targets = Targets(cluster)
    try:
        ours = cluster.start_frontend()
        for index in range(workers):
            cluster.start_worker(queues[index] if queues else (), args=worker_args)
        targets.servers["rpc"] = targets.servers["raw"] = targets.servers[SESSIONS] = ours
        targets.urls["rpc"] = targets.urls[SESSIONS] = cluster.url("/rpc/")
        targets.urls["raw"] = cluster.url("/raw/")
        if baseline:
            targets.servers["v1"], port = start_upstream(log_dir)
            targets.urls["v1"] = f"ws://127.0.0.1:{port}/rpc/"
            targets.unmetered = unmetered = LocalCluster(
                cluster.redis, log_dir, app=cluster.app, settings=cluster.settings,
                env_extra={"RPC_METRICS": "0"},
            )  # fmt: skip
            targets.servers[NO_METRICS] = unmetered.start_frontend()
            for index in range(workers):
                unmetered.start_worker(queues[index] if queues else ())
            targets.urls[NO_METRICS] = unmetered.url("/rpc/")
        if peers:
            targets.servers[UVICORN] = cluster.start_frontend(server="uvicorn")
            targets.urls[UVICORN] = cluster.url("/rpc/", frontend=len(cluster.frontends) - 1)
            start_celery(targets, log_dir)
    except BaseException:
        targets.stop()
        raise
    return targets


def start_upstream(log_dir: Path) -> tuple[Process, int]:
    """channels-rpc 1.0.1 on daphne, from its own virtualenv (no trace of this repository)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    argv = [str(ensure_upstream_venv()), "-m", "daphne", "-e", "tcp:port=0:interface=127.0.0.1",
            "asgi:application"]  # fmt: skip
    proc = Process("daphne-v1", argv, env, log_dir, cwd=REPO / "benchmarks" / "upstream_app")
    try:
        port = int(proc.wait_for(r"Listening on TCP address 127\.0\.0\.1:(\d+)").group(1))
    except BaseException:
        proc.stop()
        raise
    return proc, port


def start_celery(targets: Targets, log_dir: Path) -> None:
    """The Celery peer: its prefork worker (a process per core), then its daphne."""
    cluster = targets.cluster
    env = {
        **cluster.env(CELERY_PEER_PREFIX=f"{cluster.prefix}:celery:"),  # its keys apart from ours
        "DJANGO_SETTINGS_MODULE": "benchmarks.celery_peer.settings",
    }
    argv = [sys.executable, "-m", "celery", "-A", "benchmarks.celery_peer.celery_app", "worker",
            "--pool", "prefork", "--concurrency", str(os.cpu_count() or 1), "--loglevel", "INFO",
            # No broadcasts between workers (there is one): nothing but the calls to measure.
            "--without-mingle", "--without-gossip", "--without-heartbeat",
            "--hostname", f"bench-{cluster.prefix}@%h"]  # fmt: skip
    targets.celery_worker = Process("celery-worker", argv, env, log_dir)  # stop() stops it
    targets.celery_worker.wait_for(r"@\S+ ready\.")
    argv = [*frontend_command("daphne"), "benchmarks.celery_peer.asgi:application"]
    server = targets.servers[CELERY] = Process("daphne-celery", argv, env, log_dir)
    port = int(server.wait_for(LISTENING["daphne"]).group(1))
    targets.urls[CELERY] = f"ws://127.0.0.1:{port}/rpc/"


def loadgen(url: str, load: Load, session: bool = False) -> dict[str, Any]:
    argv = [
        sys.executable, "-m", "benchmarks.loadgen", url,
        "--connections", str(load.connections), "--in-flight", str(load.in_flight),
        "--calls", str(load.calls), "--request", "-", *(["--session"] if session else []),
    ]  # fmt: skip
    out = subprocess.run(
        argv, input=json.dumps(load.request), cwd=REPO, capture_output=True, text=True,
        check=True, timeout=600,
    )  # fmt: skip
    return dict(json.loads(out.stdout))


def measure(targets: Targets, target: str, load: Load) -> dict[str, Any]:
    """One load against one target, with the CPU its server (and workers) spent per call."""
    server = targets.servers[target]
    on_redis = target in ("rpc", SESSIONS, NO_METRICS, UVICORN, CELERY)
    workers = targets.workers_of(target)
    redis_proc = targets.cluster.redis.proc
    redis = [redis_proc] if on_redis and redis_proc is not None else []
    processes = (server, *workers, *redis)
    before = [p.cpu_seconds(children=True) for p in processes]
    result = loadgen(targets.urls[target], fewer(target, load), session=target == SESSIONS)
    after = [p.cpu_seconds(children=True) for p in processes]
    spent = [b - a for a, b in zip(before, after, strict=True)]
    calls = max(result["ok"] + result["errors"], 1)
    result["frontend_us_per_call"] = spent[0] * 1e6 / calls
    result["worker_us_per_call"] = sum(spent[1 : 1 + len(workers)]) * 1e6 / calls
    result["redis_us_per_call"] = sum(spent[1 + len(workers) :]) * 1e6 / calls
    result["correct"] = result["foreign"] == 0 and result["missing"] == 0 and result["errors"] == 0
    return result


def fewer(target: str, load: Load) -> Load:
    """The Celery peer runs an eighth of the calls (at least 20 a connection): it is slow enough
    that the full count would take minutes a scenario."""
    if target != CELERY:
        return load
    return Load(load.connections, load.in_flight, max(load.calls // 8, 20 * load.connections),
                load.request)  # fmt: skip


def idle_memory(targets: Targets, target: str, sockets: int) -> float:
    """KiB of server memory per idle connection."""
    server = targets.servers[target]
    argv = [
        sys.executable,
        "-m",
        "benchmarks.loadgen",
        targets.urls[target],
        "--idle",
        str(sockets),
    ]
    holder = subprocess.Popen(
        argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        before = server.rss_kib()
        assert holder.stdout is not None
        holder.stdout.readline()  # {"open": N}
        time.sleep(1.0)  # let the server settle what the connections allocated
        after = server.rss_kib()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(60)
    return (after - before) / sockets


RATE = "calls_per_s"
#: This package with every connection in a session (docs/reference/sessions.md): seq on every frame.
SESSIONS = "sessions"
#: This package with CHANNELS_RPC["METRICS"] off (docs/guides/metrics.md): no per-call counting.
NO_METRICS = "nometrics"
#: This package through a uvicorn front-end (same workers and Redis).
UVICORN = "uvicorn"
#: The Celery peer (benchmarks/celery_peer).
CELERY = "celery"


@dataclass
class Scenario:
    key: str
    title: str
    targets: tuple[str, ...]
    load: Load
    metric: str  # the result field the table shows
    #: Scenarios of one group run their repeats in turn (h1, h1u, h1, h1u, ...), not one after
    #: the other: the machine drifts by more within a minute than what they compare.
    group: str = ""


def scenarios(quick: bool) -> list[Scenario]:
    def load(connections: int, in_flight: int, full: int, fast: int, **request: Any) -> Load:
        return Load(connections, in_flight, fast if quick else full, request)

    everyone = ("rpc", UVICORN, SESSIONS, NO_METRICS, "v1", "raw", CELERY)
    libraries, payloads = ("rpc", "v1", CELERY), ("rpc", UVICORN, "v1", CELERY)
    sleep, kib = {"method": "sleep", "params": [10]}, "x" * 1024
    return [
        Scenario("a", "ping, 1 connection", everyone,
                 load(1, 1, 3000, 800, method="ping"), "p50_ms"),
        Scenario("b", "ping, 50 x 10", everyone,
                 load(50, 10, 30000, 8000, method="ping"), RATE),
        # add(a: float, b: float): its params validated on both sides of the hop (typed params);
        # the same method unannotated, validated by nobody, prices the validation.
        Scenario("h1", "add(1, 2), 1 connection", ("rpc", "v1"),
                 load(1, 1, 3000, 800, method="add", params=[1, 2]), "p50_ms", "h1"),
        Scenario("h1u", "add_untyped(1, 2), 1 connection", ("rpc",),
                 load(1, 1, 3000, 800, method="add_untyped", params=[1, 2]), "p50_ms", "h1"),
        Scenario("h2", "add(1, 2), 50 x 10", ("rpc", "v1"),
                 load(50, 10, 30000, 8000, method="add", params=[1, 2]), RATE, "h2"),
        Scenario("h2u", "add_untyped(1, 2), 50 x 10", ("rpc",),
                 load(50, 10, 30000, 8000, method="add_untyped", params=[1, 2]), RATE, "h2"),
        Scenario("c1", "sleep(10 ms), 1 x 10", libraries, load(1, 10, 2000, 500, **sleep), RATE),
        Scenario("c2", "sleep(10 ms), 20 x 10", libraries,
                 load(20, 10, 10000, 3000, **sleep), RATE),
        Scenario("g1", "echo 1 KiB, 4 x 4", payloads,
                 load(4, 4, 8000, 2000, method="echo", params=[kib]), RATE),
        Scenario("g2", "echo 256 KiB, 1 x 1", payloads,
                 load(1, 1, 300, 100, method="echo", params=[kib * 256]), RATE),
    ]  # fmt: skip


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run_scenarios(
    targets: Targets, repeats: int, quick: bool, only: Sequence[str] = ()
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    chosen = [scenario for scenario in scenarios(quick) if not only or scenario.key in only]
    warm_up(targets, dict.fromkeys(t for scenario in chosen for t in scenario.targets))
    groups: dict[str, list[Scenario]] = {}
    for scenario in chosen:
        groups.setdefault(scenario.group or scenario.key, []).append(scenario)
    for group in groups.values():
        for repeat in range(repeats):
            for scenario in group if repeat % 2 == 0 else group[::-1]:
                per_target = results.setdefault(scenario.key, {t: [] for t in scenario.targets})
                _run_once(targets, scenario, repeat, per_target)
    return results


def _run_once(
    targets: Targets, scenario: Scenario, repeat: int, per_target: dict[str, list[dict[str, Any]]]
) -> None:
    # A different order each time: a target measured right after a heavy one (the Celery peer
    # leaves its pool settling) would otherwise always pay for it.
    shift = repeat % len(scenario.targets)
    for target in scenario.targets[shift:] + scenario.targets[:shift]:
        result = measure(targets, target, scenario.load)
        per_target[target].append(result)
        value = result[scenario.metric]
        print(
            f"  {scenario.key} {target} #{repeat + 1}: {scenario.metric}={value:.3f} "
            f"ok={result['ok']} errors={result['errors']} missing={result['missing']}",
            flush=True,
        )


def warm_up(targets: Targets, names: Iterable[str]) -> None:
    """A few calls to every target first: a fresh server's first connections pay for what it
    sets up once (imports, connections to Redis), which would count against whichever target
    a scenario measures first."""
    for name in names:
        loadgen(targets.urls[name], Load(2, 2, 100, {"method": "ping"}), session=name == SESSIONS)


def isolation_of_variant(
    title: str, burner: str, repeats: int, quick: bool, **start_options: Any
) -> list[float]:
    """(d) on this package alone, 2 workers started with ``start_options`` (their queues,
    their arguments), the CPU burnt by the method ``burner``."""
    targets = start(2, baseline=False, **start_options)
    try:
        print(f"scenario (d): {title}", flush=True)
        return isolation(targets, repeats, quick, {"rpc": burner})["rpc"]
    finally:
        targets.stop()


def isolation(
    targets: Targets, repeats: int, quick: bool, burners: dict[str, str]
) -> dict[str, list[float]]:
    """(d) ping p99 on one connection while 10 others run a 50 ms CPU-bound method.

    ``burners`` maps each target to the method that burns the CPU on it.
    """
    out: dict[str, list[float]] = {target: [] for target in burners}
    burn_calls = n_calls(quick, 200, 80)
    ping = Load(1, 1, n_calls(quick, 400, 150), {"method": "ping"})
    for _ in range(repeats):
        for target, method in burners.items():
            argv = [sys.executable, "-m", "benchmarks.loadgen", targets.urls[target],
                    "--connections", "10", "--in-flight", "1", "--calls", str(burn_calls),
                    "--request", json.dumps({"method": method, "params": [50]})]  # fmt: skip
            background = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL)
            try:
                time.sleep(0.5)  # the background load must be running before pings are timed
                out[target].append(loadgen(targets.urls[target], ping)["p99_ms"])
            finally:
                background.wait(300)
            print(f"  d {target} ({method}): ping p99 {out[target][-1]:.2f} ms", flush=True)
    return out


def n_calls(quick: bool, full: int, fast: int) -> int:
    return fast if quick else full


def scaling(
    stack_factory: Callable[[int], Targets], repeats: int, quick: bool
) -> dict[str, list[float]]:
    """(e) a CPU-bound method through 1 and through 2 workers."""
    load = Load(8, 1, n_calls(quick, 400, 120), {"method": "cpu", "params": [20]})
    out: dict[str, list[float]] = {"1": [], "2": []}
    for workers in (1, 2):
        targets = stack_factory(workers)
        try:
            for _ in range(repeats):
                out[str(workers)].append(measure(targets, "rpc", load)["calls_per_s"])
                print(f"  e {workers} worker(s): {out[str(workers)][-1]:.0f} calls/s", flush=True)
        finally:
            targets.stop()
    return out


def _row(label: str, ours: str, v1: str, raw: str, ratio: str, target: str) -> str:
    return f"| {label} | {ours} | {v1} | {raw} | {ratio} | {target} |"


def table(results: dict[str, Any], repeats: int) -> str:
    runs = results["scenarios"]

    def m(key: str, target: str, metric: str = "calls_per_s") -> float:
        return median([r[metric] for r in runs[key][target]])

    def ms(value: float) -> str:
        return f"{value:.2f} ms"

    def rate(value: float) -> str:
        return f"{value:,.0f}"

    lat = [m("a", t, "p50_ms") for t in ("rpc", "v1", "raw")]
    thr = [m("b", t) for t in ("rpc", "v1", "raw")]
    rows = [
        _row("scenario", "channels-rpc (this)", "channels-rpc 1.0.1", "raw Channels", "ratio",
             "target"),
        "|---|---|---|---|---|---|",
        _row("(a) ping p50, 1 connection", ms(lat[0]), ms(lat[1]), ms(lat[2]),
             f"{lat[0] / lat[1]:.2f}x", "<= 2x"),
        _row("(b) ping calls/s, 50 x 10", rate(thr[0]), rate(thr[1]), rate(thr[2]),
             f"{thr[0] / thr[1]:.2f}x", ">= 1.0x (floor 0.5x)"),
    ]  # fmt: skip
    rows.extend(_typed_rows(m))
    on = (m("a", SESSIONS, "p50_ms"), m("b", SESSIONS))
    rows.append(_row("(a) ... sessions on", ms(on[0]), "-", "-",
                     f"{on[0] / lat[0]:.2f}x of off", "<= 1.1x"))  # fmt: skip
    rows.append(_row("(b) ... sessions on", rate(on[1]), "-", "-",
                     f"{on[1] / thr[0]:.2f}x of off", ">= 0.9x"))  # fmt: skip
    off = (m("a", NO_METRICS, "p50_ms"), m("b", NO_METRICS))
    rows.append(_row("(a) ... metrics off", ms(off[0]), "-", "-",
                     f"on {lat[0] / off[0]:.2f}x of off", "<= 1.05x"))  # fmt: skip
    rows.append(_row("(b) ... metrics off", rate(off[1]), "-", "-",
                     f"on {thr[0] / off[1]:.2f}x of off", ">= 0.95x"))  # fmt: skip
    for key, label in (("c1", "(c) sleep(10 ms) calls/s, 1 x 10"), ("c2", "(c) ... 20 x 10")):
        ours, v1 = m(key, "rpc"), m(key, "v1")
        rows.append(_row(label, rate(ours), rate(v1), "-", f"{ours / v1:.1f}x", ">= 8x"))
    d = {t: median(v) for t, v in results["isolation"].items()}
    rows.append(
        _row(
            "(d) ping p99 under CPU load, one queue",
            ms(d["rpc"]),
            ms(d["v1"]),
            "-",
            f"{d['rpc'] / d['v1']:.3f}x",
            "<= 0.1x",
        )
    )
    rows.append(_row("(d) ... CPU method on its own queue", ms(d["rpc_apart"]), ms(d["v1"]), "-",
                     f"{d['rpc_apart'] / d['v1']:.3f}x", "<= 0.1x"))  # fmt: skip
    pooled = d["rpc_processes"]
    rows.append(_row("(d) ... one queue, rpcworker --pool processes", ms(pooled), ms(d["v1"]), "-",
                     f"{pooled / d['v1']:.3f}x", "<= 0.1x"))  # fmt: skip
    e = {w: median(v) for w, v in results["scaling"].items()}
    rows.append(_row("(e) cpu(20 ms) calls/s, 1 -> 2 workers", f"{e['1']:.0f} -> {e['2']:.0f}",
                     "-", "-", f"{e['2'] / e['1']:.2f}x",
                     f"1.7x on >= 4 cores ({os.cpu_count()} here)"))  # fmt: skip
    memory = results["memory"]
    rows.append(_row("(f) memory per idle connection", f"{memory['rpc']:.1f} KiB",
                     f"{memory['v1']:.1f} KiB", "-", "-", "<= 64 KB"))  # fmt: skip
    cpu = [m("b", t, "frontend_us_per_call") for t in ("rpc", "v1", "raw")]
    us = [f"{c:.0f} us" for c in cpu]
    rows.append(_row("(f) front-end CPU per call, (b)", us[0], us[1], us[2],
                     f"{cpu[0] / cpu[1]:.2f}x", "<= 1.0x"))  # fmt: skip
    behind = (
        f"{m('b', 'rpc', 'worker_us_per_call'):.0f} + {m('b', 'rpc', 'redis_us_per_call'):.0f} us"
    )
    rows.append(_row("(f) worker + Redis CPU per call, (b)", behind, "-", "-", "-", "-"))
    for key, label in (("g1", "(g) echo 1 KiB calls/s, 4 x 4"), ("g2", "(g) echo 256 KiB, 1 x 1")):
        ours, v1 = m(key, "rpc"), m(key, "v1")
        rows.append(_row(label, f"{ours:,.1f}", f"{v1:,.1f}", "-", f"{ours / v1:.2f}x", "-"))
    all_runs = [r for per in runs.values() for target_runs in per.values() for r in target_runs]
    lost = sum(r["missing"] + r["foreign"] for r in all_runs)
    errors = sum(r["errors"] for r in all_runs)
    rows.append(_row("answers matched by id, every run", f"{lost} lost or foreign, {errors} errors",
                     "", "", "", "0 lost, 0 duplicated"))  # fmt: skip
    run = results["long_run"]
    outcome = (
        f"{run['ok']:,} answered, {run['missing']} lost, "
        f"{run['foreign']} duplicated or misrouted, {run['errors']} errors"
    )
    label = f"{run['calls']:,} calls, 2 workers, 50 x 10"
    speed = f"{run['calls_per_s']:,.0f} calls/s"
    rows.append(_row(label, outcome, "", "", speed, "0 lost, 0 duplicated"))
    return "\n".join(rows) + f"\n\nmedians of {repeats} runs; {results['machine']}"


def _typed_rows(m: Callable[..., float]) -> list[str]:
    """add(1, 2) with its two float params validated, against the same method unannotated."""
    p50 = (m("h1", "rpc", "p50_ms"), m("h1", "v1", "p50_ms"), m("h1u", "rpc", "p50_ms"))
    rate = (m("h2", "rpc"), m("h2", "v1"), m("h2u", "rpc"))
    return [
        _row("(h) add(1, 2) p50, typed params", f"{p50[0]:.2f} ms", f"{p50[1]:.2f} ms", "-",
             f"{p50[0] / p50[1]:.2f}x; of untyped {p50[0] / p50[2]:.3f}x", "of untyped <= 1.05x"),
        _row("(h) add(1, 2) calls/s, 50 x 10", f"{rate[0]:,.0f}", f"{rate[1]:,.0f}", "-",
             f"{rate[0] / rate[1]:.2f}x; of untyped {rate[0] / rate[2]:.3f}x",
             "of untyped >= 0.95x"),
    ]  # fmt: skip


def peers_table(results: dict[str, Any]) -> str:
    """This package through daphne and through uvicorn, and the Celery peer, side by side."""
    runs = results["scenarios"]

    def m(key: str, target: str, metric: str = RATE) -> float:
        return median([r[metric] for r in runs[key].get(target, [])])

    def cell(value: float, metric: str = RATE) -> str:
        if value != value:  # NaN: not run on that target
            return "-"
        return f"{value:.2f} ms" if metric == "p50_ms" else f"{value:,.1f}"

    def ratio(over: float, under: float) -> str:
        return f"{over / under:.2f}x" if over == over and under == under else "-"

    rows = [
        "| scenario | this package (daphne) | this package (uvicorn) | uvicorn / daphne "
        "| Celery peer | this (daphne) / Celery | target |",
        "|---|---|---|---|---|---|---|",
    ]
    targets = {"a": "<= 0.3x", "b": ">= 10x"}
    for scenario in scenarios(quick=True):
        key, metric = scenario.key, scenario.metric
        ours, uvicorn, celery = (m(key, t, metric) for t in ("rpc", UVICORN, CELERY))
        rows.append(
            f"| ({key}) {scenario.title}, {'p50' if metric == 'p50_ms' else 'calls/s'} "
            f"| {cell(ours, metric)} | {cell(uvicorn, metric)} | {ratio(uvicorn, ours)} "
            f"| {cell(celery, metric)} | {ratio(ours, celery)} | {targets.get(key, '-')} |"
        )
    for label, metric in (("front-end", "frontend_us_per_call"), ("worker", "worker_us_per_call"),
                          ("Redis", "redis_us_per_call")):  # fmt: skip
        ours, uvicorn, celery = (m("b", t, metric) for t in ("rpc", UVICORN, CELERY))
        rows.append(
            f"| {label} CPU per call, (b) | {ours:.0f} us | {uvicorn:.0f} us "
            f"| {ratio(uvicorn, ours)} | {celery:.0f} us | {ratio(ours, celery)} | - |"
        )
    memory = results["memory"]
    rows.append(
        f"| memory per idle connection | {memory['rpc']:.1f} KiB | {memory[UVICORN]:.1f} KiB "
        f"| {ratio(memory[UVICORN], memory['rpc'])} | - | - | - |"
    )
    note = (
        "Celery peer: daphne + a Channels consumer + a prefork Celery worker of "
        f"{os.cpu_count()} processes (their CPU summed), fewer calls a scenario"
    )
    return "\n".join(rows) + f"\n\n{note}"


def only(keys: Sequence[str], repeats: int, quick: bool) -> None:
    """Some scenarios alone: each target's median, and its ratio to this package's."""
    targets = start(1, peers=True)
    try:
        runs = run_scenarios(targets, repeats, quick, keys)
    finally:
        targets.stop()
    metric = {scenario.key: scenario.metric for scenario in scenarios(quick)}
    print("\n| scenario | target | median | of this package's |\n|---|---|---|---|")
    for key, per_target in runs.items():
        ours = median([r[metric[key]] for r in per_target["rpc"]])
        for target, results in per_target.items():
            value = median([r[metric[key]] for r in results])
            print(f"| ({key}) {metric[key]} | {target} | {value:,.3f} | {value / ours:.3f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer calls, one run")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results.json")
    parser.add_argument("--only", default="", help="scenarios to run, e.g. a,b (a short table)")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    python = f"{platform.python_implementation()} {platform.python_version()}"
    results: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, {python}, {time.strftime('%Y-%m-%d')}"
    }

    if args.only:
        only(args.only.split(","), repeats, args.quick)
        return
    targets = start(1, peers=True)
    try:
        print("scenarios (a), (b), (c), (f), (g): 1 front-end, 1 worker", flush=True)
        results["scenarios"] = run_scenarios(targets, repeats, args.quick)
        results["memory"] = {
            t: idle_memory(targets, t, 200 if args.quick else 1000) for t in ("rpc", UVICORN, "v1")
        }
    finally:
        targets.stop()
    targets = start(2)
    try:
        print("scenario (d): 1 front-end, 2 workers", flush=True)
        results["isolation"] = isolation(targets, repeats, args.quick, {"rpc": "cpu", "v1": "cpu"})
        calls = n_calls(args.quick, 100_000, 20_000)
        print(f"{calls:,} calls through 2 workers, every answer matched by id", flush=True)
        results["long_run"] = measure(targets, "rpc", Load(50, 10, calls, {"method": "ping"}))
    finally:
        targets.stop()
    results["isolation"]["rpc_apart"] = isolation_of_variant(
        "the CPU-bound method on a queue and worker of its own",
        "cpu_apart",
        repeats,
        args.quick,
        queues=[["rpc.default"], ["rpc.cpu"]],
    )
    results["isolation"]["rpc_processes"] = isolation_of_variant(
        "one queue, sync methods in the workers' child processes",
        "cpu",
        repeats,
        args.quick,
        worker_args=("--pool", "processes"),
    )
    print("scenario (e): CPU-bound, 1 then 2 workers", flush=True)
    results["scaling"] = scaling(
        lambda workers: start(workers, baseline=False), repeats, args.quick
    )
    args.json.write_text(json.dumps(results, indent=2))
    print("\n" + table(results, repeats))
    print("\n" + peers_table(results))


if __name__ == "__main__":
    main()
