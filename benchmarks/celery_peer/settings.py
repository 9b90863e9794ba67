"""The Celery peer's Django settings: Channels only (no channel layer, no database)."""

from __future__ import annotations

SECRET_KEY = "benchmarks"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = ["channels"]
DATABASES: dict[str, dict[str, str]] = {}
ROOT_URLCONF = "benchmarks.app.urls"
ASGI_APPLICATION = "benchmarks.celery_peer.asgi.application"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    # The readiness line the bench waits for: daphne's "Listening on TCP address".
    "loggers": {"daphne.server": {"level": "INFO"}},
}
