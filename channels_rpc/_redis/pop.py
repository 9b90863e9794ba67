"""Taking messages off sorted-set channels: up to N at once, waiting for the first one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from channels_rpc._redis.scripts import POP_MANY

__all__ = ["Popper"]


class Popper:
    """One round trip per wake-up on Redis >= 7 (``BZMPOP ... COUNT``), two on older ones."""

    def __init__(self) -> None:
        self.bzmpop: bool | None = None  # unknown until the server answers

    async def pop(
        self, connection: Any, keys: Sequence[str], limit: int, timeout: float
    ) -> list[tuple[bytes, float]]:
        """Up to ``limit`` (member, score) pairs from the first non-empty key, oldest first.

        Waits up to ``timeout`` seconds when every key is empty; returns [] if none came.
        """
        if self.bzmpop is not False:
            try:
                result = await connection.bzmpop(
                    timeout, len(keys), list(keys), min=True, count=limit
                )
            except ResponseError as exc:
                if "unknown command" not in str(exc).lower():
                    raise
                self.bzmpop = False  # Redis < 7.0
            else:
                self.bzmpop = True
                return [] if result is None else [(m, float(s)) for m, s in result[1]]
        result = await connection.bzpopmin(list(keys), timeout=timeout)
        if result is None:
            return []
        pairs = [(result[1], float(result[2]))]
        if limit > 1:
            more = await POP_MANY(connection, keys, [limit - 1])
            pairs += [(m, float(s)) for m, s in zip(more[::2], more[1::2], strict=True)]
        return pairs
