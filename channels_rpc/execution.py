"""Running one call: bind its params, run the method under its deadline, encode the outcome.

Everything a method does ends in an :class:`Outcome`: a result, its own ``JsonRpcError``, a
timeout, or -32000 for anything else it raises, ``SystemExit`` and ``KeyboardInterrupt``
included (a method's ``sys.exit()`` is that call's error, not the worker's end). Cancellation is
the one exception that is not turned into an outcome: it belongs to whoever cancelled the task
(a shutdown, a cancelled call), which answers for it.

Async methods are cancelled at their deadline, the asyncio way: the method sees one
``CancelledError`` and may still await in its ``finally`` blocks (an anyio cancel scope would
cancel those awaits too, which asyncio code does not expect). Sync methods run in threads
(:class:`~channels_rpc.threads.ThreadPool`) through the ``run_sync`` callable the adapter
supplies (it adds Django's database connection hygiene); a thread cannot be interrupted, so at
the deadline the call is answered and the thread is left to finish on its own, its result
discarded, still counted against the pool until it does. An adapter may run sync methods
elsewhere instead (``run_method``: ``rpcworker --pool processes`` runs them in child processes,
:mod:`channels_rpc.processes`); the deadline cancels the wait for them alike.

Answers are sized where they are encoded: an answer frame over ``max_response_size`` bytes of
UTF-8 would be refused by the transport, so the call is answered with -32014 instead, before
anything crosses the channel layer.

Client text reaches this logger (exception messages, error bodies, params when asked for):
every record it emits is made one line of bounded length (:mod:`channels_rpc.logsafe`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from channels_rpc._compat import timeout as _timeout
from channels_rpc.context import RpcContext
from channels_rpc.envelope import Call
from channels_rpc.exceptions import (
    JsonRpcError,
    JsonRpcErrorCode,
    ResponseTooLargeError,
    error_object,
)
from channels_rpc.logsafe import protect
from channels_rpc.protocol import (
    MAX_ID_LENGTH,
    dumps,
    encode_error,
    encode_id,
    error_frame,
    result_frame,
    utf8_size,
)
from channels_rpc.registry import MethodSpec

__all__ = [
    "ExecutionHooks",
    "Executor",
    "MethodRunner",
    "Outcome",
    "timeout_error",
]

logger = protect(logging.getLogger("channels_rpc.worker"))

#: Runs a sync function in a thread; the label (the method's name) says what a busy thread runs.
SyncRunner = Callable[[Callable[[], Any], str], Awaitable[Any]]


class MethodRunner(Protocol):
    """Runs a sync method somewhere else than a thread: gets the call, the method, its bound
    arguments (without the context) and the call's context."""

    def __call__(
        self,
        call: Call,
        spec: MethodSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        context: RpcContext,
    ) -> Awaitable[Any]: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a call ended with: ``body`` is the JSON text of the result or of the error object."""

    ok: bool
    body: str

    @classmethod
    def error(cls, code: int, message: str | None = None, data: Any = None) -> Outcome:
        return cls(False, encode_error(error_object(code, message, data)))


class ExecutionHooks(Protocol):
    """Observers of calls (the adapter sends Django signals from these); must not raise."""

    def started(self, call: Call, context: RpcContext, params: Any) -> None: ...

    def completed(self, call: Call, context: RpcContext, result: Any, duration: float) -> None: ...

    def failed(
        self, call: Call, context: RpcContext, error: BaseException, duration: float
    ) -> None: ...


def timeout_error(timeout: float | None) -> Outcome:
    """The answer to a call that ran out of time (the shape of channels-rpc 1.0.1)."""
    return Outcome.error(JsonRpcErrorCode.INTERNAL_ERROR, data={"timeout": timeout})


#: Bytes an answer frame adds to its body at most: the envelope and the longest id, whose
#: characters (MAX_ID_LENGTH of them) are at most six-byte escapes each.
_LARGEST_FRAME_AROUND_A_BODY: Final = len(result_frame('""', "")) + 6 * MAX_ID_LENGTH


class _TimedOut(Exception):
    pass


class Executor:
    """Runs calls for one process; holds what every call shares.

    ``clock`` is the clock of call deadlines: the channel layer's (``layer.clock``), the one
    every process agrees on, not this host's. ``max_response_size`` bounds answer frames in
    bytes (None: no bound). ``run_method``: where sync methods run, if not in ``run_sync``'s
    threads. ``default`` gives JSON forms to what JSON lacks in results encoded without an
    encoder class (``protocol.dumps``).
    """

    def __init__(
        self,
        *,
        run_sync: SyncRunner,
        run_method: MethodRunner | None = None,
        hooks: ExecutionHooks | None = None,
        sanitize_errors: bool = True,
        log_params: bool = False,
        clock: Callable[[], float] = time.time,
        max_response_size: int | None = None,
        default: Callable[[Any], Any] | None = None,
    ) -> None:
        self._run_sync = run_sync
        self._run_method = run_method
        self._hooks = hooks
        self._sanitize = sanitize_errors
        self._log_params = log_params
        self._clock = clock
        self._max_size = max_response_size
        self._default = default

    async def run(
        self,
        call: Call,
        spec: MethodSpec,
        params: Any,
        context: RpcContext,
        encoder: type[json.JSONEncoder] | None,
    ) -> Outcome:
        """Run ``call`` with ``spec`` and answer with an outcome; only cancellation escapes."""
        remaining = None if call.deadline is None else call.deadline - self._clock()
        if remaining is not None and remaining <= 0:
            logger.info("call %r expired in the queue; not started", call.method)
            return timeout_error(call.timeout)
        outcome = await self._run(call, spec, params, context, encoder, remaining)
        return self._sized(spec, outcome, context.rpc_id)

    async def _run(
        self,
        call: Call,
        spec: MethodSpec,
        params: Any,
        context: RpcContext,
        encoder: type[json.JSONEncoder] | None,
        remaining: float | None,
    ) -> Outcome:
        started = time.monotonic()
        try:
            args, kwargs = spec.bind(params)
            if self._log_params:
                logger.debug("calling %r with params %r", spec.name, params)
            if self._hooks is not None:
                self._hooks.started(call, context, params)
            result = await self._invoke(call, spec, args, kwargs, context, remaining)
        except _TimedOut:
            context._cancel()  # a sync method still running in its thread can notice
            error: BaseException = TimeoutError(f"timed out after {call.timeout} s")
            self._notify_failed(call, context, error, started)
            return timeout_error(call.timeout)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: this call's error
            self._notify_failed(call, context, exc, started)
            return self._exception_outcome(spec, exc)
        if self._hooks is not None:
            self._hooks.completed(call, context, result, time.monotonic() - started)
        return self._encode(spec, result, encoder)

    async def _invoke(
        self,
        call: Call,
        spec: MethodSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        context: RpcContext,
        remaining: float | None,
    ) -> Any:
        deadline = None if remaining is None else time.monotonic() + remaining
        try:
            async with _timeout(remaining):
                return await self._call(call, spec, args, kwargs, context)
        except asyncio.TimeoutError:  # TimeoutError itself from 3.11 on
            # Ours only if the deadline passed: a method may raise TimeoutError of its own.
            if deadline is not None and time.monotonic() >= deadline:
                raise _TimedOut from None
            raise

    async def _call(
        self,
        call: Call,
        spec: MethodSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        context: RpcContext,
    ) -> Any:
        if not spec.is_async and self._run_method is not None:
            return await self._run_method(call, spec, args, kwargs, context)
        if spec.accepts_context:
            args = (context, *args)
        if spec.is_async:
            return await spec.func(*args, **kwargs)
        result = await self._run_sync(functools.partial(spec.func, *args, **kwargs), spec.name)
        # A sync callable may still hand back an awaitable (a partial of a coroutine function).
        return await result if inspect.isawaitable(result) else result

    def _notify_failed(
        self, call: Call, context: RpcContext, error: BaseException, started: float
    ) -> None:
        if self._hooks is not None:
            self._hooks.failed(call, context, error, time.monotonic() - started)

    def _exception_outcome(self, spec: MethodSpec, exc: BaseException) -> Outcome:
        if isinstance(exc, JsonRpcError):
            return Outcome(False, encode_error(exc.error()))
        logger.error("method %r raised %s", spec.name, type(exc).__name__, exc_info=exc)
        data = None if self._sanitize else {"type": type(exc).__name__, "message": str(exc)}
        return Outcome.error(
            JsonRpcErrorCode.GENERIC_APPLICATION_ERROR, "Application error occurred", data
        )

    def _encode(
        self, spec: MethodSpec, result: Any, encoder: type[json.JSONEncoder] | None
    ) -> Outcome:
        try:
            if spec.types is not None:
                result = spec.types.dump(result)
            body = dumps(result, encoder, default=self._default)
        except (TypeError, ValueError, RecursionError) as exc:
            logger.error("result of %r is not JSON: %s", spec.name, exc)
            return Outcome.error(JsonRpcErrorCode.PARSE_RESULT_ERROR, "Failed to serialize result")
        return Outcome(True, body)

    def _sized(self, spec: MethodSpec, outcome: Outcome, rpc_id: Any) -> Outcome:
        """``outcome``, or -32014 if the frame the client would get is over the size limit."""
        if self._max_size is None:
            return outcome
        body = utf8_size(outcome.body)
        if body + _LARGEST_FRAME_AROUND_A_BODY <= self._max_size:
            return outcome  # whatever the id: the usual case, without encoding the id again
        frame = result_frame if outcome.ok else error_frame
        size = utf8_size(frame(encode_id(rpc_id), "")) + body
        if size <= self._max_size:
            return outcome
        logger.warning(
            "the answer of %r is %d bytes, over MAX_RESPONSE_SIZE (%d): answered -32014",
            spec.name,
            size,
            self._max_size,
        )
        return Outcome(False, encode_error(ResponseTooLargeError(size, self._max_size).error()))
