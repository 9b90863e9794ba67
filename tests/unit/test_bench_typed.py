"""benchmarks/run.py's (h) rows: what validating add's two floats costs a call."""

from __future__ import annotations

from benchmarks.run import _typed_rows


def test_the_typed_rows_compare_add_with_the_same_method_unannotated() -> None:
    medians = {
        ("h1", "rpc", "p50_ms"): 2.10,
        ("h1", "v1", "p50_ms"): 1.00,
        ("h1u", "rpc", "p50_ms"): 2.00,
        ("h2", "rpc", "calls_per_s"): 1900.0,
        ("h2", "v1", "calls_per_s"): 2000.0,
        ("h2u", "rpc", "calls_per_s"): 2000.0,
    }

    def m(key: str, target: str, metric: str = "calls_per_s") -> float:
        return medians[(key, target, metric)]

    latency, rate = _typed_rows(m)
    cells = [cell.strip() for cell in latency.split("|")[1:-1]]
    assert cells == ["(h) add(1, 2) p50, typed params", "2.10 ms", "1.00 ms", "-",
                     "2.10x; of untyped 1.050x", "of untyped <= 1.05x"]  # fmt: skip
    assert "0.95x; of untyped 0.950x" in rate
