"""The processes a benchmark run starts, and what they cost (CPU from /proc, memory)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


class Proc:
    """A child process whose output is kept and can be waited on; stopped by pid."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        self.popen.stdout.close()

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        regex, deadline, index = re.compile(pattern), time.monotonic() + timeout, 0
        with self._cond:
            while True:
                for line in self.lines[index:]:
                    if match := regex.search(line):
                        return match
                index = len(self.lines)
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.name} never printed {pattern!r}:\n{''.join(self.lines)[-3000:]}"
                    )
                self._cond.wait(0.2)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(15)


class Stack:
    """Redis, front-ends and workers of one run; everything it starts, it stops."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="channels-rpc-bench-"))
        self.procs: list[Proc] = []
        self.redis_url = ""
        self.redis: Proc | None = None

    def start_redis(self) -> str:
        if shutil.which("redis-server"):
            sock = self.dir / "redis.sock"
            argv = ["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "",
                    "--appendonly", "no", "--dir", str(self.dir)]  # fmt: skip
            self.redis = self._start("redis", argv, dict(os.environ), self.dir)
            self.redis.wait_for(r"[Rr]eady to accept connections")
            self.redis_url = f"unix://{sock}"
        elif _reachable(6379):
            self.redis_url = "redis://127.0.0.1:6379/0"
        else:
            raise SystemExit("the benchmarks need Redis: install redis-server or run one on :6379")
        return self.redis_url

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PYTHONPATH=str(REPO),
            DJANGO_SETTINGS_MODULE="benchmarks.app.settings",
            REDIS_URL=self.redis_url,
            CHANNELS_PREFIX=f"bench{len(self.procs)}",
            **extra,
        )
        return env

    def daphne(
        self, name: str, python: str, app: str, cwd: Path, env: dict[str, str]
    ) -> tuple[Proc, int]:
        argv = [python, "-m", "daphne", "-e", "tcp:port=0:interface=127.0.0.1", app]
        proc = self._start(name, argv, env, cwd)
        port = int(proc.wait_for(r"Listening on TCP address 127\.0\.0\.1:(\d+)").group(1))
        return proc, port

    def worker(self, env: dict[str, str], concurrency: int = 64) -> Proc:
        argv = [sys.executable, "-m", "django", "rpcworker", "--concurrency", str(concurrency)]
        proc = self._start(f"worker{len(self.procs)}", argv, env, REPO)
        proc.wait_for(r"rpcworker ready")
        return proc

    def _start(self, name: str, argv: Sequence[str], env: dict[str, str], cwd: Path) -> Proc:
        proc = Proc(name, argv, env, cwd)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        self.procs.remove(proc)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
