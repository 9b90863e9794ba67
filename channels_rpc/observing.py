"""What front-ends and workers record of each call: metrics and trace spans (docs/guides/metrics.md,
docs/guides/tracing.md), and what a front-end's heartbeat says of it (``rpcstatus``)."""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

from channels_rpc import draining, metrics, status, tracing
from channels_rpc.config import RpcConfig, get_config
from channels_rpc.envelope import Call

__all__ = ["WorkerWatch", "frontend_observers", "frontend_status"]


def frontend_observers(config: RpcConfig) -> list[Any]:
    """What hears of each call entering and leaving a connection's pending table."""
    observers: list[Any] = [metrics.FRONTEND] if config.metrics else []
    if tracing.enabled(config):
        observers.append(tracing.TracingCalls())
    return observers


def frontend_status() -> dict[str, Any]:
    """This front-end process, for its heartbeat (``rpcstatus``)."""
    connections = list(draining.draining.connections)
    return {
        "connections": len(connections),
        "pending": sum(len(c._pending) for c in connections),
        "methods": status.methods_served(None, get_config().default_queue),
    }


class WorkerWatch:
    """One call in a worker, from its start; ``done`` or ``cancelled`` ends it."""

    __slots__ = ("_call", "_metrics", "_span", "_started")

    def __init__(
        self, call: Call, clock: Callable[[], float], *, with_metrics: bool, with_tracing: bool
    ) -> None:
        self._call, self._metrics = call, with_metrics
        self._started = perf_counter()
        waited = max(0.0, clock() - call.sent_at)  # both on the layer's clock
        if with_metrics:
            metrics.child(metrics.QUEUE_WAIT, call.method, call.queue).observe(waited)
        self._span = (
            tracing.WorkerSpan(call.method, call.queue, call.trace, waited)
            if with_tracing and call.trace
            else None
        )

    def done(self, ok: bool, body: str) -> None:
        call = self._call
        if self._metrics:
            seconds = perf_counter() - self._started
            metrics.worker_ran(call.method, call.queue, ok, body, seconds)
        if self._span is not None:
            self._span.end(metrics.answer_outcome(ok, body))

    def cancelled(self) -> None:
        if self._span is not None:
            self._span.end("cancelled")
