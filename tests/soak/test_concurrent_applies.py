"""Concurrent runs: two `reconciler apply` processes started together on the same stack must not
interleave their writes. The apply lock (reconciler/lock.py) is the mechanism; this is the
evidence, read from the workspace's request log: every managed write lies inside one holder's
lease window (from its landed create-if-absent of the lease file to its landed delete), the
windows never overlap, and each run's own writes (told apart by the tag value it sets) lie in the
window of its own process.
"""

from __future__ import annotations

import copy
import os
import subprocess

import pytest
import soaklib
import yaml
from integration.harness import run

from bench.sim import SimProcess


def _variant(docs, run_name: str, share: int):
    docs = copy.deepcopy(docs)
    endpoint = next(d for d in docs if d["kind"] == "ServingEndpoint")
    endpoint["spec"]["tags"]["team"] = run_name
    routes = endpoint["spec"]["traffic_config"]["routes"]
    routes[0]["traffic_percentage"], routes[1]["traffic_percentage"] = share, 100 - share
    return docs


def concurrent_applies(tmp_path, *, rounds: int) -> dict[str, int]:
    seed_file = tmp_path / "seed.yaml"
    seed_file.write_text(yaml.safe_dump(soaklib.seed()), encoding="utf-8")
    problems: list[str] = []
    tally = {"rounds": rounds, "lease windows": 0, "writes checked": 0}
    with SimProcess(seed_file=seed_file, update_seconds=1.0, log_responses=True) as sim:
        base = soaklib.base_documents()  # round 0 creates the endpoint: both runs want to
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")}, **sim.env()}
        for i in range(rounds):
            paths, processes = {}, {}
            for name, share in ((f"a{i}", 60 + i % 30), (f"b{i}", 20 + i % 30)):
                directory = tmp_path / name
                directory.mkdir()
                paths[name] = soaklib.write(directory, _variant(base, name, share))
            sim.reset_requests()
            for name, path in paths.items():  # started together
                processes[name] = subprocess.Popen(
                    sim.command + ["apply", path, "--auto-approve", "--lock-timeout", "60s"], env=env,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            outputs = {name: p.communicate(timeout=120)[0] for name, p in processes.items()}
            for name, process in processes.items():
                if process.returncode != 0:
                    problems.append(f"round {i}: apply {name} failed: {outputs[name][-1000:]}")
            log = sim.requests()
            windows = soaklib.lock_windows(log)
            holders = {process.pid: name for name, process in processes.items()}
            if sorted(holders.get(pid, "?") for _, _, pid in windows) != sorted(processes):
                problems.append(f"round {i}: expected one lease window per run, got {windows}")
                continue
            for a, b in zip(windows, windows[1:], strict=False):
                if b[0] < a[1]:
                    problems.append(f"round {i}: lease windows overlap: {a} {b}")
            for index, entry in enumerate(log):
                if entry["method"] == "GET" or entry["path"].startswith(soaklib.LOCK_PATHS):
                    continue
                tally["writes checked"] += 1
                inside = [holders[pid] for start, end, pid in windows if start < index < end]
                if len(inside) != 1:
                    problems.append(f"round {i}: {entry['method']} {entry['path']} outside any lease window")
                    continue
                tags = [t.get("value") for t in (entry.get("body") or {}).get("add_tags") or []]
                for value in tags:
                    if value in processes and value != inside[0]:
                        problems.append(f"round {i}: {value}'s tag write landed in {inside[0]}'s lease window")
            tally["lease windows"] += len(windows)
            second = holders[windows[-1][2]]
            check = run(sim, "plan", paths[second], "--detailed-exitcode")
            if check.code != 0:
                problems.append(f"round {i}: the second run ({second}) did not leave its state: {check.out}")
    assert not problems, "\n".join(problems)
    return tally


def test_concurrent_applies_short(tmp_path, soak_report):
    soak_report(**concurrent_applies(tmp_path, rounds=1))


@pytest.mark.soak
def test_concurrent_applies(tmp_path, soak_report):
    soak_report(**concurrent_applies(tmp_path, rounds=20))
