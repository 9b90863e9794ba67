"""channels-rpc 1.0.1 with the same methods, run from its own virtualenv (the baseline)."""

import asyncio
import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "upstream_settings")
django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels_rpc import AsyncJsonRpcWebsocketConsumer  # noqa: E402  (1.0.1, not this repo)
from django.urls import path  # noqa: E402


class BenchConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


@BenchConsumer.rpc_method()
async def ping():
    return "pong"


@BenchConsumer.rpc_method()
async def echo(value):
    return value


@BenchConsumer.rpc_method()
async def add(a: float, b: float) -> float:  # annotated as this package's: 1.0.1 checks nothing
    return a + b


@BenchConsumer.rpc_method()
async def sleep(ms):
    await asyncio.sleep(ms / 1000)
    return ms


@BenchConsumer.rpc_method()
def cpu(ms):
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass
    return ms


application = ProtocolTypeRouter({"websocket": URLRouter([path("rpc/", BenchConsumer.as_asgi())])})
