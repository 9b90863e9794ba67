"""``ctx.consumer`` in a worker: a handle on the connection a call came from.

A method run by the worker side (in a worker process, or in the front-end's own process in
embedded mode, on the same path) has no consumer object: its context holds a
:class:`CallerChannel` instead, which reaches the caller's connection through the channel layer:
pushes to the caller, group joins and leaves for it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from channels_rpc import groups
from channels_rpc._layer import ChannelLayer
from channels_rpc.envelope import membership_message, push_message
from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode
from channels_rpc.logsafe import protect
from channels_rpc.push import push_frame

__all__ = ["CallerChannel"]

logger = protect(logging.getLogger("channels_rpc.worker"))


class CallerChannel:
    """``ctx.consumer`` in a worker: pushes to the connection a call came from.

    Pushes larger than ``max_push`` bytes raise ``ResponseTooLargeError`` (the transport would
    refuse them); joins beyond ``max_groups`` groups raise -32010.
    """

    def __init__(
        self,
        layer: ChannelLayer,
        channel_name: str,
        encoder: type[json.JSONEncoder] | None,
        *,
        max_push: int,
        max_groups: int,
    ) -> None:
        self.channel_layer = layer
        self.channel_name = channel_name
        self._encoder = encoder
        self._max_push = max_push
        self._max_groups = max_groups

    async def notify_channel(self, method: str, params: Any = None) -> None:
        frame = push_frame(method, params, encoder=self._encoder, limit=self._max_push)
        await self.channel_layer.send(self.channel_name, push_message(frame))

    async def join_group(self, group: str) -> None:
        # Joined here, at once, so that a push right after the method returns reaches the
        # caller; recorded with the connection (groups.join), so that its close undoes it even
        # if the close comes first. The front-end is told too: it renews what it joined.
        joined = await groups.join(
            self.channel_layer, group, self.channel_name, limit=self._max_groups
        )
        if joined == groups.CLOSED:
            logger.debug("not joining %r: %s has closed", group, self.channel_name)
            return
        if joined == groups.FULL:
            reason = {"reason": "connection is in too many groups", "limit": self._max_groups}
            raise JsonRpcError(None, JsonRpcErrorCode.SERVER_BUSY, reason)
        await self.channel_layer.send(self.channel_name, membership_message(join=group))

    async def leave_group(self, group: str) -> None:
        await groups.leave(self.channel_layer, group, self.channel_name)
        await self.channel_layer.send(self.channel_name, membership_message(leave=group))

    def __repr__(self) -> str:
        return f"CallerChannel({self.channel_name!r})"
