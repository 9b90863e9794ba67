"""The parts of channels_rpc.client: the call table alone, and the connection loop against a small
in-process WebSocket server (the real stack is in tests/integration/test_client.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from channels_rpc import JsonRpcError
from channels_rpc.client import ConnectionLost, RpcClient
from channels_rpc.client.calls import CallTable

pytestmark = pytest.mark.anyio


async def test_the_call_table_numbers_checks_answers_and_fails_only_sent_calls() -> None:
    table = CallTable()
    assert table.choose_id(None) == 1
    taken = table.add(2, None)  # an id chosen by the caller...
    assert table.choose_id(None) == 3  # ...is skipped by the numbering
    with pytest.raises(ValueError, match="rpc_id 2 is already used by a pending call"):
        table.choose_id(2)
    with pytest.raises(TypeError, match="rpc_id must be a str or an int, not True"):
        table.choose_id(True)  # JSON true is not the id 1
    assert table.choose_id("2") == "2"  # nor is "2" the id 2
    waiting = table.add("w", None)
    taken.sent = True
    table.fail_sent(ConnectionLost("the connection dropped"))
    with pytest.raises(ConnectionLost, match="the connection dropped"):
        await taken.future
    assert not waiting.future.done()  # never sent: it waits for the next connection
    table.answer({"jsonrpc": "2.0", "id": "w", "error": {"code": -32601, "message": "nope"}})
    with pytest.raises(JsonRpcError) as error:
        await waiting.future
    assert (error.value.code, error.value.message) == (-32601, "nope")


class Server:
    """Answers ``add``, reports progress for ``progress_add``, and drops the socket on ``drop``."""

    def __init__(self) -> None:
        self.url = ""
        self.frames: list[Any] = []

    async def handle(self, ws: ServerConnection) -> None:
        async for frame in ws:
            message = json.loads(frame)
            self.frames.append(message)
            if message["method"] == "drop":
                await ws.close(1011)
                return
            if message["method"] == "progress_add":
                progress = {"id": message["id"], "progress": 1, "total": 1, "message": "added"}
                await ws.send(
                    json.dumps({"jsonrpc": "2.0", "method": "rpc.progress", "params": progress})
                )
            if "id" in message and message["method"] in ("add", "progress_add"):
                result = sum(message["params"])
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}))


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    async with serve(state.handle, "127.0.0.1", 0) as running:
        host, port = next(iter(running.sockets)).getsockname()[:2]
        state.url = f"ws://{host}:{port}/"
        yield state


async def test_on_connect_runs_first_on_every_connection_and_a_drop_fails_sent_calls(
    server: Server,
) -> None:
    greeted: asyncio.Queue[int] = asyncio.Queue()
    connections = 0

    async def greet(rpc: RpcClient) -> None:
        nonlocal connections
        connections += 1
        await greeted.put(await rpc.call("add", [connections, 0]))

    async with RpcClient(server.url, backoff=(0.01, 0.05), on_connect=greet) as rpc:
        assert await greeted.get() == 1
        progress: list[Any] = []
        assert await rpc.call("progress_add", [2, 3], on_progress=progress.append, rpc_id="s") == 5
        assert progress == [{"id": "s", "progress": 1, "total": 1, "message": "added"}]
        with pytest.raises(ConnectionLost, match="the connection dropped"):
            await rpc.call("drop")
        later = asyncio.create_task(rpc.call("add", [20, 1]))  # waits for on_connect again
        assert await asyncio.wait_for(greeted.get(), 10) == 2
        assert await asyncio.wait_for(later, 10) == 21
        assert rpc.state == "open"
        methods = [frame["method"] for frame in server.frames]
        assert methods == [
            "add",
            "progress_add",
            "drop",
            "add",
            "add",
        ]  # the hook's call went first
    assert rpc.state == "closed"
    with pytest.raises(ConnectionLost, match="the client was closed"):
        await rpc.call("add", [1, 1])
