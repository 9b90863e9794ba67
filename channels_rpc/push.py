"""Push notifications to every connection in a group, from any process.

Any process whose settings configure the channel layer can push: a worker running a method, a
Django view, a management command, a Celery task. Connections join groups in ``connect()``
(``await self.join_group(name)`` or Channels' ``groups`` attribute) or from a method
(``await ctx.join_group(name)``).

Delivery is at most once, like every channel-layer group send: a connection whose buffer is
full, or that joined a moment too late, misses the push.

A push is sized where it is encoded: one over ``MAX_RESPONSE_SIZE`` bytes would be refused by
each front-end's transport, for every member of the group, so it raises
``ResponseTooLargeError`` in the sender instead (a method that does not catch it answers its
call with -32014).
"""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder

from channels_rpc._layer import ChannelLayer
from channels_rpc.config import get_config
from channels_rpc.envelope import notification_frame, push_message
from channels_rpc.exceptions import ResponseTooLargeError
from channels_rpc.protocol import utf8_size

__all__ = ["notify_group", "notify_group_sync", "push_frame"]


async def notify_group(group: str, method: str, params: Any = None) -> None:
    """Send the notification ``method(params)`` to every connection in ``group``."""
    config = get_config()
    layer: ChannelLayer | None = get_channel_layer(config.channel_layer)
    if layer is None:
        raise RuntimeError("notify_group() needs a channel layer (CHANNEL_LAYERS).")
    frame = push_frame(method, params, encoder=DjangoJSONEncoder, limit=config.max_response_size)
    await layer.group_send(group, push_message(frame))


def push_frame(
    method: str, params: Any, *, encoder: type[json.JSONEncoder] | None, limit: int
) -> str:
    """The notification frame of a push; ``ResponseTooLargeError`` if over ``limit`` bytes."""
    frame = notification_frame(method, params, encoder=encoder)
    size = utf8_size(frame)
    if size > limit:
        raise ResponseTooLargeError(size, limit, what="push")
    return frame


def notify_group_sync(group: str, method: str, params: Any = None) -> None:
    """:func:`notify_group` for sync code (views, management commands, Celery tasks)."""
    async_to_sync(notify_group)(group, method, params)
