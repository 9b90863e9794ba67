"""Shared fixtures: Django configured for in-process tests, a fresh channel layer per test."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from channels.layers import channel_layers  # noqa: E402

from channels_rpc import embedded  # noqa: E402
from channels_rpc.config import reset_config  # noqa: E402
from tests.integration.reliability.plan import PLAN  # noqa: E402
from tests.integration.reliability.report import Figures  # noqa: E402

# A resource a test leaves open fails that test, not a later one (tests/leaks.py says how); one
# Redis serves every directory's multi-process tests (tests/redis_fixtures.py).
pytest_plugins = ["tests.leaks", "tests.redis_fixtures"]

FIGURES = pytest.StashKey[Figures]()
_VECTOR_TESTS = {"test_vectors.py": "in-process", "test_vectors_live.py": "over daphne"}
#: A test named ``test_t05_...`` measures row T05 of the reliability plan.
_PLAN_TEST = re.compile(r"test_t(\d\d)_")


def pytest_configure(config: pytest.Config) -> None:
    path = os.environ.get("RELIABILITY_RESULTS")
    config.stash[FIGURES] = Figures(Path(path) if path else None)


# (plan id, where) -> {vector test: passed so far}
_vector_outcomes: dict[tuple[str, str], dict[str, bool]] = {}
_reductions: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # T01/T02 of the reliability table are the vector tests' own outcomes: a vector passes
    # only if none of its phases failed (an error in setup is a failure, not a vector less).
    file, _, name = report.nodeid.rpartition("::")
    where = _VECTOR_TESTS.get(file.rsplit("/", 1)[-1])
    if where is None or not name.startswith("test_vector[") or report.skipped:
        return
    if report.when == "call" or report.failed:
        plan_id = "T01" if name[len("test_vector[")] == "S" else "T02"
        outcomes = _vector_outcomes.setdefault((plan_id, where), {})
        outcomes[report.nodeid] = outcomes.get(report.nodeid, True) and report.passed


def _record_plan_outcome(item: pytest.Item, report: pytest.TestReport) -> None:
    """A row for a plan test that failed, errored or skipped, in any phase.

    Its own ``figures.check`` row says what it measured; a failing row here makes sure the
    plan row fails even when the test never got that far (an error in setup, an assert before
    the check) or failed after it (teardown). A skip is shown as one, never as a pass.
    """
    match = _PLAN_TEST.match(item.name)
    plan_id = f"T{match.group(1)}" if match else ""
    if plan_id not in PLAN or report.passed:
        return
    figures = item.config.stash[FIGURES]
    if report.skipped:
        figures.record(plan_id, f"{item.name} skipped: {_reason(report)}", True, skipped=True)
        return
    phase = "failed" if report.when == "call" else f"error in {report.when}"
    figures.record(plan_id, f"{item.name} {phase}: {_reason(report)}", False)


def _reason(report: pytest.TestReport) -> str:
    """The first line of why a test failed or skipped."""
    if isinstance(report.longrepr, tuple):  # a skip: (file, line, reason)
        text = str(report.longrepr[2])
    else:
        crash = getattr(report.longrepr, "reprcrash", None)
        text = getattr(crash, "message", None) or str(report.longrepr)
    lines = text.strip().splitlines()
    return lines[0][:160] if lines else ""


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    figures = config.stash[FIGURES]
    for (plan_id, where), outcomes in sorted(_vector_outcomes.items()):
        passed = sum(outcomes.values())
        figures.record(plan_id, f"{passed}/{len(outcomes)} {where}", passed == len(outcomes))
    if _reductions:
        terminalreporter.write_sep("=", "tests run smaller than their names say")
        for line in _reductions:
            terminalreporter.write_line(line)
    if figures.rows:
        terminalreporter.write_sep("=", "reliability figures")
        terminalreporter.write_line(figures.table())


@pytest.fixture
def reduced(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Says, in the session's summary, that this test ran smaller than it claims, and why."""

    def note(why: str) -> None:
        _reductions.append(f"{request.node.nodeid}: {why}")

    return note


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest) -> Figures:
    """Where reliability tests record what they measured (the table printed at the end)."""
    return request.config.stash[FIGURES]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _fresh_channel_layers() -> Iterator[None]:
    # In-memory layers hold asyncio queues bound to the event loop of the test that made them.
    channel_layers.backends = {}
    reset_config()
    yield
    channel_layers.backends = {}
    reset_config()


@pytest.fixture
async def embedded_worker() -> AsyncIterator[None]:
    """Stops the embedded worker a test's connections started, inside the test's event loop."""
    yield
    await embedded.shutdown()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Fixtures read the outcome (``item.rep_call``) to attach process logs to failures.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    _record_plan_outcome(item, report)
    return report
