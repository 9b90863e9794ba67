"""A JSON-RPC 2.0 WebSocket client for services, scripts and tests (extra: ``[client]``).

    async def subscribe(rpc: RpcClient) -> None:           # on every (re)connection
        if not rpc.resumed:                                # a resumed session kept its groups
            await rpc.call("subscribe", ["news"])

    async with RpcClient("ws://127.0.0.1:8000/ws/rpc/", on_connect=subscribe) as rpc:
        print(await rpc.call("add", [1, 2]))              # 3
        await rpc.notify("log", {"message": "hi"})
        results = await rpc.batch(("add", [1, 2]), ("nope", None))  # [3, JsonRpcError(...)]
        rpc.on("topic.message", print)                     # or: async for n in rpc.notifications()
        report = await rpc.call("build_report", {"steps": 5}, on_progress=print, rpc_id="r-1")

An error answer raises :class:`~channels_rpc.JsonRpcError` (``code``, ``message``, ``data``).
Cancelling the task awaiting ``call()``, or its ``timeout`` passing, sends ``rpc.cancel`` for it.
``on_progress(params)`` gets the call's ``rpc.progress`` notifications (``{"id", "progress",
"total", "message"}``), in order, before ``call()`` returns; ``rpc_id`` sets the id the call is
sent with (by default the client numbers them 1, 2, 3, ...).

``on_connect(client)``, sync or async, runs after every connection, the first one included (the
counterpart of client.js's ``open`` event): the server forgets a connection's groups when it
drops (unless its session is resumed), so this is where to join them again. Until it returns,
other calls wait; its own calls go out at once. If it raises on the first connection,
``connect()`` raises it; on a reconnection it is logged and the connection carries on.

When the connection drops, the client reconnects with backoff (unless ``reconnect=False``; at
once when the server closes with 4012, restarting); calls made meanwhile wait for it. By
default (``sessions=True``) the client opens a session (docs/reference/sessions.md) and resumes
it first thing on the new socket: pending calls are answered as if nothing happened, the pushes sent
meanwhile arrive once, the groups stay joined (``resumed`` is then true, in ``on_connect``
too). ``on_resume(answer)`` gets the resume's answer (``{"session", "window", "running"}``).
A session the server refuses to resume (its window ended, it overflowed) fails the pending
calls with :class:`SessionLost` (a ``ConnectionLost`` and a ``JsonRpcError`` -32015;
``reason`` says why), calls ``on_session_lost(reason)`` and opens a new one. A call the
resumed session did not have (its socket went as it was sent) fails so too. Without a session
(``sessions=False``, or a server without them: the in-memory layer) a drop fails the pending
calls with :class:`ConnectionLost`; ``on_connect``'s own calls fail with their socket either
way. ``session_id`` is the session's id; ``close()`` (code 1000) ends it and the server
cancels its calls. ``state`` is "idle", "connecting", "open", "reconnecting" or "closed". A
first connection that cannot be made raises :class:`ConnectionFailed` saying why; a call on a
closed client raises ``ConnectionLost`` at once; a call before ``connect()`` raises
``RuntimeError``.
"""

# The parts, one job each: ``rpc`` (RpcClient, what users call), ``connection`` (open, greet,
# read, reopen with backoff), ``session`` (open, acknowledge, resume), ``calls`` (the calls
# awaiting an answer), ``notifications`` (the handlers and iterators of server pushes),
# ``frames`` (JSON-RPC in and out, no I/O) and ``errors`` (what is raised, and why a connection
# could not be opened).

from __future__ import annotations

try:  # the library never needs websockets: only this package does (its asyncio API, 14+)
    import websockets.asyncio.client  # noqa: F401
except ImportError as exc:
    raise ImportError(
        'channels_rpc.client needs websockets 14 or later: pip install "channels-rpc[client]"',
        name=exc.name,
    ) from exc

from channels_rpc.client.errors import ConnectionFailed, ConnectionLost, SessionLost
from channels_rpc.client.notifications import Notifications
from channels_rpc.client.rpc import RpcClient

__all__ = ["ConnectionFailed", "ConnectionLost", "Notifications", "RpcClient", "SessionLost"]

# Tracebacks name the errors as users import them ("channels_rpc.client.ConnectionLost: ...").
# Only the errors: a class whose __module__ is not its file loses inspect.getsource before 3.13.
ConnectionFailed.__module__ = ConnectionLost.__module__ = SessionLost.__module__ = __name__
