from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator

from channels_rpc import AsyncJsonRpcWebsocketConsumer

pytestmark = pytest.mark.anyio


class SmokeConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


@SmokeConsumer.rpc_method()
async def add(a: int, b: int) -> int:
    return a + b


async def test_round_trip_through_the_embedded_worker() -> None:
    communicator = WebsocketCommunicator(SmokeConsumer.as_asgi(), "/ws/")
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1})
    assert await communicator.receive_json_from(timeout=3) == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": 3,
    }
    await communicator.disconnect()
