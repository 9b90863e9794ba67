"""What daphne serves: the shop's consumer at /ws/."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.startup_project.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from tests.startup_project import extra  # noqa: E402, F401  (only daphne imports it)
from tests.startup_project.shop.consumers import ShopConsumer  # noqa: E402

application = ProtocolTypeRouter({"websocket": URLRouter([path("ws/", ShopConsumer.as_asgi())])})
