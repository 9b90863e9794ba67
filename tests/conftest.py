"""Shared fixtures: Django configured for in-process tests, a fresh channel layer per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Generator, Iterator

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from channels.layers import channel_layers  # noqa: E402

from channels_rpc import embedded  # noqa: E402
from channels_rpc.config import reset_config  # noqa: E402


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
