"""A connection's calls on their way to the workers: sent, given a deadline, taken back.

:class:`Calls` is what the consumer hands a resolved request to. Each call is opened in the
connection's :class:`~channels_rpc.pending.PendingCalls` (which answers it exactly once), sent,
then given its deadline: ``timeout`` + ``REPLY_GRACE``, or for a call without limit the queue's
expiry until a worker takes it. A cancelled call is answered -32800 and taken back. None of this
holds the socket: answers decided away from a request go out through the ``write`` it is given.

:class:`CallSender` is the one place where a call meets the channel layer on its way out. A send
is bounded by ``LAYER_TIMEOUT``; a full queue or a layer that fails or stalls is answered
``SERVER_BUSY`` (-32010), a "try again later", never a crash. After a failure, the layer's
:class:`~channels_rpc.guards.Breaker` answers -32010 at once for a second, for every connection
of the process, rather than have each call wait out the timeout again. A call that is cancelled,
or that no worker took in time, is withdrawn from its queue where the layer can (this package's
Redis layer hands back a handle for that); the workers hear of the rest through the
``rpc.workers`` group, and skip or stop them.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from channels.exceptions import ChannelFull

from channels_rpc import tracing, unanswered
from channels_rpc._compat import timeout as time_limit
from channels_rpc._layer import expiry
from channels_rpc.batches import Batch, fit
from channels_rpc.config import RpcConfig, get_config
from channels_rpc.envelope import VERSION, WORKERS_GROUP, Call, cancel_message
from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode, error_object
from channels_rpc.guards import Breaker
from channels_rpc.logsafe import protect
from channels_rpc.metrics import REFUSALS, answer_outcome
from channels_rpc.pending import (
    Pending,
    PendingCalls,
    TooManyInFlight,
    deadline_error,
    unclaimed_error,
)
from channels_rpc.protocol import Request, dumps, error_frame
from channels_rpc.registry import MethodSpec

__all__ = ["CallSender", "Calls"]

# The front-end's records, under the front-end's logger name.
logger = protect(logging.getLogger("channels_rpc"))

Spawn = Callable[[Coroutine[Any, Any, None]], Any]
#: The members of a request object that a worker needs; anything else stays here.
_REQUEST_MEMBERS = frozenset({"jsonrpc", "method", "params", "id"})


class Calls:
    """The calls of one connection, from its request to its answer.

    ``write`` writes a frame to the connection; ``result_frame(pending, body)`` makes the frame
    of a result (``process_response`` middleware); ``on_send(timeout)`` hears of each call sent,
    and how long it may run; ``spawn`` runs a coroutine for as long as the connection lives.
    """

    def __init__(
        self,
        pending: PendingCalls,
        sender: CallSender,
        *,
        write: Callable[[str], Coroutine[Any, Any, None]],
        result_frame: Callable[[Pending, str], Awaitable[str]],
        spawn: Spawn,
        on_send: Callable[[float | None], None],
        trace_parent: Callable[[Request], str] | None = None,
    ) -> None:
        self._pending = pending
        self._trace_parent = trace_parent  # None: no tracing
        self._sender = sender
        self._write = write
        self._result_frame = result_frame
        self._spawn = spawn
        self._on_send = on_send

    async def call(
        self,
        request: Request,
        spec: MethodSpec,
        text: str | None,
        config: RpcConfig,
        batch: Batch | None,
    ) -> str | None:
        """Send a call; returns what to write now (an error, or a completed batch).

        ``text``: the frame it came in, if it may be queued as it is. Raises ``DuplicateId`` or
        ``TooManyInFlight`` if the pending table refuses it (it is then not sent).
        """
        timeout = config.timeout_for(spec.timeout)
        try:
            pending = self._pending.open(request.id, spec.name, timeout, batch)
        except TooManyInFlight:
            REFUSALS.labels("in_flight").inc()
            raise
        pending.queue = spec.queue or config.default_queue  # (labels a refusal's metrics too)
        trace = None
        if self._trace_parent is not None:
            parent = self._trace_parent(request)
            pending.span = tracing.start_call(spec.name, pending.queue, parent)
            trace = tracing.traceparent(pending.span)
        # A call without a time limit asks to hear when a worker takes it: until then, the
        # queue's expiry is its deadline (an expired request is dropped, never answered).
        ack = pending.token if timeout is None else None
        try:
            pending.queue, pending.handle = await self._send(
                spec, _body(request, text), config, pending.token, timeout, ack, trace
            )
        except JsonRpcError as exc:
            return self._pending.fail(pending.token, exc.error())
        if timeout is not None:
            self._pending.arm(pending.token, timeout + config.reply_grace, self._expire)
        else:
            wait = self._sender.queue_expiry + config.reply_grace
            self._pending.arm(pending.token, wait, self._unclaimed)
        return None

    async def notify(
        self, request: Request, spec: MethodSpec, text: str | None, config: RpcConfig
    ) -> None:
        """Send a notification; it counts against MAX_IN_FLIGHT until a worker takes it."""
        timeout = config.timeout_for(spec.timeout)
        try:
            pending = self._pending.open_notification(spec.name, timeout)
        except TooManyInFlight:
            logger.warning("notification %r dropped: too many calls in flight", request.method)
            return
        try:
            pending.queue, pending.handle = await self._send(
                spec, _body(request, text), config, None, timeout, pending.token
            )
        except JsonRpcError as exc:
            self._pending.take(pending.token)
            logger.warning("notification %r dropped: %s", request.method, exc.error()["message"])
            return
        # Past its deadline or the queue's expiry, no worker will start it: stop counting it.
        queued = self._sender.queue_expiry
        wait = queued if timeout is None else min(timeout, queued)
        self._pending.arm(pending.token, wait + config.reply_grace, self._unclaimed)

    async def _send(
        self,
        spec: MethodSpec,
        body: str,
        config: RpcConfig,
        token: int | None,
        timeout: float | None,
        ack: int | None,
        trace: str | None = None,
    ) -> tuple[str, Any]:
        self._on_send(timeout)
        return await self._sender.send(
            spec, body, config, token=token, timeout=timeout, ack=ack, trace=trace
        )

    async def cancel(self, params: Any) -> None:
        """``rpc.cancel`` / ``$/cancelRequest`` ``{"id": X}``: answer X with -32800, stop it."""
        target = params.get("id") if isinstance(params, dict) else None
        valid = isinstance(target, (str, int, float)) and not isinstance(target, bool)
        pending = self._pending.find(target) if valid else None
        if pending is None:
            return  # unknown or already answered: nothing to do
        error = error_object(JsonRpcErrorCode.REQUEST_CANCELLED, data={"id": target})
        if frame := self._pending.fail(pending.token, error):
            await self._write(frame)
        await self._sender.revoke([pending], everything=False)

    async def answered(self, message: dict[str, Any]) -> None:
        """A worker's answer: written (or its completed batch) unless the call was settled."""
        if message.get("v") != VERSION:
            logger.error("ignoring an rpc.response of version %r", message.get("v"))
            return
        pending = self._pending.arrived(message["call"])
        if pending is None:
            return  # answered already (deadline) or from before this connection: drop
        body, ok = message["body"], message["ok"]
        if ok:
            frame = await self._result_frame(pending, body)
        else:
            frame = error_frame(pending.id_json, body)
        limit = get_config().max_response_size
        outcome = answer_outcome(ok, body)
        if out := self._pending.settle(pending.token, fit(pending.id_json, frame, limit), outcome):
            await self._write(out)

    def taken(self, token: int) -> None:
        """A worker took a request sent with ``ack``: a notification, or a call without limit."""
        self._pending.taken(token)

    def adopted(self, calls: Sequence[tuple[int, float | None]]) -> None:
        """Re-arm the deadlines of calls a resumed session brought: (token, seconds left)."""
        grace = get_config().reply_grace
        for token, left in calls:
            if left is None:  # no limit: until a worker takes it, the queue's expiry
                self._pending.arm(token, self._sender.queue_expiry + grace, self._unclaimed)
            else:
                self._pending.arm(token, left + grace, self._expire)

    def _expire(self, pending: Pending) -> None:
        """No answer by the deadline: answer -32012 now."""
        if frame := self._pending.fail(pending.token, deadline_error(pending)):
            self._spawn(self._write(frame))
        unanswered.report(pending)
        # Still queued (no worker took it in time): take it back rather than leave it to expire.
        self._spawn(self._sender.revoke([pending], everything=False))

    def _unclaimed(self, pending: Pending) -> None:
        """No worker took the request before the queue's expiry: it will never run."""
        error = unclaimed_error(pending, self._sender.queue_expiry)
        frame = self._pending.fail(pending.token, error)  # None for a notification
        unanswered.report(pending)
        self._spawn(self._sender.revoke([pending], everything=False))
        if frame:
            self._spawn(self._write(frame))

    async def close(self) -> None:
        """The connection is going: stop its calls, wherever they are."""
        calls = [pending for pending in self._pending.drain() if not pending.is_notification]
        if calls:
            # The calls this connection still waits on are of no use now. Its notifications
            # were accepted: they stay queued, or run on, within their timeout.
            await self._sender.revoke(calls, everything=True)


def _body(request: Request, text: str | None) -> str:
    """The request as a worker needs it: its frame as it came, unless that holds more."""
    if text is not None and _REQUEST_MEMBERS.issuperset(request.data):
        return text
    return dumps({key: value for key, value in request.data.items() if key in _REQUEST_MEMBERS})


class CallSender:
    """Sends the calls of the connection replying on ``reply_to``, and takes them back.

    ``scope`` gives the portable scope sent with each call; ``spawn`` runs a coroutine in the
    background, for as long as the connection lives.
    """

    def __init__(
        self,
        layer: Any,
        reply_to: str,
        consumer_key: str,
        *,
        scope: Callable[[], dict[str, Any]],
        spawn: Spawn,
    ) -> None:
        self.layer = layer
        self.reply_to = reply_to
        self._consumer_key = consumer_key
        self._scope = scope
        self._spawn = spawn

    @property
    def queue_expiry(self) -> float:
        """Seconds a request may wait in its queue before the layer drops it."""
        return expiry(self.layer)

    async def send(
        self,
        spec: MethodSpec,
        body: str,
        config: RpcConfig,
        *,
        token: int | None,
        timeout: float | None,
        ack: int | None = None,
        trace: str | None = None,
    ) -> tuple[str, Any]:
        """Put a call on its queue; returns the queue and the layer's handle to withdraw it.

        Raises ``JsonRpcError`` (-32010) when the queue is full or the layer fails.
        """
        queue = spec.queue or config.default_queue
        # The layer's clock (Redis' for our Redis layer): workers on other hosts read the
        # deadline on that same clock, whatever their own says.
        now = getattr(self.layer, "clock", time.time)()
        call = Call(
            consumer=self._consumer_key,
            method=spec.name,
            body=body,
            queue=queue,
            call=token,
            reply_to=self.reply_to,
            deadline=None if timeout is None else now + timeout,
            timeout=timeout,
            sent_at=now,
            scope=self._scope(),
            ack=ack,
            trace=trace,
        )
        breaker = _breaker(self.layer)
        if not breaker.allows():  # the layer just failed: answer now rather than wait again
            raise _busy(queue, "channel layer unavailable")
        try:
            handle = await self._enqueue(queue, call, config)
        except ChannelFull as exc:
            # Our Redis layer says why (count, bytes, or Redis out of memory); others don't.
            raise _busy(queue, getattr(exc, "reason", None) or "queue is full") from None
        except Exception as exc:  # includes the timeout
            # Like a full queue, a layer that cannot take the call now is a "try again later".
            logger.error("could not enqueue %r on %s: %r", spec.name, queue, exc)
            breaker.failed()
            if token is not None:
                # The layer withdraws a send it gave up on, but a worker may have taken it in
                # between: the workers skip or stop it, since its caller hears "not sent".
                self._spawn(self.cancel_in_workers([token]))
            raise _busy(queue, "channel layer unavailable") from None
        breaker.succeeded()
        return queue, handle

    async def _enqueue(self, queue: str, call: Call, config: RpcConfig) -> Any:
        # channels_rpc.layers.RedisChannelLayer hands back a handle that can take the request
        # back off the queue if it is cancelled before a worker took it.
        # Given the time limit, it also makes sure a call it gave up on never reaches a worker:
        # the caller is answered -32010, so the call must not run.
        enqueue = getattr(self.layer, "enqueue", None)
        if enqueue is not None:
            return await enqueue(queue, call.to_message(), timeout=config.layer_timeout)
        async with time_limit(config.layer_timeout):
            return await self.layer.send(queue, call.to_message())

    async def revoke(self, calls: Sequence[Pending], *, everything: bool) -> None:
        """Take calls back from their queues, and tell the workers to stop the rest.

        ``everything``: every call of this connection (it is closing). A close never takes back
        nor cancels notifications; one is withdrawn only once no worker would start it anyway.
        """
        leftover = [pending.token for pending in calls if not pending.is_notification]
        withdraw = getattr(self.layer, "withdraw", None)
        if withdraw is not None:
            try:
                async with time_limit(get_config().layer_timeout):
                    leftover = await _withdraw(withdraw, calls)
            except Exception as exc:  # includes the timeout
                # The workers must still hear of it: a failed withdraw leaves calls queued.
                logger.warning("could not withdraw %d calls: %r", len(calls), exc)
        # Calls a resumed session brought were made on its earlier channels: workers know
        # them by those.
        elsewhere = {p.token: p.reply for p in calls if p.reply}
        for reply in set(elsewhere.values()):
            tokens = [token for token, channel in elsewhere.items() if channel == reply]
            await self.cancel_in_workers(None if everything else tokens, reply)
        leftover = [token for token in leftover if token not in elsewhere]
        if everything or leftover:
            await self.cancel_in_workers(None if everything else leftover)

    async def cancel_in_workers(self, tokens: list[int] | None, reply: str = "") -> None:
        """Tell every worker to skip or stop these calls of ours (all of them: None).

        ``reply``: the channel they were made on, if not this connection's.
        """
        message = cancel_message(reply or self.reply_to, tokens)
        try:
            async with time_limit(get_config().layer_timeout):
                await self.layer.group_send(WORKERS_GROUP, message)
        except Exception as exc:
            count = "all" if tokens is None else len(tokens)
            logger.warning("could not cancel %s calls in the workers: %r", count, exc)


async def _withdraw(withdraw: Any, calls: Sequence[Pending]) -> list[int]:
    """Withdraw queued calls; returns the tokens that may already be running."""
    by_queue: dict[str, list[Pending]] = {}
    for pending in calls:
        by_queue.setdefault(pending.queue, []).append(pending)
    leftover: list[int] = []
    for queue, group in by_queue.items():
        handles = [pending.handle for pending in group if pending.handle is not None]
        if await withdraw(queue, handles) < len(group):
            leftover.extend(p.token for p in group if not p.is_notification)
    return leftover


_breakers: weakref.WeakKeyDictionary[Any, Breaker] = weakref.WeakKeyDictionary()


def _breaker(layer: Any) -> Breaker:
    """One breaker per channel layer: every connection of the process learns of an outage."""
    breaker = _breakers.get(layer)
    if breaker is None:
        breaker = _breakers[layer] = Breaker(cooldown=1.0)
    return breaker


def _busy(queue: str, reason: str) -> JsonRpcError:
    return JsonRpcError(None, JsonRpcErrorCode.SERVER_BUSY, {"queue": queue, "reason": reason})
