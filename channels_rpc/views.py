"""Django views of channels-rpc: the front-end's Prometheus metrics (docs/guides/metrics.md).

Mount it in the project's URLconf, where only the monitoring network reaches it::

    from channels_rpc.views import metrics
    urlpatterns = [path("metrics", metrics)]
"""

from __future__ import annotations

import logging

from channels.layers import get_channel_layer
from django.http import HttpRequest, HttpResponse

from channels_rpc import registry
from channels_rpc.config import get_config
from channels_rpc.metrics import CONTENT_TYPE, read_queues, render

__all__ = ["metrics"]

logger = logging.getLogger("channels_rpc")


async def metrics(request: HttpRequest) -> HttpResponse:
    """This process's metrics, the queues' depth and oldest age read from the layer now."""
    config = get_config()
    layer = get_channel_layer(config.channel_layer)
    try:
        await read_queues(layer, registry.known_queues(config.default_queue))
    except Exception as exc:  # the rest of the metrics are still worth serving
        logger.warning("could not read the queues' depth for the metrics: %r", exc)
    return HttpResponse(render(), content_type=CONTENT_TYPE)
