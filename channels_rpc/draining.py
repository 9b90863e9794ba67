"""A front-end given SIGTERM: refuse new sockets, close the open ones with 4012, then stop.

Every rolling deploy stops front-ends. Stopped the default way, daphne drops its sockets and its
connections never hear ``websocket.disconnect``: their sessions stay attached to a process that
is gone, and their calls are neither kept nor cancelled; uvicorn closes them with 1012 and stops
before what was sent to their channels is kept. So on daphne and uvicorn (the first connection
served by either installs it, see ``_daphne.stops_on_sigterm``) SIGTERM first closes every
socket with **4012** ("server restarting: reconnect and resume"): a session connection detaches
as for any lost socket, and its client resumes on another front-end; a connection without one
is closed and its calls cancelled as usual. New handshakes are refused meanwhile (403), so that
a load balancer sends them elsewhere. Once every connection has gone, or after
``SHUTDOWN_GRACE`` seconds, the handler that was there before runs: daphne's stops the server,
which exits 0; uvicorn's stops it too, then raises the SIGTERM it caught again, so the process
ends by the signal (as uvicorn always does on SIGTERM).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Final

__all__ = ["CLOSE_RESTARTING", "Drain", "draining", "install", "track", "untrack"]

logger = logging.getLogger("channels_rpc")

#: The close code of a front-end that stops: reconnect (elsewhere) and resume.
CLOSE_RESTARTING: Final = 4012
REASON: Final = "server restarting: reconnect and resume"


class Drain:
    """The open connections of this process, and whether it is stopping."""

    def __init__(self) -> None:
        self.connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self.stopping = False
        self.installed = False
        self.task: asyncio.Task[None] | None = None
        self._gone: asyncio.Event | None = None  # set when the last connection left

    async def close_all(self, grace: float, settled: Callable[[], Awaitable[None]]) -> int:
        """Close every connection with 4012; wait for them (and ``settled``) up to ``grace``."""
        self.stopping = True
        self._gone = asyncio.Event()
        connections = list(self.connections)
        started = time.monotonic()
        for connection in connections:
            try:
                await connection.restart()
            except Exception as exc:  # a socket already gone
                logger.debug("could not close %r: %r", connection, exc)

        async def all_gone() -> None:
            if len(self.connections):  # each leaves once its websocket.disconnect is done
                await self._gone.wait()  # type: ignore[union-attr]
            await settled()

        try:
            await asyncio.wait_for(all_gone(), grace)
        except asyncio.TimeoutError:
            logger.warning(
                "%d connections still open %.1f s after SIGTERM: stopping anyway",
                len(self.connections),
                time.monotonic() - started,
            )
        return len(connections)

    def left(self, connection: Any) -> None:
        self.connections.discard(connection)
        if self._gone is not None and not len(self.connections):
            self._gone.set()


draining = Drain()


def track(connection: Any) -> None:
    """Count ``connection`` among the open ones (until it is garbage or :func:`untrack`)."""
    draining.connections.add(connection)


def untrack(connection: Any) -> None:
    draining.left(connection)


def install(grace: float, settled: Callable[[], Awaitable[None]]) -> None:
    """Take SIGTERM over, on the running loop (once per process; the main thread only)."""
    if draining.installed or threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)

    def stop_after_drain() -> None:
        async def run() -> None:
            count = await draining.close_all(grace, settled)
            logger.info("SIGTERM: closed %d connections with %d", count, CLOSE_RESTARTING)
            _chain(previous)

        draining.task = loop.create_task(run())

    def on_sigterm(signum: int, frame: Any) -> None:
        if draining.stopping:
            _chain(previous)  # a second SIGTERM: stop now
            return
        loop.call_soon_threadsafe(stop_after_drain)

    signal.signal(signal.SIGTERM, on_sigterm)
    draining.installed = True


def _chain(previous: Any) -> None:
    """Run what SIGTERM did before (daphne's or uvicorn's handler stops its server)."""
    if callable(previous):
        previous(signal.SIGTERM, None)
    elif previous == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
