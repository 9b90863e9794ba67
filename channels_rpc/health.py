"""Health checks for orchestrators (docker-compose, Kubernetes): front-ends and workers.

Front-end: mount :func:`health_view` (for example at ``/healthz/``); it answers 200 when the
channel layer answers, 503 otherwise. Worker: ``manage.py rpcworker --health-file PATH`` writes
PATH every few seconds while its event loop runs and Redis answers: ``ok``, or ``unhealthy:
<why>`` when the worker cannot run calls although Redis answers (every thread for sync methods
stuck in a method that never returned). ``manage.py rpchealth --file PATH`` exits 0 if PATH was
written recently and says ok (``--url URL`` checks a front-end the same way).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from channels.layers import get_channel_layer
from django.http import HttpRequest, JsonResponse

from channels_rpc._compat import timeout
from channels_rpc._layer import ChannelLayer, redis_hosts
from channels_rpc.config import get_config

__all__ = ["HEARTBEAT_SECONDS", "UNHEALTHY", "beat", "check_layer", "health_view"]

logger = logging.getLogger("channels_rpc")

#: How often a worker writes its health file.
HEARTBEAT_SECONDS = 5.0
#: How a health file that reports a problem starts.
UNHEALTHY = "unhealthy"


async def check_layer(layer: ChannelLayer, within: float = 1.0) -> None:
    """Raise if the channel layer does not answer within ``within`` seconds."""
    hosts = redis_hosts(layer)
    if hosts is None:  # not on a ring of Redis hosts: nothing to ask
        return
    async with timeout(within):
        for index in range(hosts.ring_size):  # one PING per Redis host
            await hosts.connection(index).ping()


async def health_view(request: HttpRequest) -> JsonResponse:
    """200 ``{"status": "ok"}`` if the channel layer answers, else 503 with the reason."""
    layer = get_channel_layer(get_config().channel_layer)
    try:
        await check_layer(layer)
    except Exception as exc:
        return JsonResponse({"status": "unavailable", "error": repr(exc)}, status=503)
    return JsonResponse({"status": "ok"})


async def beat(
    layer: ChannelLayer, path: Path, problem: Callable[[], str | None] | None = None
) -> None:
    """Write ``path`` every few seconds while the layer answers (runs until cancelled).

    ``problem`` names what keeps the worker from serving although the layer answers; the file
    then says ``unhealthy: <problem>``, and the worker logs it, at every beat.
    """
    while True:
        try:
            await check_layer(layer)
        except Exception as exc:
            logger.warning("health: the channel layer does not answer (%r)", exc)
        else:
            found = problem() if problem is not None else None
            if found is not None:
                logger.warning("health: %s", found)
            status = "ok" if found is None else f"{UNHEALTHY}: {found}"
            await asyncio.to_thread(path.write_text, status + "\n")
        await asyncio.sleep(HEARTBEAT_SECONDS)
