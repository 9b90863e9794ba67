"""``python -m workers.cluster``: the docker-compose topology as local processes.

Starts the launcher as a user would (2 front-ends, 3 workers on the reference project), makes a
call on one front-end's socket that pushes to a subscriber on the other's, then presses Ctrl-C
and checks that every process the launcher started is gone.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from channels_rpc.client import RpcClient
from tests.integration.harness import REPO, Redis
from workers.cluster import Process

pytestmark = pytest.mark.anyio

READY = "Ctrl-C stops everything."


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


@pytest.fixture
def launcher(redis_server: Redis, tmp_path: Path) -> Iterator[Process]:
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        REDIS_URL=redis_server.url,
        DJANGO_DB_PATH=str(tmp_path / "db.sqlite3"),
    )
    argv = [sys.executable, "-m", "workers.cluster", "--frontends", "2", "--workers", "3"]
    proc = Process("launcher", argv, env, tmp_path)
    try:
        yield proc
    finally:
        # The launcher stops its children on SIGINT; if it cannot, end them here by pid.
        children = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", proc.output())]
        proc.send_signal(signal.SIGINT)
        try:
            proc.popen.wait(30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        for pid in children:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
        proc.stop()


async def test_two_frontends_three_workers_push_across_frontends_and_stop_on_ctrl_c(
    launcher: Process,
) -> None:
    launcher.wait_for(re.escape(READY), timeout=90)
    output = launcher.output()
    urls = re.findall(r"(ws://127\.0\.0\.1:\d+/ws/rpc/)", output)
    pids = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", output)]
    assert len(set(urls)) == len(urls) == 2, output
    assert len(pids) == 5, output  # 2 front-ends + 3 workers

    async with RpcClient(urls[0]) as listener, RpcClient(urls[1]) as caller:
        assert await listener.call("subscribe", ["launch"]) == "launch"
        stream = listener.notifications()
        assert await caller.call("publish", ["launch", "hello from the other front-end"]) is True
        pushed = await asyncio.wait_for(anext(stream), 10)
        await stream.aclose()
        assert pushed["method"] == "topic.message"
        assert pushed["params"]["message"] == "hello from the other front-end"
        assert pushed["params"]["worker_pid"] in pids[2:]
        # The workers share the one queue: sequential calls do not all land on one of them.
        served = {(await caller.call("whoami"))["worker_pid"] for _ in range(60)}
        assert served <= set(pids[2:]), served
        assert len(served) >= 2, served

        # The push command the launcher prints, run as printed, reaches the demo page's topic.
        assert await listener.call("subscribe", ["demo"]) == "demo"
        stream = listener.notifications()
        line = re.search(r"^  (REDIS_URL=.* rpcnotify .*)$", output, re.MULTILINE)
        assert line is not None, output
        shell_env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        command = await asyncio.create_subprocess_shell(
            line[1], cwd=REPO, env=shell_env, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await asyncio.wait_for(command.communicate(), 60)
        assert command.returncode == 0, stderr.decode()
        pushed = await asyncio.wait_for(anext(stream), 10)
        await stream.aclose()
        assert pushed["params"] == {"topic": "demo", "message": "hi"}

    launcher.send_signal(signal.SIGINT)
    assert launcher.popen.wait(30) == 0, launcher.output()[-3000:]
    assert [pid for pid in pids if not _gone(pid)] == []
