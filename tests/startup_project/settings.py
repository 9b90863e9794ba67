"""Settings of the startup test project; each test picks its mistake with the environment.

STARTUP_APPS      comma-separated INSTALLED_APPS (default: channels, channels_rpc and shop)
STARTUP_LAYER     "ours" (channels_rpc.layers.RedisChannelLayer, the default with REDIS_URL),
                  "stock" (channels-redis), "pubsub" (its PubSub layer) or "memory" (the default
                  without REDIS_URL)
STARTUP_RPC       CHANNELS_RPC as JSON
"""

from __future__ import annotations

import json
import os
from typing import Any

SECRET_KEY = "startup-tests"
USE_TZ = True
INSTALLED_APPS = os.environ.get(
    "STARTUP_APPS", "channels,channels_rpc,tests.startup_project.shop"
).split(",")

_BACKENDS = {
    "ours": "channels_rpc.layers.RedisChannelLayer",
    "stock": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "memory": "channels.layers.InMemoryChannelLayer",
}
_REDIS_URL = os.environ.get("REDIS_URL", "")
_LAYER = os.environ.get("STARTUP_LAYER", "ours" if _REDIS_URL else "memory")
_CONFIG: dict[str, Any] = (
    {}
    if _LAYER == "memory"
    else {"hosts": [_REDIS_URL], "prefix": os.environ.get("CHANNELS_PREFIX", "asgi")}
)
CHANNEL_LAYERS = {"default": {"BACKEND": _BACKENDS[_LAYER], "CONFIG": _CONFIG}}
CHANNELS_RPC = json.loads(os.environ.get("STARTUP_RPC", "{}"))
