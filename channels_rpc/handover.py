"""A session taken over while its old socket still looked open: the old front-end hands over.

A socket can die without either end hearing of it (a half-open TCP connection: a NAT or a load
balancer that forgot it, a laptop that went to sleep). Its front-end then still holds the
session's calls and the frames its client has not acknowledged; Redis learns of them only at
the detach. A client that resumes elsewhere first finds the session attached
(``Resumed.taken_over``), and:

1. the new front-end asks the old one for them: :func:`request` (``rpc.handover``), sent to
   the old channel past its route (which leads to the new channel since the resume);
2. the old front-end sends its unacknowledged frames (:func:`frames`) and its calls
   (:func:`handed`) to its own channel, whose route leads to the session's channel now,
   forgets them (they are not cancelled) and closes its socket with :data:`CLOSE_TAKEN_OVER`.
   What reaches it later is sent on, as for a detached socket;
3. the new front-end holds the resume's answer back, with whatever else comes for the
   connection, until ``rpc.handed`` arrives, or :data:`WAIT` seconds have passed (the old
   front-end is gone, and what it held with it; the new one then sends itself an empty
   ``rpc.handed``, so that the wait ends in the channel's order). Then it adopts the calls,
   writes the answer naming them among the running ones, and what it held back.

An old front-end that notices its socket gone first finds the session "moved" at its detach,
and does step 2 unasked.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from channels_rpc._redis.sessions import PendingCall

__all__ = ["CLOSE_TAKEN_OVER", "HANDED", "HANDOVER", "REASON", "WAIT", "calls_of", "handed"]

#: The message types: the new front-end's request, the old one's answer.
HANDOVER: Final = "rpc.handover"
HANDED: Final = "rpc.handed"
#: Seconds a taking-over front-end waits for the old one before answering the resume without
#: what it held: it answers within milliseconds when it is alive.
WAIT: Final = 2.0
#: The close code of a socket whose session was resumed on another connection.
CLOSE_TAKEN_OVER: Final = 4013
REASON: Final = "session resumed on another connection"


def request(session_id: str, to: str) -> dict[str, Any]:
    """``rpc.handover``: the session ``session_id`` is attached to channel ``to`` now."""
    return {"type": HANDOVER, "session": session_id, "to": to}


def handed(session_id: str, seq: int, calls: Iterable[PendingCall]) -> dict[str, Any]:
    """``rpc.handed``: the calls of the session that were pending on the old channel, and the
    last ``seq`` its front-end gave out (the new one numbers on from there)."""
    return {
        "type": HANDED,
        "session": session_id,
        "seq": seq,
        "calls": [
            [c.channel, c.token, c.rpc_id_json, c.deadline, c.queue, c.method] for c in calls
        ],
    }


def calls_of(message: dict[str, Any]) -> list[PendingCall]:
    return [PendingCall(*fields) for fields in message.get("calls", ())]
