"""``manage.py rpcworker [QUEUE ...] [--concurrency N] [--pool processes] [--reload]``: the worker.

Without queues it serves every queue the registered methods use. It takes a request only when one
of its ``--concurrency`` slots is free, so requests it cannot start yet stay in Redis for other
workers. Sync methods run in threads, or with ``--pool processes`` in forked child processes
(``--processes`` of them, one per CPU by default; docs/guides/worker-pools.md). On SIGTERM or
SIGINT it stops taking requests, gives running calls ``--grace`` seconds, answers the ones still
running with an error, and exits 0.

It refuses to start rather than serve nothing or serve wrongly: no registered method, a queue
no method uses (a typo), or a channel layer that cannot share queues between workers.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from channels.layers import get_channel_layer
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import autoreload

from channels_rpc import child_calls, discovery, metrics, status
from channels_rpc.checks import worker_layer_problem
from channels_rpc.config import WORKER_POOLS, RpcConfig, get_config
from channels_rpc.health import beat
from channels_rpc.layers import RedisChannelLayer
from channels_rpc.metrics_server import serve_metrics
from channels_rpc.processes import ProcessPool, cpu_count
from channels_rpc.registry import known_queues
from channels_rpc.runtime import WorkerRuntime
from channels_rpc.worker import build_runtime

logger = logging.getLogger("channels_rpc.worker")


class Command(BaseCommand):  # type: ignore[misc]
    help = "Run RPC methods from channel-layer queues (all registered queues by default)."
    # It checks what it needs itself, below, and says what to fix; like daphne, a server
    # process runs no other system checks (`manage.py check` does).
    requires_system_checks: ClassVar[list[str]] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queues", nargs="*", help="Queues to serve (default: all registered).")
        parser.add_argument("--concurrency", type=int, default=None, help="Calls run at once.")
        parser.add_argument(
            "--pool",
            choices=WORKER_POOLS,
            default=None,
            help="Where sync methods run: threads, or forked child processes (for CPU-bound ones).",
        )
        parser.add_argument(
            "--processes",
            type=int,
            default=None,
            help="Child processes of --pool processes (default: one per CPU).",
        )
        parser.add_argument("--grace", type=float, default=None, help="Seconds to drain on stop.")
        parser.add_argument("--layer", default=None, help="CHANNEL_LAYERS alias to use.")
        parser.add_argument(
            "--health-file",
            type=Path,
            default=None,
            help="Touch this file every few seconds while healthy (see rpchealth).",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            help="Serve Prometheus metrics at http://HOST:PORT/metrics (0: a free port).",
        )
        parser.add_argument(
            "--metrics-host",
            default="127.0.0.1",
            help="The address the metrics listen on (0.0.0.0 in a container).",
        )
        parser.add_argument(
            "--reload",
            action="store_true",
            help="Restart when Python files change, like runserver (for development).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        config = get_config()
        # Daphne imports the ASGI application: so does the worker, for the same methods.
        discovery.import_application()
        layer = _checked_layer(options["layer"] or config.channel_layer)
        methods = discovery.registered_count()
        if not methods:
            raise CommandError(discovery.nothing_registered())
        queues = _checked_queues(options["queues"], config.default_queue)
        config = _worker_config(config, options)
        concurrency = config.worker_concurrency
        grace = config.shutdown_grace if options["grace"] is None else options["grace"]
        if (
            isinstance(layer, RedisChannelLayer)
            and len({layer.consistent_hash(q) for q in queues}) > 1
        ):
            raise CommandError(f"{queues} live on different Redis hosts: run a worker per host.")
        # Printed whatever LOGGING says: a fresh project has none, and logs nothing at INFO.
        serving = (
            f"queues={','.join(queues)} methods={methods} concurrency={concurrency} "
            f"{_pool(config)}{_where(layer, queues)}"
        )

        def announce(extra: str) -> None:  # the pid is the serving process's (--reload: a child)
            line = f"rpcworker ready: pid={os.getpid()} {serving}{extra}"
            self.stderr.write(line, style_func=_plain)
            self.stderr.flush()

        metrics_at = None
        if options["metrics_port"] is not None:
            metrics_at = (options["metrics_host"], options["metrics_port"])

        def serve() -> None:
            processes = _process_pool(config)
            asyncio.run(
                _serve(
                    functools.partial(build_runtime, layer, config, processes=processes),
                    queues,
                    grace,
                    options["health_file"],
                    metrics_at,
                    announce,
                )
            )

        if options["reload"]:
            # A parent process restarts a child that serves until a file changes. A stop or a
            # reload ends the child at once: running calls are answered by their deadline.
            autoreload.run_with_reloader(serve)
        else:
            serve()


def _worker_config(config: RpcConfig, options: dict[str, Any]) -> RpcConfig:
    """The settings, with what the command line says instead."""
    concurrency = options["concurrency"] or config.worker_concurrency
    if concurrency < 1:
        raise CommandError("--concurrency must be at least 1.")
    processes = (
        options["processes"] if options["processes"] is not None else config.worker_processes
    )
    if processes is not None and processes < 1:
        raise CommandError("--processes must be at least 1.")
    pool = options["pool"] or config.worker_pool
    if pool == "processes" and not hasattr(os, "fork"):
        raise CommandError("--pool processes needs os.fork(), which this platform lacks.")
    return replace(
        config, worker_concurrency=concurrency, worker_pool=pool, worker_processes=processes
    )


def _process_pool(config: RpcConfig) -> ProcessPool | None:
    """The started pool for ``--pool processes``, or None.

    Started before the event loop: the pool closes this thread's database connections before
    it forks (Django refuses that inside a running loop), and no other thread runs yet.
    """
    if config.worker_pool != "processes":
        return None
    pool = child_calls.process_pool(config.worker_processes or cpu_count())
    pool.start()
    return pool


def _pool(config: RpcConfig) -> str:
    if config.worker_pool != "processes":
        return ""
    return f"pool=processes:{config.worker_processes or cpu_count()} "


def _checked_layer(alias: str) -> Any:
    layer = get_channel_layer(alias)
    if layer is None:
        raise CommandError(f"No channel layer is configured (CHANNEL_LAYERS[{alias!r}]).")
    if problem := worker_layer_problem(layer, alias):
        raise CommandError(problem)
    return layer


def _checked_queues(requested: list[str], default: str) -> list[str]:
    """The queues to serve: those asked for, which some method must use, or every one used."""
    known = known_queues(default)
    queues = sorted(requested or known)
    if unknown := [queue for queue in queues if queue not in known]:
        raise CommandError(_unknown_queues(unknown, known))
    return queues


def _plain(text: str) -> str:
    return text


def _unknown_queues(unknown: list[str], known: Iterable[str]) -> str:
    known = sorted(known)
    named = []
    for queue in unknown:
        close = difflib.get_close_matches(queue, known, n=1)
        named.append(f"{queue!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    which = f"queue {named[0]}" if len(named) == 1 else f"queues {', '.join(named)}"
    return (
        f"No registered method uses the {which}: nothing would ever arrive there. "
        f"Known queues: {', '.join(known)}."
    )


def _where(layer: Any, queues: list[str]) -> str:
    """Which Redis the queues live on (without a password), or which layer."""
    if not isinstance(layer, RedisChannelLayer):
        return f"layer={type(layer).__module__}.{type(layer).__qualname__}"
    host = layer.hosts[layer.consistent_hash(queues[0])]
    if "master_name" in host:  # Sentinels name the primary, wherever it is now
        sentinels = ",".join(f"{h}:{p}" for h, p in host.get("sentinels", ()))
        return f"redis=sentinel:{host['master_name']} via {sentinels}"
    address = host.get("address")
    if not isinstance(address, str):
        return f"redis={host.get('host', 'localhost')}:{host.get('port', 6379)}"
    address = address.partition("?")[0]  # options may hold a password too
    netloc = urlsplit(address).netloc
    userinfo, at, location = netloc.rpartition("@")
    if at:
        user = userinfo.partition(":")[0]
        address = address.replace(netloc, f"{user}@{location}" if user else location, 1)
    return f"redis={address}"


async def _serve(
    make_runtime: Callable[[], WorkerRuntime],
    queues: list[str],
    grace: float,
    health_file: Path | None,
    metrics_at: tuple[str, int] | None,
    announce: Callable[[str], None],
) -> None:
    runtime = make_runtime()
    layer = runtime.layer
    metrics.SLOTS.labels("busy").set_function(lambda: runtime.in_flight)
    metrics.SLOTS.labels("free").set_function(lambda: runtime.concurrency - runtime.in_flight)
    served = status.methods_served(queues, get_config().default_queue)

    def describe() -> dict[str, Any]:
        busy = runtime.in_flight
        return {
            "queues": queues,
            "concurrency": runtime.concurrency,
            "busy": busy,
            "methods": served,
        }

    beating = None
    if status.on_redis(layer):  # heartbeats for rpcstatus
        beating = asyncio.create_task(status.beat_forever(layer, "worker", describe))
    server, extra = None, ""
    if metrics_at is not None:
        server = await serve_metrics(layer, queues, *metrics_at)
        host, port = server.sockets[0].getsockname()[:2]
        extra = f" metrics=http://{host}:{port}/metrics"
    heartbeat = (
        asyncio.create_task(beat(layer, health_file, runtime.problem)) if health_file else None
    )
    stop = asyncio.Event()
    # Under --reload this runs in a thread of the child process, where signals cannot be
    # handled (they end the process: see run_with_reloader); it then serves until it exits.
    if threading.current_thread() is threading.main_thread():
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    runtime.serve(queues)
    announce(extra)
    await stop.wait()
    if server is not None:
        server.close()
    logger.info("rpcworker stopping: %d calls running, %.1f s grace", runtime.in_flight, grace)
    for task in (heartbeat, beating):
        if task is not None:
            task.cancel()
    await runtime.stop(grace)
    logger.info("rpcworker stopped after %d calls", runtime.handled)
