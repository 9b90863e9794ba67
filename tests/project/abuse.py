"""Probe methods for the client, protocol and security tests (tests/integration/reliability).

Every probe leaves its trace in Redis under the cluster's prefix (``tests.project.counters``),
so a test can tell what ran, what was cancelled and what never started, without sleeping.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from channels_rpc import RpcContext
from channels_rpc.decorators import permission_required
from tests.project import counters
from tests.project.consumers import ProbeConsumer


@ProbeConsumer.rpc_method()
async def abuse_nop(*args: Any) -> int:
    """Accept anything (the flood's payload), do nothing."""
    return len(args)


@ProbeConsumer.rpc_method(timeout=60)
async def abuse_hold(tag: str, seconds: float) -> str:
    """Count ``abuse:<tag>:started``, ``...:completed`` and ``...:finally`` (cancelled or not)."""
    await counters.incr(f"abuse:{tag}:started")
    try:
        await asyncio.sleep(seconds)
        await counters.incr(f"abuse:{tag}:completed")
        return "completed"
    finally:
        await counters.incr(f"abuse:{tag}:finally")


@ProbeConsumer.rpc_method(timeout=60)
async def abuse_tag(ctx: RpcContext, conn: int) -> list[Any]:
    """``[conn, id]`` as the worker saw them: the correlation test checks both come back."""
    return [conn, ctx.rpc_id]


@ProbeConsumer.rpc_method()
@permission_required("auth.view_user")
async def abuse_protected(tag: str) -> str:
    """Only for users holding auth.view_user; ``abuse:protected:<tag>`` counts executions."""
    await counters.incr(f"abuse:protected:{tag}")
    return tag


@ProbeConsumer.rpc_method()
async def abuse_whoami(ctx: RpcContext, *args: Any, **claims: Any) -> dict[str, Any]:
    """The principal the worker was given, whatever the params claim (they are ignored)."""
    user = await ctx.get_user()
    authenticated = bool(getattr(user, "is_authenticated", False))
    return {
        "authenticated": authenticated,
        "pk": str(user.pk) if authenticated else None,
        "username": user.get_username() if authenticated else None,
        "path": ctx.scope.get("path"),
        "query_string": ctx.scope.get("query_string"),
        "worker_pid": os.getpid(),
    }
