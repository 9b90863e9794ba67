"""Cancellation, progress, groups and rpc.discover, seen from a client (embedded worker)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.core.serializers.json import DjangoJSONEncoder
from django.test import override_settings
from typing_extensions import TypedDict  # pydantic's, on every Python this package supports

from channels_rpc import (
    AsyncJsonRpcWebsocketConsumer,
    RpcContext,
    notify_group,
    notify_group_sync,
    permission_required,
    signals,
)
from channels_rpc.requests import CANCEL_METHODS
from tests.inprocess.helpers import (
    WAIT,
    call,
    connect,
    error,
    notification,
    receive,
    receive_text,
    request,
    result,
    rpc_settings,
    send,
    silent,
)
from tests.openrpc.validation import errors

if TYPE_CHECKING:
    # Known to type checkers only: at run time this annotation cannot be resolved.
    from decimal import Decimal as Money

pytestmark = pytest.mark.anyio


class Track:
    """Named events the methods below set (asyncio ones, and threading ones for sync code)."""

    def __init__(self) -> None:
        self.events: dict[str, asyncio.Event] = {}
        self._threads: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def event(self, name: str) -> asyncio.Event:
        return self.events.setdefault(name, asyncio.Event())

    def thread_event(self, name: str) -> threading.Event:
        with self._lock:
            return self._threads.setdefault(name, threading.Event())

    def seen(self, name: str) -> bool:
        return name in self.events and self.events[name].is_set()

    async def wait(self, *names: str) -> None:
        with anyio.fail_after(WAIT):
            for name in names:
                await self.event(name).wait()

    async def wait_thread(self, name: str) -> bool:
        return await asyncio.to_thread(self.thread_event(name).wait, WAIT)


TRACK = Track()


@pytest.fixture(autouse=True)
def _fresh_track() -> None:
    global TRACK
    TRACK = Track()


async def eventually(condition: Callable[[], object], seconds: float = WAIT) -> None:
    """Wait until ``condition()`` holds (state that no event reports is polled)."""
    with anyio.fail_after(seconds):
        while True:
            if condition():
                return
            await asyncio.sleep(0.005)


def cancelled(rpc_id: Any) -> dict[str, Any]:
    return error(rpc_id, -32800, "Request Cancelled", {"id": rpc_id})


# ---------------------------------------------------------------------------------------------
# Methods


class WorkConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


@WorkConsumer.rpc_method()
async def add(a: int, b: int) -> int:
    return a + b


@WorkConsumer.rpc_method()
async def hold(tag: str) -> str:
    """Runs until released (or cancelled); says when it started and when it ended."""
    TRACK.event(f"{tag}:started").set()
    try:
        await TRACK.event(f"{tag}:release").wait()
        return tag
    finally:
        TRACK.event(f"{tag}:finally").set()


WorkConsumer.rpc_notification("hold")(hold)


@WorkConsumer.rpc_method()
async def stubborn(tag: str) -> str:
    """Swallows its cancellation and returns a result anyway."""
    TRACK.event(f"{tag}:started").set()
    try:
        await TRACK.event(f"{tag}:release").wait()
    except asyncio.CancelledError:
        return "late"
    return "released"


@WorkConsumer.rpc_method()
def crunch(ctx: RpcContext, tag: str) -> str:
    """A sync loop that polls ``ctx.cancelled``, as sync methods must."""
    TRACK.thread_event(f"{tag}:started").set()
    give_up = time.monotonic() + 2 * WAIT
    while time.monotonic() < give_up:
        if ctx.cancelled:
            TRACK.thread_event(f"{tag}:saw-cancel").set()
            return "stopped"
        time.sleep(0.01)
    return "finished"


@WorkConsumer.rpc_method()
async def report(ctx: RpcContext, steps: int) -> str:
    for step in range(1, steps + 1):
        await ctx.progress(step, steps, f"step {step}")
    await ctx.progress(0.5)
    await ctx.progress(1, message="almost")
    await ctx.progress(2, total=2)
    return "done"


@WorkConsumer.rpc_notification()
async def quiet_report(ctx: RpcContext, steps: int) -> None:
    await report(ctx, steps)
    TRACK.event("quiet_report:done").set()


# ---------------------------------------------------------------------------------------------
# 1. rpc.cancel and $/cancelRequest


@pytest.mark.parametrize("rpc_id", [41, "job-41"])
@pytest.mark.parametrize("cancel", sorted(CANCEL_METHODS))
async def test_cancelling_a_running_call_answers_it_at_once_and_stops_it(
    cancel: str, rpc_id: Any
) -> None:
    communicator = await connect(WorkConsumer)
    await send(communicator, request("hold", {"tag": "h"}, rpc_id))
    await TRACK.wait("h:started")

    begun = time.monotonic()
    await send(communicator, notification(cancel, {"id": rpc_id}))
    assert await receive(communicator) == cancelled(rpc_id)
    assert time.monotonic() - begun < 1.0  # not at the 5 s deadline
    await TRACK.wait("h:finally")  # the method was stopped, its cleanup ran

    assert await silent(communicator)
    assert await call(communicator, "add", [1, 2], rpc_id=99) == result(99, 3)
    await communicator.disconnect()


async def test_a_result_produced_after_the_cancellation_never_reaches_the_client() -> None:
    completed: list[Any] = []

    def record(sender: Any, **kwargs: Any) -> None:
        completed.append(kwargs["result"])

    signals.rpc_method_completed.connect(record, sender=WorkConsumer, weak=False)
    try:
        communicator = await connect(WorkConsumer)
        await send(communicator, request("stubborn", {"tag": "s"}, 5))
        await TRACK.wait("s:started")
        await send(communicator, notification("rpc.cancel", {"id": 5}))
        assert await receive(communicator) == cancelled(5)
        await eventually(lambda: completed)
        assert completed == ["late"]  # the worker did produce it...
        assert await silent(communicator)  # ...and it was dropped
        assert await call(communicator, "add", [2, 2], rpc_id=6) == result(6, 4)
        await communicator.disconnect()
    finally:
        signals.rpc_method_completed.disconnect(record, sender=WorkConsumer)


async def test_cancelling_an_unknown_or_answered_id_sends_nothing() -> None:
    communicator = await connect(WorkConsumer)
    assert await call(communicator, "add", [1, 1], rpc_id=1) == result(1, 2)
    await send(communicator, request("hold", {"tag": "h"}, 2))
    await TRACK.wait("h:started")

    await send(communicator, notification("rpc.cancel", {"id": 1}))  # answered already
    await send(communicator, notification("rpc.cancel", {"id": 77}))  # never existed
    await send(communicator, notification("$/cancelRequest", {"id": "2"}))  # not the id 2
    assert await silent(communicator)
    assert not TRACK.seen("h:finally")

    TRACK.event("h:release").set()
    assert await receive(communicator) == result(2, "h")
    await communicator.disconnect()


@pytest.mark.parametrize(
    "params",
    [None, {}, {"call": 1}, {"id": None}, [1], [{"id": 1}]],
    ids=["no-params", "empty", "no-id", "null-id", "list", "list-of-object"],
)
async def test_a_cancel_with_bad_params_is_ignored(params: Any) -> None:
    communicator = await connect(WorkConsumer)
    await send(communicator, request("hold", {"tag": "h"}, 1))
    await TRACK.wait("h:started")

    await send(communicator, notification("rpc.cancel", params))
    assert await silent(communicator)
    assert not TRACK.seen("h:finally")

    TRACK.event("h:release").set()
    assert await receive(communicator) == result(1, "h")
    await communicator.disconnect()


async def test_cancelling_a_batch_element_answers_it_inside_the_batch() -> None:
    communicator = await connect(WorkConsumer)
    await send(communicator, [request("hold", {"tag": "b"}, 1), request("add", [1, 2], 2)])
    await TRACK.wait("b:started")
    assert await silent(communicator)  # the batch waits for its first element

    await send(communicator, notification("rpc.cancel", {"id": 1}))
    assert await receive(communicator) == [cancelled(1), result(2, 3)]
    await TRACK.wait("b:finally")
    assert await silent(communicator)
    await communicator.disconnect()


async def test_a_cancel_in_the_same_batch_answers_the_call_cancelled() -> None:
    communicator = await connect(WorkConsumer)
    await send(
        communicator,
        [request("hold", {"tag": "c"}, 1), notification("rpc.cancel", {"id": 1})],
    )
    assert await receive(communicator) == [cancelled(1)]
    assert await call(communicator, "add", [0, 1], rpc_id=2) == result(2, 1)
    # Cancelled before it started (skipped) or while running (stopped): never left running.
    await eventually(lambda: not TRACK.seen("c:started") or TRACK.seen("c:finally"))
    assert await silent(communicator)
    await communicator.disconnect()


async def test_a_sync_method_sees_ctx_cancelled_after_a_cancel() -> None:
    communicator = await connect(WorkConsumer)
    saw_cancel = TRACK.thread_event("sync:saw-cancel")
    await send(communicator, request("crunch", {"tag": "sync"}, 3))
    assert await TRACK.wait_thread("sync:started")
    assert not saw_cancel.is_set()

    await send(communicator, notification("$/cancelRequest", {"id": 3}))
    assert await receive(communicator) == cancelled(3)
    assert await TRACK.wait_thread("sync:saw-cancel")
    assert await silent(communicator)  # its "stopped" result is not sent
    await communicator.disconnect()


async def test_a_cancel_naming_id_true_cancels_nothing() -> None:
    communicator = await connect(WorkConsumer)
    await send(communicator, request("hold", {"tag": "t"}, 1))
    await TRACK.wait("t:started")
    await send(communicator, notification("rpc.cancel", {"id": True}))
    assert await silent(communicator)
    TRACK.event("t:release").set()
    assert await receive(communicator) == result(1, "t")
    await communicator.disconnect()


@pytest.mark.parametrize("target", [[1], {"id": 1}], ids=["array", "object"])
async def test_a_cancel_naming_an_array_or_object_id_is_ignored_quietly(
    caplog: pytest.LogCaptureFixture, target: Any
) -> None:
    communicator = await connect(WorkConsumer)
    await send(communicator, request("hold", {"tag": "t"}, 1))
    await TRACK.wait("t:started")
    with caplog.at_level(logging.ERROR, logger="channels_rpc"):
        await send(communicator, notification("rpc.cancel", {"id": target}))
        # Frames are handled in order: once this is answered, the cancel was handled.
        assert await call(communicator, "add", [1, 2], rpc_id=2) == result(2, 3)
    TRACK.event("t:release").set()
    assert await receive(communicator) == result(1, "t")
    await communicator.disconnect()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# ---------------------------------------------------------------------------------------------
# 2. Disconnecting


async def test_closing_a_connection_cancels_its_running_calls_not_its_notifications() -> None:
    closing = await connect(WorkConsumer)
    staying = await connect(WorkConsumer)
    await send(closing, request("hold", {"tag": "c1"}, 1))
    await send(closing, request("hold", {"tag": "c2"}, 2))
    await send(closing, notification("hold", {"tag": "cn"}))
    await send(staying, request("hold", {"tag": "s1"}, 1))
    await TRACK.wait("c1:started", "c2:started", "cn:started", "s1:started")

    await closing.disconnect()
    await TRACK.wait("c1:finally", "c2:finally")
    # A notification has no answer to wait for: sent, then closed, it still runs (as in 1.0.1).
    assert not TRACK.seen("cn:finally")
    TRACK.event("cn:release").set()
    await TRACK.wait("cn:finally")

    assert not TRACK.seen("s1:finally")  # another connection's call runs on
    TRACK.event("s1:release").set()
    assert await receive(staying) == result(1, "s1")
    await staying.disconnect()


async def test_the_last_close_lets_a_running_notification_finish() -> None:
    communicator = await connect(WorkConsumer)
    await send(communicator, notification("hold", {"tag": "n"}))
    await TRACK.wait("n:started")
    asyncio.get_running_loop().call_later(0.1, TRACK.event("n:release").set)
    await communicator.disconnect()
    assert TRACK.seen("n:finally")


# ---------------------------------------------------------------------------------------------
# 3. Progress


def progress(rpc_id: Any, **params: Any) -> dict[str, Any]:
    return notification("rpc.progress", {"id": rpc_id, **params})


@pytest.mark.parametrize("rpc_id", [7, "r-7"])
async def test_progress_frames_arrive_in_order_before_the_result(rpc_id: Any) -> None:
    communicator = await connect(WorkConsumer)
    await send(communicator, request("report", {"steps": 3}, rpc_id))
    first = await receive_text(communicator)
    assert first == (
        '{"jsonrpc":"2.0","method":"rpc.progress","params":'
        f'{{"id":{json.dumps(rpc_id)},"progress":1,"total":3,"message":"step 1"}}}}'
    )
    rest = [await receive(communicator) for _ in range(6)]
    assert rest == [
        progress(rpc_id, progress=2, total=3, message="step 2"),
        progress(rpc_id, progress=3, total=3, message="step 3"),
        progress(rpc_id, progress=0.5),
        progress(rpc_id, progress=1, message="almost"),
        progress(rpc_id, progress=2, total=2),
        result(rpc_id, "done"),
    ]
    assert await silent(communicator)
    await communicator.disconnect()


async def test_progress_of_a_notification_sends_nothing() -> None:
    communicator = await connect(WorkConsumer)
    await send(communicator, notification("quiet_report", {"steps": 2}))
    await TRACK.wait("quiet_report:done")
    assert await silent(communicator)
    await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# 4. Groups

LOBBY = "lobby"


class GroupConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


class JoinOnConnectConsumer(AsyncJsonRpcWebsocketConsumer):
    async def connect(self) -> None:
        await self.join_group(LOBBY)
        await self.accept()


class GroupsAttributeConsumer(AsyncJsonRpcWebsocketConsumer):
    groups: ClassVar[list[str]] = [LOBBY]


@GroupConsumer.rpc_method()
async def join(ctx: RpcContext, group: str) -> None:
    await ctx.join_group(group)


@GroupConsumer.rpc_method()
async def leave(ctx: RpcContext, group: str) -> None:
    await ctx.leave_group(group)


async def channel(ctx: RpcContext) -> str:
    """The caller's channel name."""
    return str(ctx.consumer.channel_name)


for _consumer in (GroupConsumer, JoinOnConnectConsumer, GroupsAttributeConsumer):
    _consumer.rpc_method()(channel)


def members(group: str = LOBBY) -> set[str]:
    """Channels in ``group`` of the in-memory layer (which maps group -> {channel: joined})."""
    return set(get_channel_layer().groups.get(group, {}))


async def channel_of(communicator: WebsocketCommunicator) -> str:
    answer = await call(communicator, "channel", rpc_id="channel")
    name = answer["result"]
    assert isinstance(name, str)
    return name


async def joined_by_method(group: str = LOBBY) -> WebsocketCommunicator:
    communicator = await connect(GroupConsumer)
    assert await call(communicator, "join", [group], rpc_id="join") == result("join", None)
    return communicator


JOIN_WAYS: dict[str, Callable[[], Any]] = {
    "ctx.join_group": joined_by_method,
    "join_group-in-connect": lambda: connect(JoinOnConnectConsumer),
    "groups-attribute": lambda: connect(GroupsAttributeConsumer),
}


async def test_a_push_to_a_group_reaches_its_members_only() -> None:
    member = await joined_by_method()
    outsider = await connect(GroupConsumer)
    await notify_group(LOBBY, "lobby.news", {"n": 1})
    assert await receive_text(member) == '{"jsonrpc":"2.0","method":"lobby.news","params":{"n":1}}'
    assert await silent(outsider)
    assert await silent(member)
    await member.disconnect()
    await outsider.disconnect()


async def test_ctx_leave_group_stops_the_pushes() -> None:
    leaving = await joined_by_method()
    staying = await joined_by_method()
    assert await call(leaving, "leave", [LOBBY], rpc_id="leave") == result("leave", None)
    await notify_group(LOBBY, "lobby.news")
    assert await receive(staying) == notification("lobby.news")
    assert await silent(leaving)
    await leaving.disconnect()
    await staying.disconnect()


async def test_connections_joining_in_connect_or_by_attribute_receive_pushes() -> None:
    communicators = [await join() for join in JOIN_WAYS.values()]
    at = datetime.datetime(2024, 5, 6, 7, 8, 9)
    await notify_group(LOBBY, "lobby.news", {"at": at})
    expected = notification("lobby.news", {"at": "2024-05-06T07:08:09"})
    for communicator in communicators:
        assert await receive(communicator) == expected
        await communicator.disconnect()


@pytest.mark.parametrize("way", JOIN_WAYS)
async def test_a_closed_connection_is_no_longer_in_its_groups(way: str) -> None:
    communicator = await JOIN_WAYS[way]()
    name = await channel_of(communicator)
    assert name in members()
    await communicator.disconnect()
    assert name not in members()


async def test_notify_group_sync_works_from_a_thread() -> None:
    member = await joined_by_method()
    await asyncio.to_thread(notify_group_sync, LOBBY, "lobby.tick", {"n": 2})
    assert await receive(member) == notification("lobby.tick", {"n": 2})
    await member.disconnect()


async def test_members_are_renewed_past_the_layers_group_expiry() -> None:
    layers = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"group_expiry": 1},  # members are renewed every 0.5 s
        }
    }
    with override_settings(CHANNEL_LAYERS=layers):  # resets channel_layers.backends
        layer = get_channel_layer()
        assert layer.group_expiry == 1
        communicators = [await join() for join in JOIN_WAYS.values()]
        bystander = await layer.new_channel()
        await layer.group_add(LOBBY, bystander)  # joined once, never renewed
        # Until the bystander's membership is past the expiry, by the layer's own reckoning (in
        # whole seconds: expired once int(time.time()) - expiry passes the join's second). The
        # connections' joins are no younger: they would be gone too, unless renewed.
        expired_at = layer.groups[LOBBY][bystander] + layer.group_expiry + 1
        await asyncio.sleep(max(0.0, expired_at - time.time()))

        await notify_group(LOBBY, "lobby.still-there")
        assert bystander not in members()  # memberships did expire meanwhile...
        for communicator in communicators:  # ...but not those of the connections
            assert await receive(communicator) == notification("lobby.still-there")
            await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# 5. rpc.discover


class Point(TypedDict):
    x: int
    y: int


@dataclasses.dataclass
class Box:
    width: float
    height: float = 1.0


@dataclasses.dataclass
class Priced:
    amount: Money


class StubUser:
    pk = 42

    def __init__(self, *, authenticated: bool = True, allowed: bool = True) -> None:
        self.is_authenticated = authenticated
        self.allowed = allowed

    def has_perms(self, perms: Any) -> bool:
        return self.allowed


TICK = {
    "description": "A clock tick.",
    "params": [{"name": "n", "required": True, "schema": {"type": "integer"}}],
}


class DiscoverConsumer(AsyncJsonRpcWebsocketConsumer):
    openrpc_info: ClassVar[Mapping[str, Any]] = {
        "title": "Discovery test API",
        "version": "2.5.0",
        "description": "Methods for testing rpc.discover.",
    }
    server_notifications: ClassVar[Mapping[str, str | Mapping[str, Any]]] = {
        "news.item": "A news item.",
        "tick": TICK,
    }


@DiscoverConsumer.rpc_method()
async def scale(ctx: RpcContext, factor: int, labels: list[str], note: str | None = None) -> float:
    """Scale the labels.

    Every label is scaled by ``factor``.
    """
    return float(factor)


@DiscoverConsumer.rpc_method()
def measure(box: Box, origin: Point) -> float:
    """The area of a box."""
    return box.width * box.height


@DiscoverConsumer.rpc_notification()
async def log_line(line: str) -> None:
    """Write a line to the server log."""


@DiscoverConsumer.rpc_method()
@permission_required("app.view_secret")
async def secret() -> str:
    return "secret"


@DiscoverConsumer.rpc_method(websocket=False)
async def internal() -> str:
    return "internal"


class FragileConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


@FragileConsumer.rpc_method()
async def price(item: Priced) -> int:
    return 0


@FragileConsumer.rpc_method()
async def ping() -> str:
    return "pong"


async def discover(user: Any = None, consumer: Any = DiscoverConsumer) -> dict[str, Any]:
    communicator = await connect(consumer, user=user)
    answer = await call(communicator, "rpc.discover", rpc_id="d")
    await communicator.disconnect()
    assert isinstance(answer, dict)
    return answer


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {method["name"]: method for method in doc["methods"]}


async def test_rpc_discover_answers_a_valid_openrpc_document() -> None:
    answer = await discover()
    assert (answer["jsonrpc"], answer["id"]) == ("2.0", "d")
    doc = answer["result"]
    assert errors(doc) == []
    assert doc["info"] == {
        "title": "Discovery test API",
        "version": "2.5.0",
        "description": "Methods for testing rpc.discover.",
    }
    assert [m["name"] for m in doc["methods"]] == ["scale", "measure", "log_line"]


async def test_rpc_discover_describes_params_and_results_from_annotations() -> None:
    doc = (await discover())["result"]
    methods, schemas = by_name(doc), doc["components"]["schemas"]
    scale_ = methods["scale"]
    assert scale_["summary"] == "Scale the labels."
    assert scale_["description"] == "Every label is scaled by ``factor``."
    assert scale_["params"] == [
        {"name": "factor", "schema": {"type": "integer"}, "required": True},
        {
            "name": "labels",
            "schema": {"type": "array", "items": {"type": "string"}},
            "required": True,
        },
        {
            "name": "note",
            "schema": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "required": False,
        },
    ]
    assert scale_["result"] == {"name": "result", "schema": {"type": "number"}}
    box, origin = methods["measure"]["params"]
    # Shared definitions, as the validator has them.
    assert box["schema"] == {"$ref": "#/components/schemas/Box"}
    assert schemas["Box"] == {
        "type": "object",
        "title": "Box",
        "properties": {
            "width": {"type": "number", "title": "Width"},
            "height": {"type": "number", "title": "Height", "default": 1.0},
        },
        "required": ["width"],
    }
    assert origin["schema"] == {"$ref": "#/components/schemas/Point"}
    assert schemas["Point"] == {
        "type": "object",
        "title": "Point",
        "properties": {
            "x": {"type": "integer", "title": "X"},
            "y": {"type": "integer", "title": "Y"},
        },
        "required": ["x", "y"],
    }
    assert methods["measure"]["summary"] == "The area of a box."


async def test_rpc_discover_marks_notifications_and_lists_server_notifications() -> None:
    doc = (await discover())["result"]
    log_line_ = by_name(doc)["log_line"]
    assert log_line_["x-notification"] is True
    assert "result" not in log_line_
    assert log_line_["summary"] == "Write a line to the server log."
    pushed = {n["name"]: n for n in doc["x-notifications"]}
    assert list(pushed) == ["news.item", "tick", "rpc.progress"]
    assert pushed["news.item"] == {"name": "news.item", "description": "A news item."}
    assert pushed["tick"] == {"name": "tick", **TICK}
    assert [p["name"] for p in pushed["rpc.progress"]["params"]] == [
        "id",
        "progress",
        "total",
        "message",
    ]


@pytest.mark.parametrize(
    "user",
    [None, StubUser(authenticated=False), StubUser(allowed=False)],
    ids=["no-user", "anonymous", "lacking-permission"],
)
async def test_rpc_discover_leaves_out_methods_the_caller_may_not_call(user: Any) -> None:
    names = set(by_name((await discover(user))["result"]))
    assert names == {"scale", "measure", "log_line"}


async def test_rpc_discover_lists_protected_methods_for_permitted_users() -> None:
    doc = (await discover(StubUser()))["result"]
    assert [m["name"] for m in doc["methods"]] == ["scale", "measure", "secret", "log_line"]
    assert errors(doc) == []
    # Everything this user may call is everything the class declares for WebSockets.
    declared = json.loads(json.dumps(DiscoverConsumer.openrpc_document(), cls=DjangoJSONEncoder))
    assert doc == declared


async def test_openrpc_document_needs_no_connection() -> None:
    doc = DiscoverConsumer.openrpc_document()
    assert errors(doc) == []
    assert doc["info"]["title"] == "Discovery test API"
    names = [m["name"] for m in doc["methods"]]
    assert names == ["scale", "measure", "secret", "log_line"]  # websocket=False is left out
    assert "internal" not in names


async def test_openrpc_info_defaults_to_the_class_name() -> None:
    doc = WorkConsumer.openrpc_document()
    assert doc["info"] == {"title": "WorkConsumer", "version": "1.0.0"}
    assert [n["name"] for n in doc["x-notifications"]] == ["rpc.progress"]
    assert errors(doc) == []


async def test_rpc_discover_is_answered_inside_a_batch() -> None:
    communicator = await connect(DiscoverConsumer)
    await send(communicator, [request("rpc.discover", rpc_id=1), request("nope", rpc_id=2)])
    first, second = await receive(communicator)
    assert first["id"] == 1
    assert errors(first["result"]) == []
    assert (second["id"], second["error"]["code"]) == (2, -32601)
    await communicator.disconnect()


async def test_rpc_discover_as_a_notification_is_not_answered() -> None:
    communicator = await connect(DiscoverConsumer)
    await send(communicator, notification("rpc.discover"))
    assert await silent(communicator)
    await communicator.disconnect()


async def test_rpc_discover_is_method_not_found_when_discovery_is_off() -> None:
    with rpc_settings(DISCOVERY=False):
        answer = await discover()
    assert answer["id"] == "d"
    assert answer["error"]["code"] == -32601
    assert answer["error"]["data"] == {"method": "rpc.discover"}


async def test_rpc_discover_survives_an_annotation_that_does_not_resolve() -> None:
    answer = await discover(consumer=FragileConsumer)
    assert "result" in answer, answer
    assert [m["name"] for m in answer["result"]["methods"]] == ["price", "ping"]
