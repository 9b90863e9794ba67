"""Real processes for integration tests: Redis, daphne front-ends and rpcworker processes.

Built on ``workers.cluster`` (the local cluster launcher). Every process is started by a test
fixture and stopped by it, by pid, even when the test fails. Readiness is read from the
processes' own output, never assumed after a sleep. Front-ends listen on a port the OS picks at
bind time; our own Redis listens on a Unix socket, so no port is ever guessed.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

from workers.cluster import (
    REPO,
    LocalCluster,
    Redis,
    reachable,
    start_fakeredis,
    start_redis_server,
)
from workers.cluster import Process as Proc

__all__ = [
    "REPO",
    "Cluster",
    "Proc",
    "Redis",
    "child_env",
    "reachable",
    "start_fakeredis",
    "start_redis_server",
]

TEST_APP = "tests.project.asgi:application"
TEST_SETTINGS = "tests.project.settings"


def child_env(redis_url: str, prefix: str, db_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE=TEST_SETTINGS,
        REDIS_URL=redis_url,
        CHANNELS_PREFIX=prefix,
        DJANGO_DB_PATH=str(db_path),
        **extra,
    )
    return env


class Cluster(LocalCluster):
    """A local cluster of the test project (``tests/project``), its processes on one prefix."""

    def __init__(self, redis: Redis, log_dir: Path, db_path: Path) -> None:
        super().__init__(
            redis,
            log_dir,
            app=TEST_APP,
            settings=TEST_SETTINGS,
            env_extra={"DJANGO_DB_PATH": str(db_path)},
            prefix=f"t{uuid.uuid4().hex[:10]}",
        )
        self.db_path = db_path

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
        return super().url(path, frontend)
