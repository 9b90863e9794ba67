from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.project.settings")
django_asgi_app = get_asgi_application()

from tests.project import otel  # noqa: E402

otel.configure()  # spans to OTEL_SPANS_DIR, when set (tests/integration/test_tracing.py)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from channels_rpc import RpcWorkerConsumer  # noqa: E402
from tests.project import abuse, faults, frontline, hardening, promises  # noqa: E402, F401  (probe methods)
from tests.project.consumers import ProbeConsumer, SpecConsumer  # noqa: E402
from tests.project.frontline import MiddlewareConsumer  # noqa: E402
from workers.consumers import RpcConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(
            URLRouter(
                [
                    path("ws/rpc/", RpcConsumer.as_asgi()),
                    path("ws/test/", ProbeConsumer.as_asgi()),
                    path("ws/spec/", SpecConsumer.as_asgi()),
                    path("ws/middleware/", MiddlewareConsumer.as_asgi()),
                ]
            )
        ),
        # For the tests that run Channels' `runworker` instead of `rpcworker`.
        "channel": ChannelNameRouter(
            {"rpc.default": RpcWorkerConsumer.as_asgi(), "rpc.narrow": RpcWorkerConsumer.as_asgi()}
        ),
    }
)
