"""The calls one connection is waiting on, and the batches they belong to.

A call is known by a token this table hands out; the JSON-RPC id stays here, encoded once, and
only has to be unique among the connection's pending calls (JSON-RPC 2.0 asks no more). Ids
compare as JSON values: ``1`` and ``1.0`` are the same id, ``"1"`` is another; ``null`` ids are
not tracked, since a client cannot tell their answers apart anyway.

Every call is answered exactly once, and this table keeps that promise itself: a call leaves it
answered through :meth:`PendingCalls.settle` (or :meth:`~PendingCalls.fail`, with an error), or
unanswered through :meth:`~PendingCalls.take` (the close); either way its deadline is disarmed.
Answers that arrive for a token no longer here (after its deadline, after a cancellation, or for
a call answered already) are dropped. A deadline is a timer the table sets
(:meth:`~PendingCalls.arm`) on the scheduler it is given: the running event loop, or a fake
clock in tests.

A call of a batch is answered through its :class:`~channels_rpc.batches.Batch`, which writes
one array once every element that expects an answer has one.

Notifications are tracked too, from the moment they are enqueued until a worker takes them
(``rpc.taken``), so that a connection cannot fill the queues with them beyond its in-flight limit;
they are never answered. A limit of 0 means none.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from channels_rpc.batches import Batch
from channels_rpc.exceptions import JsonRpcErrorCode, error_object
from channels_rpc.logsafe import protect
from channels_rpc.protocol import JsonId, encode_error, encode_id, error_frame

__all__ = [
    "CallObserver",
    "DuplicateId",
    "Pending",
    "PendingCalls",
    "Scheduler",
    "TooManyInFlight",
    "deadline_error",
    "unclaimed_error",
]

# The front-end's records, under the front-end's logger name.
logger = protect(logging.getLogger("channels_rpc"))

IdKey: TypeAlias = tuple[str, Any]


class Timer(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """What the table needs of an event loop to set deadlines (``asyncio`` loops have it)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object], /) -> Timer: ...


class DuplicateId(Exception):
    """A call reused the id of a call that is still pending on this connection."""

    def error(self) -> dict[str, Any]:
        why = "Request ID is already in use by a pending request"
        return error_object(JsonRpcErrorCode.INVALID_REQUEST, data={"field": why})


class TooManyInFlight(Exception):
    """The connection already has as many pending calls as it may."""

    def error(self) -> dict[str, Any]:
        reason = "too many calls in flight on this connection"
        return error_object(
            JsonRpcErrorCode.SERVER_BUSY, data={"limit": self.args[0], "reason": reason}
        )


@dataclass(slots=True, eq=False)
class Pending:
    """A call this connection waits on."""

    token: int
    id_json: str
    key: IdKey | None
    method: str
    timeout: float | None
    batch: Batch | None = None
    slot: int = -1
    timer: Timer | None = field(default=None, repr=False)  # its deadline, while armed
    queue: str = ""  # where the request was enqueued
    handle: Any = None  # the layer's handle to withdraw it while still queued
    is_notification: bool = False  # held only until a worker takes it
    reply: str = ""  # the channel it was made on, if another (a resumed session's earlier one)
    due_at: float | None = None  # when its deadline fires, on the scheduler's clock
    opened_at: float = 0.0  # set by the table's observers, if any
    span: Any = field(default=None, repr=False)  # its trace span (channels_rpc.tracing)

    def route(self, frame: str) -> str | None:
        """The frame to write for this answer: itself, or its batch's array once complete."""
        if self.batch is None:
            return frame
        return self.batch.fill(self.slot, frame)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def id_key(rpc_id: JsonId) -> IdKey | None:
    if rpc_id is None:
        return None
    return ("s", rpc_id) if isinstance(rpc_id, str) else ("n", rpc_id)


OnExpire = Callable[[Pending], None]


class CallObserver(Protocol):
    """Hears of every call (not notification) entering and leaving a table: metrics.

    ``outcome``: "result", the error code answered ("-32012"), or, for a call that left
    unanswered, "disconnected" or "detached" (:meth:`PendingCalls.drain`).
    """

    def opened(self, pending: Pending) -> None: ...

    def closed(self, pending: Pending, outcome: str) -> None: ...


class PendingCalls:
    """Pending calls of one connection, by token and by JSON-RPC id; ``limit`` 0: no limit.

    ``scheduler`` sets the deadlines (None: the event loop running when one is armed).
    """

    def __init__(
        self,
        limit: int,
        scheduler: Scheduler | None = None,
        observers: Sequence[CallObserver] = (),
    ) -> None:
        self.limit: float = limit or math.inf
        self._scheduler = scheduler
        self._observers = tuple(observers)
        self._by_token: dict[int, Pending] = {}
        self._by_id: dict[IdKey, int] = {}
        self._last_token = 0

    def __len__(self) -> int:
        return len(self._by_token)

    def __iter__(self) -> Iterator[Pending]:
        return iter(list(self._by_token.values()))

    def open(
        self, rpc_id: JsonId, method: str, timeout: float | None, batch: Batch | None = None
    ) -> Pending:
        key = id_key(rpc_id)
        if key is not None and key in self._by_id:
            raise DuplicateId(rpc_id)
        if len(self._by_token) >= self.limit:
            raise TooManyInFlight(self.limit)
        self._last_token += 1
        pending = Pending(self._last_token, encode_id(rpc_id), key, method, timeout, batch)
        if batch is not None:
            pending.slot = batch.reserve(pending.id_json)
        self._by_token[pending.token] = pending
        if key is not None:
            self._by_id[key] = pending.token
        for observer in self._observers:
            observer.opened(pending)
        return pending

    def adopt(
        self, token: int, id_json: str, method: str, timeout: float | None, queue: str, reply: str
    ) -> Pending:
        """Take over a call made on another connection of the same session (a resume)."""
        key = id_key(json.loads(id_json))
        if key is not None and key in self._by_id:
            raise DuplicateId(id_json)
        pending = Pending(token, id_json, key, method, timeout, queue=queue, reply=reply)
        self._by_token[token] = pending
        if key is not None:
            self._by_id[key] = token
        for observer in self._observers:
            observer.opened(pending)
        return pending

    def renumber(self, after: int) -> None:
        """Hand out tokens above ``after`` from now on (see :meth:`adopt`)."""
        self._last_token = max(self._last_token, after)

    def open_notification(self, method: str, timeout: float | None) -> Pending:
        """Count a notification against the limit until a worker takes it (:meth:`taken`)."""
        if len(self._by_token) >= self.limit:
            raise TooManyInFlight(self.limit)
        self._last_token += 1
        pending = Pending(self._last_token, "null", None, method, timeout, is_notification=True)
        self._by_token[pending.token] = pending
        return pending

    def arm(self, token: int, delay: float, on_expire: OnExpire) -> None:
        """Give a call a deadline ``delay`` seconds from now.

        If it is still here then, ``on_expire(pending)`` runs; it must settle, fail or take it.
        """
        pending = self._by_token.get(token)
        if pending is None:
            return
        pending.disarm()
        scheduler = self._scheduler or asyncio.get_running_loop()
        expire = functools.partial(self._expire, token, on_expire)
        pending.due_at = scheduler.time() + delay
        pending.timer = scheduler.call_at(pending.due_at, expire)

    def _expire(self, token: int, on_expire: OnExpire) -> None:
        pending = self._by_token.get(token)
        if pending is not None:
            pending.timer = None
            on_expire(pending)

    def get(self, token: int) -> Pending | None:
        return self._by_token.get(token)

    def find(self, rpc_id: JsonId) -> Pending | None:
        """The pending call with this JSON-RPC id (null ids are not tracked)."""
        key = id_key(rpc_id)
        token = self._by_id.get(key) if key is not None else None
        return self._by_token.get(token) if token is not None else None

    def arrived(self, token: int) -> Pending | None:
        """The call an answer came for, its deadline disarmed; None if it was settled already.

        The answer may still be prepared (awaited) before :meth:`settle`: its deadline no
        longer applies, since it came in time.
        """
        pending = self._by_token.get(token)
        if pending is not None:
            pending.disarm()
        return pending

    def taken(self, token: int) -> None:
        """A worker took the request: its wait for one ends, and a notification is done."""
        pending = self._by_token.get(token)
        if pending is None:
            return
        pending.disarm()
        if pending.is_notification:
            self.take(token)  # its in-flight slot is free again

    def settle(self, token: int, frame: str, outcome: str = "result") -> str | None:
        """Answer a call with ``frame``: the one way a call leaves the table answered.

        Returns what to write: the frame, or its batch's array once complete. None when there
        is nothing to write: the call was settled already (an answer after its deadline, or
        after a cancellation: dropped), it is a notification (never answered), or the rest of
        its batch is still pending.
        """
        pending = self.take(token)
        if pending is None or pending.is_notification:
            return None
        for observer in self._observers:
            observer.closed(pending, outcome)
        return pending.route(frame)

    def fail(self, token: int, error: dict[str, Any]) -> str | None:
        """Answer a call with the error object ``error``; what to write, as :meth:`settle`."""
        pending = self._by_token.get(token)
        if pending is None:
            return None
        frame = error_frame(pending.id_json, encode_error(error))
        return self.settle(token, frame, str(error.get("code")))

    def take(self, token: int) -> Pending | None:
        """Remove and return a pending call, unanswered; None if it was answered already."""
        pending = self._by_token.pop(token, None)
        if pending is None:
            return None
        if pending.key is not None:
            del self._by_id[pending.key]
        pending.disarm()
        return pending

    def drain(self, outcome: str = "disconnected") -> list[Pending]:
        """Remove and return every pending call (the connection is going away): for the
        observer, ``outcome`` "disconnected" (they are cancelled) or "detached" (they run on
        for the connection's session)."""
        calls = list(self._by_token.values())
        self._by_token.clear()
        self._by_id.clear()
        for pending in calls:
            pending.disarm()
            if not pending.is_notification:
                for observer in self._observers:
                    observer.closed(pending, outcome)
        return calls


def deadline_error(pending: Pending) -> dict[str, Any]:
    """No answer came by the call's deadline (its timeout, plus ``REPLY_GRACE``)."""
    return error_object(
        JsonRpcErrorCode.DEADLINE_EXCEEDED,
        f"Deadline Exceeded: no answer within {pending.timeout:.1f} seconds",
        {"timeout": pending.timeout, "queue": pending.queue},
    )


def unclaimed_error(pending: Pending, wait: float) -> dict[str, Any]:
    """No worker took the call within ``wait`` seconds, the queue's expiry: it will never run."""
    reason = f"no worker took the call within {wait:.0f} seconds"
    return error_object(
        JsonRpcErrorCode.SERVICE_UNAVAILABLE,
        f"Service Unavailable: {reason}",
        {"queue": pending.queue, "reason": reason},
    )
