"""The JSON-RPC vectors (tests/vectors) over real WebSockets: daphne + rpcworker + Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.integration.harness import Cluster
from tests.vectors import loader

pytestmark = pytest.mark.anyio


class SocketConnection:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def receive(self, timeout: float) -> str:
        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(frame, str)
        return frame

    async def silent(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            return True
        return False


@pytest.fixture(scope="module")
def spec_cluster(
    redis_server: object, database: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    # One cluster for all vectors: each vector still gets its own connection.
    cluster = Cluster(redis_server, tmp_path_factory.mktemp("vectors"), database)  # type: ignore[arg-type]
    try:
        cluster.start_frontend()
        cluster.start_worker()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def connection(spec_cluster: Cluster) -> AsyncIterator[SocketConnection]:
    async with websockets.connect(spec_cluster.url("/ws/spec/"), max_size=None) as ws:
        yield SocketConnection(ws)


@pytest.mark.parametrize("vector", loader.load(), ids=lambda v: v.id)
async def test_vector(vector: loader.Vector, connection: SocketConnection) -> None:
    await loader.run(vector, connection)


async def test_frames_over_daphnes_limit_drop_only_that_connection(
    spec_cluster: Cluster, connection: SocketConnection
) -> None:
    # Above daphne's 1 MiB cap (daphne >= 4.2.2) the application never sees the frame and the
    # client sees the TCP connection drop without a close frame (1006); others are unaffected.
    async with websockets.connect(spec_cluster.url("/ws/spec/"), max_size=None) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "method": "x" * (1024 * 1024 + 10), "id": 1}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is None
    await connection.send(loader.PROBE)
    assert json.loads(await connection.receive(10)) == loader.PROBE_ANSWER
