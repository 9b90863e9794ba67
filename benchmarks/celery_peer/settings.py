"""The Celery peer's Django settings: Channels only (no channel layer, no database)."""

from __future__ import annotations

from benchmarks.upstream_app.base_settings import *  # noqa: F403

USE_TZ = True
ROOT_URLCONF = "benchmarks.app.urls"
ASGI_APPLICATION = "benchmarks.celery_peer.asgi.application"
