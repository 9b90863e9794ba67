"""Fault injection on workers and Redis (reliability plan T06-T14, T24, T26).

Real processes only: daphne front-ends, ``rpcworker`` processes and redis-server, killed,
stopped and restarted by pid. Tests wait on events (Redis counters written by the probes of
``tests.project.faults``, process output, answers) and sleep only where elapsed time is what is
being tested (an outage, an idle period, a push every 2 s). Every test ends with
``figures.check``: its named checks give both the table row's verdict and the test's asserts.
Deadlines are asserted as the README promises them, timeout + REPLY_GRACE, plus a small stated
scheduling margin (``MARGIN``).

Two of these found library bugs, since fixed: a stopping worker started the request its last
pop returned (T07; it now puts it back), and a Redis restart emptied the ``rpc.workers`` group
and every client group until their next renewal, group_expiry / 2 later (T10: cancel, push;
both now join again as soon as the layer gets Redis back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis

from channels_rpc import JsonRpcErrorCode
from tests.integration.client import Answer, RpcSocket
from tests.integration.harness import REPO, Cluster, Proc, Redis
from tests.integration.reliability.report import Figures
from tests.integration.support import (
    ClusterFactory,
    Connect,
    counter,
    wait_until,
)

pytestmark = pytest.mark.anyio

TIMEOUT = 5.0  # DEFAULT_TIMEOUT of tests.project.settings
GRACE = 0.5  # REPLY_GRACE of tests.project.settings
SHUTDOWN_GRACE = 5.0  # SHUTDOWN_GRACE of tests.project.settings
# Every call is answered by its timeout + REPLY_GRACE (docs/reference/reliability.md,
# Guarantees). MARGIN is the scheduling slack allowed on top on this shared 2-core machine (a
# timer fires late, a frame waits for a busy process): small enough that a front-end answering
# at timeout + 1.8 x grace (5.9 s) misses DEADLINE (5.75 s).
MARGIN = 0.25
DEADLINE = TIMEOUT + GRACE + MARGIN
FAULT_QUEUE = "rpc.fault"  # the queue of tests.project.faults.fault_queued


# ------------------------------------------------------------------------------------------------
# Fixtures and helpers


async def collect(sock: RpcSocket, ids: list[Any], timeout: float) -> dict[Any, Answer]:
    """The answers to ``ids`` that arrived within ``timeout`` (missing ones are left out)."""
    with contextlib.suppress(AssertionError):
        await sock.wait_for(ids, timeout)
    return {i: sock.answers[json.dumps(i)] for i in ids if json.dumps(i) in sock.answers}


def frames_for(sock: RpcSocket, rpc_id: Any) -> int:
    """How many frames (or batch entries) answering ``rpc_id`` the socket received."""
    count = 0
    for frame in sock.frames:
        for item in frame if isinstance(frame, list) else [frame]:
            if "method" not in item and item.get("id") == rpc_id:
                count += 1
    return count


def code(answer: Answer) -> int | None:
    error = answer.response.get("error")
    return None if error is None else int(error["code"])


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


async def rpchealth(cluster: Cluster, health_file: Path, max_age: float) -> int:
    """Exit status of ``manage.py rpchealth --file`` (0 healthy, 1 not)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.manage", "rpchealth",
        "--file", str(health_file), "--max-age", str(max_age),
        cwd=REPO, env=cluster.env(),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return await asyncio.wait_for(process.wait(), 30)


def exit_status(proc: Proc, timeout: float) -> int | None:
    try:
        return proc.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def tracebacks(procs: list[Proc]) -> dict[str, int]:
    return {p.name: p.output().count("Traceback") for p in procs if "Traceback" in p.output()}


class Prober:
    """Sends ``pid`` every ``interval`` seconds round-robin over sockets; remembers send times."""

    def __init__(self, sockets: list[RpcSocket], interval: float = 0.1) -> None:
        self.sockets = sockets
        self.interval = interval
        self.sent: list[tuple[RpcSocket, Any, float]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        index = 0
        while True:
            sock = self.sockets[index % len(self.sockets)]
            index += 1
            now = time.monotonic()
            rpc_id = await sock.request("pid", rpc_id=f"probe-{index}")
            self.sent.append((sock, rpc_id, now))
            await asyncio.sleep(self.interval)

    def first_result_after(self, since: float) -> float | None:
        """Seconds from ``since`` to the first result of a probe sent after ``since``."""
        arrivals = [
            answer.at
            for sock, rpc_id, at in self.sent
            if at >= since
            and (answer := sock.answers.get(json.dumps(rpc_id))) is not None
            and "result" in answer.response
        ]
        return min(arrivals) - since if arrivals else None

    async def wait_first_result_after(self, since: float, timeout: float) -> float | None:
        async def succeeded() -> bool:
            return self.first_result_after(since) is not None

        with contextlib.suppress(AssertionError):
            await wait_until(succeeded, timeout)
        return self.first_result_after(since)

    async def answers(self, timeout: float) -> list[tuple[float, Answer | None]]:
        """(send time, answer or None) of every probe, waiting ``timeout`` for stragglers."""
        by_sock: dict[int, list[Any]] = {}
        for sock, rpc_id, _ in self.sent:
            by_sock.setdefault(id(sock), []).append(rpc_id)
        for sock in self.sockets:
            await collect(sock, by_sock.get(id(sock), []), timeout)
        return [(at, sock.answers.get(json.dumps(i))) for sock, i, at in self.sent]


# ------------------------------------------------------------------------------------------------
# T06-T09: workers killed, stopped, failing, slow


async def test_t06_kill_9_of_one_of_two_busy_workers_answers_all_100_calls(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, connect: Connect, figures: Figures
) -> None:
    # 2 x 10 slots: 20 calls run, 80 wait in Redis, so all 100 are in flight at the kill.
    cluster = cluster_factory(frontends=1, workers=2, concurrency=10)
    victim, survivor = cluster.workers
    sock = await connect(cluster.url())
    sent: dict[Any, float] = {}
    for _ in range(100):
        sent[await sock.request("fault_hold", [0.2])] = time.monotonic()
    victim_busy = counter(redis_client, cluster, f"busy:{victim.pid}")

    async def victim_holds_calls() -> bool:
        return await victim_busy() > 0

    await wait_until(victim_holds_calls, timeout=5)
    held = await victim_busy()
    answered_before = len(sock.answers)
    victim.send_signal(signal.SIGKILL)
    answers = await collect(sock, list(sent), timeout=DEADLINE + 1)
    latencies = [answers[i].at - sent[i] for i in answers]
    slowest = max(latencies, default=float("inf"))
    results = [a.response["result"] for a in answers.values() if "result" in a.response]
    errors = [int(a.response["error"]["code"]) for a in answers.values() if "error" in a.response]
    after = await sock.call("pid")
    measured = (
        f"{len(answers)}/100 answered ({len(results)} results, {len(errors)} x "
        f"{sorted(set(errors))}); victim held {held}, {answered_before} answered before the kill; "
        f"slowest {slowest:.2f} s (T + grace + margin = {DEADLINE:.2f} s); "
        f"survivor serves: {after.get('result') == survivor.pid}"
    )
    print(f"\nT06: {measured}")
    figures.check(
        "T06",
        measured,
        all_100_answered=len(answers) == 100,
        answered_by_the_deadline=slowest <= DEADLINE,
        the_victim_held_calls=held > 0,
        the_victims_calls_answered_with_errors=bool(errors),
        errors_are_deadline_exceeded=set(errors) == {JsonRpcErrorCode.DEADLINE_EXCEEDED},
        results_from_the_two_workers=set(results) <= {victim.pid, survivor.pid},
        the_survivor_serves=after.get("result") == survivor.pid and survivor.alive,
    )


async def test_t07_sigterm_finishes_running_calls_and_exits_zero(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, connect: Connect, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=1, workers=1)  # 32 slots: it has room for more calls
    worker = cluster.workers[0]
    sock = await connect(cluster.url())
    running = [await sock.request("fault_hold", [1.0]) for _ in range(10)]
    busy = counter(redis_client, cluster, f"busy:{worker.pid}")

    async def all_running() -> bool:
        return await busy() == 10

    await wait_until(all_running)
    mark = worker.line_count()
    signalled = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    await asyncio.to_thread(worker.wait_for, r"rpcworker stopping", 5.0, mark)
    # Sent once the worker is stopping: none may be lost, none may run twice.
    tokens = [uuid.uuid4().hex for _ in range(5)]
    late = [await sock.request("fault_record", [token]) for token in tokens]
    answers = await collect(sock, running, timeout=SHUTDOWN_GRACE + 1)
    finished = max((a.at for a in answers.values()), default=signalled) - signalled
    status = await asyncio.to_thread(exit_status, worker, SHUTDOWN_GRACE + 5)
    replacement = await asyncio.to_thread(cluster.start_worker)
    late_answers = await collect(sock, late, timeout=10)
    late_pids = [a.response.get("result") for a in late_answers.values()]
    executions = await redis_client.hgetall(cluster.counter_key("fault-executions"))
    ran = [int(executions.get(token.encode(), 0)) for token in tokens]
    in_flight_ok = [a.response.get("result") for a in answers.values()] == [worker.pid] * 10
    measured = (
        f"{len(answers)}/10 running calls answered with results {in_flight_ok}, the last "
        f"{finished:.2f} s after SIGTERM (grace {SHUTDOWN_GRACE:.0f} s); exit {status}; "
        f"5 calls sent after SIGTERM: {len(late_answers)}/5 answered, executions {ran} "
        f"({late_pids.count(replacement.pid)} by the next worker, "
        f"{late_pids.count(worker.pid)} by the stopping one)"
    )
    print(f"\nT07: {measured}")
    figures.check(
        "T07",
        measured,
        running_calls_finish_with_results=in_flight_ok,
        finished_within_the_grace=finished <= SHUTDOWN_GRACE,
        exit_status_0=status == 0,
        late_calls_all_answered=len(late_answers) == 5,
        late_calls_run_by_a_worker=set(late_pids) <= {worker.pid, replacement.pid},
        late_calls_run_once_each=ran == [1] * 5,
    )


async def test_t07_calls_sent_after_sigterm_stay_in_redis_for_another_worker(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, connect: Connect, figures: Figures
) -> None:
    # Three stopping workers, each with free slots and a pop in progress: whether one pop ends
    # between the SIGTERM and the late calls is chance; that all three do is not.
    cluster = cluster_factory(frontends=1, workers=3)
    stopping = list(cluster.workers)
    sock = await connect(cluster.url())
    running = [await sock.request("fault_hold", [1.0]) for _ in range(15)]
    keys = [cluster.counter_key(f"busy:{w.pid}") for w in stopping]

    async def all_running() -> bool:
        return sum(int(v or 0) for v in await redis_client.mget(keys)) == 15

    await wait_until(all_running)
    marks = [w.line_count() for w in stopping]
    for worker in stopping:
        worker.send_signal(signal.SIGTERM)
    for worker, mark in zip(stopping, marks, strict=True):
        await asyncio.to_thread(worker.wait_for, r"rpcworker stopping", 5.0, mark)
    late = [await sock.request("fault_record", [uuid.uuid4().hex]) for _ in range(5)]
    await collect(sock, running, timeout=SHUTDOWN_GRACE + 1)
    statuses = [await asyncio.to_thread(exit_status, w, SHUTDOWN_GRACE + 5) for w in stopping]
    replacement = await asyncio.to_thread(cluster.start_worker)
    late_answers = await collect(sock, late, timeout=10)
    late_pids = [a.response.get("result") for a in late_answers.values()]
    taken = sum(1 for pid in late_pids if pid in {w.pid for w in stopping})
    measured = (
        f"3 workers SIGTERMed with free slots, exits {statuses}: of 5 calls sent after, "
        f"{taken} run by the stopping workers, {late_pids.count(replacement.pid)} left in Redis "
        f"for the next worker"
    )
    print(f"\nT07: {measured}")
    figures.check(
        "T07",
        measured,
        late_calls_all_answered=len(late_answers) == 5,
        stopping_workers_take_no_late_call=taken == 0,
        exit_statuses_0=statuses == [0, 0, 0],
    )


def grace_start(worker: Proc, mark: int) -> float:
    """When a stopping worker starts giving its running calls their grace (it logs it)."""
    worker.wait_for(r"waiting up to .* running calls", 10.0, mark)
    return time.monotonic()


async def test_t07_calls_still_running_after_the_grace_get_32011_and_the_worker_exits_0(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, connect: Connect, figures: Figures
) -> None:
    # rpcworker --grace instead of SHUTDOWN_GRACE (5 s): the same promise, a shorter test. The
    # grace starts once the worker's last pop returns (up to POLL_SECONDS = 1 s after the
    # signal): 2 s, so that a worker giving no grace at all cannot pass for one giving 1 s.
    grace = 2.0
    cluster = cluster_factory(frontends=1, workers=0)
    worker = cluster.start_worker(args=["--grace", str(grace)])
    sock = await connect(cluster.url())
    short = [await sock.request("fault_hold", [0.5]) for _ in range(3)]
    tokens = [uuid.uuid4().hex for _ in range(5)]
    long = [await sock.request("fault_record", [token, 20.0]) for token in tokens]
    busy = counter(redis_client, cluster, f"busy:{worker.pid}")
    executions = cluster.counter_key("fault-executions")

    async def all_running() -> bool:
        return await busy() == 3 and await redis_client.hlen(executions) == 5

    await wait_until(all_running)
    mark = worker.line_count()
    signalled = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    grace_started = await asyncio.to_thread(grace_start, worker, mark)
    answers = await collect(sock, [*short, *long], timeout=grace + 5)
    status = await asyncio.to_thread(exit_status, worker, grace + 10)
    finished = [answers[i].response.get("result") for i in short if i in answers]
    stopped = [answers[i] for i in long if i in answers]
    codes = sorted({str(code(a)) for a in stopped})
    after_signal = min((a.at - signalled for a in stopped), default=0.0)
    after_grace = max((a.at - grace_started for a in stopped), default=float("inf"))
    measured = (
        f"SIGTERM with --grace {grace:.0f} s: {finished.count(worker.pid)}/3 calls shorter than "
        f"the grace finished; {len(stopped)}/5 longer ones answered {codes} {after_signal:.2f} s "
        f"after the signal, {after_grace:.2f} s after the grace began (grace + margin = "
        f"{grace + MARGIN:.2f} s); exit {status}"
    )
    print(f"\nT07: {measured}")
    figures.check(
        "T07",
        measured,
        calls_within_the_grace_finish=finished == [worker.pid] * 3,
        longer_calls_all_answered=len(stopped) == 5,
        longer_calls_get_32011=codes == [str(int(JsonRpcErrorCode.SERVICE_UNAVAILABLE))],
        not_before_the_grace=after_signal >= grace,
        by_the_end_of_the_grace=after_grace <= grace + MARGIN,
        exit_status_0=status == 0,
    )


async def test_t08_a_raising_method_costs_one_error_and_not_the_worker(
    cluster_factory: ClusterFactory, connect: Connect, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=1, workers=1)
    worker = cluster.workers[0]
    sock = await connect(cluster.url())
    before = (await sock.call("pid"))["result"]
    normal = [await sock.request("fault_hold", [0.1]) for _ in range(10)]
    raised_at = time.monotonic()
    raising = await sock.request("fault_raise")
    normal += [await sock.request("fault_hold", [0.1]) for _ in range(10)]
    answers = await collect(sock, [raising, *normal], timeout=TIMEOUT + 1)
    error = answers[raising].response.get("error", {}) if raising in answers else {}
    latency = answers[raising].at - raised_at if raising in answers else float("inf")
    ok = [i for i in normal if i in answers and answers[i].response.get("result") == worker.pid]
    after = (await sock.call("pid"))["result"]
    measured = (
        f"{len(ok)}/20 normal answered; raising call: {error.get('code')} after "
        f"{latency * 1000:.0f} ms; worker pid {before} -> {after}"
    )
    print(f"\nT08: {measured}")
    figures.check(
        "T08",
        measured,
        all_20_normal_calls_answered=len(ok) == 20,
        the_raising_call_gets_32000=error.get("code") == JsonRpcErrorCode.GENERIC_APPLICATION_ERROR,
        its_error_within_1_s=latency < 1.0,
        the_same_worker_serves=before == after == worker.pid and worker.alive,
    )


@pytest.mark.parametrize(
    ("method", "trace", "next_method"),
    [
        ("fault_slow_async", "fault-slow-async-finally", "pid"),
        # A sync method's thread runs on past its timeout and counts against the pool until it
        # returns (issue 10, item 11): so the call proving the slot free is async.
        ("fault_slow_sync", "fault-slow-sync-done", "pid"),
    ],
    ids=["async", "sync"],
)
async def test_t09_a_method_over_its_timeout_errors_on_time_and_never_answers_late(
    cluster_factory: ClusterFactory,
    redis_client: AsyncRedis,
    connect: Connect,
    figures: Figures,
    method: str,
    trace: str,
    next_method: str,
) -> None:
    # One slot (and one thread): the next call is answered only if the slot was freed.
    cluster = cluster_factory(frontends=1, workers=1, concurrency=1)
    worker = cluster.workers[0]
    sock = await connect(cluster.url())
    method_timeout, sleeps = 1.0, 2.0
    sent = time.monotonic()
    slow = await sock.request(method, [sleeps])
    answer = (await collect(sock, [slow], timeout=method_timeout + GRACE + 2)).get(slow)
    error_after = answer.at - sent if answer else float("inf")
    error = answer.response.get("error", {}) if answer else {}
    next_sent = time.monotonic()
    next_answer = await sock.call(next_method, timeout=5)
    next_after = time.monotonic() - next_sent
    # Past the end of the method's sleep (its trace in Redis says it ended), plus a margin,
    # then a round trip on the same reply channel: a late frame would have arrived before it.
    traced = counter(redis_client, cluster, trace)

    async def sleep_ended() -> bool:
        return await traced() == 1

    await wait_until(sleep_ended, timeout=sleeps + 2)
    await asyncio.sleep(max(0.0, sent + sleeps + 0.5 - time.monotonic()))
    # Once the method has really returned, its thread serves sync calls again.
    after_end = await sock.call("fault_sync_pid")
    frames = frames_for(sock, slow)
    measured = (
        f"{method}({sleeps:.0f}) with timeout {method_timeout:.0f}: {error.get('code')} after "
        f"{error_after:.2f} s; next call {next_after * 1000:.0f} ms; frames for the id {frames}"
    )
    print(f"\nT09: {measured}")
    figures.check(
        "T09",
        measured,
        timeout_error_32603=error.get("code") == JsonRpcErrorCode.INTERNAL_ERROR,
        data_names_the_timeout=error.get("data") == {"timeout": method_timeout},
        error_at_the_timeout_within_half_a_second=abs(error_after - method_timeout) <= 0.5,
        the_slot_is_free_for_the_next_call=next_after < 1.0
        and next_answer.get("result") == worker.pid,
        the_thread_serves_again_after_the_method_ends=after_end.get("result") == worker.pid,
        no_late_result_after_the_error=frames == 1,
    )


# ------------------------------------------------------------------------------------------------
# T10-T12: Redis restarted, down, idle


async def test_t10_redis_restart_mid_load(
    private_cluster: Cluster, private_redis: Redis, connect: Connect, figures: Figures
) -> None:
    cluster = private_cluster
    cluster.start_frontend()
    workers = [cluster.start_worker(concurrency=32) for _ in range(2)]
    sockets = [await connect(cluster.url()) for _ in range(3)]
    redis = AsyncRedis.from_url(private_redis.url)
    try:
        sent: list[tuple[RpcSocket, Any, float]] = []
        for sock in sockets:
            for _ in range(20):
                sent.append((sock, await sock.request("fault_hold", [1.0]), time.monotonic()))
        keys = [cluster.counter_key(f"busy:{w.pid}") for w in workers]

        async def all_running() -> bool:
            return sum(int(v or 0) for v in await redis.mget(keys)) == 60

        await wait_until(all_running)
    finally:
        await redis.aclose()
    prober = Prober(sockets)  # a call every 100 ms before, during and after the outage
    prober.start()
    await asyncio.sleep(0.3)
    down_at = time.monotonic()
    await asyncio.to_thread(private_redis.stop)
    stopped_at = time.monotonic()
    await asyncio.sleep(max(0.0, down_at + 3.0 - time.monotonic()))  # the outage is the subject
    restarting_at = time.monotonic()
    await asyncio.to_thread(private_redis.start)
    back_at = time.monotonic()
    first_success = await prober.wait_first_result_after(back_at, timeout=10)
    await asyncio.sleep(0.3)
    await prober.stop()
    for sock in sockets:
        await collect(sock, [i for s, i, _ in sent if s is sock], timeout=DEADLINE + 1)
    loaded = [(at, s.answers.get(json.dumps(i))) for s, i, at in sent]
    probes = await prober.answers(timeout=DEADLINE + 1)
    everything = loaded + probes
    unanswered = sum(1 for _, a in everything if a is None)
    slowest = max((a.at - at for at, a in everything if a is not None), default=0.0)
    load_codes = sorted({str(code(a)) for _, a in loaded if a is not None})
    during = [a for at, a in probes if stopped_at <= at < restarting_at and a is not None]
    during_codes = sorted({str(code(a)) for a in during})
    # Both workers serve again: 40 calls are more than one worker's 32 slots.
    check = [await sockets[0].request("fault_hold", [0.5]) for _ in range(40)]
    served = await collect(sockets[0], check, timeout=TIMEOUT + 1)
    serving = {a.response.get("result") for a in served.values()}
    closed = sum(1 for sock in sockets if not sock.open)
    alive = all(w.alive for w in workers) and all(f.alive for f in cluster.frontends)
    reasons = {
        str(a.response["error"].get("data", {}).get("reason"))
        for a in during
        if code(a) == JsonRpcErrorCode.SERVER_BUSY
    }
    measured = (
        f"3 s outage with 60 calls running + {len(probes)} probe calls: {unanswered} unanswered, "
        f"slowest answer {slowest:.2f} s (T + grace + margin = {DEADLINE:.2f} s), running calls "
        f"got {load_codes}, calls during the outage got {during_codes} {sorted(reasons)}; "
        f"sockets closed {closed}/3; first success {seconds(first_success)} after Redis was "
        f"back; workers alive {alive}, serving {len(serving & {w.pid for w in workers})}/2"
    )
    print(f"\nT10: {measured}")
    figures.check(
        "T10",
        measured,
        every_call_answered=unanswered == 0,
        answered_by_the_deadline=slowest <= DEADLINE,
        outage_calls_refused_as_layer_unavailable=bool(during)
        and during_codes == [str(int(JsonRpcErrorCode.SERVER_BUSY))]
        and reasons == {"channel layer unavailable"},
        no_socket_closed=closed == 0,
        back_within_2_s=first_success is not None and first_success <= 2.0,
        processes_alive=alive,
        both_workers_serve_again=serving == {w.pid for w in workers},
    )


async def cancel_after_restart(
    sock: RpcSocket, redis: AsyncRedis, cluster: Cluster
) -> tuple[str, dict[str, bool]]:
    """Cancel a running call once Redis is back; what happened and the checks it must pass."""
    started = counter(redis, cluster, "cancellable-started")
    finished = counter(redis, cluster, "cancellable-finally")
    rpc_id = await sock.request("cancellable", [6])

    async def running() -> bool:
        return await started() == 1

    async def stopped() -> bool:
        return await finished() == 1

    with contextlib.suppress(AssertionError):
        await wait_until(running, timeout=5)
    ran = await running()
    await sock.send({"jsonrpc": "2.0", "method": "rpc.cancel", "params": {"id": rpc_id}})
    answer = (await collect(sock, [rpc_id], timeout=2)).get(rpc_id)
    answered = None if answer is None else code(answer)
    with contextlib.suppress(AssertionError):
        await wait_until(stopped, timeout=2)
    ok = await stopped()
    measured = f"after a Redis restart, rpc.cancel answers {answered} and stops the call: {ok}"
    checks = {
        "the_call_ran": ran,
        "the_cancel_is_answered_32800": answered == JsonRpcErrorCode.REQUEST_CANCELLED,
        "the_running_call_stops": ok,
    }
    return measured, checks


async def push_after_restart(sock: RpcSocket, group: str) -> tuple[str, dict[str, bool]]:
    """Push to a group joined before Redis restarted; what happened and the checks."""
    rpc_id = await sock.request("fault_push", [group, "fault.tick", 1])
    answer = (await collect(sock, [rpc_id], timeout=10)).get(rpc_id)
    with contextlib.suppress(AssertionError):
        await sock.notification("fault.tick", timeout=2)
    ok = any(f["method"] == "fault.tick" for f in sock.notifications)
    measured = f"after a Redis restart, a push reaches a group member: {ok}"
    checks = {
        "the_push_is_sent": answer is not None and answer.response.get("result") == 1,
        "the_push_reaches_the_member": ok,
    }
    return measured, checks


@pytest.mark.parametrize("what", ["cancel", "push"])
async def test_t10_after_a_redis_restart_cancels_and_pushes_still_arrive(
    private_cluster: Cluster, private_redis: Redis, connect: Connect, figures: Figures, what: str
) -> None:
    cluster = private_cluster
    cluster.start_frontend()
    worker = cluster.start_worker()
    sock = await connect(cluster.url())
    group = f"fault-{uuid.uuid4().hex[:8]}"
    joined = (await sock.call("join", [group])).get("result") == group
    await asyncio.to_thread(private_redis.stop)
    await asyncio.to_thread(private_redis.start)
    back_at = time.monotonic()
    prober = Prober([sock])
    prober.start()
    first_success = await prober.wait_first_result_after(back_at, timeout=10)
    await prober.stop()
    redis = AsyncRedis.from_url(private_redis.url)
    try:
        if what == "cancel":
            measured, checks = await cancel_after_restart(sock, redis, cluster)
        else:
            measured, checks = await push_after_restart(sock, group)
    finally:
        await redis.aclose()
        worker.send_signal(signal.SIGKILL)  # do not wait out a call nobody could cancel
    print(f"\nT10: {measured}")
    figures.check(
        "T10",
        measured,
        the_group_is_joined=joined,
        calls_succeed_once_redis_is_back=first_success is not None,
        **checks,
    )


@pytest.mark.parametrize(
    "outage",
    [pytest.param(5.0, id="5s"), pytest.param(60.0, id="60s", marks=pytest.mark.long)],
)
@pytest.mark.timeout(240)
async def test_t11_redis_down_fails_fast_reports_unhealthy_and_recovers(
    private_cluster: Cluster,
    private_redis: Redis,
    connect: Connect,
    tmp_path: Path,
    figures: Figures,
    outage: float,
) -> None:
    cluster = private_cluster
    cluster.start_frontend()
    health_file = tmp_path / "worker.health"
    max_age = 5.5  # the worker touches the file every 5 s while Redis answers
    worker = cluster.start_worker(args=["--health-file", str(health_file)])
    healthz = f"http://127.0.0.1:{cluster.ports[0]}/healthz/"
    sock = await connect(cluster.url())
    before = {
        "serving_before": "result" in await sock.call("pid"),
        "healthz_200_before": await asyncio.to_thread(http_status, healthz) == 200,
        "heartbeat_fresh_before": await rpchealth(cluster, health_file, max_age) == 0,
    }

    down_at = time.monotonic()
    await asyncio.to_thread(private_redis.stop)
    # (a) calls during the outage: one every 0.5 s, each must be answered within 1 s.
    outage_calls: list[tuple[float, Answer | None]] = []

    async def call_during_outage() -> None:
        rpc_id = await sock.request("pid")
        at = time.monotonic()
        outage_calls.append((at, (await collect(sock, [rpc_id], timeout=3)).get(rpc_id)))

    unhealthy_after: float | None = None
    stale_after: float | None = None
    while time.monotonic() - down_at < outage or stale_after is None or unhealthy_after is None:
        if time.monotonic() - down_at > max(outage, max_age + 5.0 + 5.0):
            break  # never stale: recorded and asserted below
        await call_during_outage()
        if unhealthy_after is None and await asyncio.to_thread(http_status, healthz) == 503:
            unhealthy_after = time.monotonic() - down_at
        if stale_after is None and await rpchealth(cluster, health_file, max_age) == 1:
            stale_after = time.monotonic() - down_at
        await asyncio.sleep(0.5)
    outage_length = time.monotonic() - down_at
    # (b) Redis comes back.
    prober = Prober([sock])
    await asyncio.to_thread(private_redis.start)
    back_at = time.monotonic()
    prober.start()
    first_success = await prober.wait_first_result_after(back_at, timeout=10)
    await prober.stop()

    async def healthy() -> bool:
        return await asyncio.to_thread(http_status, healthz) == 200

    with contextlib.suppress(AssertionError):
        await wait_until(healthy, timeout=10)
    healthy_after = time.monotonic() - back_at

    async def fresh() -> bool:
        return await rpchealth(cluster, health_file, max_age) == 0

    with contextlib.suppress(AssertionError):
        await wait_until(fresh, timeout=10)
    fresh_after = time.monotonic() - back_at
    probes = await prober.answers(timeout=DEADLINE + 1)
    latencies = [a.at - at if a else float("inf") for at, a in outage_calls]
    codes = sorted({str(code(a)) for _, a in outage_calls if a is not None})
    reasons = sorted(
        {str(a.response["error"].get("data", {}).get("reason")) for _, a in outage_calls if a}
    )
    unanswered_probes = sum(1 for _, a in probes if a is None)
    alive = worker.alive and cluster.frontends[0].alive and sock.open
    measured = (
        f"{outage_length:.1f} s outage: {len(outage_calls)} calls answered {codes} {reasons} in "
        f"at most {max(latencies) * 1000:.0f} ms; /healthz/ 503 after {seconds(unhealthy_after)}, "
        f"heartbeat stale after {seconds(stale_after)} (max age {max_age} s); back: first "
        f"success {seconds(first_success)}, /healthz/ 200 "
        f"after {healthy_after:.2f} s, heartbeat fresh after {fresh_after:.1f} s; "
        f"{unanswered_probes} probes unanswered; processes alive {alive}"
    )
    print(f"\nT11: {measured}")
    figures.check(
        "T11",
        measured,
        **before,
        outage_calls_answered_within_1_s=max(latencies) < 1.0,
        outage_calls_get_32010=codes == [str(int(JsonRpcErrorCode.SERVER_BUSY))],
        reason_channel_layer_unavailable=reasons == ["channel layer unavailable"],
        healthz_503_during_the_outage=unhealthy_after is not None,
        heartbeat_stale_during_the_outage=stale_after is not None,
        first_success_within_2_s=first_success is not None and first_success <= 2.0,
        healthz_200_within_2_s=healthy_after <= 2.0,
        heartbeat_fresh_within_10_s=fresh_after < 10.0,
        every_probe_answered=unanswered_probes == 0,
        processes_alive=alive,
    )


@pytest.mark.parametrize(
    ("sockets", "idle"),
    [
        # Both in make reliability: 12 s of idling is too long for make test.
        pytest.param(20, 12.0, id="20x12s", marks=pytest.mark.long),
        pytest.param(100, 60.0, id="100x60s", marks=pytest.mark.long),
    ],
)
@pytest.mark.timeout(240)
async def test_t12_idle_sockets_and_worker_outlive_the_redis_read_timeout(
    cluster_factory: ClusterFactory, connect: Connect, figures: Figures, sockets: int, idle: float
) -> None:
    cluster = cluster_factory(frontends=1, workers=1)
    worker = cluster.workers[0]
    socks = list(await asyncio.gather(*(connect(cluster.url()) for _ in range(sockets))))
    await asyncio.sleep(idle)  # idling is the subject: > 2 x redis-py 8's 5 s read timeout
    still_open = sum(1 for sock in socks if sock.open)
    per_socket = 20
    ids = [[await sock.request("pid") for _ in range(per_socket)] for sock in socks]
    answered = 0
    for sock, sock_ids in zip(socks, ids, strict=True):
        answers = await collect(sock, sock_ids, timeout=TIMEOUT + 1)
        answered += sum(1 for a in answers.values() if a.response.get("result") == worker.pid)
    procs = [*cluster.frontends, *cluster.workers]
    crashed = tracebacks(procs)
    alive = all(p.alive for p in procs)
    total = sockets * per_socket
    measured = (
        f"{sockets} sockets idle {idle:.0f} s: {still_open} open, then {answered}/{total} calls "
        f"answered; tracebacks {crashed or 0}; processes alive {alive}"
    )
    print(f"\nT12: {measured}")
    figures.check(
        "T12",
        measured,
        every_socket_open=still_open == sockets,
        every_call_answered=answered == total,
        no_traceback=not crashed,
        processes_alive=alive,
    )


# ------------------------------------------------------------------------------------------------
# T13-T14: nobody serves the queue


async def test_t13_with_no_worker_calls_get_deadline_errors_and_never_run_later(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, connect: Connect, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=1, workers=0)
    sock = await connect(cluster.url())
    tokens = [uuid.uuid4().hex for _ in range(10)]
    sent: dict[Any, float] = {}
    for token in tokens:
        sent[await sock.request("fault_record_default", [token])] = time.monotonic()
    answers = await collect(sock, list(sent), timeout=DEADLINE + 1)
    latencies = [answers[i].at - sent[i] for i in answers]
    codes = {code(a) for a in answers.values()}

    async def queue_empty() -> bool:
        return await redis_client.zcard(f"{cluster.prefix}rpc.default") == 0

    # The front-end takes each call back off its queue at the deadline (issue 10, item 7):
    # none is left for a worker to find.
    with contextlib.suppress(AssertionError):
        await wait_until(queue_empty, timeout=5)
    queued = await redis_client.zcard(f"{cluster.prefix}rpc.default")
    worker = await asyncio.to_thread(cluster.start_worker)
    fresh_token = uuid.uuid4().hex
    fresh = await sock.call("fault_record_default", [fresh_token])
    skipped = len(re.findall(r"expired in the queue; not started", worker.output()))
    executions = await redis_client.hgetall(cluster.counter_key("fault-executions"))
    ran_expired = sum(int(executions.get(t.encode(), 0)) for t in tokens)
    ran_fresh = int(executions.get(fresh_token.encode(), 0))
    extra_frames = len(sock.frames) - 11
    measured = (
        f"{len(answers)}/10 answered {sorted(map(str, codes))} after "
        f"{min(latencies, default=0):.2f}-{max(latencies, default=0):.2f} s (T + grace + "
        f"margin = {DEADLINE:.2f} s), withdrawn: {queued} left queued; worker started later: "
        f"{ran_expired} expired calls ran, {skipped} seen, fresh call ran {ran_fresh}x; "
        f"{extra_frames} extra frames"
    )
    print(f"\nT13: {measured}")
    figures.check(
        "T13",
        measured,
        all_10_answered=len(answers) == 10,
        deadline_exceeded=codes == {JsonRpcErrorCode.DEADLINE_EXCEEDED},
        not_before_timeout_and_grace=min(latencies, default=0) >= TIMEOUT + GRACE,
        answered_by_the_deadline=max(latencies, default=float("inf")) <= DEADLINE,
        withdrawn_from_the_queue=queued == 0,
        expired_calls_never_run=ran_expired == 0 and skipped == 0,
        a_fresh_call_runs_once=ran_fresh == 1 and fresh.get("result") == worker.pid,
        no_extra_frames=extra_frames == 0,
    )


async def test_t14_a_burst_beyond_capacity_gets_busy_at_once_and_no_stranded_replies(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, connect: Connect, figures: Figures
) -> None:
    # tests.project.settings sets channel_capacity itself and CHANNEL_LAYER_OVERRIDES replaces
    # keys of the layer CONFIG whole: give the full mapping, ours first (first match wins).
    capacities = {FAULT_QUEUE: 100, "rpc.narrow": 20, "rpc.*": 5000, "specific.*": 20000}
    overrides = json.dumps({"channel_capacity": capacities})
    cluster = cluster_factory(frontends=0, workers=1, queues=["rpc.default"])
    cluster.start_frontend(CHANNEL_LAYER_OVERRIDES=overrides)
    sock = await connect(cluster.url())
    sent: dict[Any, float] = {}
    for _ in range(150):
        sent[await sock.request("fault_queued")] = time.monotonic()
    ids = list(sent)

    async def busy_answered() -> bool:
        return sum(1 for i in ids[100:] if json.dumps(i) in sock.answers) == 50

    with contextlib.suppress(AssertionError):
        await wait_until(busy_answered, timeout=2)
    busy = await collect(sock, ids[100:], timeout=0)
    busy_latency = max((a.at - sent[i] for i, a in busy.items()), default=float("inf"))
    busy_codes = {code(a) for a in busy.values()}
    early = sum(1 for i in ids[:100] if json.dumps(i) in sock.answers)
    other_queue = await sock.call("pid")  # the default queue still works meanwhile
    queued = await collect(sock, ids[:100], timeout=2.0 + GRACE + 2)
    queued_codes = {code(a) for a in queued.values()}
    replacement = await asyncio.to_thread(cluster.start_worker, [FAULT_QUEUE])
    queue_key = f"{cluster.prefix}{FAULT_QUEUE}"

    async def drained() -> bool:
        return await redis_client.zcard(queue_key) == 0

    drain_time = await wait_until(drained, timeout=10)
    fresh = await sock.call("fault_queued")
    counts = [frames_for(sock, i) for i in ids]
    stranded = sum(count - 1 for count in counts if count > 1)
    measured = (
        f"150 calls onto a queue of capacity 100 with no worker: {len(busy)} busy "
        f"{sorted(map(str, busy_codes))}, slowest {busy_latency * 1000:.1f} ms, "
        f"{early} of the queued answered early; queued ones {sorted(map(str, queued_codes))}; "
        f"worker started: drained in {drain_time:.2f} s, {stranded} stranded frames, "
        f"socket open {sock.open}"
    )
    print(f"\nT14: {measured}")
    figures.check(
        "T14",
        measured,
        all_50_extra_calls_busy=len(busy) == 50,
        busy_is_32010=busy_codes == {JsonRpcErrorCode.SERVER_BUSY},
        busy_names_the_queue=all(
            a.response["error"].get("data", {}).get("queue") == FAULT_QUEUE for a in busy.values()
        ),
        # "At once": without waiting for LAYER_TIMEOUT (2 s) or a deadline. The front-end takes
        # the burst's 150 sends one after the other, a Redis round trip each, so the last busy
        # answer comes 60-120 ms after its send on two shared cores (100 ms was too tight).
        busy_within_half_a_second=busy_latency < 0.5,
        no_queued_call_answered_early=early == 0,
        queued_calls_deadline_exceeded=queued_codes == {JsonRpcErrorCode.DEADLINE_EXCEEDED},
        no_stranded_frame=stranded == 0,
        one_answer_per_call=counts == [1] * 150,
        socket_open=sock.open,
        other_queues_serve=fresh.get("result") == replacement.pid and "result" in other_queue,
    )


# ------------------------------------------------------------------------------------------------
# T24, T26: delivery under random kills, group expiry


@pytest.mark.long
@pytest.mark.timeout(240)
async def test_t24_random_kills_under_load_run_each_call_at_most_once(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, connect: Connect, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=1, workers=2)
    socks = [await connect(cluster.url()) for _ in range(4)]
    total, duration, kill_every = 1000, 30.0, 10.0
    calls: list[tuple[RpcSocket, Any, str, float]] = []
    killed: list[int] = []
    rng = random.Random(24)

    async def killer() -> None:
        while True:
            await asyncio.sleep(kill_every)
            victim = rng.choice([w for w in cluster.workers if w.alive])
            victim.send_signal(signal.SIGKILL)
            killed.append(victim.pid)
            await asyncio.to_thread(cluster.start_worker)

    started = time.monotonic()
    kills = asyncio.create_task(killer())
    try:
        for n in range(total):
            await asyncio.sleep(max(0.0, started + n * duration / total - time.monotonic()))
            sock, token = socks[n % len(socks)], uuid.uuid4().hex
            rpc_id = await sock.request("fault_record_default", [token, 0.3])
            calls.append((sock, rpc_id, token, time.monotonic()))
    finally:
        kills.cancel()
        await asyncio.gather(kills, return_exceptions=True)
    for sock in socks:
        await collect(sock, [i for s, i, _, _ in calls if s is sock], timeout=DEADLINE + 1)

    async def drained() -> bool:
        return await redis_client.zcard(f"{cluster.prefix}rpc.default") == 0

    await wait_until(drained, timeout=10)
    executions = await redis_client.hgetall(cluster.counter_key("fault-executions"))
    unanswered = twice = silent = 0
    errors: dict[str, int] = {}
    errored_runs = {0: 0, 1: 0}
    slowest = 0.0
    for sock, rpc_id, token, at in calls:
        answer = sock.answers.get(json.dumps(rpc_id))
        ran = int(executions.get(token.encode(), 0))
        if answer is None:
            unanswered += 1
            continue
        slowest = max(slowest, answer.at - at)
        twice += ran > 1
        if "error" in answer.response:
            errors[str(code(answer))] = errors.get(str(code(answer)), 0) + 1
            errored_runs[min(ran, 1)] += 1
        elif ran != 1:
            silent += 1  # a result without an execution, or an error-free lost call
    measured = (
        f"{total} calls over {duration:.0f} s, {len(killed)} kill -9 + restarts: "
        f"{unanswered} unanswered, {twice} ran twice, {silent} results without one execution, "
        f"errors {errors or 0} ({errored_runs[1]} of them had run, {errored_runs[0]} had not); "
        f"slowest answer {slowest:.2f} s (T + grace + margin = {DEADLINE:.2f} s)"
    )
    print(f"\nT24: {measured}")
    figures.check(
        "T24",
        measured,
        at_least_2_kills=len(killed) >= 2,
        every_call_answered=unanswered == 0,
        none_ran_twice=twice == 0,
        every_result_ran_once=silent == 0,
        answered_by_the_deadline=slowest <= DEADLINE,
    )


EXPIRY = 2  # the layers' group_expiry in T26, in seconds (channels-redis takes an int)


@pytest.mark.long  # 10 s of holding a membership: make reliability
async def test_t26_group_membership_outlives_a_2_s_group_expiry(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, connect: Connect, figures: Figures
) -> None:
    # Every process prunes by its own group_expiry when it sends to a group: give it to all.
    # 2 s (renewed every second), held four times that: the test lasts 8 s, not 20.
    overrides = json.dumps({"group_expiry": EXPIRY})
    cluster = cluster_factory(frontends=0, workers=0)
    cluster.start_frontend(CHANNEL_LAYER_OVERRIDES=overrides)
    cluster.start_worker(CHANNEL_LAYER_OVERRIDES=overrides)
    member, pusher = await connect(cluster.url()), await connect(cluster.url())
    group, held, every = f"fault-{uuid.uuid4().hex[:8]}", 4.0 * EXPIRY, 1.0
    in_group = (await member.call("join", [group])).get("result") == group
    joined = time.monotonic()
    ttl = await redis_client.ttl(f"{cluster.prefix}:group:{group}")
    pushes = int(held // every)
    pushed: list[bool] = []
    for n in range(1, pushes + 1):
        await asyncio.sleep(max(0.0, joined + n * every - time.monotonic()))  # the subject
        pushed.append(
            (await pusher.call("fault_push", [group, "fault.tick", n])).get("result") == n
        )
    # One more from a process that is neither worker nor front-end.
    command = ["-m", "workers.manage", "rpcnotify", group, "fault.tick", json.dumps({"n": 0})]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command, cwd=REPO, env=cluster.env(CHANNEL_LAYER_OVERRIDES=overrides)
    )
    notified = await asyncio.wait_for(process.wait(), 60)

    def delivered() -> list[int]:
        return [f["params"]["n"] for f in member.notifications if f["method"] == "fault.tick"]

    async def all_delivered() -> bool:
        return len(delivered()) >= pushes + 1

    with contextlib.suppress(AssertionError):
        await wait_until(all_delivered, timeout=3)
    got = delivered()
    held_for = time.monotonic() - joined
    measured = (
        f"group_expiry {EXPIRY} s (group key TTL {ttl} s), member held {held_for:.0f} s: "
        f"{len(got)}/{pushes + 1} pushes delivered (every {every:.0f} s, last by rpcnotify)"
    )
    print(f"\nT26: {measured}")
    figures.check(
        "T26",
        measured,
        the_group_is_joined=in_group,
        the_group_expiry_override_took_effect=0 < ttl <= EXPIRY,
        every_push_sent=all(pushed),
        rpcnotify_exits_0=notified == 0,
        every_push_delivered=sorted(got) == [0, *range(1, pushes + 1)],
        held_past_the_expiry=held_for >= held,
        member_open=member.open,
    )
