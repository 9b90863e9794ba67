"""Shared fixtures: Django configured for in-process tests, a fresh channel layer per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from channels.layers import channel_layers  # noqa: E402

from channels_rpc import embedded  # noqa: E402
from channels_rpc.config import reset_config  # noqa: E402
from tests.integration.reliability.report import Figures  # noqa: E402

FIGURES = pytest.StashKey[Figures]()
_VECTOR_TESTS = {"test_vectors.py": "in-process", "test_vectors_live.py": "over daphne"}


def pytest_configure(config: pytest.Config) -> None:
    path = os.environ.get("RELIABILITY_RESULTS")
    config.stash[FIGURES] = Figures(Path(path) if path else None)


_vector_outcomes: dict[tuple[str, str], list[bool]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # T01/T02 of the reliability table are the vector tests' own outcomes.
    file, _, name = report.nodeid.rpartition("::")
    where = _VECTOR_TESTS.get(file.rsplit("/", 1)[-1])
    if report.when != "call" or where is None or not name.startswith("test_vector["):
        return
    plan_id = "T01" if name[len("test_vector[")] == "S" else "T02"
    _vector_outcomes.setdefault((plan_id, where), []).append(report.passed)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    figures = config.stash[FIGURES]
    for (plan_id, where), passed in sorted(_vector_outcomes.items()):
        figures.record(plan_id, f"{sum(passed)}/{len(passed)} {where}", all(passed))
    if figures.rows:
        terminalreporter.write_sep("=", "reliability figures")
        terminalreporter.write_line(figures.table())


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
    return report
