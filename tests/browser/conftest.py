"""Fixtures for browser tests: headless Chromium (Debian's, not a Playwright download) and a
local cluster of the reference project (Redis, two daphne front-ends, one rpcworker).

Without chromium or the ``playwright`` package the tests skip, except in a CI run (``CI`` set to
1, true, yes or on: :func:`workers.cluster.in_ci`), where they fail: CI must not go green
without having run them (``tools/ensure-chromium`` installs it). The cluster's Redis comes from
:func:`workers.cluster.find_or_start_redis`, which refuses fakeredis in a CI run too.
``CHROMIUM`` overrides the browser's path.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from workers.cluster import LocalCluster, find_or_start_redis, in_ci

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, WebSocket

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PLAYWRIGHT_MISSING = "playwright is not installed (pip install -e '.[test]')"


def unavailable(reason: str) -> NoReturn:
    """Skip: chromium or playwright is missing; but fail in a CI run, which must run them."""
    if in_ci():
        pytest.fail(f"a CI run needs the browser tests to run, but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable(PLAYWRIGHT_MISSING)
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"no chromium at {CHROMIUM} (run tools/ensure-chromium, or set CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def cluster(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Two front-ends and a worker; stopped whatever happens, Redis too if it was started here.

    Requests ``browser`` first so that no cluster starts for tests that are going to skip."""
    log_dir = tmp_path_factory.mktemp("browser-cluster")
    redis = find_or_start_redis(log_dir)
    cluster = LocalCluster(
        redis, log_dir, env_extra={"DJANGO_DB_PATH": str(log_dir / "db.sqlite3")}
    )
    try:
        cluster.manage("migrate", "--verbosity", "0")
        cluster.start_frontend()
        cluster.start_frontend()
        cluster.start_worker()
        yield cluster
    finally:
        cluster.stop()
        redis.stop()


class Pages:
    """Opens the demo page in fresh browser contexts; keeps what their consoles said and the
    JSON-RPC messages each received (``received[page]``, in order, batches flattened)."""

    def __init__(self, browser: Browser, cluster: LocalCluster) -> None:
        self.browser = browser
        self.cluster = cluster
        self.console: list[str] = []
        self.page_errors: list[str] = []
        self.pages: list[Page] = []
        self.received: dict[Page, list[dict[str, Any]]] = {}

    def open(self, frontend: int = 0) -> Page:
        """The demo page on front-end ``frontend``, once connected and subscribed."""
        context = self.browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        name = f"page{len(self.pages)}@frontend{frontend}"
        page.on("console", lambda message: self._console(name, message))
        page.on("pageerror", lambda error: self.page_errors.append(f"{name}: {error}"))
        page.on("websocket", lambda ws: self._record(page, ws))
        self.pages.append(page)
        self.received[page] = []
        page.goto(f"http://127.0.0.1:{self.cluster.ports[frontend]}/")
        from playwright.sync_api import expect

        expect(page.locator("#state")).to_have_text("open")
        expect(page.locator("#subscription")).to_have_attribute("data-subscribed", "demo")
        return page

    def _console(self, name: str, message: ConsoleMessage) -> None:
        self.console.append(f"{name} [{message.type}] {message.text}")

    def _record(self, page: Page, ws: WebSocket) -> None:
        def received(payload: str | bytes) -> None:
            message = json.loads(payload)
            self.received[page].extend(message if isinstance(message, list) else [message])

        ws.on("framereceived", received)

    def close(self) -> None:
        for page in self.pages:
            page.context.close()


@pytest.fixture
def pages(
    request: pytest.FixtureRequest, browser: Browser, cluster: LocalCluster
) -> Iterator[Pages]:
    pages = Pages(browser, cluster)
    try:
        yield pages
    finally:
        pages.close()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print("\n".join(["----- browser console -----", *pages.console]), file=sys.stderr)
            print(cluster.logs(), file=sys.stderr)
    # An uncaught exception in the page fails the test even when every assertion held.
    assert not pages.page_errors, pages.page_errors
