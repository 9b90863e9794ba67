"""Spans of the test project's processes, for tests/integration/test_tracing.py.

With ``OTEL_SPANS_DIR`` set, every process (daphne, rpcworker) installs an OpenTelemetry SDK
tracer provider that writes each ended span as a JSON line to ``OTEL_SPANS_DIR/<pid>.jsonl``:
an in-memory exporter the test can read across processes.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


class JsonLinesExporter(SpanExporter):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(_record(span)) + "\n" for span in spans]
        with self._lock, self.path.open("a") as out:
            out.writelines(lines)
        return SpanExportResult.SUCCESS


def _record(span: ReadableSpan) -> dict[str, object]:
    context, parent = span.get_span_context(), span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}" if context else "",
        "span_id": f"{context.span_id:016x}" if context else "",
        "parent_id": f"{parent.span_id:016x}" if parent else "",
        "start": span.start_time,
        "end": span.end_time,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "pid": os.getpid(),
    }


def configure() -> None:
    directory = os.environ.get("OTEL_SPANS_DIR")
    if not directory:
        return
    provider = TracerProvider()
    exporter = JsonLinesExporter(Path(directory) / f"{os.getpid()}.jsonl")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
