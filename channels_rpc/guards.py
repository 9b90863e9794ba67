"""Small stateful guards the front-end keeps: a token bucket and a circuit breaker."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Breaker", "TokenBucket"]


class TokenBucket:
    """``rate`` tokens a second, up to ``burst`` saved; ``rate <= 0`` never refuses."""

    __slots__ = ("_clock", "_stamp", "_tokens", "burst", "rate")

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()

    def take(self, count: float = 1) -> bool:
        if self.rate <= 0:
            return True
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < count:
            return False
        self._tokens -= count
        return True


class Breaker:
    """After a failure, refuse for ``cooldown`` seconds instead of trying (and waiting) again."""

    __slots__ = ("_clock", "_open_until", "cooldown")

    def __init__(self, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.cooldown = cooldown
        self._clock = clock
        self._open_until = 0.0

    def allows(self) -> bool:
        return self._clock() >= self._open_until

    def failed(self) -> None:
        self._open_until = self._clock() + self.cooldown

    def succeeded(self) -> None:
        self._open_until = 0.0
