"""The ``rpc_method_*`` signals, sent around each call in the process that runs the method.

:class:`SignalHooks` is the worker's :class:`~channels_rpc.execution.ExecutionHooks`: the
executor is pure, and this is where its start, completion and failure become Django signals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from channels_rpc import signals
from channels_rpc.context import RpcContext
from channels_rpc.envelope import Call
from channels_rpc.registry import resolve_consumer

__all__ = ["SignalHooks"]


class SignalHooks:
    """Sends the ``rpc_method_*`` signals, in the process that runs the method.

    ``clock`` is the channel layer's: ``queue_time`` compares it with the front-end's ``sent``.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock

    def started(self, call: Call, context: RpcContext, params: Any) -> None:
        signals.send(
            signals.rpc_method_started,
            resolve_consumer(call.consumer),
            method_name=context.method_name,
            params=params,
            rpc_id=context.rpc_id,
        )

    def completed(self, call: Call, context: RpcContext, result: Any, duration: float) -> None:
        signals.send(
            signals.rpc_method_completed,
            resolve_consumer(call.consumer),
            method_name=context.method_name,
            result=result,
            rpc_id=context.rpc_id,
            duration=duration,
            queue_time=self._queue_time(call, duration),
        )

    def failed(
        self, call: Call, context: RpcContext, error: BaseException, duration: float
    ) -> None:
        signals.send(
            signals.rpc_method_failed,
            resolve_consumer(call.consumer),
            method_name=context.method_name,
            error=error,
            rpc_id=context.rpc_id,
            duration=duration,
            queue_time=self._queue_time(call, duration),
        )

    def _queue_time(self, call: Call, duration: float) -> float:
        return max(0.0, self._clock() - duration - call.sent_at)
