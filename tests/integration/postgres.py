"""A private PostgreSQL server for a test: initdb in a temp dir, ``postgres`` on a Unix socket.

No TCP port at all (``listen_addresses=''``), so none is guessed and the shared server on :5432
is never touched. The server runs as a child :class:`workers.cluster.Process`: readiness is read
from its own log ("ready to accept connections"), and it is stopped by its pid with SIGINT, a
fast shutdown (SIGTERM would wait for every client to disconnect), even when the test fails.

Outside CI, a machine without PostgreSQL's programs or the psycopg driver (the ``deploy``
extra) skips the test, saying which is missing; a CI run (``CI`` set) fails instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tests.deploy.support import postgres_program, run_as, unavailable
from workers.cluster import Process

__all__ = ["PrivatePostgres", "private_postgres", "unavailable"]

#: The superuser initdb creates; trust authentication, on a socket only we can reach.
SUPERUSER = "postgres"


@dataclass
class PrivatePostgres:
    """A running private server: where its socket is, and the process to stop."""

    home: Path
    proc: Process
    max_connections: int

    @property
    def socket_dir(self) -> Path:
        return self.home

    def url(self, database: str) -> str:
        """``DATABASE_URL`` for ``database``: the socket directory is the percent-encoded host."""
        return f"postgres://{SUPERUSER}@{quote(str(self.home), safe='')}/{database}"

    def conninfo(self, database: str) -> str:
        """The same server for psycopg in the test process."""
        return f"host={self.home} user={SUPERUSER} dbname={database}"

    def log(self) -> str:
        return self.proc.output()

    def create_database(self, name: str) -> None:
        import psycopg  # the deploy extra; private_postgres skips without it
        from psycopg import sql

        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _initdb(prefix: list[str], data: Path) -> None:
    argv = [
        *prefix, postgres_program("initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
        "-E", "UTF8", "--locale=C", "--no-sync",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"initdb failed:\n{done.stdout}{done.stderr}"


@contextlib.contextmanager
def private_postgres(max_connections: int = 100) -> Iterator[PrivatePostgres]:
    """initdb, then ``postgres`` on a Unix socket with ``max_connections``; stopped by pid and
    deleted whatever happens."""
    if importlib.util.find_spec("psycopg") is None:
        unavailable("psycopg is not installed (pip install -e '.[deploy]')")
    postgres = postgres_program("postgres")
    prefix, uid, gid = run_as()
    # Under the system temp dir, not pytest's (private to its user): the server may run as
    # another user. A short path too: a socket's path is limited to 107 bytes.
    home = Path(tempfile.mkdtemp(prefix="channels-rpc-pg-"))
    proc: Process | None = None
    try:
        os.chown(home, uid, gid)
        data = home / "data"
        _initdb(prefix, data)
        settings = {
            "listen_addresses": "",
            "unix_socket_directories": str(home),
            "max_connections": str(max_connections),
            "fsync": "off",  # a throwaway cluster: nothing to keep after a crash
            "logging_collector": "off",  # the log goes to our pipe, where Process reads it
        }
        argv = [*prefix, postgres, "-D", str(data)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        proc = Process("postgres", argv, dict(os.environ), home, cwd=home)
        proc.wait_for(r"database system is ready to accept connections", timeout=60)
        yield PrivatePostgres(home, proc, max_connections)
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(home, ignore_errors=True)


def _stop(proc: Process) -> None:
    """Fast shutdown (SIGINT: clients are disconnected), SIGKILL if it takes too long."""
    proc.send_signal(signal.SIGINT)
    proc.wait_stopped(timeout=30)
