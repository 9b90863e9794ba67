"""What the deploy tests share: the compose file, the daphne flags it runs, nginx and PostgreSQL.

Tests that need a program this machine lacks (nginx; PostgreSQL's initdb and pg_ctl; the psycopg
driver of the ``deploy`` extra) skip, except in a CI run (:func:`workers.cluster.in_ci`), where
they fail: CI must not go green without having run them. ``tools/ensure-nginx`` installs nginx.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import pytest
import yaml

from workers.cluster import REPO, in_ci

__all__ = [
    "REPO",
    "Postgres",
    "compose",
    "daphne_flags",
    "nginx_binary",
    "nginx_site",
    "nginx_wrapper",
    "postgres",
    "unavailable",
]


def unavailable(reason: str) -> NoReturn:
    """Skip: something this machine lacks; but fail in a CI run, which must run every test."""
    if in_ci():
        pytest.fail(f"a CI run needs this test to run, but {reason}", pytrace=False)
    pytest.skip(reason)


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return document


def daphne_flags(command: Sequence[str]) -> list[str]:
    """A daphne command's options, without where it listens (-b/-p) and the application."""
    assert command[0].endswith("daphne"), command
    flags: list[str] = []
    args = iter(command[1:-1])
    for arg in args:
        if arg in ("-b", "--bind", "-p", "--port"):
            next(args)
        else:
            flags.append(arg)
    return flags


# ---------------------------------------------------------------------------------------- nginx


def nginx_binary() -> str:
    """Debian's nginx (``NGINX`` overrides the path); skips or fails when it is missing."""
    nginx = os.environ.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(nginx, os.X_OK):
        unavailable(f"no nginx at {nginx} (run tools/ensure-nginx, or set NGINX)")
    return nginx


def nginx_site(listen: str, frontend: str = "frontend:8000") -> str:
    """deploy/nginx.conf with where it listens and where the front-ends are replaced: even
    ``nginx -t`` binds its listening sockets, and port 80 needs root (and may be taken)."""
    site = (REPO / "deploy" / "nginx.conf").read_text()
    for old, new in (
        ("listen 80;", f"listen {listen};"),
        ("set $frontend http://frontend:8000;", f"set $frontend http://{frontend};"),
    ):
        assert site.count(old) == 1, f"{old!r} is not in deploy/nginx.conf exactly once"
        site = site.replace(old, new)
    return site


def nginx_wrapper(prefix: Path, site: Path) -> Path:
    """An nginx.conf that includes ``site`` in its http block, as the nginx image includes
    conf.d/*.conf, with every file nginx writes kept under ``prefix``: it runs unprivileged.
    """
    temp = {name: prefix / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    config = prefix / "nginx.conf"
    config.write_text(
        "\n".join(
            [
                "daemon off;",
                f"pid {prefix / 'nginx.pid'};",
                "error_log stderr notice;",
                "events { worker_connections 64; }",
                "http {",
                f"    access_log {prefix / 'access.log'};",
                *(f"    {name}_temp_path {path};" for name, path in temp.items()),
                f"    include {site};",
                "}",
                "",
            ]
        )
    )
    return config


# ------------------------------------------------------------------------------------ PostgreSQL


@dataclass
class Postgres:
    """A private PostgreSQL server on a Unix socket in ``socket_dir`` (no TCP port at all)."""

    socket_dir: Path
    psql: str
    user: str = "postgres"

    def url(self, database: str, password: str = "", options: str = "") -> str:
        auth = f"{self.user}:{password}" if password else self.user
        query = f"?{options}" if options else ""
        return f"postgres://{auth}@{quote(str(self.socket_dir), safe='')}/{database}{query}"

    def query(self, database: str, sql: str) -> str:
        argv = [self.psql, "-h", str(self.socket_dir), "-U", self.user, "-d", database]
        done = subprocess.run(
            [*argv, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


def postgres_program(name: str) -> str:
    """A PostgreSQL program: on PATH, else Debian's newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        unavailable(f"PostgreSQL's {name} is not installed")
    return found


def run_as() -> tuple[list[str], int, int]:
    """How to run PostgreSQL's programs: as ourselves, or, as root (initdb refuses to run as
    root), as the ``postgres`` user."""
    if os.geteuid() != 0:
        return [], os.geteuid(), os.getegid()
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        unavailable("running as root, and no postgres user to run PostgreSQL as")
    setpriv = [
        "setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups",
    ]  # fmt: skip
    return setpriv, account.pw_uid, account.pw_gid


@contextlib.contextmanager
def postgres() -> Iterator[Postgres]:
    """initdb, then pg_ctl start on a Unix socket only; stopped and deleted whatever happens."""
    initdb, pg_ctl, psql = (postgres_program(n) for n in ("initdb", "pg_ctl", "psql"))
    prefix, uid, gid = run_as()
    # Under the system temp dir, not pytest's (private to its user): the server may run as
    # another user. A short path, too: a socket's path has a 107-byte limit.
    home = Path(tempfile.mkdtemp(prefix="channels-rpc-pg-"))
    os.chown(home, uid, gid)
    data = home / "data"
    server = [
        "-c", "listen_addresses=", "-c", f"unix_socket_directories={home}", "-c", "fsync=off",
    ]  # fmt: skip

    def run(*argv: str) -> None:
        done = subprocess.run(
            [*prefix, *argv], capture_output=True, text=True, timeout=120, check=False
        )
        log = home / "server.log"
        server_log = log.read_text() if log.exists() else ""
        assert done.returncode == 0, f"{argv}:\n{done.stdout}{done.stderr}{server_log}"

    try:
        run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--locale=C", "--no-sync")  # fmt: skip
        # -w: pg_ctl returns once the server accepts connections.
        run(pg_ctl, "-D", str(data), "-l", str(home / "server.log"), "-w", "-t", "60",
            "-o", shlex.join(server), "start")  # fmt: skip
        yield Postgres(home, psql)
    finally:
        if (data / "postmaster.pid").exists():  # running, even if start timed out
            run(pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)
