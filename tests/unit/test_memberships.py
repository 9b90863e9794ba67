"""``groups.Memberships``: one connection's groups, kept past group_expiry and Redis restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from channels_rpc.config import get_config
from channels_rpc.exceptions import JsonRpcError
from channels_rpc.groups import Memberships

pytestmark = pytest.mark.anyio


class ReconnectingLayer(InMemoryChannelLayer):
    """The in-memory layer, plus the hook our Redis layer calls when it gets Redis back."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reconnected: list[Callable[[], None]] = []

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        self.reconnected.append(callback)

    def forget_everything(self) -> None:
        """What a restarted Redis knows of the groups: nothing."""
        self.groups.clear()

    def members(self, group: str) -> set[str]:
        return set(self.groups.get(group, {}))


class Tasks:
    def __init__(self) -> None:
        self.running: list[asyncio.Task[None]] = []

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self.running.append(task)
        return task

    async def settle(self) -> None:
        """Let the tasks spawned so far run until they wait (the keepers wait for hours)."""
        for _ in range(10):
            await asyncio.sleep(0)

    def cancel(self) -> None:
        for task in self.running:
            task.cancel()


def memberships(
    layer: InMemoryChannelLayer,
    channel: str,
    tasks: Tasks,
    *,
    static: list[str] | None = None,
    closing: Callable[[], bool] = lambda: False,
) -> Memberships:
    return Memberships(
        layer, channel, static=lambda: static or [], spawn=tasks.spawn, closing=closing
    )


async def test_groups_are_joined_again_when_the_layer_gets_redis_back() -> None:
    layer, tasks = ReconnectingLayer(), Tasks()
    try:
        mine = memberships(layer, "conn.1", tasks, static=["lobby"])
        await layer.group_add("lobby", "conn.1")  # as Channels does for `groups`
        await mine.join("room")
        assert len(layer.reconnected) == 1
        layer.forget_everything()
        layer.reconnected[0]()
        await tasks.settle()
        assert layer.members("room") == {"conn.1"}
        assert layer.members("lobby") == {"conn.1"}
    finally:
        tasks.cancel()


async def test_one_reconnect_hook_per_layer_serves_every_connection() -> None:
    layer, tasks = ReconnectingLayer(), Tasks()
    try:
        first = memberships(layer, "conn.1", tasks)
        second = memberships(layer, "conn.2", tasks)
        await first.join("room")
        await second.join("room")
        assert len(layer.reconnected) == 1
        layer.forget_everything()
        layer.reconnected[0]()
        await tasks.settle()
        assert layer.members("room") == {"conn.1", "conn.2"}
    finally:
        tasks.cancel()


async def test_a_closing_connection_joins_nothing_again() -> None:
    layer, tasks = ReconnectingLayer(), Tasks()
    closing = False
    try:
        mine = memberships(layer, "conn.1", tasks, closing=lambda: closing)
        await mine.join("room")
        closing = True
        layer.forget_everything()
        layer.reconnected[0]()
        await tasks.settle()
        assert layer.members("room") == set()
    finally:
        tasks.cancel()


async def test_the_close_leaves_every_group_and_refuses_late_joins() -> None:
    layer, tasks = ReconnectingLayer(), Tasks()
    try:
        mine = memberships(layer, "conn.1", tasks)
        await mine.join("a")
        mine.joined_by_worker("b")  # the worker joined it already
        await layer.group_add("b", "conn.1")
        mine.note_call(30.0)  # a call that may still join a group for 30 s
        await mine.close()
        assert layer.members("a") == layer.members("b") == set()
        late = memberships(layer, "conn.1", tasks)  # a method joining after the close
        await late.join("c")
        assert layer.members("c") == set()
    finally:
        tasks.cancel()


async def test_joins_past_max_groups_are_refused() -> None:
    layer, tasks = ReconnectingLayer(), Tasks()
    try:
        mine = memberships(layer, "conn.1", tasks)
        for n in range(get_config().max_groups):
            await mine.join(f"g{n}")
        with pytest.raises(JsonRpcError) as refused:
            await mine.join("one-more")
        assert refused.value.code == -32010
        await mine.join("g0")  # a group it is in already is not one more
    finally:
        tasks.cancel()
