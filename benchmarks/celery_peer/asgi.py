"""The Celery peer's ASGI application, for daphne: its consumer at /rpc/."""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.celery_peer.settings")
django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from benchmarks.celery_peer.consumer import CeleryRpcConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {"websocket": URLRouter([path("rpc/", CeleryRpcConsumer.as_asgi())])}
)
