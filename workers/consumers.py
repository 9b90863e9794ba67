from __future__ import annotations

from channels_rpc import AsyncJsonRpcWebsocketConsumer


class RpcConsumer(AsyncJsonRpcWebsocketConsumer):
    """The reference project's endpoint, /ws/rpc/; its methods are in workers.methods."""
