"""Fixtures for browser tests: headless Chromium (Debian's, not a Playwright download), a
local cluster of the reference project (Redis, two daphne front-ends, one rpcworker), the same
project embedded (one daphne, the in-memory layer: ``make demo``), and a :class:`Relay`, the
network between the browser and a front-end, which a test can cut.

Without chromium or the ``playwright`` package the tests skip, except in a CI run (``CI`` set to
1, true, yes or on: :func:`workers.cluster.in_ci`), where they fail: CI must not go green
without having run them (``tools/ensure-chromium`` installs it). The cluster's Redis comes from
:func:`workers.cluster.find_or_start_redis`, which refuses fakeredis in a CI run too.
``CHROMIUM`` overrides the browser's path.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import pytest

from workers.cluster import LocalCluster, Redis, find_or_start_redis, in_ci

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, WebSocket

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PLAYWRIGHT_MISSING = "playwright is not installed (pip install -e '.[test]')"
T = TypeVar("T")


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


@pytest.fixture(scope="module")
def embedded(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The reference project as ``make demo`` runs it: one daphne, the in-memory layer (no
    ``REDIS_URL``), methods run inside it, no sessions. No front-end started yet."""
    log_dir = tmp_path_factory.mktemp("browser-embedded")
    cluster = LocalCluster(
        Redis("", "none"), log_dir, env_extra={"DJANGO_DB_PATH": str(log_dir / "db.sqlite3")}
    )
    try:
        cluster.manage("migrate", "--verbosity", "0")
        yield cluster
    finally:
        cluster.stop()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            if writer.is_closing():
                return
            writer.write(data)
            await writer.drain()
        if not writer.is_closing() and writer.can_write_eof():
            writer.write_eof()
    except OSError:  # the other side was cut
        return


class Relay:
    """A TCP relay to a front-end, in the test process: the network between the browser and the
    server, as a load balancer would be. :meth:`cut` drops every connection at once, with no
    WebSocket close either way (what a lost network does); :meth:`hold` refuses new ones until
    :meth:`release`, which may send them to another front-end.

    It runs an event loop of its own, in a thread, so that the (synchronous) test can drive it.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.held = False
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relay", daemon=True)
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._relay, "127.0.0.1", 0))
        self.port: int = self._server.sockets[0].getsockname()[1]

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def hold(self) -> None:
        """Refuse new connections (each one is dropped once accepted) until :meth:`release`."""
        self.held = True

    def release(self, target: int | None = None) -> None:
        """Relay new connections again, to the front-end on port ``target`` if given."""
        if target is not None:
            self.target = target
        self.held = False

    def cut(self) -> int:
        """Drop every connection now, both ends; how many there were."""
        return self._run(self._cut())

    async def _cut(self) -> int:
        pairs = list(self._pairs)
        for pair in pairs:
            for writer in pair:
                writer.transport.abort()
        return len(pairs)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.held:
                writer.transport.abort()
                return
            try:
                upstream = await asyncio.open_connection("127.0.0.1", self.target)
            except OSError:
                writer.transport.abort()
                return
            pair = (writer, upstream[1])
            self._pairs.add(pair)
            try:
                await asyncio.gather(_pipe(reader, upstream[1]), _pipe(upstream[0], writer))
            finally:
                self._pairs.discard(pair)
                for end in pair:
                    end.transport.abort()
        finally:
            self._tasks.discard(task)

    def stop(self) -> None:
        """Stop listening, drop every connection, and end the thread."""

        async def stop() -> None:
            self._server.close()
            await self._cut()
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=10)
            await self._server.wait_closed()

        try:
            self._run(stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


@pytest.fixture
def relay(cluster: LocalCluster) -> Iterator[Relay]:
    """A :class:`Relay` to the cluster's first front-end; stopped after the test."""
    relay = Relay(cluster.ports[0])
    try:
        yield relay
    finally:
        relay.stop()


class Pages:
    """Opens the demo page in fresh browser contexts; keeps what their consoles said and the
    JSON-RPC messages each received (``received[page]``, in order, batches flattened)."""

    def __init__(self, browser: Browser, cluster: LocalCluster) -> None:
        self.browser = browser
        self.cluster = cluster
        self.clusters = [cluster]  # whose logs a failure shows
        self.console: list[str] = []
        self.page_errors: list[str] = []
        self.pages: list[Page] = []
        self.received: dict[Page, list[dict[str, Any]]] = {}

    def open(
        self, frontend: int = 0, *, on: LocalCluster | None = None, port: int | None = None
    ) -> Page:
        """The demo page on front-end ``frontend`` of ``on`` (by default the cluster with
        Redis), or at ``port`` (a :class:`Relay`'s), once connected and subscribed."""
        cluster = on or self.cluster
        if cluster not in self.clusters:
            self.clusters.append(cluster)
        port = port or cluster.ports[frontend]
        context = self.browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        name = f"page{len(self.pages)}@{port}"
        page.on("console", lambda message: self._console(name, message))
        page.on("pageerror", lambda error: self.page_errors.append(f"{name}: {error}"))
        page.on("websocket", lambda ws: self._record(page, ws))
        self.pages.append(page)
        self.received[page] = []
        page.goto(f"http://127.0.0.1:{port}/")
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
            for watched in pages.clusters:
                print(watched.logs(), file=sys.stderr)
    # An uncaught exception in the page fails the test even when every assertion held.
    assert not pages.page_errors, pages.page_errors
