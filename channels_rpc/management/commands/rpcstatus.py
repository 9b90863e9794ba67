"""``manage.py rpcstatus``: what is queued, who serves it, and what looks wrong.

Reads the heartbeats workers and front-ends write in Redis (:mod:`channels_rpc.status`) and each
queue's depth and oldest request; samples the depths again after ``--sample`` seconds to see
which queues grow. ``--json`` prints the same as one JSON object (queues, workers, front-ends,
warnings) for scripts. Exit status 0, with or without warnings; 2 when Redis cannot be read.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, ClassVar

from channels.layers import get_channel_layer
from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_rpc import discovery
from channels_rpc.config import get_config
from channels_rpc.registry import known_queues
from channels_rpc.status import Snapshot, on_redis, snapshot, warnings


class Command(BaseCommand):  # type: ignore[misc]
    help = "Show queues, live workers and front-ends, and warnings (from their heartbeats)."
    requires_system_checks: ClassVar[list[str]] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="One JSON object, for scripts.")
        parser.add_argument(
            "--sample",
            type=float,
            default=1.0,
            help="Seconds between two reads of the queues' depth (0: one read, no growth check).",
        )
        parser.add_argument("--layer", default=None, help="CHANNEL_LAYERS alias to use.")

    def handle(self, *args: Any, **options: Any) -> None:
        config = get_config()
        discovery.import_application()  # the registered methods name the queues to show
        layer = get_channel_layer(options["layer"] or config.channel_layer)
        if not on_redis(layer):
            raise CommandError(
                "rpcstatus reads Redis: CHANNEL_LAYERS must use "
                "channels_rpc.layers.RedisChannelLayer (the in-memory layer has no status).",
                returncode=2,
            )
        queues = known_queues(config.default_queue)
        try:
            found = asyncio.run(snapshot(layer, queues, max(0.0, options["sample"])))
        except Exception as exc:
            raise CommandError(f"could not read Redis: {exc!r}", returncode=2) from exc
        if options["json"]:
            self.stdout.write(json.dumps(found.as_dict(), indent=2))
        else:
            self.stdout.write(render(found))


Row = tuple[str, ...]


def render(found: Snapshot) -> str:
    """The snapshot as plain tables."""
    now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    serving: dict[str, int] = {}
    for worker in found.workers:
        for queue in worker.get("queues", ()):
            serving[queue] = serving.get(queue, 0) + 1
    queues: list[Row] = [
        (
            name,
            str(q["depth"]),
            f"{q['oldest']:.1f} s",
            str(serving.get(name, 0)),
            "-" if "depth_after" not in q else f"{q['depth_after']} (+{q['sample']:g} s)",
        )
        for name, q in found.queues.items()
    ]
    workers: list[Row] = [
        (
            *_who(w),
            ",".join(w.get("queues", ())),
            str(w.get("concurrency")),
            str(w.get("busy")),
            f"{w['age']:.1f} s ago",
            str(len(w.get("methods", ()))),
        )
        for w in found.workers
    ]
    frontends: list[Row] = [
        (
            *_who(f),
            str(f.get("connections")),
            str(f.get("pending")),
            f"{f['age']:.1f} s ago",
            str(len(f.get("methods", ()))),
        )
        for f in found.frontends
    ]
    return "\n".join(
        [
            f"channels-rpc status at {now}",
            "",
            "Queues",
            *_table(("queue", "depth", "oldest", "workers", "after sample"), queues),
            "",
            "Workers",
            *_table(
                ("host", "pid", "queues", "concurrency", "busy", "last beat", "methods"), workers
            ),
            "",
            "Front-ends",
            *_table(
                ("host", "pid", "connections", "pending calls", "last beat", "methods"), frontends
            ),
            "",
            "Warnings",
            *([f"- {warning}" for warning in warnings(found)] or ["none"]),
        ]
    )


def _who(beat: dict[str, Any]) -> Row:
    return (str(beat.get("host")), str(beat.get("pid")))


def _table(header: Row, rows: list[Row]) -> list[str]:
    if not rows:
        return ["  (none)"]
    every = [header, *rows]
    widths = [max(len(row[i]) for row in every) for i in range(len(header))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in every
    ]
