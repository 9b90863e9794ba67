"""The load balancer and the client's address: nginx accepts deploy/nginx.conf, and daphne, run
with the flags docker-compose.yml gives it, reports the address nginx saw as the client.

daphne run as compose runs it, on the reference project (embedded: no Redis needed); nginx on
deploy/nginx.conf itself, with two lines rewritten for loopback (where it listens, where the
front-end is). What daphne reports is read from its access log, written from the same field as
``scope["client"]``.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.deploy.support import (
    REPO,
    compose,
    daphne_flags,
    nginx_binary,
    nginx_site,
    nginx_wrapper,
    unavailable,
)
from workers.cluster import Process


@dataclass
class Frontend:
    proc: Process
    port: int

    def access_log(self, client: str, request: str) -> str:
        """daphne's access-log line for ``request`` from ``client`` (waits for it)."""
        pattern = "^" + re.escape(f"{client}:") + r"\d+ - - \[[^]]+\] " + re.escape(f'"{request}"')
        return self.proc.wait_for(pattern, timeout=10).string


@dataclass
class Nginx:
    port: int
    log: Path


@pytest.fixture
def frontend(tmp_path: Path) -> Iterator[Frontend]:
    flags = daphne_flags(compose()["services"]["frontend"]["command"])
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE="workers.settings",
        DJANGO_DB_PATH=str(tmp_path / "db.sqlite3"),
    )
    for name in ("REDIS_URL", "DATABASE_URL"):
        env.pop(name, None)
    endpoint = "tcp:port=0:interface=127.0.0.1"
    argv = [sys.executable, "-m", "daphne", "-e", endpoint, *flags, "workers.asgi:application"]
    proc = Process("daphne", argv, env, tmp_path)
    try:
        listening = proc.wait_for(r"Listening on TCP address 127\.0\.0\.1:(\d+)")
        yield Frontend(proc, int(listening.group(1)))
    finally:
        proc.stop()


@pytest.fixture
def nginx(tmp_path: Path, frontend: Frontend) -> Iterator[Nginx]:
    binary = nginx_binary()
    # nginx takes over a socket we bound and listen on (NGINX=fd;, how nginx hands its sockets
    # to a new binary): the OS picks the port at bind time, and connections queue from now on.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        site = nginx_site(f"127.0.0.1:{port}", frontend=f"127.0.0.1:{frontend.port}")
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        (prefix / "site.conf").write_text(site)
        config = nginx_wrapper(prefix, prefix / "site.conf")
        log = prefix / "nginx.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [binary, "-p", f"{prefix}/", "-c", str(config), "-e", "stderr"],
                env=dict(os.environ, NGINX=f"{listener.fileno()};"),
                pass_fds=[listener.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    # From here only nginx holds the socket: if it exits, connections are refused, not stuck.
    try:
        yield Nginx(port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def add(url: str, headers: dict[str, str], sock: socket.socket | None = None) -> Any:
    """``add(1, 2)`` over a WebSocket whose handshake carries ``headers``."""
    with connect(url, sock=sock, additional_headers=headers, open_timeout=10) as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "add", "params": [1, 2]}))
        return json.loads(ws.recv(timeout=10))


def test_nginx_accepts_the_load_balancer_config(tmp_path: Path) -> None:
    """``nginx -t`` on deploy/nginx.conf, included as the nginx image includes it, listening on
    a Unix socket instead of port 80. The front-end is a variable resolved per request, so the
    check needs no ``frontend`` host to resolve: that line stays as it is."""
    (tmp_path / "site.conf").write_text(nginx_site(f"unix:{tmp_path / 'lb.sock'}"))
    config = nginx_wrapper(tmp_path, tmp_path / "site.conf")
    done = subprocess.run(
        [nginx_binary(), "-t", "-p", f"{tmp_path}/", "-c", str(config), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def test_daphne_run_as_compose_runs_it_reports_the_address_the_proxy_saw(
    frontend: Frontend,
) -> None:
    # What nginx sends: X-Real-IP is the peer it saw; an X-Forwarded-For may have come from
    # anyone, so it must not be what daphne reports.
    headers = {"X-Real-IP": "203.0.113.7", "X-Forwarded-For": "198.51.100.9"}
    answer = add(f"ws://127.0.0.1:{frontend.port}/ws/rpc/", headers)
    assert answer == {"jsonrpc": "2.0", "id": 1, "result": 3}
    frontend.access_log("203.0.113.7", "WSCONNECT /ws/rpc/")
    assert "198.51.100.9" not in frontend.proc.output()


def test_behind_nginx_daphne_reports_the_real_client_and_not_a_forged_one(
    frontend: Frontend, nginx: Nginx
) -> None:
    """A client on 127.0.0.2 (nginx and daphne talk over 127.0.0.1) that claims to be 6.6.6.6:
    daphne reports 127.0.0.2 for its WebSocket and for a plain HTTP request alike."""
    forged = {"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6"}
    try:
        sock = socket.create_connection(
            ("127.0.0.1", nginx.port), timeout=10, source_address=("127.0.0.2", 0)
        )
    except OSError as exc:
        if exc.errno != errno.EADDRNOTAVAIL:
            raise
        unavailable("127.0.0.2 is not an address of this machine (Linux routes all of 127/8)")
    try:
        answer = add(f"ws://127.0.0.1:{nginx.port}/ws/rpc/", forged, sock)
    except Exception as exc:
        raise AssertionError(f"through nginx: {exc!r}\n{nginx.log.read_text()}") from exc
    assert answer == {"jsonrpc": "2.0", "id": 1, "result": 3}
    frontend.access_log("127.0.0.2", "WSCONNECT /ws/rpc/")

    conn = http.client.HTTPConnection(
        "127.0.0.1", nginx.port, timeout=10, source_address=("127.0.0.2", 0)
    )
    try:
        conn.request("GET", "/healthz/", headers=forged)
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (200, {"status": "ok"})
    finally:
        conn.close()
    frontend.access_log("127.0.0.2", "GET /healthz/")
    assert "6.6.6.6" not in frontend.proc.output()
