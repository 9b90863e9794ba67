"""``manage.py rpccall`` as a user runs it: a subprocess calling a live front-end and worker."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.integration.harness import REPO, Cluster
from tests.integration.support import ClusterFactory

REFERENCE_APP = "workers.asgi:application"


def rpccall(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "workers.manage", "rpccall", *args]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def error_of(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    """The JSON-RPC error object the command wrote, as its last line of stderr."""
    error: dict[str, object] = json.loads(done.stderr.strip().splitlines()[-1])
    return error


@pytest.fixture
def cluster(cluster_factory: ClusterFactory) -> Cluster:
    """A worker, and a front-end of the reference project's application (its methods, and its
    origin check) on the test project's settings."""
    cluster = cluster_factory(frontends=0, workers=1)
    cluster.app = REFERENCE_APP
    cluster.start_frontend()
    return cluster


def test_a_result_on_stdout_and_an_error_answer_on_stderr_exiting_1(cluster: Cluster) -> None:
    env, url = cluster.env(), ["--url", cluster.url("/ws/rpc/")]

    added = rpccall(env, "add", "[1, 2]", *url)
    assert (added.returncode, added.stdout) == (0, "3\n"), added.stderr

    indented = rpccall(env, "echo", '[{"a": [1, null]}]', "--indent", "2", *url)
    assert indented.returncode == 0, indented.stderr
    assert indented.stdout == json.dumps({"a": [1, None]}, indent=2) + "\n"

    divided = rpccall(env, "divide", "[1, 0]", *url)
    assert (divided.returncode, divided.stdout) == (1, "")
    assert error_of(divided)["code"] == -32602

    unknown = rpccall(env, "no_such_method", *url)
    assert unknown.returncode == 1
    assert error_of(unknown)["code"] == -32601

    notified = rpccall(env, "log", '{"message": "hi"}', "--notify", *url)
    assert (notified.returncode, notified.stdout) == (0, ""), notified.stderr


def test_headers_reach_the_handshake_and_a_late_answer_exits_2(cluster: Cluster) -> None:
    env, url = cluster.env(), ["--url", cluster.url("/ws/rpc/")]
    refused = rpccall(env, "add", "[1, 2]", *url, "--header", "Origin: http://evil.test")
    assert refused.returncode == 2
    assert "HTTP 403" in refused.stderr  # the project's origin check saw the header
    allowed = rpccall(env, "add", "[1, 2]", *url, "--header", "Origin: http://localhost:8000")
    assert (allowed.returncode, allowed.stdout) == (0, "3\n"), allowed.stderr

    late = rpccall(env, "build_report", '{"steps": 1, "delay": 30}', *url, "--timeout", "0.5")
    assert late.returncode == 2
    assert "no answer from" in late.stderr
    assert "within 0.5 s" in late.stderr


@pytest.fixture
def plain_env() -> dict[str, str]:
    """The command's environment without a cluster: the in-process tests' settings."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return {**env, "PYTHONPATH": str(REPO), "DJANGO_SETTINGS_MODULE": "tests.settings"}


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port bound but not listening, held so that nobody else takes it: connections refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("params", "message"),
    [("[1, 2", "PARAMS is not JSON"), ("3", "PARAMS must be a JSON array or object")],
)
def test_params_that_are_not_a_json_array_or_object_exit_2(
    plain_env: dict[str, str], params: str, message: str
) -> None:
    done = rpccall(plain_env, "add", params)
    assert done.returncode == 2
    assert message in done.stderr


def test_an_unreachable_front_end_exits_2_at_once(
    plain_env: dict[str, str], refusing_port: int
) -> None:
    started = time.monotonic()
    done = rpccall(plain_env, "add", "[1, 2]", "--url", f"ws://127.0.0.1:{refusing_port}/ws/rpc/")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "connection refused" in done.stderr
    assert time.monotonic() - started < 20  # the process's start included: no retry, no wait
