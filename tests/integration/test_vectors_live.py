"""The JSON-RPC vectors (tests/vectors) over real WebSockets: daphne + rpcworker + Redis.

Beyond the answers, each vector proves where its methods ran: the spec methods count their runs
under their pid (``spec-pids``), and every run a vector caused must be the worker's, not daphne's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import websockets
from redis.asyncio import Redis as AsyncRedis

from tests.integration.harness import Cluster, Redis
from tests.integration.support import (
    SocketConnection,
    run_live_vector,
    spec_connection,
    vector_cluster,
)
from tests.vectors import loader

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def spec_cluster(
    redis_server: Redis, database: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    with vector_cluster(redis_server, database, tmp_path_factory.mktemp("vectors")) as cluster:
        yield cluster


@pytest.fixture
async def connection(
    spec_cluster: Cluster, redis_client: AsyncRedis
) -> AsyncIterator[SocketConnection]:
    async with spec_connection(spec_cluster, redis_client) as connection:
        yield connection


@pytest.mark.parametrize("vector", loader.load(), ids=lambda v: v.id)
async def test_vector(
    vector: loader.Vector, spec_cluster: Cluster, redis_client: AsyncRedis
) -> None:
    await run_live_vector(vector, spec_cluster, redis_client)


async def test_frames_over_daphnes_limit_drop_only_that_connection(
    spec_cluster: Cluster, connection: SocketConnection
) -> None:
    # Above daphne's 1 MiB cap (daphne >= 4.2.2) the application never sees the frame and the
    # client sees the TCP connection drop without a close frame (1006); others are unaffected.
    # daphne may drop the connection while the client is still writing the frame, so the
    # drop can surface in send() as well as in recv().
    frame = json.dumps({"jsonrpc": "2.0", "method": "x" * (1024 * 1024 + 10), "id": 1})

    async def send_and_read(ws: websockets.ClientConnection) -> None:
        await ws.send(frame)
        await asyncio.wait_for(ws.recv(), 10)

    async with websockets.connect(spec_cluster.url("/ws/spec/"), max_size=None) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await send_and_read(ws)
    assert closed.value.rcvd is None
    await connection.send(loader.PROBE)
    assert json.loads(await connection.receive(10)) == loader.PROBE_ANSWER
