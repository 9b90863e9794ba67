"""The demo page (``/`` of the reference project, ``channels_rpc/static/channels_rpc/client.js``)
in headless Chromium against a real local cluster: two front-ends, a worker, Redis.

Every wait is on something the page shows (``expect``, ``wait_for_function``), never a sleep.
``CHANNELS_RPC_SCREENSHOT=1`` also writes the screenshot to docs/demo-page.png.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.sync.client import connect

from channels_rpc._redis.scripts import sessions_prefix
from tests.browser.conftest import PLAYWRIGHT_MISSING, Pages, Relay, unavailable
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
  const out = { opened: rpc.state, session: [rpc.sessionId.slice(0, 3), rpc.sessionWindow] };
  const plain = await new RpcClient(`ws://${location.host}/ws/rpc/`, { sessions: false }).connect();
  out.plain = [plain.sessionId, await plain.call("add", [2, 2])];
  plain.close();
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
        "session": ["s1.", 30],
        "plain": [None, 4],
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


def test_without_sessions_the_page_reconnects_and_subscribes_again(
    pages: Pages, embedded: LocalCluster
) -> None:
    # `make demo`: the in-memory layer has no sessions, and the page works as it did before.
    process = embedded.start_frontend()
    port = embedded.ports[-1]
    page = pages.open(on=embedded)
    expect(page.locator("#session")).to_contain_text("no session")
    page.fill("#method", "sleep")
    page.fill("#params", "[30]")
    page.click("#call")
    expect(page.locator("#result")).to_have_text("…")

    process.stop()
    expect(page.locator("#state")).to_have_text("reconnecting")
    expect(page.locator("#result")).to_contain_text("ConnectionLost")
    expect(page.locator("#subscription")).not_to_have_attribute("data-subscribed", "demo")

    # Restarted on the same port, as a deployment would.
    embedded.start_frontend(port=port)
    expect(page.locator("#state")).to_have_text("open", timeout=30_000)
    expect(page.locator("#subscription")).to_have_attribute("data-subscribed", "demo")
    page.fill("#publish-text", "after the restart")
    page.click("#publish")
    expect(notification(page, "after the restart")).to_have_count(1)
    expect(page.locator("#session")).to_contain_text("no session")


# What the tests of sessions watch, from before the drop: every progress step the page's client
# handed on, and its session events.
RECORD = """() => {
  window.seen = { progress: [], closes: [], resumes: [], lost: [] };
  rpc.on("rpc.progress", (params) => seen.progress.push(params.progress));
  rpc.addEventListener("close", (e) => seen.closes.push(e.detail.code));
  rpc.addEventListener("resume", (e) => seen.resumes.push(e.detail));
  rpc.addEventListener("sessionlost", (e) => seen.lost.push(e.detail.reason));
}"""


def start_report(page: Page, at_least: int) -> str:
    """Start the long call; once it reported ``at_least`` steps, the page's session id."""
    expect(page.locator("#session")).to_contain_text("session s1.")
    page.evaluate(RECORD)
    page.click("#report-start")
    page.wait_for_function(f"document.querySelector('#report-progress').value >= {at_least}")
    session_id = page.evaluate("rpc.sessionId")
    assert isinstance(session_id, str)
    return session_id


def report_answers(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in frames if isinstance(m.get("result"), dict) and "sections" in m["result"]]


def test_a_dropped_connection_resumes_its_session_on_another_front_end(
    pages: Pages, cluster: LocalCluster, relay: Relay
) -> None:
    page = pages.open(port=relay.port)  # through the relay, to front-end 0
    other = pages.open(1)
    session_id = start_report(page, at_least=3)

    # The network goes, and the page cannot reconnect for a while.
    relay.hold()
    assert relay.cut() >= 1
    expect(page.locator("#state")).to_have_text("reconnecting")
    expect(page.locator("#session")).to_contain_text("detached (close 1006): resuming…")
    expect(page.locator("#report-status")).to_contain_text("connection lost at")
    # Meanwhile a push to its topic, kept with the call's progress for the page.
    other.fill("#publish-text", "while away")
    other.click("#publish")
    expect(notification(other, "while away")).to_have_count(1)

    # Back, through the other front-end: the session resumes there.
    relay.release(cluster.ports[1])
    resumed = f"session {session_id[:12]}… resumed, 1 call still running"
    expect(page.locator("#session")).to_have_text(resumed, timeout=20_000)
    expect(page.locator("#state")).to_have_text("open")
    expect(notification(page, "while away")).to_have_count(1)
    expect(page.locator("#report-status")).to_contain_text("done", timeout=20_000)
    assert page.locator("#report-progress").evaluate("bar => bar.value") == REPORT_STEPS
    # Every step once, in order, across the drop; the answer once; the groups kept.
    seen = page.evaluate("seen")
    assert seen["progress"] == list(range(1, REPORT_STEPS + 1))
    assert seen["closes"] == [1006]
    assert [r["session"] for r in seen["resumes"]] == [session_id]
    assert len(report_answers(pages.received[page])) == 1
    assert page.evaluate("rpc.sessionId") == session_id
    other.fill("#publish-text", "after the resume")
    other.click("#publish")
    expect(notification(page, "after the resume")).to_have_count(1)
    expect(page.locator("#subscription")).to_have_attribute("data-subscribed", "demo")


def test_a_long_call_survives_a_restart_of_its_front_end(
    pages: Pages, cluster: LocalCluster
) -> None:
    # A front-end of this test's own, restarted on the same port, as a deployment would.
    frontend = len(cluster.ports)
    process = cluster.start_frontend()
    port = cluster.ports[frontend]
    page = pages.open(frontend)
    session_id = start_report(page, at_least=3)

    # SIGTERM: the front-end closes its sockets with 4012 and stops, its sessions detached.
    process.stop()
    expect(page.locator("#session")).to_contain_text("detached (close 4012): resuming…")
    cluster.start_frontend(port=port)
    resumed = f"session {session_id[:12]}… resumed, 1 call still running"
    expect(page.locator("#session")).to_have_text(resumed, timeout=30_000)
    expect(page.locator("#report-status")).to_contain_text("done", timeout=20_000)
    assert page.locator("#report-progress").evaluate("bar => bar.value") == REPORT_STEPS
    seen = page.evaluate("seen")
    assert seen["progress"] == list(range(1, REPORT_STEPS + 1))
    assert seen["closes"] == [4012]
    assert len(report_answers(pages.received[page])) == 1


def test_a_call_its_dead_front_end_never_recorded_fails_instead_of_hanging(
    pages: Pages, cluster: LocalCluster
) -> None:
    # SIGKILL: the front-end has no time to detach its sessions, nor to record their calls.
    frontend = len(cluster.ports)
    process = cluster.start_frontend()
    port = cluster.ports[frontend]
    page = pages.open(frontend)
    session_id = start_report(page, at_least=2)
    process.send_signal(signal.SIGKILL)
    process.wait_stopped()
    expect(page.locator("#state")).to_have_text("reconnecting")

    # The session, still attached to the dead socket, is taken over; the call is not in it.
    cluster.start_frontend(port=port)
    resumed = f"session {session_id[:12]}… resumed, 0 calls still running"
    expect(page.locator("#session")).to_have_text(resumed, timeout=30_000)
    expect(page.locator("#report-status")).to_contain_text(
        "error -32015: the resumed session did not have the call"
    )
    expect(page.locator("#report-start")).to_be_enabled()
    page.click("#call")  # add [1, 2], on the resumed session
    expect(page.locator("#result")).to_have_text("3")
    assert page.evaluate("rpc.sessionId") == session_id


def forget_session(cluster: LocalCluster, session_id: str) -> None:
    """What a Redis restart without persistence does to one session: its keys are gone."""
    prefix = sessions_prefix(cluster.prefix)
    keys = [f"{prefix}session:{session_id}{part}" for part in ("", ":early", ":kept", ":calls")]
    client = redis.Redis.from_url(cluster.redis.url)
    try:
        assert client.delete(*keys) >= 1
    finally:
        client.close()


def test_a_session_the_server_lost_fails_its_calls_and_a_new_one_opens(
    pages: Pages, cluster: LocalCluster, relay: Relay
) -> None:
    page = pages.open(port=relay.port)
    session_id = start_report(page, at_least=2)
    relay.hold()
    assert relay.cut() >= 1
    expect(page.locator("#state")).to_have_text("reconnecting")
    forget_session(cluster, session_id)

    relay.release()
    status = page.locator("#report-status")
    expect(status).to_contain_text("error -32015: the session was lost (unknown or expired)")
    expect(page.locator("#report-start")).to_be_enabled()
    expect(page.locator("#session")).to_contain_text("the one before was lost (unknown or expired)")
    expect(page.locator("#subscription")).to_have_attribute("data-subscribed", "demo")
    new_id = page.evaluate("rpc.sessionId")
    assert new_id.startswith("s1.")
    assert new_id != session_id
    assert page.evaluate("seen.lost") == ["unknown or expired"]
    page.click("#call")  # add [1, 2], on the new session
    expect(page.locator("#result")).to_have_text("3")


def test_a_session_resumed_by_another_client_is_lost_to_the_page_and_its_call_goes_along(
    pages: Pages, cluster: LocalCluster
) -> None:
    # Anyone holding an anonymous session's id may resume it. The page's socket is still open:
    # its front-end hands the running call over to the resuming socket and closes the page's
    # with 4013; the page does not take the session back, but opens a new one.
    page = pages.open()
    session_id = start_report(page, at_least=2)
    with connect(cluster.url(), open_timeout=10) as other:
        resume = {"jsonrpc": "2.0", "id": "r", "method": "rpc.resume"}
        other.send(json.dumps({**resume, "params": {"session": session_id, "seq": 0}}))
        frames = [json.loads(other.recv(timeout=10))]
        while frames[-1].get("id") != "r":
            frames.append(json.loads(other.recv(timeout=10)))
        expect(page.locator("#report-status")).to_contain_text(
            "error -32015: the session was lost (taken over)"
        )
        expect(page.locator("#session")).to_contain_text("the one before was lost (taken over)")
        assert page.evaluate("seen.closes") == [4013]
        assert page.evaluate("seen.lost") == ["taken over"]
        new_id = page.evaluate("rpc.sessionId")
        assert new_id.startswith("s1.")
        assert new_id != session_id
        page.click("#call")  # add [1, 2], on the new session
        expect(page.locator("#result")).to_have_text("3")
        # The report went along: the client that took the session can cancel it.
        (report,) = frames[-1]["result"]["running"]
        cancel = {"jsonrpc": "2.0", "method": "rpc.cancel", "params": {"id": report}}
        other.send(json.dumps(cancel))
        while frames[-1].get("id") != report:
            frames.append(json.loads(other.recv(timeout=10)))
        assert frames[-1]["error"]["code"] == -32800
