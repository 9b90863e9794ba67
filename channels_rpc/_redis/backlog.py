"""How far behind a queue is: its depth and the age of its oldest request, read from Redis
(Prometheus' gauges at scrape time, ``rpcstatus``)."""

from __future__ import annotations

from typing import Any

from channels_rpc._layer import redis_hosts, work_queue

__all__ = ["backlog", "on_redis"]


def on_redis(layer: Any) -> bool:
    """Whether ``layer`` is this package's Redis layer: work queues on Redis hosts (a stock
    channels-redis layer has hosts, but no queues, and no clock to age them)."""
    return work_queue(layer) is not None and redis_hosts(layer) is not None


async def backlog(layer: Any, queue: str) -> tuple[int, float]:
    """``queue``'s depth and the seconds its oldest request has waited (0 when empty).

    A queue is a sorted set scored by Redis' time at enqueue, and the layer's clock is Redis'.
    """
    connection = layer.connection(layer.consistent_hash(queue))
    key = layer.prefix + queue
    async with connection.pipeline(transaction=False) as pipe:
        pipe.zcard(key)
        pipe.zrange(key, 0, 0, withscores=True)
        depth, oldest = await pipe.execute()
    return int(depth), (max(0.0, layer.clock() - oldest[0][1]) if oldest else 0.0)
