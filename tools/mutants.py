"""Break the core promises on purpose, one edit at a time, and check that a test fails each time.

A test that cannot fail is a defect (issue 11). This script copies the working tree as it is
(tracked files, and untracked ones git does not ignore: uncommitted work is checked too) to a
scratch directory, then for each mutation below:

1. applies one textual edit to one file of the copy; an ``old`` text that is not found exactly
   once stops the run, since a mutation that silently does not apply proves nothing;
2. runs the tests chosen for it, from the copy, with this interpreter (the project's venv);
3. counts the tests that failed or errored, and restores the file.

It prints one row per mutation (caught, or NOT CAUGHT) and exits 1 if any mutation survived,
2 if the harness could not do its job (an edit that does not apply, a red baseline).

Before the mutations, the union of the chosen tests runs once on the unmodified copy: a test
that fails already would "catch" every mutation it is chosen for.

Usage (from the repository root; ``make mutants`` runs the first)::

    .venv/bin/python -m tools.mutants            # every mutation (about 10 minutes)
    .venv/bin/python -m tools.mutants --list     # what each one breaks, where, and its tests
    .venv/bin/python -m tools.mutants --only m3-worker-drops-replies

Tests are chosen per mutation, fast unit and in-process files first, plus the few integration
tests that exercise the promise over daphne, rpcworker and Redis: the whole suite per mutation
would take hours on a small machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Seconds one test may take before pytest-timeout fails it (a mutation may make a test hang).
TEST_TIMEOUT = 90
#: Seconds one pytest run may take before it is killed (only if pytest-timeout itself hangs).
RUN_TIMEOUT = 900
#: pytest's exit statuses that mean it did not run the tests as asked.
PYTEST_MISUSE = frozenset({3, 4, 5})


class HarnessError(Exception):
    """The harness cannot give a meaningful answer (exit status 2)."""


@dataclass(frozen=True)
class Mutation:
    """One promise broken by one textual edit, and the tests that should notice."""

    name: str
    breaks: str  # the promise, as the README or the audit states it
    path: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest node ids or paths, relative to the repository root

    def where(self, text: str) -> str:
        """``path:line`` of the first line the edit changes in ``text``."""
        start = _find_once(self, text)
        same = 0
        while same < min(len(self.old), len(self.new)) and self.old[same] == self.new[same]:
            same += 1
        return f"{self.path}:{text.count(chr(10), 0, start + same) + 1}"


def _find_once(mutation: Mutation, text: str) -> int:
    count = text.count(mutation.old)
    if count != 1:
        raise HarnessError(
            f"{mutation.name}: its old text occurs {count} times in {mutation.path} (must be"
            " once): the code changed, adjust the mutation in tools/mutants.py"
        )
    return text.index(mutation.old)


# ------------------------------------------------------------------------------------------------
# The mutations: M1-M9 from the audit (research/test-audit-turn2.md), then the promises issue 11
# and issue 10 add. Each edit is what a plausible bug would look like, not a syntax error.

_REPLY = (
    "        await self._send(call.reply_to,"
    " response_message(call.call, outcome.ok, outcome.body))\n"
)
_DEADLINE = (
    "            self._pending.arm(pending.token, timeout + config.reply_grace, self._expire)\n"
)
_COUNT_DOC = (
    '        """Count a notification against the limit until a worker takes it'
    ' (:meth:`taken`)."""\n'
)
_JOIN_DOC = (
    '    """Add ``channel`` to ``group`` unless it closed or is in ``limit`` other groups."""\n'
)
_T25 = (
    "tests/integration/reliability/test_clients_and_security.py"
    "::test_t25_same_ids_on_10_connections_are_never_crossed"
)

MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "m1-worker-ignores-cancel",
        "a cancelled running call is stopped in the worker (task and ctx.cancelled)",
        "channels_rpc/worker.py",
        "                if context is not None:\n"
        "                    context._cancel()\n"
        "                self._dropped.add(task)\n"
        "                task.cancel()\n",
        "                self._dropped.add(task)  # mutant: the call runs on\n",
        (
            "tests/unit/test_runtime_control.py",
            "tests/inprocess/test_push_cancel_discover.py",
            "tests/integration/test_push_and_cancel.py"
            "::test_cancelling_a_running_call_answers_at_once_and_stops_it_in_the_worker",
        ),
    ),
    Mutation(
        "m2-boolean-ids",
        "true and false are not valid ids (-32600)",
        "channels_rpc/protocol.py",
        "    return value is None or (isinstance(value, (str, int, float))"
        " and not isinstance(value, bool))\n",
        "    return value is None or isinstance(value, (str, int, float))\n",
        (
            "tests/unit/test_protocol.py",
            "tests/inprocess/test_vectors.py",
            "tests/integration/reliability/test_clients_and_security.py"
            "::test_t05_network_fuzz_1000_malformed_messages_on_one_socket",
        ),
    ),
    Mutation(
        "m3-worker-drops-replies",
        "every call gets its answer (the worker loses none)",
        "channels_rpc/worker.py",
        _REPLY,
        '        self._mutant = getattr(self, "_mutant", 0) + 1\n'
        "        if self._mutant % 10 == 0:\n"
        "            return  # mutant: every 10th reply is lost\n" + _REPLY,
        (
            "tests/inprocess/test_promises.py"
            "::test_every_one_of_many_calls_through_one_worker_is_answered_once",
            "tests/inprocess/test_worker_hardening.py",
            "tests/inprocess/test_consumer.py",
            "tests/integration/test_delivery.py"
            "::test_three_workers_execute_each_of_20000_calls_exactly_once",
        ),
    ),
    Mutation(
        "m4-queue-time-zero",
        "rpc_method_completed/failed carry the real queue_time",
        "channels_rpc/call_signals.py",
        "        return max(0.0, self._clock() - duration - call.sent_at)\n",
        "        return 0.0  # mutant\n",
        (
            "tests/unit/test_execution.py",
            "tests/inprocess/test_extension_points.py",
            "tests/inprocess/test_worker_hardening.py",
        ),
    ),
    Mutation(
        "m5-frontend-skips-params",
        "wrong params are answered -32602 by the front-end, before any worker is involved",
        "channels_rpc/consumer.py",
        "            spec = await self._resolve(request)\n            spec.bind(request.params)\n",
        "            spec = await self._resolve(request)  # mutant: params not bound here\n",
        (
            "tests/inprocess/test_promises.py"
            "::test_wrong_params_are_answered_by_the_front_end_and_never_queued",
            "tests/inprocess/test_worker_inline.py",
            "tests/inprocess/test_vectors.py",
            "tests/integration/test_promises.py"
            "::test_wrong_params_are_answered_by_the_front_end_with_no_worker_running",
        ),
    ),
    Mutation(
        "m6-auto-runs-in-daphne",
        'EXECUTION="auto" runs methods in workers when the layer is Redis',
        "channels_rpc/consumer.py",
        "            return isinstance(self.channel_layer, InMemoryChannelLayer)\n",
        "            return True  # mutant: inline on any layer\n",
        (
            "tests/integration/test_distributed.py"
            "::test_kill_9_of_a_busy_worker_answers_every_call_and_the_other_keeps_serving",
            "tests/integration/test_vectors_live.py",
        ),
    ),
    Mutation(
        "m7-breaker-never-opens",
        "after a layer failure the breaker refuses for a second instead of waiting again",
        "channels_rpc/guards.py",
        "        return self._clock() >= self._open_until\n",
        "        return True  # mutant\n",
        (
            "tests/unit/test_guards.py",
            "tests/inprocess/test_frontend_hardening.py",
            "tests/integration/reliability/test_slow_redis.py"
            "::test_t47_a_stalled_redis_costs_one_layer_timeout_then_the_breaker_answers",
            "tests/integration/reliability/test_workers_and_redis.py"
            "::test_t11_redis_down_fails_fast_reports_unhealthy_and_recovers",
        ),
    ),
    Mutation(
        "m8-deadline-grace-1.8x",
        "every call is answered by timeout + REPLY_GRACE (here + 1.8 x REPLY_GRACE)",
        "channels_rpc/sending.py",
        _DEADLINE,
        _DEADLINE.replace("config.reply_grace", "1.8 * config.reply_grace").replace(
            "\n", "  # mutant\n"
        ),
        (
            "tests/inprocess/test_consumer.py",
            "tests/integration/test_distributed.py"
            "::test_kill_9_of_a_busy_worker_answers_every_call_and_the_other_keeps_serving",
            "tests/integration/reliability/test_workers_and_redis.py"
            "::test_t13_with_no_worker_calls_get_deadline_errors_and_never_run_later",
        ),
    ),
    Mutation(
        "m9-old-redis-pop-fails",
        "queues work on Redis < 7 (BZPOPMIN plus a script)",
        "channels_rpc/_redis/pop.py",
        "        result = await self._settling(\n"
        "            connection, settle, lambda c: c.bzpopmin(list(keys), timeout=timeout)\n"
        "        )\n",
        '        raise RuntimeError("mutant: the pop path of Redis < 7 fails")\n',
        ("tests/integration/test_layer.py", "tests/integration/test_layer_queues.py"),
    ),
    Mutation(
        "cancel-ignored",
        "rpc.cancel answers the call -32800 at once and stops it",
        "channels_rpc/consumer.py",
        "            await self._calls.cancel(item.params)\n            return None\n",
        "            return None  # mutant: rpc.cancel ignored\n",
        (
            "tests/inprocess/test_push_cancel_discover.py",
            "tests/integration/test_push_and_cancel.py"
            "::test_cancelling_a_running_call_answers_at_once_and_stops_it_in_the_worker",
        ),
    ),
    Mutation(
        "replies-sent-twice",
        "a worker answers each call once",
        "channels_rpc/worker.py",
        _REPLY,
        _REPLY + _REPLY.rstrip("\n") + "  # mutant: twice\n",
        (
            "tests/inprocess/test_worker_hardening.py",
            "tests/inprocess/test_worker_inline.py",
            "tests/unit/test_runtime.py",
        ),
    ),
    Mutation(
        "no-deadline-timer",
        "a call no worker answers is answered -32012 at its deadline",
        "channels_rpc/sending.py",
        _DEADLINE,
        "            pass  # mutant: no deadline timer\n",
        (
            "tests/inprocess/test_consumer.py",
            "tests/integration/reliability/test_workers_and_redis.py"
            "::test_t13_with_no_worker_calls_get_deadline_errors_and_never_run_later",
        ),
    ),
    Mutation(
        "pending-shared-by-connections",
        "ids are per connection: the same id on two connections is two calls",
        "channels_rpc/consumer.py",
        "        self._pending = PendingCalls(config.max_in_flight)\n",
        '        if "_mutant" not in type(self).__dict__:  # mutant: one table for all\n'
        "            type(self)._mutant = PendingCalls(config.max_in_flight)\n"
        "        self._pending = type(self)._mutant\n",
        (
            "tests/inprocess/test_promises.py::test_the_same_ids_on_two_connections_each_get_their_own_answers",
            "tests/inprocess/test_consumer.py",
            "tests/inprocess/test_push_cancel_discover.py",
            _T25,
        ),
    ),
    Mutation(
        "replies-to-first-connection",
        "answers go to the connection that made the call",
        "channels_rpc/worker.py",
        _REPLY,
        '        first = self.__dict__.setdefault("_mutant", call.reply_to)  # mutant\n'
        + _REPLY.replace("call.reply_to", "first"),
        (
            "tests/inprocess/test_promises.py::test_the_same_ids_on_two_connections_each_get_their_own_answers",
            "tests/inprocess/test_worker_inline.py",
            "tests/inprocess/test_push_cancel_discover.py",
            _T25,
        ),
    ),
    Mutation(
        "worker-size-unchecked",
        "an answer over MAX_RESPONSE_SIZE is answered -32014 by the worker that encodes it",
        "channels_rpc/execution.py",
        "        if self._max_size is None:\n            return outcome\n",
        "        if True:  # mutant: no size check\n            return outcome\n",
        ("tests/unit/test_execution.py", "tests/inprocess/test_worker_hardening.py"),
    ),
    Mutation(
        "notifications-uncounted",
        "queued notifications count against MAX_IN_FLIGHT until a worker takes them",
        "channels_rpc/pending.py",
        _COUNT_DOC + "        if len(self._by_token) >= self.limit:\n"
        "            raise TooManyInFlight(self.limit)\n",
        _COUNT_DOC + "        pass  # mutant: notifications are never refused\n",
        (
            "tests/unit/test_pending.py",
            "tests/inprocess/test_frontend_hardening.py",
            "tests/integration/reliability/test_frontend_hardening.py"
            "::test_t37_notifications_count_against_the_in_flight_limit",
        ),
    ),
    Mutation(
        "rate-limit-removed",
        "a client over RATE_LIMIT frames a second is closed 4008",
        "channels_rpc/flow.py",
        '        if not self._bucket.take(1):\n            return "rate limit exceeded"\n',
        "",
        (
            "tests/inprocess/test_flow.py",
            "tests/integration/reliability/test_flow.py"
            "::test_t39_the_rate_limit_closes_4008_while_the_consumer_waits_on_redis",
        ),
    ),
    Mutation(
        "joins-not-recorded",
        "group joins are recorded with the connection: capped, and undone by its close",
        "channels_rpc/groups.py",
        _JOIN_DOC,
        _JOIN_DOC + "    await layer.group_add(group, channel)  # mutant: a plain join\n"
        "    return JOINED\n",
        (
            "tests/inprocess/test_frontend_hardening.py",
            "tests/inprocess/test_worker_hardening.py",
            "tests/integration/reliability/test_frontend_hardening.py"
            "::test_t31_joins_racing_the_close_leave_no_stale_membership",
        ),
    ),
    Mutation(
        "send-script-ignores-not-after",
        "a send given up by its sender is never queued (the send script checks not_after)",
        "channels_rpc/_redis/scripts.py",
        "        if not_after and now > not_after then\n",
        "        if false then -- mutant\n",
        ("tests/integration/test_layer_queues.py",),
    ),
)


# ------------------------------------------------------------------------------------------------
# The scratch copy


def working_tree_files(root: Path) -> list[str]:
    """Tracked files, and untracked ones git does not ignore (the working tree as it is now)."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            check=True,
            capture_output=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise HarnessError(f"cannot list the files of {root} (a git checkout?): {exc}") from exc
    return sorted({name for name in listing.split("\0") if name})


def copy_tree(root: Path, scratch: Path) -> int:
    """Copy the working tree to ``scratch``; returns how many files were copied."""
    copied = 0
    for name in working_tree_files(root):
        source = root / name
        if not source.is_file() and not source.is_symlink():
            continue  # deleted in the working tree, or a submodule
        target = scratch / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
        copied += 1
    return copied


def run_environment(scratch: Path) -> dict[str, str]:
    """The environment of the test runs: the copy's code first, and no stale bytecode.

    Python checks a ``.pyc`` by the source's mtime and size, which a restored file may share
    with its mutant: so none are written, and each run compiles what is on disk.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(scratch), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("RELIABILITY_RESULTS", None)  # mutants must not write the reliability table
    return env


def check_imports_copy(scratch: Path) -> None:
    """Fail unless a process started in ``scratch`` imports the copy's package, not ours."""
    probe = subprocess.run(
        [sys.executable, "-c", "import channels_rpc; print(channels_rpc.__file__)"],
        cwd=scratch,
        env=run_environment(scratch),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not Path(probe).resolve().is_relative_to(scratch.resolve()):
        raise HarnessError(f"the scratch copy imports channels_rpc from {probe}, not its own")


# ------------------------------------------------------------------------------------------------
# Running tests


@dataclass(frozen=True)
class Outcome:
    """What one pytest run reported."""

    ran: int
    failed: tuple[str, ...]  # failed or errored tests (ids)
    seconds: float
    killed: bool = False  # the whole run outlived RUN_TIMEOUT


def pytest_command(tests: Sequence[str], report: Path, timeout: int) -> list[str]:
    command = [sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider"]
    command += [f"--timeout={timeout}", f"--junitxml={report}", "-o", "junit_logging=no"]
    if importlib.util.find_spec("pytest_randomly") is not None:
        command += ["-p", "no:randomly"]  # the same order as `make test`
    return command


def run_tests(scratch: Path, tests: Sequence[str], timeout: int, label: str) -> Outcome:
    """Run ``tests`` from ``scratch``; counts come from pytest's JUnit XML report."""
    report = scratch / f".mutants-{label}.xml"
    report.unlink(missing_ok=True)
    started = time.monotonic()
    process = subprocess.Popen(
        pytest_command(tests, report, timeout),
        cwd=scratch,
        env=run_environment(scratch),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its daphne, rpcworker and redis-server children with it
    )
    killed = False
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        killed = True
        output = _stop(process)
    except BaseException:  # Ctrl-C reaches us only: the run is in a session of its own
        _stop(process)
        raise
    seconds = time.monotonic() - started
    if killed and not report.exists():
        return Outcome(0, (f"(pytest killed after {RUN_TIMEOUT} s)",), seconds, killed)
    tail = output.decode(errors="replace")[-3000:]
    # 3: internal error, 4: usage error (a test id that names nothing), 5: no test collected.
    if process.returncode in PYTEST_MISUSE or not report.exists():
        raise HarnessError(f"pytest exited {process.returncode} for {label}:\n{tail}")
    ran, failed = read_report(report)
    if ran == 0:
        raise HarnessError(f"no test ran for {label}: {' '.join(tests)}\n{tail}")
    return Outcome(ran, failed, seconds, killed)


def _stop(process: subprocess.Popen[bytes]) -> bytes:
    """Stop the run and everything it started (its own process group)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 30)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            output, _ = process.communicate(timeout=wait)
            return output
        except subprocess.TimeoutExpired:
            continue
    return b""


def read_report(report: Path) -> tuple[int, tuple[str, ...]]:
    """Tests that ran (not skipped), and those with a failure or an error in any phase."""
    ran: dict[str, bool] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcomes = {child.tag for child in case}
        if outcomes & {"failure", "error"}:
            ran[test_id] = True
        elif "skipped" not in outcomes:
            ran.setdefault(test_id, False)
    return len(ran), tuple(test_id for test_id, bad in ran.items() if bad)


# ------------------------------------------------------------------------------------------------
# The check


@dataclass(frozen=True)
class Row:
    mutation: Mutation
    where: str
    outcome: Outcome

    @property
    def caught(self) -> bool:
        return bool(self.outcome.failed)


def check_applies(mutations: Iterable[Mutation], root: Path) -> dict[str, str]:
    """``where`` of every mutation; raises if one does not apply or names a missing test."""
    places = {}
    for mutation in mutations:
        places[mutation.name] = mutation.where((root / mutation.path).read_text(encoding="utf-8"))
        for test in mutation.tests:
            if not (root / test.split("::")[0]).exists():
                raise HarnessError(f"{mutation.name}: no test file {test.split('::')[0]}")
    return places


def mutate_and_run(mutation: Mutation, scratch: Path, timeout: int) -> Row:
    """Apply ``mutation`` to the copy, run its tests, restore the file."""
    path = scratch / mutation.path
    original = path.read_text(encoding="utf-8")
    where = mutation.where(original)
    start = _find_once(mutation, original)
    mutated = original[:start] + mutation.new + original[start + len(mutation.old) :]
    path.write_text(mutated, encoding="utf-8")
    try:
        outcome = run_tests(scratch, mutation.tests, timeout, mutation.name)
    finally:
        path.write_text(original, encoding="utf-8")
    return Row(mutation, where, outcome)


def baseline(mutations: Sequence[Mutation], scratch: Path, timeout: int) -> None:
    """Every chosen test must pass unmutated, or its failures would count as catches."""
    tests = list(dict.fromkeys(test for mutation in mutations for test in mutation.tests))
    _progress(f"baseline: {len(tests)} test selections on the unmodified copy ...")
    outcome = run_tests(scratch, tests, timeout, "baseline")
    if outcome.failed:
        listed = "\n  ".join(outcome.failed)
        raise HarnessError(f"the baseline is not green ({outcome.ran} ran):\n  {listed}")
    _progress(f"baseline: {outcome.ran} tests passed in {outcome.seconds:.0f} s")


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table, then a totals line."""
    header = ("mutation", "where (file:line)", "tests run", "caught by", "verdict")
    lines = [header, tuple("---" for _ in header)]
    for row in rows:
        verdict = "caught" if row.caught else "NOT CAUGHT"
        count = f"{len(row.outcome.failed)}" + (" (run killed)" if row.outcome.killed else "")
        lines.append((row.mutation.name, row.where, str(row.outcome.ran), count, verdict))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
        for line in lines
    ]
    caught = sum(row.caught for row in rows)
    minutes = sum(row.outcome.seconds for row in rows) / 60
    text.append(
        f"\n{caught} of {len(rows)} mutations caught, {len(rows) - caught} not caught"
        f" ({minutes:.1f} minutes of tests)"
    )
    return "\n".join(text)


def details(rows: Sequence[Row], limit: int = 4) -> str:
    """Which tests caught each mutation (the first ``limit``), to judge the catches."""
    lines = []
    for row in rows:
        shown = ", ".join(test.rsplit("::", 1)[-1] for test in row.outcome.failed[:limit])
        more = len(row.outcome.failed) - limit
        lines.append(f"{row.mutation.name}: {shown or '-'}" + (f" (+{more})" if more > 0 else ""))
    return "\n".join(lines)


def listing(mutations: Sequence[Mutation], places: dict[str, str]) -> str:
    blocks = []
    for mutation in mutations:
        tests = "\n".join(f"    {test}" for test in mutation.tests)
        blocks.append(
            f"{mutation.name}  ({places[mutation.name]})\n  breaks: "
            f"{mutation.breaks}\n  tests:\n{tests}"
        )
    return "\n".join(blocks)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def select(names: Sequence[str] | None) -> tuple[Mutation, ...]:
    if not names:
        return MUTATIONS
    known = {mutation.name: mutation for mutation in MUTATIONS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise HarnessError(f"no mutation named {', '.join(unknown)} (see --list)")
    return tuple(known[name] for name in names)


def run(mutations: Sequence[Mutation], *, timeout: int, check_baseline: bool) -> int:
    scratch = Path(tempfile.mkdtemp(prefix="mutants-"))
    try:
        copied = copy_tree(ROOT, scratch)
        check_imports_copy(scratch)
        _progress(f"copied {copied} files of {ROOT} to {scratch}")
        if check_baseline:
            baseline(mutations, scratch, timeout)
        rows = []
        for number, mutation in enumerate(mutations, 1):
            _progress(f"[{number}/{len(mutations)}] {mutation.name} ...")
            row = mutate_and_run(mutation, scratch, timeout)
            verdict = "caught" if row.caught else "NOT CAUGHT"
            _progress(
                f"    {verdict}: {len(row.outcome.failed)} of {row.outcome.ran} tests failed"
                f" ({row.outcome.seconds:.0f} s)"
            )
            rows.append(row)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(table(rows))
    print("\nCaught by:\n" + details(rows))
    return 0 if all(row.caught for row in rows) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.mutants", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="run this mutation only (repeatable)"
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the run of the unmodified copy"
    )
    parser.add_argument(
        "--timeout", type=int, default=TEST_TIMEOUT, help="seconds per test (pytest-timeout)"
    )
    args = parser.parse_args(argv)
    try:
        mutations = select(args.only)
        places = check_applies(mutations, ROOT)
        if args.list:
            print(listing(mutations, places))
            return 0
        return run(mutations, timeout=args.timeout, check_baseline=not args.no_baseline)
    except HarnessError as exc:
        print(f"mutants: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
