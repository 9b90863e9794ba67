"""Embedded mode: the worker loop runs inside the front-end process, on the same messages.

With the in-memory channel layer (or ``EXECUTION = "inline"``) there may be no worker process at
all. The front-end then starts one :class:`~channels_rpc.runtime.WorkerRuntime` per event loop
and channel layer, serving the queues of the consumers that connected, so calls take exactly the
path they take in production: enqueue, worker loop, reply channel.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable
from typing import Any

from channels_rpc.runtime import WorkerRuntime
from channels_rpc.worker import build_runtime

__all__ = ["ensure_worker", "shutdown"]

_runtimes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WorkerRuntime] = (
    weakref.WeakKeyDictionary()
)


def ensure_worker(layer: Any, queues: Iterable[str]) -> WorkerRuntime:
    """Make sure this event loop runs a worker serving ``queues`` on ``layer``."""
    loop = asyncio.get_running_loop()
    runtime = _runtimes.get(loop)
    if runtime is None or runtime.layer is not layer:
        if runtime is not None:  # the layer was replaced (tests reset CHANNEL_LAYERS)
            _retire(runtime)
        runtime = _runtimes[loop] = build_runtime(layer)
    runtime.serve(queues)
    return runtime


_retiring: set[asyncio.Task[None]] = set()


def _retire(runtime: WorkerRuntime) -> None:
    task = asyncio.create_task(runtime.stop(0.0))
    _retiring.add(task)
    task.add_done_callback(_retiring.discard)


async def shutdown(grace: float = 0.0) -> None:
    """Stop this event loop's embedded worker (tests call it between event loops)."""
    runtime = _runtimes.pop(asyncio.get_running_loop(), None)
    if runtime is not None:
        await runtime.stop(grace)
