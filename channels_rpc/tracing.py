"""OpenTelemetry tracing across the hop (optional: ``pip install "channels-rpc[otel]"``).

A call is one trace from the client's socket to the worker and back (docs/guides/tracing.md):

* the front-end opens a span ``rpc METHOD`` (kind SERVER) when it takes a call, and ends it
  when the call leaves its pending table, with the outcome (``rpc.outcome``: "result", the error
  code, "disconnected", "detached"); its context travels in the request's envelope as a W3C
  ``traceparent``;
* the worker records the wait in the queue as a span ``queue wait METHOD`` (from the enqueue to
  the start, on the layer's clock) and runs the method in a span ``run METHOD`` (kind CONSUMER),
  both children of the front-end's span;
* a client's own trace goes on: a ``traceparent`` member in the request object (JSON-RPC lets a
  request carry members of its own; the worker never sees it), else the ``traceparent`` header
  of the WebSocket handshake, becomes the parent of the front-end's span.

This module uses the OpenTelemetry API only: spans go wherever the process's tracer provider
sends them (configure the SDK and an exporter at startup, as for any Django process). Without
``opentelemetry-api`` installed, or with ``CHANNELS_RPC["TRACING"] = False``, nothing happens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

trace: Any  # the OpenTelemetry API's `trace` module, or None
try:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the optional extra is not installed
    trace = None


__all__ = [
    "AVAILABLE",
    "TracingCalls",
    "WorkerSpan",
    "parents",
    "enabled",
    "start_call",
    "traceparent",
]

#: Whether the OpenTelemetry API is installed.
AVAILABLE: Final = trace is not None
_TRACER: Final = "channels_rpc"
_LEFT: Final = frozenset({"disconnected", "detached"})


def enabled(config: Any) -> bool:
    """Whether to trace: ``TRACING`` is on, the API installed and an SDK provider set. (Asked
    per connection and per worker call: a provider set later applies from then on.)"""
    return bool(config.tracing) and _tracer() is not None


def _propagator() -> Any:
    return TraceContextTextMapPropagator()


def parents(scope: dict[str, Any]) -> Callable[[Any], str]:
    """For a connection: the trace context of each of its requests, as a W3C ``traceparent``:
    the request's ``traceparent`` member, else the handshake's ``traceparent`` header; "" if
    neither."""
    header = next(
        (v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == b"traceparent"),
        "",
    )

    def parent(request: Any) -> str:
        member = request.data.get("traceparent")
        return member if isinstance(member, str) else header

    return parent


def _tracer() -> Any:
    """The tracer, or None while no SDK provider is set (every span would be a no-op: skip the
    work). Looked up per call: an application may set its provider after the first one."""
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider):
        return None
    return provider.get_tracer(_TRACER)


def start_call(method: str, queue: str, parent: str) -> Any:
    """The front-end's span of a call (ended by :class:`TracingCalls`); None if not traced."""
    tracer = _tracer()
    if tracer is None:
        return None
    context = _propagator().extract({"traceparent": parent}) if parent else None
    return tracer.start_span(
        f"rpc {method}",
        context=context,
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "jsonrpc", "rpc.method": method, "messaging.destination": queue},
    )


def traceparent(span: Any) -> str | None:
    """``span``'s context as a W3C ``traceparent``, to travel with the request."""
    if span is None or trace is None:
        return None
    carrier: dict[str, str] = {}
    _propagator().inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


class TracingCalls:
    """Ends the front-end's span of each call as it leaves the pending table."""

    __slots__ = ()

    def opened(self, pending: Any) -> None:
        pass  # (the span starts where the call's parent is known: Calls.call)

    def closed(self, pending: Any, outcome: str) -> None:
        span = pending.span
        if span is None:
            return
        span.set_attribute("rpc.outcome", outcome)
        if outcome != "result" and outcome not in _LEFT:
            span.set_status(Status(StatusCode.ERROR, f"error {outcome}"))
        span.end()


class WorkerSpan:
    """The worker's spans of one call: the queue wait (already over), then the run."""

    def __init__(self, method: str, queue: str, parent: str | None, waited: float) -> None:
        self._span: Any = None
        tracer = _tracer()
        if tracer is None or not parent:
            return
        context = _propagator().extract({"traceparent": parent})
        now = time.time_ns()
        attributes = {"rpc.system": "jsonrpc", "rpc.method": method, "messaging.destination": queue}
        wait = tracer.start_span(
            f"queue wait {method}",
            context=context,
            kind=SpanKind.CONSUMER,
            start_time=now - int(waited * 1e9),
            attributes=attributes,
        )
        wait.end(end_time=now)
        self._span = tracer.start_span(
            f"run {method}",
            context=context,
            kind=SpanKind.CONSUMER,
            attributes={**attributes, "rpc.queue_wait_ms": round(waited * 1000, 3)},
        )

    def end(self, outcome: str) -> None:
        if self._span is None:
            return
        self._span.set_attribute("rpc.outcome", outcome)
        if outcome != "result":
            self._span.set_status(Status(StatusCode.ERROR, f"error {outcome}"))
        self._span.end()
