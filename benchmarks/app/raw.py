"""The transport floor: a plain Channels consumer answering every frame, no JSON-RPC library."""

from __future__ import annotations

import json
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer


class RawEchoConsumer(AsyncWebsocketConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: Any = None) -> None:
        rpc_id = json.loads(text_data or "{}").get("id")
        await self.send(text_data=f'{{"jsonrpc":"2.0","id":{json.dumps(rpc_id)},"result":"pong"}}')
