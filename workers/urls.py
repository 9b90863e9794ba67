from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from channels_rpc.health import health_view
from channels_rpc.views import metrics


def index(request: HttpRequest) -> HttpResponse:
    """The demo page: calls, server-pushed notifications, a long call with progress and cancel."""
    return render(request, "workers/demo.html")


# /metrics: Prometheus' scrape of this front-end (docs/guides/metrics.md); keep it off the public
# network (deploy/nginx.conf does not route it).
urlpatterns = [path("", index), path("healthz/", health_view), path("metrics", metrics)]
