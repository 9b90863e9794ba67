"""The parts of channels_rpc.client: the call table alone, and the connection loop against a small
in-process WebSocket server (the real stack is in tests/integration/test_client.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from websockets.asyncio.server import ServerConnection, serve

from channels_rpc import JsonRpcError
from channels_rpc.client import ConnectionLost, RpcClient, SessionLost
from channels_rpc.client.calls import CallTable
from channels_rpc.client.session import Session

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
    """Answers ``add``, reports progress for ``progress_add``, and drops the socket on ``drop``;
    any other call is answered -32601, as a server without sessions answers ``rpc.session``."""

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
            elif "id" in message:
                error = {"code": -32601, "message": "Method Not Found"}
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": message["id"], "error": error}))


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
            "rpc.session",  # answered -32601: no session, and no second try
            "add",
            "progress_add",
            "drop",
            "add",
            "add",
        ]  # the hook's call went first
        assert rpc.session_id is None
    assert rpc.state == "closed"
    with pytest.raises(ConnectionLost, match="the client was closed"):
        await rpc.call("add", [1, 1])


async def test_a_session_acknowledges_new_frames_at_most_once_an_interval_and_drops_repeats() -> (
    None
):
    acks: asyncio.Queue[int] = asyncio.Queue()
    session = Session(CallTable(), enabled=True, ack_interval=0.2)

    async def write(text: str) -> None:
        message = json.loads(text)
        assert message == {"jsonrpc": "2.0", "method": "rpc.ack", "params": message["params"]}
        await acks.put(message["params"]["seq"])

    acknowledging = asyncio.create_task(session._acknowledge(write, 0))
    try:
        assert session.fresh([{"id": 1, "result": {}}])  # no seq: the resume's answer
        assert [session.fresh([{"method": "m", "seq": seq}]) for seq in (1, 2, 3)] == [True] * 3
        assert not session.fresh([{"method": "m", "seq": 2}])  # seen already: dropped
        assert session.fresh([{"id": 1, "seq": 3}, {"id": 2, "seq": 3}]) is False
        assert await asyncio.wait_for(acks.get(), 5) == 3  # one ack for the three
        session.fresh([{"method": "m", "seq": 4}])
        session.fresh([{"method": "m", "seq": 5}])
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(acks.get(), 5) == 5  # the next, an interval later
        assert asyncio.get_running_loop().time() - started >= 0.15
        # Nothing new came: no ack meanwhile, so the next one is for the next frame.
        session.fresh([{"method": "m", "seq": 6}])
        assert await asyncio.wait_for(acks.get(), 5) == 6
    finally:
        acknowledging.cancel()
        await asyncio.gather(acknowledging, return_exceptions=True)


class SessionServer:
    """A server with one session: numbers its frames, keeps ``hold`` calls running, and on
    ``drop`` closes the socket without having taken that call (it is not among the running);
    the notifications ``restart`` and ``takeover`` close it with 4012 and 4013."""

    CLOSES: ClassVar[dict[str, int]] = {"drop": 1011, "restart": 4012, "takeover": 4013}

    def __init__(self) -> None:
        self.url = ""
        self.frames: list[Any] = []
        self.seq = 0
        self.holds: list[Any] = []
        self.held = asyncio.Event()  # two calls held
        self.last = ""  # the last numbered frame: resent after the resume, as a repeat

    async def send(self, ws: ServerConnection, message: dict[str, Any]) -> None:
        self.seq += 1
        self.last = json.dumps({**message, "jsonrpc": "2.0", "seq": self.seq})
        await ws.send(self.last)

    async def handle(self, ws: ServerConnection) -> None:
        async for frame in ws:
            message = json.loads(frame)
            self.frames.append(message)
            method, rpc_id = message["method"], message.get("id")
            if method == "rpc.session":
                await self.send(ws, {"id": rpc_id, "result": {"session": "s1.t", "window": 30.0}})
            elif method == "rpc.resume":  # what was kept, then the answer
                await ws.send(self.last)
                for held in self.holds:
                    await self.send(ws, {"id": held, "result": "held"})
                result = {"session": "s1.t", "window": 30.0, "running": []}
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": rpc_id, "result": result}))
            elif method == "hold":
                self.holds.append(rpc_id)
                if len(self.holds) == 2:
                    self.held.set()
            elif method in self.CLOSES:  # a failure, a front-end's SIGTERM, a takeover
                await ws.close(self.CLOSES[method])
                return
            elif method == "add":
                await self.send(ws, {"id": rpc_id, "result": sum(message["params"])})
                await self.send(ws, {"method": "note", "params": {"n": message["params"]}})


async def test_a_resumed_session_answers_the_calls_it_runs_and_fails_the_one_it_never_got() -> None:
    server = SessionServer()
    async with serve(server.handle, "127.0.0.1", 0) as running:
        host, port = next(iter(running.sockets)).getsockname()[:2]
        notes: list[Any] = []
        resumed: asyncio.Queue[Any] = asyncio.Queue()
        url = f"ws://{host}:{port}/"
        async with RpcClient(url, backoff=(0.01, 0.05), on_resume=resumed.put_nowait) as rpc:
            rpc.on("note", notes.append)
            assert rpc.session_id == "s1.t"
            assert await rpc.call("add", [1, 2]) == 3
            held = [asyncio.create_task(rpc.call("hold")) for _ in range(2)]
            await asyncio.wait_for(server.held.wait(), 10)
            with pytest.raises(SessionLost, match="the resumed session did not have the call"):
                await rpc.call("drop")
            assert await asyncio.wait_for(asyncio.gather(*held), 10) == ["held", "held"]
            assert (await resumed.get())["running"] == []  # answered while away
            assert notes == [{"n": [1, 2]}]  # the repeat after the resume was dropped
            assert rpc.session_id == "s1.t"
            assert rpc.resumed
        methods = [frame["method"] for frame in server.frames if frame["method"] != "rpc.ack"]
        assert methods == [
            "rpc.session",
            "add",
            "hold",
            "hold",
            "drop",
            "rpc.resume",
        ]
        resume = next(frame for frame in server.frames if frame["method"] == "rpc.resume")
        assert resume["params"] == {"session": "s1.t", "seq": 3}


async def test_a_close_4012_reconnects_at_once_and_resumes() -> None:
    server = SessionServer()
    async with serve(server.handle, "127.0.0.1", 0) as running:
        host, port = next(iter(running.sockets)).getsockname()[:2]
        # A backoff of 30 s at least: only a reconnection without one answers in time.
        async with RpcClient(f"ws://{host}:{port}/", backoff=(60, 60)) as rpc:
            held = [asyncio.create_task(rpc.call("hold")) for _ in range(2)]
            await asyncio.wait_for(server.held.wait(), 10)
            await rpc.notify("restart")
            assert await asyncio.wait_for(asyncio.gather(*held), 10) == ["held", "held"]


async def test_a_close_4013_loses_the_session_to_its_new_holder_and_opens_another() -> None:
    # Another connection resumed the session: the client does not take it back (two holders
    # would take it from each other forever); its calls are lost, and a new session opens.
    server = SessionServer()
    async with serve(server.handle, "127.0.0.1", 0) as running:
        host, port = next(iter(running.sockets)).getsockname()[:2]
        lost: asyncio.Queue[Any] = asyncio.Queue()
        url = f"ws://{host}:{port}/"
        async with RpcClient(url, backoff=(0.01, 0.05), on_session_lost=lost.put_nowait) as rpc:
            held = [asyncio.create_task(rpc.call("hold")) for _ in range(2)]
            await asyncio.wait_for(server.held.wait(), 10)
            await rpc.notify("takeover")
            for call in held:
                with pytest.raises(SessionLost, match="taken over"):
                    await asyncio.wait_for(call, 10)
            assert await asyncio.wait_for(lost.get(), 10) == "taken over"
            assert await rpc.call("add", [2, 3]) == 5  # on a new socket, in a new session
        methods = [frame["method"] for frame in server.frames if frame["method"] != "rpc.ack"]
        assert methods == ["rpc.session", "hold", "hold", "takeover", "rpc.session", "add"]
