"""Benchmark settings: this package on Redis (REDIS_URL), logs quiet, limits out of the way."""

from __future__ import annotations

import os

SECRET_KEY = "benchmarks"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = ["channels", "channels_rpc"]
DATABASES: dict[str, dict[str, str]] = {}
ROOT_URLCONF = "benchmarks.app.urls"
ASGI_APPLICATION = "benchmarks.app.asgi.application"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_rpc.layers.RedisChannelLayer",
        "CONFIG": {
            "hosts": [os.environ["REDIS_URL"]],
            "prefix": os.environ.get("CHANNELS_PREFIX", "bench"),
            "channel_capacity": {"rpc.*": 100_000, "specific.*": 100_000},
        },
    }
}
CHANNELS_RPC = {
    "DEFAULT_TIMEOUT": 60.0,
    "MAX_IN_FLIGHT": 1000,
    "RATE_LIMIT": 0,
    "WORKER_CONCURRENCY": int(os.environ.get("RPC_WORKER_CONCURRENCY", "64")),
    "MAX_MESSAGE_SIZE": 1024 * 1024 - 1024,
    "MAX_STRING_LENGTH": 1024 * 1024,
    "METRICS": os.environ.get("RPC_METRICS", "1") == "1",
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    # The readiness lines the harness waits for: "rpcworker ready", "Listening on TCP address".
    "loggers": {"channels_rpc.worker": {"level": "INFO"}, "daphne.server": {"level": "INFO"}},
}
