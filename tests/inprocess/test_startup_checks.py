"""Misconfigurations caught by ``manage.py check`` and by the front-end's first connection."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer as StockRedisChannelLayer
from django.test import override_settings

from channels_rpc import checks
from channels_rpc.layers import LayerFull, RedisChannelLayer
from channels_rpc.management.commands.rpcworker import _where
from tests.inprocess.helpers import rpc_settings

pytestmark = pytest.mark.anyio

STOCK = "channels_redis.core.RedisChannelLayer"
PUBSUB = "channels_redis.pubsub.RedisPubSubChannelLayer"
OURS = "channels_rpc.layers.RedisChannelLayer"
MEMORY = "channels.layers.InMemoryChannelLayer"
#: Never reached: no test here opens a connection to Redis.
NOWHERE = {"hosts": ["unix:///nonexistent/redis.sock"]}


def layers(backend: str, alias: str = "default") -> override_settings:
    return override_settings(CHANNEL_LAYERS={alias: {"BACKEND": backend, "CONFIG": NOWHERE}})


def ids(found: list[Any]) -> list[str]:
    return [message.id for message in found]


@pytest.mark.parametrize(
    ("backend", "execution", "expected"),
    [
        (OURS, "auto", []),
        (OURS, "workers", []),
        (STOCK, "auto", ["channels_rpc.E003"]),
        (STOCK, "workers", ["channels_rpc.E003"]),
        (PUBSUB, "auto", ["channels_rpc.E003"]),
        (STOCK, "inline", []),  # methods run in the front-end: no queue is shared
        (MEMORY, "auto", []),
        (MEMORY, "inline", []),
        (MEMORY, "workers", ["channels_rpc.W003"]),
    ],
)
def test_the_layer_must_fit_the_execution_mode(
    backend: str, execution: str, expected: list[str]
) -> None:
    with layers(backend), rpc_settings(EXECUTION=execution):
        assert ids(checks.check_setup()) == expected


def test_a_stock_layer_in_workers_mode_is_an_error_naming_the_setting() -> None:
    with layers(STOCK):
        (found,) = checks.check_setup()
    assert found.msg == (
        "CHANNEL_LAYERS['default'] uses channels_redis.core.RedisChannelLayer, which can hand one "
        "request to two workers (channels_redis#163): set its BACKEND to "
        "'channels_rpc.layers.RedisChannelLayer'."
    )


def test_the_layer_alias_must_exist() -> None:
    with layers(OURS, alias="other"):
        (found,) = checks.check_setup()
    assert found.id == "channels_rpc.E002"
    assert found.msg == (
        "CHANNEL_LAYERS has no 'default' layer, which CHANNELS_RPC['CHANNEL_LAYER'] names."
    )


def test_a_backend_that_cannot_be_imported_is_an_error() -> None:
    with layers("no.such.Layer"):
        assert ids(checks.check_setup()) == ["channels_rpc.E004"]


def test_the_check_is_registered_with_django() -> None:
    from django.core.checks import registry as check_registry

    assert checks.check_setup in check_registry.registry.get_checks()


# ---------------------------------------------------------------------------------------------
# The front-end's first connection


@pytest.fixture
def said_nothing_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each problem is logged once per process: start this test with none logged."""
    monkeypatch.setattr(checks, "_said", set())


def consumer_on(layer: Any) -> Any:
    return SimpleNamespace(channel_layer=layer, channel_layer_alias="default")


async def test_a_stock_layer_in_workers_mode_refuses_calls_and_is_logged_once(
    said_nothing_yet: None, caplog: pytest.LogCaptureFixture
) -> None:
    stock = StockRedisChannelLayer(**NOWHERE)
    with caplog.at_level(logging.WARNING, logger="channels_rpc"):
        refusing = [checks.connection_layer(consumer_on(stock)) for _ in range(2)]
    assert [record.levelname for record in caplog.records] == ["ERROR"]
    assert (
        caplog.records[0]
        .getMessage()
        .endswith(
            "set its BACKEND to 'channels_rpc.layers.RedisChannelLayer'. Until then every call is "
            "refused with -32010."
        )
    )
    layer = refusing[0]
    assert layer is not stock
    with pytest.raises(LayerFull) as refused:
        await layer.enqueue("rpc.default", {"type": "rpc.request"}, timeout=1.0)
    assert refused.value.reason == checks.LAYER_REFUSED
    with pytest.raises(LayerFull):
        await layer.send("rpc.default", {"type": "rpc.request"})
    # Everything else is the real layer's: replies, groups, expiry.
    assert layer.expiry == stock.expiry
    assert layer.group_add == stock.group_add


@pytest.mark.parametrize("execution", ["inline"])
def test_a_stock_layer_serving_methods_inline_is_used_as_it_is(
    said_nothing_yet: None, execution: str
) -> None:
    stock = StockRedisChannelLayer(**NOWHERE)
    with rpc_settings(EXECUTION=execution):
        assert checks.connection_layer(consumer_on(stock)) is stock


def test_our_layer_and_the_in_memory_one_are_used_as_they_are(said_nothing_yet: None) -> None:
    ours, memory = RedisChannelLayer(**NOWHERE), InMemoryChannelLayer()
    assert checks.connection_layer(consumer_on(ours)) is ours
    assert checks.connection_layer(consumer_on(memory)) is memory


# ---------------------------------------------------------------------------------------------
# rpcworker's ready line names the Redis it serves, never a password


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("redis://:secret@127.0.0.1:6379/0?password=also-secret", "redis=redis://127.0.0.1:6379/0"),
        ("rediss://user:secret@redis.example:6380/2", "redis=rediss://user@redis.example:6380/2"),
        ("unix:///run/redis.sock?db=1", "redis=unix:///run/redis.sock"),
        (("redis.example", 7000), "redis=redis.example:7000"),
    ],
)
def test_the_ready_line_names_the_redis_without_a_password(host: Any, shown: str) -> None:
    assert _where(RedisChannelLayer(hosts=[host]), ["rpc.default"]) == shown


def test_the_ready_line_names_any_other_layer() -> None:
    assert _where(InMemoryChannelLayer(), ["rpc.default"]) == f"layer={MEMORY}"
