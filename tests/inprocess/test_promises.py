"""README promises that no other in-process test would see broken (issue 11).

Each test names the promise it holds. The mutation that showed it fails when the promise is
broken is listed in the issue's closing note.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import DatabaseError, connections

from channels_rpc import AsyncJsonRpcWebsocketConsumer, RpcContext, permission_required
from tests.inprocess.helpers import (
    WAIT,
    call,
    connect,
    error,
    notification,
    receive,
    request,
    result,
    rpc_settings,
    send,
)

pytestmark = pytest.mark.anyio

#: Long enough that a call the front-end did not answer itself cannot be answered at its
#: deadline (timeout + grace) while a test waits for an answer (tests.inprocess.helpers.WAIT).
NO_DEADLINE_SOON = 60.0


class PromiseConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


ran: list[Any] = []  # what the methods below ran with, in order


@PromiseConsumer.rpc_method()
async def pair(a: int, b: int) -> int:
    ran.append(("pair", a, b))
    return a + b


@PromiseConsumer.rpc_notification()
async def note(a: int) -> None:
    ran.append(("note", a))


@pytest.fixture(autouse=True)
def _nothing_ran_yet() -> Iterator[None]:
    ran.clear()
    yield
    ran.clear()


def queued(layer: Any, queue: str) -> int:
    """Messages waiting on ``queue`` of the in-memory layer (the layer's own record)."""
    waiting = layer.channels.get(queue)
    return 0 if waiting is None else int(waiting.qsize())


# ---------------------------------------------------------------------------------------------
# Methods: "Params bind to the signature at the front-end: ... answered with -32602 before any
# worker is involved." With EXECUTION="workers" and the in-memory layer no worker runs at all.


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"a": 1}, "missing a required argument: 'b'"),
        ([1, 2, 3], "too many positional arguments"),
        ({"a": 1, "b": 2, "c": 3}, "got an unexpected keyword argument 'c'"),
    ],
)
async def test_wrong_params_are_answered_by_the_front_end_and_never_queued(
    params: Any, problem: str
) -> None:
    with rpc_settings(EXECUTION="workers", DEFAULT_TIMEOUT=NO_DEADLINE_SOON):
        layer = get_channel_layer()
        communicator = await connect(PromiseConsumer)
        assert await call(communicator, "pair", params, rpc_id=4) == error(
            4, -32602, "Invalid Params", {"error": problem}
        )
        await send(communicator, notification("note", {"b": 1}))  # dropped, logged
        await send(communicator, [request("pair", [1], rpc_id=5), request("pair", [], rpc_id=6)])
        missing = "missing a required argument"
        assert await receive(communicator) == [
            error(5, -32602, "Invalid Params", {"error": f"{missing}: 'b'"}),
            error(6, -32602, "Invalid Params", {"error": f"{missing}: 'a'"}),
        ]
        assert queued(layer, "rpc.default") == 0
        # A good call is queued: this is how one shows (its answer would need a worker).
        await send(communicator, request("pair", [1, 2], rpc_id=7))
        message = await asyncio.wait_for(layer.receive("rpc.default"), WAIT)
        assert (message["method"], json.loads(message["body"])["id"]) == ("pair", 7)
        await communicator.disconnect()
    assert ran == []


# ---------------------------------------------------------------------------------------------
# Guarantees: "Every call gets exactly one answer." Enough calls through one embedded worker
# that a worker losing (or repeating) one reply in ten shows here, not only over Redis.

CALLS = 30


async def test_every_one_of_many_calls_through_one_worker_is_answered_once() -> None:
    with rpc_settings(DEFAULT_TIMEOUT=NO_DEADLINE_SOON):
        communicator = await connect(PromiseConsumer)
        for n in range(CALLS):
            await send(communicator, request("pair", [n, 1000], rpc_id=n))
        answers = [await receive(communicator) for _ in range(CALLS)]
        assert sorted(answers, key=lambda a: a["id"]) == [result(n, n + 1000) for n in range(CALLS)]
        # Nothing more came for those calls: the next frame is the answer to a later one.
        assert await call(communicator, "pair", [1, 2], rpc_id="last") == result("last", 3)
        await communicator.disconnect()
    assert len(ran) == CALLS + 1


async def test_the_same_ids_on_two_connections_each_get_their_own_answers() -> None:
    # Ids only have to be unique per connection: the same ids at once on two connections,
    # through one worker, are answered to the connection that sent them, with its own result.
    with rpc_settings(DEFAULT_TIMEOUT=NO_DEADLINE_SOON):
        first, second = await connect(PromiseConsumer), await connect(PromiseConsumer)
        for n in range(10):
            await send(first, request("pair", [n, 100], rpc_id=n))
            await send(second, request("pair", [n, 200], rpc_id=n))
        for communicator, offset in ((first, 100), (second, 200)):
            answers = [await receive(communicator) for _ in range(10)]
            expected = [result(n, n + offset) for n in range(10)]
            assert sorted(answers, key=lambda a: a["id"]) == expected
            await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# Methods: sync methods run "with Django's stale-connection cleanup around each call".
# Django marks a connection that saw an error (errors_occurred); close_old_connections() checks
# such a connection and, usable again, clears the mark (else closes it). One thread, so that
# consecutive calls share its connection.


class DatabaseConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


connection_of_last_call: dict[str, Any] = {}


@DatabaseConsumer.rpc_method()
def failing_query() -> dict[str, Any]:
    connection = connections["default"]
    with pytest.raises(DatabaseError):
        connection.cursor().execute("SELECT * FROM no_such_table")
    connection_of_last_call["connection"] = connection
    return {"marked": connection.errors_occurred, "thread": threading.get_ident()}


@DatabaseConsumer.rpc_method()
def connection_state() -> dict[str, Any]:
    connection = connections["default"]
    return {"marked": connection.errors_occurred, "thread": threading.get_ident()}


@contextmanager
def one_sync_thread() -> Iterator[None]:
    with rpc_settings(WORKER_CONCURRENCY=1):
        connection_of_last_call.clear()
        yield
        connection_of_last_call.clear()


async def test_a_connection_a_sync_call_left_in_error_is_checked_after_the_call() -> None:
    with one_sync_thread():
        communicator = await connect(DatabaseConsumer)
        answer = await call(communicator, "failing_query")
        assert answer["result"]["marked"] is True
        # The answer is sent once the thread is done, cleanup included.
        assert connection_of_last_call["connection"].errors_occurred is False
        await communicator.disconnect()


async def test_a_connection_left_in_error_between_calls_is_checked_before_the_next() -> None:
    with one_sync_thread():
        communicator = await connect(DatabaseConsumer)
        first = (await call(communicator, "failing_query"))["result"]
        # Between calls, the connection goes bad (as when the database drops it while idle).
        connection_of_last_call["connection"].errors_occurred = True
        second = (await call(communicator, "connection_state", rpc_id=2))["result"]
        assert second == {"marked": False, "thread": first["thread"]}
        await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# Methods: ctx.scope is "a serializable subset of the connection's scope: path, query_string,
# client, url_route, user ..., session_key"; "Override Consumer.rpc_scope() to send more".


class Session:
    session_key = "s3ss10n"


SCOPE_KEYS = ("path", "query_string", "client", "url_route", "session_key")


class ScopeConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


class TenantConsumer(AsyncJsonRpcWebsocketConsumer):
    def rpc_scope(self) -> dict[str, Any]:
        return {**super().rpc_scope(), "tenant": self.scope["url_route"]["kwargs"]["tenant"]}


@ScopeConsumer.rpc_method("scope")
@TenantConsumer.rpc_method("scope")
def scope_seen(ctx: RpcContext) -> dict[str, Any]:
    return {key: ctx.scope.get(key) for key in (*SCOPE_KEYS, "tenant", "headers", "session")}


CONNECTION_SCOPE: dict[str, Any] = {
    "client": ["10.1.2.3", 50123],
    "url_route": {"args": (7,), "kwargs": {"tenant": "acme", "n": 7}},
    "session": Session(),
    "headers": [(b"cookie", b"sessionid=s3ss10n")],
}
SCOPE_IN_WORKER: dict[str, Any] = {
    "path": "/ws/acme/",
    "query_string": "x=1&y=%C3%A9",
    "client": ["10.1.2.3", 50123],
    "url_route": {"args": ["7"], "kwargs": {"tenant": "acme", "n": "7"}},
    "session_key": "s3ss10n",
    "headers": None,  # credentials stay in the front-end
    "session": None,
}


async def test_the_scope_keys_reach_the_method() -> None:
    communicator = await connect(ScopeConsumer, "/ws/acme/?x=1&y=%C3%A9", **CONNECTION_SCOPE)
    answer = await call(communicator, "scope")
    assert answer == result(1, {**SCOPE_IN_WORKER, "tenant": None})
    await communicator.disconnect()


async def test_an_rpc_scope_override_reaches_the_method() -> None:
    communicator = await connect(TenantConsumer, "/ws/acme/?x=1&y=%C3%A9", **CONNECTION_SCOPE)
    answer = await call(communicator, "scope")
    assert answer == result(1, {**SCOPE_IN_WORKER, "tenant": "acme"})
    await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# Push, cancellation, progress: "From a sync method, use async_to_sync(ctx.progress)(step,
# steps)" (asgiref's, as everywhere in Django).


class ProgressConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


@ProgressConsumer.rpc_method()
def sync_report(ctx: RpcContext, steps: int) -> str:
    for step in range(1, steps + 1):
        async_to_sync(ctx.progress)(step, steps)
    return "built"


async def test_a_sync_method_reports_progress_the_documented_way() -> None:
    # Found by this test: with anyio.from_thread.run (the README's former advice) it failed in
    # the worker's own threads (NoEventLoopError, answered -32000).
    communicator = await connect(ProgressConsumer)
    await send(communicator, request("sync_report", [2], rpc_id=9))
    for step in (1, 2):
        params = {"id": 9, "progress": step, "total": 2}
        assert await receive(communicator) == {
            "jsonrpc": "2.0",
            "method": "rpc.progress",
            "params": params,
        }
    assert await receive(communicator) == result(9, "built")
    await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# Extension points: "The front-end checks the connection's user before enqueueing (in a thread,
# not on the event loop)."


class PermissionConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


@permission_required("app.view_report")
@PermissionConsumer.rpc_method()
async def report() -> str:
    return "report"


class ThreadRecordingUser:
    """A user whose permission check records the thread it runs in (it may hit the database)."""

    pk = 7
    is_authenticated = True

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def has_perms(self, perms: Any) -> bool:
        self.threads.append(threading.current_thread())
        return True


async def test_the_permission_check_runs_in_a_thread_not_on_the_event_loop() -> None:
    user = ThreadRecordingUser()
    communicator = await connect(PermissionConsumer, user=user)
    assert await call(communicator, "report") == result(1, "report")
    [checked_in] = user.threads
    assert checked_in is not threading.current_thread()  # the test runs on the event loop
    await communicator.disconnect()
