"""A connection's session: what outlives its socket for a window (docs/reference/sessions.md).

A client asks for one (``rpc.session``); from then on every frame written to it carries
``seq``, and the frames the client has not yet acknowledged (``rpc.ack``) stay in the
connection's :class:`Outbox`. When the socket goes without a close 1000, the session is
detached (:meth:`SessionLink.detach`): its calls run on, the unacknowledged frames and whatever
comes for the connection are kept in Redis (:mod:`channels_rpc._redis.sessions`), and a client
that comes back within the window, on any front-end, resumes it (:meth:`SessionLink.resume`):
it gets the kept frames in order, each once, then live traffic. A window that ends cancels the
calls as a close does (:func:`sweep_forever`).

The Redis side is the layer's ``sessions``; a layer without it (the in-memory one) has no
sessions, and ``rpc.session`` is answered -32601.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Container, Iterable
from dataclasses import dataclass
from typing import Any, Final

from channels_rpc import groups
from channels_rpc._layer import expiry
from channels_rpc._redis.sessions import PendingCall, Refused, Sessions
from channels_rpc.config import RpcConfig, get_config
from channels_rpc.envelope import RESPONSE, WORKERS_GROUP, cancel_message
from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode
from channels_rpc.logsafe import protect
from channels_rpc.pending import DuplicateId, Pending, PendingCalls

__all__ = [
    "ACK",
    "FRAME",
    "RESUME",
    "SESSION",
    "Outbox",
    "SessionLink",
    "principal_of",
    "stamp",
]

logger = protect(logging.getLogger("channels_rpc"))

#: The methods of sessions: open one, resume one (calls), acknowledge frames (a notification).
SESSION: Final = "rpc.session"
RESUME: Final = "rpc.resume"
ACK: Final = "rpc.ack"
#: The message type of a frame written before the socket went, kept for the resume.
FRAME: Final = "rpc.frame"
#: How long a detached connection's front-end goes on taking what arrives for it, once nothing
#: came for this long: a message sent before the detach reaches it within milliseconds.
_DRAIN_IDLE: Final = 1.0
#: Seconds between two sweeps of ended windows.
SWEEP_INTERVAL: Final = 1.0


def stamp(frame: str, seq: int) -> str:
    """``frame`` with ``"seq": seq`` as its last member (on each element of a batch array)."""
    if frame.startswith("{"):
        return f'{frame[:-1]},"seq":{seq}}}'
    decoder, parts, index = json.JSONDecoder(), [], 1
    while index < len(frame) - 1:
        _, end = decoder.raw_decode(frame, index)
        parts.append(f'{frame[index : end - 1]},"seq":{seq}}}')
        index = end + 1  # past the comma
    return "[" + ",".join(parts) + "]"


class Outbox:
    """The frames written to a session's socket and not yet acknowledged by its client.

    Bounded like a detached session's kept frames: past ``max_frames`` or ``max_bytes`` the
    oldest go (a client that never acknowledges cannot grow the front-end).
    """

    __slots__ = ("_bytes", "_frames", "max_bytes", "max_frames", "seq")

    def __init__(self, max_frames: int, max_bytes: int, seq: int = 0) -> None:
        self.seq = seq  # the last one given out
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._frames: deque[tuple[int, str, int]] = deque()
        self._bytes = 0

    def stamp(self, frame: str) -> str:
        """Number a frame about to be written, and keep it until acknowledged."""
        self.seq += 1
        stamped = stamp(frame, self.seq)
        self.add(self.seq, stamped)
        return stamped

    def add(self, seq: int, frame: str) -> None:
        size = len(frame)
        self._frames.append((seq, frame, size))
        self._bytes += size
        while len(self._frames) > self.max_frames or self._bytes > self.max_bytes:
            self._bytes -= self._frames.popleft()[2]

    def ack(self, seq: int) -> None:
        """The client has every frame up to ``seq``."""
        while self._frames and self._frames[0][0] <= seq:
            self._bytes -= self._frames.popleft()[2]

    def unacked(self) -> list[tuple[int, str]]:
        return [(seq, frame) for seq, frame, _ in self._frames]

    def __len__(self) -> int:
        return len(self._frames)


def principal_of(scope: dict[str, Any]) -> str:
    """Who a session belongs to: the authenticated user, else anyone holding its id."""
    user = scope.get("user")
    if user is not None and getattr(user, "is_authenticated", False):
        return f"user:{user.pk}"
    return "anonymous"


@dataclass(slots=True)
class _Resume:
    """What a resume delivers: the kept messages, those numbered up to ``seen`` left out."""

    messages: list[dict[str, Any]]
    seen: int


class SessionLink:
    """The session of one connection, between its socket and the layer's ``sessions``.

    ``pending`` is the connection's call table (calls are adopted into it on resume and recorded
    from it on detach); ``channel`` its reply channel.
    """

    def __init__(
        self,
        sessions: Sessions,
        channel: str,
        pending: PendingCalls,
        principal: Callable[[], Awaitable[str]],
    ) -> None:
        self.sessions = sessions
        self.channel = channel
        self.pending = pending
        self.principal = principal
        self.clock: Callable[[], float] = sessions.layer.clock  # deadlines are on the layer's
        self.groups: list[str] = []  # moved here by the resume
        self.id: str | None = None
        self.outbox: Outbox | None = None
        self.window = 0.0
        self._resume: _Resume | None = None
        self.adopted: list[tuple[int, float | None]] = []
        self.seen = 0  # the last seq the client had seen when it resumed
        self.running: list[Any] = []  # the ids the resume's answer names
        #: Taken over from this channel, its calls not handed over yet (see handover.py).
        self.taken_from: str | None = None

    @property
    def active(self) -> bool:
        return self.id is not None

    async def open(self, config: RpcConfig) -> dict[str, Any]:
        """``rpc.session``: a new session for this connection; its id and window."""
        if self.id is not None:
            return {"session": self.id, "window": self.window}
        self._numbered()
        self.window = config.session_window
        self.id = await self.sessions.open(
            self.channel,
            await self.principal(),
            self.window,
            config.session_max_frames,
            config.session_max_bytes,
        )
        self.outbox = Outbox(config.session_max_frames, config.session_max_bytes)
        ensure_sweeper(self.sessions)
        return {"session": self.id, "window": self.window}

    async def resume(self, params: Any, config: RpcConfig) -> None:
        """``rpc.resume {session, seq}``: attach the session here; raises -32015 if refused.

        The answer (:meth:`answer`) names the calls still running; the kept frames
        (:meth:`kept`) are written before it, so that a call the client waits on that is
        neither answered by then nor running is known lost.
        """
        session_id, seen = _resume_params(params)
        if self.id is not None or len(self.pending):
            raise _refused("resume only as the first call of a connection")
        found = await self.sessions.resume(session_id, await self.principal(), self.channel)
        if isinstance(found, Refused):
            raise _refused(found.reason)
        self.groups = found.groups
        self.id, self.window, self.seen = session_id, found.window, seen
        self.outbox = Outbox(
            config.session_max_frames, config.session_max_bytes, max(found.seq, seen)
        )
        self._resume = _Resume(found.messages, seen)
        answered = {m.get("call") for m in found.messages if m.get("type") == RESPONSE}
        self.adopted = self.adopt(found.calls, answered)
        self.taken_from = found.previous if found.taken_over else None
        ensure_sweeper(self.sessions)

    def answer(self) -> dict[str, Any]:
        """The resume's answer."""
        return {"session": self.id, "window": self.window, "running": self.running}

    def kept(self) -> list[dict[str, Any]]:
        """The messages the resume took, once: frames already seen by the client left out."""
        resume, self._resume = self._resume, None
        if resume is None:
            return []
        return [
            m
            for m in resume.messages
            if m.get("type") != FRAME or int(m.get("seq", 0)) > resume.seen
        ]

    def adopt(
        self, calls: Iterable[PendingCall], answered: Container[Any] = ()
    ) -> list[tuple[int, float | None]]:
        """Take the session's calls into this connection's table; name those not ``answered``
        (by a kept message) as running in the answer.

        Returns each with the seconds left of its time limit (None: none), for the connection
        to re-arm its deadline. (A call whose id the client uses again here is left out: its
        answer could not be told apart.)
        """
        numbered = [(token, call) for call in calls if (token := _token(call)) is not None]
        self._numbered(token for token, _ in numbered)
        now, adopted = self.clock(), []
        for token, call in numbered:
            left = None if call.deadline is None else max(0.0, call.deadline - now)
            reply = "" if call.channel == self.channel else call.channel
            try:
                self.pending.adopt(token, call.rpc_id_json, call.method, left, call.queue, reply)
            except DuplicateId:
                continue
            adopted.append((token, left))
            if call.rpc_id_json != "null" and token not in answered:
                self.running.append(json.loads(call.rpc_id_json))
        return adopted

    def _numbered(self, tokens: Iterable[int] = ()) -> None:
        # Answers for calls made on the session's earlier channels are sent on to this one:
        # tokens must not collide with theirs.
        self.pending.renumber(max([secrets.randbits(48) << 12, *tokens]))

    def ack(self, params: Any) -> None:
        seq = params.get("seq") if isinstance(params, dict) else None
        if self.outbox is not None and isinstance(seq, int) and not isinstance(seq, bool):
            self.outbox.ack(seq)

    def write(self, frame: str) -> str:
        """The frame to write: numbered, and kept until acknowledged."""
        return self.outbox.stamp(frame) if self.outbox is not None else frame

    async def detach(self, calls: list[Pending], grace: float) -> str:
        """The socket went: keep the session for its window. "detached", "moved" or "unknown".

        ``calls`` are the connection's pending calls, recorded with the session; ``grace`` the
        REPLY_GRACE their deadline timers include.
        """
        if self.id is None or self.outbox is None:
            return "unknown"
        done = await self.sessions.detach(
            self.id, self.channel, self.window, self.outbox.seq, self.records(calls, grace)
        )
        if done == "detached":
            for seq, frame in self.outbox.unacked():
                await self.sessions.keep(self.channel, {"type": FRAME, "seq": seq, "body": frame})
        return done

    def records(self, calls: list[Pending], grace: float) -> list[PendingCall]:
        """``calls`` as the session keeps them, deadlines on the layer's clock."""
        offset = self.clock() - asyncio.get_running_loop().time() - grace
        return [_record(pending, self.channel, offset) for pending in calls]

    async def end(self) -> list[str]:
        """Close 1000: the session ends now. Its other channels, whose calls to cancel."""
        if self.id is None:
            return []
        channels = await self.sessions.end(self.id, self.channel)
        return [channel for channel in channels if channel != self.channel]


def _record(pending: Pending, channel: str, offset: float) -> PendingCall:
    """``pending`` for the session; ``offset`` takes its deadline timer to the layer's clock."""
    due = pending.due_at
    deadline = None if due is None or pending.timeout is None else due + offset
    return PendingCall(
        channel=pending.reply or channel,
        token=str(pending.token),
        rpc_id_json=pending.id_json,
        deadline=deadline,
        queue=pending.queue,
        method=pending.method,
    )


def _token(call: PendingCall) -> int | None:
    try:
        return int(call.token)
    except ValueError:
        return None


def _resume_params(params: Any) -> tuple[str, int]:
    session_id = params.get("session") if isinstance(params, dict) else None
    seen = params.get("seq", 0) if isinstance(params, dict) else 0
    if not isinstance(session_id, str) or not isinstance(seen, int) or isinstance(seen, bool):
        raise JsonRpcError(
            None,
            JsonRpcErrorCode.INVALID_PARAMS,
            {"reason": "rpc.resume takes {'session': id, 'seq': last seq seen}"},
        )
    return session_id, max(0, seen)


def _refused(reason: str) -> JsonRpcError:
    return JsonRpcError(None, JsonRpcErrorCode.SESSION_NOT_FOUND, {"reason": reason})


# -------------------------------------------------------------------------------------------
# Ending sessions: what a closed connection's close does, for the calls and groups of channels
# whose socket is gone


async def release(layer: Any, channels: Iterable[str]) -> None:
    """Cancel the calls made on ``channels`` and leave their groups (their session ended)."""
    for channel in channels:
        try:
            await layer.group_send(WORKERS_GROUP, cancel_message(channel, None))
            await groups.close(layer, channel, ttl=expiry(layer) + get_config().reply_grace)
        except Exception as exc:
            logger.warning("could not release the session channel %s: %r", channel, exc)


_sweepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)


def ensure_sweeper(sessions: Sessions) -> None:
    """Sweep ended windows from this event loop, once per loop (any front-end may)."""
    loop = asyncio.get_running_loop()
    task = _sweepers.get(loop)
    if task is None or task.done():
        _sweepers[loop] = loop.create_task(sweep_forever(sessions), name="channels_rpc-sweeper")


async def sweep_forever(sessions: Sessions, interval: float = SWEEP_INTERVAL) -> None:
    """End the sessions whose window is over: their calls are cancelled, their groups left."""
    while True:
        await asyncio.sleep(interval)
        try:
            swept = await sessions.sweep()
        except Exception as exc:
            logger.warning("could not sweep ended sessions: %r", exc)
            continue
        if swept:
            logger.info("%d session channels ended with their window", len(swept))
            await release(sessions.layer, [channel for channel, _ in swept])


async def drain(
    sessions: Sessions,
    channel: str,
    receive: Callable[[], Awaitable[dict[str, Any]]],
    first: list[dict[str, Any]],
) -> None:
    """Keep what reaches a detached channel here: sent before the detach, it is not in Redis.

    ``first``: messages taken already and not handled. Ends once nothing came for a second.
    """
    try:
        for message in first:
            await sessions.keep(channel, message)
        while True:
            try:
                message = await asyncio.wait_for(receive(), _DRAIN_IDLE)
            except asyncio.TimeoutError:
                return
            await sessions.keep(channel, message)
    except Exception as exc:
        logger.warning("could not keep what came for %s after its socket went: %r", channel, exc)
