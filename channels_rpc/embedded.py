"""Embedded mode: the worker loop runs inside the front-end process, on the same messages.

With the in-memory channel layer (or ``EXECUTION = "inline"``) there may be no worker process at
all. The front-end then runs one :class:`~channels_rpc.runtime.WorkerRuntime` per event loop
and channel layer, serving the queues of the consumers that connected, so calls take exactly the
path they take in production: enqueue, worker loop, reply channel.

A runtime belongs to its event loop, and lives as long as the connections that use it: the
last one to go stops it (:func:`attach`), giving what still runs (notifications, which a close
does not cancel) ``SHUTDOWN_GRACE`` seconds. So nothing of it is left pending when the loop
ends, as test suites end theirs, one loop per test, often without cancelling what is left
(pytest-asyncio before 0.23 closes the loop as it is). A runtime whose loop closed under it all
the same is dropped, never awaited from another loop, and the in-memory layer it waited on,
which outlives loops in Channels' registry, is given fresh queues for what it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from channels.layers import InMemoryChannelLayer

from channels_rpc._aio import TaskSet
from channels_rpc._layer import ChannelLayer
from channels_rpc.config import get_config
from channels_rpc.envelope import WORKERS_GROUP, cancel_message
from channels_rpc.runtime import WorkerRuntime
from channels_rpc.worker import build_runtime

__all__ = ["attach", "ensure_worker", "shutdown"]

Release = Callable[[], Awaitable[None]]


@dataclass(eq=False)
class _Embedded:
    runtime: WorkerRuntime
    users: int = 0  # connections of the loop that rely on it


_embedded: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Embedded] = (
    weakref.WeakKeyDictionary()
)
_retiring = TaskSet()


def ensure_worker(layer: ChannelLayer, queues: Iterable[str]) -> WorkerRuntime:
    """Make sure this event loop runs a worker serving ``queues`` on ``layer``."""
    return _current(layer, queues).runtime


def attach(layer: ChannelLayer, queues: Iterable[str], reply_to: str) -> Release:
    """Serve ``queues`` for the connection replying on ``reply_to``, until it is released.

    The last connection to go stops the worker, once its own calls are cancelled (its close
    asks the workers to, but the message may come after the worker stopped listening).
    """
    embedded = _current(layer, queues)
    embedded.users += 1
    released = False

    async def release() -> None:
        nonlocal released
        if released:
            return
        released = True
        embedded.users -= 1
        runtime = embedded.runtime
        if embedded.users or runtime.stopping:
            return
        loop = asyncio.get_running_loop()
        if _embedded.get(loop) is embedded:
            del _embedded[loop]
        await runtime.control(cancel_message(reply_to, None))
        await runtime.stop(get_config().shutdown_grace)

    return release


async def shutdown(grace: float = 0.0) -> None:
    """Stop this event loop's embedded worker (tests call it between event loops)."""
    embedded = _embedded.pop(asyncio.get_running_loop(), None)
    if embedded is not None:
        await embedded.runtime.stop(grace)


def _current(layer: ChannelLayer, queues: Iterable[str]) -> _Embedded:
    loop = asyncio.get_running_loop()
    _bury_dead()
    embedded = _embedded.get(loop)
    if embedded is None or embedded.runtime.layer is not layer or embedded.runtime.stopping:
        if embedded is not None and not embedded.runtime.stopping:
            _retire(embedded.runtime)  # the layer was replaced (tests reset CHANNEL_LAYERS)
        local = isinstance(layer, InMemoryChannelLayer)  # no other process can reach it
        embedded = _embedded[loop] = _Embedded(build_runtime(layer, process_local=local))
    embedded.runtime.serve(queues)
    return embedded


def _retire(runtime: WorkerRuntime) -> None:
    _retiring.spawn(runtime.stop(0.0))


def _bury_dead() -> None:
    """Drop the runtimes whose event loop closed while they still waited on it."""
    for loop in [loop for loop in _embedded if loop.is_closed()]:
        runtime = _embedded.pop(loop).runtime
        if isinstance(runtime.layer, InMemoryChannelLayer):
            _rehome(runtime.layer, runtime.queues)
            if runtime.control_channel is not None:
                _rehome(runtime.layer, [runtime.control_channel])
                with contextlib.suppress(KeyError):
                    del runtime.layer.groups[WORKERS_GROUP][runtime.control_channel]


def _rehome(layer: InMemoryChannelLayer, names: list[str]) -> None:
    """Give the channels ``names`` fresh queues holding what their old ones held.

    The old ones still hold the dead loop's waiters: a message for them would wake a future
    of a closed loop (the send raises), and a receive from another loop raises too.
    """
    for name in names:
        old = layer.channels.pop(name, None)
        if old is None:
            continue
        messages = []
        while not old.empty():
            messages.append(old.get_nowait())
        if messages:
            fresh: asyncio.Queue[Any] = asyncio.Queue(maxsize=old.maxsize)
            layer.channels[name] = fresh
            for message in messages:
                fresh.put_nowait(message)
