"""``manage.py rpcnotify GROUP METHOD [PARAMS_JSON]``: push a notification to a group."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_rpc.push import notify_group_sync


class Command(BaseCommand):  # type: ignore[misc]
    help = "Send a JSON-RPC notification to every connection in a group."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("group")
        parser.add_argument("method")
        parser.add_argument("params", nargs="?", help="JSON: an array or an object.")

    def handle(self, *args: Any, **options: Any) -> None:
        params = None
        if options["params"] is not None:
            try:
                params = json.loads(options["params"])
            except ValueError as exc:
                raise CommandError(f"params must be JSON: {exc}") from None
            if not isinstance(params, (list, dict)):
                raise CommandError("params must be a JSON array or object.")
        notify_group_sync(options["group"], options["method"], params)
        self.stdout.write(f"sent {options['method']} to {options['group']}")
