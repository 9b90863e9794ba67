from __future__ import annotations

import importlib
import logging
from typing import Any

import pytest
from django.dispatch import Signal

import channels_rpc
from channels_rpc import signals
from channels_rpc.context import RpcContext

pytestmark = pytest.mark.anyio

UPSTREAM_ALL = [
    "AsyncJsonRpcWebsocketConsumer",
    "JsonRpcError",
    "JsonRpcErrorCode",
    "LoggingMiddleware",
    "RequestTooLargeError",
    "RpcContext",
    "RpcMiddleware",
    "check_size_limits",
    "permission_required",
]


def test_all_is_sorted_and_importable() -> None:
    assert channels_rpc.__all__ == sorted(channels_rpc.__all__)
    assert len(set(channels_rpc.__all__)) == len(channels_rpc.__all__)
    for name in channels_rpc.__all__:
        assert getattr(channels_rpc, name) is not None
    namespace: dict[str, Any] = {}
    exec("from channels_rpc import *", namespace)
    assert set(channels_rpc.__all__) <= set(namespace)


def test_upstream_names_are_still_exported() -> None:
    assert set(UPSTREAM_ALL) <= set(channels_rpc.__all__)


def test_version() -> None:
    assert isinstance(channels_rpc.__version__, str)
    assert channels_rpc.__version__.startswith("2.")


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("channels_rpc.config", "get_config"),
        ("channels_rpc.config", "reset_config"),
        ("channels_rpc.decorators", "permission_required"),
        ("channels_rpc.exceptions", "JsonRpcError"),
        ("channels_rpc.exceptions", "JsonRpcErrorCode"),
        ("channels_rpc.exceptions", "RPC_ERRORS"),
        ("channels_rpc.exceptions", "generate_error_response"),
        ("channels_rpc.limits", "check_size_limits"),
        ("channels_rpc.middleware", "LoggingMiddleware"),
        ("channels_rpc.signals", "rpc_method_started"),
        ("channels_rpc.signals", "rpc_method_completed"),
        ("channels_rpc.signals", "rpc_method_failed"),
        ("channels_rpc.signals", "rpc_client_connected"),
        ("channels_rpc.signals", "rpc_client_disconnected"),
        ("channels_rpc.context", "RpcContext"),
    ],
)
def test_upstream_module_paths(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name)


def test_top_level_names_are_the_module_ones() -> None:
    from channels_rpc.decorators import permission_required
    from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode
    from channels_rpc.middleware import LoggingMiddleware

    assert channels_rpc.JsonRpcError is JsonRpcError
    assert channels_rpc.JsonRpcErrorCode is JsonRpcErrorCode
    assert channels_rpc.LoggingMiddleware is LoggingMiddleware
    assert channels_rpc.permission_required is permission_required
    assert channels_rpc.RpcContext is RpcContext


@pytest.mark.parametrize(
    "name",
    [
        "rpc_method_started",
        "rpc_method_completed",
        "rpc_method_failed",
        "rpc_client_connected",
        "rpc_client_disconnected",
    ],
)
def test_signals_are_django_signals(name: str) -> None:
    assert isinstance(getattr(signals, name), Signal)


def test_signal_send_logs_receivers_that_raise(caplog: pytest.LogCaptureFixture) -> None:
    received: list[dict[str, Any]] = []

    def good(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs)

    def bad(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    signals.rpc_method_started.connect(good, weak=False)
    signals.rpc_method_started.connect(bad, weak=False)
    try:
        with caplog.at_level(logging.ERROR, logger="channels_rpc"):
            signals.send(signals.rpc_method_started, sender=object, method_name="m")
    finally:
        signals.rpc_method_started.disconnect(good)
        signals.rpc_method_started.disconnect(bad)
    assert received == [{"signal": signals.rpc_method_started, "method_name": "m"}]
    assert "raised" in caplog.text


# --------------------------------------------------------------------------------------------
# RpcContext


class FakeConsumer:
    def __init__(self) -> None:
        self.scope: dict[str, Any] = {"type": "websocket", "user": "alice"}
        self.sent: list[tuple[str, Any]] = []

    async def notify_channel(self, method: str, params: Any = None) -> None:
        self.sent.append((method, params))


def test_context_positional_order() -> None:
    consumer = FakeConsumer()
    context = RpcContext(consumer, "add", 7, False)
    assert context.consumer is consumer
    assert context.method_name == "add"
    assert context.rpc_id == 7
    assert context.is_notification is False
    assert repr(context) == "RpcContext(method_name='add', rpc_id=7, is_notification=False)"


def test_context_scope_falls_back_to_the_consumer() -> None:
    consumer = FakeConsumer()
    assert RpcContext(consumer, "m", None, True).scope is consumer.scope
    assert RpcContext(object(), "m", None, True).scope == {}
    explicit = {"path": "/ws/"}
    assert RpcContext(consumer, "m", None, True, scope=explicit).scope is explicit


async def test_context_notify_goes_to_the_caller() -> None:
    consumer = FakeConsumer()
    await RpcContext(consumer, "m", 1, False).notify("progress", {"pct": 50})
    assert consumer.sent == [("progress", {"pct": 50})]


async def test_context_get_user() -> None:
    consumer = FakeConsumer()
    assert await RpcContext(consumer, "m", 1, False).get_user() == "alice"

    async def loader() -> str:
        return "bob"

    assert await RpcContext(consumer, "m", 1, False, user_loader=loader).get_user() == "bob"


def test_context_has_no_instance_dict() -> None:
    context = RpcContext(FakeConsumer(), "m", 1, False)
    with pytest.raises(AttributeError):
        context.extra = 1  # type: ignore[attr-defined]
