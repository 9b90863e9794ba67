from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from channels_rpc import AsyncJsonRpcWebsocketConsumer


class RpcConsumer(AsyncJsonRpcWebsocketConsumer):
    """The reference project's endpoint, /ws/rpc/; its methods are in workers.methods."""

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
