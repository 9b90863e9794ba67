"""The child side of :mod:`channels_rpc.processes`: the zygote, the children and their wire.

Pure: the standard library only (and the package's context protocol).

The *zygote* is a process forked once from the worker; it does nothing but fork the children
that run calls, and hands the parent one end of a socket pair per child (``SCM_RIGHTS``). Each
child is thus forked from a process with a single thread, however many threads the worker runs
by then: a lock some other thread held at the moment of a fork would stay held forever in the
child. Both let go of the sockets they inherited (Redis connections, listening sockets): the
files are swapped for ``/dev/null``, so that a socket the worker closes is really closed, and
code in a child that touches one gets an error instead of writing into the worker's stream.

On the wire, each message is a pickle preceded by its length. A child receives
``(seq, payload, channel_name)``, answers ``(DONE, ok, value)``; in between it may ask for a
push ``(PUSH, operation, args)`` and waits for ``(PUSHED, failure)``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import mmap
import os
import pickle
import select
import signal
import socket
import stat
import struct
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from channels_rpc.context import CallerHandle, CancelFlag
from channels_rpc.exceptions import JsonRpcError

__all__ = ["Failure", "ParentCaller", "Zygote", "frame", "kill", "receive", "wait_gone"]

DONE: Final = "done"
PUSH: Final = "push"
PUSHED: Final = "pushed"
HEADER: Final = struct.Struct("!I")
PID: Final = struct.Struct("!i")
SLOT: Final = HEADER
#: What a child may ask its parent to do for it, on the caller's handle.
PUSHES: Final = frozenset({"notify_channel", "join_group", "leave_group"})

#: Runs one call in a child: ``(payload, caller or None, cancelled) -> result``.
Target = Callable[[Any, CallerHandle | None, CancelFlag], Any]


def frame(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_message(sock: socket.socket) -> bytes | None:
    """The next message on a blocking socket, still pickled; None at its end."""
    header = _read_exactly(sock, HEADER.size)
    return None if header is None else _read_exactly(sock, HEADER.unpack(header)[0])


def receive(sock: socket.socket) -> Any:
    """The next message on a blocking socket; None at its end."""
    data = _read_message(sock)
    return None if data is None else pickle.loads(data)


@dataclass(frozen=True)
class Failure:
    """An exception on its way between processes, with the traceback of where it was raised.

    ``error`` is the exception itself when it survives pickling both ways; else None, and the
    receiver rebuilds one of the same type name and text. (A subclass whose ``__init__`` takes
    other arguments than it gives ``Exception`` pickles, then fails to unpickle.)
    """

    error: BaseException | None
    type_name: str
    text: str
    traceback: str

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            error: BaseException | None = pickle.loads(pickle.dumps(exc))
        except Exception:
            error = _plain(exc)
        return cls(error, type(exc).__name__, str(exc), text)

    def rebuild(self) -> BaseException:
        """The exception, or one of the same type name and text if it could not cross."""
        error = self.error
        if error is None:
            error = type(self.type_name, (Exception,), {})(self.text)
        error.__cause__ = RemoteTraceback(self.traceback)
        return error


class RemoteTraceback(Exception):
    """The traceback of an exception raised in another process (shown as its cause)."""

    def __str__(self) -> str:
        return f'\n"""\n{self.args[0]}"""'


class _SharedCancel:
    """``ctx.cancelled`` in a child: the parent writes the number of the call it gave up on."""

    __slots__ = ("_seq", "_slot", "_view")

    def __init__(self, view: memoryview, slot: int, seq: int) -> None:
        self._view, self._slot, self._seq = view, slot, seq

    def is_set(self) -> bool:
        return bool(self._view[self._slot] == self._seq)

    def set(self) -> None:
        self._view[self._slot] = self._seq


class _Link:
    """A child's end of its socket; one request to the parent at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()

    def ask(self, operation: str, args: tuple[Any, ...]) -> None:
        # Sync code reaches this through async_to_sync, in a thread of asgiref's own.
        with self._lock:
            self.sock.sendall(frame((PUSH, operation, args)))
            answer = receive(self.sock)
        if answer is None:
            raise ConnectionError("the worker went away")
        failure: Failure | None = answer[1]
        if failure is not None:
            raise failure.rebuild()


class ParentCaller:
    """``ctx.consumer`` in a child: each push is made by the worker, on the caller's handle."""

    def __init__(self, link: _Link, channel_name: str) -> None:
        self._link = link
        self.channel_name = channel_name

    async def notify_channel(self, method: str, params: Any = None) -> None:
        self._link.ask("notify_channel", (method, params))

    async def join_group(self, group: str) -> None:
        self._link.ask("join_group", (group,))

    async def leave_group(self, group: str) -> None:
        self._link.ask("leave_group", (group,))


def _plain(exc: BaseException) -> BaseException | None:
    """A JSON-RPC error that cannot cross as itself crosses as the answer it stands for."""
    if isinstance(exc, JsonRpcError):
        return JsonRpcError(exc.rpc_id, exc.code, exc.data, message=exc.message)
    return None


class Zygote:
    """The parent's handle on the zygote: :meth:`start` forks it; the pool asks it for children."""

    def __init__(self, target: Target, flags: mmap.mmap) -> None:
        self._target = target
        self._flags = flags
        self.pid = 0
        self.sock: socket.socket | None = None

    def start(self) -> None:
        ours, theirs = socket.socketpair()
        parent = os.getpid()
        _flush_stdio()  # else what the worker has buffered would be written again by a child
        with warnings.catch_warnings():
            # Python 3.12+ warns when a process with threads forks: a lock another thread held
            # would stay held in the child. The pool forks the zygote before the worker starts
            # any thread (rpcworker has none then); elsewhere (tests) the zygote runs only this
            # module's code, and its children are forked from it, which has a single thread.
            warnings.filterwarnings(
                "ignore", "This process .* is multi-threaded", DeprecationWarning
            )
            pid = os.fork()
        if pid == 0:  # the zygote: never returns
            code = 1
            try:
                ours.close()
                code = self._serve(theirs, parent)
            finally:
                os._exit(code)
        theirs.close()
        ours.setblocking(False)
        self.pid, self.sock = pid, ours

    def _serve(self, control: socket.socket, parent: int) -> int:
        _forget_parent(parent, keep=control.fileno())
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
        gc.freeze()  # what the children inherit stays shared: no collection touches it
        zygote = os.getpid()
        while (data := _read_exactly(control, SLOT.size)) is not None:
            mine, theirs = socket.socketpair()
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    control.close()
                    mine.close()
                    code = self._child(theirs, SLOT.unpack(data)[0], zygote)
                finally:
                    os._exit(code)
            theirs.close()
            fds = [mine.fileno()]
            pidfd = _pidfd(pid)
            if pidfd is not None:
                fds.append(pidfd)
            socket.send_fds(control, [PID.pack(pid)], fds)
            mine.close()
            if pidfd is not None:
                os.close(pidfd)
        return 0

    def _child(self, sock: socket.socket, slot: int, zygote: int) -> int:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _die_with_parent(zygote)
        view = memoryview(self._flags).cast("q")
        link = _Link(sock)
        while (message := _read_message(sock)) is not None:
            try:
                seq, payload, channel_name = pickle.loads(message)
                caller = ParentCaller(link, channel_name) if channel_name is not None else None
                result = self._target(payload, caller, _SharedCancel(view, slot, seq))
                data = frame((DONE, True, result))
            except BaseException as exc:  # SystemExit too: the call's error, not the child's end
                data = frame((DONE, False, Failure.of(exc)))
            _flush_stdio()  # what the method printed, before a kill can lose it
            sock.sendall(data)
        return 0


def _forget_parent(parent: int, *, keep: int) -> None:
    """In the zygote: no signal handling, no socket, nothing of the worker's but its memory."""
    signal.set_wakeup_fd(-1)  # else a signal here would be written to the worker's event loop
    # Ctrl-C reaches the whole process group, and systemd's stop every process of the unit:
    # the worker drains, and the calls it waits for must go on. The pool ends its children
    # with SIGKILL, and a worker's death ends them too (_die_with_parent, or their socket).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    _die_with_parent(parent)
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in _open_fds():
            if fd > 2 and fd not in (keep, null) and _is_socket(fd):
                os.dup2(null, fd)
    finally:
        os.close(null)


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _open_fds() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/dev/fd")]
    except OSError:
        return list(range(3, 1024))


def _is_socket(fd: int) -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


def _die_with_parent(parent: int) -> None:
    # Linux can end a process with its parent (PR_SET_PDEATHSIG = 1): a worker killed with
    # SIGKILL takes its zygote along, which takes its children, however busy they are.
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    if os.getppid() != parent:  # it went before the line above
        os._exit(1)


def _pidfd(pid: int) -> int | None:
    """A handle that signals exactly this child, even once its pid is reused (Linux 5.3+)."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None
    return fd


def kill(pid: int, pidfd: int | None) -> None:
    """SIGKILL a child (through its pidfd when there is one); nothing if it is gone."""
    with contextlib.suppress(ProcessLookupError, OSError):
        if pidfd is not None and hasattr(signal, "pidfd_send_signal"):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)


def wait_gone(pidfd: int, timeout: float) -> None:
    """Wait until the child of ``pidfd`` has ended (its pidfd turns readable), or ``timeout``."""
    with contextlib.suppress(OSError, ValueError):
        select.select([pidfd], [], [], timeout)
