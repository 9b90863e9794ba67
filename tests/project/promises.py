"""Probe methods for tests/integration/test_promises.py: what a worker process is given."""

from __future__ import annotations

import os
from typing import Any

from channels_rpc import RpcContext
from tests.project.consumers import ProbeConsumer


@ProbeConsumer.rpc_method()
def promise_scope(ctx: RpcContext) -> dict[str, Any]:
    """The caller as this worker sees it: ``ctx.scope["user"]`` is loaded here, by primary key."""
    user = ctx.scope["user"]
    return {
        "user": {
            "class": user.__class__.__name__,  # a lazy object's class is the loaded one's
            "authenticated": bool(user.is_authenticated),
            "pk": str(user.pk) if user.is_authenticated else None,
            "username": user.get_username(),
        },
        **{key: ctx.scope.get(key) for key in ("path", "query_string", "session_key")},
        "client_host": (ctx.scope.get("client") or [None])[0],
        "url_route": ctx.scope.get("url_route"),
        "worker_pid": os.getpid(),
    }
