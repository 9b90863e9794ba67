"""The JSON-RPC vectors (tests/vectors) over real WebSockets: daphne + rpcworker + Redis.

Beyond the answers, each vector proves where its methods ran: the spec methods count their runs
under their pid (``spec-pids``), and every run a vector caused must be the worker's, not daphne's.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
import websockets
from redis.asyncio import Redis as AsyncRedis
from websockets.asyncio.client import ClientConnection

from tests.integration.harness import Cluster
from tests.vectors import loader

pytestmark = pytest.mark.anyio


class SocketConnection:
    def __init__(self, ws: ClientConnection, redis: AsyncRedis, cluster: Cluster) -> None:
        self.ws = ws
        self.redis = redis
        self.cluster = cluster

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

    async def ran(self, notification: str) -> int:
        return int(await self.redis.get(self.cluster.counter_key(notification)) or 0)


async def runs_by_pid(redis: AsyncRedis, cluster: Cluster) -> Counter[int]:
    """How many spec methods each process has run (tests.project.consumers counts them)."""
    runs = await redis.hgetall(cluster.counter_key("spec-pids"))
    return Counter({int(pid): int(count) for pid, count in runs.items()})


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
async def connection(
    spec_cluster: Cluster, redis_client: AsyncRedis
) -> AsyncIterator[SocketConnection]:
    async with websockets.connect(spec_cluster.url("/ws/spec/"), max_size=None) as ws:
        yield SocketConnection(ws, redis_client, spec_cluster)


@pytest.mark.parametrize("vector", loader.load(), ids=lambda v: v.id)
async def test_vector(
    vector: loader.Vector, connection: SocketConnection, spec_cluster: Cluster
) -> None:
    before = await runs_by_pid(connection.redis, spec_cluster)
    await loader.run(vector, connection)
    ran = await runs_by_pid(connection.redis, spec_cluster) - before
    worker, daphne = spec_cluster.workers[0].pid, spec_cluster.frontends[0].pid
    # The probe ran at least; whatever ran, the worker ran it, not the front-end.
    assert set(ran) == {worker}, f"runs by pid {dict(ran)} (worker {worker}, daphne {daphne})"


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
