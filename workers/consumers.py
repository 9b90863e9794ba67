from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from django.conf import settings

from channels_rpc import AsyncJsonRpcWebsocketConsumer

#: Close code for a handshake without credentials when they are required (4003, like HTTP 403).
CLOSE_UNAUTHENTICATED = 4003


class RpcConsumer(AsyncJsonRpcWebsocketConsumer):
    """The reference project's endpoint, /ws/rpc/; its methods are in workers/rpc.py."""

    openrpc_info: ClassVar[Mapping[str, Any]] = {
        "title": "channels-rpc reference project",
        "version": "1.0.0",
    }
    server_notifications: ClassVar[Mapping[str, str | Mapping[str, Any]]] = {
        "topic.message": {
            "description": "A message published to a topic this connection subscribed to.",
            "params": [
                {"name": "topic", "required": True, "schema": {"type": "string"}},
                {"name": "message", "required": True, "schema": {}},
                {"name": "worker_pid", "required": False, "schema": {"type": "integer"}},
            ],
        },
        "logged": "Sent back to the caller of the `log` notification.",
    }

    async def connect(self) -> None:
        user = self.scope.get("user")
        if getattr(settings, "RPC_REQUIRE_AUTH", False) and not getattr(
            user, "is_authenticated", False
        ):
            await self.close(code=CLOSE_UNAUTHENTICATED)  # before accept: daphne answers 403
            return
        await super().connect()
