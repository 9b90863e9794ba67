"""Settings of the reference project: embedded by default, distributed when REDIS_URL is set.

REDIS_URL unset    in-memory channel layer; methods run inside the daphne process
REDIS_URL=redis:// channels_rpc's Redis layer; methods run in `rpcworker` processes
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import django
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent

# Without DATABASE_URL the project runs on one machine, on an SQLite file (`make demo`, the local
# cluster, the tests), and may use a development key. With DATABASE_URL it is deployed: the
# processes on every host sign and check sessions and tokens with one key, which must be secret.
DATABASE_URL = os.environ.get("DATABASE_URL", "")
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY and DATABASE_URL:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set. DATABASE_URL is, so this is a deployment, and every "
        "process of it needs the same secret key: set DJANGO_SECRET_KEY (for instance to the "
        "output of `python -c 'import secrets; print(secrets.token_urlsafe(50))'`)."
    )
SECRET_KEY = SECRET_KEY or "insecure-key-for-the-reference-project-only"
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


def database_from_url(url: str) -> dict[str, Any]:
    """``DATABASES["default"]`` for ``postgres://USER:PASSWORD@HOST:PORT/NAME?OPTION=VALUE``.

    Reserved characters in a part are percent-encoded; HOST may be a socket directory
    (``%2Frun%2Fpostgresql``); the query's options go to the driver (``sslmode=require``).
    The driver is psycopg, from the ``deploy`` extra.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        # Never the URL itself in the message: it may hold a password.
        raise ImproperlyConfigured(
            f"DATABASE_URL must start with postgres:// or postgresql://, not {parts.scheme!r}://"
            " (for SQLite, leave DATABASE_URL unset and set DJANGO_DB_PATH)."
        )
    try:
        port = parts.port
    except ValueError:
        raise ImproperlyConfigured("DATABASE_URL has an invalid port.") from None
    host = parts.netloc.rpartition("@")[2]
    if port is not None:
        host = host.rpartition(":")[0]
    name = unquote(parts.path.removeprefix("/"))
    if not name:
        raise ImproperlyConfigured("DATABASE_URL names no database (postgres://.../NAME).")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": unquote(host.removeprefix("[").removesuffix("]")),
        "PORT": "" if port is None else str(port),
        "OPTIONS": dict(parse_qsl(parts.query)),
    }


# How many PostgreSQL connections the processes hold (docs/guides/postgres.md has the figures).
# Django gives every thread that touches the ORM a connection of its own: an rpcworker runs sync
# methods in up to RPC_WORKER_CONCURRENCY threads (32), and permission checks and user lookups
# in one more; daphne runs websocket auth in one thread, and each HTTP request in its own.
#
# DATABASE_POOL_SIZE=N (default 8): Django's connection pool (Django >= 5.1 with psycopg 3 and
#   psycopg_pool: the `deploy` extra). A thread borrows a connection for one call and returns
#   it after, so a process holds at most N connections however many threads it runs, and
#   PostgreSQL sees at most (front-ends + workers) x N. A thread finding none free waits up
#   to 10 s, then its call fails.
# DATABASE_POOL_SIZE=0: a connection per call (CONN_MAX_AGE 0), opened by the call's first
#   query and closed when the call ends: at most one per busy thread, so up to
#   workers x (RPC_WORKER_CONCURRENCY + 1) + front-ends (+ their HTTP requests in flight), 133
#   for 4 workers at 32 and one front-end, over PostgreSQL's default max_connections (100); and
#   each new connection costs PostgreSQL a process (measured: 179 calls/s against 585 pooled).
#   Not a persistent connection per thread (CONN_MAX_AGE > 0): a worker's threads end after
#   10 s idle, and the connection of an ended thread stays open until Python's cyclic garbage
#   collector happens to free it, so the next burst's new threads open more (measured: 149
#   connections and 1,058 failed calls of 2,000 on a second burst, where 133 was the bound).
# Either way CONN_HEALTH_CHECKS: a connection PostgreSQL dropped (a restart, a failover) is
# replaced before a call uses it, instead of failing that call.
POOL_TIMEOUT = 10.0


def postgres_settings(url: str, pool_size: int) -> dict[str, Any]:
    """``DATABASES["default"]`` for DATABASE_URL, holding connections as said above."""
    database = database_from_url(url)
    # A pooled connection goes back to the pool after each call, an unpooled one is closed.
    database["CONN_MAX_AGE"] = 0
    database["CONN_HEALTH_CHECKS"] = True
    if pool_size < 0:
        raise ImproperlyConfigured("DATABASE_POOL_SIZE must be 0 (no pool) or more.")
    if not pool_size:
        return database
    if django.VERSION < (5, 1) or importlib.util.find_spec("psycopg_pool") is None:
        raise ImproperlyConfigured(
            f"DATABASE_POOL_SIZE={pool_size} needs Django >= 5.1 and psycopg_pool "
            '(pip install "channels-rpc[deploy]"); DATABASE_POOL_SIZE=0 opens a connection '
            "per call instead."
        )
    # min_size 1: a process that seldom needs the database (a front-end) keeps just one open.
    database["OPTIONS"]["pool"] = {"min_size": 1, "max_size": pool_size, "timeout": POOL_TIMEOUT}
    return database


def pool_size_from_env() -> int:
    value = os.environ.get("DATABASE_POOL_SIZE", "8")
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"DATABASE_POOL_SIZE must be a whole number, not {value!r}."
        ) from None


# Replicas on several hosts share PostgreSQL (DATABASE_URL); one machine may use an SQLite file.
DATABASES = {
    "default": postgres_settings(DATABASE_URL, pool_size_from_env())
    if DATABASE_URL
    else {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB_PATH", str(BASE_DIR.parent / ".demo.sqlite3")),
        # Worker threads and processes share the file; wait for locks instead of failing.
        "OPTIONS": {"timeout": 20},
    }
}

# Security defaults (see docs/guides/security.md): browsers must come from these exact origins; with
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
