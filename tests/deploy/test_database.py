"""The reference project's database and secret key, as a deployment sets them.

DATABASE_URL names a PostgreSQL server that replicas on every host share; without it the
project runs on one machine, on an SQLite file. Set, it also makes DJANGO_SECRET_KEY required:
a process without one refuses to start, saying so. The last test runs migrate, a front-end and
two workers of the reference project on a private PostgreSQL server (a Unix socket, no port).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from django.core.exceptions import ImproperlyConfigured

from channels_rpc.client import RpcClient
from tests.deploy.support import REPO, Postgres, postgres, unavailable
from workers.cluster import LocalCluster, find_or_start_redis
from workers.settings import database_from_url

SECRET = "a-secret-key-for-these-tests-only-0123456789-abcdefghijklmnop"


def run_settings(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter that imports workers.settings with ``env`` (and nothing
    of ours in the environment: no DATABASE_URL, no DJANGO_SECRET_KEY unless given)."""
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SECRET_KEY")}
    return subprocess.run(
        [sys.executable, "-c", f"from workers import settings\n{code}"],
        cwd=REPO,
        env={**base, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def postgresql(**expected: Any) -> dict[str, Any]:
    defaults = {"PASSWORD": "", "PORT": "", "OPTIONS": {}}
    return {"ENGINE": "django.db.backends.postgresql", **defaults, **expected}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgres://rpc:s3cret@db.example.com:6432/channels_rpc",
            postgresql(
                NAME="channels_rpc",
                USER="rpc",
                PASSWORD="s3cret",
                HOST="db.example.com",
                PORT="6432",
            ),
        ),
        (
            "postgresql://rpc:p%40ss%2Fw%3Ard@db/app?sslmode=require&connect_timeout=5",
            postgresql(
                NAME="app",
                USER="rpc",
                PASSWORD="p@ss/w:rd",
                HOST="db",
                OPTIONS={"sslmode": "require", "connect_timeout": "5"},
            ),
        ),
        (
            "postgres://rpc@%2Frun%2FPostgreSQL/app",
            postgresql(NAME="app", USER="rpc", HOST="/run/PostgreSQL"),
        ),
        (
            "postgres://rpc:pw@[::1]:5432/app",
            postgresql(NAME="app", USER="rpc", PASSWORD="pw", HOST="::1", PORT="5432"),
        ),
    ],
)
def test_database_url_becomes_the_postgresql_settings(url: str, expected: dict[str, Any]) -> None:
    assert database_from_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://rpc:hunter2@db/app", "must start with postgres:// or postgresql://"),
        ("sqlite:///db.sqlite3", "leave DATABASE_URL unset and set DJANGO_DB_PATH"),
        ("postgres://rpc:hunter2@db:port/app", "invalid port"),
        ("postgres://rpc:hunter2@db:5432/", "names no database"),
    ],
)
def test_a_database_url_it_cannot_use_is_refused_without_echoing_it(url: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message) as refused:
        database_from_url(url)
    assert "hunter2" not in str(refused.value)


def test_without_database_url_the_project_runs_on_sqlite_with_a_development_key() -> None:
    """`make demo`, the local cluster and the tests: one machine, nothing to configure."""
    done = run_settings(
        "print(settings.DATABASES['default']['ENGINE'], bool(settings.SECRET_KEY))",
        DJANGO_DB_PATH="/nonexistent/db.sqlite3",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["django.db.backends.sqlite3", "True"]


def test_with_database_url_a_missing_secret_key_stops_the_process_with_a_clear_message() -> None:
    url = "postgres://rpc:pw@postgres:5432/channels_rpc"
    for key in ({}, {"DJANGO_SECRET_KEY": ""}):
        done = run_settings("print('started')", DATABASE_URL=url, **key)
        assert done.returncode == 1
        assert "started" not in done.stdout
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith(
            "django.core.exceptions.ImproperlyConfigured: DJANGO_SECRET_KEY is not set."
        ), done.stderr
    done = run_settings("print(settings.SECRET_KEY)", DATABASE_URL=url, DJANGO_SECRET_KEY=SECRET)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == SECRET


# ------------------------------------------------------------------------ a real PostgreSQL


@pytest.fixture
def database() -> Iterator[Postgres]:
    if importlib.util.find_spec("psycopg") is None:
        unavailable("psycopg is not installed (pip install -e '.[deploy]')")
    with postgres() as server:
        server.query("postgres", "CREATE DATABASE channels_rpc")
        yield server


@pytest.fixture
def cluster(database: Postgres, tmp_path: Path) -> Iterator[LocalCluster]:
    """migrate, a front-end and two workers, on the private PostgreSQL server; the SQLite path
    points where a file would show that some process used SQLite after all."""
    redis = find_or_start_redis(tmp_path)
    env = {
        # A password and an option, parsed and passed on (trust auth ignores the password).
        "DATABASE_URL": database.url("channels_rpc", "unused", "connect_timeout=10"),
        "DJANGO_SECRET_KEY": SECRET,
        "DJANGO_DB_PATH": str(tmp_path / "must-not-exist.sqlite3"),
    }
    cluster = LocalCluster(redis, tmp_path, env_extra=env)
    try:
        cluster.manage("migrate", "--verbosity", "0")
        cluster.start_frontend()
        cluster.start_worker()
        cluster.start_worker()
        yield cluster
    finally:
        cluster.stop()
        redis.stop()


@pytest.mark.anyio
async def test_workers_share_the_postgresql_database_named_by_database_url(
    cluster: LocalCluster, database: Postgres, tmp_path: Path
) -> None:
    async with RpcClient(cluster.url()) as rpc:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as calls:
                for index in range(8):
                    calls.start_soon(rpc.call, "add_note", [f"note {index}"])
            assert await rpc.call("count_notes") == 8
    assert database.query("channels_rpc", "SELECT count(*) FROM workers_note") == "8"
    assert not (tmp_path / "must-not-exist.sqlite3").exists()
