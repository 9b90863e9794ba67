from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from channels_rpc.batches import Batch, answer_now, fit
from channels_rpc.pending import (
    DuplicateId,
    Pending,
    PendingCalls,
    TooManyInFlight,
    deadline_error,
    unclaimed_error,
)
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


# --------------------------------------------------------------------------------------------
# Exactly once: deadlines, settling and failing, on a fake scheduler (no event loop)


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeScheduler:
    """``time`` and ``call_at`` of an event loop, on a clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object], /) -> FakeTimer:
        timer = FakeTimer(when, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for timer in sorted(self.timers, key=lambda t: t.when):
            if timer.when <= self.now and not timer.cancelled:
                timer.cancelled = True  # ran: a handle that ran cannot run again
                timer.callback()

    def armed(self) -> int:
        return sum(not timer.cancelled for timer in self.timers)


ERROR = {"code": -32012, "message": "Deadline Exceeded"}


def expired_into(calls: PendingCalls, frames: list[str | None]) -> Callable[[Pending], None]:
    """An ``on_expire`` that answers the call with ERROR, as the front-end does."""
    return lambda pending: frames.append(calls.fail(pending.token, ERROR))


def test_a_call_is_answered_at_its_deadline_and_only_then() -> None:
    clock = FakeScheduler()
    calls = PendingCalls(limit=10, scheduler=clock)
    pending = calls.open(7, "m", 5.0)
    frames: list[str | None] = []
    calls.arm(pending.token, 6.0, expired_into(calls, frames))
    clock.advance(5.9)
    assert frames == []
    clock.advance(0.2)
    assert len(frames) == 1
    assert frames[0] is not None
    assert json.loads(frames[0]) == {"jsonrpc": "2.0", "id": 7, "error": ERROR}
    assert len(calls) == 0
    # The worker's answer, late: dropped, the call was answered once.
    assert calls.settle(pending.token, result_frame(pending.id_json, '"late"')) is None


def test_settling_disarms_the_deadline() -> None:
    clock = FakeScheduler()
    calls = PendingCalls(limit=10, scheduler=clock)
    pending = calls.open("a", "m", 1.0)
    expired: list[Pending] = []
    calls.arm(pending.token, 2.0, expired.append)
    frame = calls.settle(pending.token, result_frame(pending.id_json, "1"))
    assert frame is not None
    assert json.loads(frame)["result"] == 1
    assert clock.armed() == 0
    clock.advance(10)
    assert expired == []
    assert calls.settle(pending.token, result_frame(pending.id_json, "2")) is None


@pytest.mark.parametrize("way", ["fail", "take", "drain"])
def test_every_way_out_of_the_table_disarms_the_deadline(way: str) -> None:
    clock = FakeScheduler()
    calls = PendingCalls(limit=10, scheduler=clock)
    pending = calls.open(1, "m", 1.0)
    expired: list[Pending] = []
    calls.arm(pending.token, 2.0, expired.append)
    if way == "fail":
        assert calls.fail(pending.token, ERROR) is not None
    elif way == "take":
        assert calls.take(pending.token) is pending
    else:
        assert calls.drain() == [pending]
    assert clock.armed() == 0
    clock.advance(10)
    assert expired == []


def test_an_answer_that_arrived_in_time_is_not_expired_while_it_is_prepared() -> None:
    clock = FakeScheduler()
    calls = PendingCalls(limit=10, scheduler=clock)
    pending = calls.open(3, "m", 1.0)
    expired: list[Pending] = []
    calls.arm(pending.token, 2.0, expired.append)
    assert calls.arrived(pending.token) is pending
    clock.advance(10)  # process_response middleware awaiting past the deadline
    assert expired == []
    frame = calls.settle(pending.token, result_frame(pending.id_json, '"ok"'))
    assert frame is not None
    assert json.loads(frame)["result"] == "ok"
    assert calls.arrived(pending.token) is None


def test_a_taken_call_without_limit_stays_pending_with_no_deadline() -> None:
    clock = FakeScheduler()
    calls = PendingCalls(limit=10, scheduler=clock)
    pending = calls.open(1, "m", None)
    expired: list[Pending] = []
    calls.arm(pending.token, 61.0, expired.append)  # the queue's expiry
    calls.taken(pending.token)
    clock.advance(3600)
    assert expired == []
    assert calls.get(pending.token) is pending


def test_a_taken_notification_frees_its_slot() -> None:
    clock = FakeScheduler()
    calls = PendingCalls(limit=1, scheduler=clock)
    note = calls.open_notification("n", None)
    calls.arm(note.token, 61.0, lambda pending: None)
    with pytest.raises(TooManyInFlight):
        calls.open(1, "m", None)
    calls.taken(note.token)
    assert len(calls) == 0
    assert clock.armed() == 0
    calls.open(1, "m", None)


def test_notifications_are_never_answered() -> None:
    calls = PendingCalls(limit=10, scheduler=FakeScheduler())
    note = calls.open_notification("n", 1.0)
    assert calls.fail(note.token, ERROR) is None
    assert len(calls) == 0


def test_failing_a_batch_member_completes_the_batch_once() -> None:
    clock = FakeScheduler()
    calls = PendingCalls(limit=10, scheduler=clock)
    batch = Batch()
    first = calls.open(1, "a", 1.0, batch)
    second = calls.open(2, "b", 1.0, batch)
    assert batch.seal() is None
    expired: list[str | None] = []
    calls.arm(first.token, 2.0, expired_into(calls, expired))
    assert calls.settle(second.token, result_frame(second.id_json, '"b"')) is None
    clock.advance(2.5)
    assert len(expired) == 1
    assert expired[0] is not None
    assert [item.get("id") for item in json.loads(expired[0])] == [1, 2]
    assert calls.fail(first.token, ERROR) is None


def test_arming_a_settled_call_does_nothing() -> None:
    clock = FakeScheduler()
    calls = PendingCalls(limit=10, scheduler=clock)
    pending = calls.open(1, "m", 1.0)
    calls.take(pending.token)
    calls.arm(pending.token, 1.0, lambda p: pytest.fail("expired a settled call"))
    assert clock.timers == []


def test_unknown_tokens_settle_and_fail_to_nothing() -> None:
    calls = PendingCalls(limit=10, scheduler=FakeScheduler())
    assert calls.settle(99, "frame") is None
    assert calls.fail(99, ERROR) is None
    calls.taken(99)
    assert calls.arrived(99) is None


def test_refusals_say_why_in_their_error() -> None:
    duplicate = DuplicateId(1).error()
    assert duplicate["code"] == -32600
    assert duplicate["data"] == {"field": "Request ID is already in use by a pending request"}
    busy = TooManyInFlight(64).error()
    assert busy["code"] == -32010
    assert busy["data"] == {"limit": 64, "reason": "too many calls in flight on this connection"}


def test_deadline_and_unclaimed_errors_name_the_queue() -> None:
    pending = Pending(token=1, id_json="1", key=("n", 1), method="m", timeout=2.5, queue="rpc.q")
    late = deadline_error(pending)
    assert (late["code"], late["message"]) == (
        -32012,
        "Deadline Exceeded: no answer within 2.5 seconds",
    )
    assert late["data"] == {"timeout": 2.5, "queue": "rpc.q"}
    unclaimed = unclaimed_error(pending, 60.0)
    assert unclaimed["code"] == -32011
    assert unclaimed["data"] == {
        "queue": "rpc.q",
        "reason": "no worker took the call within 60 seconds",
    }


def test_an_answer_too_large_is_replaced_by_a_32014_for_its_id() -> None:
    frame = result_frame("5", '"' + "x" * 100 + '"')
    assert fit("5", frame, 1000) == frame
    small = fit("5", frame, 50)
    assert json.loads(small)["error"]["code"] == -32014
    assert json.loads(small)["id"] == 5
    batch = Batch()
    assert answer_now("5", frame, batch, 1000) is None
    assert batch.seal() == "[" + frame + "]"
    assert answer_now("5", frame, None, 1000) == frame


def test_queued_notifications_count_against_the_limit() -> None:
    calls = PendingCalls(limit=2)
    calls.open(1, "m", None)
    calls.open_notification("n", None)
    with pytest.raises(TooManyInFlight):
        calls.open_notification("n", None)
    with pytest.raises(TooManyInFlight):
        calls.open(2, "m", None)
