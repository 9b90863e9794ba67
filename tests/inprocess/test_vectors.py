"""The JSON-RPC vectors (tests/vectors) against the consumer in-process, embedded worker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from channels.testing import WebsocketCommunicator

from tests.project import counters
from tests.project.consumers import SpecConsumer
from tests.vectors import loader

pytestmark = pytest.mark.anyio


class CommunicatorConnection:
    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator

    async def send(self, frame: str | bytes) -> None:
        # send_input, not send_to: send_to refuses empty frames, which vector P05 sends.
        key = "bytes" if isinstance(frame, bytes) else "text"
        await self.communicator.send_input({"type": "websocket.receive", key: frame})

    async def receive(self, timeout: float) -> str:
        text: str = await self.communicator.receive_from(timeout)
        return text

    async def silent(self, timeout: float) -> bool:
        quiet: bool = await self.communicator.receive_nothing(timeout)
        return quiet

    async def ran(self, notification: str) -> int:
        # The embedded worker runs methods in this process: the counters are this process's.
        return counters.local(notification)


@pytest.fixture
async def connection() -> AsyncIterator[CommunicatorConnection]:
    communicator = WebsocketCommunicator(SpecConsumer.as_asgi(), "/ws/spec/")
    connected, _ = await communicator.connect()
    assert connected
    yield CommunicatorConnection(communicator)
    await communicator.disconnect()


@pytest.mark.parametrize("vector", loader.load(), ids=lambda v: v.id)
async def test_vector(vector: loader.Vector, connection: CommunicatorConnection) -> None:
    await loader.run(vector, connection)


async def test_invalid_utf8_in_a_binary_frame_is_a_parse_error(
    connection: CommunicatorConnection,
) -> None:
    # E20 over daphne never reaches the application (autobahn closes with 1007); a binary
    # frame is the one way bytes that are not UTF-8 can reach the consumer.
    await connection.send(b'{"jsonrpc": "2.0", "method": "\xff", "id": 1}')
    loader.check(
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32700}},
        json.loads(await connection.receive(5)),
    )
