"""``python -m workers.manage rpctoken USERNAME [--ttl SECONDS] [--create]``: print a token."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from workers.auth import issue_token


class Command(BaseCommand):
    help = "Print a bearer token for a user of the reference project."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--ttl", type=float, default=None, help="Seconds it stays valid.")
        parser.add_argument("--create", action="store_true", help="Create the user if needed.")

    def handle(self, *args: Any, **options: Any) -> None:
        model = get_user_model()
        if options["create"]:
            user, _ = model._default_manager.get_or_create(username=options["username"])
        else:
            try:
                user = model._default_manager.get(username=options["username"])
            except model.DoesNotExist:
                raise CommandError(f"no user {options['username']!r} (use --create)") from None
        self.stdout.write(issue_token(user.pk, options["ttl"]))
