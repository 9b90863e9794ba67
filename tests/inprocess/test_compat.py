"""The API and wire shapes of channels-rpc 1.0.1 that this package keeps (upstream.md)."""

from __future__ import annotations

import asyncio
import datetime
import json
from typing import Any

import pytest

from channels_rpc import AsyncJsonRpcWebsocketConsumer, JsonRpcError, RpcContext
from channels_rpc.registry import MethodInfo
from tests.inprocess.helpers import (
    call,
    connect,
    error,
    notification,
    receive,
    receive_text,
    result,
    send,
    silent,
)

pytestmark = pytest.mark.anyio


class LegacyConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


class LegacyChild(LegacyConsumer):
    pass


@LegacyConsumer.rpc_method("math.subtract")
async def subtract(minuend: int, subtrahend: int) -> int:
    """Subtract two numbers."""
    return minuend - subtrahend


@LegacyConsumer.rpc_method
async def bare(ctx: RpcContext, value: int = 1) -> int:
    return value


@LegacyConsumer.rpc_method(websocket=False)
async def hidden() -> str:
    return "hidden"


@LegacyConsumer.rpc_method(timeout=0.2)
async def too_slow() -> None:
    await asyncio.sleep(5)


@LegacyConsumer.rpc_method()
async def fails_with(code: int, data: Any = None) -> None:
    raise JsonRpcError(None, code, data)


@LegacyConsumer.rpc_notification()
async def notif(msg: str) -> None:
    """Fire and forget."""


# ---------------------------------------------------------------------------------------------
# Registration and introspection


async def test_custom_names_and_bare_decorators_register_methods() -> None:
    assert LegacyConsumer.get_rpc_methods() == [
        "math.subtract",
        "bare",
        "hidden",
        "too_slow",
        "fails_with",
    ]
    assert LegacyConsumer.get_rpc_notifications() == ["notif"]
    # Bare use returns the function itself (mypy sees a decorator: rpc_method has no overloads).
    function: Any = bare
    assert await function(RpcContext(None, "bare", 1, False), 5) == 5
    communicator = await connect(LegacyConsumer)
    assert await call(communicator, "math.subtract", {"minuend": 42, "subtrahend": 23}) == result(
        1, 19
    )
    assert await call(communicator, "bare", [3], rpc_id=2) == result(2, 3)
    await communicator.disconnect()


async def test_get_method_info_describes_a_method() -> None:
    info = LegacyConsumer.get_method_info("bare")
    assert isinstance(info, MethodInfo)
    assert (info.name, info.func, info.signature, info.docstring) == (
        "bare",
        bare,
        "(ctx: 'RpcContext', value: 'int' = 1) -> 'int'",
        None,
    )
    assert info.accepts_context is True
    assert info.transport_options == {"websocket": True}
    assert info.is_notification is False
    assert LegacyConsumer.get_method_info("notif").is_notification is True


async def test_get_method_info_of_an_unknown_name_raises_key_error() -> None:
    with pytest.raises(KeyError) as raised:
        LegacyConsumer.get_method_info("x")
    assert raised.value.args == ("Method 'x' not registered",)


async def test_describe_api_has_the_shape_of_1_0_1() -> None:
    api = LegacyConsumer.describe_api()
    assert set(api) == {"jsonrpc", "consumer", "methods", "notifications"}
    assert (api["jsonrpc"], api["consumer"]) == ("2.0", "LegacyConsumer")
    assert api["methods"][0] == {
        "name": "math.subtract",
        "signature": "(minuend: 'int', subtrahend: 'int') -> 'int'",
        "doc": "Subtract two numbers.",
        "accepts_context": False,
        "transports": ["websocket"],
    }
    assert api["methods"][2]["transports"] == []
    assert api["notifications"] == [
        {
            "name": "notif",
            "signature": "(msg: 'str') -> 'None'",
            "doc": "Fire and forget.",
            "accepts_context": False,
        }
    ]
    assert LegacyChild.describe_api()["methods"] == []


async def test_websocket_false_methods_look_like_unknown_ones() -> None:
    communicator = await connect(LegacyConsumer)
    assert await call(communicator, "hidden") == error(
        1, -32601, "Method Not Found: 'hidden'", {"method": "hidden"}
    )
    await communicator.disconnect()


async def test_subclasses_do_not_inherit_methods() -> None:
    assert LegacyChild.get_rpc_methods() == []
    communicator = await connect(LegacyChild)
    answer = await call(communicator, "math.subtract", [2, 1])
    assert answer["error"]["message"] == "Method Not Found: 'math.subtract'"
    await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# Consumer methods


async def test_validate_scope_raises_for_a_scope_that_is_not_a_dict() -> None:
    consumer = LegacyConsumer()
    consumer.scope = {"type": "websocket", "path": "/ws/"}
    consumer.validate_scope()
    consumer.scope = ["not", "a", "dict"]
    with pytest.raises(ValueError, match="Scope must be a dict"):
        consumer.validate_scope()


async def test_notify_channel_sends_a_notification_from_the_live_consumer() -> None:
    class GreetingConsumer(AsyncJsonRpcWebsocketConsumer):
        async def connect(self) -> None:
            await self.accept()
            await self.notify_channel("welcome", {"path": self.scope["path"]})

    communicator = await connect(GreetingConsumer, "/ws/hello/")
    assert await receive(communicator) == {
        "jsonrpc": "2.0",
        "method": "welcome",
        "params": {"path": "/ws/hello/"},
    }
    await communicator.disconnect()


async def test_notify_channel_encodes_like_ctx_notify() -> None:
    class ClockConsumer(AsyncJsonRpcWebsocketConsumer):
        async def connect(self) -> None:
            await self.accept()
            await self.notify_channel("clock", {"at": datetime.datetime(2024, 1, 2, 3, 4, 5)})

    communicator = await connect(ClockConsumer)
    assert await receive(communicator, timeout=0.5) == {
        "jsonrpc": "2.0",
        "method": "clock",
        "params": {"at": "2024-01-02T03:04:05"},
    }
    await communicator.disconnect()


class SortedSetEncoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        return sorted(o) if isinstance(o, set) else super().default(o)


async def test_encode_json_is_an_async_classmethod_honouring_the_encoder() -> None:
    class EncodedConsumer(AsyncJsonRpcWebsocketConsumer):
        json_encoder_class = SortedSetEncoder

    assert await EncodedConsumer.encode_json({"s": {2, 1}}) == '{"s": [1, 2]}'
    assert await LegacyConsumer.encode_json({"s": {1}}) == '{"s": "{1}"}'  # str() fallback


# ---------------------------------------------------------------------------------------------
# Wire shapes of upstream.md section 5 that are kept


LONG_ID = "x" * 300


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        pytest.param(
            {"jsonrpc": "2.0", "method": "nope", "id": 1},
            error(1, -32601, "Method Not Found: 'nope'", {"method": "nope"}),
            id="9-unknown-method",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "notif", "id": 5},
            error(5, -32601, "Method Not Found: 'notif'", {"method": "notif"}),
            id="14-request-to-a-notification",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "math.subtract", "params": [3, 1], "id": None},
            result(None, 2),
            id="18-null-id",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "math.subtract", "params": [3, 1], "id": "abc-1"},
            result("abc-1", 2),
            id="19-string-id",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "math.subtract", "params": [3, 1], "id": 0},
            result(0, 2),
            id="19-zero-id",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "math.subtract", "params": [3, 1], "id": LONG_ID},
            error(None, -32600, "Request ID too long (max: 256 chars)"),
            id="21-long-id",
        ),
        pytest.param(
            {"jsonrpc": "1.0", "method": "math.subtract", "id": 3},
            error(
                3,
                -32600,
                "Invalid Request: Invalid JSON-RPC version '1.0', expected '2.0'",
                {"version": "1.0"},
            ),
            id="30-version-1.0",
        ),
        pytest.param(
            {"method": "math.subtract", "id": 3},
            error(
                3,
                -32600,
                "Invalid Request: Invalid JSON-RPC version 'None', expected '2.0'",
                {"version": None},
            ),
            id="31-version-missing",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "id": 1},
            error(
                1,
                -32600,
                "Invalid Request: Missing required 'method' field",
                {"field": "Missing required 'method' field"},
            ),
            id="32-missing-method",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": 5, "id": 1},
            error(
                1,
                -32600,
                "Invalid Request: 'method' must be a string, got int",
                {"field": "'method' must be a string, got int"},
            ),
            id="33-method-not-a-string",
        ),
        pytest.param(
            {
                "jsonrpc": "2.0",
                "method": "fails_with",
                "params": [-32602, {"field": "x"}],
                "id": 11,
            },
            error(11, -32602, "Invalid Params", {"field": "x"}),
            id="44-invalid-params-error",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "fails_with", "params": [-32000, {"why": "x"}], "id": 12},
            error(12, -32000, "Application Error", {"why": "x"}),
            id="45-error-with-id-None-gets-the-request-id",
        ),
        pytest.param(
            {
                "jsonrpc": "2.0",
                "method": "fails_with",
                "params": [-32602, {"expected": "int", "actual": "str"}],
                "id": 2,
            },
            error(
                2,
                -32602,
                "Invalid Params: Expected int, got str",
                {"expected": "int", "actual": "str"},
            ),
            id="47-expected-actual",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "too_slow", "id": 4},
            error(
                4,
                -32603,
                "Internal Error: Method execution timed out after 0.2 seconds",
                {"timeout": 0.2},
            ),
            id="48-timeout",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "math.subtract", "params": [3, 1], "id": 8, "foo": "bar"},
            result(8, 2),
            id="72-extra-members-ignored",
        ),
    ],
)
async def test_upstream_wire_shapes(frame: dict[str, Any], expected: dict[str, Any]) -> None:
    communicator = await connect(LegacyConsumer)
    await send(communicator, frame)
    assert await receive(communicator) == expected
    await communicator.disconnect()


async def test_non_ascii_method_names_are_escaped_in_the_answer() -> None:
    communicator = await connect(LegacyConsumer)
    await send(communicator, {"jsonrpc": "2.0", "method": "äöü", "id": 1})
    assert "Method Not Found: '\\u00e4\\u00f6\\u00fc'" in await receive_text(communicator)
    await communicator.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        notification("notif", {"msg": "hi"}),
        notification("missing"),
        notification("math.subtract", [1, 2]),
    ],
    ids=["11-notification", "12-unknown-notification", "13-notification-to-a-method"],
)
async def test_notifications_are_never_answered(frame: dict[str, Any]) -> None:
    communicator = await connect(LegacyConsumer)
    await send(communicator, frame)
    assert await silent(communicator)
    assert await call(communicator, "math.subtract", [1, 1]) == result(1, 0)  # still serving
    await communicator.disconnect()
