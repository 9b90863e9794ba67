"""Settings of the test project run by daphne and rpcworker processes in integration tests.

The reference project's settings, plus test endpoints and knobs the tests rely on: short
timeouts, a narrow queue with a small capacity, a generous in-flight limit.
"""

from __future__ import annotations

import json
import os

from workers.settings import *  # noqa: F403
from workers.settings import CHANNEL_LAYERS, REDIS_URL

ASGI_APPLICATION = "tests.project.asgi.application"

if REDIS_URL:
    # First match wins, so the narrow queue's pattern comes before "rpc.*".
    CHANNEL_LAYERS["default"]["CONFIG"]["channel_capacity"] = {
        "rpc.narrow": 20,
        "rpc.*": 5000,
        "specific.*": 20000,
    }

CHANNELS_RPC = {
    "DEFAULT_TIMEOUT": 5.0,
    "REPLY_GRACE": 0.5,
    "MAX_IN_FLIGHT": 200,
    "WORKER_CONCURRENCY": 32,
    "SHUTDOWN_GRACE": 5.0,
    # Tests drive thousands of calls over a few sockets; the abuse guard has its own tests.
    "RATE_LIMIT": 0,
    # A test may change any of these for the processes it starts.
    **json.loads(os.environ.get("CHANNELS_RPC_OVERRIDES", "{}")),
}
if "CHANNEL_LAYER_OVERRIDES" in os.environ and REDIS_URL:
    CHANNEL_LAYERS["default"]["CONFIG"].update(json.loads(os.environ["CHANNEL_LAYER_OVERRIDES"]))

LOGGING["loggers"]["django.channels"] = {"handlers": ["stderr"], "level": "INFO"}  # noqa: F405
