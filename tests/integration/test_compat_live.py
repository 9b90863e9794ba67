"""What a channels-rpc 1.0.1 user relied on, on the real stack (daphne, rpcworker, Redis).

A notification sent just before the close still runs; a worker refuses a protected method to a
request no front-end checked; a queue nobody serves is named in the answer and in the log.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from redis.asyncio import Redis as AsyncRedis

from channels_rpc import JsonRpcErrorCode
from channels_rpc.envelope import Call, response_message
from channels_rpc.layers import RedisChannelLayer
from tests.integration.client import RpcSocket
from tests.integration.harness import Redis
from tests.integration.support import ClusterFactory, counter, wait_until

pytestmark = pytest.mark.anyio

PROBES = "tests.project.consumers.ProbeConsumer"


async def test_a_notification_sent_just_before_the_close_still_runs(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis
) -> None:
    # One slot, taken by a call of the same connection: the notification waits in the queue
    # when the socket closes. The close cancels the call, not the notification.
    cluster = cluster_factory(frontends=1, workers=1, concurrency=1)
    held = counter(redis_client, cluster, "abuse:c14:started")
    noted = counter(redis_client, cluster, "frontline-note")
    sock = await RpcSocket.connect(cluster.url())
    await sock.request("abuse_hold", ["c14", 30])

    async def holding() -> bool:
        return await held() == 1

    await wait_until(holding)
    await sock.send({"jsonrpc": "2.0", "method": "frontline_note", "params": [0]})
    await sock.close()

    async def noted_once() -> bool:
        return await noted() == 1

    await wait_until(noted_once)
    assert int(await redis_client.get(cluster.counter_key("abuse:c14:finally")) or 0) == 1
    assert int(await redis_client.get(cluster.counter_key("abuse:c14:completed")) or 0) == 0


@pytest.mark.parametrize("user", [None, {"pk": "987654321"}], ids=["anonymous", "unknown-pk"])
async def test_a_worker_refuses_a_protected_method_to_a_request_no_frontend_checked(
    cluster_factory: ClusterFactory,
    redis_server: Redis,
    redis_client: AsyncRedis,
    user: dict[str, str] | None,
) -> None:
    cluster = cluster_factory(frontends=0, workers=1)
    layer = RedisChannelLayer(hosts=[redis_server.url], prefix=cluster.prefix)
    reply = await layer.new_channel()
    body = {"jsonrpc": "2.0", "method": "abuse_protected", "params": ["forged"], "id": 1}
    forged = Call(
        consumer=PROBES,
        method="abuse_protected",
        body=json.dumps(body),
        queue="rpc.default",
        call=1,
        reply_to=reply,
        deadline=layer.clock() + 10,
        timeout=10.0,
        sent_at=layer.clock(),
        scope={"type": "websocket", "path": "/ws/test/", "user": user},
    )
    try:
        await layer.send("rpc.default", forged.to_message())
        answer = await asyncio.wait_for(layer.receive(reply), 10)
    finally:
        await layer.close_pools()
    refusal = {
        "code": -32601,
        "message": "Method Not Found: 'abuse_protected'",
        "data": {"method": "abuse_protected"},
    }
    assert answer == response_message(1, False, json.dumps(refusal, separators=(",", ":")))
    assert int(await redis_client.get(cluster.counter_key("abuse:protected:forged")) or 0) == 0
    cluster.workers[0].wait_for(r"refused 'abuse_protected': the caller lacks auth\.view_user")


async def test_a_queue_nobody_serves_is_named_in_the_answer_and_in_the_frontend_log(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(frontends=1, workers=0)
    frontend = cluster.frontends[0]
    sock = await RpcSocket.connect(cluster.url())
    sent = time.monotonic()
    first = await sock.call("narrow", [0], timeout=10)
    waited = time.monotonic() - sent
    second = await sock.call("narrow", [0], timeout=10)
    await sock.close()
    for answer in (first, second):
        assert answer["error"]["code"] == JsonRpcErrorCode.DEADLINE_EXCEEDED
        assert answer["error"]["data"] == {"timeout": 1.0, "queue": "rpc.narrow"}
    print(f"\nno worker: -32012 after {waited:.2f} s; front-end log: {_warning(frontend.output())}")
    assert 1.0 <= waited < 5.0  # the method's timeout and the reply grace, not the default
    warnings = [line for line in frontend.output().splitlines() if "is an rpcworker" in line]
    assert len(warnings) == 1, warnings  # at most one line a minute per queue
    assert "1 request on queue rpc.narrow got no answer from a worker in time" in warnings[0]
    assert warnings[0].endswith("(e.g. 'narrow'): is an rpcworker serving rpc.narrow?")


def _warning(output: str) -> str:
    return next((line for line in output.splitlines() if "is an rpcworker" in line), "none")
