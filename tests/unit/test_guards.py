"""TokenBucket and Breaker (channels_rpc.guards), on a clock the tests move by hand.

The breaker is what keeps a dead or slow channel layer from costing every call a wait of
``LAYER_TIMEOUT``: after one failure it refuses for its cooldown, then lets one try through.
"""

from __future__ import annotations

import pytest

from channels_rpc.guards import Breaker, TokenBucket


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ---------------------------------------------------------------------------------------------
# Breaker


def test_a_new_breaker_allows() -> None:
    assert Breaker(cooldown=1.0, clock=Clock()).allows()


def test_after_a_failure_the_breaker_refuses_for_its_cooldown_then_allows() -> None:
    clock = Clock()
    breaker = Breaker(cooldown=1.0, clock=clock)
    breaker.failed()
    assert not breaker.allows()
    clock.advance(0.999)
    assert not breaker.allows()
    clock.advance(0.001)
    assert breaker.allows()


def test_a_success_closes_the_breaker_at_once() -> None:
    clock = Clock()
    breaker = Breaker(cooldown=1.0, clock=clock)
    breaker.failed()
    breaker.succeeded()
    assert breaker.allows()


def test_a_failure_of_the_trial_call_refuses_for_another_cooldown() -> None:
    # After the cooldown one call tries the layer again; if it fails, the refusal starts over
    # from that failure, not from the first one.
    clock = Clock()
    breaker = Breaker(cooldown=1.0, clock=clock)
    breaker.failed()
    clock.advance(1.0)
    assert breaker.allows()
    breaker.failed()
    clock.advance(0.5)
    assert not breaker.allows()
    clock.advance(0.5)
    assert breaker.allows()


def test_the_cooldown_is_the_breakers_own() -> None:
    clock = Clock()
    short, long = Breaker(cooldown=0.25, clock=clock), Breaker(cooldown=5.0, clock=clock)
    short.failed()
    long.failed()
    clock.advance(0.25)
    assert short.allows()
    assert not long.allows()


# ---------------------------------------------------------------------------------------------
# TokenBucket


def test_a_bucket_starts_full_and_refuses_past_its_burst() -> None:
    bucket = TokenBucket(rate=10, burst=3, clock=Clock())
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_tokens_come_back_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=4, burst=3, clock=clock)  # binary fractions: exact sums
    for _ in range(3):
        assert bucket.take()
    clock.advance(0.125)  # half a token
    assert not bucket.take()
    clock.advance(0.125)  # one whole token
    assert bucket.take()
    assert not bucket.take()


def test_idle_time_saves_at_most_burst_tokens() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    clock.advance(3600)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_a_refused_take_costs_nothing() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=1, burst=2, clock=clock)
    assert bucket.take(2)
    clock.advance(1.0)
    assert not bucket.take(2)  # one token there: refused, and not spent
    assert bucket.take(1)


def test_take_counts_a_weight() -> None:
    bucket = TokenBucket(rate=1, burst=5, clock=Clock())
    assert bucket.take(4)
    assert not bucket.take(2)
    assert bucket.take(1)


@pytest.mark.parametrize("rate", [0, -1])
def test_a_rate_of_zero_or_less_never_refuses(rate: float) -> None:
    bucket = TokenBucket(rate=rate, burst=0, clock=Clock())
    assert all(bucket.take() for _ in range(10_000))
