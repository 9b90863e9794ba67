"""Calls that no worker answered in time, counted per queue, for a warning at most once a minute.

The front-end is the one process that sees a queue nobody serves: no worker logs what it never
received, and without this a missing worker shows only as clients waiting out their timeouts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from channels_rpc.logsafe import protect

if TYPE_CHECKING:
    from channels_rpc.pending import Pending

__all__ = ["Unanswered", "report"]

# The front-end's records, under the front-end's logger name.
logger = protect(logging.getLogger("channels_rpc"))


@dataclass(slots=True)
class _QueueTally:
    count: int = 0
    example: str = ""  # a method whose call went unanswered
    reported_at: float | None = None


class Unanswered:
    """Calls no worker answered in time, per queue, reported at most once per ``interval``.

    :meth:`expired` returns ``(count, example method)`` when a report is due: for the first
    call of a queue at once, then for the calls since the last report, once ``interval``
    seconds have passed since it.
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._queues: dict[str, _QueueTally] = {}

    def expired(self, queue: str, method: str) -> tuple[int, str] | None:
        tally = self._queues.setdefault(queue, _QueueTally())
        tally.count += 1
        tally.example = tally.example or method
        now = self._clock()
        if tally.reported_at is not None and now - tally.reported_at < self.interval:
            return None
        report = (tally.count, tally.example)
        self._queues[queue] = _QueueTally(reported_at=now)
        return report


_tally = Unanswered(interval=60.0)


def report(pending: Pending) -> None:
    """Warn, at most once a minute per queue, that requests on it went unanswered.

    Without it a missing worker shows only as clients waiting out their timeouts: no worker
    logs what it never received.
    """
    due = _tally.expired(pending.queue, pending.method)
    if due is None:
        return
    count, method = due
    logger.warning(
        "%d %s on queue %s got no answer from a worker in time (e.g. %r): "
        "is an rpcworker serving %s?",
        count,
        "request" if count == 1 else "requests",
        pending.queue,
        method,
        pending.queue,
    )
