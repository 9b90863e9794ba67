"""The worker side: turns ``rpc.request`` messages into calls and sends their answers back.

:class:`CallHandler` is the whole adapter (with :mod:`channels_rpc.caller` for ``ctx.consumer``
and :mod:`channels_rpc.call_signals` for the signals around each call); three hosts drive it:

* ``manage.py rpcworker`` (production): :class:`~channels_rpc.runtime.WorkerRuntime` feeds it
  only as many requests as it has slots for;
* embedded mode: the same runtime inside the front-end process;
* :class:`RpcWorkerConsumer` under Channels' ``runworker`` / ``ChannelNameRouter``, which works
  but inherits runworker's limits (it prefetches without bound and loses that backlog if the
  process dies).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from asgiref.sync import SyncToAsync
from channels.consumer import AsyncConsumer
from channels.exceptions import ChannelFull
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections

from channels_rpc import child_calls, decorators, discovery, metrics, tracing
from channels_rpc._aio import TaskSet
from channels_rpc._layer import ChannelLayer, expiry, work_queue
from channels_rpc.call_signals import SignalHooks
from channels_rpc.caller import CallerChannel
from channels_rpc.config import RpcConfig, get_config
from channels_rpc.context import RpcContext
from channels_rpc.dispatch import DirectDispatch
from channels_rpc.envelope import (
    CANCEL,
    WORKERS_GROUP,
    Call,
    EnvelopeError,
    response_message,
    taken_message,
)
from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode
from channels_rpc.execution import Executor, Outcome
from channels_rpc.logsafe import protect
from channels_rpc.observing import WorkerWatch
from channels_rpc.processes import ProcessPool
from channels_rpc.protocol import encode_error
from channels_rpc.registry import MethodSpec, resolve_consumer, table_of
from channels_rpc.runtime import WorkerRuntime
from channels_rpc.scope import load_user, worker_scope
from channels_rpc.threads import ThreadPool
from channels_rpc.validation import or_pydantic

__all__ = ["CallHandler", "CallerChannel", "RpcWorkerConsumer", "build_runtime"]

#: Django's JSON forms of the types JSON lacks, for results encoded without an encoder class;
#: pydantic's for the rest (dataclasses, models).
_DJANGO_JSON = or_pydantic(DjangoJSONEncoder().default)

logger = protect(logging.getLogger("channels_rpc.worker"))


def _in_worker_thread(loop: asyncio.AbstractEventLoop, func: Callable[[], Any]) -> Any:
    """Run a sync method in a pool thread as Django runs sync code: ``sync_to_async``'s way.

    Django's request cycle closes stale connections around each request; a worker thread has
    no request cycle, so it does the same around each call. And like a ``sync_to_async``
    thread, it names the loop the call came from, so that ``async_to_sync(ctx.progress)(...)``
    in a sync method runs the coroutine on that loop, where the call's channel layer lives
    (asgiref reads these two thread-locals; without them it would start a loop of its own).
    """
    SyncToAsync.threadlocal.main_event_loop = loop
    SyncToAsync.threadlocal.main_event_loop_pid = os.getpid()
    close_old_connections()
    try:
        return func()
    finally:
        close_old_connections()


class CallHandler:
    """Answers one ``rpc.request`` message: resolve, run, reply. Never raises, but cancellation.

    A method under ``permission_required`` runs only for a caller holding its permissions,
    checked here, where it runs: a request that never passed a front-end's check (one written
    straight into Redis) is refused like an unknown method. ``frontend_checked``: every request
    comes from a front-end of this very process, which checked the live user already (the
    embedded worker on the in-memory layer, which no other process can write to).
    ``processes``: a started pool that runs the sync methods instead of threads (permission
    checks and user loading still run in threads).
    """

    def __init__(
        self,
        layer: ChannelLayer,
        config: RpcConfig,
        *,
        frontend_checked: bool = False,
        processes: ProcessPool | None = None,
    ) -> None:
        self.layer = layer
        self._frontend_checked = frontend_checked
        self._running: dict[asyncio.Task[Any], tuple[Call, RpcContext | None]] = {}
        self._dropped: set[asyncio.Task[Any]] = set()  # cancelled by their caller: no answer
        self._revoked = _Revocations(expiry(layer))
        self._threads = ThreadPool(config.worker_concurrency)
        self._processes = processes
        self._config = config
        # Deadlines and send times are on the layer's clock (Redis' for our Redis layer), which
        # every host agrees on; this host's own clock may be seconds off.
        queue = work_queue(layer)
        clock = queue.clock if queue is not None else time.time
        self._clock = clock
        self._executor = Executor(
            run_sync=self._run_sync,
            run_method=functools.partial(child_calls.send_to_child, processes)
            if processes
            else None,
            hooks=SignalHooks(clock),
            sanitize_errors=config.sanitize_errors,
            log_params=config.log_rpc_params,
            clock=clock,
            max_response_size=config.max_response_size,
            default=_DJANGO_JSON,
        )

    def health(self) -> str | None:
        """What keeps this handler from running calls (every thread stuck), or None."""
        if self._processes is not None and (problem := self._processes.problem()):
            return problem
        return self._threads.problem()

    def close(self) -> None:
        """Keep no idle thread for sync methods, no child process (the worker stopped)."""
        self._threads.close()
        if self._processes is not None:
            self._processes.close()

    async def __call__(self, message: dict[str, Any]) -> None:
        try:
            call = Call.from_message(message)
        except EnvelopeError as exc:
            logger.error("dropping a request this worker cannot read: %s", exc)
            await self._taken_raw(message)
            await self._reply_raw(message, Outcome.error(JsonRpcErrorCode.INTERNAL_ERROR, str(exc)))
            return
        if call.ack is not None:  # taken off the queue, whatever happens to it next
            await self._send(call.reply_to, taken_message(call.ack))
        if not call.is_notification and self._revoked.covers(call.reply_to, call.call):
            logger.debug("skipping %r: cancelled before it started", call.method)
            return
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a CallHandler runs in a task")
        self._running[task] = (call, None)
        config = self._config
        watch = WorkerWatch(
            call, self._clock, with_metrics=config.metrics, with_tracing=tracing.enabled(config)
        )
        try:
            outcome = await self._execute(call, task)
        except asyncio.CancelledError:
            watch.cancelled()
            if task not in self._dropped:  # a stopping worker; the caller did not cancel
                await self._reply(call, _stopped())
            raise
        except Exception:  # the executor answers for methods; this is for our own bugs
            logger.exception("could not run %r", call.method)
            outcome = Outcome.error(JsonRpcErrorCode.INTERNAL_ERROR)
        finally:
            del self._running[task]
            self._dropped.discard(task)
        await self._reply(call, outcome)
        watch.done(outcome.ok, outcome.body)

    async def control(self, message: dict[str, Any]) -> None:
        """A control message from the ``rpc.workers`` group: cancel calls of a connection.

        Notifications are never cancelled: one the client sent before it went away still runs,
        within its timeout (nobody waits for it, but its effects were asked for).
        """
        if message.get("type") != CANCEL:
            return
        reply_to, calls = message["reply"], message["calls"]
        for task, (call, context) in list(self._running.items()):
            if call.is_notification:
                continue
            if call.reply_to == reply_to and (calls is None or call.call in calls):
                if context is not None:
                    context._cancel()
                self._dropped.add(task)
                task.cancel()
                metrics.CANCELLATIONS.labels(call.method, call.queue).inc()
        self._revoked.add(reply_to, calls)

    async def _execute(self, call: Call, task: asyncio.Task[Any]) -> Outcome:
        consumer_cls = resolve_consumer(call.consumer)
        table = table_of(consumer_cls) if consumer_cls is not None else None
        spec = table.lookup(call.method, notification=call.is_notification) if table else None
        if spec is None or consumer_cls is None:
            logger.error("%s", discovery.missing_method(call.method, call.consumer, consumer_cls))
            return Outcome.error(
                JsonRpcErrorCode.METHOD_NOT_FOUND, data=discovery.not_here(call.method)
            )
        request = json.loads(call.body)
        # A consumer's own encoder class encodes its results; else Django's JSON forms (dates,
        # decimals, UUIDs, lazy text) through the executor's fast path (protocol.dumps).
        encoder = getattr(consumer_cls, "json_encoder_class", None)
        caller = CallerChannel(
            self.layer,
            call.reply_to,
            encoder or DjangoJSONEncoder,
            max_push=self._config.max_response_size,
            max_groups=self._config.max_groups,
        )
        context = RpcContext(
            caller,
            call.method,
            request.get("id"),
            call.is_notification,
            scope=worker_scope(call.scope),
            user_loader=functools.partial(self._load_user, call.scope),
        )
        self._running[task] = (call, context)
        params = request.get("params", {})
        if not spec.permissions:  # most methods: nothing to check, nothing to mark checked
            return await self._executor.run(call, spec, params, context, encoder)
        if not self._frontend_checked:
            refusal = await self._refusal(spec, context)
            if refusal is not None:
                return refusal
        with decorators.checked(spec.permissions):  # the function's own check need not repeat
            return await self._executor.run(call, spec, params, context, encoder)

    async def _refusal(self, spec: MethodSpec, context: RpcContext) -> Outcome | None:
        """The answer refusing a caller who lacks ``spec``'s permissions; None if allowed.

        The user is loaded and asked in a pool thread (it is database work), once: the method
        finds it loaded in ``ctx.scope["user"]``.
        """
        check = functools.partial(decorators.allowed, context.scope.get("user"), spec.permissions)
        try:
            allowed = await self._run_sync(check, f"{spec.name} (permission check)")
        except JsonRpcError as exc:  # every thread taken: -32010
            return Outcome(False, encode_error(exc.error()))
        except Exception:
            logger.exception("permission check for %r failed", spec.name)
            return Outcome.error(JsonRpcErrorCode.INTERNAL_ERROR)
        if allowed:
            return None
        logger.warning(
            "refused %r: the caller lacks %s (a request no front-end would have sent)",
            spec.name,
            ", ".join(spec.permissions),
        )
        return Outcome.error(JsonRpcErrorCode.METHOD_NOT_FOUND, data={"method": spec.name})

    async def _reply(self, call: Call, outcome: Outcome) -> None:
        if call.call is None:
            if not outcome.ok:
                logger.info("notification %r failed: %s", call.method, outcome.body)
            return
        await self._send(call.reply_to, response_message(call.call, outcome.ok, outcome.body))

    async def _taken_raw(self, message: Mapping[str, Any]) -> None:
        reply_to, ack = message.get("reply"), message.get("ack")
        if isinstance(reply_to, str) and isinstance(ack, int):
            await self._send(reply_to, taken_message(ack))

    async def _reply_raw(self, message: Mapping[str, Any], outcome: Outcome) -> None:
        reply_to, token = message.get("reply"), message.get("call")
        if isinstance(reply_to, str) and isinstance(token, int):
            await self._send(reply_to, response_message(token, outcome.ok, outcome.body))

    async def _send(self, channel: str, message: dict[str, Any]) -> None:
        try:
            await self.layer.send(channel, message)
        except ChannelFull as exc:
            # Our Redis layer says which room ran out: messages, bytes or Redis' maxmemory.
            reason = getattr(exc, "reason", None) or "reply channel is full"
            logger.warning(
                "could not reply to %s (%s); the caller will get a deadline error", channel, reason
            )
        except Exception as exc:
            logger.warning("could not send a reply to %s: %s", channel, exc)

    async def _run_sync(self, func: Callable[[], Any], label: str) -> Any:
        loop = asyncio.get_running_loop()
        return await self._threads.run(functools.partial(_in_worker_thread, loop, func), label)

    async def _load_user(self, scope: Mapping[str, Any]) -> Any:
        return await self._run_sync(functools.partial(load_user, scope.get("user")), "get_user")


class _Revocations:
    """Calls cancelled before a worker took them, remembered until they would have expired."""

    def __init__(self, expiry: float) -> None:
        self._ttl = float(expiry)
        self._until: dict[tuple[str, int | None], float] = {}  # insertion order = expiry order

    def add(self, reply_to: str, calls: list[int] | None) -> None:
        now = time.monotonic()
        while self._until and next(iter(self._until.values())) < now:
            del self._until[next(iter(self._until))]
        for token in calls if calls is not None else [None]:
            self._until.pop((reply_to, token), None)
            self._until[(reply_to, token)] = now + self._ttl

    def covers(self, reply_to: str, call: int | None) -> bool:
        now = time.monotonic()
        return any(self._until.get(key, 0.0) > now for key in ((reply_to, None), (reply_to, call)))


def _stopped() -> Outcome:
    return Outcome.error(
        JsonRpcErrorCode.SERVICE_UNAVAILABLE, "Worker stopped before the call finished"
    )


def build_runtime(
    layer: ChannelLayer,
    config: RpcConfig | None = None,
    *,
    process_local: bool = False,
    processes: ProcessPool | None = None,
) -> WorkerRuntime:
    """A worker loop on ``layer`` that answers with a :class:`CallHandler`.

    ``process_local``: only this process uses ``layer`` (the in-memory layer), so its requests
    all come from front-ends that checked permissions here, and requests taken while stopping
    are run, since no other worker could take them back. ``processes``: a started pool for the
    sync methods (``rpcworker --pool processes``), closed when the worker stops.
    """
    config = config or get_config()
    handler = CallHandler(layer, config, frontend_checked=process_local, processes=processes)
    return WorkerRuntime(
        layer,
        handler,
        concurrency=config.worker_concurrency,
        control=handler.control,
        control_group=WORKERS_GROUP,
        health=handler.health,
        on_stopped=handler.close,
        give_back=not process_local,
    )


class RpcWorkerConsumer(DirectDispatch, AsyncConsumer):  # type: ignore[misc]
    """Serves RPC queues under ``runworker`` / ``ChannelNameRouter({"rpc.default": ...})``.

    Each request runs in its own task (at most ``WORKER_CONCURRENCY`` at once), so a slow call
    does not hold up the next one. ``manage.py rpcworker`` is the better host: runworker keeps
    pulling requests into memory however busy the process is.
    """

    _handler: CallHandler | None = None
    _slots: asyncio.Semaphore | None = None
    _calls: TaskSet

    async def rpc_request(self, message: dict[str, Any]) -> None:
        if self._handler is None:
            config = get_config()
            self._handler = CallHandler(self.channel_layer, config)
            self._slots = asyncio.Semaphore(config.worker_concurrency)
            self._calls = TaskSet()
            # Cancellations reach workers through this group. (Under runworker the membership is
            # not renewed: it lapses after the layer's group_expiry, one day by default.)
            await self.channel_layer.group_add(WORKERS_GROUP, self.channel_name)
        self._calls.spawn(self._bounded(self._handler, message))

    async def rpc_cancel(self, message: dict[str, Any]) -> None:
        if self._handler is not None:
            await self._handler.control(message)

    async def _bounded(self, handler: CallHandler, message: dict[str, Any]) -> None:
        if self._slots is None:
            raise RuntimeError("a request runs before its handler was set up")
        async with self._slots:
            await handler(message)
