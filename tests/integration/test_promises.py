"""README promises checked on real processes that no other test would see broken (issue 11).

Params bound at the front-end with no worker running, the user and scope a worker is given,
``rpcworker --grace`` and ``--layer``, and ``rpchealth --url`` run against live and dead
front-ends.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis

from channels_rpc import JsonRpcErrorCode
from channels_rpc.layers import RedisChannelLayer
from tests.integration.client import RpcSocket
from tests.integration.harness import REPO, Cluster, Redis
from tests.integration.support import ClusterFactory, wait_until

pytestmark = pytest.mark.anyio

TIMEOUT = 5.0  # DEFAULT_TIMEOUT of tests.project.settings
#: What hops through Redis, a worker and daphne may add to a promised time on this shared,
#: 2-core machine: the slack of every timing bound below.
SCHEDULING = 0.5


@asynccontextmanager
async def socket(url: str, **options: Any) -> AsyncIterator[RpcSocket]:
    """A client connection, closed whatever the test does (no socket outlives its test)."""
    sock = await RpcSocket.connect(url, **options)
    try:
        yield sock
    finally:
        await sock.close()


def manage(cluster: Cluster, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m workers.manage ARGS`` of the test project to completion."""
    return subprocess.run(
        [sys.executable, "-m", "workers.manage", *args],
        cwd=REPO,
        env=cluster.env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


# ---------------------------------------------------------------------------------------------
# Methods: "Params bind to the signature at the front-end: missing, extra or unknown arguments
# are answered with -32602 before any worker is involved." No rpcworker runs here at all.


async def test_wrong_params_are_answered_by_the_front_end_with_no_worker_running(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, redis_server: Redis
) -> None:
    cluster = cluster_factory(frontends=1, workers=0)
    queue = cluster.prefix + "rpc.default"  # the Redis key of the queue
    async with socket(cluster.url()) as sock:
        started = time.monotonic()
        answers = [
            await sock.call("sleep", params)
            for params in ([], [1, 2], {"seconds": 1, "extra": 2}, {"second": 1}, ["soon"])
        ]
        elapsed = time.monotonic() - started
        await sock.send({"jsonrpc": "2.0", "method": "sleep", "params": []})  # dropped
        assert [a["error"]["code"] for a in answers] == [JsonRpcErrorCode.INVALID_PARAMS] * 5
        assert answers[-1]["error"]["data"]["param"] == "seconds"  # sleep(seconds: float)
        assert elapsed < TIMEOUT  # none waited for a deadline: the front-end answered
        # Nothing was queued; a good call is (this is how a queued call shows).
        rpc_id = await sock.request("sleep", [0.1])

        async def queued() -> bool:
            return int(await redis_client.zcard(queue)) > 0

        await wait_until(queued)
        [member] = await redis_client.zrange(queue, 0, -1)
        request = RedisChannelLayer(hosts=[redis_server.url]).deserialize(member)
        assert json.loads(request["body"])["id"] == rpc_id  # the good call, not the notification


# ---------------------------------------------------------------------------------------------
# Methods: ctx.scope holds "path, query_string, client, url_route, user loaded lazily from its
# primary key, session_key"; Security: "Workers see the user the front-end authenticated
# (ctx.scope["user"], loaded from its primary key)".

SESSION_SCRIPT = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore

user, _ = get_user_model()._default_manager.get_or_create(username="promise-carol")
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
print(json.dumps({"pk": str(user.pk), "session": session.session_key}))
"""


async def test_a_worker_loads_the_callers_user_by_primary_key_and_gets_the_scope(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(frontends=1, workers=1)
    done = await asyncio.to_thread(manage, cluster, "shell", "-c", SESSION_SCRIPT)
    assert done.returncode == 0, done.stderr
    carol = json.loads(done.stdout.splitlines()[-1])
    cookie = [("Cookie", f"sessionid={carol['session']}")]
    url = cluster.url("/ws/test/") + "?page=2&q=%C3%A9"
    async with socket(url, additional_headers=cookie) as as_carol, socket(url) as anonymous:
        seen = (await as_carol.call("promise_scope"))["result"]
        seen_anonymous = (await anonymous.call("promise_scope"))["result"]
    assert seen == {
        "user": {
            "class": "User",
            "authenticated": True,
            "pk": carol["pk"],
            "username": "promise-carol",
        },
        "path": "/ws/test/",
        "query_string": "page=2&q=%C3%A9",
        "session_key": carol["session"],
        "client_host": "127.0.0.1",
        "url_route": {"args": [], "kwargs": {}},
        "worker_pid": cluster.workers[0].pid,
    }
    assert seen_anonymous["user"] == {
        "class": "AnonymousUser",
        "authenticated": False,
        "pk": None,
        "username": "",
    }
    assert seen_anonymous["worker_pid"] == cluster.workers[0].pid


# ---------------------------------------------------------------------------------------------
# Workers: rpcworker [--grace S] [--layer ALIAS]. Guarantees: on SIGTERM a worker "finishes
# running calls within SHUTDOWN_GRACE (answering -32011 for any still running after it), exits 0".

GRACE = 0.5
HOLD = 4.0  # running calls outlast GRACE, but not the test project's SHUTDOWN_GRACE (5 s)


async def stop_while_running(
    cluster: Cluster, redis_client: AsyncRedis, calls: int = 3
) -> tuple[list[Any], list[float]]:
    """SIGTERM the worker while it runs ``calls`` calls; their codes and seconds after it."""
    worker = cluster.workers[0]
    async with socket(cluster.url()) as sock:
        ids = [await sock.request("hold", [HOLD]) for _ in range(calls)]
        key = cluster.counter_key(f"started:{worker.pid}")

        async def all_running() -> bool:
            return int(await redis_client.get(key) or 0) == calls

        await wait_until(all_running)
        stopped = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        answers = await sock.wait_for(ids, timeout=HOLD + SCHEDULING)
    codes = [a.response.get("error", {}).get("code") for a in answers.values()]
    after = [a.at - stopped for a in answers.values()]
    print(f"\nstopped, grace {GRACE} s: answered {codes} after {[f'{t:.2f}' for t in after]} s")
    assert await asyncio.to_thread(worker.popen.wait, 10) == 0
    return codes, after


@pytest.mark.parametrize(
    "given",
    [
        {"args": ["--grace", str(GRACE)]},
        {"CHANNELS_RPC_OVERRIDES": json.dumps({"SHUTDOWN_GRACE": GRACE})},
    ],
    ids=["--grace", "SHUTDOWN_GRACE"],
)
async def test_a_stopping_worker_answers_32011_for_calls_still_running_after_its_grace(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis, given: dict[str, Any]
) -> None:
    cluster = cluster_factory(frontends=1, workers=1, **given)
    codes, after = await stop_while_running(cluster, redis_client)
    assert codes == [JsonRpcErrorCode.SERVICE_UNAVAILABLE] * 3
    assert min(after) >= GRACE  # the calls were given their grace


async def test_a_stopping_worker_answers_by_its_grace(
    cluster_factory: ClusterFactory, redis_client: AsyncRedis
) -> None:
    cluster = cluster_factory(frontends=1, workers=1, args=["--grace", str(GRACE)])
    _, after = await stop_while_running(cluster, redis_client)
    assert max(after) <= GRACE + SCHEDULING


async def test_rpcworker_serves_through_the_layer_alias_it_is_given(
    cluster_factory: ClusterFactory,
) -> None:
    # The worker's CHANNELS_RPC names an alias CHANNEL_LAYERS does not have: only --layer
    # makes it reach the front-end's Redis.
    nowhere = json.dumps({"CHANNEL_LAYER": "nowhere"})
    cluster = cluster_factory(frontends=1, workers=0)
    worker = cluster.start_worker(args=["--layer", "default"], CHANNELS_RPC_OVERRIDES=nowhere)
    async with socket(cluster.url()) as sock:
        assert (await sock.call("pid"))["result"] == worker.pid
    refused = await asyncio.to_thread(manage, cluster, "rpcworker", "--layer", "nowhere")
    assert refused.returncode == 1
    assert "No channel layer is configured" in refused.stderr


# ---------------------------------------------------------------------------------------------
# Operations: "rpchealth --url http://127.0.0.1:8000/healthz/ probes a front-end": exit 0 when
# its channel layer answers, 1 otherwise.


async def test_rpchealth_url_tells_a_live_front_end_from_a_dead_one(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(frontends=1, workers=0)
    # A second front-end whose Redis is gone: it runs, but its health view answers 503.
    dead_redis = json.dumps({"hosts": [f"unix://{cluster.log_dir}/no-redis.sock"]})
    cluster.start_frontend(CHANNEL_LAYER_OVERRIDES=dead_redis)
    live, without_redis = (f"http://127.0.0.1:{port}/healthz/" for port in cluster.ports)
    healthy = await asyncio.to_thread(manage, cluster, "rpchealth", "--url", live)
    unavailable = await asyncio.to_thread(manage, cluster, "rpchealth", "--url", without_redis)
    cluster.frontends[0].stop()
    gone = await asyncio.to_thread(manage, cluster, "rpchealth", "--url", live)
    assert (healthy.returncode, healthy.stdout.strip()) == (0, "healthy")
    assert unavailable.returncode == 1
    assert "unhealthy: HTTP Error 503" in unavailable.stderr
    assert gone.returncode == 1
    assert "unhealthy: <urlopen error [Errno 111] Connection refused>" in gone.stderr
