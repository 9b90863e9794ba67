"""A message on its way into Redis, and what its sender gets back: a handle, or a refusal.

Shared by the sender (batches, senders that give up) and the routing it calls for the messages
sessions took (:mod:`channels_rpc._redis.routing`), which sends copies of them on: apart from
both, so that neither imports the other. Sessions refuse as sends do when Redis is over
``maxmemory`` (``full_if_out_of_memory``). The layer takes these names from
:mod:`channels_rpc._redis.sender`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple, TypeVar

from channels.exceptions import ChannelFull
from redis.exceptions import OutOfMemoryError, ResponseError

__all__ = [
    "OUT_OF_MEMORY",
    "QUEUE_BYTES",
    "QUEUE_FULL",
    "Handle",
    "LayerFull",
    "Outgoing",
    "fail",
    "full_if_out_of_memory",
    "is_out_of_memory",
    "refusal",
]

T = TypeVar("T")

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
class Outgoing:
    """A message waiting for its batch, or in flight; ``added`` is its sender's answer."""

    index: int  # which Redis host
    key: str
    member: bytes
    capacity: int
    byte_capacity: int
    not_after: float | None  # on Redis' clock: the sender waits no longer
    added: asyncio.Future[Handle]
    routes: Sequence[str] = ()  # the reply channels it names: their routes are looked up


def refusal(code: int) -> Exception:
    """The refusal of the send script's answer ``code`` (see ``SEND_MANY``)."""
    if code == -1:
        return LayerFull(QUEUE_FULL)
    if code == -2:
        return LayerFull(QUEUE_BYTES)
    return TimeoutError("the send's time limit passed before Redis took it")


def fail(message: Outgoing, exc: BaseException) -> None:
    if not message.added.done():
        message.added.set_exception(exc)


def is_out_of_memory(exc: ResponseError) -> bool:
    # Redis >= 7 answers -OOM (redis-py: OutOfMemoryError); older ones wrap it in a script error.
    return isinstance(exc, OutOfMemoryError) or "command not allowed when used memory" in str(exc)


async def full_if_out_of_memory(call: Awaitable[T]) -> T:
    """What ``call`` returns; Redis' refusal over ``maxmemory`` raised as ``LayerFull``."""
    try:
        return await call
    except ResponseError as exc:
        if is_out_of_memory(exc):
            raise LayerFull(OUT_OF_MEMORY) from exc
        raise
