"""WebSocket round trips written the way channels-rpc 1.0.1's own suite writes them.

Each test builds its consumer and methods inside the test function and talks to it through
``WebsocketCommunicator``, in the fresh event loop pytest-asyncio gives every test. Where 1.0.1's
tests slept a fixed time before looking at a notification's side effect, these wait for it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from channels_rpc import AsyncJsonRpcWebsocketConsumer, JsonRpcError, RpcContext
from channels_rpc.decorators import permission_required
from channels_rpc.exceptions import JsonRpcErrorCode

#: Seconds a test waits for something that should happen promptly.
PROMPTLY = 5.0


@pytest.mark.asyncio
async def test_async_websocket_connection_lifecycle() -> None:
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    connected, _ = await communicator.connect()
    assert connected
    await communicator.disconnect()


@pytest.mark.asyncio
async def test_async_rpc_method_call_over_websocket() -> None:
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    @TestAsyncConsumer.rpc_method()
    async def async_multiply(x: int, y: int) -> int:
        return x * y

    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_json_to(
        {"jsonrpc": "2.0", "method": "async_multiply", "params": {"x": 7, "y": 8}, "id": 1}
    )
    response = await communicator.receive_json_from()
    assert response == {"jsonrpc": "2.0", "id": 1, "result": 56}
    await communicator.disconnect()


@pytest.mark.asyncio
async def test_sync_method_call_over_websocket() -> None:
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    @TestAsyncConsumer.rpc_method()
    def add(a: int, b: int) -> int:
        return a + b

    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_json_to(
        {"jsonrpc": "2.0", "method": "add", "params": {"a": 5, "b": 3}, "id": 1}
    )
    response = await communicator.receive_json_from()
    assert response["result"] == 8
    await communicator.disconnect()


@pytest.mark.asyncio
async def test_async_notification_runs_and_is_not_answered() -> None:
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    received: list[str] = []
    ran = asyncio.Event()

    @TestAsyncConsumer.rpc_notification()
    async def async_notify(message: str) -> None:
        received.append(message)
        ran.set()

    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_json_to(
        {"jsonrpc": "2.0", "method": "async_notify", "params": {"message": "test"}}
    )
    await asyncio.wait_for(ran.wait(), PROMPTLY)
    assert received == ["test"]
    assert await communicator.receive_nothing(0.1)
    await communicator.disconnect()


@pytest.mark.asyncio
async def test_async_method_not_found_error() -> None:
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_json_to({"jsonrpc": "2.0", "method": "unknown_async_method", "id": 1})
    response = await communicator.receive_json_from()
    assert response["error"]["code"] == -32601
    assert response["id"] == 1
    await communicator.disconnect()


@pytest.mark.asyncio
async def test_async_multiple_sequential_calls() -> None:
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    @TestAsyncConsumer.rpc_method()
    async def async_add(a: int, b: int) -> int:
        return a + b

    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    for i in range(3):
        await communicator.send_json_to(
            {"jsonrpc": "2.0", "method": "async_add", "params": {"a": i, "b": i + 1}, "id": i}
        )
        response = await communicator.receive_json_from()
        assert response["result"] == i + (i + 1)
    await communicator.disconnect()


@pytest.mark.asyncio
async def test_async_method_with_complex_params() -> None:
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    @TestAsyncConsumer.rpc_method()
    async def process_data(data: dict[str, Any]) -> int:
        return len(data.get("items", []))

    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    params = {"data": {"items": [1, 2, 3, 4, 5], "metadata": {"type": "test"}}}
    await communicator.send_json_to(
        {"jsonrpc": "2.0", "method": "process_data", "params": params, "id": 1}
    )
    response = await communicator.receive_json_from()
    assert response["result"] == 5
    await communicator.disconnect()


@pytest.mark.asyncio
async def test_invalid_request_format() -> None:
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_json_to({"jsonrpc": "2.0", "id": 1})
    response = await communicator.receive_json_from()
    assert response["error"]["code"] == -32600
    await communicator.disconnect()


@pytest.mark.asyncio
async def test_custom_json_encoder() -> None:
    class DateTimeEncoder(json.JSONEncoder):
        def default(self, o: Any) -> Any:
            if isinstance(o, datetime):
                return o.isoformat()
            return super().default(o)

    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        json_encoder_class = DateTimeEncoder

    @TestAsyncConsumer.rpc_method()
    async def get_time() -> dict[str, Any]:
        return {"timestamp": datetime(2024, 1, 15, 10, 30, 45)}

    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_json_to({"jsonrpc": "2.0", "method": "get_time", "id": 1})
    response = await communicator.receive_json_from()
    assert response["result"] == {"timestamp": "2024-01-15T10:30:45"}
    await communicator.disconnect()


@pytest.mark.asyncio
async def test_context_injection_async() -> None:
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    @TestAsyncConsumer.rpc_method()
    async def whoami(ctx: RpcContext) -> dict[str, Any]:
        return {
            "method": ctx.method_name,
            "id": ctx.rpc_id,
            "notification": ctx.is_notification,
            "scope_type": ctx.scope["type"],
        }

    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_json_to({"jsonrpc": "2.0", "method": "whoami", "id": "ctx-1"})
    response = await communicator.receive_json_from()
    assert response["result"] == {
        "method": "whoami",
        "id": "ctx-1",
        "notification": False,
        "scope_type": "websocket",
    }
    await communicator.disconnect()


@pytest.mark.asyncio
async def test_json_rpc_error_raised_by_a_method() -> None:
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    @TestAsyncConsumer.rpc_method()
    async def validate(ctx: RpcContext, value: int) -> int:
        raise JsonRpcError(ctx.rpc_id, JsonRpcErrorCode.INVALID_PARAMS, {"field": "value"})

    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_json_to(
        {"jsonrpc": "2.0", "method": "validate", "params": [1], "id": 11}
    )
    response = await communicator.receive_json_from()
    assert response == {
        "jsonrpc": "2.0",
        "id": 11,
        "error": {"code": -32602, "message": "Invalid Params", "data": {"field": "value"}},
    }
    await communicator.disconnect()


@pytest.mark.asyncio
async def test_method_timeout() -> None:
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    @TestAsyncConsumer.rpc_method(timeout=0.2)
    async def slow() -> None:
        await asyncio.sleep(10)

    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_json_to({"jsonrpc": "2.0", "method": "slow", "id": 1})
    response = await communicator.receive_json_from(timeout=PROMPTLY)
    assert response["error"] == {
        "code": -32603,
        "message": "Internal Error: Method execution timed out after 0.2 seconds",
        "data": {"timeout": 0.2},
    }
    await communicator.disconnect()


@pytest.mark.asyncio
async def test_first_call_of_a_test_is_answered_promptly() -> None:
    # Every test runs in a new event loop: the embedded worker of the previous one must not
    # hold this one's first calls back.
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    @TestAsyncConsumer.rpc_method()
    async def ping() -> str:
        return "pong"

    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    started = time.perf_counter()
    await communicator.send_json_to({"jsonrpc": "2.0", "method": "ping", "id": 1})
    assert (await communicator.receive_json_from())["result"] == "pong"
    elapsed = time.perf_counter() - started
    await communicator.disconnect()
    assert elapsed < 0.05, f"the first call took {elapsed * 1000:.0f} ms"


@pytest.mark.asyncio
async def test_concurrent_method_calls_same_connection() -> None:
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    call_count = 0

    @TestAsyncConsumer.rpc_method()
    async def concurrent_method(_ctx: RpcContext, request_id: int) -> dict[str, int]:
        nonlocal call_count
        call_count += 1
        await asyncio.sleep(0.001)
        return {"request_id": request_id, "result": request_id * 2}

    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    for i in range(100):
        await communicator.send_json_to(
            {
                "jsonrpc": "2.0",
                "method": "concurrent_method",
                "params": {"request_id": i},
                "id": i,
            }
        )
    responses = [await communicator.receive_json_from() for _ in range(100)]
    await communicator.disconnect()
    assert call_count == 100
    assert {response["result"]["request_id"] for response in responses} == set(range(100))


@pytest.mark.asyncio
async def test_multiple_concurrent_connections() -> None:
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    @TestAsyncConsumer.rpc_method()
    async def connection_method(_ctx: RpcContext, value: int) -> int:
        return value + 100

    async def client_session(client_id: int) -> list[Any]:
        communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
        await communicator.connect()
        responses = []
        for req_id in range(5):
            await communicator.send_json_to(
                {
                    "jsonrpc": "2.0",
                    "method": "connection_method",
                    "params": {"value": client_id * 100 + req_id},
                    "id": req_id,
                }
            )
            responses.append((await communicator.receive_json_from())["result"])
        await communicator.disconnect()
        return responses

    all_responses = await asyncio.gather(*[client_session(i) for i in range(20)])
    for client_id, responses in enumerate(all_responses):
        assert responses == [client_id * 100 + req_id + 100 for req_id in range(5)]


@pytest.mark.asyncio
async def test_concurrent_notifications() -> None:
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    received_notifications: list[dict[str, Any]] = []
    all_received = asyncio.Event()

    @TestAsyncConsumer.rpc_notification()
    async def fast_notification(event: str, data: dict[str, Any]) -> None:
        received_notifications.append({"event": event, "data": data})
        if len(received_notifications) == 100:
            all_received.set()

    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    for i in range(100):
        await communicator.send_json_to(
            {
                "jsonrpc": "2.0",
                "method": "fast_notification",
                "params": {"event": f"event_{i}", "data": {"id": i}},
            }
        )
    await asyncio.wait_for(all_received.wait(), PROMPTLY)
    await communicator.disconnect()
    assert len(received_notifications) == 100


@pytest.mark.asyncio
async def test_a_notification_sent_just_before_the_close_still_runs() -> None:
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    saved: list[str] = []
    done = asyncio.Event()

    @TestAsyncConsumer.rpc_notification()
    async def save(text: str) -> None:
        await asyncio.sleep(0.05)  # still running when the close comes
        saved.append(text)
        done.set()

    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_json_to({"jsonrpc": "2.0", "method": "save", "params": ["draft"]})
    await communicator.disconnect()
    await asyncio.wait_for(done.wait(), PROMPTLY)
    assert saved == ["draft"]


@pytest.mark.asyncio
async def test_a_sync_notification_sent_just_before_the_close_still_runs() -> None:
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    saved: list[str] = []
    done = threading.Event()

    @TestAsyncConsumer.rpc_notification()
    def save(text: str) -> None:
        saved.append(text)
        done.set()

    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_json_to({"jsonrpc": "2.0", "method": "save", "params": ["draft"]})
    await communicator.disconnect()
    assert await asyncio.to_thread(done.wait, PROMPTLY)
    assert saved == ["draft"]


@pytest.mark.asyncio
async def test_many_sequential_calls() -> None:
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    call_count = 0

    @TestAsyncConsumer.rpc_method()
    async def async_fast_method(_ctx: RpcContext, x: int) -> int:
        nonlocal call_count
        call_count += 1
        return x * 3

    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    for i in range(1000):
        await communicator.send_json_to(
            {"jsonrpc": "2.0", "method": "async_fast_method", "params": {"x": i}, "id": i}
        )
        response = await communicator.receive_json_from()
        assert response["result"] == i * 3
    await communicator.disconnect()
    assert call_count == 1000


@pytest.mark.asyncio
async def test_nothing_is_left_running_after_the_last_disconnect() -> None:
    # pytest-asyncio before 0.23 closed each test's loop without cancelling what was left on
    # it: the embedded worker must be gone by the time the last connection has closed.
    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    @TestAsyncConsumer.rpc_method()
    def sync_add(a: int, b: int) -> int:
        return a + b

    threads_before = set(threading.enumerate())
    communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_json_to(
        {"jsonrpc": "2.0", "method": "sync_add", "params": [2, 3], "id": 1}
    )
    assert (await communicator.receive_json_from())["result"] == 5
    await communicator.disconnect()

    left = asyncio.all_tasks() - {asyncio.current_task()}
    assert not left, f"still pending after the last disconnect: {left}"
    started = set(threading.enumerate()) - threads_before
    for thread in started:
        await asyncio.to_thread(thread.join, PROMPTLY)
    assert not [thread.name for thread in started if thread.is_alive()]


@pytest.mark.asyncio
async def test_permission_required_over_the_socket() -> None:
    class FakeUser:
        is_authenticated = True
        pk = 1

        def __init__(self, perms: set[str]) -> None:
            self.perms = perms

        def has_perms(self, perms: Any) -> bool:
            return set(perms) <= self.perms

    class TestAsyncConsumer(AsyncJsonRpcWebsocketConsumer):
        pass

    @TestAsyncConsumer.rpc_method()
    @permission_required("app.view_secret")
    async def secret(ctx: RpcContext) -> str:
        return "allowed"

    answers = []
    for perms in ({"app.view_secret"}, set()):
        communicator = WebsocketCommunicator(TestAsyncConsumer.as_asgi(), "/ws/")
        communicator.scope["user"] = FakeUser(perms)
        await communicator.connect()
        await communicator.send_json_to({"jsonrpc": "2.0", "method": "secret", "id": 1})
        answers.append(await communicator.receive_json_from())
        await communicator.disconnect()
    assert answers[0]["result"] == "allowed"
    assert answers[1]["error"]["code"] == -32601
