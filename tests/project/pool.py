"""Sync methods for ``rpcworker --pool processes`` (tests/integration/test_worker_pool.py).

Imported through ``METHOD_MODULES`` by the processes of those tests only. Each is CPU-bound: it
spins rather than sleeps, as the methods that pool is for do.
"""

from __future__ import annotations

import os
import time
from typing import Any

from asgiref.sync import async_to_sync

from channels_rpc import RpcContext, notify_group_sync
from tests.project.consumers import ProbeConsumer


def _spin(seconds: float, ctx: RpcContext | None = None) -> bool:
    """Burn CPU for ``seconds``; True if ``ctx`` was cancelled first."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if ctx is not None and ctx.cancelled:
            return True
    return False


@ProbeConsumer.rpc_method()
def pool_pid() -> int:
    return os.getpid()


@ProbeConsumer.rpc_method(timeout=1.0)
def pool_burn(seconds: float) -> float:
    """Takes no context, so cannot notice its call ended: only a kill stops it early."""
    _spin(seconds)
    return seconds


@ProbeConsumer.rpc_method(timeout=60)
def pool_spin(ctx: RpcContext, seconds: float, deaf: bool = False) -> dict[str, Any]:
    """Says it started (``rpc.progress`` with its pid), then spins until done or cancelled
    (``deaf``: it does not look)."""
    async_to_sync(ctx.progress)(0, message=str(os.getpid()))
    cancelled = _spin(seconds, None if deaf else ctx)
    return {"pid": os.getpid(), "cancelled": cancelled}


@ProbeConsumer.rpc_method()
def pool_publish(ctx: RpcContext, group: str) -> int:
    """Joins ``group`` for its caller (through the worker), then pushes to it from here."""
    async_to_sync(ctx.join_group)(group)
    notify_group_sync(group, "pool.note", {"pid": os.getpid()})
    return os.getpid()
