from __future__ import annotations

import json
from typing import Any

import pytest

from channels_rpc.pending import Batch, DuplicateId, Pending, PendingCalls, TooManyInFlight
from channels_rpc.protocol import error_frame, result_frame


def test_open_hands_out_distinct_tokens_and_encodes_the_id() -> None:
    calls = PendingCalls(limit=10)
    first = calls.open(1, "a", 5.0)
    second = calls.open("x\ud800", "b", None)
    assert first.token != second.token
    assert (first.id_json, first.method, first.timeout) == ("1", "a", 5.0)
    assert second.id_json == '"x\\ud800"'
    assert len(calls) == 2


def test_a_pending_id_cannot_be_reused_until_taken() -> None:
    calls = PendingCalls(limit=10)
    pending = calls.open(7, "m", None)
    with pytest.raises(DuplicateId):
        calls.open(7, "m", None)
    assert len(calls) == 1
    assert calls.take(pending.token) is pending
    again = calls.open(7, "m", None)
    assert again.token != pending.token


@pytest.mark.parametrize(("first", "second"), [(1, 1.0), (1.0, 1), (0, 0.0), ("a", "a")])
def test_ids_compare_as_json_values(first: Any, second: Any) -> None:
    calls = PendingCalls(limit=10)
    calls.open(first, "m", None)
    with pytest.raises(DuplicateId):
        calls.open(second, "m", None)


@pytest.mark.parametrize(("first", "second"), [(1, "1"), ("1.0", 1.0), (1, 2), ("", 0)])
def test_different_json_values_are_different_ids(first: Any, second: Any) -> None:
    calls = PendingCalls(limit=10)
    calls.open(first, "m", None)
    calls.open(second, "m", None)
    assert len(calls) == 2


def test_null_ids_are_not_tracked() -> None:
    calls = PendingCalls(limit=10)
    first = calls.open(None, "m", None)
    second = calls.open(None, "m", None)
    assert first.key is None
    assert first.id_json == "null"
    assert first.token != second.token
    assert len(calls) == 2


def test_in_flight_limit() -> None:
    calls = PendingCalls(limit=2)
    first = calls.open(1, "m", None)
    calls.open(None, "m", None)
    with pytest.raises(TooManyInFlight) as caught:
        calls.open(3, "m", None)
    assert caught.value.args == (2,)
    assert len(calls) == 2
    calls.take(first.token)
    calls.open(3, "m", None)
    assert len(calls) == 2


def test_a_duplicate_is_reported_before_the_limit() -> None:
    calls = PendingCalls(limit=1)
    calls.open(1, "m", None)
    with pytest.raises(DuplicateId):
        calls.open(1, "m", None)


def test_take_returns_none_for_unknown_or_answered_tokens() -> None:
    calls = PendingCalls(limit=10)
    pending = calls.open(1, "m", None)
    assert calls.take(pending.token + 100) is None
    assert calls.take(pending.token) is pending
    assert calls.take(pending.token) is None


def test_an_answered_call_is_taken_once_and_its_frame_routed() -> None:
    calls = PendingCalls(limit=10)
    ok = calls.open("a", "m", None)
    taken = calls.take(ok.token)
    assert taken is ok
    frame = taken.route(result_frame(taken.id_json, '{"x":1}'))
    assert frame is not None
    assert json.loads(frame) == {"jsonrpc": "2.0", "id": "a", "result": {"x": 1}}
    assert calls.take(ok.token) is None  # a second answer for it is dropped
    assert len(calls) == 0


def test_drain_empties_the_table() -> None:
    calls = PendingCalls(limit=10)
    opened = [calls.open(i, "m", None) for i in range(3)]
    assert calls.drain() == opened
    assert len(calls) == 0
    calls.open(1, "m", None)


# --------------------------------------------------------------------------------------------
# Batches


def test_batch_is_only_complete_after_seal() -> None:
    batch = Batch()
    slot = batch.reserve()
    assert batch.fill(slot, '{"a":1}') is None
    assert batch.seal() == '[{"a":1}]'


def test_batch_waits_for_every_slot_after_seal() -> None:
    batch = Batch()
    first, second = batch.reserve(), batch.reserve()
    assert batch.seal() is None
    assert batch.fill(second, "2") is None
    assert batch.fill(first, "1") == "[1,2]"


def test_batch_preserves_order_whatever_the_completion_order() -> None:
    batch = Batch()
    slots = [batch.reserve() for _ in range(4)]
    assert batch.add('"local"') is None
    assert batch.seal() is None
    for slot in reversed(slots[1:]):
        assert batch.fill(slot, str(slot)) is None
    result = batch.fill(slots[0], "0")
    assert result is not None
    assert json.loads(result) == [0, 1, 2, 3, "local"]


def test_batch_of_only_notifications_answers_nothing() -> None:
    assert Batch().seal() is None


def test_batch_through_pending_calls() -> None:
    calls = PendingCalls(limit=10)
    batch = Batch()
    first = calls.open(1, "a", None, batch)
    second = calls.open(2, "b", None, batch)
    assert (first.slot, second.slot) == (0, 1)
    assert first.batch is batch
    assert batch.add('{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"x"}}') is None
    assert batch.seal() is None
    taken = calls.take(second.token)
    assert taken is not None
    assert taken.route(result_frame(taken.id_json, '"b"')) is None
    taken = calls.take(first.token)
    assert taken is not None
    frame = taken.route(error_frame(taken.id_json, '{"code":1,"message":"a"}'))
    assert frame is not None
    assert [item.get("id") for item in json.loads(frame)] == [1, 2, None]


def test_route_without_batch_returns_the_frame() -> None:
    pending = Pending(token=1, id_json="1", key=("n", 1), method="m", timeout=None)
    assert pending.route("frame") == "frame"
