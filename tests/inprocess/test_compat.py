"""The API and wire shapes of channels-rpc 1.0.1 that this package keeps (upstream.md)."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from channels_rpc import AsyncJsonRpcWebsocketConsumer, JsonRpcError, RpcContext
from channels_rpc.config import RpcConfig
from channels_rpc.decorators import permission_required
from channels_rpc.envelope import Call, response_message
from channels_rpc.registry import MethodInfo, consumer_key
from channels_rpc.threads import ThreadPool
from channels_rpc.worker import CallHandler
from tests.inprocess.helpers import (
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

pytestmark = pytest.mark.anyio


class LegacyConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


class LegacyChild(LegacyConsumer):
    pass


@LegacyConsumer.rpc_method("math.subtract")
async def subtract(minuend: int, subtrahend: int) -> int:
    """Subtract two numbers."""
    return minuend - subtrahend


@LegacyConsumer.rpc_method
async def bare(ctx: RpcContext, value: int = 1) -> int:
    return value


@LegacyConsumer.rpc_method(websocket=False)
async def hidden() -> str:
    return "hidden"


@LegacyConsumer.rpc_method(timeout=0.2)
async def too_slow() -> None:
    await asyncio.sleep(5)


@LegacyConsumer.rpc_method()
async def fails_with(code: int, data: Any = None) -> None:
    raise JsonRpcError(None, code, data)


@LegacyConsumer.rpc_notification()
async def notif(msg: str) -> None:
    """Fire and forget."""


# ---------------------------------------------------------------------------------------------
# Registration and introspection


async def test_custom_names_and_bare_decorators_register_methods() -> None:
    assert LegacyConsumer.get_rpc_methods() == [
        "math.subtract",
        "bare",
        "hidden",
        "too_slow",
        "fails_with",
    ]
    assert LegacyConsumer.get_rpc_notifications() == ["notif"]
    # Bare use returns the function itself (mypy sees a decorator: rpc_method has no overloads).
    function: Any = bare
    assert await function(RpcContext(None, "bare", 1, False), 5) == 5
    communicator = await connect(LegacyConsumer)
    assert await call(communicator, "math.subtract", {"minuend": 42, "subtrahend": 23}) == result(
        1, 19
    )
    assert await call(communicator, "bare", [3], rpc_id=2) == result(2, 3)
    await communicator.disconnect()


async def test_get_method_info_describes_a_method() -> None:
    info = LegacyConsumer.get_method_info("bare")
    assert isinstance(info, MethodInfo)
    assert (info.name, info.func, info.signature, info.docstring) == (
        "bare",
        bare,
        "(ctx: 'RpcContext', value: 'int' = 1) -> 'int'",
        None,
    )
    assert info.accepts_context is True
    assert info.transport_options == {"websocket": True}
    assert info.is_notification is False
    assert LegacyConsumer.get_method_info("notif").is_notification is True


async def test_get_method_info_of_an_unknown_name_raises_key_error() -> None:
    with pytest.raises(KeyError) as raised:
        LegacyConsumer.get_method_info("x")
    assert raised.value.args == ("Method 'x' not registered",)


async def test_describe_api_has_the_shape_of_1_0_1() -> None:
    api = LegacyConsumer.describe_api()
    assert set(api) == {"jsonrpc", "consumer", "methods", "notifications"}
    assert (api["jsonrpc"], api["consumer"]) == ("2.0", "LegacyConsumer")
    assert api["methods"][0] == {
        "name": "math.subtract",
        "signature": "(minuend: 'int', subtrahend: 'int') -> 'int'",
        "doc": "Subtract two numbers.",
        "accepts_context": False,
        "transports": ["websocket"],
    }
    assert api["methods"][2]["transports"] == []
    assert api["notifications"] == [
        {
            "name": "notif",
            "signature": "(msg: 'str') -> 'None'",
            "doc": "Fire and forget.",
            "accepts_context": False,
        }
    ]
    assert LegacyChild.describe_api()["methods"] == []


async def test_websocket_false_methods_look_like_unknown_ones() -> None:
    communicator = await connect(LegacyConsumer)
    assert await call(communicator, "hidden") == error(
        1, -32601, "Method Not Found: 'hidden'", {"method": "hidden"}
    )
    await communicator.disconnect()


async def test_subclasses_do_not_inherit_methods() -> None:
    assert LegacyChild.get_rpc_methods() == []
    communicator = await connect(LegacyChild)
    answer = await call(communicator, "math.subtract", [2, 1])
    assert answer["error"]["message"] == "Method Not Found: 'math.subtract'"
    await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# Consumer methods


async def test_validate_scope_raises_for_a_scope_that_is_not_a_dict() -> None:
    consumer = LegacyConsumer()
    consumer.scope = {"type": "websocket", "path": "/ws/"}
    consumer.validate_scope()
    consumer.scope = ["not", "a", "dict"]
    with pytest.raises(ValueError, match="Scope must be a dict"):
        consumer.validate_scope()


async def test_notify_channel_sends_a_notification_from_the_live_consumer() -> None:
    class GreetingConsumer(AsyncJsonRpcWebsocketConsumer):
        async def connect(self) -> None:
            await self.accept()
            await self.notify_channel("welcome", {"path": self.scope["path"]})

    communicator = await connect(GreetingConsumer, "/ws/hello/")
    assert await receive(communicator) == {
        "jsonrpc": "2.0",
        "method": "welcome",
        "params": {"path": "/ws/hello/"},
    }
    await communicator.disconnect()


async def test_notify_channel_encodes_like_ctx_notify() -> None:
    class ClockConsumer(AsyncJsonRpcWebsocketConsumer):
        async def connect(self) -> None:
            await self.accept()
            await self.notify_channel("clock", {"at": datetime.datetime(2024, 1, 2, 3, 4, 5)})

    communicator = await connect(ClockConsumer)
    assert await receive(communicator, timeout=0.5) == {
        "jsonrpc": "2.0",
        "method": "clock",
        "params": {"at": "2024-01-02T03:04:05"},
    }
    await communicator.disconnect()


class SortedSetEncoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        return sorted(o) if isinstance(o, set) else super().default(o)


async def test_encode_json_is_an_async_classmethod_honouring_the_encoder() -> None:
    class EncodedConsumer(AsyncJsonRpcWebsocketConsumer):
        json_encoder_class = SortedSetEncoder

    assert await EncodedConsumer.encode_json({"s": {2, 1}}) == '{"s": [1, 2]}'
    assert await LegacyConsumer.encode_json({"s": {1}}) == '{"s": "{1}"}'  # str() fallback


# ---------------------------------------------------------------------------------------------
# Wire shapes of upstream.md section 5 that are kept


LONG_ID = "x" * 300


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        pytest.param(
            {"jsonrpc": "2.0", "method": "nope", "id": 1},
            error(1, -32601, "Method Not Found: 'nope'", {"method": "nope"}),
            id="9-unknown-method",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "notif", "id": 5},
            error(5, -32601, "Method Not Found: 'notif'", {"method": "notif"}),
            id="14-request-to-a-notification",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "math.subtract", "params": [3, 1], "id": None},
            result(None, 2),
            id="18-null-id",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "math.subtract", "params": [3, 1], "id": "abc-1"},
            result("abc-1", 2),
            id="19-string-id",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "math.subtract", "params": [3, 1], "id": 0},
            result(0, 2),
            id="19-zero-id",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "math.subtract", "params": [3, 1], "id": LONG_ID},
            error(None, -32600, "Request ID too long (max: 256 chars)"),
            id="21-long-id",
        ),
        pytest.param(
            {"jsonrpc": "1.0", "method": "math.subtract", "id": 3},
            error(
                3,
                -32600,
                "Invalid Request: Invalid JSON-RPC version '1.0', expected '2.0'",
                {"version": "1.0"},
            ),
            id="30-version-1.0",
        ),
        pytest.param(
            {"method": "math.subtract", "id": 3},
            error(
                3,
                -32600,
                "Invalid Request: Invalid JSON-RPC version 'None', expected '2.0'",
                {"version": None},
            ),
            id="31-version-missing",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "id": 1},
            error(
                1,
                -32600,
                "Invalid Request: Missing required 'method' field",
                {"field": "Missing required 'method' field"},
            ),
            id="32-missing-method",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": 5, "id": 1},
            error(
                1,
                -32600,
                "Invalid Request: 'method' must be a string, got int",
                {"field": "'method' must be a string, got int"},
            ),
            id="33-method-not-a-string",
        ),
        pytest.param(
            {
                "jsonrpc": "2.0",
                "method": "fails_with",
                "params": [-32602, {"field": "x"}],
                "id": 11,
            },
            error(11, -32602, "Invalid Params", {"field": "x"}),
            id="44-invalid-params-error",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "fails_with", "params": [-32000, {"why": "x"}], "id": 12},
            error(12, -32000, "Application Error", {"why": "x"}),
            id="45-error-with-id-None-gets-the-request-id",
        ),
        pytest.param(
            {
                "jsonrpc": "2.0",
                "method": "fails_with",
                "params": [-32602, {"expected": "int", "actual": "str"}],
                "id": 2,
            },
            error(
                2,
                -32602,
                "Invalid Params: Expected int, got str",
                {"expected": "int", "actual": "str"},
            ),
            id="47-expected-actual",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "too_slow", "id": 4},
            error(
                4,
                -32603,
                "Internal Error: Method execution timed out after 0.2 seconds",
                {"timeout": 0.2},
            ),
            id="48-timeout",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "math.subtract", "params": [3, 1], "id": 8, "foo": "bar"},
            result(8, 2),
            id="72-extra-members-ignored",
        ),
    ],
)
async def test_upstream_wire_shapes(frame: dict[str, Any], expected: dict[str, Any]) -> None:
    communicator = await connect(LegacyConsumer)
    await send(communicator, frame)
    assert await receive(communicator) == expected
    await communicator.disconnect()


async def test_non_ascii_method_names_are_escaped_in_the_answer() -> None:
    communicator = await connect(LegacyConsumer)
    await send(communicator, {"jsonrpc": "2.0", "method": "äöü", "id": 1})
    assert "Method Not Found: '\\u00e4\\u00f6\\u00fc'" in await receive_text(communicator)
    await communicator.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        notification("notif", {"msg": "hi"}),
        notification("missing"),
        notification("math.subtract", [1, 2]),
    ],
    ids=["11-notification", "12-unknown-notification", "13-notification-to-a-method"],
)
async def test_notifications_are_never_answered(frame: dict[str, Any]) -> None:
    communicator = await connect(LegacyConsumer)
    await send(communicator, frame)
    assert await silent(communicator)
    assert await call(communicator, "math.subtract", [1, 1]) == result(1, 0)  # still serving
    await communicator.disconnect()


# ---------------------------------------------------------------------------------------------
# Issue 12: what 1.0.1 users relied on


class KeptConsumer(AsyncJsonRpcWebsocketConsumer):
    pass


#: Set by the test that holds calls; the held methods wait on it.
GATES: dict[str, asyncio.Event] = {}
RAN: list[str] = []
#: Set once the notification of that tag has run (it runs on after its connection closed).
NOTED: dict[str, asyncio.Event] = {}


@KeptConsumer.rpc_method()
async def held(tag: str) -> str:
    await GATES[tag].wait()
    return tag


@KeptConsumer.rpc_notification()
async def held_note(tag: str) -> None:
    await GATES[tag].wait()
    RAN.append(tag)
    if tag in NOTED:
        NOTED[tag].set()


@KeptConsumer.rpc_method(queue="rpc.nobody-serves", timeout=0.2)
async def unserved() -> None:
    """On a queue no worker serves."""


@KeptConsumer.rpc_method()
@permission_required("app.view_secret")
async def guarded(ctx: RpcContext, tag: str) -> str:
    RAN.append(tag)
    return tag


@pytest.fixture(autouse=True)
def _fresh_gates() -> None:
    GATES.clear()
    RAN.clear()
    NOTED.clear()


async def test_a_close_cancels_calls_but_an_accepted_notification_runs_on() -> None:
    GATES.update(call=asyncio.Event(), note=asyncio.Event(), other=asyncio.Event())
    NOTED["note"] = asyncio.Event()
    closing = await connect(KeptConsumer)
    staying = await connect(KeptConsumer)  # keeps the embedded worker running
    await send(closing, request("held", ["call"], 1))
    await send(closing, notification("held_note", ["note"]))
    await send(staying, request("held", ["other"], 2))
    await closing.disconnect()
    GATES["note"].set()
    GATES["call"].set()
    GATES["other"].set()
    assert await receive(staying) == result(2, "other")
    await asyncio.wait_for(NOTED["note"].wait(), 5)  # the two ran at once: either may be first
    assert RAN == ["note"]
    await staying.disconnect()


async def test_the_last_close_gives_a_running_notification_the_shutdown_grace() -> None:
    GATES["note"] = asyncio.Event()
    communicator = await connect(KeptConsumer)
    await send(communicator, notification("held_note", ["note"]))
    assert await silent(communicator)  # taken by the worker by now
    asyncio.get_running_loop().call_later(0.1, GATES["note"].set)
    await communicator.disconnect()
    assert RAN == ["note"]


@pytest.mark.parametrize(("limit", "busy"), [(0, 0), (64, 36)])
async def test_max_in_flight_0_means_no_limit(limit: int, busy: int) -> None:
    GATES["all"] = asyncio.Event()
    with rpc_settings(MAX_IN_FLIGHT=limit):
        communicator = await connect(KeptConsumer)
        for rpc_id in range(100):
            await send(communicator, request("held", ["all"], rpc_id))
        refused = [await receive(communicator) for _ in range(busy)]
        GATES["all"].set()
        answers = [await receive(communicator) for _ in range(100 - busy)]
        await communicator.disconnect()
    assert {answer["error"]["code"] for answer in refused} <= {-32010}
    assert [answer.get("result") for answer in answers] == ["all"] * (100 - busy)


async def test_max_in_flight_must_be_0_or_more() -> None:
    with rpc_settings(MAX_IN_FLIGHT=-1), pytest.raises(Exception, match="or 0 for no limit"):
        await connect(KeptConsumer)


async def test_an_unanswered_call_names_its_queue_and_the_frontend_says_so_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from channels_rpc import unanswered

    monkeypatch.setattr(unanswered, "_tally", unanswered.Unanswered())  # a minute of its own
    with (
        rpc_settings(EXECUTION="workers", REPLY_GRACE=0.0),
        caplog.at_level(logging.WARNING, "channels_rpc"),
    ):
        communicator = await connect(KeptConsumer)
        answers = [await call(communicator, "unserved", rpc_id=n) for n in range(3)]
        await communicator.disconnect()
    assert answers == [
        error(
            n,
            -32012,
            "Deadline Exceeded: no answer within 0.2 seconds",
            {"timeout": 0.2, "queue": "rpc.nobody-serves"},
        )
        for n in range(3)
    ]
    warnings = [r.getMessage() for r in caplog.records if "is an rpcworker" in r.getMessage()]
    assert warnings == [
        "1 request on queue rpc.nobody-serves got no answer from a worker in time "
        "(e.g. 'unserved'): is an rpcworker serving rpc.nobody-serves?"
    ]


def test_unanswered_calls_are_reported_once_per_queue_and_interval() -> None:
    from channels_rpc.unanswered import Unanswered

    now = [0.0]
    tally = Unanswered(interval=60.0, clock=lambda: now[0])
    assert tally.expired("q", "a") == (1, "a")
    assert tally.expired("q", "b") is None
    assert tally.expired("other", "c") == (1, "c")
    now[0] = 59.0
    assert tally.expired("q", "d") is None
    now[0] = 60.0
    assert tally.expired("q", "e") == (3, "b")  # b, d and e since the last report


def forged(method: str, user: Any, *, reply_to: str = "specific.forged!reply") -> dict[str, Any]:
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": ["forged"], "id": 1})
    return Call(
        consumer=consumer_key(KeptConsumer),
        method=method,
        body=body,
        queue="rpc.default",
        call=1,
        reply_to=reply_to,
        deadline=None,
        timeout=None,
        sent_at=0.0,
        scope={"type": "websocket", "user": user},
    ).to_message()


async def test_a_worker_refuses_a_protected_method_to_a_request_no_frontend_checked() -> None:
    layer = InMemoryChannelLayer()
    handler = CallHandler(layer, RpcConfig())  # as in rpcworker: requests may come from anyone
    await handler(forged("guarded", None))
    answer = await layer.receive("specific.forged!reply")
    refusal = error(1, -32601, "Method Not Found: 'guarded'", {"method": "guarded"})["error"]
    assert answer == response_message(1, False, json.dumps(refusal, separators=(",", ":")))
    assert RAN == []
    handler.close()


async def test_the_function_checks_nothing_twice_when_the_worker_checked() -> None:
    class CountingUser:
        is_authenticated = True
        pk = 3

        def __init__(self) -> None:
            self.checks = 0

        def has_perms(self, perms: Any) -> bool:
            self.checks += 1
            return True

    user = CountingUser()
    communicator = await connect(KeptConsumer, user=user)
    assert await call(communicator, "guarded", ["ok"]) == result(1, "ok")
    await communicator.disconnect()
    assert user.checks == 1  # the front-end's; the embedded worker and the function trust it
    # Called directly, the function checks for itself.
    context = RpcContext(None, "guarded", 5, False, scope={"user": user})
    assert await guarded(context, "direct") == "direct"
    assert user.checks == 2
    with pytest.raises(JsonRpcError) as denied:
        await guarded(RpcContext(None, "guarded", 5, False, scope={}), "nobody")
    assert (denied.value.code, denied.value.rpc_id, denied.value.data) == (-32601, 5, None)


async def test_a_closed_thread_pool_keeps_no_thread() -> None:
    pool = ThreadPool(2, idle_seconds=60, name="compat-closed")
    release, running = threading.Event(), threading.Event()

    def block() -> bool:
        running.set()
        return release.wait(5)

    busy = asyncio.ensure_future(pool.run(block))
    assert await asyncio.to_thread(running.wait, 5)
    assert await pool.run(lambda: "idle after this") == "idle after this"
    threads = await asyncio.to_thread(_wait_for_threads, "compat-closed-", 2)
    pool.close(wait=5)
    assert pool.threads == 1  # the idle one ended; the busy one ends with its function
    release.set()
    assert await busy is True
    for thread in threads:
        await asyncio.to_thread(thread.join, 5)
    assert not [thread.name for thread in threads if thread.is_alive()]
    assert await pool.run(lambda: "late") == "late"  # still runs, in a thread that ends


def _wait_for_threads(prefix: str, count: int) -> list[threading.Thread]:
    for _ in range(500):
        threads = [t for t in threading.enumerate() if t.name.startswith(prefix)]
        if len(threads) == count:
            return threads
        threading.Event().wait(0.01)
    raise AssertionError(f"no {count} threads named {prefix}*")


EXIT_PROBE = """
import asyncio, atexit, threading

# Registered first, so it runs last: after channels_rpc's own exit handler.
atexit.register(lambda: print([t.name for t in threading.enumerate() if "probe" in t.name]))

from channels_rpc.threads import ThreadPool

pool = ThreadPool(2, idle_seconds=60, name="probe")
asyncio.run(pool.run(lambda: None))
"""


def test_no_pool_thread_is_left_waiting_at_interpreter_exit() -> None:
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", EXIT_PROBE], cwd=repo, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr
