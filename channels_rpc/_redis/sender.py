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
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from channels.exceptions import ChannelFull

from channels_rpc._redis.scripts import SEND_MANY

__all__ = ["Sender"]


@dataclass(slots=True)
class _Message:
    index: int  # which Redis host
    key: str
    member: bytes
    capacity: int
    added: asyncio.Future[None]


class Sender:
    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self._waiting: list[_Message] = []
        self._busy = False  # a batch is in flight
        self._crowded = False  # the last batch held more than one message
        self._flusher: asyncio.Task[None] | None = None  # keeps the follow-up batch's task alive

    async def send(self, index: int, key: str, member: bytes, capacity: int) -> None:
        """Put one message in Redis (raises ``ChannelFull`` if its channel is full)."""
        loop = asyncio.get_running_loop()
        message = _Message(index, key, member, capacity, loop.create_future())
        self._waiting.append(message)
        if not self._busy:
            if self._crowded:
                self._start_flusher(loop)
            else:
                await self._send_alone(loop)
        await message.added

    async def _send_alone(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send what is waiting from the caller's coroutine: no task switch for a lone message."""
        self._busy = True
        try:
            await self._send_waiting()
        finally:
            self._busy = False
        if self._waiting:  # gathered while ours was in flight: a task takes them
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
        batch, self._waiting = self._waiting, []
        self._crowded = len(batch) > 1
        by_host: dict[int, list[_Message]] = {}
        for message in batch:
            by_host.setdefault(message.index, []).append(message)
        if len(by_host) == 1:  # the usual single Redis: no task for gather() to wrap
            index, msgs = by_host.popitem()
            await self._send(index, msgs)
        else:
            await asyncio.gather(*(self._send(index, msgs) for index, msgs in by_host.items()))

    async def _send(self, index: int, batch: list[_Message]) -> None:
        now = time.time()
        args: list[Any] = [now, int(now) - int(self.layer.expiry), int(self.layer.expiry)]
        for message in batch:
            args += [message.member, message.capacity]
        try:
            connection = self.layer.connection(index)
            added = await SEND_MANY(connection, [m.key for m in batch], args)
        except asyncio.CancelledError:
            for message in batch:
                message.added.cancel()
            raise
        except Exception as exc:
            for message in batch:
                if not message.added.done():
                    message.added.set_exception(exc)
            return
        for message, ok in zip(batch, added, strict=True):
            if not message.added.done():  # its sender may have given up waiting
                if ok:
                    message.added.set_result(None)
                else:
                    message.added.set_exception(ChannelFull())
