"""A bounded pool of threads for sync methods, in which a stuck thread keeps counting.

A thread cannot be interrupted: at a sync method's deadline its call is answered and the thread
is left to finish on its own. anyio's ``to_thread.run_sync(abandon_on_cancel=True)`` gives its
limiter token back at that moment, so a sync method that never returns costs a new thread per
call (289 threads after 300 calls, measured). Here a thread stays counted until its function
really returns, and with every thread taken a call is refused at once (-32010) instead of
queueing behind threads that may never come back.

A closed pool keeps no idle thread: its threads end as soon as they have nothing to run. Pools
still open when the interpreter exits are closed then (``atexit``), so that no idle thread is
left waiting in the pool while the interpreter tears itself down.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import logging
import queue
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode
from channels_rpc.logsafe import protect

__all__ = ["ThreadPool"]

logger = protect(logging.getLogger("channels_rpc.worker"))


@dataclass(eq=False)
class _Job:
    func: Callable[[], Any]
    context: contextvars.Context
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    label: str
    abandoned: bool = False  # its caller stopped waiting (timeout, cancel); the thread runs on


class _Worker:
    """One thread of a pool and its inbox."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.inbox: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()  # None: end
        self.job: _Job | None = None  # guarded by the pool's lock
        self.thread: threading.Thread | None = None


class ThreadPool:
    """Runs sync functions in at most ``size`` threads; a thread counts until its function returns.

    A thread whose caller stopped waiting (its call timed out or was cancelled) is *stuck*: it
    stays counted until its function really returns, since a thread cannot be interrupted.
    (anyio's ``to_thread.run_sync(abandon_on_cancel=True)`` gives its limiter token back at
    once, and a sync method that never returns then costs a new thread per call.) With every
    thread taken, :meth:`run` refuses at once with -32010 rather than queueing the call behind
    threads that may never come back. Idle threads exit after ``idle_seconds``.
    """

    def __init__(self, size: int, *, idle_seconds: float = 10.0, name: str = "rpc-sync") -> None:
        if size < 1:
            raise ValueError("a thread pool needs at least one thread")
        self.size = size
        self._idle_seconds = idle_seconds
        self._name = name
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._started = 0
        self._closed = False
        _open_pools.add(self)

    @property
    def threads(self) -> int:
        """Threads alive in this pool now (busy or idle)."""
        with self._lock:
            return len(self._busy) + len(self._idle)

    async def run(self, func: Callable[[], Any], label: str = "") -> Any:
        """``func()`` in a pool thread, with this task's context variables; -32010 when full."""
        loop = asyncio.get_running_loop()
        job = _Job(func, contextvars.copy_context(), loop, loop.create_future(), label)
        self._submit(job)
        try:
            result, error = await job.future
        except asyncio.CancelledError:
            if job.future.cancelled():  # not answered yet: the thread may still be running it
                self._abandon(job)
            raise
        if error is not None:
            # Raised here, not set on the future: asyncio throws a future's exception into the
            # task's outermost coroutine, and a thrown GeneratorExit closes every frame in
            # between (the call would never be answered).
            raise error
        return result

    def close(self, wait: float = 0.0) -> None:
        """Keep no idle thread: idle ones end now, busy ones once their function returns.

        A closed pool still runs what it is given (a call that arrives late), in a thread that
        ends right after. ``wait``: seconds to wait for the idle threads to end.
        """
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.inbox.put(None)
        deadline = time.monotonic() + wait
        for worker in idle:
            if worker.thread is not None and wait > 0:
                worker.thread.join(max(0.0, deadline - time.monotonic()))

    def stuck(self) -> Counter[str]:
        """Labels of the functions still running for callers that stopped waiting."""
        with self._lock:
            return self._stuck()

    def problem(self) -> str | None:
        """Why this pool cannot run sync methods any more (every thread stuck), or None."""
        stuck = self.stuck()
        if stuck.total() < self.size:
            return None
        return (
            f"all {self.size} threads for sync methods are stuck in calls that timed out "
            f"({_labels(stuck)})"
        )

    def _submit(self, job: _Job) -> None:
        with self._lock:
            if self._idle:
                worker, new = self._idle.pop(), False
            elif len(self._busy) < self.size:
                self._started += 1
                worker, new = _Worker(f"{self._name}-{self._started}"), True
            else:
                raise self._busy_error()
            worker.job = job
            self._busy.add(worker)
        worker.inbox.put(job)
        if new:
            worker.thread = threading.Thread(
                target=self._serve, args=(worker,), name=worker.name, daemon=True
            )
            worker.thread.start()

    def _stuck(self) -> Counter[str]:  # with the lock held
        return Counter(w.job.label for w in self._busy if w.job is not None and w.job.abandoned)

    def _busy_error(self) -> JsonRpcError:  # with the lock held
        stuck = self._stuck()
        reason = f"all {self.size} threads for sync methods are busy"
        if stuck:
            reason += f", {stuck.total()} of them in calls that timed out ({_labels(stuck)})"
        data = {"reason": reason, "threads": self.size, "stuck": stuck.total()}
        return JsonRpcError(None, JsonRpcErrorCode.SERVER_BUSY, data)

    def _abandon(self, job: _Job) -> None:
        with self._lock:
            job.abandoned = True
            running = any(worker.job is job for worker in self._busy)
            stuck = self._stuck().total()
        if running:
            logger.warning(
                "sync method %r still runs in its thread after its call ended; "
                "%d of %d threads are stuck until their methods return",
                job.label,
                stuck,
                self.size,
            )

    def _serve(self, worker: _Worker) -> None:
        # The thread's loop: run jobs until idle for too long. A daemon thread: one stuck in a
        # method that never returns must not keep the process from exiting.
        while True:
            try:
                job = worker.inbox.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if worker in self._idle:  # else a job was just handed to it: take it
                        self._idle.remove(worker)
                        return
                continue
            if job is None:  # the pool closed while this thread was idle
                return
            result, error = _call(job)
            with self._lock:  # free before the caller hears of it, so it may take a next job
                self._busy.discard(worker)
                worker.job = None
                closed = self._closed
                if not closed:
                    self._idle.append(worker)
            if not job.loop.is_closed():
                # RuntimeError: the loop closed meanwhile, and nobody waits any more.
                with contextlib.suppress(RuntimeError):
                    job.loop.call_soon_threadsafe(_settle, job.future, result, error)
            del job, result, error
            if closed:
                return


def _call(job: _Job) -> tuple[Any, BaseException | None]:
    try:
        return job.context.run(job.func), None
    except BaseException as exc:  # SystemExit too: it is the caller's error, not the thread's
        return None, exc


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if not future.cancelled():
        future.set_result((result, error))


def _labels(counts: Counter[str]) -> str:
    return ", ".join(f"{label or '?'} x{n}" for label, n in counts.most_common())


_open_pools: weakref.WeakSet[ThreadPool] = weakref.WeakSet()


@atexit.register
def _close_pools() -> None:
    # Idle threads would otherwise sit in their inbox while the interpreter finalizes; those
    # still running a method are daemons and cannot be waited for.
    for pool in list(_open_pools):
        pool.close(wait=1.0)
