"""Taking messages off sorted-set channels: up to N at once, waiting for the first one.

With ``wait_replicas`` (:class:`~channels_rpc._redis.options.ReplicaAcks`), a worker's pop is
followed, in the same round trip, by ``WAIT``: what it took is handed over only once that many
replicas have the pop. Redis replicates asynchronously: a pop the replica had not received when
the primary died is undone by the failover, the request is still queued on the new primary, and
another worker would run it a second time. Waiting closes that window: if the primary dies
before a replica has the pop, the round trip fails, and this worker drops what it took (the
copy on the promoted replica runs, once). If no replica acknowledges in time (none is
connected: after a failover the new primary has none until the old one returns as its replica),
the messages run all the same (the pop is on the primary, nowhere else: dropping them would
lose them), and the pops of the next ``UNACKED_PAUSE`` seconds do not wait, so that each does
not pay the timeout; the window is open meanwhile, and a warning says so.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from redis.exceptions import ResponseError

from channels_rpc._redis.options import ReplicaAcks
from channels_rpc._redis.scripts import POP_MANY, byte_counter

__all__ = ["UNACKED_PAUSE", "Popper"]

logger = logging.getLogger("channels_rpc.layers")

#: Bytes taken from a key before the popper subtracts them from its counter (with a pop).
SETTLE_BYTES: Final = 16 * 1024
#: Seconds pops go without waiting for replicas after one found none acknowledging in time.
UNACKED_PAUSE: Final = 10.0

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

    def __init__(self, expiry: int, acks: ReplicaAcks | None = None) -> None:
        self.bzmpop: bool | None = None  # unknown until the server answers
        self.expiry = expiry
        self.acks = acks or ReplicaAcks()
        self._owed: dict[str, int] = {}  # channel key -> bytes taken, not yet subtracted
        self._unacked_until = -math.inf  # (monotonic) no waiting for replicas until then

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
        self,
        connection: Any,
        keys: Sequence[str],
        limit: int,
        timeout: float,
        *,
        acked: bool = False,
    ) -> list[Popped]:
        """:meth:`pop`, by the key the messages came from.

        ``acked``: hand them over only once ``acks.replicas`` replicas have the pop (a worker
        taking requests; see the module docstring). A failure after the pop (the primary died)
        raises, and what was taken is dropped: the promoted replica still holds it.
        """
        settle = self._due(keys)
        replicas = self._replicas() if acked else 0
        if self.bzmpop is not False:
            try:
                if settle or replicas:
                    result = await self._settling(
                        connection,
                        settle,
                        lambda c: c.bzmpop(timeout, len(keys), list(keys), min=True, count=limit),
                        replicas,
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
        if replicas:  # WAIT must follow the pop's write: one message, with no second pop
            limit = 1
        return self._owe(await self._pop_old(connection, keys, limit, timeout, settle, replicas))

    async def _pop_old(
        self,
        connection: Any,
        keys: Sequence[str],
        limit: int,
        timeout: float,
        settle: dict[str, int],
        replicas: int = 0,
    ) -> list[Popped]:
        result = await self._settling(
            connection, settle, lambda c: c.bzpopmin(list(keys), timeout=timeout), replicas
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
        self,
        connection: Any,
        settle: dict[str, int],
        command: Callable[[Any], Any],
        replicas: int = 0,
    ) -> Any:
        """``command`` on ``connection``, with the subtractions of ``settle`` ahead of it, and
        ``WAIT`` for ``replicas`` replicas after it (when not 0)."""
        if not settle and not replicas:
            return await command(connection)
        pipe = connection.pipeline(transaction=False)
        for key, size in settle.items():
            pipe.decrby(byte_counter(key), size)
            # A counter that expired meanwhile must not stay, negative, for ever.
            pipe.expire(byte_counter(key), self.expiry)
        command(pipe)
        if replicas:
            pipe.wait(replicas, max(1, round(self.acks.timeout * 1000)))
        # A failure of the whole round trip leaves it unknown whether they were subtracted:
        # they are not retried (the counter errs high until its queue empties).
        replies = await pipe.execute(raise_on_error=False)
        acked = replies.pop() if replicas else None
        *settled, result = replies
        for (key, size), outcome in zip(settle.items(), settled[::2], strict=True):
            if isinstance(outcome, Exception):  # refused (Redis out of memory): next time
                self._owed[key] = self._owed.get(key, 0) + size
        if isinstance(result, Exception):
            raise result
        if replicas:
            self._check_acks(acked, replicas)
        return result

    def _replicas(self) -> int:
        """How many replicas a pop waits for now: none while they did not answer lately."""
        if self.acks.replicas and time.monotonic() >= self._unacked_until:
            return self.acks.replicas
        return 0

    def _check_acks(self, acked: Any, replicas: int) -> None:
        """After a pop that waited: if fewer replicas than asked have it, stop waiting a while.

        Its messages run all the same: the primary answered, so it holds the pop, and nobody
        else will run them unless it fails over before a replica catches up.
        """
        if isinstance(acked, int) and acked >= replicas:
            return
        self._unacked_until = time.monotonic() + UNACKED_PAUSE
        logger.warning(
            "%s of %d replicas acknowledged a pop within %.2f s (%s): pops do not wait for "
            "replicas for %.0f s; a failover meanwhile may run a request twice",
            acked if isinstance(acked, int) else "none",
            replicas,
            self.acks.timeout,
            "WAIT refused" if isinstance(acked, Exception) else "no replica in time",
            UNACKED_PAUSE,
        )

    def _due(self, keys: Sequence[str]) -> dict[str, int]:
        owed = self._owed
        return {key: owed.pop(key) for key in keys if owed.get(key, 0) >= SETTLE_BYTES}

    def _owe(self, popped: list[Popped]) -> list[Popped]:
        for key, pairs in popped:
            self._owed[key] = self._owed.get(key, 0) + sum([len(m) for m, _ in pairs])
        return popped


def _text(key: str | bytes) -> str:
    return key.decode() if isinstance(key, bytes) else key
