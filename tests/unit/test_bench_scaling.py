"""benchmarks/scaling.py's arithmetic: Redis' INFO counters into figures per call."""

from __future__ import annotations

import pytest

from benchmarks.scaling import (
    RedisCounters,
    combine,
    per_call,
    projected_rate,
    resp,
    transports,
)


def info(evalsha: int, bzmpop: int, zadd: int, infos: int, total: int, cpu: float) -> str:
    """``INFO commandstats stats cpu`` as Redis 7 writes it (sections in its own order)."""
    return (
        "# Stats\r\n"
        "total_connections_received:5\r\n"
        f"total_commands_processed:{total}\r\n"
        "instantaneous_ops_per_sec:0\r\n"
        "\r\n"
        "# CPU\r\n"
        f"used_cpu_sys:{cpu / 4:.6f}\r\n"
        f"used_cpu_user:{cpu * 3 / 4:.6f}\r\n"
        "used_cpu_sys_children:0.000000\r\n"
        "\r\n"
        "# Commandstats\r\n"
        f"cmdstat_evalsha:calls={evalsha},usec=90,usec_per_call=9.00,rejected_calls=0,"
        "failed_calls=0\r\n"
        f"cmdstat_bzmpop:calls={bzmpop},usec=40,usec_per_call=4.00,rejected_calls=0,"
        "failed_calls=0\r\n"
        f"cmdstat_zadd:calls={zadd},usec=20,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n"
        "cmdstat_client|setname:calls=1,usec=8,usec_per_call=8.00,rejected_calls=0,"
        "failed_calls=0\r\n"
        f"cmdstat_info:calls={infos},usec=50,usec_per_call=25.00,rejected_calls=0,"
        "failed_calls=0\r\n"
    )


def test_parse_reads_commands_total_and_cpu() -> None:
    counters = RedisCounters.parse(info(10, 4, 20, 2, 37, 2.0))
    assert counters.calls == {
        "evalsha": 10,
        "bzmpop": 4,
        "zadd": 20,
        "client|setname": 1,
        "info": 2,
    }
    assert counters.total == 37
    assert counters.cpu == pytest.approx(2.0)


def test_per_call_leaves_out_the_info_that_took_the_first_reading() -> None:
    # 100 calls: 30 EVALSHA, 20 BZMPOP, 200 ZADD, and the INFO of ``before`` (251 commands),
    # a new command (ZCARD) that did not exist before; 5 ms of Redis CPU.
    before = RedisCounters.parse(info(10, 4, 20, 2, 1000, 2.0))
    after_text = info(40, 24, 220, 3, 1251, 2.005) + (
        "cmdstat_zcard:calls=1,usec=1,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n"
    )
    figures = per_call(before, RedisCounters.parse(after_text), 100)
    assert figures["commands_per_call"] == pytest.approx(2.5)
    assert figures["by_command"] == pytest.approx(
        {"BZMPOP": 0.2, "EVALSHA": 0.3, "ZADD": 2.0, "ZCARD": 0.01}
    )
    assert list(figures["by_command"]) == ["BZMPOP", "EVALSHA", "ZADD", "ZCARD"]
    assert figures["round_trips_per_call"] == pytest.approx(0.5)
    assert figures["redis_us_per_call"] == pytest.approx(50.0)
    assert projected_rate(figures["redis_us_per_call"]) == pytest.approx(20_000)


def test_combine_two_load_generators() -> None:
    one = {"calls": 1000, "seconds": 2.0, "p50_ms": 10.0, "p99_ms": 30.0, "client_cpu_s": 0.1,
           "ok": 1000, "errors": 0, "missing": 0, "foreign": 0}  # fmt: skip
    two = {**one, "seconds": 2.5, "p50_ms": 14.0, "p99_ms": 20.0, "ok": 998, "missing": 2}
    both = combine([one, two])
    assert both["calls_per_s"] == pytest.approx(800.0)  # 2000 calls over the longer run
    assert both["p50_ms"] == pytest.approx(12.0)
    assert both["p99_ms"] == 30.0
    assert (both["ok"], both["missing"], both["foreign"]) == (1998, 2, 0)
    assert both["client_cpu_s"] == pytest.approx(0.2)


def test_resp_counts_bytes_not_characters() -> None:
    assert resp("INFO", "cpu") == b"*2\r\n$4\r\nINFO\r\n$3\r\ncpu\r\n"
    assert resp("é") == b"*1\r\n$2\r\n\xc3\xa9\r\n"


def test_transports_tell_unix_socket_clients_from_tcp_ones() -> None:
    client_list = (
        "id=3 addr=/run/redis.sock:0 laddr=/run/redis.sock:0 fd=7 name= db=0 cmd=bzmpop\n"
        "id=4 addr=127.0.0.1:51000 laddr=127.0.0.1:6390 fd=8 name= db=0 cmd=evalsha\n"
        "id=5 addr=127.0.0.1:51002 laddr=127.0.0.1:6390 fd=9 name= db=0 cmd=bzmpop\n"
        "id=6 addr=/run/redis.sock:0 laddr=/run/redis.sock:0 fd=10 name= db=0 cmd=client|list\n"
    )
    assert transports(client_list) == {"tcp": 2, "unix": 1}
