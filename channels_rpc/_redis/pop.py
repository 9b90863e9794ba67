"""Taking messages off sorted-set channels: up to N at once, waiting for the first one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from redis.exceptions import ResponseError

from channels_rpc._redis.scripts import POP_MANY, byte_counter

__all__ = ["Popper"]

#: Bytes taken from a key before the popper subtracts them from its counter (with a pop).
SETTLE_BYTES: Final = 16 * 1024

Popped = tuple[str, list[tuple[bytes, float]]]  # a key, and (member, score) pairs taken from it


class Popper:
    """One round trip per wake-up on Redis >= 7 (``BZMPOP ... COUNT``), two on older ones.

    It keeps the byte counters of the keys it pops (see :mod:`channels_rpc._redis.scripts`).
    A blocking pop cannot run in a script, so what a pop takes is subtracted later, in the
    round trip of a pop of the same key once ``SETTLE_BYTES`` are owed (a non-transactional
    pipeline ahead of the pop). Until then a counter errs high, by what this process took and
    has not settled: a queue refuses a little early. An empty queue starts its counter again
    from zero, and a settlement that arrives after that makes it err low by as much: either way
    by at most ``SETTLE_BYTES`` plus one pop per receiver, and never for long.
    """

    def __init__(self, expiry: int) -> None:
        self.bzmpop: bool | None = None  # unknown until the server answers
        self.expiry = expiry
        self._owed: dict[str, int] = {}  # channel key -> bytes taken, not yet subtracted

    async def pop(
        self, connection: Any, keys: Sequence[str], limit: int, timeout: float
    ) -> list[tuple[bytes, float]]:
        """Up to ``limit`` (member, score) pairs from the first non-empty key, oldest first.

        Waits up to ``timeout`` seconds when every key is empty; returns [] if none came.
        """
        popped = await self.take(connection, keys, limit, timeout)
        if len(popped) == 1:
            return popped[0][1]
        return [pair for _, pairs in popped for pair in pairs]

    async def take(
        self, connection: Any, keys: Sequence[str], limit: int, timeout: float
    ) -> list[Popped]:
        """:meth:`pop`, by the key the messages came from."""
        settle = self._due(keys)
        if self.bzmpop is not False:
            try:
                if settle:
                    result = await self._settling(
                        connection,
                        settle,
                        lambda c: c.bzmpop(timeout, len(keys), list(keys), min=True, count=limit),
                    )
                else:
                    result = await connection.bzmpop(
                        timeout, len(keys), list(keys), min=True, count=limit
                    )
            except ResponseError as exc:
                if "unknown command" not in str(exc).lower():
                    raise
                self.bzmpop = False  # Redis < 7.0 (what was due was settled all the same)
                settle = {}
            else:
                self.bzmpop = True
                if result is None:
                    return []
                pairs = [(m, float(s)) for m, s in result[1]]
                return self._owe([(_text(result[0]), pairs)])
        return self._owe(await self._pop_old(connection, keys, limit, timeout, settle))

    async def _pop_old(
        self,
        connection: Any,
        keys: Sequence[str],
        limit: int,
        timeout: float,
        settle: dict[str, int],
    ) -> list[Popped]:
        result = await self._settling(
            connection, settle, lambda c: c.bzpopmin(list(keys), timeout=timeout)
        )
        if result is None:
            return []
        popped = {_text(result[0]): [(result[1], float(result[2]))]}
        if limit > 1:
            more = await POP_MANY(connection, keys, [limit - 1])
            for key, member, score in zip(*[iter(more)] * 3, strict=True):
                popped.setdefault(_text(key), []).append((member, float(score)))
        return list(popped.items())

    async def _settling(
        self, connection: Any, settle: dict[str, int], command: Callable[[Any], Any]
    ) -> Any:
        """``command`` on ``connection``, with the subtractions of ``settle`` ahead of it."""
        if not settle:
            return await command(connection)
        pipe = connection.pipeline(transaction=False)
        for key, size in settle.items():
            pipe.decrby(byte_counter(key), size)
            # A counter that expired meanwhile must not stay, negative, for ever.
            pipe.expire(byte_counter(key), self.expiry)
        command(pipe)
        # A failure of the whole round trip leaves it unknown whether they were subtracted:
        # they are not retried (the counter errs high until its queue empties).
        *settled, result = await pipe.execute(raise_on_error=False)
        for (key, size), outcome in zip(settle.items(), settled[::2], strict=True):
            if isinstance(outcome, Exception):  # refused (Redis out of memory): next time
                self._owed[key] = self._owed.get(key, 0) + size
        if isinstance(result, Exception):
            raise result
        return result

    def _due(self, keys: Sequence[str]) -> dict[str, int]:
        owed = self._owed
        return {key: owed.pop(key) for key in keys if owed.get(key, 0) >= SETTLE_BYTES}

    def _owe(self, popped: list[Popped]) -> list[Popped]:
        for key, pairs in popped:
            self._owed[key] = self._owed.get(key, 0) + sum([len(m) for m, _ in pairs])
        return popped


def _text(key: str | bytes) -> str:
    return key.decode() if isinstance(key, bytes) else key
