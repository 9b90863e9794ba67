"""The typed channel-layer interface (channels_rpc._layer), and the layer's checks of its input."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer as StockRedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from channels_rpc import _layer
from channels_rpc.layers import RedisChannelLayer

pytestmark = pytest.mark.anyio

#: A host nothing listens on: these tests never reach Redis.
NOWHERE = [("127.0.0.1", 9)]


def test_the_work_queue_capabilities_are_what_the_package_calls() -> None:
    assert set(_layer.CAPABILITIES) == {
        "clock",
        "enqueue",
        "withdraw",
        "receive_many",
        "on_reconnect",
        "join_group",
        "leave_group",
        "close_channel",
        "track_group",
        "untrack_group",
    }


def test_only_this_packages_redis_layer_is_a_work_queue() -> None:
    ours = RedisChannelLayer(hosts=NOWHERE)
    assert _layer.work_queue(ours) is ours
    assert _layer.work_queue(StockRedisChannelLayer(hosts=NOWHERE)) is None
    assert _layer.work_queue(InMemoryChannelLayer()) is None
    assert _layer.work_queue(None) is None


def test_a_layer_lacking_one_capability_is_no_work_queue() -> None:
    class AlmostOurs(RedisChannelLayer):
        withdraw = None  # type: ignore[assignment]

    assert _layer.work_queue(AlmostOurs(hosts=NOWHERE)) is None


async def test_redis_hosts_are_found_on_both_redis_layers_only() -> None:
    ours, stock = RedisChannelLayer(hosts=NOWHERE * 2), StockRedisChannelLayer(hosts=NOWHERE)
    assert _layer.redis_hosts(ours) is ours
    assert _layer.redis_hosts(ours).ring_size == 2  # type: ignore[union-attr]
    assert _layer.redis_hosts(stock) is stock
    assert _layer.redis_hosts(InMemoryChannelLayer()) is None
    assert _layer.redis_hosts(RedisPubSubChannelLayer(hosts=NOWHERE)) is None  # in a loop


async def test_expiries_are_the_layers_own_or_channels_defaults() -> None:
    layer = InMemoryChannelLayer(expiry=7, group_expiry=11)
    assert (_layer.expiry(layer), _layer.group_expiry(layer)) == (7.0, 11.0)
    pubsub = RedisPubSubChannelLayer(hosts=NOWHERE)  # says neither (and needs a loop)
    assert (_layer.expiry(pubsub), _layer.group_expiry(pubsub)) == (60.0, 86400.0)


# The layer's checks of what it is given: exceptions, not asserts (which ``python -O`` drops).

BAD_SENDS: list[tuple[str, Any, type[Exception], str]] = [
    ("rpc.ok", ["not", "a", "dict"], TypeError, "message is not a dict"),
    ("rpc.ok", {"__asgi_channel__": "x"}, ValueError, "__asgi_channel__"),
    ("no spaces allowed", {"type": "t"}, TypeError, "Channel name must be a valid"),
]


@pytest.mark.parametrize(("channel", "message", "error", "match"), BAD_SENDS)
async def test_a_bad_send_raises_a_typed_error(
    channel: str, message: Any, error: type[Exception], match: str
) -> None:
    layer = RedisChannelLayer(hosts=NOWHERE)
    with pytest.raises(error, match=match):
        await layer.send(channel, message)


async def test_receiving_another_processs_channel_is_a_value_error() -> None:
    layer = RedisChannelLayer(hosts=NOWHERE)
    try:
        with pytest.raises(ValueError, match="Wrong client prefix"):
            await layer.receive("specific.someone-else!abc")
    finally:
        await layer.close_pools()


async def test_a_bad_group_name_is_a_type_error() -> None:
    layer = RedisChannelLayer(hosts=NOWHERE)
    with pytest.raises(TypeError, match="Group name must be a valid"):
        await layer.join_group("no spaces", "specific.x!y", limit=10)


def test_the_checks_hold_under_python_dash_o() -> None:
    script = textwrap.dedent(
        """
        import asyncio
        from channels_rpc.layers import RedisChannelLayer

        async def main():
            layer = RedisChannelLayer(hosts=[("127.0.0.1", 9)])
            try:
                await layer.send("rpc.ok", ["not", "a", "dict"])
            except Exception as exc:
                print(type(exc).__name__, exc)
            await layer.close_pools()

        asyncio.run(main())
        """
    )
    run = subprocess.run(
        [sys.executable, "-O", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert run.stdout.strip() == "TypeError message is not a dict", run.stdout + run.stderr
