from __future__ import annotations

import json
from typing import Any

import pytest

from channels_rpc.envelope import (
    PUSH,
    REQUEST,
    RESPONSE,
    VERSION,
    Call,
    EnvelopeError,
    notification_frame,
    push_message,
    response_message,
)


def make_call(**changes: Any) -> Call:
    values: dict[str, Any] = {
        "consumer": "app.consumers.Chat",
        "method": "add",
        "body": '{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}',
        "queue": "rpc.default",
        "call": 3,
        "reply_to": "specific.inmemory!abc",
        "deadline": 1000.5,
        "timeout": 5.0,
        "sent_at": 995.5,
        "scope": {"path": "/ws/", "user_id": 4},
    }
    values.update(changes)
    return Call(**values)


def test_call_round_trip() -> None:
    call = make_call()
    message = call.to_message()
    assert message["type"] == REQUEST == "rpc.request"
    assert message["v"] == VERSION == 1
    assert Call.from_message(message) == call
    json.dumps(message)


def test_message_keys() -> None:
    assert set(make_call().to_message()) == {
        "type",
        "v",
        "consumer",
        "method",
        "body",
        "queue",
        "call",
        "reply",
        "deadline",
        "timeout",
        "sent",
        "scope",
        "ack",
        "trace",
    }


def test_the_trace_context_travels_and_an_older_front_ends_message_has_none() -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert Call.from_message(make_call(trace=parent).to_message()).trace == parent
    older = make_call().to_message()
    del older["trace"]
    assert Call.from_message(older).trace is None


def test_notification_round_trip() -> None:
    call = make_call(call=None, deadline=None, timeout=None)
    assert call.is_notification
    assert not make_call().is_notification
    assert Call.from_message(call.to_message()) == call


def test_scope_is_copied_into_a_plain_dict() -> None:
    scope = {"path": "/"}
    message = make_call(scope=scope).to_message()
    assert message["scope"] == scope
    assert message["scope"] is not scope


@pytest.mark.parametrize("version", [None, 0, 2, "1"])
def test_other_versions_are_refused(version: Any) -> None:
    message = make_call().to_message()
    message["v"] = version
    with pytest.raises(EnvelopeError, match=r"unsupported rpc\.request version"):
        Call.from_message(message)


def test_missing_version_is_refused() -> None:
    message = make_call().to_message()
    del message["v"]
    with pytest.raises(EnvelopeError):
        Call.from_message(message)


@pytest.mark.parametrize(
    "key", ["consumer", "method", "body", "call", "reply", "deadline", "timeout", "sent", "scope"]
)
def test_missing_keys_are_refused(key: str) -> None:
    message = make_call().to_message()
    del message[key]
    with pytest.raises(EnvelopeError, match=f"without '{key}'"):
        Call.from_message(message)


def test_envelope_errors_are_value_errors() -> None:
    assert issubclass(EnvelopeError, ValueError)


def test_response_and_push_messages() -> None:
    assert response_message(3, False, '{"code":1}') == {
        "type": RESPONSE,
        "v": VERSION,
        "call": 3,
        "ok": False,
        "body": '{"code":1}',
    }
    assert push_message("frame") == {"type": PUSH, "v": VERSION, "body": "frame"}
    assert (RESPONSE, PUSH) == ("rpc.response", "rpc.push")


def test_notification_frame_omits_params_when_none() -> None:
    assert notification_frame("tick") == '{"jsonrpc":"2.0","method":"tick"}'
    assert json.loads(notification_frame("tick", None)) == {"jsonrpc": "2.0", "method": "tick"}


@pytest.mark.parametrize("params", [[], {}, [1, "é"], {"a": None}])
def test_notification_frame_keeps_params(params: Any) -> None:
    assert json.loads(notification_frame("m", params)) == {
        "jsonrpc": "2.0",
        "method": "m",
        "params": params,
    }


def test_notification_frame_refuses_nan() -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        notification_frame("m", [float("nan")])


def test_notification_frame_uses_the_encoder() -> None:
    class SetEncoder(json.JSONEncoder):
        def default(self, o: Any) -> Any:
            if isinstance(o, set):
                return sorted(o)
            return super().default(o)

    assert json.loads(notification_frame("m", {"s": {2, 1}}, encoder=SetEncoder))["params"] == {
        "s": [1, 2]
    }
    with pytest.raises(TypeError):
        notification_frame("m", {"s": {2, 1}})
