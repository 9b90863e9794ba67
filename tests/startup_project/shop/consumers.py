from __future__ import annotations

from channels_rpc import AsyncJsonRpcWebsocketConsumer


class ShopConsumer(AsyncJsonRpcWebsocketConsumer):
    """Its methods are in shop/rpc.py."""
