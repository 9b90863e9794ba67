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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from channels.exceptions import ChannelFull
from redis.exceptions import OutOfMemoryError, ResponseError

from channels_rpc._compat import timeout as time_limit
from channels_rpc._redis.scripts import SEND_MANY, WITHDRAW, byte_counter

__all__ = ["DEFAULT_BYTE_CAPACITY", "Handle", "LayerFull", "Sender"]

logger = logging.getLogger("channels_rpc.layers")

#: Bytes one channel may hold unless ``channel_byte_capacity`` says otherwise.
DEFAULT_BYTE_CAPACITY: Final = 64 * 1024 * 1024
#: Member bytes per script call. Redis checks ``maxmemory`` once per call, before it runs, so
#: this is how far past the limit one sender can take Redis.
BATCH_BYTES: Final = 1024 * 1024
#: How far Redis' time at a send may be from this process's estimate of it (``layer.clock()``):
#: widens the score range searched for a message whose send's answer was lost.
CLOCK_SLACK: Final = 2.0

QUEUE_FULL: Final = "queue is full"
QUEUE_BYTES: Final = "queue holds too many bytes"
OUT_OF_MEMORY: Final = "Redis is out of memory (maxmemory)"


class LayerFull(ChannelFull):  # type: ignore[misc]
    """A send refused for want of room; ``reason`` (also its ``str()``) says which room."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Handle(NamedTuple):
    """A queued message, for :meth:`RedisChannelLayer.withdraw`: its random prefix and its score.

    The score (in whole microseconds, within one of Redis' own) leads a withdrawal to the few
    messages around it, O(log N), instead of reading the whole queue; the prefix picks it.
    """

    prefix: bytes
    score_us: int


@dataclass(slots=True)
class _Message:
    index: int  # which Redis host
    key: str
    member: bytes
    capacity: int
    byte_capacity: int
    not_after: float | None  # on Redis' clock: the sender waits no longer
    added: asyncio.Future[Handle]


class Sender:
    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self._waiting: list[_Message] = []
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
    ) -> Handle:
        """Put one message in Redis; its handle.

        Raises ``LayerFull`` when its channel or Redis has no room, and ``TimeoutError`` after
        ``timeout`` seconds, the message then never to be received (see the module docstring).
        """
        loop = asyncio.get_running_loop()
        not_after = None if timeout is None else self.layer.clock() + timeout
        message = _Message(
            index, key, member, capacity, byte_capacity, not_after, loop.create_future()
        )
        self._waiting.append(message)
        if timeout is None:
            return await self._sent(message, loop)
        async with time_limit(timeout):
            return await self._sent(message, loop)

    async def _sent(self, message: _Message, loop: asyncio.AbstractEventLoop) -> Handle:
        if not self._busy:
            if self._crowded:
                self._start_flusher(loop)
            else:
                await self._send_alone(loop)
        # Cancelling this wait (the time limit) cancels the future: a batch not yet built
        # leaves the message out, one in flight withdraws it (see _send).
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
        by_host: dict[int, list[_Message]] = {}
        for message in batch:
            by_host.setdefault(message.index, []).append(message)
        if len(by_host) == 1:  # the usual single Redis: no task for gather() to wrap
            index, msgs = by_host.popitem()
            await self._send_host(index, msgs)
        else:
            await asyncio.gather(*(self._send_host(i, msgs) for i, msgs in by_host.items()))

    async def _send_host(self, index: int, batch: list[_Message]) -> None:
        if len(batch) == 1:
            await self._send(index, batch)
            return
        for chunk in _chunks(batch):  # each script call is checked against maxmemory
            chunk = [m for m in chunk if not m.added.done()]
            if chunk:
                await self._send(index, chunk)

    async def _send(self, index: int, batch: list[_Message]) -> None:
        """One SEND_MANY call: every sender gets its handle or its refusal."""
        by_key: dict[str, list[_Message]] = {}
        for m in batch:
            by_key.setdefault(m.key, []).append(m)
        keys, args = _arguments(by_key, int(self.layer.expiry))
        sent_at = self.layer.clock()
        try:
            answer = await SEND_MANY(self.layer.connection(index), keys, args)
        except asyncio.CancelledError:
            self._lost(index, batch, sent_at, None)
            raise
        except ResponseError as exc:  # Redis refused the call: nothing was added
            for m in batch:
                _fail(m, LayerFull(OUT_OF_MEMORY) if _out_of_memory(exc) else exc)
        except Exception as exc:  # the answer was lost: the messages may be queued
            self._lost(index, batch, sent_at, exc)
        else:
            self._settle(index, by_key, answer)

    def _settle(self, index: int, by_key: dict[str, list[_Message]], answer: list[int]) -> None:
        """Hand each sender its handle or refusal (see SEND_MANY for the answer)."""
        done = 0
        for key, msgs in by_key.items():
            unwanted: list[tuple[bytes, int, int]] = []
            for message in msgs:
                score_us, added = answer[done], message.added
                done += 1
                if added.done():  # its sender gave up meanwhile
                    if score_us > 0:  # queued nonetheless: taken back at once
                        unwanted.append((message.member[: self._width], score_us, score_us))
                elif score_us > 0:
                    added.set_result(Handle(message.member[: self._width], score_us))
                else:
                    added.set_exception(_refusal(score_us))
            if unwanted and self._width:  # (without prefixes, neighbours could go too)
                self._withdraw_later(index, key, None, unwanted)
        if len(answer) > done:
            self._report_expired(list(by_key), answer[done:])

    def _report_expired(self, keys: list[str], dropped: list[int]) -> None:
        for j, count in zip(dropped[::2], dropped[1::2], strict=True):
            logger.warning(
                "dropped %d messages from %s: queued more than %s s ago (no receiver took them)",
                count,
                keys[j - 1].removeprefix(self.layer.prefix),
                self.layer.expiry,
            )

    def _lost(
        self, index: int, batch: list[_Message], sent_at: float, exc: Exception | None
    ) -> None:
        """The batch's answer is lost (cancelled, connection failed): Redis may have run it."""
        width = self._width
        by_key: dict[str, list[tuple[bytes, float]]] = {}
        for message in batch:
            if exc is None:
                message.added.cancel()
            else:
                _fail(message, exc)
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
        args: list[Any] = [_text(after)]
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


def _chunks(batch: list[_Message]) -> Iterator[list[_Message]]:
    chunk: list[_Message] = []
    size = 0
    for message in batch:
        if chunk and size + len(message.member) > BATCH_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(message)
        size += len(message.member)
    if chunk:
        yield chunk


def _refusal(code: int) -> Exception:
    if code == -1:
        return LayerFull(QUEUE_FULL)
    if code == -2:
        return LayerFull(QUEUE_BYTES)
    return TimeoutError("the send's time limit passed before Redis took it")


def _arguments(by_key: dict[str, list[_Message]], expiry: int) -> tuple[list[str], list[Any]]:
    """SEND_MANY's keys and arguments (see the script), as bytes: redis-py passes them as is."""
    keys: list[str] = []
    args: list[Any] = [b"%d" % expiry]
    messages: list[bytes] = []
    for key, msgs in by_key.items():
        keys.append(key)
        keys.append(byte_counter(key))
        args.append(b"%d %d %d" % (msgs[0].capacity, msgs[0].byte_capacity, len(msgs)))
        for m in msgs:
            messages.append(m.member)
            messages.append(b"" if m.not_after is None else repr(m.not_after).encode())
    args += messages
    return keys, args


def _fail(message: _Message, exc: BaseException) -> None:
    if not message.added.done():
        message.added.set_exception(exc)


def _out_of_memory(exc: ResponseError) -> bool:
    # Redis >= 7 answers -OOM (redis-py: OutOfMemoryError); older ones wrap it in a script error.
    return isinstance(exc, OutOfMemoryError) or "command not allowed when used memory" in str(exc)


def _micros(seconds: float) -> int:
    return int(seconds * 1_000_000)


def _text(value: float | None) -> str:
    """A float as text that reads back exactly ('' for None): what the scripts expect."""
    return "" if value is None else repr(value)
