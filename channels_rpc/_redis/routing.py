"""Sends to reply channels that have sessions: what the send script could not finish alone.

Messages to reply channels carry the channels they name (``routes``), and the send script
(``SEND_MANY``) reads their routes (:mod:`channels_rpc._redis.session_scripts`), all in one
``MGET``, in the same call. A channel whose session is detached has the message kept in the
session, by the script. The rest comes back to the sender, and goes on from here:

* a channel whose session was resumed on another channel gets the message again, in a copy
  naming where it now belongs (a second round trip, within the batch: later sends wait for it
  and keep their order);
* a channel whose session lives on another host: that host is asked (``SESSION_ASK``), and
  keeps the message or names where it goes;
* a copy naming several channels of which only some have routes is sent again to the others
  alone: as it was, it would also reach the front-end of a detached channel, which keeps what
  it receives (``Sessions.keep``), and the message would be kept twice;
* a copy naming several channels is not kept whole for a detached one among them (it would
  hold every name: 4 KB a push with 50 members on one front-end): the script says "keep", and
  a copy naming that channel alone goes again, to be kept.

A message sessions took settles as its copies do (kept or dropped: a handle with an empty
prefix, nothing to withdraw). Sessions keep a message although its sender gave up meanwhile:
it is not withdrawn. Apart from the sender because none of this happens to a message without
sessions, and the sender's path (batches, senders that give up) reads whole without it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Final

from channels_rpc._redis.outgoing import Handle, Outgoing, fail
from channels_rpc._redis.scripts import sessions_prefix, text
from channels_rpc._redis.session_scripts import SESSION_ASK

__all__ = ["MAX_HOPS", "Router", "ask"]

logger = logging.getLogger("channels_rpc.layers")

#: How many times a message may be sent on to where its channel's session now is: a route
#: leads to its session's channel at once, so one is enough; past this, it goes without routes.
MAX_HOPS: Final = 3

#: The sender's way to send messages to one host (its ``_send_host``): host, messages, hops.
SendHost = Callable[[int, list[Outgoing], int], Awaitable[None]]


class Router:
    """Sends on, for one sender, the messages of its batches that sessions took."""

    def __init__(self, layer: Any, send_host: SendHost) -> None:
        self.layer = layer
        self._send_host = send_host

    async def reroute(self, batch: list[Outgoing], rerouted: list[Any], hops: int) -> None:
        """Finish the messages sessions took: send on what belongs elsewhere, settle each.

        ``rerouted``: the last element of SEND_MANY's answer, which names messages by their
        number (from 1) in ``batch``.
        """
        try:
            await self._send_onward(batch, rerouted, hops)
        except BaseException as exc:  # (Redis failed, or the sending task was cancelled)
            for number, _, _ in rerouted:
                message = batch[number - 1]
                if isinstance(exc, Exception):
                    fail(message, exc)
                else:
                    message.added.cancel()
            raise

    async def _send_onward(self, batch: list[Outgoing], rerouted: list[Any], hops: int) -> None:
        onward: dict[int, list[tuple[str, bool, bool]]] = {}  # number -> (channel, routed, alone)
        for number, where, channel in rerouted:
            member = batch[number - 1].member
            onward.setdefault(number, []).extend(
                await self._onward(text(where), text(channel), member)
            )
        copies: dict[int, list[Outgoing]] = {}  # message number -> its copies
        by_host: dict[int, list[Outgoing]] = {}
        for number, channels in onward.items():
            message = batch[number - 1]
            if channels and not message.added.done():
                copies[number] = self._copies(message, channels, hops)
                for copy in copies[number]:
                    by_host.setdefault(copy.index, []).append(copy)
        for index, msgs in by_host.items():  # in the order they came: per channel, kept
            await self._send_host(index, msgs, hops + 1)
        for number in onward:
            _settle_from(batch[number - 1], copies.get(number, []))

    async def _onward(
        self, where: str, channel: str, member: bytes
    ) -> list[tuple[str, bool, bool]]:
        """Where ``channel``'s copy goes on to: (channel, whether its route is looked up,
        whether in a copy of its own)."""
        if where.startswith("@"):  # its session lives on another host: ask there
            where = await ask(self.layer, where[1:], channel, member, ":kept")
        if where.startswith(">"):
            return [(where[1:], True, False)]
        if where == "keep":  # to be kept, in a copy naming it alone (see SESSION_ROUTE)
            return [(channel, True, True)]
        if where == "send":
            return [(c, True, False) for c in channel.split()]
        if where == "normal":  # (the session's host said so: no route to look up again)
            return [(channel, False, False)]
        if where == "overflowed":
            logger.warning(
                "the session of %s overflowed (its frame or byte limit): what it kept is "
                "dropped, and what comes for it until its window ends",
                channel,
            )
        return []  # kept, or dropped

    def _copies(
        self, message: Outgoing, channels: list[tuple[str, bool, bool]], hops: int
    ) -> list[Outgoing]:
        """``message`` again, for ``channels`` (each with whether its route is looked up, and
        whether it gets a copy of its own).

        One copy per Redis key, naming its channels (each once), as ``group_send`` makes them.
        """
        body = self.layer.deserialize(message.member)
        body.pop("__asgi_channel__", None)
        by_key: dict[tuple[str, bool, str], list[str]] = {}
        for channel, routed, alone in channels:
            key = (self.layer.non_local_name(channel), routed, channel if alone else "")
            names = by_key.setdefault(key, [])
            if channel not in names:
                names.append(channel)
        loop = asyncio.get_running_loop()
        return [
            replace(
                message,
                index=self.layer.consistent_hash(target),
                key=self.layer.prefix + target,
                member=self.layer.serialize(
                    {**body, "__asgi_channel__": names if len(names) > 1 else names[0]}
                ),
                added=loop.create_future(),
                routes=names if routed and hops < MAX_HOPS else (),
            )
            for (target, routed, _), names in by_key.items()
        ]


def _settle_from(message: Outgoing, copies: list[Outgoing]) -> None:
    """Settle a message that sessions took as its copies sent on were (none: kept, or dropped)."""
    if message.added.done():
        return
    for copy in copies:
        if copy.added.cancelled():
            message.added.cancel()
            return
        if (exc := copy.added.exception()) is not None:
            message.added.set_exception(exc)
            return
    message.added.set_result(copies[0].added.result() if copies else Handle(b"", 0))


async def ask(layer: Any, session_id: str, channel: str, member: bytes, into: str) -> str:
    """Where ``member`` for ``channel`` goes, asked of the host where ``session_id`` lives.

    SESSION_ROUTE's answer; kept there, if kept, in the session's list ``into`` (``":kept"``
    for a send, ``":early"`` for ``Sessions.keep``).
    """
    connection = layer.connection(layer.consistent_hash(session_id))
    args = [sessions_prefix(layer.prefix), session_id, channel, member, into]
    return text(await SESSION_ASK(connection, [], args))
