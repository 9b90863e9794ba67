"""tests/leaks.py: a socket a test leaves open fails that test, not a later, unrelated one.

Runs a small suite that leaks on purpose in a pytest of its own (a subprocess, with
``filterwarnings = error`` as here), once without the plugin and once with it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

LEAKY_SUITE = """
import gc
import socket


def test_fails_holding_a_socket():
    sock = socket.socket()  # left open; the failure's traceback keeps its frame alive
    assert sock is None


def test_unrelated_after_a_failure():
    pass


def test_leaks_a_socket_in_a_cycle():
    holder = {"sock": socket.socket()}
    holder["self"] = holder  # only the cyclic collector frees it, whenever it next runs


def test_unrelated_when_the_collector_runs():
    gc.collect()
"""


def run_leaky_suite(tmp_path: Path, *plugins: str) -> tuple[dict[str, set[str]], str]:
    """Each test's outcomes (a test may both fail and error) and pytest's output."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    (tmp_path / "test_leaky.py").write_text(LEAKY_SUITE)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(REPO)
    argv = [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "-p", "no:asyncio"]
    for plugin in plugins:
        argv += ["-p", plugin]
    done = subprocess.run(
        [*argv, "test_leaky.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    outcomes: dict[str, set[str]] = {}
    for outcome, name in re.findall(
        r"^(PASSED|FAILED|ERROR) test_leaky\.py::(\w+)", done.stdout, re.M
    ):
        outcomes.setdefault(name, set()).add(outcome)
    return outcomes, done.stdout


def test_without_the_plugin_leaks_fail_a_later_test_that_leaked_nothing(tmp_path: Path) -> None:
    outcomes, output = run_leaky_suite(tmp_path)
    assert outcomes["test_fails_holding_a_socket"] == {"FAILED"}, output  # no word of its leak
    assert outcomes["test_leaks_a_socket_in_a_cycle"] == {"PASSED"}, output
    # Both sockets die in the collection this test happens to run, and fail it.
    assert outcomes["test_unrelated_when_the_collector_runs"] == {"FAILED"}, output
    assert output.count("ResourceWarning: unclosed <socket.socket") == 2, output


def test_with_the_plugin_each_leak_fails_the_test_that_leaked(tmp_path: Path) -> None:
    outcomes, output = run_leaky_suite(tmp_path, "tests.leaks")
    assert outcomes == {
        "test_fails_holding_a_socket": {"FAILED", "ERROR"},  # its assert, then the leak
        "test_unrelated_after_a_failure": {"PASSED"},
        "test_leaks_a_socket_in_a_cycle": {"PASSED", "ERROR"},  # passed, then the leak
        "test_unrelated_when_the_collector_runs": {"PASSED"},
    }, output
    assert output.count("ResourceWarning: unclosed <socket.socket") == 2, output
