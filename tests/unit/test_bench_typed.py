"""benchmarks/run.py's (h) rows: what validating add's two floats costs, against ping."""

from __future__ import annotations

from typing import Any

from benchmarks.run import _typed_rows


def test_the_typed_rows_price_validation_as_add_over_ping_against_1_0_1() -> None:
    medians = {
        ("h1", "rpc", "p50_ms"): 2.10,
        ("h1", "v1", "p50_ms"): 1.00,
        ("h2", "rpc", "calls_per_s"): 1900.0,
        ("h2", "v1", "calls_per_s"): 2000.0,
    }

    def m(key: str, target: str, metric: str = "calls_per_s") -> float:
        return medians[(key, target, metric)]

    # Ping: ours 2.0 ms against 1.0 ms, 2,000 calls/s against 2,000.
    latency, rate = _typed_rows(m, [2.0, 1.0, 0.5], [2000.0, 2000.0, 2500.0])
    cells: list[Any] = [cell.strip() for cell in latency.split("|")[1:-1]]
    assert cells == ["(h) add(1, 2) p50, typed params", "2.10 ms", "1.00 ms", "-",
                     "2.10x; vs ping 1.050x", "vs ping <= 1.05x"]  # fmt: skip
    assert "0.95x; vs ping 0.950x" in rate
