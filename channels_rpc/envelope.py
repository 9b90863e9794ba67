"""The messages the front-end and the workers exchange over the channel layer.

This module is the only thing the two sides share. Every message carries ``"v"``; a process that
receives a version it does not know answers with an error instead of guessing.

``rpc.request`` (front-end -> ``queue``): the request object travels as JSON text (``body``), the
validated frame itself when it held a single request. Text keeps msgpack (channels-redis'
serializer) away from what it cannot carry, such as integers beyond 64 bits and lone surrogates,
and spares a decode and re-encode. ``call`` is a number the front-end chose for the call; the
JSON-RPC id never leaves the front-end, which is why ids of any JSON shape route correctly.
``deadline`` and ``sent`` are epoch seconds on the channel layer's clock (``layer.clock()``:
Redis' ``TIME`` for this package's Redis layer), so that hosts whose clocks disagree still
agree on how much time a call has left. ``ack``, when set, asks the worker to send
``rpc.taken`` with that number as soon as it takes the request: the front-end uses it for the
requests it has no other news of (notifications, calls without a time limit).

``rpc.response`` (worker -> the front-end's reply channel): ``body`` is the JSON text of the
result, or of the error object when ``ok`` is false.

``rpc.taken`` (worker -> front-end): the request sent with ``ack`` was taken by a worker.

``rpc.push`` (anyone -> a front-end's channel): ``body`` is a complete notification frame.

``rpc.cancel`` (front-end -> the ``rpc.workers`` group, which every worker process joins):
stop the calls ``calls`` of the connection ``reply`` (all of them when ``calls`` is null), or
skip them if they are still to come.

``rpc.membership`` (worker -> front-end): the method joined (``join``) or left (``leave``) a
group for its caller; the front-end remembers it, to leave on disconnect and to refresh.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from channels_rpc.protocol import dumps

__all__ = [
    "CANCEL",
    "MEMBERSHIP",
    "PUSH",
    "REQUEST",
    "RESPONSE",
    "TAKEN",
    "VERSION",
    "WORKERS_GROUP",
    "Call",
    "EnvelopeError",
    "cancel_message",
    "membership_message",
    "notification_frame",
    "push_message",
    "response_message",
    "taken_message",
]

VERSION: Final = 1
REQUEST: Final = "rpc.request"
RESPONSE: Final = "rpc.response"
TAKEN: Final = "rpc.taken"
PUSH: Final = "rpc.push"
CANCEL: Final = "rpc.cancel"
MEMBERSHIP: Final = "rpc.membership"
#: The group every worker process joins to hear cancellations.
WORKERS_GROUP: Final = "rpc.workers"


class EnvelopeError(ValueError):
    """A channel-layer message that is not a request of a version this process understands."""


@dataclass(frozen=True, slots=True)
class Call:
    """One request on its way to, or inside, a worker."""

    consumer: str
    method: str
    body: str
    queue: str  # where it was sent (a stopping worker puts a request it cannot start back)
    call: int | None  # None for notifications: nobody waits for an answer
    reply_to: str
    deadline: float | None  # layer-clock seconds by which execution must end; None: no limit
    timeout: float | None  # the method's timeout, for the error message
    sent_at: float  # layer-clock seconds, for queue-wait measurements
    scope: Mapping[str, Any]
    ack: int | None = None  # send rpc.taken with this number once a worker takes the request
    trace: str | None = None  # the front-end's span, as a W3C traceparent (tracing.py)

    @property
    def is_notification(self) -> bool:
        return self.call is None

    def to_message(self) -> dict[str, Any]:
        return {
            "type": REQUEST,
            "v": VERSION,
            "consumer": self.consumer,
            "method": self.method,
            "body": self.body,
            "queue": self.queue,
            "call": self.call,
            "reply": self.reply_to,
            "deadline": self.deadline,
            "timeout": self.timeout,
            "sent": self.sent_at,
            "scope": dict(self.scope),
            "ack": self.ack,
            "trace": self.trace,
        }

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> Call:
        if message.get("v") != VERSION:
            raise EnvelopeError(f"unsupported rpc.request version {message.get('v')!r}")
        try:
            return cls(
                consumer=message["consumer"],
                method=message["method"],
                body=message["body"],
                queue=message["queue"],
                call=message["call"],
                reply_to=message["reply"],
                deadline=message["deadline"],
                timeout=message["timeout"],
                sent_at=message["sent"],
                scope=message["scope"],
                ack=message.get("ack"),
                trace=message.get("trace"),
            )
        except KeyError as exc:
            raise EnvelopeError(f"rpc.request without {exc.args[0]!r}") from None


def response_message(call: int, ok: bool, body: str) -> dict[str, Any]:
    return {"type": RESPONSE, "v": VERSION, "call": call, "ok": ok, "body": body}


def taken_message(ack: int) -> dict[str, Any]:
    return {"type": TAKEN, "v": VERSION, "ack": ack}


def notification_frame(
    method: str, params: Any = None, *, encoder: type[json.JSONEncoder] | None = None
) -> str:
    """A JSON-RPC notification as frame text (``params`` left out when None)."""
    payload: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        payload["params"] = params
    return dumps(payload, encoder)


def push_message(frame: str) -> dict[str, Any]:
    return {"type": PUSH, "v": VERSION, "body": frame}


def cancel_message(reply_to: str, calls: list[int] | None) -> dict[str, Any]:
    return {"type": CANCEL, "v": VERSION, "reply": reply_to, "calls": calls}


def membership_message(*, join: str | None = None, leave: str | None = None) -> dict[str, Any]:
    return {"type": MEMBERSHIP, "v": VERSION, "join": join, "leave": leave}
