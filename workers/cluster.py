"""A local cluster: Redis, daphne front-ends and rpcworker processes, the topology of
docker-compose.yml as plain processes on loopback.

    python -m workers.cluster --frontends 2 --workers 3

Which Redis: the one at ``REDIS_URL`` when given; else a ``redis-server`` of its own (on a
Unix socket, nothing persisted, stopped with the cluster); else an in-process fakeredis server,
which speaks the protocol but is no Redis to measure, and which CI runs refuse (:func:`in_ci`).
A Redis that merely answers on 127.0.0.1:6379 is never used unasked: it may be someone else's
(``REDIS_URL=redis://127.0.0.1:6379/0`` to use it). Prints the endpoints, then stops everything
it started, by pid, on Ctrl-C (or SIGTERM). The integration tests, the browser tests and the
benchmarks build their clusters with the same classes.

Front-ends are daphne, or uvicorn with ``--server uvicorn`` (the same application). Every wait
is on the processes' own output (daphne's "Listening on TCP address", uvicorn's "Uvicorn running
on", the worker's "rpcworker ready"), never a sleep; front-ends listen on ports the OS picks at
bind time unless told otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 30.0
#: daphne's flags in docker-compose.yml and the systemd unit too (tests/deploy checks): behind
#: nginx, the client is the address nginx saw, which it sends as X-Real-IP.
DAPHNE_FLAGS = ("--proxy-headers", "--proxy-headers-host", "X-Real-IP")
#: uvicorn's: Channels' ProtocolTypeRouter serves no lifespan scope; frames capped at 1 MiB as
#: daphne caps them (uvicorn's default is 16 MiB, read whole before the application sees the
#: size); a line per handshake is noise. (Behind a proxy, uvicorn reads X-Forwarded-For from
#: the addresses in --forwarded-allow-ips, 127.0.0.1 by default; it has no X-Real-IP.)
UVICORN_FLAGS = ("--lifespan", "off", "--ws-max-size", str(1024 * 1024), "--no-access-log")
#: The line each server prints once it listens, with the port it bound.
LISTENING = {
    "daphne": r"Listening on TCP address 127\.0\.0\.1:(\d+)",
    "uvicorn": r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
}


class Process:
    """A child process whose output is collected line by line and can be waited on."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        log_dir: Path,
        cwd: Path = REPO,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self.popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, which stops us
        )
        self._reader = threading.Thread(target=self._read, name=f"log:{name}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def _read(self) -> None:
        assert self.popen.stdout is not None
        with self.log_path.open("w") as log:
            for line in self.popen.stdout:
                log.write(line)
                log.flush()
                with self._cond:
                    self._lines.append(line)
                    self._cond.notify_all()
        self.popen.stdout.close()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_for(
        self, pattern: str, timeout: float = STARTUP_TIMEOUT, start: int = 0
    ) -> re.Match[str]:
        """The first line from ``start`` on matching ``pattern``; fails on exit or timeout."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = start
        with self._cond:
            while True:
                while index < len(self._lines):
                    match = regex.search(self._lines[index])
                    if match:
                        return match
                    index += 1
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    state = "exited" if self._eof else "timed out"
                    raise RuntimeError(
                        f"{self.name} {state} before printing {pattern!r}:\n{self.output()[-4000:]}"
                    )
                self._cond.wait(remaining)

    def line_count(self) -> int:
        with self._cond:
            return len(self._lines)

    def output(self) -> str:
        with self._cond:
            return "".join(self._lines)

    def cpu_seconds(self, children: bool = False) -> float:
        """CPU time the process has used (user + system), from /proc; ``children``: with that
        of its live descendants (a prefork worker's pool)."""
        total = _cpu_seconds(self.pid)
        for pid in self.descendants() if children else []:
            with contextlib.suppress(OSError):  # gone since it was listed
                total += _cpu_seconds(pid)
        return total

    def descendants(self) -> list[int]:
        """Its children, theirs, and so on, from /proc (those gone meanwhile left out)."""
        found, pending = [], [self.pid]
        while pending:
            pid = pending.pop()
            for task in _listdir(Path(f"/proc/{pid}/task")):
                with contextlib.suppress(OSError):
                    children = [int(c) for c in (task / "children").read_text().split()]
                    found += children
                    pending += children
        return found

    def stop_with_children(self, timeout: float = 10.0) -> int:
        """:meth:`stop`, then SIGKILL whatever of its descendants outlived it, by pid (checked
        against the start time seen before, so that a reused pid is left alone)."""
        children = [(pid, _started(pid)) for pid in self.descendants()]
        status = self.stop(timeout)
        for pid, started in children:
            with contextlib.suppress(OSError):
                if started is not None and _started(pid) == started:
                    os.kill(pid, signal.SIGKILL)
        return status

    def rss_kib(self) -> int:
        """Resident memory, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def send_signal(self, signum: int) -> None:
        if self.alive:
            os.kill(self.pid, signum)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        self.terminate()
        return self.wait_stopped(timeout)

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM): a worker drains, daphne closes its sockets."""
        if self.alive:
            self.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = 10.0) -> int:
        """Wait for it to exit after :meth:`terminate`, SIGKILL after ``timeout``."""
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            self.popen.wait(timeout)
        self._reader.join(5)
        return self.popen.returncode


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _started(pid: int) -> str | None:
    """When ``pid`` started (clock ticks after boot, from /proc), None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def _listdir(path: Path) -> list[Path]:
    try:
        return list(path.iterdir())
    except OSError:
        return []


@dataclass
class Redis:
    """The Redis the tests use and how it was obtained."""

    url: str
    kind: str  # "redis-server", "external" or "fakeredis"
    proc: Process | None = None
    stopper: object | None = None
    log_dir: Path | None = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        shutdown = getattr(self.stopper, "shutdown", None)
        if shutdown is not None:
            shutdown()
            getattr(self.stopper, "server_close", lambda: None)()

    def start(self) -> None:
        """Start again, at the same address, empty (after :meth:`stop`): a Redis restart."""
        assert self.log_dir is not None, "only a Redis this harness started can restart"
        if self.kind == "redis-server":
            self.proc = _redis_server_proc(self.log_dir, restart=True)
        else:
            self.stopper = _fakeredis_server(int(self.url.rsplit(":", 1)[1].split("/")[0]))


def _redis_server_proc(log_dir: Path, restart: bool = False) -> Process:
    sock = log_dir / "redis.sock"
    argv = [
        "redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
        "--save", "", "--appendonly", "no", "--dir", str(log_dir),
    ]  # fmt: skip
    proc = Process("redis-restarted" if restart else "redis", argv, dict(os.environ), log_dir)
    try:
        proc.wait_for(r"[Rr]eady to accept connections")
    except BaseException:
        proc.stop()  # never leave a Redis behind, even when it failed to start
        raise
    return proc


def start_redis_server(log_dir: Path) -> Redis:
    """A private redis-server on a Unix socket, nothing persisted."""
    proc = _redis_server_proc(log_dir)
    return Redis(f"unix://{log_dir / 'redis.sock'}", "redis-server", proc=proc, log_dir=log_dir)


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _fakeredis_server(port: int = 0) -> Any:
    from fakeredis import TcpFakeServer

    TcpFakeServer.allow_reuse_address = True
    server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, name="fakeredis", daemon=True)
    thread.start()
    return server


def start_fakeredis(log_dir: Path | None = None) -> Redis:
    """An in-process fakeredis TCP server on a port the OS picks (machines without Redis)."""
    server = _fakeredis_server()
    host, port = server.server_address[:2]
    host = host.decode() if isinstance(host, bytes) else host
    return Redis(f"redis://{host}:{port}/0", "fakeredis", stopper=server, log_dir=log_dir)


#: Values of ``CI`` (in any case) that make a run a CI run.
_TRUTHY = frozenset({"1", "true", "yes", "on"})


def in_ci() -> bool:
    """Whether this is a CI run: ``CI`` is 1, true, yes or on, in any case.

    A CI run must not go green on less than the real thing: no fakeredis, no skipped browser
    tests. Runners set ``CI`` to different truthy spellings (GitHub "true", others "1").
    """
    return os.environ.get("CI", "").strip().lower() in _TRUTHY


def find_or_start_redis(log_dir: Path) -> Redis:
    """The Redis at ``REDIS_URL``; else a redis-server of our own; else, outside CI, fakeredis
    (a stand-in that speaks the protocol: fine to try things, not to measure them).

    Never a Redis it was not given (whatever answers on :6379 may be someone else's data).
    Under CI, no redis-server and no ``REDIS_URL`` is an error, not a fakeredis run.
    """
    if url := os.environ.get("REDIS_URL"):
        return Redis(url, "external")
    if _which("redis-server"):
        return start_redis_server(log_dir)
    if in_ci():
        raise RuntimeError("a CI run needs a real Redis: install redis-server or set REDIS_URL")
    print("no REDIS_URL and no redis-server: using fakeredis, in this process", file=sys.stderr)
    return start_fakeredis(log_dir)


def _which(program: str) -> bool:
    return any(
        os.access(Path(directory) / program, os.X_OK)
        for directory in os.environ.get("PATH", "").split(os.pathsep)
    )


@dataclass
class LocalCluster:
    """Front-ends (daphne or uvicorn) and rpcworker processes of one Django project, sharing a
    Redis prefix."""

    redis: Redis
    log_dir: Path
    app: str = "workers.asgi:application"
    settings: str = "workers.settings"
    env_extra: dict[str, str] = field(default_factory=dict)
    prefix: str = field(default_factory=lambda: f"c{uuid.uuid4().hex[:10]}")
    frontends: list[Process] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    workers: list[Process] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PYTHONPATH=str(REPO),
            PYTHONUNBUFFERED="1",
            DJANGO_SETTINGS_MODULE=self.settings,
            REDIS_URL=self.redis.url,
            CHANNELS_PREFIX=self.prefix,
            **self.env_extra,
            **extra,
        )
        return env

    def manage(self, *args: str) -> None:
        """Run a management command of the project to completion (``migrate``, say)."""
        argv = [sys.executable, "-m", "workers.manage", *args]
        subprocess.run(argv, cwd=REPO, env=self.env(), check=True, timeout=120)

    def start_frontend(
        self, *server_args: str, port: int = 0, server: str = "daphne", **env: str
    ) -> Process:
        """A front-end on 127.0.0.1: ``server`` is "daphne" or "uvicorn" (``server_args`` are
        its own flags); ``port`` 0 lets the OS pick, read back from the server's output."""
        argv = [*frontend_command(server, port), *server_args, self.app]
        proc = Process(f"{server}{len(self.frontends)}", argv, self.env(**env), self.log_dir)
        self.frontends.append(proc)
        listening = proc.wait_for(LISTENING[server])
        self.ports.append(int(listening.group(1)))
        return proc

    def start_worker(
        self,
        queues: Sequence[str] = (),
        concurrency: int | None = None,
        args: Sequence[str] = (),
        **env: str,
    ) -> Process:
        argv = [sys.executable, "-m", "workers.manage", "rpcworker", *queues, *args]
        if concurrency is not None:
            argv += ["--concurrency", str(concurrency)]
        proc = Process(f"worker{len(self.workers)}", argv, self.env(**env), self.log_dir)
        self.workers.append(proc)
        proc.wait_for(r"rpcworker ready")
        return proc

    def url(self, path: str = "/ws/rpc/", frontend: int = 0) -> str:
        return f"ws://127.0.0.1:{self.ports[frontend]}{path}"

    def stop(self) -> None:
        """Stop every process this cluster started: the workers first (they drain, all at
        once, each within its grace), then the front-ends."""
        for group in (self.workers, self.frontends):
            for proc in group:
                proc.terminate()
            for proc in group:
                proc.wait_stopped()

    def logs(self) -> str:
        return "\n".join(
            f"----- {proc.name} (pid {proc.pid}, exit {proc.popen.returncode}) -----\n"
            + proc.output()[-6000:]
            for proc in [*self.frontends, *self.workers]
        )


def frontend_command(server: str, port: int = 0) -> list[str]:
    """The command line of a front-end on 127.0.0.1:``port``, but for the application."""
    if server == "daphne":
        endpoint = f"tcp:port={port}:interface=127.0.0.1"
        return [sys.executable, "-m", "daphne", "-e", endpoint, *DAPHNE_FLAGS]
    if server == "uvicorn":
        address = ["--host", "127.0.0.1", "--port", str(port)]
        return [sys.executable, "-m", "uvicorn", *address, *UVICORN_FLAGS]
    raise ValueError(f"unknown front-end server {server!r}: daphne or uvicorn")


def rpcnotify_line(cluster: LocalCluster) -> str:
    """The command that pushes to the demo page's topic: it must use the cluster's Redis and
    channel prefix, or its push reaches no one."""
    env = f"REDIS_URL={shlex.quote(cluster.redis.url)} CHANNELS_PREFIX={cluster.prefix}"
    params = shlex.quote(json.dumps({"topic": "demo", "message": "hi"}))
    return f"{env} {sys.executable} -m workers.manage rpcnotify topic.demo topic.message {params}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the reference project as a local cluster.")
    parser.add_argument("--frontends", type=int, default=2)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--port", type=int, default=0, help="first front-end port (0: any free)")
    parser.add_argument("--server", choices=sorted(LISTENING), default="daphne")
    args = parser.parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="channels-rpc-cluster-"))
    redis = find_or_start_redis(log_dir)
    cluster = LocalCluster(
        redis,
        log_dir,
        env_extra={"DJANGO_DB_PATH": os.environ.get("DJANGO_DB_PATH", str(log_dir / "db.sqlite3"))},
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        cluster.manage("migrate", "--verbosity", "0")
        for index in range(args.frontends):
            cluster.start_frontend(port=args.port + index if args.port else 0, server=args.server)
        for _ in range(args.workers):
            cluster.start_worker()
        print(f"Redis: {redis.url} ({redis.kind}); logs: {log_dir}")
        for index, proc in enumerate(cluster.frontends):
            port = cluster.ports[index]
            print(
                f"front-end {index} (pid {proc.pid}): http://127.0.0.1:{port}/  ws://127.0.0.1:{port}/ws/rpc/"
            )
        for proc in cluster.workers:
            print(f"worker (pid {proc.pid})")
        print(f"push to the demo page from another shell:\n  {rpcnotify_line(cluster)}")
        print("Ctrl-C stops everything.", flush=True)
        stop.wait()
    finally:
        print("stopping ...", flush=True)
        cluster.stop()
        redis.stop()


if __name__ == "__main__":
    main()
