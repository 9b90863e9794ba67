"""``manage.py rpcschema``: a consumer's OpenRPC document, and a typed TypeScript client.

The document is the one ``rpc.discover`` answers, with every method the consumer class serves
over WebSockets (no per-user permission filter: no user here). With neither ``--output`` nor
``--typescript`` it goes to stdout. ``--typescript api.ts`` writes the module
:mod:`channels_rpc.typescript` generates (docs/guides/typescript.md), which imports client.js's
types from ``--client-import``.

``--consumer`` names the consumer class by dotted path; needed only when several classes have
methods registered in this process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_rpc import discovery
from channels_rpc.registry import consumer_key, live_tables, resolve_consumer
from channels_rpc.typescript import TypeScriptError, generate


class Command(BaseCommand):  # type: ignore[misc]
    help = "Print or write a consumer's OpenRPC document, and a typed TypeScript client."
    requires_system_checks: ClassVar[list[str]] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--consumer",
            metavar="DOTTED.PATH",
            help="The consumer class (needed when several have methods registered).",
        )
        parser.add_argument("--output", metavar="FILE", help="Write the OpenRPC JSON there.")
        parser.add_argument(
            "--typescript", metavar="FILE", help="Write a typed TypeScript client there."
        )
        parser.add_argument(
            "--client-import",
            default="./client.js",
            metavar="PATH",
            help='Where the TypeScript module imports client.js from (default "./client.js").',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Consumers whose methods are registered by modules the ASGI application imports.
        discovery.import_application()
        consumer = find_consumer(options["consumer"])
        document: dict[str, Any] = consumer.openrpc_document()
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        if options["output"]:
            _write(options["output"], text)
        if options["typescript"]:
            try:
                source = generate(
                    document, client_import=options["client_import"], source=consumer_key(consumer)
                )
            except TypeScriptError as exc:
                raise CommandError(f"cannot generate TypeScript: {exc}") from exc
            _write(options["typescript"], source)
        if not options["output"] and not options["typescript"]:
            self.stdout.write(text, ending="")


def find_consumer(path: str | None) -> type[Any]:
    """The consumer class at ``path``, or the only one with methods registered."""
    registered = sorted(table.key for table in live_tables() if any(table.specs()))
    if path is not None:
        consumer = resolve_consumer(path)
        if consumer is None or not hasattr(consumer, "openrpc_document"):
            raise CommandError(f"no consumer class {path!r}; {_listing(registered)}")
        return consumer
    if not registered:
        raise CommandError(discovery.nothing_registered())
    if len(registered) > 1:
        raise CommandError(
            f"several consumer classes: pick one with --consumer; {_listing(registered)}"
        )
    consumer = resolve_consumer(registered[0])
    if consumer is None:  # the table outlived its class: cannot happen while it is live
        raise CommandError(f"consumer class {registered[0]!r} cannot be imported")
    return consumer


def _listing(keys: list[str]) -> str:
    if not keys:
        return "no consumer class has methods registered"
    return "consumer classes with methods: " + ", ".join(keys)


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from exc
