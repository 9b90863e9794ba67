"""Figures the reliability tests record, and the table they make.

python -m tests.integration.reliability.report results.jsonl
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.integration.reliability.plan import PLAN


@dataclass
class Figure:
    id: str
    measured: str
    passed: bool


@dataclass
class Figures:
    path: Path | None = None
    rows: list[Figure] = field(default_factory=list)

    def record(self, test_id: str, measured: str, passed: bool) -> None:
        assert test_id in PLAN, f"{test_id} is not in the plan"
        figure = Figure(test_id, measured, passed)
        self.rows.append(figure)
        if self.path is not None:
            with self.path.open("a") as out:
                out.write(json.dumps(asdict(figure)) + "\n")

    def check(self, test_id: str, measured: str, **checks: bool) -> None:
        """Record a row that passes only if every check holds, then assert each by its name.

        One source for the table's verdict and the test's outcome: a row cannot say "pass"
        for something an assert refused, nor the other way round.
        """
        self.record(test_id, measured, all(checks.values()))
        failed = [name.replace("_", " ") for name, ok in checks.items() if not ok]
        assert not failed, f"{test_id} missed: {'; '.join(failed)} (measured: {measured})"

    def table(self) -> str:
        by_id: dict[str, list[Figure]] = {}
        for row in self.rows:
            by_id.setdefault(row.id, []).append(row)
        lines = ["| test | what | target | measured | result |", "|---|---|---|---|---|"]
        for test_id, (what, target) in PLAN.items():
            rows = by_id.get(test_id, [])
            measured = "; ".join(row.measured for row in rows) or "not run"
            result = ("pass" if all(r.passed for r in rows) else "FAIL") if rows else "-"
            lines.append(f"| {test_id} | {what} | {target} | {measured} | {result} |")
        return "\n".join(lines)


def load(path: Path) -> Figures:
    figures = Figures()
    for line in path.read_text().splitlines():
        figures.rows.append(Figure(**json.loads(line)))
    return figures


if __name__ == "__main__":
    print(load(Path(sys.argv[1])).table())
