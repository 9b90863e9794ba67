"""Helpers shared by the in-process tests: connect, build requests, read answers."""

from __future__ import annotations

import itertools
import json
from typing import Any

from channels.testing import WebsocketCommunicator
from django.test import override_settings

from channels_rpc import AsyncJsonRpcWebsocketConsumer

#: Seconds to wait for an answer that should come promptly.
WAIT = 3.0
#: CHANNELS_RPC of tests/settings.py; override_settings replaces the whole dict.
BASE_SETTINGS: dict[str, Any] = {"DEFAULT_TIMEOUT": 5.0, "REPLY_GRACE": 0.5}


def rpc_settings(**overrides: Any) -> override_settings:
    """``CHANNELS_RPC`` of the test settings with ``overrides`` (a context manager)."""
    return override_settings(CHANNELS_RPC={**BASE_SETTINGS, **overrides})


async def connect(
    consumer_cls: type[AsyncJsonRpcWebsocketConsumer], path: str = "/ws/", **scope: Any
) -> WebsocketCommunicator:
    """An accepted connection; ``scope`` entries (e.g. ``user``) are set before connecting."""
    communicator = WebsocketCommunicator(consumer_cls.as_asgi(), path)
    communicator.scope.update(scope)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


def request(method: str, params: Any = None, rpc_id: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rpc_id}
    if params is not None:
        message["params"] = params
    return message


def notification(method: str, params: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


async def send(communicator: WebsocketCommunicator, message: Any) -> None:
    await communicator.send_to(text_data=json.dumps(message))


async def receive(communicator: WebsocketCommunicator, timeout: float = WAIT) -> Any:
    return json.loads(await receive_text(communicator, timeout))


async def receive_text(communicator: WebsocketCommunicator, timeout: float = WAIT) -> str:
    text: str = await communicator.receive_from(timeout)
    return text


async def call(
    communicator: WebsocketCommunicator, method: str, params: Any = None, rpc_id: Any = 1
) -> Any:
    """Send one request and return the next frame (its answer when nothing else is pending)."""
    await send(communicator, request(method, params, rpc_id))
    return await receive(communicator)


async def silent(communicator: WebsocketCommunicator, window: float | None = None) -> bool:
    """Whether the consumer sends nothing more for the frames it was sent so far.

    Not a silence window, which a late frame outruns on a busy machine: a probe goes after
    everything sent so far, a call of a method nobody serves (``rpc.*`` names belong to the
    protocol) with an id of its own. The consumer takes frames in order and answers the probe
    itself, at once, so whatever it was going to send for the earlier ones comes first: the
    next frame must be the probe's answer. Work that ends elsewhere (a method still running,
    a thread) is the test's to wait for, on an event, before asking.

    ``window``: a silence window of that many seconds instead, for a consumer that cannot
    answer a probe (its reading paused).
    """
    if window is not None:
        quiet: bool = await communicator.receive_nothing(window)
        return quiet
    probe_id = f"silent-probe-{next(_probes)}"
    await send(communicator, request(_PROBE_METHOD, rpc_id=probe_id))
    first = await receive(communicator)
    return isinstance(first, dict) and first.get("id") == probe_id and "error" in first


_PROBE_METHOD = "rpc.silent-probe"
_probes = itertools.count()


def error(rpc_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    """An expected error response."""
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": "2.0", "id": rpc_id, "error": body}


def result(rpc_id: Any, value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "result": value}
