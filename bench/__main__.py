"""`make bench` (`python -m bench`): one report of how fast the reconciler is, as ratios to floors.

Prints one table and writes bench/results.json. Each row is the median of several runs, its floor
(what no implementation could beat on the same conditions: Python's own start-up, the injected API
latency spread over the allowed parallelism, one endpoint update, one GET per object; for the
comparison, the straightforward script's own figures) and the ratio between them. Quote the
ratios: this machine is shared and noisy, so absolute times move from run to run while ratios
measured side by side do not move much.

    python -m bench [--cases startup,validate,plan,apply,compare,workspace] [--runs N]

The cases (details in bench/cases.py and bench/validate_bench.py):
  startup    `reconciler --help` and `validate` on the examples, in fresh processes
  validate   `validate` on 1,000 generated documents, and on 10,000 (within 10x of 1,000's time)
  plan       no-change plan, 200 endpoints + 200 models, 50 ms per API call
  scale      the scaling table: no-change plans of 100, 1,000 and 5,000 endpoints + models as fresh
             processes (wall time vs floor, CPU ms per object, peak memory), and the 5,000 row's
             GETs by databricks-sdk alone against the same floor; bench/scale.py
  apply      50 version bumps with 5 s endpoint updates
  apply60    the same with 60 s updates, one run: the overhead stays a few seconds
  compare    10 version bumps (1 s updates) by the reconciler and by a one-at-a-time SDK script,
             alternately on one workspace
  rollout    one version bump under spec.rollout: 3 steps, 2 s pauses, 1 s updates, with traffic
  workspace  the local workspace's own throughput with 16 parallel SDK clients
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.json"
CASES = ("startup", "validate", "plan", "scale", "apply", "apply60", "compare", "rollout", "workspace")


@functools.cache
def _validate_bench_rows(runs: int | None) -> tuple[dict[str, Any], ...]:
    """bench/validate_bench.py measures start-up and validate in one go (they share its floor)."""
    from bench import validate_bench

    return tuple({"target": "", "met": None, **row} for row in validate_bench.measure(runs=runs))


def _validate_rows(kind: str, runs: int | None) -> list[dict[str, Any]]:
    return [r for r in _validate_bench_rows(runs) if ("generated" in r["case"]) == (kind == "validate")]


def _cases(runs: int | None) -> dict[str, Callable[[], list[dict[str, Any]]]]:
    from bench import cases, scale

    def n(default: int) -> int:
        return runs if runs is not None else default

    return {
        "startup": lambda: _validate_rows("startup", runs),
        "validate": lambda: _validate_rows("validate", runs),
        "plan": lambda: cases.plan_case(runs=n(5)),
        "scale": lambda: scale.measure(runs=runs),
        "apply": lambda: cases.apply_case(runs=n(3)),
        "apply60": lambda: cases.apply_case(update_seconds=60.0, runs=1),
        "compare": lambda: cases.compare_case(runs=n(3)),
        "rollout": lambda: cases.rollout_case(runs=n(3)),
        "workspace": lambda: cases.throughput_case(runs=n(3)),
    }


def _number(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        text = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    else:
        text = f"{value:.0f}" if isinstance(value, (int, float)) else str(value)
    return f"{text} {unit}".strip()


def print_table(rows: list[dict[str, Any]]) -> None:
    headers = ("case", "median", "floor", "ratio", "spread", "target", "ok")
    table = [(r["case"], _number(r["figure"], r["unit"]), _number(r["floor"], r["unit"] if r["floor"] else ""),
              "-" if r["ratio"] is None else f"{r['ratio']:.2f}x", r.get("spread") or "-", r["target"] or "-",
              {True: "yes", False: "MISSED", None: "-"}[r["met"]]) for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(headers)]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for line in table:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    print()
    for i, r in enumerate(rows, 1):
        parts = [p for p in (f"floor = {r['floor_basis']}" if r["floor_basis"] else "", r["notes"],
                             "runs: " + ", ".join(_number(x) for x in r["runs"]) if r["runs"] else "") if p]
        if parts:
            print(f"  [{i}] {r['case']}: " + "; ".join(parts))


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else the platform's processor string."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--runs", type=int, default=None, help="runs per case (default: each case's own)")
    args = parser.parse_args()
    chosen = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; expected some of {', '.join(CASES)}")
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for name, measure in _cases(args.runs).items():
        if name not in chosen:
            continue
        print(f"[{time.monotonic() - started:5.0f}s] {name} ...", flush=True)
        try:
            rows += measure()
        except Exception as exc:  # one broken case must not hide the others' figures
            failed.append(name)
            print(f"  {name} FAILED: {type(exc).__name__}: {exc}", flush=True)
            if os.environ.get("BENCH_DEBUG"):
                traceback.print_exc()
    total = time.monotonic() - started
    print_table(rows)
    from bench import scale

    scale.print_table(rows)
    print(f"\n{len(rows)} rows in {total:.0f} s on {os.cpu_count()} CPUs ({cpu_model()}; load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}); written to {RESULTS}")
    RESULTS.write_text(json.dumps({
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": round(total, 1),
        "machine": {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average": os.getloadavg()},
        "failed_cases": failed, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    missed = [r["case"] for r in rows if r["met"] is False]
    if missed or failed:
        print(f"{len(missed)} target(s) missed, {len(failed)} case(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
