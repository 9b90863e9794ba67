"""``manage.py rpcnotify GROUP METHOD [PARAMS_JSON]``: push a notification to a group.

It runs in a process of its own, so it reaches connections only through a channel layer that
crosses processes (Redis): with the in-memory layer, or arguments that cannot make a push, it
exits 2 with a one-line error instead of saying "sent".
"""

from __future__ import annotations

from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_rpc.config import get_config
from channels_rpc.management._arguments import json_params
from channels_rpc.push import notify_group_sync
from channels_rpc.registry import valid_queue_name

#: The exit status of a push that cannot be made (2, as argparse exits on bad arguments).
CANNOT_SEND = 2


class Command(BaseCommand):  # type: ignore[misc]
    help = "Send a JSON-RPC notification to every connection in a group."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("group")
        parser.add_argument("method")
        parser.add_argument("params", nargs="?", help="JSON: an array or an object.")

    def handle(self, *args: Any, **options: Any) -> None:
        group = options["group"]
        # Channels names groups by the rule of normal channels, which queues follow too.
        if not valid_queue_name(group):
            raise CommandError(
                f"Invalid group name {group!r}: use 1-99 ASCII letters, digits, '-', '_' or '.'.",
                returncode=CANNOT_SEND,
            )
        params = json_params(options["params"], CANNOT_SEND)
        alias = get_config().channel_layer
        layer = get_channel_layer(alias)
        if layer is None:
            raise CommandError(
                f"No channel layer is configured (CHANNEL_LAYERS[{alias!r}]).",
                returncode=CANNOT_SEND,
            )
        if isinstance(layer, InMemoryChannelLayer):
            raise CommandError(
                f"CHANNEL_LAYERS[{alias!r}] is the in-memory layer, which lives inside each "
                "process: a push from this command cannot reach any connection. Use a Redis "
                "layer (channels_rpc.layers.RedisChannelLayer), or push with notify_group() from "
                "code that runs in the front-end's process.",
                returncode=CANNOT_SEND,
            )
        notify_group_sync(group, options["method"], params)
        self.stdout.write(f"sent {options['method']} to {group}")
