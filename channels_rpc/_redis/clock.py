"""Redis' clock, read on this host: the one clock every process of a deployment agrees on."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["RedisClock"]


class RedisClock:
    """This host's time plus an offset measured from Redis' ``TIME``.

    The layer measures it on every new connection and every watchdog check, so that deadlines
    and queue times crossing hosts mean the same everywhere, whatever each host's clock says.
    """

    def __init__(self) -> None:
        self._offset = 0.0  # Redis' clock minus this host's
        # The last measurement: its round trip and when it was taken.
        self._rtt = math.inf
        self._measured = -math.inf

    def now(self) -> float:
        return time.time() + self._offset

    def adjust(self, before: float, after: float, server_time: Sequence[Any]) -> None:
        """Take Redis' ``TIME`` reply, read between ``before`` and ``after`` on this host's clock.

        Redis answered somewhere within the round trip: taking its middle errs by at most half
        of it. A round trip much slower than the last one taken (a busy loop, a busy Redis) is
        a worse measurement and is skipped, unless the last one is a minute old: clocks drift.
        """
        rtt = after - before
        if rtt > 2 * self._rtt + 0.002 and before < self._measured + 60:
            return
        redis_now = int(server_time[0]) + int(server_time[1]) / 1e6
        self._offset = redis_now - (before + after) / 2
        self._rtt = rtt
        self._measured = before
