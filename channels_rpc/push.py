"""Push notifications to every connection in a group, from any process.

Any process whose settings configure the channel layer can push: a worker running a method, a
Django view, a management command, a Celery task. Connections join groups in ``connect()``
(``await self.join_group(name)`` or Channels' ``groups`` attribute) or from a method
(``await ctx.join_group(name)``).

Delivery is at most once, like every channel-layer group send: a connection whose buffer is
full, or that joined a moment too late, misses the push.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder

from channels_rpc.config import get_config
from channels_rpc.envelope import notification_frame, push_message

__all__ = ["notify_group", "notify_group_sync"]


async def notify_group(group: str, method: str, params: Any = None) -> None:
    """Send the notification ``method(params)`` to every connection in ``group``."""
    layer = get_channel_layer(get_config().channel_layer)
    if layer is None:
        raise RuntimeError("notify_group() needs a channel layer (CHANNEL_LAYERS).")
    frame = notification_frame(method, params, encoder=DjangoJSONEncoder)
    await layer.group_send(group, push_message(frame))


def notify_group_sync(group: str, method: str, params: Any = None) -> None:
    """:func:`notify_group` for sync code (views, management commands, Celery tasks)."""
    async_to_sync(notify_group)(group, method, params)
