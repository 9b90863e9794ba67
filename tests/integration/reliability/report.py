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
    skipped: bool = False  # the test did not run (a skip): not a pass, not a failure


@dataclass
class Figures:
    path: Path | None = None
    rows: list[Figure] = field(default_factory=list)

    def record(self, test_id: str, measured: str, passed: bool, *, skipped: bool = False) -> None:
        assert test_id in PLAN, f"{test_id} is not in the plan"
        figure = Figure(test_id, measured, passed, skipped)
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
            lines.append(f"| {test_id} | {what} | {target} | {measured} | {verdict(rows)} |")
        return "\n".join(lines)


def verdict(rows: list[Figure]) -> str:
    """FAIL if any row failed; "pass" only for rows that ran, and says how many did not."""
    if not rows:
        return "-"
    if not all(row.passed for row in rows):
        return "FAIL"
    skipped = sum(row.skipped for row in rows)
    if skipped == len(rows):
        return "skipped"
    return f"pass ({skipped} skipped)" if skipped else "pass"


def load(path: Path) -> Figures:
    figures = Figures()
    for line in path.read_text().splitlines():
        figures.rows.append(Figure(**json.loads(line)))
    return figures


if __name__ == "__main__":
    print(load(Path(sys.argv[1])).table())
