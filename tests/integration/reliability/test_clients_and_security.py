"""Abusive clients, the wire protocol and security (reliability plan T05, T15-T23, T25, T27).

Real processes only: daphne front-ends (the test project, or the reference project's stack with
its origin check and token middleware), ``rpcworker`` processes and redis-server. Hostile traffic
comes from ``websockets`` where it is well-formed and from :mod:`.rawws` (raw sockets) where it is
not. Tests wait on events (answers, Redis counters written by the probes of
``tests.project.abuse``, daphne's log) and sleep only where elapsed time is the subject (ping
periods, a token's lifetime, a trickle of one byte a second). Each test records what it measured
and its verdict with ``figures.check``: the row's verdict is the test's asserts, check by check.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import random
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import pytest
import websockets
from redis.asyncio import Redis as AsyncRedis
from websockets.asyncio.client import ClientConnection
from websockets.typing import Origin

from channels_rpc import JsonRpcErrorCode
from tests.integration.client import RpcSocket
from tests.integration.harness import REPO, Cluster, Proc
from tests.integration.reliability import rawws
from tests.integration.reliability.rawws import RawWebSocket
from tests.integration.reliability.report import Figures
from tests.integration.support import (
    ClusterFactory,
    Connect,
    counter,
    wait_until,
)

pytestmark = pytest.mark.anyio

HOST = "127.0.0.1"
PING = ("--ping-interval", "2", "--ping-timeout", "3")
ALLOWED_ORIGIN = "http://allowed.test:8000"


# ------------------------------------------------------------------------------------------------
# Fixtures and helpers


async def counter_reaches(read: Callable[[], Awaitable[int]], value: int, timeout: float) -> float:
    async def reached() -> bool:
        return await read() >= value

    return await wait_until(reached, timeout)


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (MiB)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class RssPeak:
    """Samples a process's RSS every 20 ms in a thread; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def call_latencies(
    sock: RpcSocket,
    count: int = 0,
    duration: float = 0.0,
    interval: float = 0.0,
    failures: list[Any] | None = None,
) -> list[float]:
    """Latencies of ``pid`` calls made one after another (``count`` calls or for ``duration``),
    starting at most one every ``interval`` seconds. A call answered with an error fails the
    test, unless ``failures`` collects it."""
    latencies: list[float] = []
    until = time.monotonic() + duration
    while len(latencies) < count or time.monotonic() < until:
        started = time.monotonic()
        try:
            answer = await sock.call("pid", timeout=10)
        except AssertionError as exc:  # unanswered
            answer = {"unanswered": str(exc)}
        if "result" not in answer:
            if failures is None:
                raise AssertionError(answer)
            failures.append(answer)
            if not sock.open:
                break
        latencies.append(time.monotonic() - started)
        await asyncio.sleep(max(0.0, started + interval - time.monotonic()))
    return latencies


def error_code(response: Any) -> int | None:
    error = response.get("error") if isinstance(response, dict) else None
    return None if error is None else int(error["code"])


#: A path no route serves (see :func:`daphne_checks`), and what daphne logs for it.
NOWHERE = "/ws/nowhere/"
NOWHERE_LOGGED = "No route found for path 'ws/nowhere/'"


def log_errors(proc: Proc, start: int = 0, end: int | None = None) -> list[str]:
    """Traceback and ERROR lines a process printed (lines ``start`` to ``end``), leaving out
    the ones :func:`daphne_checks` made it log."""
    errors: list[str] = []
    after_marker = False
    for line in proc.output().splitlines()[start:end]:
        if NOWHERE_LOGGED in line:
            after_marker = True
            continue
        if " ERROR " in line or ("Traceback" in line and not after_marker):
            errors.append(line)
        after_marker = False
    return errors


async def daphne_checks(frontend: Proc, port: int, passes: int = 2) -> int:
    """Returns once daphne's application checker has run ``passes`` times from now: the
    number of lines ``frontend`` had printed by then.

    daphne reaps finished applications, and logs their exceptions ("Exception inside
    application"), only from that checker, a timer that fires once a second; nothing says when
    it fired. A handshake on a path no route serves makes it say so: that application raises
    at once, and the checker logs it, then answers the handshake with 500. The second pass
    fires a full period after the first, so an application that was just finishing when the
    first one fired has been checked too.
    """
    for _ in range(passes):
        start = frontend.line_count()
        response = await handshake(port, NOWHERE)
        assert response.status == 500, f"{NOWHERE} answered {response.status}"
        await asyncio.to_thread(frontend.wait_for, re.escape(NOWHERE_LOGGED), 10, start)
    return frontend.line_count()


def start_reference_frontend(cluster: Cluster, *daphne_args: str, **env: str) -> Proc:
    """daphne serving the reference project (``workers.asgi``: origin check, token auth)."""
    name = f"reference{len(cluster.frontends)}"
    argv = [
        sys.executable, "-m", "daphne", "-e", "tcp:port=0:interface=127.0.0.1",
        *daphne_args, "workers.asgi:application",
    ]  # fmt: skip
    child_env = cluster.env(**env)
    child_env["DJANGO_SETTINGS_MODULE"] = "workers.settings"
    proc = Proc(name, argv, child_env, cluster.log_dir)
    cluster.frontends.append(proc)
    port = int(proc.wait_for(r"Listening on TCP address 127\.0\.0\.1:(\d+)").group(1))
    cluster.ports.append(port)
    return proc


def manage(cluster: Cluster, *args: str) -> str:
    """Run ``python -m workers.manage ARGS`` against the cluster's database; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "workers.manage", *args],
        cwd=REPO,
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def mint_token(cluster: Cluster, username: str, ttl: float) -> tuple[str, float]:
    """A bearer token from ``manage.py rpctoken`` and its expiry (epoch seconds)."""
    token = manage(cluster, "rpctoken", username, "--create", "--ttl", str(ttl)).splitlines()[-1]
    payload = token.replace("~", ":").split(":", 1)[0]  # workers.auth writes ":" as "~"
    compressed = payload.startswith(".")
    data = base64.urlsafe_b64decode(payload.lstrip(".") + "=" * (-len(payload) % 4))
    claims = json.loads(zlib.decompress(data) if compressed else data)
    return token, float(claims["exp"])


async def handshake(
    port: int,
    path: str,
    *,
    origin: bytes | str | None = None,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    raw_headers: bytes = b"",
) -> rawws.HttpResponse:
    request = rawws.upgrade_request(
        path,
        f"{HOST}:{port}",
        origin=origin,
        subprotocols=subprotocols,
        headers=headers,
        raw_headers=raw_headers,
    )
    return await rawws.upgrade(HOST, port, request)


@contextlib.contextmanager
def open_files(needed: int) -> Iterator[int]:
    """Raise this process's open-files limit (children started inside inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = soft if soft >= needed else min(needed, hard)
    if wanted != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield wanted
    finally:
        if wanted != soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ------------------------------------------------------------------------------------------------
# T05: network fuzz


MISSING = "abuse_missing"  # no such method: valid requests are answered -32601 by the front-end
FUZZ_TOKENS = [
    "[", "]", "{", "}", ",", ":", '"', "\\", "\\u", "\\ud800", "0", "1", "-", ".", "e", "+",
    "NaN", "Infinity", "1e400", "true", "false", "null", '"jsonrpc"', '"2.0"', '"method"',
    '"id"', '"params"', f'"{MISSING}"', " ", "\ufeff", "\x01", "\u00e9", "\U0001f600",
]  # fmt: skip
BAD_ID_TOKENS = [
    "true", "false", "[]", "{}", "[1]", '{"a":1}', '"' + "x" * 300 + '"', "1e400", "NaN",
    "-Infinity", "9" * 5000, "18446744073709551616", "1.5", '"\\ud800"', "-0.0", "1e-400",
]  # fmt: skip
HOSTILE_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "9" * 4301, "1" * 4300]


def _request(method: str = MISSING, params: str = "[1,2]", rpc_id: str = "1") -> str:
    return f'{{"jsonrpc":"2.0","method":"{method}","params":{params},"id":{rpc_id}}}'


def _nested(rng: random.Random) -> str:
    depth = rng.choice([21, 22, 23, 24, 30, 1000, 5000, 100_000])
    if rng.random() < 0.5:
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


ENVELOPE_MUTATIONS = [
    f'{{"jsonrpc":"1.0","method":"{MISSING}","id":3}}',
    f'{{"jsonrpc":2.0,"method":"{MISSING}","id":3}}',
    f'{{"method":"{MISSING}","id":3}}',
    '{"jsonrpc":"2.0","id":3}',
    '{"jsonrpc":"2.0","method":1,"id":3}',
    '{"jsonrpc":"2.0","method":null,"id":3}',
    _request(params='"bar"'),
    _request(params="3"),
    _request(params="null"),
    _request(params="true"),
    '{"jsonrpc":"2.0","result":1,"id":3}',
    '{"jsonrpc":"2.0","error":{"code":1},"id":3}',
    "{}",
    "1",
    "null",
    '"x"',
    "true",
    "",
    " ",
]


def _envelope_mutation(rng: random.Random) -> str:
    return rng.choice(ENVELOPE_MUTATIONS)


def _batch(rng: random.Random) -> str:
    size = rng.choice([0, 1, 2, 3, 5, 101])
    parts = [
        rng.choice(
            [_request(rpc_id=str(index)), "1", '{"foo":"boo"}', _request(rpc_id="true"), "[]"]
        )
        for index in range(size)
    ]
    return "[" + ",".join(parts) + "]"


def fuzz_message(rng: random.Random) -> str | bytes:  # noqa: C901  (one branch per mutation)
    """One malformed (or unusual but valid) frame: text, or bytes for a binary frame."""
    base = _request(
        params=rng.choice(['[1,"two",{"three":3}]', '{"a":[1,2,{"b":null}]}', "[]"]),
        rpc_id=rng.choice(["1", '"x"', "null", "18446744073709551616", "2.5", '"\\u00e9"']),
    )
    kind = rng.randrange(14)
    if kind == 0:  # truncation
        return base[: rng.randrange(len(base))]
    if kind == 1:  # random bytes, as text
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))).decode("latin-1")
    if kind == 2:  # JSON-ish token soup
        return "".join(rng.choice(FUZZ_TOKENS) for _ in range(rng.randint(1, 30)))
    if kind == 3:  # deep nesting, whole frame or in params
        nested = _nested(rng)
        return nested if rng.random() < 0.5 else _request(params=nested)
    if kind == 4:  # bad ids
        return _request(rpc_id=rng.choice(BAD_ID_TOKENS))
    if kind == 5:  # duplicate keys
        return rng.choice(
            [
                f'{{"jsonrpc":"2.0","method":"x","method":"{MISSING}","id":5}}',
                f'{{"jsonrpc":"2.0","method":"{MISSING}","id":5,"id":6}}',
                _request(params='{"a":1,"a":2}'),
                _request(params='[{"k":{"z":1,"z":1}}]'),
            ]
        )
    if kind == 6:  # non-standard and oversized numbers
        return _request(params="[" + rng.choice(HOSTILE_NUMBERS) + "]")
    if kind == 7:
        return _envelope_mutation(rng)
    if kind == 8:  # BOM, trailing data, surrounding whitespace
        return rng.choice(["\ufeff" + base, base + " trailing", base + "}", " \n" + base + "\t"])
    if kind == 9:
        return _batch(rng)
    if kind == 10:  # long method names
        return _request(method="m" * rng.choice([257, 300, 10_000]))
    if kind == 11:  # escapes and raw control characters in strings
        return _request(params=rng.choice(['["\\ud800"]', '["\\u0000"]', '["a\x01b"]', '["\\q"]']))
    if kind == 12:  # binary frames: UTF-8 or not
        if rng.random() < 0.5:
            return base.encode("utf-8")
        return bytes(rng.randrange(128, 256) for _ in range(rng.randint(1, 32)))
    # valid requests for a method that does not exist, with unusual ids
    return _request(rpc_id=rng.choice(["-1", "0.1", '"\\ud83d\\ude00"', "1e300", '""']))


# The oracle: the answer JSON-RPC 2.0 (jsonrpc.org/specification) and this project's policy
# (docs/reference/protocol.md, the default limits of docs/reference/settings.md) give each
# frame, worked out here from those rules alone. It must not ask channels_rpc.protocol: a
# parser that is wrong would then predict its own mistakes (boolean ids accepted passed the fuzz
# that way).

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND = -32700, -32600, -32601
REQUEST_TOO_LARGE = -32001
MAX_MESSAGE_SIZE = 512 * 1024  # UTF-8 bytes of a frame
MAX_NESTING_DEPTH = 20  # of params, counted as in channels-rpc 1.0.1 (params at depth 0)
MAX_ARRAY_LENGTH, MAX_STRING_LENGTH = 10_000, 1024 * 1024
MAX_METHOD_NAME_LENGTH, MAX_BATCH_SIZE, MAX_ID_LENGTH = 256, 100, 256
#: The frame scan allows params nested MAX_NESTING_DEPTH deep inside a request inside a batch:
#: three more levels of brackets.
MAX_FRAME_DEPTH = MAX_NESTING_DEPTH + 3

Answer = tuple[int | None, Any]  # (error code, None for a result; the id answered)
Expected = Answer | list[Answer]


class Unpredictable(Exception):
    """The rules leave this frame's answer to the server (a method that may exist)."""


class DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise DuplicateKey(keys)
    return dict(pairs)


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_json(text: str) -> Any:
    """RFC 8259 JSON as the policy reads it: NaN, Infinity, numbers out of range and integers
    over 4,300 digits are not JSON; a duplicate key raises :class:`DuplicateKey`. When a frame
    breaks two rules, the one met first, reading left to right, decides."""
    return json.loads(
        text, object_pairs_hook=_unique_keys, parse_float=_finite, parse_constant=_no_constant
    )


def bracket_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` outside strings (an open string runs to the end)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif in_string:
            escaped = char == "\\"
            in_string = char != '"'
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def params_over_limits(value: Any, depth: int = 0) -> bool:
    """Any value deeper than MAX_NESTING_DEPTH (items, keys and values one level below their
    container), any string or array longer than its limit."""
    if depth > MAX_NESTING_DEPTH:
        return True
    if isinstance(value, str):
        return len(value) > MAX_STRING_LENGTH
    if isinstance(value, list):
        return len(value) > MAX_ARRAY_LENGTH or any(
            params_over_limits(item, depth + 1) for item in value
        )
    if isinstance(value, dict):
        return any(
            params_over_limits(key, depth + 1) or params_over_limits(item, depth + 1)
            for key, item in value.items()
        )
    return False


def valid_id(value: Any) -> bool:
    """A string, a number or null (JSON true/false are not numbers), at most 256 characters."""
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return False
    return len(value if isinstance(value, str) else str(value)) <= MAX_ID_LENGTH


def request_answer(obj: Any) -> Answer | None:
    """One request object (a frame, or a batch element): its answer, or None for none."""
    rpc_id = obj.get("id") if isinstance(obj, dict) else None
    if not isinstance(obj, dict) or not valid_id(rpc_id):
        return (INVALID_REQUEST, None)
    method, params = obj.get("method"), obj.get("params", [])
    if obj.get("jsonrpc") != "2.0" or not isinstance(method, str):
        return (INVALID_REQUEST, rpc_id)  # an invalid request is answered, notification or not
    if not isinstance(params, (list, dict)):
        return (INVALID_REQUEST, rpc_id)
    notification = "id" not in obj  # never answered, not even with an error
    if len(method) > MAX_METHOD_NAME_LENGTH or params_over_limits(params):
        return None if notification else (REQUEST_TOO_LARGE, rpc_id)
    if notification:
        return None
    if not method.startswith(MISSING):
        raise Unpredictable(method)
    return (METHOD_NOT_FOUND, rpc_id)


def batch_answer(items: list[Any]) -> list[Answer] | None:
    """Each element answered on its own, in request order; nothing if none is answered."""
    answers = [request_answer(item) for item in items]
    ids = [answer[1] for answer in answers if answer is not None and answer[1] is not None]
    if len(ids) != len(set(ids)):
        raise Unpredictable("an id repeated in a batch: which element is refused is not ours")
    return [answer for answer in answers if answer is not None] or None


def spec_answer(frame: str | bytes) -> Expected | None:
    """What the front-end must answer ``frame`` with (None: nothing, as for a notification)."""
    if isinstance(frame, bytes):  # a binary frame is read as UTF-8 text
        try:
            frame = frame.decode("utf-8")
        except UnicodeDecodeError:
            return (PARSE_ERROR, None)
    oversize = len(frame.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_SIZE
    if oversize or bracket_depth(frame) > MAX_FRAME_DEPTH:  # decided before parsing
        return (REQUEST_TOO_LARGE, None)
    try:
        document = strict_json(frame)
    except DuplicateKey:
        return (INVALID_REQUEST, None)
    except ValueError:  # BOM, trailing data, bad escapes and numbers: not JSON
        return (PARSE_ERROR, None)
    if not isinstance(document, list):
        return request_answer(document)
    if not document:
        return (INVALID_REQUEST, None)
    if len(document) > MAX_BATCH_SIZE:
        return (REQUEST_TOO_LARGE, None)
    return batch_answer(document)


def fuzz_corpus(seed: int, count: int) -> list[tuple[str | bytes, Expected]]:
    """``count`` frames that must each be answered, with the answers the rules give them."""
    rng = random.Random(seed)
    corpus: list[tuple[str | bytes, Expected]] = []
    # Each policy case once, whatever the seed draws; then random frames.
    fixed = [
        *ENVELOPE_MUTATIONS,
        *(_request(rpc_id=token) for token in BAD_ID_TOKENS),
        *(_request(params=f"[{number}]") for number in HOSTILE_NUMBERS),
    ]
    while len(corpus) < count:
        frame = fixed.pop(0) if fixed else fuzz_message(rng)
        try:
            expected = spec_answer(frame)
        except Unpredictable:
            continue
        if expected is not None:
            corpus.append((frame, expected))
    return corpus


def actual_answer(text: str | bytes) -> Expected:
    """(error code or None for a result, id) of a response, or a list of them for a batch."""
    decoded = json.loads(text)
    if isinstance(decoded, list):
        return [(error_code(item), item.get("id")) for item in decoded]
    return (error_code(decoded), decoded.get("id"))


async def run_fuzz(cluster: Cluster, count: int, figures: Figures, seed: int) -> None:
    corpus = fuzz_corpus(seed, count)
    latencies: list[float] = []
    wrong: list[str] = []
    codes: dict[int, int] = {}
    closed_at: int | None = None
    async with websockets.connect(cluster.url(), max_size=None, open_timeout=10) as ws:
        for index, (frame, expected) in enumerate(corpus):
            started = time.monotonic()
            try:
                await ws.send(frame)
                reply = await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed:
                closed_at = index
                break
            except TimeoutError:  # later answers would be matched to the wrong frames: stop
                wrong.append(f"#{index} {frame[:80]!r}: expected {expected}, no answer in 5 s")
                break
            latencies.append(time.monotonic() - started)
            got = actual_answer(reply)
            for code, _ in expected if isinstance(expected, list) else [expected]:
                if code is not None:
                    codes[code] = codes.get(code, 0) + 1
            if got != expected:
                wrong.append(f"#{index} {frame[:80]!r}: expected {expected}, got {got}")
        if closed_at is None:
            await ws.send(_request(method="pid", params="[]", rpc_id='"last"'))
            last = json.loads(await asyncio.wait_for(ws.recv(), 5))
            still_serving = last.get("id") == "last" and "result" in last
        else:
            still_serving = False
    worker_alive = all(worker.alive for worker in cluster.workers)
    p99 = percentile(latencies, 99)
    # Latency is a figure here, not a target: on 2 shared cores a p99 bound would be flaky.
    measured = (
        f"N={count} (seed {seed}): {len(latencies) - len(wrong)}/{count} answered as JSON-RPC "
        f"2.0 and the README's policy say; codes {dict(sorted(codes.items()))}; closes "
        f"{0 if closed_at is None else 1}; p50 {ms(percentile(latencies, 50))}, p99 {ms(p99)}, "
        f"max {ms(max(latencies, default=math.nan))}; serving afterwards: {still_serving}"
    )
    print(f"\nT05: {measured}")
    if wrong:
        print("\n".join(wrong[:20]))
    figures.check(
        "T05",
        measured,
        socket_never_closed=closed_at is None,
        every_frame_answered=len(latencies) == count,
        every_answer_as_the_rules_say=not wrong,
        still_serving_afterwards=still_serving,
        worker_alive=worker_alive,
    )


async def test_t05_network_fuzz_1000_malformed_messages_on_one_socket(
    cluster_factory: ClusterFactory, figures: Figures
) -> None:
    await run_fuzz(cluster_factory(frontends=1, workers=1), 1_000, figures, seed=5)


@pytest.mark.long
@pytest.mark.timeout(300)
async def test_t05_long_network_fuzz_10000_malformed_messages_on_one_socket(
    cluster_factory: ClusterFactory, figures: Figures
) -> None:
    await run_fuzz(cluster_factory(frontends=1, workers=1), 10_000, figures, seed=50)


# ------------------------------------------------------------------------------------------------
# T15: per-connection in-flight limit


async def test_t15_in_flight_limit_answers_exactly_one_busy_then_accepts_again(
    cluster_factory: ClusterFactory, connect: Connect, figures: Figures
) -> None:
    limit = 32
    cluster = cluster_factory(frontends=0, workers=0)
    cluster.start_frontend(CHANNELS_RPC_OVERRIDES=json.dumps({"MAX_IN_FLIGHT": limit}))
    cluster.start_worker(concurrency=limit + 8)
    sock = await connect(cluster.url())
    sent: dict[Any, float] = {}
    for _ in range(limit + 1):
        sent[await sock.request("sleep", [1.0])] = time.monotonic()
    answers = await sock.wait_for(list(sent), timeout=10)
    busy = [i for i, a in answers.items() if error_code(a.response) == JsonRpcErrorCode.SERVER_BUSY]
    ok = [i for i, a in answers.items() if a.response.get("result") == 1.0]
    busy_after = [answers[i].at - sent[i] for i in busy]
    busy_data = answers[busy[0]].response["error"].get("data") if busy else None
    # Once the slow calls are answered, the connection takes a full window of calls again.
    again = [await sock.request("sleep", [0.05]) for _ in range(limit)]
    again_answers = await sock.wait_for(again, timeout=10)
    accepted_again = sum(1 for a in again_answers.values() if "result" in a.response)
    measured = (
        f"MAX_IN_FLIGHT={limit}, {limit + 1} calls of 1 s: {len(ok)} results, {len(busy)} x "
        f"-32010 (call #{list(sent).index(busy[0]) + 1 if busy else '-'}, answered after "
        f"{ms(busy_after[0]) if busy_after else '-'}, data {busy_data}); then "
        f"{accepted_again}/{limit} new calls accepted"
    )
    print(f"\nT15: {measured}")
    figures.check(
        "T15",
        measured,
        exactly_one_busy=len(busy) == 1,
        the_call_over_the_limit_is_the_one_refused=busy == [list(sent)[-1]],
        # At once: before any of the 1 s calls could have freed a slot.
        busy_answered_within_0_9_s=bool(busy_after) and busy_after[0] < 0.9,
        every_other_call_succeeded=len(ok) == limit,
        a_full_window_accepted_again=accepted_again == limit,
    )


# ------------------------------------------------------------------------------------------------
# T16: flood


FLOOD_COUNT = 20_000
FLOOD_RATE = 200  # RATE_LIMIT for the flood tests; bursts of twice that are allowed


def flood_frames(count: int, method: str = "abuse_nop") -> list[bytes]:
    pad = "x" * 900  # about 1 KB a frame
    return [
        rawws.build_frame(
            rawws.OP_TEXT,
            json.dumps({"jsonrpc": "2.0", "method": method, "params": [pad], "id": i}).encode(),
        )
        for i in range(count)
    ]


class Flood:
    """A client that writes ``frames`` as fast as it can and never answers the server's close."""

    def __init__(self, sock: RawWebSocket, frames: list[bytes]) -> None:
        self.sock = sock
        self.frames = frames
        self.sent_at: list[float] = []
        self.write_error: str | None = None

    async def run(self) -> rawws.Closed:
        reader = asyncio.create_task(self.sock.wait_closed(timeout=30))
        try:
            for index, frame in enumerate(self.frames):
                self.sock.writer.write(frame)
                self.sent_at.append(time.monotonic())
                if index % 50 == 49:
                    await self.sock.writer.drain()
                if reader.done():
                    break
            await self.sock.writer.drain()
        except ConnectionError as exc:
            self.write_error = type(exc).__name__
        closed = await reader
        self.sock.abort()
        return closed

    def exceeded_at(self, rate: float) -> float:
        """When the client first had more messages out than a full token bucket allows."""
        start = self.sent_at[0]
        for index, at in enumerate(self.sent_at):
            if index + 1 > 2 * rate + rate * (at - start):
                return at
        return self.sent_at[-1]


async def test_t16_flood_is_closed_4008_and_a_neighbour_keeps_being_served(
    cluster_factory: ClusterFactory, connect: Connect, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=0, workers=0)
    frontend = cluster.start_frontend(CHANNELS_RPC_OVERRIDES=json.dumps({"RATE_LIMIT": FLOOD_RATE}))
    cluster.start_worker()
    neighbour = await connect(cluster.url())
    # The neighbour keeps to half the rate limit, as a well-behaved client would.
    pace = 2 / FLOOD_RATE
    await call_latencies(neighbour, count=20, interval=pace)  # warm-up
    baseline = await call_latencies(neighbour, count=200, interval=pace)
    frames = flood_frames(FLOOD_COUNT)
    sock = await RawWebSocket.connect(HOST, cluster.ports[0])
    probes: list[tuple[float, float]] = []  # (sent, latency) of the neighbour's calls
    stop = asyncio.Event()

    failed: list[Any] = []

    async def probe() -> None:
        while not stop.is_set() and neighbour.open:
            started = time.monotonic()
            try:
                answer = await neighbour.call("pid", timeout=10)
            except AssertionError as exc:
                answer = {"unanswered": str(exc)}
            if "result" not in answer:
                failed.append(answer)
            probes.append((started, time.monotonic() - started))
            await asyncio.sleep(max(0.0, started + pace - time.monotonic()))

    rss_before = rss_mb(frontend.pid)
    prober = asyncio.create_task(probe())
    flood = Flood(sock, frames)
    with RssPeak(frontend.pid) as rss:
        closed = await flood.run()
        stop.set()
        await prober
    start, end = flood.sent_at[0], closed.eof_at or time.monotonic()
    during = [latency for sent, latency in probes if start <= sent <= end]
    exceeded = flood.exceeded_at(FLOOD_RATE)
    close_after = closed.close_frame.at - exceeded if closed.close_frame else math.inf
    answered = sum(1 for frame in closed.frames if frame.opcode == rawws.OP_TEXT)
    allowed = 2 * FLOOD_RATE + FLOOD_RATE * (
        (closed.close_frame.at if closed.close_frame else end) - start
    )
    ratio = percentile(during, 99) / percentile(baseline, 99)
    measured = (
        f"RATE_LIMIT {FLOOD_RATE}/s: {len(flood.sent_at)} x 1 KB sent in "
        f"{flood.sent_at[-1] - start:.2f} s; {closed.describe()}, close "
        f"{close_after:.2f} s after the client exceeded the rate (the front-end takes frames "
        f"as daphne reads them, so the frame that breaks the rate closes the socket; "
        f"{answered} answered, bucket budget {allowed:.0f}); "
        f"daphne RSS {rss_before:.1f} MB, peak +{rss.peak - rss_before:.1f} MB; neighbour p99 "
        f"{ms(percentile(baseline, 99))} before, {ms(percentile(during, 99))} during "
        f"({len(during)} calls, x{ratio:.1f}: daphne, the worker, Redis and the flooding "
        f"client share 2 cores, so a flood of 50 MB/s slows everyone), max "
        f"{ms(max(during, default=0))}, {len(failed)} failed"
    )
    print(f"\nT16: {measured}")
    figures.check(
        "T16",
        measured,
        closed_4008=closed.code == 4008,
        closed_within_1_s_of_exceeding_the_rate=close_after < 1.0,
        no_more_calls_than_the_bucket_holds=answered <= allowed + 1,
        neighbour_called_during_the_flood=during != [],
        neighbour_never_waited_2_s=max(during, default=math.inf) < 2.0,
        no_neighbour_call_failed=not failed,
    )


# The plan's target: < 20 MB. The front-end takes frames as daphne reads them
# (channels_rpc.flow.Inbox), so the rate limit closes the connection at the frame that breaks
# it, whatever the consumer is busy with. (Before that reader, daphne had queued the whole flood
# for the application by then: +30 MB, and the target was relaxed to 40 MB.)
async def test_t16_flood_memory_growth_of_daphne_is_bounded(
    cluster_factory: ClusterFactory, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=0, workers=0)
    frontend = cluster.start_frontend(CHANNELS_RPC_OVERRIDES=json.dumps({"RATE_LIMIT": FLOOD_RATE}))
    cluster.start_worker()
    frames = flood_frames(FLOOD_COUNT)
    sock = await RawWebSocket.connect(HOST, cluster.ports[0])
    before = rss_mb(frontend.pid)
    with RssPeak(frontend.pid) as rss:
        closed = await Flood(sock, frames).run()
    growth = rss.peak - before
    measured = f"memory: {closed.describe()}; daphne RSS peak +{growth:.1f} MB"
    print(f"\nT16: {measured}")
    figures.check(
        "T16", measured, closed_4008=closed.code == 4008, rss_growth_under_20_mb=growth < 20
    )


async def test_t16_answers_arriving_after_the_4008_close_do_not_crash_the_consumer(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, figures: Figures
) -> None:
    rate = 20
    cluster = cluster_factory(frontends=0, workers=0)
    frontend = cluster.start_frontend(CHANNELS_RPC_OVERRIDES=json.dumps({"RATE_LIMIT": rate}))
    cluster.start_worker(concurrency=2 * rate)
    mark = frontend.line_count()
    sock = await RawWebSocket.connect(HOST, cluster.ports[0])
    # A full bucket of calls answered 0.5 s later, all started, then more frames than the
    # bucket refills: closed 4008 at once (frames after the refused one are never dispatched,
    # so the calls must have started before). The client does not answer the close, so daphne
    # keeps the socket until autobahn's close handshake timeout, and the answers arrive
    # meanwhile. That timer (1 s) is quantized by txaio to the next whole second of the
    # reactor's clock (time.time()): start just after a second begins, so that the window is
    # ~1 s and not a random fraction of it.
    await asyncio.sleep(1.005 - time.time() % 1)
    hold = '["t16c", 0.5]'
    for rpc_id in range(2 * rate):
        await sock.send_text(_request(method="abuse_hold", params=hold, rpc_id=str(rpc_id)))
    await counter_reaches(counter(redis_client, cluster, "abuse:t16c:started"), 2 * rate, 10)
    for rpc_id in range(rate):  # more than the bucket refills meanwhile
        await sock.send_text(_request(method="abuse_hold", params=hold, rpc_id=f'"over{rpc_id}"'))
    closed = await sock.wait_closed(timeout=10)
    sock.abort()
    finished = counter(redis_client, cluster, "abuse:t16c:finally")
    await counter_reaches(finished, 2 * rate, timeout=10)
    await asyncio.to_thread(frontend.wait_for, r"WSDISCONNECT /ws/test/", 15, mark)
    checked = await daphne_checks(frontend, cluster.ports[0])  # a crash would be logged by now
    errors = log_errors(frontend, mark, checked)
    window = (closed.eof_at or math.nan) - (closed.close_frame.at if closed.close_frame else 0)
    measured = (
        f"answers arriving after the 4008 close ({closed.describe()} {window:.2f} s later): "
        f"daphne logged {len(errors)} traceback/ERROR lines once its checker had looked"
    )
    print(f"\nT16: {measured}")
    if errors:
        print("\n".join(errors[:5]))
    figures.check("T16", measured, closed_4008=closed.code == 4008, no_error_logged=not errors)


# ------------------------------------------------------------------------------------------------
# T17: size limits


async def test_t17_size_limits_error_below_daphnes_cap_and_drop_above_it(
    cluster_factory: ClusterFactory, figures: Figures
) -> None:
    limit = 256 * 1024
    cluster = cluster_factory(frontends=0, workers=0)
    frontend = cluster.start_frontend(
        CHANNELS_RPC_OVERRIDES=json.dumps({"MAX_MESSAGE_SIZE": limit})
    )
    cluster.start_worker()
    big = _request(method="abuse_nop", params='["' + "x" * (300 * 1024) + '"]', rpc_id="1")
    answers: list[Any] = []
    async with websockets.connect(cluster.url(), max_size=None, open_timeout=10) as ws:

        async def oversize() -> None:
            await ws.send(big)
            answers.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))

        for _ in range(5):  # warm-up: allocator pools reach their working size
            await oversize()
        before = rss_mb(frontend.pid)
        for _ in range(100):
            await oversize()
        after = rss_mb(frontend.pid)
        await ws.send(_request(method="pid", params="[]", rpc_id='"kept"'))
        kept = json.loads(await asyncio.wait_for(ws.recv(), 5))
    first = answers[0]
    right = sum(
        1
        for a in answers
        if error_code(a) == JsonRpcErrorCode.REQUEST_TOO_LARGE and a["id"] is None
    )
    # Above daphne's 1 MiB cap: one 2 MiB frame, and a 2 MiB message in 32 fragments.
    outcomes = {}
    for name, frames in {
        "2 MiB frame": [rawws.build_frame(rawws.OP_TEXT, b"x" * (2 << 20))],
        "2 MiB message in 64 KiB fragments": [
            rawws.build_frame(
                rawws.OP_TEXT if i == 0 else rawws.OP_CONTINUATION, b"x" * (64 << 10), fin=i == 31
            )
            for i in range(32)
        ],
    }.items():
        sock = await RawWebSocket.connect(HOST, cluster.ports[0])
        with contextlib.suppress(ConnectionError):
            for frame in frames:
                await sock.send_raw(frame)
        outcomes[name] = await sock.wait_closed(timeout=10)
        sock.abort()
    survivor = await RpcSocket.connect(cluster.url())
    alive = "result" in await survivor.call("pid")
    await survivor.close()
    dropped = all(closed.dropped or closed.code == 1009 for closed in outcomes.values())
    growth = after - before
    measured = (
        f"300 KiB with MAX_MESSAGE_SIZE 256 KiB: {right}/{len(answers)} answered "
        f"{error_code(first)} id {first['id']} (data {first['error'].get('data')}), socket kept: "
        f"{kept.get('id') == 'kept'}; RSS after 100 more: {growth:+.1f} MB; "
        + "; ".join(f"{name}: {closed.describe()}" for name, closed in outcomes.items())
        + f"; daphne serves afterwards: {alive}"
    )
    print(f"\nT17: {measured}")
    figures.check(
        "T17",
        measured,
        all_105_answered_32001_id_null=right == len(answers) == 105,
        socket_kept=kept.get("id") == "kept" and "result" in kept,
        over_1_mib_dropped=dropped,
        rss_within_5_mb=abs(growth) < 5,
        daphne_serves_afterwards=alive,
    )


# ------------------------------------------------------------------------------------------------
# T18: many idle connections


async def open_idle(url: str, count: int) -> list[ClientConnection]:
    gate = asyncio.Semaphore(50)

    async def one() -> ClientConnection:
        async with gate:
            return await websockets.connect(url, ping_interval=None, open_timeout=30)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def still_served(connections: list[ClientConnection]) -> int:
    """How many connections answer a call (an unknown method: the front-end answers itself)."""
    gate = asyncio.Semaphore(100)

    async def check(ws: ClientConnection) -> bool:
        async with gate:
            try:
                await ws.send(_request(params="[]", rpc_id="1"))
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            except (websockets.ConnectionClosed, TimeoutError):
                return False
            return error_code(reply) == JsonRpcErrorCode.METHOD_NOT_FOUND

    return sum(await asyncio.gather(*(check(ws) for ws in connections)))


async def close_all(connections: list[ClientConnection]) -> None:
    gate = asyncio.Semaphore(100)

    async def close(ws: ClientConnection) -> None:
        async with gate:
            await ws.close()

    await asyncio.gather(*(close(ws) for ws in connections))


async def disconnects_logged(frontend: Proc, port: int, count: int, timeout: float = 30) -> None:
    """Returns once daphne has logged ``count`` disconnects and reaped their applications."""

    async def logged() -> bool:
        lines = frontend.output().splitlines()
        return sum(1 for line in lines if "WSDISCONNECT" in line and NOWHERE not in line) >= count

    await wait_until(logged, timeout)
    await daphne_checks(frontend, port)


async def run_idle_connections(
    cluster_factory: ClusterFactory, figures: Figures, count: int
) -> None:
    with open_files(3 * count + 256):
        cluster = cluster_factory(frontends=0, workers=0)
        frontend = cluster.start_frontend(*PING)
        url = cluster.url()
        await close_all(await open_idle(url, 20))  # warm-up: imports, first connections
        await disconnects_logged(frontend, cluster.ports[0], 20)
        before = rss_mb(frontend.pid)
        opened = time.monotonic()
        connections = await open_idle(url, count)
        connect_time = time.monotonic() - opened
        # A raw client opened last sees the server's pings: when it has seen two, and the
        # pong timeout has passed since, every older connection has been through two periods.
        sentinel = await RawWebSocket.connect(HOST, cluster.ports[0])
        pings: list[float] = []
        while len(pings) < 2:
            frame = await sentinel.read_frame(timeout=15)
            assert frame is not None, "the sentinel connection was closed"
            if frame.opcode == rawws.OP_PING:
                pings.append(frame.at)
                await sentinel.send_frame(rawws.OP_PONG, frame.payload)
        await asyncio.sleep(3.5)  # ping timeout: a connection failing its pong is gone by now
        held = time.monotonic() - opened
        loaded = rss_mb(frontend.pid)
        served = await still_served(connections)
        sentinel.abort()
        await close_all(connections)
    per_connection = (loaded - before) * 1024 / count
    share = served / count
    measured = (
        f"{count} idle connections ({connect_time:.1f} s to open) held {held:.1f} s, pings every "
        f"{pings[1] - pings[0]:.1f} s (--ping-interval 2 --ping-timeout 3): {served}/{count} "
        f"still served ({share:.1%}); daphne RSS +{loaded - before:.1f} MB = "
        f"{per_connection:.1f} KB/connection"
    )
    print(f"\nT18: {measured}")
    figures.check(
        "T18",
        measured,
        at_least_99_9_percent_still_served=share >= 0.999,
        under_64_kb_per_connection=per_connection < 64,
    )


@pytest.mark.long  # two ping periods of 200 idle sockets, 12 s: make reliability
@pytest.mark.timeout(180)
async def test_t18_200_idle_connections_survive_two_ping_periods(
    cluster_factory: ClusterFactory, figures: Figures
) -> None:
    await run_idle_connections(cluster_factory, figures, 200)


@pytest.mark.long
@pytest.mark.timeout(600)
async def test_t18_long_1000_idle_connections_survive_two_ping_periods(
    cluster_factory: ClusterFactory, figures: Figures
) -> None:
    await run_idle_connections(cluster_factory, figures, 1000)


@pytest.mark.long  # 15 s of cycles: make reliability (T18 idle runs in make test)
@pytest.mark.timeout(180)
async def test_t18_connect_disconnect_cycles_do_not_grow_daphne(
    cluster_factory: ClusterFactory, figures: Figures
) -> None:
    count = 1000
    with open_files(3 * count + 256):
        cluster = cluster_factory(frontends=0, workers=0)
        frontend = cluster.start_frontend(*PING)
        url = cluster.url()
        total = 0
        for _ in range(2):  # warm-up: pools and allocator arenas reach their working size
            await close_all(await open_idle(url, count))
            total += count
            await disconnects_logged(frontend, cluster.ports[0], total)
        after_first = rss_mb(frontend.pid)
        growth = []
        for _ in range(3):
            await close_all(await open_idle(url, count))
            total += count
            await disconnects_logged(frontend, cluster.ports[0], total)
            growth.append(rss_mb(frontend.pid) - after_first)
    measured = (
        f"3 connect/disconnect cycles of {count} after 2 warm-up cycles: daphne RSS "
        + ", ".join(f"{g:+.1f}" for g in growth)
        + " MB (target < 2 MB)"
    )
    print(f"\nT18: {measured}")
    figures.check("T18", measured, last_cycle_grew_under_2_mb=growth[-1] < 2)


# ------------------------------------------------------------------------------------------------
# T19: dead peer

#: When daphne (--ping-interval 2 --ping-timeout 3) drops a silent peer, at the latest: its
#: timeout_checker runs every 2 s and pings connections idle for more than the interval.
DEAD_PEER_BOUND = 2 + 2 + 3
#: What the test allows on top: a scheduling margin for a busy 2-core machine.
DEAD_PEER_MARGIN = 0.5


async def test_t19_a_stopped_client_is_closed_by_pings_and_its_calls_cancelled(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=0, workers=0)
    frontend = cluster.start_frontend(*PING)
    cluster.start_worker()
    argv = [
        sys.executable, "-m", "tests.integration.reliability.rawws", "hold", cluster.url(),
        "abuse_hold", json.dumps(["t19", 10]), "5",
    ]  # fmt: skip
    client = Proc("t19-client", argv, cluster.env(), cluster.log_dir)
    try:
        await asyncio.to_thread(client.wait_for, r"^ready", 20)
        started = counter(redis_client, cluster, "abuse:t19:started")
        finished = counter(redis_client, cluster, "abuse:t19:finally")
        completed = counter(redis_client, cluster, "abuse:t19:completed")
        await counter_reaches(started, 5, timeout=10)
        mark = frontend.line_count()
        client.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        await asyncio.to_thread(frontend.wait_for, r"WSDISCONNECT", 15, mark)
        closed_after = time.monotonic() - stopped
        cancelled_after = await counter_reaches(finished, 5, timeout=10) + closed_after
        cancelled, done = await finished(), await completed()
    finally:
        client.send_signal(signal.SIGCONT)
        client.stop()
    errors = log_errors(frontend)
    measured = (
        f"client SIGSTOPped with 5 calls of 10 s running: daphne closed it {closed_after:.1f} s "
        f"later, {cancelled}/5 calls cancelled in the worker {cancelled_after:.1f} s after the "
        f"stop, {done} completed; daphne errors {len(errors)}. Bound: ping interval 2 s + "
        f"timeout 3 s + daphne's 2 s check period (it pings from a timer that runs every 2 s, "
        f"so the plan's < 6 s holds only when a check falls right after the last traffic) = "
        f"{DEAD_PEER_BOUND:.0f} s, + {DEAD_PEER_MARGIN} s of scheduling margin"
    )
    print(f"\nT19: {measured}")
    figures.check(
        "T19",
        measured,
        closed_within_the_bound=closed_after < DEAD_PEER_BOUND + DEAD_PEER_MARGIN,
        all_5_calls_cancelled=cancelled == 5,
        none_completed=done == 0,
        no_error_logged=not errors,
    )


# ------------------------------------------------------------------------------------------------
# T20: slow handshakes


class Trickle:
    """Sockets fed one byte a second: HTTP upgrade requests, or frames of upgraded sockets."""

    def __init__(self) -> None:
        self.streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]] = []
        self.position = 0
        self._task: asyncio.Task[None] | None = None

    async def add_handshakes(self, port: int, count: int) -> None:
        for _ in range(count):
            reader, writer = await asyncio.open_connection(HOST, port)
            request = rawws.upgrade_request("/ws/test/", f"{HOST}:{port}")
            self.streams.append((reader, writer, request))

    async def add_upgraded(self, port: int, count: int) -> None:
        for _ in range(count):
            sock = await RawWebSocket.connect(HOST, port)
            # A text frame announcing 64 KiB, of which one byte a second arrives.
            frame = rawws.build_frame(rawws.OP_TEXT, b"x" * 65536)
            self.streams.append((sock.reader, sock.writer, frame))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            for _, writer, data in self.streams:
                if self.position < len(data) and not writer.is_closing():
                    writer.write(data[self.position : self.position + 1])
            self.position += 1
            await asyncio.sleep(1.0)

    async def still_open(self) -> int:
        """How many sockets the server has not closed (a read sees EOF on a closed one)."""
        count = 0
        for reader, _, _ in self.streams:
            try:
                data = await asyncio.wait_for(reader.read(1), 0.01)
            except TimeoutError:
                count += 1
                continue
            except ConnectionError:
                continue
            count += bool(data)
        return count

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for _, writer, _ in self.streams:
            writer.transport.abort()


async def test_t20_slow_handshakes_and_stalled_frames_do_not_slow_normal_clients(
    cluster_factory: ClusterFactory, connect: Connect, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=1, workers=1)
    port = cluster.ports[0]
    normal = await connect(cluster.url())
    await call_latencies(normal, count=50)
    baseline = await call_latencies(normal, count=300)
    trickle = Trickle()
    try:
        await trickle.add_handshakes(port, 200)
        await trickle.add_upgraded(port, 50)
        trickle.start()
        attack_started = time.monotonic()
        failed: list[Any] = []
        during = await call_latencies(normal, duration=4.0, failures=failed)
        handshakes = []
        for _ in range(10):
            opened = time.monotonic()
            fresh = await RpcSocket.connect(cluster.url())
            handshakes.append(time.monotonic() - opened)
            await fresh.close()
        open_now = await trickle.still_open()
        lasted = time.monotonic() - attack_started
    finally:
        await trickle.stop()
    ratio = percentile(during, 99) / percentile(baseline, 99)
    measured = (
        f"200 upgrade requests trickled 1 byte/s + 50 upgraded sockets trickling a 64 KiB "
        f"frame: call p99 {ms(percentile(baseline, 99))} before, {ms(percentile(during, 99))} "
        f"during (x{ratio:.2f}, {len(during)} calls, {len(failed)} failed); new handshakes max "
        f"{ms(max(handshakes))}; after {lasted:.0f} s {open_now}/250 attack sockets still open "
        f"(Twisted's 60 s idle timeout restarts on every byte; see the long test)"
    )
    print(f"\nT20: {measured}")
    figures.check(
        "T20",
        measured,
        no_call_failed=not failed,
        p99_under_2x_the_baseline=ratio < 2,
        new_handshakes_under_1_s=max(handshakes) < 1,
    )


@pytest.mark.long
@pytest.mark.timeout(300)
async def test_t20_long_stalled_handshakes_are_closed_by_twisteds_idle_timeout(
    cluster_factory: ClusterFactory, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=1, workers=0)
    port = cluster.ports[0]
    stalled, trickled = Trickle(), Trickle()
    closed_at: dict[int, float] = {}
    try:
        await stalled.add_handshakes(port, 20)
        for _, writer, request in stalled.streams:  # half a request line, then silence
            writer.write(request[:10])
        await trickled.add_handshakes(port, 20)
        trickled.start()
        started = time.monotonic()
        while time.monotonic() - started < 80:
            for index, (reader, _, _) in enumerate(stalled.streams):
                if index not in closed_at and reader.at_eof():
                    closed_at[index] = time.monotonic() - started
                elif index not in closed_at:
                    with contextlib.suppress(TimeoutError, ConnectionError):
                        await asyncio.wait_for(reader.read(1024), 0.01)
            await asyncio.sleep(0.5)
        trickling_open = await trickled.still_open()
    finally:
        await stalled.stop()
        await trickled.stop()
    times = sorted(closed_at.values())
    measured = (
        f"stalled upgrade requests: {len(times)}/20 closed by daphne/Twisted, after "
        f"{times[0] if times else math.nan:.0f}-{times[-1] if times else math.nan:.0f} s "
        f"(Twisted idle timeout 60 s); trickled at 1 byte/s: {trickling_open}/20 still open "
        f"after 80 s (every byte restarts the timeout; only Twisted's 16 KiB header cap ends "
        f"them, ~4.5 h at this rate: a proxy must bound header time)"
    )
    print(f"\nT20: {measured}")
    figures.check(
        "T20",
        measured,
        all_20_stalled_closed=len(times) == 20,
        none_before_55_s=bool(times) and times[0] >= 55,
        all_by_70_s=bool(times) and times[-1] <= 70,
    )


# ------------------------------------------------------------------------------------------------
# T21: origin matrix against the reference project's stack


ORIGIN_CASES: list[tuple[str, bytes | None, set[int]]] = [
    ("exact allowed origin", ALLOWED_ORIGIN.encode(), {101}),
    ("missing Origin (non-browser client)", None, {101}),
    (
        "uppercase scheme and host (origins are case-insensitive)",
        b"HTTP://ALLOWED.TEST:8000",
        {101},
    ),
    ("other port", b"http://allowed.test:8001", {403}),
    ("default port", b"http://allowed.test", {403}),
    ("other scheme", b"https://allowed.test:8000", {403}),
    ("ws scheme", b"ws://allowed.test:8000", {403}),
    (
        "allowed origin as a prefix of another host",
        b"http://allowed.test:8000.evil.test",
        {400, 403},
    ),
    (
        "allowed origin in another origin's path",
        b"http://evil.test/http://allowed.test:8000",
        {403},
    ),
    ("allowed origin as userinfo", b"http://allowed.test:8000@evil.test", {403}),
    ("trailing dot", b"http://allowed.test.:8000", {403}),
    ("null", b"null", {403}),
    ("empty", b"", {400, 403}),
    ("\\x0b smuggling", b"http://allowed.test:8000\x0bhttp://evil.test", {400, 403}),
    ("\\x85 smuggling", b"http://evil.test\x85http://allowed.test:8000", {400, 403}),
    ("\\x0c smuggling", b"http://allowed.test:8000\x0c", {400, 403}),
]


async def test_t21_origin_matrix_admits_only_the_configured_full_origin(
    cluster_factory: ClusterFactory, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=0, workers=1)
    frontend = start_reference_frontend(cluster, RPC_ALLOWED_ORIGINS=ALLOWED_ORIGIN)
    port = cluster.ports[0]
    results: dict[str, int] = {}
    for name, origin, _ in ORIGIN_CASES:
        results[name] = (await handshake(port, "/ws/rpc/", origin=origin)).status
    # Two Origin headers: the first or the last may be the allowed one.
    for order in (
        (b"http://evil.test", ALLOWED_ORIGIN.encode()),
        (ALLOWED_ORIGIN.encode(), b"http://evil.test"),
    ):
        raw = b"".join(b"Origin: " + value + b"\r\n" for value in order)
        name = "two Origin headers, " + (
            "allowed last" if order[1] != b"http://evil.test" else "allowed first"
        )
        results[name] = (await handshake(port, "/ws/rpc/", raw_headers=raw)).status
    # The admitted origin really gets a working connection.
    async with websockets.connect(cluster.url("/ws/rpc/"), origin=Origin(ALLOWED_ORIGIN)) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1}))
        served = json.loads(await asyncio.wait_for(ws.recv(), 10)).get("result") == 3
    expected = {name: allowed for name, _, allowed in ORIGIN_CASES}
    expected["two Origin headers, allowed last"] = {400, 403}
    expected["two Origin headers, allowed first"] = {400, 403}
    wrong = {name: status for name, status in results.items() if status not in expected[name]}
    errors = log_errors(frontend)
    # Every refusal happened before the application accepted: daphne logged one WSCONNECT per
    # 101 above, plus the working connection.
    admitted = sum(1 for status in results.values() if status == 101) + 1
    accepted = frontend.output().count('"WSCONNECT ')
    measured = (
        f"RPC_ALLOWED_ORIGINS={ALLOWED_ORIGIN}: "
        + ", ".join(f"{name} -> {status}" for name, status in results.items())
        + f"; admitted socket serves calls: {served}; connections accepted {accepted} "
        f"(= the {admitted} admitted); daphne errors {len(errors)}"
    )
    print(f"\nT21: {measured}")
    figures.check(
        "T21",
        measured,
        every_origin_answered_as_expected=not wrong,
        admitted_socket_serves=served,
        only_admitted_connections_accepted=accepted == admitted,
        no_error_logged=not errors,
    )


# ------------------------------------------------------------------------------------------------
# T22: authentication and authorization


def adopt(ws: ClientConnection) -> RpcSocket:
    """An RpcSocket around a connection opened with custom headers (RpcSocket.connect sets none)."""
    sock = RpcSocket(ws)
    sock._reader = asyncio.get_running_loop().create_task(sock._read())
    return sock


SESSIONS_SCRIPT = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.models import Permission
from django.contrib.sessions.backends.db import SessionStore

users = {}
for name, may_view_users in (("t22-alice", False), ("t22-bob", True)):
    user, _ = get_user_model()._default_manager.get_or_create(username=name)
    if may_view_users:
        user.user_permissions.add(
            Permission.objects.get(codename="view_user", content_type__app_label="auth")
        )
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    users[name] = {"pk": str(user.pk), "session": session.session_key}
print(json.dumps(users))
"""


async def test_t22_handshake_authentication_and_credential_expiry(
    cluster_factory: ClusterFactory, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=0, workers=1)
    frontend = start_reference_frontend(
        cluster, RPC_ALLOWED_ORIGINS=ALLOWED_ORIGIN, RPC_REQUIRE_AUTH="1"
    )
    port = cluster.ports[0]
    token, _ = await asyncio.to_thread(mint_token, cluster, "t22-carol", 600)
    bearer = [("Authorization", f"Bearer {token}")]
    stale, _ = await asyncio.to_thread(mint_token, cluster, "t22-carol", 0)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    users = json.loads(
        (await asyncio.to_thread(manage, cluster, "shell", "-c", SESSIONS_SCRIPT)).splitlines()[-1]
    )
    cookie = [("Cookie", f"sessionid={users['t22-alice']['session']}")]
    statuses = {
        "no credentials": await handshake(port, "/ws/rpc/"),
        "no credentials, allowed Origin": await handshake(port, "/ws/rpc/", origin=ALLOWED_ORIGIN),
        "forged token": await handshake(
            port, "/ws/rpc/", headers=[("Authorization", f"Bearer {forged}")]
        ),
        "expired token": await handshake(
            port, "/ws/rpc/", headers=[("Authorization", f"Bearer {stale}")]
        ),
        "token + foreign Origin (CSWSH)": await handshake(
            port, "/ws/rpc/", origin="http://evil.test", headers=bearer
        ),
        "session cookie + foreign Origin (CSWSH)": await handshake(
            port, "/ws/rpc/", origin="http://evil.test", headers=cookie
        ),
        "session cookie + allowed Origin": await handshake(
            port, "/ws/rpc/", origin=ALLOWED_ORIGIN, headers=cookie
        ),
        "Authorization header": await handshake(port, "/ws/rpc/", headers=bearer),
        "bearer.<token> subprotocol + jsonrpc": await handshake(
            port, "/ws/rpc/", subprotocols=["jsonrpc", f"bearer.{token}"]
        ),
    }
    chosen = statuses["bearer.<token> subprotocol + jsonrpc"].header("Sec-WebSocket-Protocol")
    # A token that lives 2 s: accepted, serves a call; at expiry the server closes the socket
    # with 4001, and nothing more is answered (a call racing the close gets -32013).
    short, expires = await asyncio.to_thread(mint_token, cluster, "t22-carol", 2)
    async with websockets.connect(
        cluster.url("/ws/rpc/"), additional_headers=[("Authorization", f"Bearer {short}")]
    ) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1}))
        before_expiry = json.loads(await asyncio.wait_for(ws.recv(), 10))
        after: list[Any] = []
        with contextlib.suppress(websockets.ConnectionClosed):
            await asyncio.sleep(max(0.0, expires - time.time()) + 0.1)  # the token's lifetime
            await ws.send(
                json.dumps({"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 2})
            )
            after.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        await asyncio.wait_for(ws.wait_closed(), 10)
        close_code = ws.close_code
    after_expiry = after[0] if after else {}
    refused_after = not after or error_code(after_expiry) == JsonRpcErrorCode.UNAUTHORIZED
    expected = {
        "no credentials": 403,
        "no credentials, allowed Origin": 403,
        "forged token": 403,
        "expired token": 403,
        "token + foreign Origin (CSWSH)": 403,
        "session cookie + foreign Origin (CSWSH)": 403,
        "session cookie + allowed Origin": 101,
        "Authorization header": 101,
        "bearer.<token> subprotocol + jsonrpc": 101,
    }
    wrong = {k: r.status for k, r in statuses.items() if r.status != expected[k]}
    errors = log_errors(frontend)
    measured = (
        "RPC_REQUIRE_AUTH=1: "
        + ", ".join(f"{name} -> {response.status}" for name, response in statuses.items())
        + f" (subprotocol chosen: {chosen}); 2 s token: call before expiry "
        f"{before_expiry.get('result')}, after expiry "
        f"{error_code(after_expiry) if after else 'no answer (already closed)'}, close "
        f"{close_code}; daphne errors {len(errors)}"
    )
    print(f"\nT22: {measured}")
    figures.check(
        "T22",
        measured,
        every_handshake_answered_as_expected=not wrong,
        jsonrpc_subprotocol_chosen=chosen == "jsonrpc",
        served_before_expiry=before_expiry.get("result") == 3,
        refused_after_expiry=refused_after and (not after or after_expiry.get("id") == 2),
        closed_4001=close_code == 4001,
        no_error_logged=not errors,
    )


async def test_t22_forbidden_calls_never_run_and_clients_cannot_claim_an_identity(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=1, workers=1)
    users = json.loads(
        (await asyncio.to_thread(manage, cluster, "shell", "-c", SESSIONS_SCRIPT)).splitlines()[-1]
    )
    alice, bob = users["t22-alice"], users["t22-bob"]

    async def session_socket(user: dict[str, str] | None, query: str = "") -> RpcSocket:
        headers = [("Cookie", f"sessionid={user['session']}")] if user else []
        ws = await websockets.connect(
            cluster.url() + query, additional_headers=headers, max_size=None
        )
        return adopt(ws)

    anonymous = await session_socket(None)
    as_alice = await session_socket(alice, "?user=t22-bob&user_id=" + bob["pk"])
    as_bob = await session_socket(bob)
    try:
        denied: dict[str, list[Any]] = {}
        for name, sock in (("anonymous", anonymous), ("alice (no permission)", as_alice)):
            ids = [await sock.request("abuse_protected", [name]) for _ in range(100)]
            answers = await sock.wait_for(ids, timeout=20)
            denied[name] = [error_code(a.response) for a in answers.values()]
        allowed = await as_bob.call("abuse_protected", ["bob"])
        ran = {
            name: int(await redis_client.get(cluster.counter_key(f"abuse:protected:{name}")) or 0)
            for name in ("anonymous", "alice (no permission)", "bob")
        }
        unknown = await anonymous.call("abuse_no_such_method")
        claims = {"user": {"pk": bob["pk"]}, "scope": {"user": {"pk": bob["pk"]}}, "pk": bob["pk"]}
        who_alice = (await as_alice.call("abuse_whoami", claims)).get("result") or {}
        who_anonymous = (await anonymous.call("abuse_whoami", claims)).get("result") or {}
        # Extra members of the request object itself are ignored too.
        smuggled = {
            "jsonrpc": "2.0", "method": "abuse_whoami", "id": "smuggled",
            "user": {"pk": bob["pk"]}, "scope": {"user": {"pk": bob["pk"]}},
        }  # fmt: skip
        await anonymous.send(smuggled)
        answer = (await anonymous.wait_for(["smuggled"]))["smuggled"].response
        who_smuggled = answer.get("result") or {}
    finally:
        for sock in (anonymous, as_alice, as_bob):
            await sock.close()
    refused = {
        name: codes.count(JsonRpcErrorCode.METHOD_NOT_FOUND) for name, codes in denied.items()
    }
    same_as_unknown = error_code(unknown) == JsonRpcErrorCode.METHOD_NOT_FOUND
    identities = {
        "alice claiming bob": (who_alice.get("username"), who_alice.get("pk")),
        "anonymous claiming bob": (who_anonymous.get("authenticated"), who_anonymous.get("pk")),
        "anonymous, bob in extra request members": (
            who_smuggled.get("authenticated"),
            who_smuggled.get("pk"),
        ),
    }
    measured = (
        f"100 forbidden calls each: {refused} answered -32601 (like an unknown method: "
        f"{same_as_unknown}), executions {ran['anonymous']} anonymous / "
        f"{ran['alice (no permission)']} alice; control: bob (auth.view_user) "
        f"{allowed.get('result')!r}, ran {ran['bob']}x; principals seen by the worker: "
        f"{identities}"
    )
    print(f"\nT22: {measured}")
    figures.check(
        "T22",
        measured,
        every_forbidden_call_refused=refused == {"anonymous": 100, "alice (no permission)": 100},
        only_bobs_call_ran=ran == {"anonymous": 0, "alice (no permission)": 0, "bob": 1},
        alice_stays_alice=(who_alice.get("username"), who_alice.get("pk"))
        == ("t22-alice", alice["pk"]),
        anonymous_stays_anonymous=(who_anonymous.get("authenticated"), who_anonymous.get("pk"))
        == (False, None),
        extra_request_members_claim_nothing=who_smuggled.get("authenticated") is False,
    )


async def test_t22_an_idle_connection_is_closed_when_its_credentials_expire(
    cluster_factory: ClusterFactory, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=0, workers=1)
    start_reference_frontend(cluster, RPC_ALLOWED_ORIGINS=ALLOWED_ORIGIN, RPC_REQUIRE_AUTH="1")
    short, expires = await asyncio.to_thread(mint_token, cluster, "t22-dave", 2)
    long_lived, _ = await asyncio.to_thread(mint_token, cluster, "t22-erin", 600)
    url = cluster.url("/ws/rpc/")
    async with (
        websockets.connect(url, additional_headers=[("Authorization", f"Bearer {short}")]) as idle,
        websockets.connect(
            url, additional_headers=[("Authorization", f"Bearer {long_lived}")]
        ) as publisher,
    ):
        await idle.send(
            json.dumps({"jsonrpc": "2.0", "method": "subscribe", "params": ["t22"], "id": 1})
        )
        assert json.loads(await asyncio.wait_for(idle.recv(), 10)).get("result") == "t22"
        await asyncio.sleep(max(0.0, expires - time.time()) + 0.5)  # the token's lifetime
        await publisher.send(
            json.dumps(
                {"jsonrpc": "2.0", "method": "publish", "params": ["t22", "after expiry"], "id": 1}
            )
        )
        await asyncio.wait_for(publisher.recv(), 10)
        pushed: list[Any] = []
        with contextlib.suppress(TimeoutError, websockets.ConnectionClosed):
            pushed.append(json.loads(await asyncio.wait_for(idle.recv(), 2)))
        code = idle.close_code
    measured = (
        f"idle connection 0.5 s past its token's expiry: close code {code}, "
        f"{len(pushed)} push(es) received after expiry"
    )
    print(f"\nT22: {measured}")
    figures.check("T22", measured, nothing_pushed_after_expiry=not pushed, closed_4001=code == 4001)


#: RFC 6455 4.1: each subprotocol is an RFC 2616 token; browsers throw a SyntaxError otherwise.
TOKEN_CHARS = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


async def test_t22_bearer_tokens_are_valid_websocket_subprotocols(
    cluster_factory: ClusterFactory, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=0, workers=0)
    token, _ = await asyncio.to_thread(mint_token, cluster, "t22-frank", 600)
    subprotocol = f"bearer.{token}"
    bad = sorted({char for char in subprotocol if not TOKEN_CHARS.fullmatch(char)})
    measured = f"'bearer.<token>' subprotocol: characters outside RFC 6455 tokens: {bad}"
    print(f"\nT22: {measured}")
    figures.check("T22", measured, subprotocol_is_a_token=bool(TOKEN_CHARS.fullmatch(subprotocol)))


# ------------------------------------------------------------------------------------------------
# T23: a client leaves with calls in flight


async def test_t23_disconnect_with_50_calls_in_flight_cancels_and_skips_them_quietly(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, connect: Connect, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=1, workers=1, concurrency=10)
    frontend, worker = cluster.frontends[0], cluster.workers[0]
    sock = await connect(cluster.url())
    for _ in range(50):
        await sock.request("abuse_hold", ["t23", 30])
    started = counter(redis_client, cluster, "abuse:t23:started")
    finished = counter(redis_client, cluster, "abuse:t23:finally")
    completed = counter(redis_client, cluster, "abuse:t23:completed")
    await counter_reaches(started, 10, timeout=10)
    queue_key = f"{cluster.prefix}rpc.default"

    async def forty_queued() -> bool:  # the front-end may still be enqueueing the last ones
        return int(await redis_client.zcard(queue_key)) >= 40

    with contextlib.suppress(AssertionError):  # the check below says how many were queued
        await wait_until(forty_queued, timeout=10)
    queued_before = await redis_client.zcard(queue_key)
    closed = time.monotonic()
    await sock.close()
    cancelled_after = await counter_reaches(finished, 10, timeout=10)

    async def withdrawn() -> bool:
        return int(await redis_client.zcard(queue_key)) == 0

    with contextlib.suppress(AssertionError):  # the checks below say what is left
        await wait_until(withdrawn, timeout=10)
    queued_after = await redis_client.zcard(queue_key)
    # The worker now has 10 free slots. A call of another connection, queued behind anything
    # it may have taken already, ends once the worker has started or skipped all of that.
    other = await connect(cluster.url())
    marker: dict[str, Any] = {}
    with contextlib.suppress(AssertionError):  # unanswered: a check below says so
        marker = await other.call("abuse_hold", ["t23-marker", 0], timeout=10)
    ran, cancelled, done = await started(), await finished(), await completed()
    waited = time.monotonic() - closed
    errors = log_errors(frontend) + log_errors(worker)
    measured = (
        f"50 calls (10 running, {queued_before} queued) when the client closed: running ones "
        f"cancelled within {cancelled_after:.2f} s ({cancelled}/10 finally blocks), "
        f"{ran - 10} of the {queued_before} queued started before another client's call, "
        f"queued after them, was answered ({waited:.1f} s after the close), {queued_after} "
        f"left in Redis, "
        f"{done} completed; Traceback/ERROR lines: {len(errors)}"
    )
    print(f"\nT23: {measured}")
    figures.check(
        "T23",
        measured,
        forty_were_queued=queued_before == 40,
        all_10_running_cancelled=cancelled == 10,
        no_queued_call_started=ran == 10,
        nothing_left_queued=queued_after == 0,
        none_completed=done == 0,
        later_calls_served=marker.get("result") == "completed",
        no_error_logged=not errors,
    )


# ------------------------------------------------------------------------------------------------
# T25: correlation


@pytest.mark.timeout(180)
async def test_t25_same_ids_on_10_connections_are_never_crossed(
    cluster_factory: ClusterFactory, connect: Connect, figures: Figures
) -> None:
    connections, calls = 10, 1000
    cluster = cluster_factory(frontends=0, workers=0)
    cluster.start_frontend(
        CHANNELS_RPC_OVERRIDES=json.dumps({"MAX_IN_FLIGHT": 2 * calls}),
        CHANNEL_LAYER_OVERRIDES=json.dumps(
            {"channel_capacity": {"rpc.*": 4 * connections * calls, "specific.*": 50_000}}
        ),
    )
    for _ in range(2):
        cluster.start_worker(concurrency=64)
    sockets = [await connect(cluster.url()) for _ in range(connections)]
    ids = list(range(1, calls + 1))
    started = time.monotonic()

    async def fire(number: int, sock: RpcSocket) -> None:
        for rpc_id in ids:
            await sock.request("abuse_tag", [number], rpc_id=rpc_id)

    await asyncio.gather(*(fire(number, sock) for number, sock in enumerate(sockets)))
    await asyncio.gather(*(sock.wait_for(ids, timeout=120) for sock in sockets))
    elapsed = time.monotonic() - started
    misrouted = duplicated = missing = failed = 0
    for number, sock in enumerate(sockets):
        seen: dict[Any, int] = {}
        for frame in sock.frames:
            for item in frame if isinstance(frame, list) else [frame]:
                if "method" in item:
                    continue
                seen[item["id"]] = seen.get(item["id"], 0) + 1
                if "result" not in item:
                    failed += 1
                elif item["result"] != [number, item["id"]]:
                    misrouted += 1
        duplicated += sum(count - 1 for count in seen.values() if count > 1)
        missing += sum(1 for rpc_id in ids if rpc_id not in seen)
    total = connections * calls
    measured = (
        f"{connections} connections x {calls} concurrent calls, ids 1..{calls} on each: "
        f"{total - missing}/{total} answered in {elapsed:.1f} s; misrouted {misrouted}, "
        f"duplicated {duplicated}, missing {missing}, errors {failed}"
    )
    print(f"\nT25: {measured}")
    figures.check(
        "T25",
        measured,
        none_misrouted=misrouted == 0,
        none_duplicated=duplicated == 0,
        none_missing=missing == 0,
        no_errors=failed == 0,
    )


# ------------------------------------------------------------------------------------------------
# T27: RFC 6455 subset on a raw socket


VIOLATIONS: list[tuple[str, str, bytes]] = [
    # name, what RFC 6455 asks for, the frame
    (
        "invalid UTF-8 in a text frame",
        "1007",
        rawws.build_frame(rawws.OP_TEXT, b'{"a":"\xff\xfe"}'),
    ),
    ("unmasked client frame", "1002", rawws.build_frame(rawws.OP_TEXT, b"{}", mask=False)),
    ("reserved bit RSV1 set", "1002", rawws.build_frame(rawws.OP_TEXT, b"{}", rsv=4)),
    ("reserved bits RSV2+RSV3 set", "1002", rawws.build_frame(rawws.OP_TEXT, b"{}", rsv=3)),
    ("unknown data opcode 0x3", "1002", rawws.build_frame(0x3, b"{}")),
    ("unknown control opcode 0xB", "1002", rawws.build_frame(0xB, b"")),
    ("fragmented ping", "1002", rawws.build_frame(rawws.OP_PING, b"x", fin=False)),
    ("ping with a 126-byte payload", "1002", rawws.build_frame(rawws.OP_PING, b"x" * 126)),
    ("continuation without a start", "1002", rawws.build_frame(rawws.OP_CONTINUATION, b"{}")),
    (
        "close with invalid code 999",
        "1002",
        rawws.build_frame(rawws.OP_CLOSE, rawws.close_payload(999)),
    ),
    ("close with a 1-byte payload", "1002", rawws.build_frame(rawws.OP_CLOSE, b"\x03")),
]


async def test_t27_rfc6455_subset_on_a_raw_socket(
    cluster_factory: ClusterFactory, figures: Figures
) -> None:
    cluster = cluster_factory(frontends=1, workers=0)
    frontend, port = cluster.frontends[0], cluster.ports[0]
    outcomes: dict[str, rawws.Closed] = {}
    answered: dict[str, int] = {}
    slowest_drop = 0.0
    for name, _, violation in VIOLATIONS:
        sock = await RawWebSocket.connect(HOST, port)
        sent = time.monotonic()
        await sock.send_raw(violation)
        closed = await sock.wait_closed(timeout=5)
        sock.abort()
        outcomes[name] = closed
        answered[name] = sum(1 for f in closed.frames if f.opcode == rawws.OP_TEXT)
        ended = closed.eof_at or (closed.close_frame.at if closed.close_frame else math.inf)
        slowest_drop = max(slowest_drop, ended - sent)
    # Ping, fragmentation with a ping in between, binary frames, and the close handshake.
    sock = await RawWebSocket.connect(HOST, port)
    pong_times = []
    pong_ok = True
    for index in range(20):
        payload = f"ping-{index}".encode()
        sent = time.monotonic()
        await sock.ping(payload)
        frame = await sock.read_frame(timeout=2)
        pong_ok = pong_ok and frame is not None and frame.opcode == rawws.OP_PONG
        pong_ok = pong_ok and frame is not None and frame.payload == payload
        pong_times.append((frame.at if frame else math.inf) - sent)
    request = _request(params="[]", rpc_id="7").encode()
    await sock.send_frame(rawws.OP_TEXT, request[:10], fin=False)
    await sock.ping(b"between")
    await sock.send_frame(rawws.OP_CONTINUATION, request[10:20], fin=False)
    await sock.send_frame(rawws.OP_CONTINUATION, request[20:])
    interleaved = [await sock.read_frame(timeout=5) for _ in range(2)]
    fragments_ok = (
        interleaved[0] is not None
        and interleaved[0].opcode == rawws.OP_PONG
        and interleaved[0].payload == b"between"
        and interleaved[1] is not None
        and error_code(json.loads(interleaved[1].payload)) == JsonRpcErrorCode.METHOD_NOT_FOUND
    )
    await sock.send_frame(rawws.OP_BINARY, b"\xff\xfe")
    binary = await sock.read_frame(timeout=5)
    binary_code = error_code(json.loads(binary.payload)) if binary else None
    unmasked_server = all(not f.masked for f in interleaved if f is not None)
    sent = time.monotonic()
    await sock.close(1000, "bye")
    closing = await sock.wait_closed(timeout=5)
    sock.abort()
    survivor = await RpcSocket.connect(cluster.url())
    alive = error_code(await survivor.call("abuse_missing")) == JsonRpcErrorCode.METHOD_NOT_FOUND
    await survivor.close()
    errors = log_errors(frontend)
    # The pong's latency is a figure: on 2 shared cores a 100 ms bound would be flaky. Each
    # ping must be answered (within read_frame's 2 s) with its own payload.
    pong_p99 = percentile(pong_times, 99)
    measured = (
        "; ".join(
            f"{name} (RFC: {rfc}): {outcomes[name].describe()}" for name, rfc, _ in VIOLATIONS
        )
        + f" [autobahn's failByDrop: daphne drops the TCP connection instead of sending "
        f"1002/1007 (slowest drop {ms(slowest_drop)}), and the application never sees the "
        f"frame: {sum(answered.values())} answers]; ping -> pong with the same payload, "
        f"p99 {ms(pong_p99)}; fragmented text "
        f"with a ping between fragments answered: {fragments_ok}; binary non-UTF-8 -> "
        f"{binary_code}; close 1000 -> {closing.describe()} after "
        f"{ms((closing.close_frame.at if closing.close_frame else math.inf) - sent)}; "
        f"server frames unmasked: {unmasked_server}; daphne serves afterwards: {alive}; "
        f"errors logged {len(errors)}"
    )
    print(f"\nT27: {measured}")
    figures.check(
        "T27",
        measured,
        every_violation_closed_or_dropped=all(
            closed.dropped or closed.code in (1002, 1007) for closed in outcomes.values()
        ),
        dropped_within_1_s=slowest_drop < 1,
        no_violating_frame_answered=not any(answered.values()),
        every_ping_ponged_with_its_payload=pong_ok,
        fragments_around_a_ping_answered=fragments_ok,
        binary_non_utf8_answered_32700=binary_code == JsonRpcErrorCode.PARSE_ERROR,
        close_1000_echoed_then_tcp_closed=closing.code == 1000 and closing.eof_at is not None,
        server_frames_unmasked=unmasked_server,
        daphne_serves_afterwards=alive,
        no_error_logged=not errors,
    )
