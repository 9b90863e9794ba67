"""Settings of the reference project: embedded by default, distributed when REDIS_URL is set.

REDIS_URL unset    in-memory channel layer; methods run inside the daphne process
REDIS_URL=redis:// channels_rpc's Redis layer; methods run in `rpcworker` processes
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-key-for-the-reference-project-only")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "channels",
    "channels_rpc",
    "workers",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "workers.urls"
ASGI_APPLICATION = "workers.asgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# The demo page at / (workers/templates/workers/demo.html) and the browser client it imports;
# workers.asgi serves /static/ itself, so daphne alone is enough, without DEBUG.
TEMPLATES = [
    {"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [], "APP_DIRS": True}
]
STATIC_URL = "/static/"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB_PATH", str(BASE_DIR.parent / ".demo.sqlite3")),
        # Worker threads and processes share the file; wait for locks instead of failing.
        "OPTIONS": {"timeout": 20},
    }
}

# Security defaults (see README "Security"): browsers must come from these exact origins; with
# RPC_REQUIRE_AUTH=1 a connection needs a session or a bearer token before it is accepted.
RPC_ALLOWED_ORIGINS = os.environ.get(
    "RPC_ALLOWED_ORIGINS", "http://127.0.0.1:8000,http://localhost:8000"
).split(",")
# The demo page connects from the front-end's own origin, whatever port it listens on.
RPC_ALLOW_SAME_ORIGIN = os.environ.get("RPC_ALLOW_SAME_ORIGIN", "1") == "1"
RPC_REQUIRE_AUTH = os.environ.get("RPC_REQUIRE_AUTH", "") == "1"
RPC_TOKEN_TTL = float(os.environ.get("RPC_TOKEN_TTL", "3600"))

REDIS_URL = os.environ.get("REDIS_URL", "")
CHANNEL_LAYERS: dict[str, Any]
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_rpc.layers.RedisChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": os.environ.get("CHANNELS_PREFIX", "asgi"),
                # Queues hold requests waiting for a worker; "specific.*" is each daphne
                # process's one reply key, shared by all of its connections.
                "channel_capacity": {"rpc.*": 5000, "specific.*": 10000},
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CHANNELS_RPC = {
    "DEFAULT_TIMEOUT": float(os.environ.get("RPC_DEFAULT_TIMEOUT", "30")),
    "WORKER_CONCURRENCY": int(os.environ.get("RPC_WORKER_CONCURRENCY", "32")),
    "MAX_IN_FLIGHT": int(os.environ.get("RPC_MAX_IN_FLIGHT", "64")),
}

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "channels_rpc": {
            "handlers": ["stderr"],
            "level": os.environ.get("RPC_LOG_LEVEL", "INFO"),
            "propagate": False,
        }
    },
}
