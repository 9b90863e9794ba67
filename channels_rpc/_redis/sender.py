"""Sends coalesced: every message sent during one turn of the event loop goes in one script call.

A front-end with hundreds of calls in flight, or a worker answering dozens at once, would
otherwise pay a Redis round trip (and redis-py's per-command cost, which dominates the
profiles) per message. One batch is in flight per event loop at a time, and sends made
meanwhile gather and leave together when it returns, so batches grow with the load.

A send that finds no batch in flight has two ways out. When the previous batch was a lone
message (light load), it goes out at once from its own coroutine: it waits for nothing, not
even a task switch. When the previous batch had company (a worker answering several calls in
one turn, a busy front-end), a task sends it on the next turn, with every other send of this
turn: sending the first alone would split each turn's messages into two round trips, which
measured 10-15% fewer calls per second under load.

A sender may give up (its time limit, a cancellation); its message must then never be
received, since its caller answers as if it was not sent (-32010, "try again"):

* a message still waiting is left out of the next batch;
* one in flight carries its time limit on Redis' clock (``not_after``), past which the send
  script refuses it. If the answer is lost with the cancelled call, a task withdraws it once
  Redis' clock has passed that time (from then on no send of it can succeed), looking for its
  random prefix among the scores it could have got;
* one that Redis took although its sender had given up (the answer came too late) is
  withdrawn at once, by its score.

What none of this can undo is a receiver taking the message between Redis adding it and the
withdrawal, when the answer arrived after the time limit or not at all.

Messages to reply channels name them (``routes``): the send script looks up their sessions in
the same call, and what sessions took goes on from :mod:`channels_rpc._redis.routing`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from typing import Any, Final

from redis.exceptions import ResponseError

from channels_rpc._compat import timeout as time_limit
from channels_rpc._redis.outgoing import (
    OUT_OF_MEMORY,
    Handle,
    LayerFull,
    Outgoing,
    fail,
    is_out_of_memory,
    refusal,
)
from channels_rpc._redis.routing import Router
from channels_rpc._redis.scripts import SEND_MANY, WITHDRAW, byte_counter, sessions_prefix

__all__ = [
    "DEFAULT_BYTE_CAPACITY",
    "OUT_OF_MEMORY",
    "Handle",
    "LayerFull",
    "Sender",
    "is_out_of_memory",
]

logger = logging.getLogger("channels_rpc.layers")

#: Bytes one channel may hold unless ``channel_byte_capacity`` says otherwise.
DEFAULT_BYTE_CAPACITY: Final = 64 * 1024 * 1024
#: Member bytes per script call. Redis checks ``maxmemory`` once per call, before it runs, so
#: this is how far past the limit one sender can take Redis.
BATCH_BYTES: Final = 1024 * 1024
#: How far Redis' time at a send may be from this process's estimate of it (``layer.clock()``):
#: widens the score range searched for a message whose send's answer was lost.
CLOCK_SLACK: Final = 2.0


class Sender:
    """The sends of one event loop to one ``RedisChannelLayer`` (see the module docstring)."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self._router = Router(layer, self._send_host)  # messages sessions took go on there
        self._waiting: list[Outgoing] = []
        self._busy = False  # a batch is in flight
        self._crowded = False  # the last batch held more than one message
        self._flusher: asyncio.Task[None] | None = None  # keeps the follow-up batch's task alive
        self._withdrawals: set[asyncio.Task[None]] = set()  # messages whose senders gave up
        # channels-redis starts every member with random bytes (so equal messages stay
        # distinct in the sorted set); with its score, they name one message for withdraw.
        self._width: int = layer._serializer.random_prefix_length

    async def send(
        self,
        index: int,
        key: str,
        member: bytes,
        *,
        capacity: int,
        byte_capacity: int,
        timeout: float | None = None,
        routes: Sequence[str] = (),
    ) -> Handle:
        """Put one message in Redis; its handle.

        ``routes``: the reply channels the message names, whose sessions may take it (see
        :mod:`channels_rpc._redis.routing`); its handle then has an empty prefix. Raises
        ``LayerFull`` when its channel or Redis has no room, and ``TimeoutError`` after
        ``timeout`` seconds, the message then never to be received (see the module docstring).
        """
        loop = asyncio.get_running_loop()
        not_after = None if timeout is None else self.layer.clock() + timeout
        added: asyncio.Future[Handle] = loop.create_future()
        message = Outgoing(index, key, member, capacity, byte_capacity, not_after, added, routes)
        self._waiting.append(message)
        if timeout is None:
            return await self._sent(message, loop)
        async with time_limit(timeout):
            return await self._sent(message, loop)

    async def _sent(self, message: Outgoing, loop: asyncio.AbstractEventLoop) -> Handle:
        if not self._busy:
            if self._crowded:
                self._start_flusher(loop)
            else:
                await self._send_alone(loop)
        # Cancelling this wait (the time limit) cancels the future: a batch not yet built
        # leaves the message out, one in flight withdraws it (see _settle and _lost).
        return await message.added

    async def _send_alone(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send what is waiting from the caller's coroutine: no task switch for a lone message."""
        self._busy = True
        try:
            await self._send_waiting()
        finally:
            self._busy = False
            # Gathered while ours was in flight, also when ours was cancelled: a task takes
            # them (else they would wait for an unrelated send, and go after their callers
            # gave up).
            if self._waiting:
                self._start_flusher(loop)

    def _start_flusher(self, loop: asyncio.AbstractEventLoop) -> None:
        self._busy = True
        self._flusher = loop.create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._waiting:
                await self._send_waiting()
        finally:
            self._busy = False
            self._flusher = None

    async def _send_waiting(self) -> None:
        batch = [m for m in self._waiting if not m.added.done()]  # the rest gave up: never sent
        self._waiting = []
        if not batch:
            return
        self._crowded = len(batch) > 1
        by_host: dict[int, list[Outgoing]] = {}
        for message in batch:
            by_host.setdefault(message.index, []).append(message)
        if len(by_host) == 1:  # the usual single Redis: no task for gather() to wrap
            index, msgs = by_host.popitem()
            await self._send_host(index, msgs)
        else:
            await asyncio.gather(*(self._send_host(i, msgs) for i, msgs in by_host.items()))

    async def _send_host(self, index: int, batch: list[Outgoing], hops: int = 0) -> None:
        if len(batch) == 1:
            await self._send(index, batch, hops)
            return
        for chunk in _chunks(batch):  # each script call is checked against maxmemory
            chunk = [m for m in chunk if not m.added.done()]
            if chunk:
                await self._send(index, chunk, hops)

    async def _send(self, index: int, batch: list[Outgoing], hops: int = 0) -> None:
        """One SEND_MANY call: every sender gets its handle or its refusal."""
        by_key: dict[str, list[Outgoing]] = {}
        for m in batch:
            by_key.setdefault(m.key, []).append(m)
        keys, args = _arguments(by_key, int(self.layer.expiry), sessions_prefix(self.layer.prefix))
        sent_at = self.layer.clock()
        try:
            answer = await SEND_MANY(self.layer.connection(index), keys, args)
        except asyncio.CancelledError:
            self._lost(index, batch, sent_at, None)
            raise
        except ResponseError as exc:  # Redis refused the call: nothing was added
            for m in batch:
                fail(m, LayerFull(OUT_OF_MEMORY) if is_out_of_memory(exc) else exc)
        except Exception as exc:  # the answer was lost: the messages may be queued
            self._lost(index, batch, sent_at, exc)
        else:
            rerouted = answer.pop() if answer and isinstance(answer[-1], list) else None
            self._settle(index, by_key, answer)
            if rerouted is not None:  # sessions took some (see SEND_MANY)
                in_order = [m for msgs in by_key.values() for m in msgs]  # as numbered there
                await self._router.reroute(in_order, rerouted, hops)

    def _settle(self, index: int, by_key: dict[str, list[Outgoing]], answer: list[int]) -> None:
        """Hand each sender its handle or refusal (see SEND_MANY for the answer)."""
        done = 0
        for key, msgs in by_key.items():
            unwanted: list[tuple[bytes, int, int]] = []
            for message in msgs:
                score_us, added = answer[done], message.added
                done += 1
                if score_us == 0 or added.done():  # sessions took it; or its sender gave up
                    if score_us > 0:  # queued nonetheless: taken back at once
                        unwanted.append((message.member[: self._width], score_us, score_us))
                elif score_us > 0:
                    added.set_result(Handle(message.member[: self._width], score_us))
                else:
                    added.set_exception(refusal(score_us))
            if unwanted and self._width:  # (without prefixes, neighbours could go too)
                self._withdraw_later(index, key, None, unwanted)
        if len(answer) > done:  # then (key number, count) per key whose expired messages went
            keys, dropped = list(by_key), answer[done:]
            for j, count in zip(dropped[::2], dropped[1::2], strict=True):
                self.layer._report_expired(keys[j - 1], count)  # as a receiver reports them

    def _lost(
        self, index: int, batch: list[Outgoing], sent_at: float, exc: Exception | None
    ) -> None:
        """The batch's answer is lost (cancelled, connection failed): Redis may have run it."""
        width = self._width
        by_key: dict[str, list[tuple[bytes, float]]] = {}
        for message in batch:
            if exc is None:
                message.added.cancel()
            else:
                fail(message, exc)
            if message.not_after is not None and width:
                by_key.setdefault(message.key, []).append(
                    (message.member[:width], message.not_after)
                )
        # Without a time limit nothing bounds when Redis may still run the send: such messages
        # (plain ``send``) keep channels-redis' semantics.
        for key, sent in by_key.items():
            after = max(not_after for _, not_after in sent)
            low, high = _micros(sent_at - CLOCK_SLACK), _micros(after + CLOCK_SLACK)
            self._withdraw_later(index, key, after, [(prefix, low, high) for prefix, _ in sent])

    def _withdraw_later(
        self, index: int, key: str, after: float | None, ranges: list[tuple[bytes, int, int]]
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._withdraw(index, key, after, ranges))
        self._withdrawals.add(task)
        task.add_done_callback(self._withdrawals.discard)

    async def _withdraw(
        self, index: int, key: str, after: float | None, ranges: list[tuple[bytes, int, int]]
    ) -> None:
        """Withdraw messages whose senders gave up, once Redis' clock has passed ``after``."""
        args: list[Any] = ["" if after is None else repr(after)]  # (a float read back exactly)
        for prefix, low, high in ranges:
            args += [prefix, low, high]
        give_up = self.layer.clock() + self.layer.expiry  # by then they have expired anyway
        backoff = 0.05
        while True:
            if after is not None and (wait := after - self.layer.clock()) > 0:
                await asyncio.sleep(wait + 0.005)
            try:
                removed = await WITHDRAW(
                    self.layer.connection(index), [key, byte_counter(key)], args
                )
            except Exception as exc:
                logger.debug("withdrawing from %s failed (%r); retrying", key, exc)
                if self.layer.clock() > give_up:
                    logger.warning("could not withdraw %d unwanted messages: %r", len(ranges), exc)
                    return
                await asyncio.sleep(backoff)
                backoff = min(2 * backoff, 1.0)
                continue
            if removed >= 0:
                if removed:
                    logger.info("withdrew %d messages from %s: their senders gave up", removed, key)
                return
            await asyncio.sleep(0.01)  # Redis' clock has not reached `after` yet


def _chunks(batch: list[Outgoing]) -> Iterator[list[Outgoing]]:
    chunk: list[Outgoing] = []
    size = 0
    for message in batch:
        if chunk and size + len(message.member) > BATCH_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(message)
        size += len(message.member)
    if chunk:
        yield chunk


def _arguments(
    by_key: dict[str, list[Outgoing]], expiry: int, sessions: str
) -> tuple[list[str], list[Any]]:
    """SEND_MANY's keys and arguments (see the script), as bytes: redis-py passes them as is."""
    keys: list[str] = []
    args: list[Any] = [b"%d" % expiry]
    messages: list[bytes] = []
    numbers: list[bytes] = []
    routes: list[str] = []
    route = sessions + "route:"
    for key, msgs in by_key.items():
        keys.append(key)
        keys.append(byte_counter(key))
        args.append(b"%d %d %d" % (msgs[0].capacity, msgs[0].byte_capacity, len(msgs)))
        for m in msgs:
            messages.append(m.member)
            messages.append(b"" if m.not_after is None else repr(m.not_after).encode())
            for channel in m.routes:
                numbers.append(b"%d" % (len(messages) // 2))
                routes.append(route + channel)
    args += messages
    if routes:
        args += [sessions, b" ".join(numbers), *routes]
    return keys, args


def _micros(seconds: float) -> int:
    return int(seconds * 1_000_000)
