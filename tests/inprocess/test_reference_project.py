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
    ]
    assert [n["name"] for n in api["notifications"]] == ["log"]
