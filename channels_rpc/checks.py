"""Misconfigurations, caught where each process can see them.

The same findings reach the user three ways:

* ``manage.py check`` (and every command that runs the system checks): :func:`check_setup`,
  registered by ``ChannelsRpcConfig.ready()``;
* ``rpcworker``, which refuses to start (``CommandError``) with :func:`worker_layer_problem`;
* the front-end, on its first connection (:func:`connection_layer`), which logs each problem
  once per process. It runs even without ``"channels_rpc"`` in INSTALLED_APPS, where nothing
  else does.

The channel layer must fit the execution mode. In workers mode (``EXECUTION`` "workers", or
"auto" with a layer other than the in-memory one) calls go through queues that several worker
processes receive from, and each call must reach exactly one of them. Stock channels-redis
does not promise that (its ``$inflight`` backup queue hands some messages to two receivers,
channels_redis#163) and its PubSub layer hands every message to every receiver: with either,
the front-end refuses calls (-32010) rather than enqueue them, and ``rpcworker`` refuses to run.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer as StockRedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.apps import apps
from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from channels_rpc import discovery
from channels_rpc.config import RpcConfig, get_config
from channels_rpc.layers import LayerFull, RedisChannelLayer

__all__ = [
    "LAYER_REFUSED",
    "check_setup",
    "connection_layer",
    "queue_problem",
    "register",
    "worker_layer_problem",
]

TAG: Final = "channels_rpc"
OUR_LAYER: Final = "channels_rpc.layers.RedisChannelLayer"
#: ``data.reason`` of the -32010 a front-end answers when its layer cannot serve queues.
LAYER_REFUSED: Final = (
    "the server's channel layer cannot hand calls to workers (CHANNEL_LAYERS is misconfigured; "
    "see the server log)"
)

logger = logging.getLogger("channels_rpc")


def register() -> None:
    """Register :func:`check_setup` with Django's system checks (``manage.py check``)."""
    checks.register(check_setup, TAG)


def queue_problem(backend: type) -> str | None:
    """Why worker processes cannot share queues through a layer of this class, or None."""
    if issubclass(backend, RedisChannelLayer):
        return None
    if issubclass(backend, StockRedisChannelLayer):
        return "which can hand one request to two workers (channels_redis#163)"
    if issubclass(backend, RedisPubSubChannelLayer):
        return "which hands every request to every worker"
    return None


def _layer_message(alias: str, backend: type, problem: str) -> str:
    return (
        f"CHANNEL_LAYERS[{alias!r}] uses {_dotted(backend)}, {problem}: set its BACKEND to "
        f"{OUR_LAYER!r}."
    )


def worker_layer_problem(layer: Any, alias: str) -> str | None:
    """Why ``rpcworker`` cannot serve queues through ``layer`` (CHANNEL_LAYERS[alias]), or None."""
    if isinstance(layer, InMemoryChannelLayer):
        return (
            f"CHANNEL_LAYERS[{alias!r}] is the in-memory layer, which cannot cross processes: "
            "methods run inside the front-end already. Set its BACKEND to "
            f"{OUR_LAYER!r} to use workers."
        )
    problem = queue_problem(type(layer))
    return _layer_message(alias, type(layer), problem) if problem else None


def _workers_mode(execution: str, backend: type) -> bool:
    if execution == "auto":
        return not issubclass(backend, InMemoryChannelLayer)
    return execution == "workers"


# ------------------------------------------------------------------------------------------------
# The front-end's first connection

_said: set[str] = set()


def _once(level: int, message: str) -> None:
    if message not in _said:
        _said.add(message)
        logger.log(level, "%s", message)


def connection_layer(consumer: Any) -> Any:
    """The channel layer a new connection enqueues its calls on; says once what is wrong.

    The consumer's own layer, unless it cannot serve queues in workers mode: then a layer that
    refuses each call (-32010, ``data.reason`` :data:`LAYER_REFUSED`), since enqueued calls would
    run twice or on every worker.
    """
    if not apps.is_installed("channels_rpc"):
        _once(
            logging.WARNING,
            'Add "channels_rpc" to INSTALLED_APPS: without it there is no `manage.py rpcworker` '
            "(\"Unknown command: 'rpcworker'\") nor rpcnotify, the rpc modules of your apps and "
            'CHANNELS_RPC["METHOD_MODULES"] are not imported, and the settings are not checked '
            "at startup.",
        )
    layer = consumer.channel_layer
    problem = queue_problem(type(layer))
    if problem is None or not _workers_mode(get_config().execution, type(layer)):
        return layer
    alias = getattr(consumer, "channel_layer_alias", "default")
    _once(
        logging.ERROR,
        f"{_layer_message(alias, type(layer), problem)} Until then every call is refused "
        "with -32010.",
    )
    return _RefusingLayer(layer)


class _RefusingLayer:
    """Refuses to enqueue anything; everything else goes to the real layer (replies, groups)."""

    def __init__(self, layer: Any) -> None:
        self._layer = layer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._layer, name)

    async def enqueue(self, channel: str, message: Any, *, timeout: float | None = None) -> Any:
        raise LayerFull(LAYER_REFUSED)

    async def send(self, channel: str, message: Any) -> None:
        raise LayerFull(LAYER_REFUSED)


# ------------------------------------------------------------------------------------------------
# System checks


def check_setup(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """What ``manage.py check`` reports about channels-rpc's setup."""
    found: list[checks.CheckMessage] = []
    if not apps.is_installed("channels"):
        found.append(
            checks.Warning(
                '"channels" is not in INSTALLED_APPS.',
                hint='Add "channels" (and "channels_rpc") to INSTALLED_APPS.',
                id="channels_rpc.W002",
            )
        )
    # CHANNELS_RPC itself is checked earlier: ChannelsRpcConfig.ready() raises when invalid.
    found.extend(_check_layer(get_config()))
    if not discovery.registered_count():
        found.append(_no_methods())
    return found


def _check_layer(config: RpcConfig) -> list[checks.CheckMessage]:
    alias = config.channel_layer
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    if alias not in layers:
        return [
            checks.Error(
                f"CHANNEL_LAYERS has no {alias!r} layer, which CHANNELS_RPC['CHANNEL_LAYER'] "
                "names.",
                hint=f"Configure CHANNEL_LAYERS[{alias!r}] (for example with BACKEND "
                f"{OUR_LAYER!r}), or name an existing alias.",
                id="channels_rpc.E002",
            )
        ]
    try:
        backend = import_string(layers[alias]["BACKEND"])
    except (ImportError, KeyError, TypeError) as exc:
        return [
            checks.Error(
                f"CHANNEL_LAYERS[{alias!r}]['BACKEND'] cannot be imported: {exc!r}.",
                id="channels_rpc.E004",
            )
        ]
    problem = queue_problem(backend)
    if problem and _workers_mode(config.execution, backend):
        return [
            checks.Error(
                _layer_message(alias, backend, problem),
                hint="Front-ends refuse calls (-32010) and rpcworker refuses to start until then.",
                id="channels_rpc.E003",
            )
        ]
    if config.execution == "workers" and issubclass(backend, InMemoryChannelLayer):
        return [
            checks.Warning(
                f"CHANNELS_RPC['EXECUTION'] is 'workers' but CHANNEL_LAYERS[{alias!r}] is the "
                "in-memory layer, which no worker process can reach: calls wait for a worker "
                "in the front-end's own process.",
                hint=f"Use {OUR_LAYER!r} for workers, or EXECUTION 'auto' to run methods in the "
                "front-end.",
                id="channels_rpc.W003",
            )
        ]
    return []


def _no_methods() -> checks.Warning:
    hint = (
        'Put methods in the "rpc" module of an installed app (myapp/rpc.py), or list their '
        'modules in CHANNELS_RPC["METHOD_MODULES"].'
    )
    if getattr(settings, "ASGI_APPLICATION", None):
        hint += (
            " Methods registered only by modules that ASGI_APPLICATION imports are found by "
            "daphne and rpcworker, not by this check."
        )
    else:
        hint += " rpcworker refuses to start without any."
    return checks.Warning(
        f"No RPC methods are registered. Looked in: {'; '.join(discovery.where())}.",
        hint=hint,
        id="channels_rpc.W001",
    )


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
