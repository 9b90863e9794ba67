"""Prometheus metrics of a real front-end (daphne, ``/metrics``) and worker (``--metrics-port``).

A bounded load of known outcomes goes through the cluster; both scrapes must count exactly it
(docs/guides/metrics.md).
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.client import RpcSocket
from tests.integration.support import ClusterFactory, Connect, wait_until

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> Samples:
    """Every sample at ``url``, by name and labels."""

    def get() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            return str(response.read().decode())

    text = await asyncio.to_thread(get)
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def outcomes(sock: RpcSocket, ids: list[Any]) -> Counter[str]:
    """The outcome of each call as the client saw it: "result" or the error code."""
    seen: Counter[str] = Counter()
    for answer in (await sock.wait_for(ids)).values():
        response = answer.response
        seen["result" if "result" in response else str(response["error"]["code"])] += 1
    return seen


async def test_both_scrapes_count_the_load_by_method_queue_and_outcome(
    cluster_factory: ClusterFactory, connect: Connect
) -> None:
    cluster = cluster_factory(workers=1, queues=["rpc.default"], args=["--metrics-port", "0"])
    worker_url = cluster.workers[0].wait_for(r"metrics=(http://\S+)").group(1)
    frontend_url = f"http://127.0.0.1:{cluster.ports[0]}/metrics"
    before_fe, before_w = await scrape(frontend_url), await scrape(worker_url)

    sock = await connect(cluster.url())
    load = {
        "sleep": [await sock.request("sleep", [0]) for _ in range(300)],
        "fault_raise": [await sock.request("fault_raise") for _ in range(50)],
        "slow": [await sock.request("slow", [5]) for _ in range(20)],  # its time limit is 1 s
    }
    cancelled = await sock.request("cancellable", [30])
    queued = [await sock.request("frontline_unserved") for _ in range(5)]  # nobody serves it
    await sock.wait_for([i for ids in load.values() for i in ids], timeout=30)
    await sock.send({"jsonrpc": "2.0", "method": "rpc.cancel", "params": {"id": cancelled}})
    await sock.wait_for([cancelled], timeout=10)
    seen = {method: await outcomes(sock, ids) for method, ids in load.items()}
    assert seen == {
        "sleep": {"result": 300},
        "fault_raise": {"-32000": 50},
        "slow": {"-32603": 20},  # (data.timeout: the error of a time limit, as in 1.0.1)
    }

    fe, w = await scrape(frontend_url), await scrape(worker_url)

    def counted(samples: Samples, name: str, **labels: str) -> float:
        base = before_fe if samples is fe else before_w
        return value(samples, name, **labels) - value(base, name, **labels)

    queue = "rpc.default"
    for method, by_outcome in seen.items():
        for outcome, count in by_outcome.items():
            labels = {"method": method, "queue": queue, "outcome": outcome}
            assert counted(fe, "channels_rpc_calls_total", **labels) == count, labels
            ran = counted(w, "channels_rpc_worker_run_seconds_count", **labels)
            assert ran == count, labels
        waited = counted(
            w, "channels_rpc_worker_queue_wait_seconds_count", method=method, queue=queue
        )
        assert waited == sum(by_outcome.values())
        answered = counted(
            fe, "channels_rpc_call_duration_seconds_count", method=method, queue=queue
        )
        assert answered == sum(by_outcome.values())
    cancel = {"method": "cancellable", "queue": queue}
    assert counted(fe, "channels_rpc_calls_total", outcome="-32800", **cancel) == 1
    assert counted(w, "channels_rpc_worker_cancellations_total", **cancel) == 1
    assert counted(w, "channels_rpc_worker_timeouts_total", method="slow", queue=queue) == 20
    # What is still pending: the five queued calls, read from Redis when scraped.
    assert value(fe, "channels_rpc_calls_in_flight") == 5
    assert value(fe, "channels_rpc_connections") == 1
    assert value(fe, "channels_rpc_queue_depth", queue="rpc.unserved") == 5
    assert value(fe, "channels_rpc_queue_oldest_seconds", queue="rpc.unserved") > 0
    assert value(w, "channels_rpc_queue_depth", queue=queue) == 0
    assert value(w, "channels_rpc_worker_slots", state="busy") == 0
    assert value(w, "channels_rpc_worker_slots", state="free") > 0

    await sock.close()  # the queued calls leave with their connection

    async def left() -> bool:
        return value(await scrape(frontend_url), "channels_rpc_connections") == 0

    await wait_until(left, timeout=10)
    fe = await scrape(frontend_url)
    unserved = {"method": "frontline_unserved", "queue": "rpc.unserved"}
    assert counted(fe, "channels_rpc_calls_total", outcome="disconnected", **unserved) == len(
        queued
    )
    assert value(fe, "channels_rpc_calls_in_flight") == 0


async def test_the_worker_metrics_port_answers_only_get_metrics(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(frontends=0, workers=1, args=["--metrics-port", "0"])
    url = cluster.workers[0].wait_for(r"metrics=(http://\S+)").group(1)
    wrong = url.removesuffix("/metrics") + "/other"

    def status(target: str) -> int:
        try:
            with urllib.request.urlopen(target, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    assert await asyncio.to_thread(status, url) == 200
    assert await asyncio.to_thread(status, wrong) == 404
