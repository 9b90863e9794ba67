from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.app.settings")
django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from benchmarks.app.methods import BenchConsumer  # noqa: E402
from benchmarks.app.raw import RawEchoConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [path("rpc/", BenchConsumer.as_asgi()), path("raw/", RawEchoConsumer.as_asgi())]
        )
    }
)
