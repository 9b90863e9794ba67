"""OpenTelemetry across the hop, with real processes: the client's trace, the front-end's span,
the worker's queue wait and run, all one trace (channels_rpc/tracing.py, docs/guides/tracing.md).

Each process writes its ended spans to a file (tests/project/otel.py): an in-memory exporter
the test reads across processes.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Cluster
from tests.integration.support import ClusterFactory, Connect, wait_until

pytestmark = pytest.mark.anyio


def spans_in(directory: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(directory.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


async def trace_of(directory: Path, trace_id: str, count: int) -> list[dict[str, Any]]:
    """The spans of ``trace_id``, once ``count`` of them were exported."""

    async def complete() -> bool:
        return len([s for s in spans_in(directory) if s["trace_id"] == trace_id]) >= count

    await wait_until(complete, timeout=10)
    return sorted(
        (s for s in spans_in(directory) if s["trace_id"] == trace_id), key=lambda s: s["start"]
    )


def named(spans: list[dict[str, Any]], *names: str) -> list[dict[str, Any]]:
    """One span per name, in the order of ``names``.

    Not by start time: the worker dates its queue wait from the enqueue on Redis' clock, which
    each process estimates within half a round trip, so the wait may seem to start a little
    before the front-end's span that sent it.
    """
    by_name = {s["name"]: s for s in spans}
    return [by_name[name] for name in names]


@pytest.fixture
def traced(cluster_factory: ClusterFactory, tmp_path: Path) -> tuple[Cluster, Path]:
    """A front-end and a worker exporting their spans to a directory (tests/project/otel.py)."""
    spans = tmp_path / "spans"
    spans.mkdir()
    cluster = cluster_factory(frontends=0, workers=0)
    cluster.start_frontend(OTEL_SPANS_DIR=str(spans))
    cluster.start_worker(OTEL_SPANS_DIR=str(spans))
    return cluster, spans


def traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


async def test_one_call_is_one_trace_from_the_client_through_the_queue_to_the_worker(
    traced: tuple[Cluster, Path], connect: Connect
) -> None:
    cluster, spans = traced
    worker = cluster.workers[0]
    sock = await connect(cluster.url())
    parent, trace_id, client_span = traceparent()
    request = {"jsonrpc": "2.0", "id": 1, "method": "sleep", "params": [0.05]}
    await sock.send({**request, "traceparent": parent})
    assert (await sock.wait_for([1]))[1].response["result"] == 0.05

    trace = await trace_of(spans, trace_id, 3)
    frontend, wait, run = named(trace, "rpc sleep", "queue wait sleep", "run sleep")
    assert frontend["kind"] == "SERVER"
    assert frontend["parent_id"] == client_span  # the client's trace goes on
    assert frontend["pid"] == cluster.frontends[0].pid
    assert frontend["attributes"]["rpc.outcome"] == "result"
    assert frontend["attributes"]["messaging.destination"] == "rpc.default"
    for span in (wait, run):
        assert span["parent_id"] == frontend["span_id"]
        assert span["pid"] == worker.pid
        assert span["kind"] == "CONSUMER"
    assert wait["end"] <= run["start"] + 1_000_000  # the wait, then the run (1 ms of slack)
    assert run["end"] - run["start"] >= 50_000_000  # sleep(0.05)
    assert run["attributes"]["rpc.queue_wait_ms"] >= 0
    # The front-end's span holds the worker's: the round trip includes the hop. (The wait's start
    # is the enqueue on Redis' clock as two processes estimate it: 5 ms of slack.)
    assert frontend["start"] <= wait["start"] + 5_000_000
    assert frontend["end"] >= run["end"]
    print("\n" + "\n".join(_line(span, frontend["start"]) for span in (frontend, wait, run)))


async def test_the_handshake_traceparent_is_the_parent_and_errors_mark_the_spans(
    traced: tuple[Cluster, Path], connect: Connect
) -> None:
    cluster, spans = traced
    parent, trace_id, page_span = traceparent()
    sock = await connect(cluster.url(), additional_headers={"traceparent": parent})
    assert (await sock.call("fault_raise"))["error"]["code"] == -32000
    trace = await trace_of(spans, trace_id, 3)
    frontend, run = named(trace, "rpc fault_raise", "run fault_raise")
    assert frontend["parent_id"] == page_span
    assert frontend["attributes"]["rpc.outcome"] == "-32000"
    assert frontend["status"] == run["status"] == "ERROR"
    # The header stands for every call of the connection: the next one is in the same trace.
    assert "result" in await sock.call("sleep", [0])
    spans_of_trace = await trace_of(spans, trace_id, 6)
    second = [s for s in spans_of_trace if s["name"] == "rpc sleep"]
    assert [s["parent_id"] for s in second] == [page_span]
    assert second[0]["attributes"]["rpc.outcome"] == "result"


def _line(span: dict[str, Any], origin: int) -> str:
    start = (span["start"] - origin) / 1e6
    took = (span["end"] - span["start"]) / 1e6
    return (
        f"{span['name']:<18} pid {span['pid']:<7} trace {span['trace_id'][:8]}… "
        f"span {span['span_id'][:8]}… parent {span['parent_id'][:8]}… "
        f"+{start:7.2f} ms, {took:7.2f} ms"
    )
