from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from channels_rpc.health import health_view


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        "channels-rpc reference project: JSON-RPC 2.0 over WebSocket at /ws/rpc/\n",
        content_type="text/plain",
    )


urlpatterns = [path("", index), path("healthz/", health_view)]
