"""A pool of child processes for sync methods: ``rpcworker --pool processes``.

Threads of one process share one GIL: a CPU-bound sync method in a worker thread holds it, and
the worker's event loop, which must take it back for each request and each answer, waits
``sys.getswitchinterval()`` or more every time. Every call of that worker slows down, pings
included. In child processes the methods get a GIL each, and the worker's loop keeps its own.

* The children are forked, not started afresh: from a *zygote* the pool forks from the worker
  once, at :meth:`ProcessPool.start` (after Django was set up and the methods imported, so the
  children have them all). See :mod:`channels_rpc._forking`.
* A call goes to a child as a pickle: ``payload`` names the method and carries its arguments
  (JSON values); the result or the exception comes back the same way. Each child runs one call
  at a time; with every child busy, a call waits for one (within its deadline).
* When the caller stops waiting (the call timed out, was cancelled, the worker stops), the
  child's ``ctx.cancelled`` turns true; a child still running the call ``grace`` seconds later
  (at once, for a method that takes no context and so cannot notice) is killed, and a new one
  forked when needed. Unlike a thread, a child cannot stay stuck.
* A method that takes a context may push from the child: ``ctx.notify``, ``ctx.progress``,
  ``ctx.join_group`` and ``ctx.leave_group`` (through ``async_to_sync``) are sent to the worker,
  which makes them on the caller's handle and says how it went.

Pure: the standard library only; what runs a call in a child is the ``target`` it is given.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import logging
import mmap
import os
import pickle
import socket
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from channels_rpc import _forking
from channels_rpc._forking import DONE, PID, PUSHED, PUSHES, SLOT, Failure, Target
from channels_rpc.context import CallerHandle
from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode
from channels_rpc.logsafe import protect

__all__ = ["ProcessPool", "cpu_count"]

logger = protect(logging.getLogger("channels_rpc.worker"))


def cpu_count() -> int:
    """The CPUs this process may run on: the default number of children."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


@dataclass(eq=False)
class _Job:
    seq: int
    label: str
    caller: CallerHandle | None
    answer: asyncio.Future[tuple[bool, Any]]
    ended: asyncio.Future[None]  # done when the caller stopped waiting
    kill_at: float | None = None  # loop time; None while the caller waits


@dataclass(eq=False)
class _Child:
    pid: int
    pidfd: int | None
    slot: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    job: _Job | None = field(default=None)


class _Overdue(Exception):
    pass


class _Unreadable(Exception):
    """A message from a child that does not unpickle here: the conversation cannot go on."""


class ProcessPool:
    """Runs ``target(payload, caller, cancelled)`` in at most ``size`` forked child processes.

    ``before_fork`` runs just before the zygote is forked (the worker closes its database
    connections there: a connection must not be shared across a fork).
    """

    def __init__(
        self,
        target: Target,
        size: int,
        *,
        grace: float = 1.0,
        before_fork: Callable[[], None] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a process pool needs at least one process")
        self.size = size
        self._grace = grace
        self._before_fork = before_fork
        self._flags = mmap.mmap(-1, 8 * size)  # shared with the children: see _SharedCancel
        self._zygote = _forking.Zygote(target, self._flags)
        self._seq = itertools.count(1)
        self._children: set[_Child] = set()
        self._idle: list[_Child] = []
        self._slots = list(range(size))
        self._spawning = 0
        self._changed = asyncio.Condition()
        self._spawn_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._broken: str | None = None
        self._closed = False

    @property
    def processes(self) -> int:
        """Children alive now (busy or idle)."""
        return len(self._children)

    def start(self) -> None:
        """Fork the zygote; call it before the worker starts other threads."""
        if self._before_fork is not None:
            self._before_fork()
        self._zygote.start()
        _open_pools.add(self)

    async def run(self, payload: Any, label: str = "", caller: CallerHandle | None = None) -> Any:
        """``target(payload, ...)`` in a child: its result, or its exception raised here.

        ``caller``: the handle pushes from the child are made on; None for a method that takes
        no context, which is then killed at once when its caller stops waiting.
        """
        seq = next(self._seq)
        channel = caller.channel_name if caller is not None else None
        call = _forking.frame((seq, payload, channel))  # a payload that cannot cross raises here
        child = await self._take()
        loop = asyncio.get_running_loop()
        job = _Job(seq, label, caller, loop.create_future(), loop.create_future())
        child.job = job
        self._keep(self._converse(child, job, call))
        try:
            ok, value = await job.answer
        except asyncio.CancelledError:
            self._abandon(child, job)
            raise
        if not ok:
            raise value  # raised here, not set on the future: see threads.ThreadPool.run
        return value

    def stuck(self) -> Counter[str]:
        """Labels of the calls still running in children after their callers stopped waiting."""
        return Counter(c.job.label for c in self._children if c.job and c.job.ended.done())

    def problem(self) -> str | None:
        """Why this pool cannot run sync methods any more, or None."""
        return self._broken

    def close(self) -> None:
        """Kill every child, let the zygote go (it ends when its socket closes)."""
        self._closed = True
        children = list(self._children)
        for child in children:
            self._drop(child, close_pidfd=False)
        for child in children:  # dead before the zygote goes, so that it reaps them
            if child.pidfd is not None:
                _forking.wait_gone(child.pidfd, 1.0)
                os.close(child.pidfd)
        sock, self._zygote.sock = self._zygote.sock, None
        if sock is not None:
            sock.close()
            _reap(self._zygote.pid)
        self._broken = self._broken or "the process pool is closed"

    # -- handing out children --------------------------------------------------------------

    async def _take(self) -> _Child:
        async with self._changed:
            while not self._idle:
                if self._broken is not None:
                    raise JsonRpcError(
                        None, JsonRpcErrorCode.SERVICE_UNAVAILABLE, {"reason": self._broken}
                    )
                if len(self._children) + self._spawning < self.size:
                    self._spawning += 1
                    self._keep(self._grow())
                await self._changed.wait()
            child = self._idle.pop()
        if child.reader.at_eof():  # it died while idle (the OOM killer, say): take another
            await self._lose(child)
            return await self._take()
        return child

    async def _grow(self) -> None:
        try:
            child = await self._spawn()
        except Exception as exc:
            self._broken = f"cannot fork a process for sync methods: {exc!r}"
            logger.error("%s", self._broken)
            child = None
        finally:
            self._spawning -= 1
        if child is not None and self._closed:  # closed while it was being forked
            self._drop(child)
            child = None
        async with self._changed:
            if child is not None:
                self._idle.append(child)
            self._changed.notify_all()

    async def _spawn(self) -> _Child:
        sock = self._zygote.sock
        if sock is None:
            raise RuntimeError("the pool is not started")
        loop = asyncio.get_running_loop()
        async with self._spawn_lock:  # one question to the zygote at a time
            slot = self._slots.pop()
            try:
                await loop.sock_sendall(sock, SLOT.pack(slot))
                data, fds = await _receive_fds(loop, sock)
            except BaseException:
                self._slots.append(slot)
                raise
        reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=fds[0]))
        child = _Child(PID.unpack(data)[0], fds[1] if len(fds) > 1 else None, slot, reader, writer)
        self._children.add(child)
        return child

    async def _release(self, child: _Child) -> None:
        child.job = None
        async with self._changed:
            self._idle.append(child)
            self._changed.notify_all()

    async def _lose(self, child: _Child) -> None:
        self._drop(child)
        async with self._changed:
            self._changed.notify_all()  # room for a new child

    def _drop(self, child: _Child, *, close_pidfd: bool = True) -> None:
        if child not in self._children:
            return
        self._children.discard(child)
        if child in self._idle:
            self._idle.remove(child)
        _forking.kill(child.pid, child.pidfd)
        if child.pidfd is not None and close_pidfd:
            os.close(child.pidfd)
        with contextlib.suppress(RuntimeError):  # the loop is closed: the socket goes with it
            child.writer.close()
        self._slots.append(child.slot)

    # -- one call ------------------------------------------------------------------------------

    async def _converse(self, child: _Child, job: _Job, call: bytes) -> None:
        """Send the call, forward the child's pushes, settle the answer; kill it if overdue."""
        try:
            child.writer.write(call)
            await child.writer.drain()
            while (message := await self._next(child, job))[0] != DONE:
                await self._push(child, job, message[1], message[2])
        except _Overdue:
            logger.warning("killed the process running %r: still running after its call", job.label)
            await self._lose(child)
            _settle(job.answer, False, _lost(job.label, "was killed"))
        except _Unreadable as exc:
            await self._lose(child)
            _settle(job.answer, False, exc.__cause__)
        except Exception as exc:  # its end of the socket closed: the child died
            if not self._closed:
                logger.error("the process running %r exited (%r)", job.label, exc)
            await self._lose(child)
            _settle(job.answer, False, _lost(job.label, "exited"))
        else:
            ok, value = message[1], message[2]
            _settle(job.answer, ok, value if ok else value.rebuild())
            await self._release(child)

    async def _next(self, child: _Child, job: _Job) -> Any:
        """The child's next message; _Overdue once its caller gave up more than the grace ago."""
        reading = asyncio.ensure_future(_receive(child.reader))
        try:
            if job.kill_at is None:
                await asyncio.wait({reading, job.ended}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done() and job.kill_at is not None:
                left = job.kill_at - asyncio.get_running_loop().time()
                await asyncio.wait({reading}, timeout=max(left, 0))
            if not reading.done():
                raise _Overdue
            return reading.result()
        finally:
            reading.cancel()

    async def _push(self, child: _Child, job: _Job, operation: str, args: tuple[Any, ...]) -> None:
        failure = None
        try:
            if job.caller is None or operation not in PUSHES:
                raise RuntimeError(f"{operation} is not available to this call")
            await getattr(job.caller, operation)(*args)
        except Exception as exc:
            failure = Failure.of(exc)
        child.writer.write(_forking.frame((PUSHED, failure)))
        await child.writer.drain()

    def _abandon(self, child: _Child, job: _Job) -> None:
        if job.ended.done():
            return
        grace = self._grace if job.caller is not None else 0.0
        job.kill_at = asyncio.get_running_loop().time() + grace
        memoryview(self._flags).cast("q")[child.slot] = job.seq  # ctx.cancelled in the child
        job.ended.set_result(None)

    def _keep(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _receive(reader: asyncio.StreamReader) -> Any:
    header = await reader.readexactly(_forking.HEADER.size)
    data = await reader.readexactly(_forking.HEADER.unpack(header)[0])
    try:
        return pickle.loads(data)
    except Exception as exc:  # a class the child has and this process lacks, say
        raise _Unreadable from exc


async def _receive_fds(
    loop: asyncio.AbstractEventLoop, sock: socket.socket
) -> tuple[bytes, list[int]]:
    """The zygote's answer: a child's pid, its socket and (Linux) its pidfd."""
    while True:
        readable = loop.create_future()
        loop.add_reader(sock.fileno(), _settle_once, readable)
        try:
            await readable
        finally:
            loop.remove_reader(sock.fileno())
        try:
            data, fds, _flags, _address = socket.recv_fds(sock, PID.size, 2)
        except BlockingIOError:
            continue
        if not data:
            raise ConnectionError("the zygote process is gone")
        return data, fds


def _settle_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _settle(future: asyncio.Future[tuple[bool, Any]], ok: bool, value: Any) -> None:
    if not future.done():
        future.set_result((ok, value))


def _lost(label: str, what: str) -> JsonRpcError:
    reason = f"the process running {label} {what} before it answered"
    return JsonRpcError(None, JsonRpcErrorCode.INTERNAL_ERROR, {"reason": reason})


def _reap(pid: int, wait: float = 1.0) -> None:
    """Wait a moment for the zygote to end, then make sure it has."""
    deadline = time.monotonic() + wait
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() >= deadline:
                _forking.kill(pid, None)
                os.waitpid(pid, 0)
                return
            time.sleep(0.005)


_open_pools: weakref.WeakSet[ProcessPool] = weakref.WeakSet()


@atexit.register
def _close_pools() -> None:
    for pool in list(_open_pools):
        pool.close()
