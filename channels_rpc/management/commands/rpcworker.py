"""``manage.py rpcworker [QUEUE ...] [--concurrency N]``: the production worker process.

Without queues it serves every queue the registered methods use. It takes a request only when one
of its ``--concurrency`` slots is free, so requests it cannot start yet stay in Redis for other
workers. On SIGTERM or SIGINT it stops taking requests, gives running calls ``--grace`` seconds,
answers the ones still running with an error, and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels_redis.core import RedisChannelLayer as StockRedisChannelLayer
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_rpc.config import get_config
from channels_rpc.health import beat
from channels_rpc.layers import RedisChannelLayer
from channels_rpc.registry import known_queues
from channels_rpc.worker import build_runtime

logger = logging.getLogger("channels_rpc.worker")


class Command(BaseCommand):  # type: ignore[misc]
    help = "Run RPC methods from channel-layer queues (all registered queues by default)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queues", nargs="*", help="Queues to serve (default: all registered).")
        parser.add_argument("--concurrency", type=int, default=None, help="Calls run at once.")
        parser.add_argument("--grace", type=float, default=None, help="Seconds to drain on stop.")
        parser.add_argument("--layer", default=None, help="CHANNEL_LAYERS alias to use.")
        parser.add_argument(
            "--health-file",
            type=Path,
            default=None,
            help="Touch this file every few seconds while healthy (see rpchealth).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        config = get_config()
        _load_application()
        layer = get_channel_layer(options["layer"] or config.channel_layer)
        if layer is None:
            raise CommandError("No channel layer is configured (CHANNEL_LAYERS).")
        _warn_about(layer)
        queues = sorted(options["queues"] or known_queues(config.default_queue))
        concurrency = options["concurrency"] or config.worker_concurrency
        if concurrency < 1:
            raise CommandError("--concurrency must be at least 1.")
        grace = config.shutdown_grace if options["grace"] is None else options["grace"]
        if (
            isinstance(layer, RedisChannelLayer)
            and len({layer.consistent_hash(q) for q in queues}) > 1
        ):
            raise CommandError(f"{queues} live on different Redis hosts: run a worker per host.")
        asyncio.run(_serve(layer, queues, concurrency, grace, options["health_file"]))


def _load_application() -> None:
    # Importing the ASGI application imports the consumers, which registers their methods.
    if getattr(settings, "ASGI_APPLICATION", None):
        from channels.routing import get_default_application

        get_default_application()


def _warn_about(layer: Any) -> None:
    if isinstance(layer, InMemoryChannelLayer):
        raise CommandError(
            "The in-memory channel layer cannot cross processes: methods run inside the "
            "front-end already. Configure channels_rpc.layers.RedisChannelLayer to use workers."
        )
    if isinstance(layer, StockRedisChannelLayer) and not isinstance(layer, RedisChannelLayer):
        logger.warning(
            "channels_redis' RedisChannelLayer can deliver one request to two workers "
            "(channels_redis#163); use channels_rpc.layers.RedisChannelLayer."
        )


async def _serve(
    layer: Any, queues: list[str], concurrency: int, grace: float, health_file: Path | None
) -> None:
    runtime = build_runtime(layer, replace(get_config(), worker_concurrency=concurrency))
    heartbeat = (
        asyncio.create_task(beat(layer, health_file, runtime.problem)) if health_file else None
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runtime.serve(queues)
    logger.info(
        "rpcworker ready: pid=%d queues=%s concurrency=%d",
        os.getpid(),
        ",".join(queues),
        concurrency,
    )
    sys.stderr.flush()
    await stop.wait()
    logger.info("rpcworker stopping: %d calls running, %.1f s grace", runtime.in_flight, grace)
    if heartbeat is not None:
        heartbeat.cancel()
    await runtime.stop(grace)
    logger.info("rpcworker stopped after %d calls", runtime.handled)
