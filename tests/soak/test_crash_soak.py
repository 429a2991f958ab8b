"""Crash soak: applies killed with SIGKILL at random moments, each followed by a clean apply.

The workspace is a `reconciler sim serve` process (endpoint updates take 1 s) and each killed
apply is a real `reconciler apply` process, so a kill can land anywhere: during start-up, while
reading, holding the lock, between writes, while waiting for an update. The clean apply after it
must converge (plan shows no changes), with no write landing twice with the same method, path
and body across the pair, and no alias set before the endpoints serving through it serve the
version healthily.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest
import soaklib
import yaml
from integration.harness import run

from bench.sim import SimProcess


def crash_soak(tmp_path, *, kills: int, seed: int) -> dict[str, int]:
    seed_file = tmp_path / "seed.yaml"
    seed_file.write_text(yaml.safe_dump(soaklib.seed()), encoding="utf-8")
    rng = random.Random(seed)
    changes = soaklib.Changes(seed)
    docs = soaklib.base_documents()
    problems: list[str] = []
    tally = {"kills": kills, "killed before any write": 0, "killed mid-apply": 0, "finished before the kill": 0}
    history: list[dict] = []
    with SimProcess(seed_file=seed_file, update_seconds=1.0, log_responses=True) as sim:
        for i in range(kills):
            edits = changes.apply(docs)
            path = soaklib.write(tmp_path, docs)
            label = f"kill {i} ({'; '.join(edits)})"
            sim.reset_requests()
            victim = subprocess.Popen(sim.command + ["apply", path, "--auto-approve", "--prune"],
                                      env={"PATH": "/usr/bin:/bin", **sim.env()},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.8, 3.0))  # start-up is ~1 s, a whole apply ~3 s
            finished = victim.poll() is not None
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed_log = sim.requests()
            wrote = bool([e for e in soaklib.managed_writes(killed_log) if soaklib.landed(e)])
            key = "finished before the kill" if finished else "killed mid-apply" if wrote else "killed before any write"
            tally[key] += 1
            clean = run(sim, "apply", path, "--auto-approve", "--prune")
            check = run(sim, "plan", path, "--detailed-exitcode", "--prune")
            log = sim.requests()
            history += log
            problems += soaklib.next_apply_problems(label, clean, check, log, docs)
    problems += soaklib.duplicate_creates(history)
    tally["alias moves checked"] = soaklib.alias_sets(history)
    assert not problems, "\n".join(problems)
    return tally


def test_crash_soak_short(tmp_path, soak_report):
    soak_report(**crash_soak(tmp_path, kills=2, seed=1))


@pytest.mark.soak
def test_crash_soak(tmp_path, soak_report):
    tally = crash_soak(tmp_path, kills=50, seed=2)
    soak_report(**tally)
    assert tally["killed mid-apply"] >= 10  # the kills did land mid-way, not only before or after
