"""Waits never hang: a real `reconciler apply` process against a local workspace process
(bench/sim.py), interrupted while it waits for an endpoint update (SIGINT: exit 130, SIGTERM:
143, the lease released, and the next apply finishes the job with no write repeated), and one
whose workspace is killed under it (the cause named within one retry budget, heartbeat lines
before it).

Ceilings on time are generous (shared 2-core machines); `make soak` measures the real figures
(tests/soak/test_interrupt_soak.py).
"""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
import time

import pytest
import soaklib
import yaml
from integration.harness import run

from bench.sim import SimProcess

CEILING = 30.0  # seconds from the signal to the exit: "promptly", with room for a loaded machine


class Victim:
    """A `reconciler apply` process whose output lines are read as they come."""

    def __init__(self, sim: SimProcess, path: str, **env: str) -> None:
        self.process = subprocess.Popen(sim.command + ["apply", path, "--auto-approve"],
                                        env={"PATH": "/usr/bin:/bin", **sim.env(), **env},
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, fragment: str, *, timeout: float = 120.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=max(0.1, end - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if fragment in line:
                return line
        self.process.kill()
        pytest.fail(f"never printed {fragment!r}:\n" + "\n".join(self.seen))

    def finish(self, *, timeout: float = 120.0) -> tuple[int, list[str]]:
        code = self.process.wait(timeout=timeout)
        while True:
            line = self.lines.get(timeout=10)
            if line is None:
                return code, self.seen
            self.seen.append(line)


def bump(docs: list[dict], version: int) -> None:
    """Champion to `version`: a config update the endpoint must finish before the alias moves."""
    next(d for d in docs if d["kind"] == "RegisteredModel")["spec"]["aliases"]["champion"] = version


@pytest.fixture
def sim(tmp_path):
    seed_file = tmp_path / "seed.yaml"
    seed_file.write_text(yaml.safe_dump(soaklib.seed()), encoding="utf-8")
    with SimProcess(seed_file=seed_file, update_seconds=0.0, log_responses=True) as process:
        yield process


def deployed(sim, tmp_path) -> list[dict]:
    docs = soaklib.base_documents()
    assert run(sim, "apply", soaklib.write(tmp_path, docs), "--auto-approve").code == 0
    return docs


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_a_wait_stops_promptly_and_the_next_apply_finishes(sim, tmp_path, signum, code):
    docs = deployed(sim, tmp_path)
    bump(docs, 4)
    path = soaklib.write(tmp_path, docs)
    sim.set_update_seconds(4.0)
    sim.reset_requests()
    victim = Victim(sim, path)
    victim.wait_for("waiting: config_update IN_PROGRESS")
    sent = time.monotonic()
    victim.process.send_signal(signum)
    exit_code, lines = victim.finish(timeout=CEILING * 4)
    took = time.monotonic() - sent
    assert exit_code == code, "\n".join(lines)
    assert took < CEILING, f"{took:.1f}s from the signal to the exit"
    assert lines[-1] == "interrupted" and not any("Traceback" in line for line in lines), "\n".join(lines)
    interrupted_log = sim.requests()
    assert not [e for e in interrupted_log if "/aliases/" in e["path"] and e["method"] != "GET"]  # never moved early
    assert any(e["path"] == "/api/2.0/workspace/delete" and e["status"] == 200 for e in interrupted_log)  # released

    sim.set_update_seconds(0.0)
    finished = run(sim, "apply", path, "--auto-approve", "--lock-timeout", "0s")  # no lease left behind
    assert finished.code == 0, finished.out + finished.err
    assert run(sim, "plan", path, "--detailed-exitcode").code == 0
    log = sim.requests()
    assert soaklib.repeated_writes(log) == [] and soaklib.unsafe_alias_moves(log, docs) == []
    assert len([e for e in soaklib.managed_writes(log) if e["path"].endswith("/config")]) == 1  # sent once, waited for


def test_a_workspace_killed_mid_apply_is_named_within_one_retry_budget_with_heartbeats(tmp_path):
    seed_file = tmp_path / "seed.yaml"
    seed_file.write_text(yaml.safe_dump(soaklib.seed()), encoding="utf-8")
    with SimProcess(seed_file=seed_file, update_seconds=0.0) as sim:
        docs = deployed(sim, tmp_path)
        bump(docs, 4)
        sim.set_update_seconds(60.0)
        victim = Victim(sim, soaklib.write(tmp_path, docs), RECONCILER_RETRY_SECONDS="8",
                        RECONCILER_HEARTBEAT_SECONDS="1")
        victim.wait_for("waiting: config_update IN_PROGRESS")
        victim.wait_for("still waiting: serving_endpoint.support-agent (config_update IN_PROGRESS, ")
        assert sim.process is not None
        sim.process.kill()  # the workspace dies mid-wait
        sim.process.wait()
        sim.process = None
        killed = time.monotonic()
        code, lines = victim.finish(timeout=180)
        took = time.monotonic() - killed
    text = "\n".join(lines)
    assert code == 1 and "Traceback" not in text, text
    failed = next(line for line in lines if "failed" in line and "serving_endpoint.support-agent" in line)
    assert f"connection refused by {sim.url}" in failed and "gave up after" in failed, text
    after_kill = lines[lines.index(next(line for line in lines if "connection refused" in line)):]
    assert any("retrying in" in line for line in after_kill) and any("still waiting:" in line for line in after_kill)
    assert took < 8 + CEILING, f"{took:.0f}s from the kill to the exit, with an 8 s retry budget"


def test_ci_logs_get_heartbeats_while_an_update_takes_its_time(sim, tmp_path):
    docs = deployed(sim, tmp_path)
    bump(docs, 4)
    sim.set_update_seconds(3.0)
    victim = Victim(sim, soaklib.write(tmp_path, docs), RECONCILER_HEARTBEAT_SECONDS="1")
    code, lines = victim.finish()
    assert code == 0, "\n".join(lines)
    beats = [line for line in lines if "still waiting: serving_endpoint.support-agent (config_update IN_PROGRESS," in line]
    assert beats, "\n".join(lines)
    start = lines.index(next(line for line in lines if "waiting: config_update IN_PROGRESS" in line))
    end = lines.index(next(line for line in lines if "serving (READY, NOT_UPDATING)" in line))
    assert all(start < lines.index(beat) < end for beat in beats)


# ---- the soak: many interrupts, at random moments and during waits, each followed by a clean apply ----

def interrupt_soak(tmp_path, *, rounds: int, seed: int) -> dict[str, object]:
    import random
    import statistics

    rng = random.Random(seed)
    changes = soaklib.Changes(seed)
    seed_file = tmp_path / "seed.yaml"
    seed_file.write_text(yaml.safe_dump(soaklib.seed()), encoding="utf-8")
    problems: list[str] = []
    during_wait: list[float] = []
    tally = {"rounds": rounds, "during a wait": 0, "at a random moment": 0, "exit 130": 0, "exit 143": 0,
             "finished before the signal": 0}
    with SimProcess(seed_file=seed_file, update_seconds=0.0, log_responses=True) as sim:
        docs = deployed(sim, tmp_path)
        versions = [v for v in soaklib.VERSIONS]
        for i in range(rounds):
            live = next(d for d in docs if d["kind"] == "RegisteredModel")["spec"]["aliases"]["champion"]
            edits = changes.apply(docs)
            bump(docs, rng.choice([v for v in versions if v != live]))  # always an update to wait for
            path = soaklib.write(tmp_path, docs)
            signum = signal.SIGTERM if i % 4 == 3 else signal.SIGINT
            in_wait = i % 2 == 0
            label = f"round {i} ({'; '.join(edits)}; {signal.Signals(signum).name} "\
                    f"{'during a wait' if in_wait else 'at a random moment'})"
            sim.set_update_seconds(rng.uniform(2.0, 5.0))
            sim.reset_requests()
            victim = Victim(sim, path)
            if in_wait:
                victim.wait_for("waiting: config_update IN_PROGRESS")
            else:
                victim.wait_for("")  # its first line: start-up is over (a signal before it is Python's)
                time.sleep(rng.uniform(0.0, 2.0))
            finished = victim.process.poll() is not None
            sent = time.monotonic()
            victim.process.send_signal(signum)
            code, lines = victim.finish(timeout=120)
            took = time.monotonic() - sent
            tally["during a wait" if in_wait else "at a random moment"] += 1
            if finished or (code == 0 and not in_wait):
                tally["finished before the signal"] += 1
            elif code != 128 + signum or lines[-1:] != ["interrupted"]:
                problems.append(f"{label}: exit {code}, last lines: {lines[-3:]}")
            else:
                tally[f"exit {code}"] += 1
                if in_wait:
                    during_wait.append(took)
            if any("Traceback" in line for line in lines):
                problems.append(f"{label}: a traceback: {lines}")
            sim.set_update_seconds(0.0)
            clean = run(sim, "apply", path, "--auto-approve", "--lock-timeout", "0s")
            check = run(sim, "plan", path, "--detailed-exitcode")
            problems += soaklib.next_apply_problems(label, clean, check, sim.requests(), docs)
    assert not problems, "\n".join(problems)
    if during_wait:
        tally["signal to exit during a wait, median s"] = round(statistics.median(during_wait), 2)
        tally["max s"] = round(max(during_wait), 2)
    return tally


def test_interrupt_soak_short(tmp_path, soak_report):
    soak_report(**interrupt_soak(tmp_path, rounds=2, seed=1))


@pytest.mark.soak
def test_interrupt_soak(tmp_path, soak_report):
    tally = interrupt_soak(tmp_path, rounds=30, seed=2)
    soak_report(**tally)
    assert tally["during a wait"] >= 15 and tally["max s"] < CEILING
