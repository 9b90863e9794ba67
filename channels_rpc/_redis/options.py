"""The layer's settings beyond channels-redis': byte capacities and connection timeouts.

Read once, when the layer is built from its ``CONFIG``; a value that cannot work raises then.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["READ_TIMEOUT_MARGIN", "ByteCapacities", "ReplicaAcks", "with_timeouts"]

#: How much longer than a blocking pop a read may take before the connection counts as dead.
READ_TIMEOUT_MARGIN: Final = 5.0


@dataclass(frozen=True)
class ByteCapacities:
    """Bytes a channel may hold, as channels-redis' ``capacity`` and ``channel_capacity`` count
    messages (same patterns): a capacity of 100 large messages is no bound on memory.
    """

    default: int
    patterns: Sequence[tuple[re.Pattern[str], int]]

    def of(self, channel: str) -> int:
        """Bytes ``channel`` may hold: the first pattern it matches, else the default."""
        for pattern, capacity in self.patterns:
            if pattern.match(channel):
                return int(capacity)
        return self.default


@dataclass(frozen=True)
class ReplicaAcks:
    """``wait_replicas``: how many replicas must have a worker's pop before it runs what it
    took, and ``wait_replicas_timeout``: how long it waits for them (see
    :mod:`channels_rpc._redis.pop`). 0 replicas: it does not wait (the default)."""

    replicas: int = 0
    timeout: float = 0.5

    def __post_init__(self) -> None:
        if self.replicas < 0:
            raise ValueError(f"wait_replicas={self.replicas}: a number of replicas, 0 or more")
        # The wait shares a round trip with the blocking pop, within the read timeout's margin.
        if not 0 < self.timeout <= READ_TIMEOUT_MARGIN / 2:
            raise ValueError(
                f"wait_replicas_timeout={self.timeout}: more than 0 and at most "
                f"{READ_TIMEOUT_MARGIN / 2} s"
            )


def with_timeouts(host: dict[str, Any], blocking_read: float) -> dict[str, Any]:
    """``host``'s connection arguments, with timeouts that suit reads blocking that long.

    The read timeout must outlast a blocking pop. redis-py 8 defaults it to 5 s, the same as
    the pop, so stock idle receivers die every 5 s (channels_redis#422); with no timeout at all
    a dead server would hang them forever.
    """
    minimum = blocking_read + READ_TIMEOUT_MARGIN
    timeout = host.get("socket_timeout", minimum)
    if timeout is not None and timeout < minimum:
        raise ValueError(
            f"socket_timeout={timeout} would cut the layer's {blocking_read} s blocking "
            f"reads; use at least {minimum} (or leave it unset)."
        )
    # redis-py waits up to 5 s (20 s before redis-py 8) for a connection to a host that does
    # not answer; a front-end would hold calls that long. Two seconds tell a dead host.
    connect_timeout = host.get("socket_connect_timeout", 2.0)
    return {**host, "socket_timeout": timeout, "socket_connect_timeout": connect_timeout}
