"""The connection loop: open a WebSocket, greet it (``on_connect``), read it, and reopen it with
backoff when it drops. It knows nothing of calls: it hands the JSON-RPC objects of each frame it
reads (several for a batch) to ``on_frame``, and says when the calls sent on a socket are lost
with ``on_lost(reason)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from channels_rpc.client.errors import NOT_CONNECTED, ConnectionFailed, ConnectionLost, explain
from channels_rpc.client.frames import items

logger = logging.getLogger("channels_rpc.client")

# While an on_connect hook runs, its context (and that of tasks it starts) holds a token of this
# greeting: calls made there skip the wait that holds every other call until the hook is done.
_GREETING: ContextVar[object | None] = ContextVar("channels_rpc_greeting", default=None)

#: The close code of a front-end that restarts (docs/reference/sessions.md): reconnect at once,
#: no backoff.
CLOSE_RESTARTING = 4012
#: The session was resumed on another connection (docs/reference/sessions.md): it is the
#: other's now.
CLOSE_TAKEN_OVER = 4013


class Connection:
    def __init__(
        self,
        url: str,
        connect_options: dict[str, Any],
        *,
        reconnect: bool,
        backoff: tuple[float, float],
        greet: Callable[[], Awaitable[None]] | None,
        on_frame: Callable[[list[dict[str, Any]]], None],
        on_lost: Callable[[str], None],
    ) -> None:
        self.url = url
        self._connect_options = connect_options  # for websockets.connect
        self._reconnect = reconnect
        self._backoff = backoff
        self._greet_hook = greet
        self._on_frame = on_frame
        self._on_lost = on_lost
        self._ws: ClientConnection | None = None
        self.state = "idle"  # "connecting", "open", "reconnecting" or "closed"
        self.closed_reason = "the client was closed"
        self._ready = asyncio.Event()  # set while "open", and once "closed" (to wake waiters)
        self._greeting: object | None = None  # the token of the hook running now, if any
        self._runner: asyncio.Task[None] | None = None
        self._at_once = False  # the server asked for a reconnection without backoff
        self.taken_over = False  # the last socket closed with 4013: its session is elsewhere

    async def open(self) -> None:
        """Open the connection and greet it; raises if either fails (no retry until a first
        connection succeeded, so that a wrong URL shows at once)."""
        if self.state not in ("idle", "closed"):
            raise RuntimeError(f"the client is already {self.state}")
        self.state = "connecting"
        self._ready.clear()
        try:
            ws = await websockets.connect(self.url, **self._connect_options)
        except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake) as exc:
            self._set_closed(f"could not connect to {self.url}")
            raise ConnectionFailed(f"could not connect to {self.url}: {explain(exc)}") from exc
        self._ws = ws  # close() closes it, even before the runner starts
        greeted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._runner = asyncio.create_task(self._run(ws, greeted), name="channels_rpc-client")
        try:
            await greeted
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._set_closed("the client was closed")
        if self._ws is not None:
            # A connection the server dropped has nothing left to close.
            with contextlib.suppress(websockets.ConnectionClosed):
                await self._ws.close()
        if self._runner is not None:
            self._runner.cancel()  # it may be waiting to reconnect to a server that is gone
            await asyncio.gather(self._runner, return_exceptions=True)
        self._on_lost("the client was closed")

    def check_usable(self) -> None:
        if self.state == "idle":
            raise RuntimeError(NOT_CONNECTED)
        if self.state == "closed":
            raise ConnectionLost(self.closed_reason)

    def in_greeting(self) -> bool:
        """True in the greeting of the current socket (``on_connect``, and what it starts)."""
        greeting = _GREETING.get()
        return greeting is not None and greeting is self._greeting

    async def wait_open(self) -> None:
        """Return once a frame may go out: at once inside ``on_connect``, else when open."""
        self.check_usable()
        if not self.in_greeting():  # on_connect's calls go at once
            while not self._ready.is_set():
                await self._ready.wait()
            self.check_usable()

    async def write(self, text: str) -> None:
        """Send on the current socket (after ``wait_open``)."""
        assert self._ws is not None
        try:
            await self._ws.send(text)
        except websockets.ConnectionClosed as exc:  # dropped before the reader noticed
            raise ConnectionLost("the connection dropped") from exc

    async def write_now(self, text: str) -> None:
        """Send on the current socket if there is one, whatever the state; errors are dropped."""
        if self._ws is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.shield(self._ws.send(text))

    def _set_closed(self, reason: str) -> None:
        self.state, self.closed_reason = "closed", reason
        self._ready.set()  # calls waiting for a connection wake up and raise ConnectionLost

    async def _run(self, ws: ClientConnection, greeted: asyncio.Future[None]) -> None:
        """One connection after another: read it, greet it, and when it drops, reconnect."""
        try:
            while await self._serve(ws, greeted) and self.state != "closed":
                ws = await self._reopen()
            # Ends when closed, or when on_connect failed on the first connection: open()
            # then closes the client and raises it.
        except Exception:
            logger.exception("the client of %s stopped", self.url)
        finally:
            if self.state != "closed":
                self._set_closed("the client stopped")
            self._on_lost(self.closed_reason)
            if not greeted.done():
                greeted.set_exception(ConnectionLost(self.closed_reason))

    async def _serve(self, ws: ClientConnection, greeted: asyncio.Future[None]) -> bool:
        """Greet ``ws``, then read it until it closes; false if the hook failed first."""
        self._ws = ws
        reader = asyncio.create_task(self._read(ws), name="channels_rpc-client-reader")
        try:
            try:
                await self._greet(reader)
            except Exception as exc:
                if not greeted.done():
                    greeted.set_exception(exc)
                    return False
                logger.exception("on_connect failed after reconnecting to %s", self.url)
            if not greeted.done():
                greeted.set_result(None)
            await reader
            return True
        finally:
            reader.cancel()

    async def _greet(self, reader: asyncio.Task[None]) -> None:
        if self._greet_hook is not None:
            self._greeting = object()
            token = _GREETING.set(self._greeting)
            try:
                await self._greet_hook()
            finally:
                _GREETING.reset(token)
                self._greeting = None
        if not reader.done():  # a connection that dropped meanwhile is not open
            self.state = "open"
            self._ready.set()

    async def _reopen(self) -> ClientConnection:
        delay = self._backoff[0]
        at_once, self._at_once = self._at_once, False
        while True:
            if not at_once:
                await asyncio.sleep(delay * (0.5 + random.random()))  # jitter: no herd
            at_once = False
            try:
                return await websockets.connect(self.url, **self._connect_options)
            except (OSError, websockets.InvalidHandshake, asyncio.TimeoutError) as exc:
                logger.info("reconnecting to %s failed (%s)", self.url, explain(exc))
                delay = min(delay * 2, self._backoff[1])

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for frame in ws:
                self._on_frame(list(items(frame)))
        self._at_once = ws.close_code == CLOSE_RESTARTING
        self.taken_over = ws.close_code == CLOSE_TAKEN_OVER
        if self.state == "closed":
            reason = self.closed_reason
        elif self._reconnect:
            self.state, reason = "reconnecting", "the connection dropped"
            self._ready.clear()  # calls made from now on wait for the next connection
        else:
            self._set_closed(reason := "the connection dropped (reconnect=False)")
        self._on_lost(reason)
