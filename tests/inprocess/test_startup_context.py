"""A first parameter named ``ctx`` without annotation (issue 12, item 11).

channels-rpc 1.0.1 passes the context only to a first parameter annotated ``RpcContext``
(``inspect_accepts_context``: "Parameter must have a type annotation"), so an unannotated
``ctx`` is a param the client sends. This package keeps that (an unannotated ``context`` may
well be a client's param), and keeps it consistent: the call binding and ``rpc.discover`` both
treat it as a param. Whoever meant the context is told at registration, in the log.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from channels_rpc import AsyncJsonRpcWebsocketConsumer, RpcContext
from tests.inprocess.helpers import call, connect

pytestmark = pytest.mark.anyio


def unannotated(ctx, x):  # type: ignore[no-untyped-def]
    return [ctx, x]


def named_context(context, x):  # type: ignore[no-untyped-def]
    return [context, x]


def annotated(ctx: RpcContext, x: int) -> list[Any]:
    return [ctx.method_name, x]


def annotated_otherwise(ctx: int, x: int) -> list[int]:
    return [ctx, x]


def not_first(x, ctx):  # type: ignore[no-untyped-def]
    return [x, ctx]


def register_all(caplog: pytest.LogCaptureFixture) -> type[AsyncJsonRpcWebsocketConsumer]:
    class ContextConsumer(AsyncJsonRpcWebsocketConsumer):  # a fresh class for each test
        pass

    with caplog.at_level(logging.WARNING, logger="channels_rpc"):
        for func in (unannotated, named_context, annotated, annotated_otherwise, not_first):
            ContextConsumer.rpc_method()(func)
    return ContextConsumer


def test_registration_says_that_an_unannotated_ctx_is_a_param(
    caplog: pytest.LogCaptureFixture,
) -> None:
    register_all(caplog)
    assert [record.getMessage() for record in caplog.records] == [
        "RPC method 'unannotated': its first parameter 'ctx' has no annotation, so clients must "
        "send it as a param; annotate it `ctx: RpcContext` to receive the call's context instead",
        "RPC method 'named_context': its first parameter 'context' has no annotation, so "
        "clients must send it as a param; annotate it `context: RpcContext` to receive the "
        "call's context instead",
    ]


async def test_binding_and_discovery_agree_on_what_the_client_sends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = register_all(caplog)
    communicator = await connect(consumer)
    document = (await call(communicator, "rpc.discover"))["result"]
    params = {m["name"]: [p["name"] for p in m["params"]] for m in document["methods"]}
    assert params == {
        "unannotated": ["ctx", "x"],
        "named_context": ["context", "x"],
        "annotated": ["x"],
        "annotated_otherwise": ["ctx", "x"],
        "not_first": ["x", "ctx"],
    }
    # What discovery publishes is what a call must send: both params, or -32602.
    assert (await call(communicator, "unannotated", [1, 2]))["result"] == [1, 2]
    assert (await call(communicator, "unannotated", {"ctx": 1, "x": 2}))["result"] == [1, 2]
    missing = await call(communicator, "unannotated", [2])
    assert missing["error"]["code"] == -32602
    assert missing["error"]["data"] == {"error": "missing a required argument: 'x'"}
    assert (await call(communicator, "annotated", [2]))["result"] == ["annotated", 2]
    await communicator.disconnect()
