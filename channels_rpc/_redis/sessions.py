"""Sessions in Redis: the state of a connection, kept for a window after its socket went.

A session (``open``) belongs to a principal and is attached to one reply channel at a time.
While it is detached (``detach``: the socket went), what is sent to its channel is kept in the
session, in order, bounded in frames and bytes; ``resume`` attaches it to a new channel (on any
front-end), hands over what was kept and the calls still running, and moves the channel's group
memberships. A detached session whose window ends is swept (``sweep``): its caller cancels its
calls as for a closed connection. ``end`` ends one at once (the client closed with 1000).

The Lua scripts, one per operation, are in :mod:`channels_rpc._redis.session_scripts`, with
the keys they keep (``P`` is ``sessions_prefix`` of the layer's prefix): ``P session:{S}``
(and its ``:early``, ``:kept`` and ``:calls``), ``P route:{channel}``, ``P sessions:expiring``.
This module is the sessions' API: which host runs each script, and what becomes of its answer.
When a send meets a route, see :mod:`channels_rpc._redis.routing`.

Where they live: a route on its channel's host (the send script reads it in the same call that
writes to the channel); a session's own keys on the host its id hashes to, and ``open`` draws
ids until that is its channel's host, so that a send to a detached channel is kept in the same
script. A session resumed on a channel of another host keeps its keys where they are; the new
channel's route then says '@' and sends to it take a second round trip to that host.

Why two lists: the front-end of a detached channel may still receive messages that were sent
before the detach (queued, or popped but not yet handled); they are older than anything the
send script kept, so they go to ``early``, and ``resume`` hands over ``early`` then ``kept``.

Every one of these operations is one script on one host (plus, when a channel lives on another
host than its session, a write of its route there, and ``resume``'s move of memberships: groups
live on their own hosts). Times are Redis' (``TIME``). Scripts that only free memory (resume,
end, sweep) run over ``maxmemory``; the others are refused then and raise ``LayerFull``. A
session lost with Redis' data (``FLUSHDB``, a restart without persistence) is unknown: resume
refuses it, and sends to its channel go the normal way.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from channels_rpc._redis.memberships import Memberships
from channels_rpc._redis.outgoing import full_if_out_of_memory
from channels_rpc._redis.routing import ask
from channels_rpc._redis.scripts import Script, sessions_prefix, text
from channels_rpc._redis.session_scripts import (
    DETACH,
    END,
    KEEP,
    OPEN,
    REPOINT,
    RESUME,
    SWEEP,
    TRACK,
)

__all__ = [
    "ATTACHED_TTL",
    "OVERFLOWED",
    "SWEEP_GRACE",
    "UNKNOWN",
    "KeepResult",
    "PendingCall",
    "Refused",
    "Resumed",
    "Sessions",
]


#: Session ids: a version, then 24 random bytes (192 bits) in URL-safe base64.
ID_VERSION: Final = "s1."
_ID: Final = re.compile(r"s1\.[A-Za-z0-9_-]{32}\Z")
#: Seconds the keys of an attached session live without being written to (open, track, resume,
#: detach write them): a front-end that died without detaching leaves nothing for longer.
ATTACHED_TTL: Final = 86_400
#: Seconds a detached session's keys outlive its window: the sweep has that long to cancel its
#: calls (front-ends sweep every second or so).
SWEEP_GRACE: Final = 300
#: Sessions one sweep script takes at most.
SWEEP_BATCH: Final = 100

UNKNOWN: Final = "unknown or expired"
OVERFLOWED: Final = "overflowed"

#: What ``keep`` did: kept in the session; sent on to the channel the session was resumed on;
#: dropped (the session overflowed); or nothing, there being no detached session for the
#: channel (no session, or one attached to it).
KeepResult = Literal["kept", "forwarded", "dropped", "none"]


@dataclass(frozen=True, slots=True)
class PendingCall:
    """A call of the session still running: its answer comes to ``channel``."""

    channel: str  # the reply channel it was made on (a cancel names it too)
    token: str
    rpc_id_json: str
    deadline: float | None  # on Redis' clock
    queue: str
    method: str = ""


@dataclass(frozen=True, slots=True)
class Resumed:
    """What a resume hands over. ``messages``: what was kept, in order, each once.

    ``seq`` is the last sequence number the session's front-end gave out (``detach``): the
    notifications among ``messages``, and those after, take the next ones. ``calls`` are the
    calls tracked and not untracked: those answered in ``messages`` among them.
    """

    messages: list[dict[str, Any]]
    calls: list[PendingCall]
    seq: int
    window: float
    previous: str  # the channel it was attached to
    groups: list[str]  # the group memberships moved from there to the new channel
    #: It was attached to ``previous`` (whose front-end has not seen its socket go): that
    #: front-end still holds its calls and unacknowledged frames (see ``rpc.handover``).
    taken_over: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """A resume refused, nothing changed: ``"unknown or expired"``, or ``"overflowed"``."""

    reason: str


class Sessions:
    """The sessions of one ``RedisChannelLayer`` (see the module docstring)."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.prefix = sessions_prefix(layer.prefix)
        self._memberships = Memberships(layer)

    # ---------------------------------------------------------------------------------------
    # A session's life

    async def open(
        self, channel: str, principal: str, window: float, max_frames: int, max_bytes: int
    ) -> str:
        """A new session for reply channel ``channel``, attached to it; its id."""
        if "!" not in channel:
            raise ValueError(f"{channel!r} is not a reply channel (process-local)")
        host = self._channel_host(channel)
        while True:  # about ring_size draws: the session's keys on its channel's host
            session_id = ID_VERSION + secrets.token_urlsafe(24)
            if self._home(session_id) == host:
                break
        keys = [self._session(session_id), self._route(channel)]
        args = [session_id, principal, channel, repr(float(window)), max_frames, max_bytes]
        if not await self._run(OPEN, host, keys, [*args, ATTACHED_TTL]):
            raise RuntimeError("a fresh session id was taken")  # 192 random bits: never
        return session_id

    async def track(
        self,
        session_id: str,
        token: int | str,
        rpc_id_json: str,
        deadline: float | None,
        queue: str,
    ) -> bool:
        """Record a call made on the session's channel; False if the session is unknown."""
        record = _record(PendingCall("", str(token), rpc_id_json, deadline, queue))
        return await self._track(session_id, token, record, "")

    async def untrack(self, session_id: str, token: int | str, channel: str = "") -> bool:
        """Forget a call (answered); ``channel``: the one it was made on, if not the current."""
        return await self._track(session_id, token, "", channel)

    async def detach(
        self,
        session_id: str,
        channel: str,
        window: float,
        seq: int = 0,
        calls: Sequence[PendingCall] = (),
    ) -> Literal["detached", "moved", "unknown"]:
        """The socket of ``channel`` went: keep what comes for it for ``window`` seconds.

        ``seq``: the last sequence number its front-end gave out. ``calls``: pending calls to
        record now, in the same step (for a front-end that does not ``track`` each call as it
        is made, which costs a round trip per call; it loses them if it dies before detaching,
        though, and a resume then finds none). "moved": the session was resumed on another
        channel meanwhile (then neither cancel its calls nor close the channel's memberships:
        they are the session's); "unknown": there is no such session (any more), and the
        connection closes as one without a session does.
        """
        home = self._home(session_id)
        route = self._route_if_on(home, channel)
        keys = [self._session(session_id), self._session(session_id, ":calls"), self._expiring()]
        args = [session_id, channel, repr(float(window)), seq, SWEEP_GRACE, ATTACHED_TTL]
        for call in calls:
            args += [f"{call.channel} {call.token}", _record(call)]
        result = text(await self._run(DETACH, home, [*keys, *route], args))
        if result == "detached" and not route:
            # The route loses its '+' (until then sends went the normal way, and this
            # front-end keeps what it receives), and outlives the window.
            ttl = max(ATTACHED_TTL, int(window + SWEEP_GRACE) + 1)
            await self._set_route(channel, "@" + session_id, ttl)
        return result  # type: ignore[return-value]

    async def keep(self, channel: str, message: dict[str, Any]) -> KeepResult:
        """Keep a message this front-end received for ``channel`` after its socket went.

        Such a message was sent before the detach (later ones are kept by the send script), so
        it goes ahead of those. One for a channel whose session was resumed elsewhere is sent
        on there.
        """
        member = self.layer.serialize({k: v for k, v in message.items() if k != "__asgi_channel__"})
        args = [self.prefix, channel, member]
        host = self._channel_host(channel)
        where = text(await self._run(KEEP, host, [self._route(channel)], args))
        if where.startswith("@"):  # the session lives on another host: kept there
            where = await full_if_out_of_memory(
                ask(self.layer, where[1:], channel, member, ":early")
            )
        if where.startswith(">"):
            await self.layer.send(where[1:], message)
            return "forwarded"
        if where == "kept":
            return "kept"
        if where in ("dropped", "overflowed"):
            return "dropped"
        return "none"

    async def resume(self, session_id: str, principal: str, channel: str) -> Resumed | Refused:
        """Attach the session to reply channel ``channel``; hand over what it kept.

        Refuses an unknown id, another principal's, and an expired one alike ("unknown or
        expired"), and an overflowed session, to its principal only ("overflowed"); a refusal
        changes nothing. A session still attached (its old socket not known dead yet) is taken
        over. Steps, so that no push is lost or delivered twice between them:

        1. one script on the session's host: check, point the session at ``channel`` (from
           then on a send to the old channel is sent on to the new one, by the old channel's
           route), take the kept messages and the calls, delete the kept lists. A message sent
           to the old channel is thus either among those taken, or sent on: once;
        2. the new channel's route, when it lives on another host (until then its sends go the
           normal way, which is right for an attached channel);
        3. move the old channel's memberships (``Memberships.move``): each group holds the old
           channel or the new one, never both, and a push to the old one is sent on to the new.
        """
        if not _ID.match(session_id):
            return Refused(UNKNOWN)
        home = self._home(session_id)
        route = self._route_if_on(home, channel)
        lists = [self._session(session_id, part) for part in ("", ":calls", ":kept", ":early")]
        keys = [*lists, self._expiring(), *route]
        args = [session_id, principal, channel, ATTACHED_TTL, self.prefix]
        answer = await self._run(RESUME, home, keys, args)
        if text(answer[0]) == "refused":
            return Refused(text(answer[1]))
        _, previous, seq, window, frames, calls, state = answer
        previous = text(previous)
        remote = "@" + session_id
        if self._channel_host(previous) != home:
            await self._repoint(previous, "+" + remote, remote)
        if not route:
            await self._set_route(channel, "+" + remote, ATTACHED_TTL)
        groups = await self._memberships.move(previous, channel) if previous != channel else []
        return Resumed(
            messages=[self._message(frame) for frame in frames],
            calls=_calls(calls),
            seq=int(seq),
            window=float(window),
            previous=previous,
            groups=groups,
            taken_over=text(state) == "attached" and previous != channel,
        )

    async def end(self, session_id: str, channel: str = "") -> list[str]:
        """End the session now, unless it is attached to another channel than ``channel``.

        Returns its channels (none if it was not ended): the caller cancels the calls made on
        each and closes their memberships, as for a closed connection.
        """
        if not _ID.match(session_id):
            return []
        home = self._home(session_id)
        keys = [self._session(session_id), self._expiring()]
        found = await self._run(END, home, keys, [self.prefix, session_id, channel])
        if not found:
            return []
        channels = text(found).split()
        await self._drop_remote_routes(session_id, home, channels)
        return channels

    async def sweep(self, now: float | None = None) -> list[tuple[str, str]]:
        """End the detached sessions whose window ended (by ``now`` on Redis' clock, or now).

        Returns (channel, session id) for every channel of each: the caller cancels the calls
        made on it and closes its memberships, as for a closed connection. Each session is
        returned by one sweep only, whichever front-end runs it.
        """
        swept: list[tuple[str, str]] = []
        args = [self.prefix, "" if now is None else repr(now), SWEEP_BATCH]
        for index in range(self.layer.ring_size):
            while True:
                found = await self._run(SWEEP, index, [self._expiring()], args)
                for session_id, channels in zip(found[::2], found[1::2], strict=True):
                    sid, names = text(session_id), text(channels).split()
                    await self._drop_remote_routes(sid, index, names)
                    swept += [(name, sid) for name in names]
                if len(found) < 2 * SWEEP_BATCH:
                    break
        return swept

    # ---------------------------------------------------------------------------------------
    # Keys, hosts, and the steps several operations share

    def _session(self, session_id: str, part: str = "") -> str:
        """The key of the session, or of its ``part`` (``":calls"``, ``":kept"``, ...)."""
        return f"{self.prefix}session:{session_id}{part}"

    def _route(self, channel: str) -> str:
        return f"{self.prefix}route:{channel}"

    def _expiring(self) -> str:
        return f"{self.prefix}sessions:expiring"

    def _channel_host(self, channel: str) -> int:
        return int(self.layer.consistent_hash(self.layer.non_local_name(channel)))

    def _home(self, session_id: str) -> int:
        """The host of the session's keys (``open`` makes it its first channel's host)."""
        return int(self.layer.consistent_hash(session_id))

    def _route_if_on(self, home: int, channel: str) -> list[str]:
        """``channel``'s route key if it lives on host ``home`` (a script there writes it),
        else none (the caller writes it there: ``_set_route``)."""
        return [self._route(channel)] if self._channel_host(channel) == home else []

    async def _set_route(self, channel: str, value: str, ttl: int) -> None:
        connection = self.layer.connection(self._channel_host(channel))
        await connection.set(self._route(channel), value, ex=ttl)

    async def _run(
        self, script: Script, index: int, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        return await full_if_out_of_memory(script(self.layer.connection(index), keys, args))

    async def _track(self, session_id: str, token: int | str, record: str, channel: str) -> bool:
        """Record a call (``record`` '': forget it), on ``channel`` ('': the current one)."""
        keys = [self._session(session_id), self._session(session_id, ":calls")]
        args = [str(token), record, channel, ATTACHED_TTL]
        return bool(await self._run(TRACK, self._home(session_id), keys, args))

    def _message(self, member: bytes) -> dict[str, Any]:
        message: dict[str, Any] = self.layer.deserialize(member)
        message.pop("__asgi_channel__", None)
        return message

    async def _drop_remote_routes(self, session_id: str, home: int, channels: list[str]) -> None:
        """Delete the routes of ``channels`` living on other hosts than the session's."""
        for channel in channels:
            if self._channel_host(channel) != home:
                await self._repoint(channel, "@" + session_id, "")
                await self._repoint(channel, "+@" + session_id, "")

    async def _repoint(self, channel: str, old: str, new: str) -> None:
        """Set ``channel``'s route to ``new`` ('' deletes it) if it still is ``old``."""
        index = self._channel_host(channel)
        await self._run(REPOINT, index, [self._route(channel)], [old, new])


def _record(call: PendingCall) -> str:
    return json.dumps([call.rpc_id_json, call.deadline, call.queue, call.method])


def _calls(flat: list[bytes]) -> list[PendingCall]:
    calls = []
    for field, record in zip(flat[::2], flat[1::2], strict=True):
        channel, token = text(field).rsplit(" ", 1)
        rpc_id_json, deadline, queue, *rest = json.loads(record)
        calls.append(PendingCall(channel, token, rpc_id_json, deadline, queue, *rest[:1]))
    return calls
