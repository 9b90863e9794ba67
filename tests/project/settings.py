"""Settings of the test project run by daphne and rpcworker processes in integration tests.

The reference project's settings, plus test endpoints and knobs the tests rely on: short
timeouts, a narrow queue with a small capacity, a generous in-flight limit.
"""

from __future__ import annotations

import json
import os
import time

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
if os.environ.get("REDIS_SENTINELS") and REDIS_URL:
    # The layer on a Sentinel-monitored primary (tests/integration/reliability/test_sentinel.py):
    # "host:port,host:port,..." and the name they monitor it under. REDIS_URL stays the Redis
    # of the probes' counters (tests.project.counters): a record of which calls ran must not
    # sit in the Redis that fails over.
    CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [
        {
            "sentinels": os.environ["REDIS_SENTINELS"].split(","),
            "master_name": os.environ.get("REDIS_SENTINEL_MASTER", "mymaster"),
        }
    ]
if "CHANNEL_LAYER_OVERRIDES" in os.environ and REDIS_URL:
    CHANNEL_LAYERS["default"]["CONFIG"].update(json.loads(os.environ["CHANNEL_LAYER_OVERRIDES"]))

LOGGING["loggers"]["django.channels"] = {"handlers": ["stderr"], "level": "INFO"}  # noqa: F405

if "TEST_CLOCK_SKEW" in os.environ:
    # Simulates a host whose clock is off by this many seconds (issue 10, item 13): everything
    # in this process that reads the wall clock, the library included, reads it shifted. Only
    # what crosses processes on Redis' clock (the layer's clock()) may make calls work anyway.
    _skew = float(os.environ["TEST_CLOCK_SKEW"])
    _real_time = time.time

    def _skewed_time() -> float:
        return _real_time() + _skew

    time.time = _skewed_time
