"""The reference project's settings with its channel layer on Redis Sentinel (docs/guides/failover.md).

    DJANGO_SETTINGS_MODULE=workers.sentinel_settings
    REDIS_SENTINELS=sentinel-1:26379,sentinel-2:26379,sentinel-3:26379
    REDIS_SENTINEL_MASTER=mymaster

docker-compose.sentinel.yml mounts this file into the image as ``workers/sentinel_settings.py``.
Everything else is ``workers.settings``, read from the environment as usual.
"""

from __future__ import annotations

import os

from workers.settings import *  # noqa: F403
from workers.settings import CHANNEL_LAYERS

# The layer's other settings as workers.settings makes them for a REDIS_URL (the same defaults
# without one), with the Sentinels instead of the URL: each new connection asks them where the
# primary is now.
_config = CHANNEL_LAYERS["default"].get("CONFIG") or {
    "prefix": os.environ.get("CHANNELS_PREFIX", "asgi"),
    "channel_capacity": {"rpc.*": 5000, "specific.*": 10000},
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_rpc.layers.RedisChannelLayer",
        "CONFIG": {
            **_config,
            "hosts": [
                {
                    "sentinels": os.environ["REDIS_SENTINELS"].split(","),
                    "master_name": os.environ.get("REDIS_SENTINEL_MASTER", "mymaster"),
                }
            ],
        },
    }
}
