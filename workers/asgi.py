"""ASGI entry point: WebSocket RPC at /ws/rpc/, and the RPC queue for `runworker`.

The methods are in workers/rpc.py, which every process imports on startup (an installed app's
`rpc` module): this module needs only the consumer class.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workers.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from channels_rpc import RpcWorkerConsumer  # noqa: E402
from channels_rpc.security import StrictOriginValidator  # noqa: E402
from workers.auth import TokenAuthMiddleware  # noqa: E402
from workers.consumers import RpcConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Serves /static/ (the demo page's client.js) without DEBUG, so daphne alone suffices.
        "http": ASGIStaticFilesHandler(django_asgi_app),
        "websocket": StrictOriginValidator(
            AuthMiddlewareStack(
                TokenAuthMiddleware(URLRouter([path("ws/rpc/", RpcConsumer.as_asgi())]))
            ),
            settings.RPC_ALLOWED_ORIGINS,
            allow_same_origin=settings.RPC_ALLOW_SAME_ORIGIN,
        ),
        # Only for `manage.py runworker rpc.default`; `rpcworker` does not need it.
        "channel": ChannelNameRouter({"rpc.default": RpcWorkerConsumer.as_asgi()}),
    }
)
