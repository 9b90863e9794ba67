"""Sync methods in child processes, the worker's side: ``rpcworker --pool processes``.

:mod:`channels_rpc.processes` forks and feeds the children; this module says what crosses
(:class:`ChildCall`: the method by name, its arguments, what its context is built from) and
what a child does with it (:func:`run_in_child`), the Django way: stale database connections
closed around each call, as a thread of the worker does, the user loaded in the child when the
method first touches ``ctx.scope["user"]``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections, connections

from channels_rpc import decorators
from channels_rpc.context import CallerHandle, CancelFlag, RpcContext
from channels_rpc.envelope import Call
from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode
from channels_rpc.processes import ProcessPool
from channels_rpc.registry import MethodSpec, resolve_consumer, table_of
from channels_rpc.scope import worker_scope

__all__ = ["ChildCall", "process_pool", "run_in_child", "send_to_child"]


@dataclass(frozen=True)
class ChildCall:
    """One call on its way to a child: all of it pickles (the arguments are JSON values)."""

    consumer: str  # the consumer class's key: the child finds the method in its registry
    method: str
    notification: bool
    rpc_id: Any
    scope: dict[str, Any]  # the portable scope; the child turns it into ctx.scope
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    checked: tuple[str, ...]  # the permissions the worker checked already


def process_pool(size: int) -> ProcessPool:
    """A pool of ``size`` children running :func:`run_in_child` (not started yet)."""
    # A connection must not be shared across a fork: the zygote's copy would talk on the same
    # socket. Django opens a new one in each child, on first use.
    return ProcessPool(run_in_child, size, before_fork=connections.close_all)


async def send_to_child(
    pool: ProcessPool,
    call: Call,
    spec: MethodSpec,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    context: RpcContext,
) -> Any:
    """Run ``spec`` in a child of ``pool`` (an :class:`~channels_rpc.execution.Executor`'s
    ``run_method``). A worker runs a protected method only once it checked its permissions."""
    job = ChildCall(
        call.consumer,
        spec.name,
        call.is_notification,
        context.rpc_id,
        dict(call.scope),
        args,
        kwargs,
        spec.permissions,
    )
    caller = context.consumer if spec.accepts_context else None
    return await pool.run(job, spec.name, caller)


def run_in_child(job: ChildCall, caller: CallerHandle | None, cancelled: CancelFlag) -> Any:
    """What a child does with a :class:`ChildCall`: find the method, build its context, run it."""
    consumer = resolve_consumer(job.consumer)
    table = table_of(consumer) if consumer is not None else None
    spec = table.lookup(job.method, notification=job.notification) if table else None
    if spec is None:  # registered in the worker after the fork: not in this child
        raise JsonRpcError(None, JsonRpcErrorCode.METHOD_NOT_FOUND, {"method": job.method})
    args = job.args
    if spec.accepts_context:
        context = RpcContext(
            caller,
            job.method,
            job.rpc_id,
            job.notification,
            scope=worker_scope(job.scope),
            cancelled=cancelled,
        )
        args = (context, *args)
    close_old_connections()
    try:
        with decorators.checked(job.checked):
            result = spec.func(*args, **job.kwargs)
            # A sync callable may still hand back an awaitable (a partial of a coroutine).
            return asyncio.run(_awaited(result)) if inspect.isawaitable(result) else result
    finally:
        close_old_connections()


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
