"""JSON-RPC vectors: read from the .rpc files here, run against any connection, checked by policy.

Each vector is one fresh connection: its frames are sent, its answers awaited, then a probe call
must be answered next (so no vector may close the connection or leave a stray answer behind).
A batch's answers must come in request order (the README's promise; the spec allows any). The
notifications a vector names on ``ran:`` lines must have run, once each, and no other spec
notification may have: silence alone cannot tell a notification that ran from a dropped one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

HERE = Path(__file__).parent
PROBE = '{"jsonrpc": "2.0", "method": "subtract", "params": [10, 3], "id": "probe"}'
PROBE_ANSWER = {"jsonrpc": "2.0", "result": 7, "id": "probe"}
#: The spec notifications of tests/project/consumers.py, each counting its runs under its name.
NOTIFICATIONS = ("update", "notify_hello", "notify_sum")


@dataclass(frozen=True)
class Vector:
    id: str
    name: str
    frames: tuple[str | bytes, ...]
    expected: tuple[Any, ...]  # decoded answers; empty: none may arrive
    ran: tuple[str, ...] = ()  # the NOTIFICATIONS that must run (with repeats); others must not


class Connection(Protocol):
    async def send(self, frame: str | bytes) -> None: ...

    async def receive(self, timeout: float) -> str: ...

    async def silent(self, timeout: float) -> bool:
        """True if nothing arrives within ``timeout``."""

    async def ran(self, notification: str) -> int:
        """How many times ``notification`` has run so far, wherever methods run."""


def _parse_file(path: Path) -> Iterator[Vector]:
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        lines = [line for line in block.splitlines() if line]
        head = [line for line in lines if line.startswith("// ")]
        if not any(line.startswith("-->") for line in lines):
            continue
        vector_id, _, name = head[-1][3:].partition(" ")
        frames: list[str | bytes] = []
        expected: list[Any] = []
        ran: list[str] = []
        for line in lines:
            if line.startswith("-->b "):
                frames.append(line[5:].encode())
            elif line.startswith("-->"):
                frames.append(line[4:])
            elif line.startswith("<-- ") and line != "<-- (none)":
                expected.append(json.loads(line[4:]))
            elif line.startswith("ran: "):
                ran.extend(line[5:].split())
        assert set(ran) <= set(NOTIFICATIONS), f"{vector_id}: no counter for {ran}"
        yield Vector(vector_id, name, tuple(frames), tuple(expected), tuple(ran))


def _request(method: str, params: Any, rpc_id: Any = 1) -> str:
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": rpc_id})


def _too_large(limit_type: str, rpc_id: Any = None) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": rpc_id,
        "error": {"code": -32001, "data_limit_type": limit_type},
    }


def _generated() -> Iterator[Vector]:
    """Vectors too large (or too regular) to write out."""
    yield Vector(
        "E14", "100000 nested arrays: refused by the depth scan, never a RecursionError",
        ("[" * 100_000 + "]" * 100_000,), (_too_large("nesting_depth"),),
    )  # fmt: skip
    yield Vector(
        "E15", "a 5000-digit integer is a parse error",
        ('{"jsonrpc": "2.0", "method": "subtract", "params": [' + "9" * 5000 + ', 1], "id": 1}',),
        ({"jsonrpc": "2.0", "id": None, "error": {"code": -32700}},),
    )  # fmt: skip
    yield Vector(
        "E24", "a 600 KiB message, over MAX_MESSAGE_SIZE (512 KiB) and under daphne's 1 MiB",
        (_request("subtract", ["x" * 600 * 1024, 1]),), (_too_large("message_size"),),
    )  # fmt: skip
    yield Vector(
        "E25", "a 10 KB method name is refused without being echoed",
        (_request("m" * 10_000, []),), (_too_large("method_name_length", 1),),
    )  # fmt: skip
    yield Vector(
        "P06", "a batch over MAX_BATCH_SIZE (100) is refused as a whole",
        ("[" + ",".join([_request("subtract", [1, 1], i) for i in range(101)]) + "]",),
        (_too_large("batch_size"),),
    )  # fmt: skip
    nested: Any = 1
    for _ in range(21):
        nested = [nested]
    yield Vector(
        "P07", "params nested 21 deep break MAX_NESTING_DEPTH (20)",
        (_request("subtract", nested),), (_too_large("nesting_depth", 1),),
    )  # fmt: skip


def load() -> list[Vector]:
    vectors = [v for name in ("spec.rpc", "edge.rpc") for v in _parse_file(HERE / name)]
    return [*vectors, *_generated()]


def check(expected: Any, actual: Any) -> None:
    """Assert ``actual`` answers as ``expected`` says (arrays in request order)."""
    if isinstance(expected, list):
        assert isinstance(actual, list), f"expected an array, got {actual!r}"
        assert len(actual) == len(expected), f"expected {len(expected)} answers, got {actual!r}"
        for position, (want, got) in enumerate(zip(expected, actual, strict=True)):
            assert _matches(want, got), f"answer {position}: expected {want!r} in {actual!r}"
        return
    assert _matches(expected, actual), f"expected {expected!r}, got {actual!r}"


def _matches(expected: dict[str, Any], actual: Any) -> bool:
    if not isinstance(actual, dict) or actual.get("jsonrpc") != "2.0":
        return False
    if json.dumps(actual.get("id")) != json.dumps(expected["id"]):
        return False
    if "result" in expected:
        return "error" not in actual and actual.get("result") == expected["result"]
    error, want = actual.get("error") or {}, expected["error"]
    if "result" in actual or error.get("code") != want["code"]:
        return False
    if "data" in want and error.get("data") != want["data"]:
        return False
    limit_type = want.get("data_limit_type")
    return limit_type is None or (error.get("data") or {}).get("limit_type") == limit_type


async def run(vector: Vector, connection: Connection) -> None:
    """Send the vector's frames, check its answers, then check the connection still serves.

    Then check the notifications it names ran, and no other: the wanted ones are waited for
    (they run in the background); one that should not have run and did is seen if it ran
    before the probe was answered, and otherwise counts against the next vector's run.
    """
    before = await _notifications_run(connection)
    for frame in vector.frames:
        await connection.send(frame)
    for expected in vector.expected:
        check(expected, json.loads(await connection.receive(timeout=10)))
    await connection.send(PROBE)
    assert json.loads(await connection.receive(timeout=10)) == PROBE_ANSWER
    assert await connection.silent(0.05), "an unexpected frame arrived after the probe"
    await _check_notifications(vector, connection, before)


async def _notifications_run(connection: Connection) -> Counter[str]:
    return Counter({name: await connection.ran(name) for name in NOTIFICATIONS})


async def _check_notifications(
    vector: Vector, connection: Connection, before: Counter[str], timeout: float = 10.0
) -> None:
    wanted = Counter(vector.ran)
    deadline = time.monotonic() + timeout
    while True:
        ran = await _notifications_run(connection) - before
        if ran == wanted or time.monotonic() > deadline or any(ran[n] > wanted[n] for n in ran):
            break
        await asyncio.sleep(0.02)
    assert ran == wanted, f"notifications run: {dict(ran)}, expected {dict(wanted)}"
