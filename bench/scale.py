"""The scaling table of `make bench`: a no-change plan of N endpoints + N models as a whole process.

For N in 100, 1,000 and 5,000, `reconciler plan` runs as a fresh process (what CI pays) against a
local workspace at 50 ms per call, after one uncounted warm-up. Each row: the median wall time,
its floor, the ratio and the run-to-run spread; CPU milliseconds per object and peak memory, both
from the child's own resource usage (`os.wait4`: ru_utime + ru_stime, ru_maxrss).

The floor is what no implementation could beat on the same conditions, measured in the same run:
the API calls the plan made (one GET per object plus a constant, counted in the request log) times
the latency over the parallelism, plus starting Python and importing databricks-sdk (a fresh
`python -c "from databricks.sdk import WorkspaceClient"`, three after each counted run, the
median): a plan cannot start reading before it has the SDK, nor read faster than its calls allow.

Anything that grows faster than linearly shows as a ratio or a CPU-per-object figure that grows
down the table.

For the largest size, each counted run is followed by the same GETs (from its request log) made
by databricks-sdk's own client on as many threads, in a fresh process and nothing else: what the
unmodified SDK reaches against this workspace on this machine, measured against the same floor.
No plan can go below it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench import fleet
from bench.sim import SimProcess, reconciler_command

LATENCY_MS = 50
PARALLELISM = 16
SIZES = ((100, 3), (1000, 3), (5000, 1))  # (endpoints = models, counted runs): the 5,000 row is one run


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "DATABRICKS_"))}, **extra}


def child(argv: list[str], env: dict[str, str], *, expect: int = 0) -> dict[str, float]:
    """Run `argv` to its end; its wall seconds, CPU seconds and peak resident memory (MiB)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != expect:
            err.seek(0)
            out.seek(0)
            raise RuntimeError(f"{' '.join(argv[:2])} exited {proc.returncode}: "
                               f"{(err.read() or out.read()).decode(errors='replace')[-800:]}")
    return {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024}


def measure(sizes: tuple[tuple[int, int], ...] = SIZES, runs: int | None = None) -> list[dict[str, Any]]:
    from bench.cases import row

    start_argv = [sys.executable, "-c", "from databricks.sdk import WorkspaceClient"]
    child(start_argv, _env({}))  # warm-up
    rows = []
    for agents, default_runs in sizes:
        counted = runs if runs is not None else default_runs
        with SimProcess() as sim, tempfile.TemporaryDirectory() as tmp:
            sim.seed(fleet.seed(agents, versions=1))
            manifests = str(fleet.write_manifests(Path(tmp), agents))
            sim.set_latency(LATENCY_MS)
            argv = reconciler_command() + ["plan", manifests, "--parallelism", str(PARALLELISM),
                                           "--detailed-exitcode"]
            figures, calls, starts, bare = [], [], [], []
            for i in range(counted + 1):
                sim.reset_requests()
                figure = child(argv, _env(sim.env()))
                if i:  # the first warms the page cache and the workspace up
                    figures.append(figure)
                    log = sim.requests()
                    calls.append(len(log))
                    # The start-up floor side by side with each run (this machine's load moves it).
                    starts += [child(start_argv, _env({}))["seconds"] for _ in range(3)]
                    if agents == sizes[-1][0]:  # the largest: what the SDK alone does with the same GETs
                        bare.append(_sdk_alone(log, sim, Path(tmp)))
        start = statistics.median(starts)
        objects = 2 * agents
        call_count = statistics.median(calls)
        floor = call_count * LATENCY_MS / 1000 / PARALLELISM + start
        cpu_ms = statistics.median(f["cpu"] for f in figures) * 1000 / objects
        peak = max(f["peak_mib"] for f in figures)
        result = row(f"scaling: plan, no changes, {agents:,} endpoints + {agents:,} models, fresh process",
                     [f["seconds"] for f in figures], "s", floor=floor,
                     floor_basis=f"{call_count:.0f} calls x {LATENCY_MS} ms / {PARALLELISM} + start and SDK import "
                                 f"{start:.3f} s", target="<= 1.05x, < 200 MiB" if agents >= 5000 else "",
                     met=(lambda f, r, peak=peak: r <= 1.05 and peak < 200) if agents >= 5000 else None,
                     notes=f"{call_count:.0f} calls for {objects:,} objects; CPU {cpu_ms:.2f} ms per object; "
                           f"peak memory {peak:.0f} MiB" + ("; one run (about a minute with its warm-up)"
                                                            if counted == 1 else ""))
        result["scale"] = {"objects": objects, "calls": call_count, "cpu_ms_per_object": round(cpu_ms, 3),
                           "peak_mib": round(peak, 1)}
        rows.append(result)
        if bare:
            rows.append(row(f"the same {call_count:.0f} GETs by databricks-sdk alone (ApiClient.do, {PARALLELISM} "
                            "threads, nothing else), fresh process", [b["seconds"] for b in bare], "s", floor=floor,
                            floor_basis="the floor of the row above",
                            notes="what the unmodified SDK reaches against this local workspace on this machine, "
                                  "before loading a manifest or making a plan: the row above cannot go below it"))
    return rows


SDK_ALONE = """
import json, sys
from concurrent.futures import ThreadPoolExecutor
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import ApiClient
paths = json.load(open(sys.argv[1]))
api = ApiClient(WorkspaceClient().config)
with ThreadPoolExecutor(int(sys.argv[2])) as pool:
    list(pool.map(lambda path: api.do("GET", path), paths))
"""


def _sdk_alone(log: list[dict[str, Any]], sim: SimProcess, tmp: Path) -> dict[str, float]:
    """The plan's GETs (from its request log) made by the SDK's own client on as many threads, in a
    fresh process: its wall time includes starting Python and importing the SDK, as the plan's does."""
    paths = tmp / "gets.json"
    gets = [e["raw_path"] + (f"?{urlencode(e['query'])}" if e.get("query") else "") for e in log if e["method"] == "GET"]
    paths.write_text(json.dumps(gets), encoding="utf-8")
    return child([sys.executable, "-c", SDK_ALONE, str(paths), str(PARALLELISM)], _env(sim.env()))


def print_table(rows: list[dict[str, Any]]) -> None:
    """The scaling rows again, as the README's table."""
    scaled = [r for r in rows if "scale" in r]
    if not scaled:
        return
    print("\nscaling (no-change plan, fresh process, 50 ms per call, --parallelism 16):")
    print(f"  {'objects':>8}  {'calls':>6}  {'wall':>8}  {'floor':>8}  {'ratio':>6}  {'spread':>8}  "
          f"{'CPU ms/object':>13}  {'peak MiB':>8}")
    for r in scaled:
        s = r["scale"]
        print(f"  {s['objects']:>8,}  {s['calls']:>6.0f}  {r['figure']:>6.2f} s  {r['floor']:>6.2f} s  "
              f"{r['ratio']:>5.2f}x  {r['spread']:>8}  {s['cpu_ms_per_object']:>13.2f}  {s['peak_mib']:>8.0f}")
