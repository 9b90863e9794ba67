"""The reference project on a real PostgreSQL under load: connections stay bounded.

A private server (tests/integration/postgres.py: initdb, a Unix socket, a low
``max_connections``) serves 1 daphne front-end and 4 rpcworker processes at ``--concurrency 32``
(128 threads for sync methods). 2,000 calls of the sync ORM methods ``add_note`` and
``count_notes`` go out over 64 sockets, 256 in flight at a time, twice what the workers can run
at once, so every worker thread gets busy; in two bursts of 1,000, with the worker threads of
the first ended in between (a worker's idle threads end after 10 s), so that a connection an
ended thread left open would add to the second burst's. A sampler counts the project's
connections in ``pg_stat_activity`` every 50 ms; the peak must stay within the bound
workers/settings.py states for its connection handling (docs/guides/postgres.md):

* pooled (DATABASE_POOL_SIZE=N, the default 8): at most N per process, so (1 + 4) x N = 40,
  on a server with max_connections=100: below the 133 that one connection per thread would
  take, so a project holding that many would fail here with "too many clients";
* per call (DATABASE_POOL_SIZE=0, CONN_MAX_AGE 0): at most one per busy thread, so
  4 x (32 + 1) + 1 = 133 (each worker's sync-method threads and its thread for permission
  checks and user lookups, and the front-end's auth thread), on a server with 150. Slower (a
  connection per call), so it runs in `make reliability` only (marked long).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import django
import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.integration.client import RpcSocket
from tests.integration.harness import Redis
from tests.integration.postgres import PrivatePostgres, private_postgres, unavailable
from tests.integration.support import logs_on_failure, wait_until
from workers.cluster import LocalCluster
from workers.settings import pool_size_from_env, postgres_settings

DATABASE = "channels_rpc"
SECRET = "a-secret-key-for-this-test-only-0123456789-abcdefghijklmnopqrstuv"
FRONTENDS, WORKERS, CONCURRENCY = 1, 4, 32
CALLS, SOCKETS, IN_FLIGHT = 2000, 64, 256
SAMPLE_EVERY = 0.05
#: PostgreSQL's default; below the 133 that one connection per thread would take.
POOLED_MAX_CONNECTIONS = 100
#: Room for 133 project connections, superuser_reserved_connections (3) and the test's own.
PER_CALL_MAX_CONNECTIONS = 150
#: PostgreSQL's messages when it refuses a connection for want of slots.
REFUSALS = ("too many clients", "too many connections", "remaining connection slots")


@dataclass
class Figures:
    """What one load run measured."""

    calls: int = 0
    results: int = 0
    errors: list[Any] = field(default_factory=list)
    notes_added: int = 0
    peak: int = 0
    samples: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return (
            f"calls {self.calls}, answered with a result {self.results}, errors "
            f"{len(self.errors)}, connections peak {self.peak} ({self.samples} samples every "
            f"{SAMPLE_EVERY * 1000:.0f} ms), {self.seconds:.1f} s ({self.calls / self.seconds:.0f}"
            " calls/s)"
        )


def connection_bound(pool_size: int) -> int:
    """The most connections the project's processes may hold, by workers/settings.py."""
    if pool_size:  # a pool per process
        return (FRONTENDS + WORKERS) * pool_size
    # A connection per busy thread: a worker's sync-method threads and its one thread for
    # database_sync_to_async (permission checks, user lookups); a front-end's auth thread.
    return WORKERS * (CONCURRENCY + 1) + FRONTENDS


@dataclass(frozen=True)
class Mode:
    """A connection handling of workers/settings.py, and the server it is tested against."""

    pool_size: int
    max_connections: int

    @property
    def bound(self) -> int:
        return connection_bound(self.pool_size)


MODES = {
    # The default, whatever DATABASE_POOL_SIZE this run's environment gives every process.
    "pooled": Mode(pool_size_from_env(), POOLED_MAX_CONNECTIONS),
    "per-call": Mode(0, PER_CALL_MAX_CONNECTIONS),
}


# ------------------------------------------------------------------------------------- fixtures


@pytest.fixture(params=["pooled", pytest.param("per-call", marks=pytest.mark.long)])
def mode(request: pytest.FixtureRequest) -> Mode:
    return MODES[request.param]


@pytest.fixture
def postgres(mode: Mode) -> Iterator[PrivatePostgres]:
    with private_postgres(max_connections=mode.max_connections) as server:
        server.create_database(DATABASE)
        yield server


@pytest.fixture
def cluster(
    request: pytest.FixtureRequest,
    mode: Mode,
    postgres: PrivatePostgres,
    redis_server: Redis,
    tmp_path: Path,
) -> Iterator[LocalCluster]:
    """migrate, then 1 front-end and 4 workers of the reference project on ``postgres``."""
    pool = str(mode.pool_size)
    cluster = project_cluster(postgres, redis_server, tmp_path, DATABASE_POOL_SIZE=pool)
    try:
        cluster.manage("migrate", "--verbosity", "0")
        for _ in range(FRONTENDS):
            cluster.start_frontend()
        for _ in range(WORKERS):
            cluster.start_worker(concurrency=CONCURRENCY)
        yield cluster
    finally:
        cluster.stop()
        logs_on_failure(
            request,
            "cluster logs",
            lambda: cluster.logs() + "\n----- postgres -----\n" + postgres.log()[-6000:],
        )


def project_cluster(
    postgres: PrivatePostgres, redis: Redis, log_dir: Path, **env: str
) -> LocalCluster:
    """The reference project's processes, deployed: DATABASE_URL and a secret key; the SQLite
    path points where a file would show that some process used SQLite after all."""
    settings = {
        "DATABASE_URL": postgres.url(DATABASE),
        "DJANGO_SECRET_KEY": SECRET,
        "DJANGO_DB_PATH": str(log_dir / "must-not-exist.sqlite3"),
        **env,
    }
    return LocalCluster(redis, log_dir, env_extra=settings)


# ----------------------------------------------------------------------------------------- load


def thread_ids(pid: int) -> set[str]:
    """The threads of a process now (Linux: /proc)."""
    return set(os.listdir(f"/proc/{pid}/task"))


@dataclass
class Sampler:
    """Samples, every SAMPLE_EVERY s: the project's connections in pg_stat_activity (from a
    connection to another database, so the sampler never counts itself), and which threads
    each worker runs."""

    postgres: PrivatePostgres
    figures: Figures
    workers: list[int]
    threads_seen: dict[int, set[str]] = field(default_factory=dict)

    async def sample(self, conn: Any) -> None:
        sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
        row = await (await conn.execute(sql, (DATABASE,))).fetchone()
        self.figures.peak = max(self.figures.peak, int(row[0]))
        self.figures.samples += 1
        for pid in self.workers:
            self.threads_seen.setdefault(pid, set()).update(thread_ids(pid))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        import psycopg  # the deploy extra; private_postgres skips without it

        stop = asyncio.Event()

        async def loop(conn: Any) -> None:
            while not stop.is_set():
                await self.sample(conn)
                with contextlib.suppress(asyncio.TimeoutError):  # 3.10: not TimeoutError
                    await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)

        conninfo = self.postgres.conninfo("postgres")
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            task = asyncio.create_task(loop(conn))
            try:
                yield
            finally:
                stop.set()
                await task

    def started_since(self, before: dict[int, set[str]]) -> dict[int, set[str]]:
        return {pid: self.threads_seen.get(pid, set()) - before[pid] for pid in self.workers}


def request_for(index: int) -> tuple[str, list[Any]]:
    """Three notes added for every count read."""
    return ("count_notes", []) if index % 4 == 3 else ("add_note", [f"note {index}"])


async def run_load(url: str, figures: Figures, calls: range) -> None:
    """The calls numbered ``calls`` over SOCKETS sockets, IN_FLIGHT at a time; tallies what
    comes back into ``figures``."""
    sockets = [await RpcSocket.connect(url) for _ in range(SOCKETS)]
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(index: int) -> None:
        method, params = request_for(index)
        sock = sockets[index % SOCKETS]
        async with slots:
            rpc_id = await sock.request(method, params)
            answer = (await sock.wait_for([rpc_id], timeout=60))[rpc_id].response
        if "result" in answer and well_formed(method, params, answer["result"]):
            figures.results += 1
        else:
            figures.errors.append(answer)

    started = time.monotonic()
    try:
        await asyncio.gather(*(one(index) for index in calls))
    finally:
        figures.seconds += time.monotonic() - started
        figures.calls += len(calls)
        figures.notes_added += sum(request_for(i)[0] == "add_note" for i in calls)
        for sock in sockets:
            await asyncio.wait_for(sock.close(), 10)


def well_formed(method: str, params: list[Any], result: Any) -> bool:
    if method == "add_note":
        return isinstance(result, dict) and result.get("text") == params[0] and "id" in result
    return isinstance(result, int)


async def count_rows(postgres: PrivatePostgres) -> int:
    import psycopg

    async with await psycopg.AsyncConnection.connect(postgres.conninfo(DATABASE)) as conn:
        row = await (await conn.execute("SELECT count(*) FROM workers_note")).fetchone()
        assert row is not None
        return int(row[0])


def refusals(cluster: LocalCluster, postgres: PrivatePostgres) -> list[str]:
    """Lines of any process's log saying PostgreSQL refused a connection for want of slots."""
    outputs = [proc.output() for proc in [*cluster.frontends, *cluster.workers]]
    return [
        line
        for output in [*outputs, postgres.log()]
        for line in output.splitlines()
        if any(refusal in line.lower() for refusal in REFUSALS)
    ]


# ---------------------------------------------------------------------------------------- tests


@pytest.mark.anyio
async def test_sync_orm_calls_under_4_workers_x_32_keep_postgres_connections_bounded(
    mode: Mode, cluster: LocalCluster, postgres: PrivatePostgres, tmp_path: Path
) -> None:
    """Two bursts with the worker threads of the first ended in between: a connection an
    ended thread left open would add to the second burst's (see workers/settings.py)."""
    figures = Figures()
    pids = [proc.pid for proc in cluster.workers]
    sampler = Sampler(postgres, figures, pids)
    first, second = range(CALLS // 2), range(CALLS // 2, CALLS)
    async with sampler.running():
        before = {pid: thread_ids(pid) for pid in pids}
        await run_load(cluster.url(), figures, first)
        started = sampler.started_since(before)

        async def most_threads_ended() -> bool:
            # A worker's idle threads end after 10 s; half of them is enough to need new
            # threads (and connections) for the second burst.
            alive = {pid: started[pid] & thread_ids(pid) for pid in pids}
            return all(len(alive[pid]) <= len(started[pid]) // 2 for pid in pids)

        idle = await wait_until(most_threads_ended, timeout=40)
        await run_load(cluster.url(), figures, second)
    rows = await count_rows(postgres)
    print(
        f"\nPostgreSQL, DATABASE_POOL_SIZE={mode.pool_size}, {WORKERS} workers x {CONCURRENCY}, "
        f"max_connections {mode.max_connections}: {figures.line()}, in 2 bursts {idle:.1f} s "
        f"apart (worker threads ended in between); bound {mode.bound}"
    )
    assert all(len(started[pid]) >= CONCURRENCY // 2 for pid in pids), started
    assert figures.errors == []
    assert figures.results == CALLS
    assert refusals(cluster, postgres) == []
    assert 0 < figures.peak <= mode.bound
    assert rows == figures.notes_added
    assert not (tmp_path / "must-not-exist.sqlite3").exists()


# ------------------------------------------------------------------------- the settings alone


URL = "postgres://rpc@db.example.com/app?sslmode=require"


def test_a_pool_of_8_per_process_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("psycopg_pool") is None:
        unavailable("psycopg_pool is not installed (pip install -e '.[deploy]')")
    monkeypatch.delenv("DATABASE_POOL_SIZE", raising=False)
    database = postgres_settings(URL, pool_size_from_env())
    pool = {"min_size": 1, "max_size": 8, "timeout": 10.0}
    assert database["OPTIONS"] == {"sslmode": "require", "pool": pool}
    # Django refuses persistent connections with a pool: each call returns its connection.
    assert database["CONN_MAX_AGE"] == 0
    assert database["CONN_HEALTH_CHECKS"] is True


def test_pool_size_0_opens_a_connection_per_call() -> None:
    """Not one per thread: an ended thread's connection would stay open (settings.py)."""
    database = postgres_settings(URL, 0)
    assert database["OPTIONS"] == {"sslmode": "require"}
    assert database["CONN_MAX_AGE"] == 0
    assert database["CONN_HEALTH_CHECKS"] is True


@pytest.mark.parametrize(
    ("value", "message"),
    [("eight", "must be a whole number, not 'eight'"), ("-1", "must be 0 \\(no pool\\) or more")],
)
def test_a_pool_size_it_cannot_use_stops_the_settings(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("DATABASE_POOL_SIZE", value)
    with pytest.raises(ImproperlyConfigured, match=message):
        postgres_settings(URL, pool_size_from_env())


def test_a_pool_on_a_django_without_pooling_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(django, "VERSION", (5, 0, 9, "final", 0))
    with pytest.raises(ImproperlyConfigured, match=r"needs Django >= 5\.1 and psycopg_pool") as no:
        postgres_settings(URL, 8)
    assert "DATABASE_POOL_SIZE=0 opens a connection per call instead" in str(no.value)
