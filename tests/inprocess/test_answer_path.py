"""The one answer path (``sending.Calls`` over ``pending.PendingCalls``), seen from a client."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest

from channels_rpc import AsyncJsonRpcWebsocketConsumer
from tests.inprocess.helpers import call, connect, result, rpc_settings, silent

pytestmark = pytest.mark.anyio

#: The method's time limit and the grace after it: the front-end's deadline is their sum.
TIMEOUT, GRACE = 0.2, 0.1


class SlowResponse:
    """A ``process_response`` that takes longer than the call's whole deadline."""

    async def process_response(self, response: dict[str, Any], consumer: Any) -> dict[str, Any]:
        await asyncio.sleep(3 * (TIMEOUT + GRACE))
        return response


class SlowMiddlewareConsumer(AsyncJsonRpcWebsocketConsumer):
    middleware: ClassVar[Sequence[Any] | None] = [SlowResponse()]


@SlowMiddlewareConsumer.rpc_method(timeout=TIMEOUT)
async def quick() -> str:
    return "in time"


async def test_an_answer_that_came_in_time_is_not_turned_into_a_deadline_error() -> None:
    # The worker answered within the deadline; the front-end's own middleware then took longer
    # than it. The client gets the answer, once, not -32012.
    with rpc_settings(REPLY_GRACE=GRACE):
        communicator = await connect(SlowMiddlewareConsumer)
        assert await call(communicator, "quick") == result(1, "in time")
        assert await silent(communicator)
        await communicator.disconnect()
