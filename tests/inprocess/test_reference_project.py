"""The reference project's endpoint (workers.consumers.RpcConsumer) with the embedded worker.

Its ORM methods (add_note, count_notes) are left to the integration suite: the in-memory
SQLite database of tests/settings.py is per thread, and sync methods run in worker threads.
"""

from __future__ import annotations

import os

import pytest

import workers.rpc  # noqa: F401  (found by autodiscovery too: it registers the methods)
from tests.inprocess.helpers import call, connect, error, notification, receive, result, send
from workers.consumers import RpcConsumer

pytestmark = pytest.mark.anyio


async def test_the_reference_methods_answer() -> None:
    communicator = await connect(RpcConsumer, "/ws/rpc/")
    assert await call(communicator, "add", [1.5, 2]) == result(1, 3.5)
    assert await call(communicator, "echo", [{"a": [1, None]}]) == result(1, {"a": [1, None]})
    assert await call(communicator, "divide", {"a": 1, "b": 0}, rpc_id="d") == error(
        "d", -32602, "Invalid Params", {"field": "b", "error": "must not be 0"}
    )
    assert await call(communicator, "fail", rpc_id=2) == error(
        2, -32000, "Application error occurred"
    )
    assert await call(communicator, "whoami", rpc_id="w") == result(
        "w", {"worker_pid": os.getpid(), "path": "/ws/rpc/", "rpc_id": "w"}
    )
    await communicator.disconnect()


async def test_the_log_notification_pushes_to_the_caller() -> None:
    communicator = await connect(RpcConsumer, "/ws/rpc/")
    await send(communicator, notification("log", {"message": "hi"}))
    assert await receive(communicator) == notification("logged", {"message": "hi"})
    await communicator.disconnect()


async def test_the_reference_api_lists_every_method() -> None:
    api = RpcConsumer.describe_api()
    assert [m["name"] for m in api["methods"]] == [
        "add",
        "subtract",
        "echo",
        "sleep",
        "add_note",
        "count_notes",
        "divide",
        "fail",
        "whoami",
        "build_report",
        "count_to",
        "subscribe",
        "unsubscribe",
        "publish",
        "geometry.distance",
        "reports.build",
    ]
    assert [n["name"] for n in api["notifications"]] == ["log"]


# Typed params, as a new user meets them (docs/guides/methods.md, Typed params).


async def test_a_param_of_the_wrong_type_is_refused_naming_it() -> None:
    communicator = await connect(RpcConsumer, "/ws/rpc/")
    answer = await call(communicator, "add", ["a", "b"], rpc_id="t")
    assert answer["error"]["code"] == -32602
    data = answer["error"]["data"]
    assert data["param"] == "a"
    assert data["error"] == "a: Input should be a valid number, unable to parse string as a number"
    assert [e["loc"] for e in data["errors"]] == [["a"], ["b"]]
    # Ints stay ints where a float is declared; JSON numbers in strings are converted.
    assert await call(communicator, "add", [1, 2]) == result(1, 3)
    assert await call(communicator, "add", {"a": "1.5", "b": 1}) == result(1, 2.5)
    await communicator.disconnect()


async def test_a_method_taking_a_dataclass_gets_one() -> None:
    communicator = await connect(RpcConsumer, "/ws/rpc/")
    points = {"a": {"x": 0, "y": 0}, "b": {"x": 3, "y": "4"}}
    assert await call(communicator, "geometry.distance", points) == result(1, 5.0)
    answer = await call(communicator, "geometry.distance", [{"x": 0}, {"x": 1, "y": 1}])
    assert answer["error"]["data"]["errors"] == [
        {"loc": ["a", "y"], "msg": "Field required", "type": "missing"}
    ]
    await communicator.disconnect()


async def test_a_dataclass_result_becomes_json_by_its_annotation() -> None:
    communicator = await connect(RpcConsumer, "/ws/rpc/")
    await send(
        communicator,
        {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "reports.build",
            "params": {"steps": 2, "format": "html"},
        },
    )
    frames = [await receive(communicator) for _ in range(3)]
    assert [f.get("method") for f in frames[:2]] == ["rpc.progress", "rpc.progress"]
    assert frames[2] == result(
        7,
        {
            "title": "Report of 2 steps",
            "steps": 2,
            "format": "html",
            "sections": ["section 1 of 2", "section 2 of 2"],
        },
    )
    wrong = await call(communicator, "reports.build", {"format": "pdf"}, rpc_id=8)
    assert wrong["error"]["data"]["param"] == "format"
    assert wrong["error"]["data"]["errors"][0]["type"] == "literal_error"
    await communicator.disconnect()


async def test_discover_publishes_the_schema_validation_uses() -> None:
    communicator = await connect(RpcConsumer, "/ws/rpc/")
    doc = (await call(communicator, "rpc.discover"))["result"]
    methods = {m["name"]: m for m in doc["methods"]}
    distance = methods["geometry.distance"]
    assert [p["schema"] for p in distance["params"]] == [{"$ref": "#/components/schemas/Point"}] * 2
    point = doc["components"]["schemas"]["Point"]
    assert point["required"] == ["x", "y"]
    assert point["properties"]["x"]["type"] == "number"
    build = methods["reports.build"]
    assert [p["name"] for p in build["params"]] == ["steps", "format", "delay"]  # ctx unpublished
    assert build["params"][1]["schema"] == {"enum": ["text", "html"], "type": "string"}
    assert build["result"]["schema"] == {"$ref": "#/components/schemas/Report"}
    await communicator.disconnect()
