"""The worker side of issue 10 on real processes (reliability plan T28, T36, T38, T46).

daphne, ``rpcworker`` and redis-server, with the reference project's methods (/ws/rpc/) and the
probes of ``tests.project.hardening`` (/ws/test/). Tests wait on answers and process output,
never on fixed sleeps, and record what they measured with ``figures.check``, whose verdict is
the test's asserts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from channels_rpc import JsonRpcErrorCode
from tests.integration.client import RpcSocket
from tests.integration.harness import REPO, Cluster, Proc
from tests.integration.reliability.report import Figures
from tests.integration.support import ClusterFactory, Connect, wait_until

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
FORGED = "2026-01-01 00:00:00,000 ERROR channels_rpc.worker forged"
_ids = itertools.count()


def code(response: dict[str, Any]) -> int | None:
    error = response.get("error")
    return None if error is None else int(error["code"])


def threads_of(pid: int) -> int:
    """The number of threads of process ``pid`` (every OS thread, not only Python's)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no thread count for {pid}")


def largest_frame(sock: RpcSocket) -> int:
    return max((len(text.encode()) for text in sock.texts), default=0)


async def rpchealth(cluster: Cluster, health_file: Path) -> tuple[int, str]:
    """Exit status and output of ``manage.py rpchealth --file``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.manage", "rpchealth", "--file", str(health_file),
        cwd=REPO, env=cluster.env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return await process.wait(), output.decode(errors="replace").strip()


async def call_utf8(
    sock: RpcSocket, method: str, params: Any, timeout: float = 8.0
) -> dict[str, Any]:
    """A call sent as UTF-8 text (the client's own encoding would escape non-ASCII 6-fold).

    The answer, or ``{}`` if none came within ``timeout`` (a silenced socket).
    """
    rpc_id = f"utf8-{next(_ids)}"
    request = {"jsonrpc": "2.0", "method": method, "id": rpc_id}
    if params is not None:
        request["params"] = params
    await sock.send(json.dumps(request, ensure_ascii=False))
    with contextlib.suppress(AssertionError):
        return (await sock.wait_for([rpc_id], timeout))[rpc_id].response
    return {}


async def pushed(sock: RpcSocket, method: str) -> Any:
    """The params of the first ``method`` notification the socket got (None: none in 8 s)."""
    with contextlib.suppress(AssertionError):
        return (await sock.notification(method, timeout=8)).get("params")
    return None


async def output_contains(proc: Proc, text: str, timeout: float = 15.0) -> None:
    async def seen() -> bool:
        return text in proc.output()

    await wait_until(seen, timeout)


# ------------------------------------------------------------------------------------------------
# T36: sys.exit and KeyboardInterrupt in methods


async def test_t36_sys_exit_and_keyboard_interrupt_in_a_method_are_that_calls_error(
    cluster_factory: ClusterFactory, connect: Connect, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=1, workers=1)
    worker = cluster.workers[0]
    sock = await connect(cluster.url())
    cases = [(m, k) for m in ("exit_now", "sync_exit_now") for k in ("exit", "interrupt")]
    outcomes: list[str] = []
    served: list[bool] = []
    for method, kind in cases:
        answer = await sock.call(method, [kind], timeout=15)
        after = await sock.call("pid", timeout=15)
        outcomes.append(f"{method}({kind}): {code(answer)}")
        served.append(after.get("result") == worker.pid and worker.alive)
    logged = worker.output().count("raised SystemExit") + worker.output().count(
        "raised KeyboardInterrupt"
    )
    measured = (
        f"{'; '.join(outcomes)}; same worker pid answered after each: {served.count(True)}/4; "
        f"{logged}/4 logged with the exception; worker "
        f"{'still running' if worker.alive else f'exited {worker.popen.returncode}'} "
        "(before the fix: the first sys.exit() ended the worker, exit status 0, no log line; "
        "every call then got -32012 at its deadline, 0/4 answered by the worker)"
    )
    print(f"\nT36: {measured}")
    figures.check(
        "T36",
        measured,
        each_call_answered_32000=outcomes == [f"{m}({k}): -32000" for m, k in cases],
        same_worker_serves_after_each=all(served),
        each_logged_with_its_exception=logged == 4,
    )


# ------------------------------------------------------------------------------------------------
# T38: sync methods that never return


async def test_t38_sync_methods_that_never_return_keep_the_threads_bounded(
    cluster_factory: ClusterFactory, connect: Connect, figures: Figures, tmp_path: Path
) -> None:
    concurrency = 8
    health_file = tmp_path / "worker.health"
    cluster = cluster_factory(
        frontends=1, workers=1, concurrency=concurrency, args=("--health-file", str(health_file))
    )
    worker = cluster.workers[0]
    sock = await connect(cluster.url())
    assert (await sock.call("pid"))["result"] == worker.pid
    before = threads_of(worker.pid)
    peak = before
    codes: list[int | None] = []
    reasons: set[str] = set()
    # In waves of `concurrency`, each waited for: every call reaches a free worker slot.
    for _ in range(300 // concurrency + 1):
        wave = min(concurrency, 300 - len(codes))
        ids = [await sock.request("never_returns") for _ in range(wave)]
        answers = await sock.wait_for(ids, timeout=15)
        codes += [code(answers[i].response) for i in ids]
        reasons |= {
            answers[i].response["error"]["data"]["reason"]
            for i in ids
            if code(answers[i].response) == JsonRpcErrorCode.SERVER_BUSY
        }
        peak = max(peak, threads_of(worker.pid))
    timeouts = codes.count(JsonRpcErrorCode.INTERNAL_ERROR)
    busy = codes.count(JsonRpcErrorCode.SERVER_BUSY)
    async_ok = (await sock.call("pid")).get("result") == worker.pid
    with contextlib.suppress(AssertionError):  # the figure is recorded either way
        await output_contains(worker, "health: all 8 threads for sync methods are stuck")
    status, said = await rpchealth(cluster, health_file)
    measured = (
        f"300 calls of a never-returning sync method, WORKER_CONCURRENCY {concurrency}: "
        f"{timeouts} timed out, {busy} refused -32010 at once; worker threads {before} before, "
        f"peak {peak} (+{peak - before}); async calls still served: {async_ok}; rpchealth exit "
        f"{status} ({said[:90]!r}) (before the fix: 2 -> 302 threads (+300), 300 timed out, "
        "0 refused, rpchealth exit 0 'healthy'; the issue: 289 threads at concurrency 32)"
    )
    print(f"\nT38: {measured}")
    figures.check(
        "T38",
        measured,
        all_300_answered=len(codes) == 300,
        # The pool, plus the odd thread of the runtime's own.
        threads_grew_by_at_most_the_pool_and_2=peak - before <= concurrency + 2,
        one_timeout_per_thread=timeouts == concurrency,
        the_rest_refused_32010=busy == 300 - concurrency,
        refusals_say_why=reasons
        == {
            "all 8 threads for sync methods are busy, 8 of them in calls that timed out "
            "(never_returns x8)"
        },
        async_calls_still_served=async_ok,
        rpchealth_says_stuck=status == 1 and "stuck" in said,
    )


# ------------------------------------------------------------------------------------------------
# T46: client text in the worker's log


async def test_t46_a_raising_methods_text_cannot_forge_worker_log_lines(
    cluster_factory: ClusterFactory, connect: Connect, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=1, workers=1)
    worker = cluster.workers[0]
    sock = await connect(cluster.url("/ws/rpc/"))
    message = f"boom\n{FORGED}\r\n{FORGED} \x1b[2J"
    answer = await sock.call("fail", [message])
    await output_contains(worker, "RuntimeError: boom")
    lines = worker.output().splitlines()
    forged = [line for line in lines if line.startswith(FORGED)]
    escaped = any(line.startswith("RuntimeError: boom\\n" + FORGED) for line in lines)
    measured = (
        f"fail() with CR/LF and forged log lines in its message: answered {code(answer)}, "
        f"{len(forged)} forged lines in the worker's log, exception line escaped: {escaped}, "
        "traceback kept: "
        f"{'Traceback (most recent call last)' in worker.output()} (before the fix: 2 forged lines)"
    )
    print(f"\nT46: {measured}")
    figures.check(
        "T46",
        measured,
        answered_32000=code(answer) == JsonRpcErrorCode.GENERIC_APPLICATION_ERROR,
        no_forged_line=forged == [],
        exception_line_escaped=escaped,
        no_escape_character_logged="\x1b" not in worker.output(),
    )


# ------------------------------------------------------------------------------------------------
# T28 (the worker's part): answers and pushes sized in UTF-8 bytes where they are encoded


async def test_t28_non_ascii_answers_and_pushes_fit_and_oversized_ones_are_refused_in_the_method(
    cluster_factory: ClusterFactory, connect: Connect, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=1, workers=1)
    caller = await connect(cluster.url("/ws/rpc/"))
    # The echo: a 400 KB request whose answer was 1.2 MB of escapes.
    echoed = await call_utf8(caller, "echo", ["é" * 200_000])
    echo_frame = largest_frame(caller)
    # The publish to 5 subscribers, which silenced them all.
    publisher = await connect(cluster.url("/ws/rpc/"))
    subscribers = [await connect(cluster.url("/ws/rpc/")) for _ in range(5)]
    for sock in subscribers:
        assert (await sock.call("subscribe", ["news"]))["result"] == "news"
    published = await call_utf8(publisher, "publish", ["news", "é" * 200_000])
    got = await asyncio.gather(*(pushed(sock, "topic.message") for sock in subscribers))
    pushes = sum(1 for params in got if params and params["message"] == "é" * 200_000)
    own = [
        answer.get("result")
        for answer in await asyncio.gather(*(call_utf8(s, "add", [1, 2]) for s in subscribers))
    ]
    # Over the cap: an answer, then a push, both from small requests.
    probe, shouter = await connect(cluster.url()), await connect(cluster.url())
    listeners = [await connect(cluster.url()) for _ in range(3)]
    for sock in listeners:
        assert (await sock.call("join", ["loud"]))["result"] == "loud"
    too_big = await call_utf8(probe, "repeat", ["x", MIB])
    probe_serves = (await call_utf8(probe, "pid", None)).get("result") is not None
    shouted = await call_utf8(shouter, "shout", ["loud", "é", 600_000])
    answers = await asyncio.gather(*(call_utf8(s, "pid", None) for s in listeners))
    heard = [answer.get("result") is not None for answer in answers]
    everyone = [caller, publisher, probe, shouter, *subscribers, *listeners]
    largest = max(largest_frame(s) for s in everyone)
    measured = (
        f"echo('é' x 200,000): {'answered' if echoed.get('result') else code(echoed)} in a "
        f"{echo_frame:,} B frame; publish to 5 subscribers: {published.get('result')}, "
        f"{pushes}/5 received it, {own.count(3)}/5 then answered their own calls; "
        f"a 1 MiB result: {code(too_big)}, socket serves on: {probe_serves}; "
        f"a 1.2 MB push: {code(shouted)} in the publisher "
        f"({shouted.get('error', {}).get('data', {}).get('what')}), {sum(heard)}/3 listeners "
        f"answered after; largest frame {largest:,} B (before the fix: echo unanswered, its "
        "1,200,036 B frame refused by daphne and the socket silenced; publish: 0/5 received, "
        "0/5 then answered; the 1 MiB result silenced its socket; the push silenced 3/3)"
    )
    print(f"\nT28: {measured}")
    figures.check(
        "T28",
        measured,
        echo_answered=echoed.get("result") == "é" * 200_000,
        echo_sent_as_utf8_not_escapes=echo_frame < 400_100,
        published=published.get("result") is True,
        all_5_subscribers_got_the_push=pushes == 5,
        subscribers_serve_on=own == [3] * 5,
        a_1_mib_result_answered_32014=code(too_big) == JsonRpcErrorCode.RESPONSE_TOO_LARGE
        and too_big["error"].get("data", {}).get("limit") == MIB,
        its_socket_serves_on=probe_serves,
        an_oversized_push_refused_in_the_publisher=code(shouted)
        == JsonRpcErrorCode.RESPONSE_TOO_LARGE
        and shouted["error"].get("data", {}).get("what") == "push",
        listeners_serve_on=all(heard),
        no_frame_over_1_mib=largest <= MIB,
    )
