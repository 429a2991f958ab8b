"""The reliability suite's report: each soak adds a row, printed as one table at the end of the run.

The long soaks are marked `soak` (run by `make soak`); their short versions run in `make test`.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

ROWS: list[dict[str, Any]] = []


@pytest.fixture
def soak_report(request: pytest.FixtureRequest):
    """`soak_report(runs=100, **figures)`: one row of the table, timed from the test's start."""
    started = time.monotonic()

    def record(**figures: Any) -> None:
        ROWS.append({"case": request.node.name, "seconds": round(time.monotonic() - started, 1), **figures})
    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    terminalreporter.section("reliability suite")
    width = max(len(r["case"]) for r in ROWS)
    for row in ROWS:
        figures = ", ".join(f"{k}: {v}" for k, v in row.items() if k not in ("case", "seconds"))
        terminalreporter.write_line(f"{row['case'].ljust(width)}  {row['seconds']:7.1f} s  {figures}")
