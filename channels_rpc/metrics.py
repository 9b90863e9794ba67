"""Prometheus metrics of front-ends and workers (docs/guides/metrics.md), by ``prometheus_client``.

Each process exposes its own: a front-end through the Django view
:func:`channels_rpc.views.metrics` (mount it at ``/metrics``), a worker on ``rpcworker
--metrics-port``. Labels are few and bounded: ``method`` is a registered method's name (a
request for an unknown one never reaches a metric with a method label), ``queue`` a
configured queue, ``outcome`` ``"result"``, an error code (``"-32012"``), or, for a call the
front-end stopped waiting for, ``"disconnected"`` (its socket closed: cancelled) or
``"detached"`` (its session keeps it; the front-end it resumes on counts its answer). No ids,
no params, no user.

Queue depth and the age of the oldest request are read from the layer when scraped
(:func:`read_queues`), not kept up to date on every call. ``CHANNELS_RPC["METRICS"] = False``
turns the per-call counting off.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any, Final, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from channels_rpc._redis.backlog import backlog, on_redis

__all__ = [
    "CONTENT_TYPE",
    "FRONTEND",
    "FrontendCalls",
    "answer_outcome",
    "child",
    "read_queues",
    "render",
    "worker_ran",
]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
#: Seconds: from a ping over Redis (about a millisecond) to the longest default timeout.
BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BUCKETS_LONG: Final = (*BUCKETS, 5.0, 10.0, 30.0, 60.0, 300.0)

# Front-end
CALLS = Counter(
    "channels_rpc_calls",
    "Calls a front-end stopped waiting for, by outcome (result, error code, disconnected, "
    "detached).",
    ["method", "queue", "outcome"],
)
CALL_SECONDS = Histogram(
    "channels_rpc_call_duration_seconds",
    "Seconds from a call's request to its answer, at the front-end (answered calls only).",
    ["method", "queue"],
    buckets=BUCKETS_LONG,
)
IN_FLIGHT = Gauge("channels_rpc_calls_in_flight", "Calls a front-end waits on.")
CONNECTIONS = Gauge("channels_rpc_connections", "Open WebSocket connections.")
REFUSALS = Counter(
    "channels_rpc_refusals",
    "Requests refused by a front-end: busy (-32010), in_flight (over MAX_IN_FLIGHT), "
    "rate_limit (connections closed with 4008: too many requests or bytes).",
    ["reason"],
)
DEADLINES = Counter(
    "channels_rpc_deadline_expiries",
    "Calls a front-end answered -32012 itself: no answer came by the deadline.",
    ["method", "queue"],
)

# Worker
QUEUE_WAIT = Histogram(
    "channels_rpc_worker_queue_wait_seconds",
    "Seconds a request waited in its queue before a worker started it.",
    ["method", "queue"],
    buckets=BUCKETS_LONG,
)
RUN_SECONDS = Histogram(
    "channels_rpc_worker_run_seconds",
    "Seconds a worker ran a call, by outcome.",
    ["method", "queue", "outcome"],
    buckets=BUCKETS_LONG,
)
SLOTS = Gauge("channels_rpc_worker_slots", "A worker's call slots, busy or free.", ["state"])
CANCELLATIONS = Counter(
    "channels_rpc_worker_cancellations",
    "Running calls a worker cancelled: rpc.cancel, or the caller's connection closed.",
    ["method", "queue"],
)
TIMEOUTS = Counter(
    "channels_rpc_worker_timeouts",
    "Calls a worker stopped at their time limit (answered -32603 with data.timeout).",
    ["method", "queue"],
)

# Both (read when scraped)
QUEUE_DEPTH = Gauge("channels_rpc_queue_depth", "Requests waiting in a queue.", ["queue"])
QUEUE_OLDEST = Gauge(
    "channels_rpc_queue_oldest_seconds",
    "Age of the oldest request waiting in a queue (0 when empty).",
    ["queue"],
)

_LEFT: Final = frozenset({"disconnected", "detached"})  # not answered here: no duration


class Pending(Protocol):
    """What the front-end's metrics read of a pending call (``channels_rpc.pending.Pending``,
    which the worker's side of this module must not import)."""

    method: str
    queue: str
    opened_at: float


_children: dict[int, dict[tuple[str, ...], Any]] = {}


def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, kept: ``labels()`` takes a lock and builds its key each time,
    this is a dict lookup (labels are bounded, and so is what is kept)."""
    kept = _children.setdefault(id(metric), {})
    found = kept.get(labels)
    if found is None:
        found = kept[labels] = metric.labels(*labels)
    return found


class FrontendCalls:
    """Hears of every call entering and leaving a connection's pending table."""

    __slots__ = ()

    def opened(self, pending: Pending) -> None:
        pending.opened_at = time.perf_counter()
        IN_FLIGHT.inc()

    def closed(self, pending: Pending, outcome: str) -> None:
        IN_FLIGHT.dec()
        method, queue = pending.method, pending.queue or "-"
        child(CALLS, method, queue, outcome).inc()
        if outcome in _LEFT:
            return
        child(CALL_SECONDS, method, queue).observe(time.perf_counter() - pending.opened_at)
        if outcome == "-32012":
            child(DEADLINES, method, queue).inc()
        elif outcome == "-32010":
            child(REFUSALS, "busy").inc()


#: The observer front-ends give their pending tables (it keeps no state of its own).
FRONTEND: Final = FrontendCalls()


def answer_outcome(ok: bool, body: str) -> str:
    """The ``outcome`` label of an answer: "result", or its error's code."""
    return "result" if ok else str(_error(body).get("code", "error"))


def worker_ran(method: str, queue: str, ok: bool, body: str, seconds: float) -> None:
    """A worker answered a call (``body``: its result, or its error object)."""
    error = {} if ok else _error(body)
    outcome = "result" if ok else str(error.get("code", "error"))
    if outcome == "-32601":
        method = "-"  # a request no front-end sent (written into Redis): its name is no label
    child(RUN_SECONDS, method, queue, outcome).observe(seconds)
    data = error.get("data")
    if outcome == "-32603" and isinstance(data, dict) and "timeout" in data:
        child(TIMEOUTS, method, queue).inc()  # (the error 1.0.1 answered at a time limit)


def _error(body: str) -> dict[str, Any]:
    try:
        error = json.loads(body)
    except ValueError:
        return {}
    return error if isinstance(error, dict) else {}


async def read_queues(layer: Any, queues: Iterable[str]) -> None:
    """Set the depth and oldest-age gauges of ``queues`` from the layer, now (this package's
    Redis layer only: other layers report no queues)."""
    if not on_redis(layer):
        return
    for queue in sorted(set(queues)):
        depth, oldest = await backlog(layer, queue)
        QUEUE_DEPTH.labels(queue).set(depth)
        QUEUE_OLDEST.labels(queue).set(oldest)


def render() -> bytes:
    """This process's metrics in Prometheus' text format."""
    return bytes(generate_latest())
