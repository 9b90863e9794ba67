"""Real processes for integration tests: Redis, daphne front-ends and rpcworker processes.

Every process is started by a test fixture and stopped by it, by pid, even when the test fails.
Readiness is read from the processes' own output (daphne's "Listening on TCP address", the
worker's "rpcworker ready"), never assumed after a sleep. Front-ends listen on a port the OS
picks at bind time; our own Redis listens on a Unix socket, so no port is ever guessed.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 30.0


class Proc:
    """A child process whose output is collected line by line and can be waited on."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self.popen = subprocess.Popen(
            list(argv),
            cwd=REPO,
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

    def send_signal(self, signum: int) -> None:
        if self.alive:
            os.kill(self.pid, signum)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if self.alive:
            self.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.send_signal(signal.SIGKILL)
                self.popen.wait(timeout)
        self._reader.join(5)
        return self.popen.returncode


@dataclass
class Redis:
    """The Redis the tests use and how it was obtained."""

    url: str
    kind: str  # "redis-server", "external" or "fakeredis"
    proc: Proc | None = None
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


def _redis_server_proc(log_dir: Path, restart: bool = False) -> Proc:
    sock = log_dir / "redis.sock"
    argv = [
        "redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
        "--save", "", "--appendonly", "no", "--dir", str(log_dir),
    ]  # fmt: skip
    proc = Proc("redis-restarted" if restart else "redis", argv, dict(os.environ), log_dir)
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


def child_env(redis_url: str, prefix: str, db_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE="tests.project.settings",
        REDIS_URL=redis_url,
        CHANNELS_PREFIX=prefix,
        DJANGO_DB_PATH=str(db_path),
        **extra,
    )
    return env


@dataclass
class Cluster:
    """Daphne front-ends and rpcworker processes sharing one Redis prefix."""

    redis: Redis
    log_dir: Path
    db_path: Path
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    frontends: list[Proc] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    workers: list[Proc] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return child_env(self.redis.url, self.prefix, self.db_path, **extra)

    def start_frontend(self, *daphne_args: str, **env: str) -> Proc:
        name = f"daphne{len(self.frontends)}"
        argv = [
            sys.executable, "-m", "daphne", "-e", "tcp:port=0:interface=127.0.0.1",
            *daphne_args, "tests.project.asgi:application",
        ]  # fmt: skip
        proc = Proc(name, argv, self.env(**env), self.log_dir)
        self.frontends.append(proc)
        port = int(proc.wait_for(r"Listening on TCP address 127\.0\.0\.1:(\d+)").group(1))
        self.ports.append(port)
        return proc

    def start_worker(
        self,
        queues: Sequence[str] = (),
        concurrency: int | None = None,
        args: Sequence[str] = (),
        **env: str,
    ) -> Proc:
        name = f"worker{len(self.workers)}"
        argv = [sys.executable, "-m", "workers.manage", "rpcworker", *queues, *args]
        if concurrency is not None:
            argv += ["--concurrency", str(concurrency)]
        proc = Proc(name, argv, self.env(**env), self.log_dir)
        self.workers.append(proc)
        proc.wait_for(r"rpcworker ready")
        return proc

    def start_runworker(self, *channels: str) -> Proc:
        """Channels' own ``runworker`` serving RPC queues through RpcWorkerConsumer."""
        name = f"runworker{len(self.workers)}"
        argv = [sys.executable, "-m", "workers.manage", "runworker", *channels]
        proc = Proc(name, argv, self.env(), self.log_dir)
        self.workers.append(proc)
        proc.wait_for(r"Running worker for channels")
        return proc

    def counter_key(self, name: str) -> str:
        """The Redis key of a ``tests.project.counters`` counter in this cluster."""
        return f"{self.prefix}:test:{name}"

    def url(self, path: str = "/ws/test/", frontend: int = 0) -> str:
        return f"ws://127.0.0.1:{self.ports[frontend]}{path}"

    def stop(self) -> None:
        for proc in [*self.workers, *self.frontends]:
            proc.stop()

    def logs(self) -> str:
        return "\n".join(
            f"----- {proc.name} (pid {proc.pid}, exit {proc.popen.returncode}) -----\n"
            + proc.output()[-6000:]
            for proc in [*self.frontends, *self.workers]
        )
