"""Crash tests: `reconciler apply` killed with SIGKILL while it registers the logged agent, at several
moments; each re-run ends with exactly one version for the source, served and aliased.

The workspace is a `reconciler sim serve` process (bench/sim.py) seeded with the demo's workspace,
the victim a real `reconciler apply` process, so the kill lands where a crash would: MLflow's
registration runs in the victim's child process, which dies with it (it watches its stdin).
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from harness import MODEL, ROOT, base_documents, run, write

from bench.sim import SimProcess

SEED = yaml.safe_load((ROOT / "demo" / "workspace-seed.yaml").read_text(encoding="utf-8"))
SOURCE = "models:/m-6a1f2b3c4d5e4f60718293a4b5c6d7e8"
UC = "/api/2.0/mlflow/unity-catalog"
# Where to kill: once this request has been answered (and what the moment means).
MOMENTS = {
    "mid-upload": ("POST", f"{UC}/model-versions/create"),  # created, files being copied, never finalized
    "waiting-for-ready": ("POST", f"{UC}/model-versions/finalize"),  # finalized, still PENDING_REGISTRATION
    "before-the-alias": ("POST", "/api/2.0/serving-endpoints"),  # READY, served soon, alias not moved yet
}


def seeded(tmp_path: Path, seconds: float) -> Path:
    data = copy.deepcopy(SEED)
    data["logged_models"][0]["registration"] = {"seconds": seconds}
    path = tmp_path / "seed.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def answered(sim: SimProcess, request: tuple[str, str]) -> bool:
    return any((e["method"], e["path"]) == request and e["status"] is not None for e in sim.requests())


def wait_for(sim: SimProcess, victim: subprocess.Popen[bytes], request: tuple[str, str]) -> None:
    deadline = time.monotonic() + 300  # a generous ceiling on a busy 2-core machine, not a measurement
    while not answered(sim, request):
        assert victim.poll() is None, f"the apply ended (exit {victim.returncode}) before {request} was answered"
        assert time.monotonic() < deadline, f"{request} was never answered"
        time.sleep(0.02)


def from_source(sim: SimProcess) -> list[tuple[int, str]]:
    found = run_api(sim, f"{UC}/model-versions/search", {"filter": f"name = '{MODEL}'"})
    return sorted((int(v["version"]), v["status"]) for v in found.get("model_versions", [])
                  if v.get("model_id") == SOURCE.removeprefix("models:/"))


def run_api(sim: SimProcess, path: str, query: dict[str, str]) -> dict:
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=sim.url, token=sim.token).api_client.do("GET", path, query=query)


@pytest.mark.parametrize("moment", MOMENTS)
def test_a_run_killed_during_registration_leaves_one_version_for_the_source(tmp_path, moment):
    # Held PENDING_REGISTRATION after finalize, so "waiting-for-ready" is a moment that lasts.
    with SimProcess(seed_file=seeded(tmp_path, 3600 if moment == "waiting-for-ready" else 0),
                    update_seconds=1.0) as sim:
        path = write(tmp_path, base_documents())
        env = {**os.environ, **sim.env()}
        victim = subprocess.Popen(sim.command + ["apply", path, "--auto-approve"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if moment == "mid-upload":
                wait_for(sim, victim, ("POST", f"{UC}/registered-models/create"))  # MLflow's first call
                sim.set_latency(400)  # every call after it takes 0.4 s: the copy takes seconds
            wait_for(sim, victim, MOMENTS[moment])
        finally:
            victim.send_signal(signal.SIGKILL)
            victim.wait()
        sim.set_latency(0)
        at_kill = from_source(sim)
        if moment == "waiting-for-ready":  # it would have become READY later: let it, from now
            data = copy.deepcopy(SEED)
            sim.seed({"logged_models": [{**data["logged_models"][0], "registration": {"seconds": 0}}]})

        clean = run(sim, "apply", path, "--auto-approve")
        assert clean.code == 0, f"killed at {moment} with {at_kill}: {clean.out[-2000:]}{clean.err}"
        versions = from_source(sim)
        assert len(versions) == 1 and versions[0][1] == "READY", (moment, at_kill, versions)
        number = versions[0][0]
        client_aliases = run_api(sim, f"/api/2.1/unity-catalog/models/{MODEL}", {"include_aliases": "true"})["aliases"]
        assert {a["alias_name"]: a["version_num"] for a in client_aliases} == {"champion": 3, "challenger": number}
        assert run(sim, "plan", path, "--detailed-exitcode").code == 0
        creates = [e for e in sim.requests() if e["path"] == f"{UC}/model-versions/create" and e["status"] == 200]
        # A version left unfinished was replaced by one more registration; a READY one was used as it is.
        replaced = bool(at_kill) and at_kill[0][1] != "READY" and moment != "waiting-for-ready"
        assert len(creates) == (2 if replaced else 1), (moment, at_kill, len(creates))
