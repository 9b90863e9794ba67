"""Settings: the ``CHANNELS_RPC`` dict, read once, checked, and re-read when tests change it.

    CHANNELS_RPC = {
        # size limits (channels-rpc 1.0.1 keys; MAX_BATCH_SIZE is new)
        "MAX_MESSAGE_SIZE": 512 * 1024,   # bytes of UTF-8; below daphne's 1 MiB frame cap
        "MAX_ARRAY_LENGTH": 10_000,
        "MAX_STRING_LENGTH": 1024 * 1024,
        "MAX_NESTING_DEPTH": 20,
        "MAX_METHOD_NAME_LENGTH": 256,
        "MAX_BATCH_SIZE": 100,
        # logging and error detail (channels-rpc 1.0.1 keys)
        "LOG_RPC_PARAMS": False,          # log params of each call at DEBUG
        "SANITIZE_ERRORS": True,          # False: error responses carry the exception type and text
        # dispatch
        "EXECUTION": "auto",              # "auto", "inline" or "workers" (see below)
        "DEFAULT_QUEUE": "rpc.default",
        "DEFAULT_TIMEOUT": 300.0,         # seconds; per-method timeout= overrides; 0: no limit
        "MAX_IN_FLIGHT": 64,              # pending calls per connection, then SERVER_BUSY;
                                          # 0: no limit
        "RATE_LIMIT": 200,                # requests a second per connection (bursts of twice
                                          # that); above it the socket is closed with 4008; 0: off
        "LAYER_TIMEOUT": 2.0,             # seconds to wait for the channel layer before answering
                                          # SERVER_BUSY (then fail fast for a second)
        "REPLY_GRACE": 1.0,               # seconds the front-end waits past a timeout for a reply
        "CHANNEL_LAYER": "default",       # alias in CHANNEL_LAYERS
        "DISCOVERY": True,                # answer rpc.discover with an OpenRPC document
        "METHOD_MODULES": [],             # dotted modules that register methods, imported
                                          # at startup after each installed app's `rpc`
        # what one connection may hold (see docs/reference/settings.md)
        "MAX_RESPONSE_SIZE": 1024 * 1024, # bytes of one frame to the client (an answer, a
                                          # batch, a push); at most the server's frame cap
                                          # (daphne: 1 MiB); larger answers become -32014
        "MAX_OUTBOUND_BYTES": 4 * 1024 * 1024,  # bytes written but not yet taken by a slow
                                          # client, past which its frames are not read (and
                                          # past this + MAX_IN_FLIGHT x MAX_RESPONSE_SIZE, it
                                          # is dropped)
        "MAX_INBOUND_BYTES": 2 * 1024 * 1024,   # bytes received but not yet dispatched,
                                          # past which reading pauses (or the socket closes)
        "MAX_GROUPS": 100,                # groups one connection may be in
        # sessions (docs/reference/sessions.md; the Redis layer of this package)
        "SESSION_WINDOW": 30.0,           # seconds a session outlives its socket
        "SESSION_MAX_FRAMES": 1000,       # frames kept for a detached session, then it ends
        "SESSION_MAX_BYTES": 1024 * 1024, # bytes kept for a detached session, then it ends
        # workers
        "WORKER_CONCURRENCY": 32,         # calls one worker process runs at once
        "WORKER_POOL": "threads",         # where rpcworker runs sync methods: "threads" or
                                          # "processes" (forked children;
                                          # docs/guides/worker-pools.md)
        "WORKER_PROCESSES": None,         # children of a "processes" pool; None: one per CPU
        "SHUTDOWN_GRACE": 10.0,           # seconds a stopping worker gives in-flight calls
    }

``EXECUTION``: "inline" runs the worker loop inside the front-end process; "workers" leaves the
queues to ``manage.py rpcworker`` processes; "auto" (the default) is "inline" with the in-memory
channel layer, which cannot cross processes, and "workers" with any other layer.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields
from typing import Any, Final

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from channels_rpc.protocol import RpcLimits
from channels_rpc.registry import valid_queue_name

__all__ = ["RpcConfig", "RpcLimits", "get_config", "reset_config"]

SETTING: Final = "CHANNELS_RPC"
_EXECUTION_MODES: Final = ("auto", "inline", "workers")
WORKER_POOLS: Final = ("threads", "processes")

logger = logging.getLogger("channels_rpc")


@dataclass(frozen=True, slots=True)
class RpcConfig:
    limits: RpcLimits = field(default_factory=RpcLimits)
    log_rpc_params: bool = False
    sanitize_errors: bool = True
    execution: str = "auto"
    default_queue: str = "rpc.default"
    default_timeout: float = 300.0
    max_in_flight: int = 64
    rate_limit: float = 200.0
    layer_timeout: float = 2.0
    reply_grace: float = 1.0
    channel_layer: str = "default"
    discovery: bool = True
    metrics: bool = True  # count calls for Prometheus (channels_rpc.metrics)
    tracing: bool = True  # OpenTelemetry spans, when its API is installed (channels_rpc.tracing)
    method_modules: tuple[str, ...] = ()
    max_response_size: int = 1024 * 1024
    max_outbound_bytes: int = 4 * 1024 * 1024
    max_inbound_bytes: int = 2 * 1024 * 1024
    max_groups: int = 100
    session_window: float = 30.0
    session_max_frames: int = 1000
    session_max_bytes: int = 1024 * 1024
    worker_concurrency: int = 32
    worker_pool: str = "threads"
    worker_processes: int | None = None
    shutdown_grace: float = 10.0

    @classmethod
    def from_settings(cls) -> RpcConfig:
        raw = getattr(settings, SETTING, None) or {}
        if not isinstance(raw, dict):
            raise ImproperlyConfigured(f"{SETTING} must be a dict, got {type(raw).__name__}.")
        return _build(raw)

    def timeout_for(self, method_timeout: float | None) -> float | None:
        """The effective timeout in seconds; None when there is no limit."""
        timeout = self.default_timeout if method_timeout is None else method_timeout
        return timeout if timeout > 0 else None


_LIMIT_KEYS: Final = {f.name.upper(): f.name for f in fields(RpcLimits)}
_CONFIG_KEYS: Final = {f.name.upper(): f.name for f in fields(RpcConfig) if f.name != "limits"}


def _build(raw: dict[str, Any]) -> RpcConfig:
    unknown = sorted(set(raw) - set(_LIMIT_KEYS) - set(_CONFIG_KEYS))
    if unknown:
        known = ", ".join(sorted({*_LIMIT_KEYS, *_CONFIG_KEYS}))
        raise ImproperlyConfigured(f"Unknown {SETTING} keys {unknown}; known keys: {known}.")
    limits = RpcLimits(
        **{name: _positive_int(key, raw[key]) for key, name in _LIMIT_KEYS.items() if key in raw}
    )
    values: dict[str, Any] = {}
    for key, name in _CONFIG_KEYS.items():
        if key in raw:
            values[name] = _CHECKS[name](key, raw[key])
    config = RpcConfig(limits=limits, **values)
    if config.max_inbound_bytes < limits.max_message_size:
        raise ImproperlyConfigured(
            f"{SETTING}['MAX_INBOUND_BYTES'] ({config.max_inbound_bytes}) must be at least "
            f"MAX_MESSAGE_SIZE ({limits.max_message_size}): one frame must fit."
        )
    return config


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ImproperlyConfigured(f"{SETTING}[{key!r}] must be a positive integer, got {value!r}.")
    return value


def _limit(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ImproperlyConfigured(
            f"{SETTING}[{key!r}] must be a positive integer, or 0 for no limit, got {value!r}."
        )
    return value


def _seconds(key: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ImproperlyConfigured(
            f"{SETTING}[{key!r}] must be a finite number >= 0, got {value!r}."
        )
    return float(value)


def _positive_seconds(key: str, value: Any) -> float:
    if _seconds(key, value) == 0:
        raise ImproperlyConfigured(f"{SETTING}[{key!r}] must be more than 0 seconds.")
    return float(value)


def _queue(key: str, value: Any) -> str:
    if not valid_queue_name(value):
        raise ImproperlyConfigured(
            f"{SETTING}[{key!r}] must be a channel name of 1-99 ASCII letters, digits, '-', '_' "
            f"or '.', got {value!r}."
        )
    return str(value)


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"{SETTING}[{key!r}] must be True or False, got {value!r}.")
    return value


def _name(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ImproperlyConfigured(f"{SETTING}[{key!r}] must be a non-empty string, got {value!r}.")
    return value


def _modules(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(item, str) and item for item in value
    ):
        raise ImproperlyConfigured(
            f"{SETTING}[{key!r}] must be a list of dotted module paths, got {value!r}."
        )
    return tuple(value)


def _execution(key: str, value: Any) -> str:
    if value not in _EXECUTION_MODES:
        raise ImproperlyConfigured(
            f"{SETTING}[{key!r}] must be one of {_EXECUTION_MODES}, got {value!r}."
        )
    return str(value)


def _pool(key: str, value: Any) -> str:
    if value not in WORKER_POOLS:
        raise ImproperlyConfigured(
            f"{SETTING}[{key!r}] must be one of {WORKER_POOLS}, got {value!r}."
        )
    return str(value)


def _positive_int_or_none(key: str, value: Any) -> int | None:
    return None if value is None else _positive_int(key, value)


_CHECKS: Final = {
    "log_rpc_params": _flag,
    "sanitize_errors": _flag,
    "execution": _execution,
    "default_queue": _queue,
    "default_timeout": _seconds,
    "max_in_flight": _limit,
    "rate_limit": _seconds,
    "layer_timeout": _positive_seconds,
    "reply_grace": _seconds,
    "channel_layer": _name,
    "discovery": _flag,
    "metrics": _flag,
    "tracing": _flag,
    "method_modules": _modules,
    "max_response_size": _positive_int,
    "max_outbound_bytes": _positive_int,
    "max_inbound_bytes": _positive_int,
    "max_groups": _positive_int,
    "session_window": _positive_seconds,
    "session_max_frames": _positive_int,
    "session_max_bytes": _positive_int,
    "worker_concurrency": _positive_int,
    "worker_pool": _pool,
    "worker_processes": _positive_int_or_none,
    "shutdown_grace": _seconds,
}

_cached: RpcConfig | None = None
_reported: str | None = None


def get_config() -> RpcConfig:
    """The current configuration, read from settings on first use.

    An invalid setting raises ``ImproperlyConfigured`` here, and is logged once: without
    ``"channels_rpc"`` in INSTALLED_APPS nothing checks it at startup, and the first to read it
    is a connection, whose handshake then fails (HTTP 500) with the error lost in a traceback.
    """
    global _cached, _reported
    if _cached is None:
        try:
            _cached = RpcConfig.from_settings()
        except ImproperlyConfigured as exc:
            if str(exc) != _reported:
                _reported = str(exc)
                logger.error(
                    "%s is invalid, so channels-rpc refuses every connection: %s", SETTING, exc
                )
            raise
    return _cached


def reset_config() -> None:
    """Forget the cached configuration (done automatically when ``CHANNELS_RPC`` changes)."""
    global _cached
    _cached = None


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING:
        reset_config()


setting_changed.connect(_on_setting_changed, dispatch_uid="channels_rpc.config")
