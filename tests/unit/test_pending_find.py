"""``PendingCalls.find``: the pending call a cancellation names by its JSON-RPC id."""

from __future__ import annotations

from typing import Any

import pytest

from channels_rpc.batches import Batch
from channels_rpc.pending import PendingCalls


def test_find_returns_the_pending_call_with_that_id_and_keeps_it() -> None:
    calls = PendingCalls(limit=10)
    first = calls.open(1, "a", None)
    second = calls.open("job", "b", None)
    assert calls.find(1) is first
    assert calls.find("job") is second
    assert len(calls) == 2
    assert calls.take(first.token) is first  # find did not take it


@pytest.mark.parametrize(
    ("opened", "looked_up"), [(1, 1.0), (1.0, 1), (0, 0.0), (-5, -5.0), ("", "")]
)
def test_find_compares_ids_as_json_values(opened: Any, looked_up: Any) -> None:
    calls = PendingCalls(limit=10)
    pending = calls.open(opened, "m", None)
    assert calls.find(looked_up) is pending


@pytest.mark.parametrize(("opened", "looked_up"), [(1, "1"), ("1", 1), (1, 2), ("a", "A")])
def test_find_does_not_confuse_different_ids(opened: Any, looked_up: Any) -> None:
    calls = PendingCalls(limit=10)
    calls.open(opened, "m", None)
    assert calls.find(looked_up) is None


def test_null_ids_are_never_found() -> None:
    calls = PendingCalls(limit=10)
    calls.open(None, "m", None)
    assert len(calls) == 1
    assert calls.find(None) is None


def test_answered_or_drained_calls_are_not_found() -> None:
    calls = PendingCalls(limit=10)
    answered = calls.open(1, "m", None)
    calls.open(2, "m", None)
    calls.take(answered.token)
    assert calls.find(1) is None
    assert calls.find(2) is not None
    calls.drain()
    assert calls.find(2) is None


def test_a_reused_id_finds_the_new_call() -> None:
    calls = PendingCalls(limit=10)
    old = calls.open(7, "m", None)
    calls.take(old.token)
    new = calls.open(7, "m", None)
    assert calls.find(7) is new
    assert new.token != old.token


def test_find_returns_batch_elements_with_their_slot() -> None:
    calls = PendingCalls(limit=10)
    batch = Batch()
    first = calls.open(1, "m", None, batch)
    second = calls.open(2, "m", None, batch)
    found = calls.find(2)
    assert found is second
    assert (found.batch, found.slot) == (batch, 1)
    assert first.slot == 0
