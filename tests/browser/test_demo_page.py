"""The demo page (``/`` of the reference project, ``channels_rpc/static/channels_rpc/client.js``)
in headless Chromium against a real local cluster: two front-ends, a worker, Redis.

Every wait is on something the page shows (``expect``, ``wait_for_function``), never a sleep.
``CHANNELS_RPC_SCREENSHOT=1`` also writes the screenshot to docs/demo-page.png.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.browser.conftest import PLAYWRIGHT_MISSING, Pages, unavailable
from workers.cluster import REPO, LocalCluster

try:
    from playwright.sync_api import FloatRect, Locator, Page, expect
except ImportError:
    unavailable(PLAYWRIGHT_MISSING)

pytestmark = pytest.mark.browser

REPORT_STEPS = 20  # what the page's Start button asks build_report for, 0.5 s each


def notification(page: Page, text: str) -> Locator:
    return page.locator("#notifications li").filter(has_text=text)


def test_call_notifications_and_a_cancelled_long_call(
    pages: Pages, cluster: LocalCluster, tmp_path: Path
) -> None:
    page = pages.open(0)
    frames = pages.received[page]

    # Any method: the form comes filled in with add [1, 2].
    expect(page.locator("#method")).to_have_value("add")
    expect(page.locator("#params")).to_have_value("[1, 2]")
    page.click("#call")
    expect(page.locator("#result")).to_have_text("3")

    # Published on the other front-end, through a worker: reaches this page's connection.
    other = pages.open(1)
    other.fill("#publish-text", "hello from front-end 1")
    other.click("#publish")
    expect(notification(page, "hello from front-end 1")).to_have_count(1)
    expect(notification(other, "hello from front-end 1")).to_have_count(1)

    # Pushed from outside any front-end, by the management command.
    params = {"topic": "demo", "message": "hello from rpcnotify"}
    cluster.manage("rpcnotify", "topic.demo", "topic.message", json.dumps(params))
    expect(notification(page, "hello from rpcnotify")).to_have_count(1)
    expect(notification(other, "hello from rpcnotify")).to_have_count(1)

    # The long call: progress, then Cancel, then the server's -32800 answer.
    bar = page.locator("#report-progress")
    page.click("#report-start")
    page.wait_for_function("document.querySelector('#report-progress').value >= 2")
    page.click("#report-cancel")
    expect(page.locator("#report-status")).to_contain_text("cancelled (-32800)")
    expect(page.locator("#report-start")).to_be_enabled()
    stopped_at = int(bar.evaluate("bar => bar.value"))
    assert 2 <= stopped_at < REPORT_STEPS

    bottom = float(page.evaluate("document.querySelector('main').getBoundingClientRect().bottom"))
    clip: FloatRect = {"x": 0, "y": 0, "width": 1280, "height": bottom + 24}  # no empty band
    shot = page.screenshot(path=tmp_path / "demo-page.png", clip=clip)
    if os.environ.get("CHANNELS_RPC_SCREENSHOT") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        (REPO / "docs" / "demo-page.png").write_bytes(shot)

    # The worker stopped: a call lasting three of its steps brings no more progress for it.
    page.fill("#method", "sleep")
    page.fill("#params", "[1.5]")
    page.click("#call")
    expect(page.locator("#result")).to_have_text("1.5")
    assert int(bar.evaluate("bar => bar.value")) == stopped_at
    cancelled = [i for i, m in enumerate(frames) if m.get("error", {}).get("code") == -32800]
    assert len(cancelled) == 1, frames
    report_id = frames[cancelled[0]]["id"]
    progress = [
        i
        for i, m in enumerate(frames)
        if m.get("method") == "rpc.progress" and m["params"]["id"] == report_id
    ]
    assert len(progress) >= 2
    # One step may have been on its way when the worker heard of the cancellation.
    assert len([i for i in progress if i > cancelled[0]]) <= 1, frames


CLIENT_API = """async () => {
  const { RpcClient, RpcError } = await import("/static/channels_rpc/client.js");
  const rpc = await new RpcClient(`ws://${location.host}/ws/rpc/`).connect();
  const out = { opened: rpc.state };
  const answers = await rpc.batch([["add", [1, 2]], ["nope"], ["divide", { a: 1, b: 0 }]]);
  out.batch = answers.map((a) => (a instanceof RpcError ? [a.name, a.code] : a));

  const logged = new Promise((resolve) => {
    const off = rpc.on("logged", (params) => (off(), resolve(params.message)));
  });
  await rpc.notify("log", { message: "hi" });
  out.logged = await logged;

  const notes = rpc.notifications();
  await rpc.notify("log", { message: "again" });
  for await (const note of notes) {
    out.iterated = [note.method, note.params.message];
    break;
  }

  const confirmed = new Promise((resolve) =>
    rpc.addEventListener("cancelled", (e) => resolve(e.detail.error.code), { once: true }));
  await rpc.call("sleep", [30], { timeout: 300 }).catch((e) => (out.timeout = e.name));
  out.confirmed = await confirmed;
  const aborted = rpc.call("add", [1, 2], { signal: AbortSignal.abort() });
  out.aborted = await aborted.catch((e) => e.name);
  const reason = new Error("changed my mind");
  const controller = new AbortController();
  const call = rpc.call("sleep", [30], { signal: controller.signal });
  controller.abort(reason);
  out.ownReason = await call.catch((e) => e === reason);
  out.after = await rpc.call("echo", ["still fine"]);

  const pending = rpc.call("sleep", [30]);
  rpc.close();
  out.closed = await pending.catch((e) => e.name);
  out.state = rpc.state;
  out.afterClose = await rpc.call("add", [1, 2]).catch((e) => e.name);

  const nobody = new RpcClient(`ws://${location.hostname}:1/ws/rpc/`);
  out.unreachable = await nobody.connect().catch((e) => [e.name, nobody.state]);
  return out;
}"""


def test_the_client_api(pages: Pages) -> None:
    page = pages.open(0)
    assert page.evaluate(CLIENT_API) == {
        "opened": "open",
        "batch": [3, ["RpcError", -32601], ["RpcError", -32602]],
        "logged": "hi",
        "iterated": ["logged", "again"],
        "timeout": "TimeoutError",
        "confirmed": -32800,
        "aborted": "AbortError",
        "ownReason": True,
        "after": "still fine",
        "closed": "ConnectionLost",
        "state": "closed",
        "afterClose": "ConnectionLost",
        "unreachable": ["ConnectionLost", "closed"],
    }


def test_the_page_reconnects_and_subscribes_again(pages: Pages, cluster: LocalCluster) -> None:
    # A front-end of this test's own, restarted on the same port, as a deployment would.
    frontend = len(cluster.ports)
    process = cluster.start_frontend()
    port = cluster.ports[frontend]
    page = pages.open(frontend)
    page.fill("#method", "sleep")
    page.fill("#params", "[30]")
    page.click("#call")
    expect(page.locator("#result")).to_have_text("…")

    process.stop()
    expect(page.locator("#state")).to_have_text("reconnecting")
    expect(page.locator("#result")).to_contain_text("ConnectionLost")
    expect(page.locator("#subscription")).not_to_have_attribute("data-subscribed", "demo")

    cluster.start_frontend(port=port)
    expect(page.locator("#state")).to_have_text("open", timeout=30_000)
    expect(page.locator("#subscription")).to_have_attribute("data-subscribed", "demo")
    params = {"topic": "demo", "message": "after the restart"}
    cluster.manage("rpcnotify", "topic.demo", "topic.message", json.dumps(params))
    expect(notification(page, "after the restart")).to_have_count(1)
