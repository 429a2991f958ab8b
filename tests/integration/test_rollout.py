"""Rollouts end to end (reconciler/rollout.py): the real CLI against the local workspace over real
HTTP, with queries sent to the endpoint all along, as users would (the analysis reads them back
from the metrics export).

The scenarios of issue 14: a smoke failure (no traffic shifts, alias unchanged, exit 1 with the
evidence); an analysis failure at step 2 (the split before the rollout restored, exit 1); a
success (the alias moves only at the end); SIGKILL at each step, then a re-run that resumes, or
rolls back when the manifests changed meanwhile; no change means zero writes. The request log is
the evidence; no assertion is timed (pauses are short, ceilings generous).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.localworkspace.queries import parse_behaviour
from reconciler.localworkspace.server import LocalWorkspace
from reconciler.localworkspace.traffic import Traffic
from reconciler.terms import ROLLOUT_TAG
from tests.integration.harness import ROOT, base_documents, endpoint, model, run, write, writes

SEED = ROOT / "tests" / "seeds" / "rollout.yaml"
MODEL = "main.agents.support_agent"
NAME = "support-agent"
CONFIG = f"/api/2.0/serving-endpoints/{NAME}/config"
TAGS = f"/api/2.0/serving-endpoints/{NAME}/tags"
CHAMPION_ALIAS = f"/api/2.1/unity-catalog/models/{MODEL}/aliases/champion"
ROLLOUT = {
    "smoke": [{"name": "answers-a-question",
               "request": {"messages": [{"role": "user", "content": "What is MLflow?"}],
                           "custom_inputs": {"session_id": "smoke-test"}, "databricks_options": {"return_trace": True}},
               "expect": {"status": 200, "max_latency_ms": 10000,
                          "json": [{"path": "$.choices[0].message.content", "matches": "(?i)mlflow"},
                                   {"path": "$.custom_outputs.session_id", "equals": "smoke-test"}]}}],
    "steps": [10, 50, 100],
    "pause": "0.6s",
    "analysis": {"max_error_rate": 0.05, "max_p99_latency_ms": 3000, "min_requests": 3, "no_traffic_timeout": "60s",
                 "interval": "0.5s"},
}
BEFORE = ({"champion": "3", "challenger": "4"}, {"champion": 90, "challenger": 10})


@pytest.fixture
def deployed(make_workspace: Callable[..., LocalWorkspace], tmp_path: Path) -> LocalWorkspace:
    """The example deployment, applied: champion v3 at 90%, challenger v4 at 10%."""
    ws = make_workspace(SEED, update_seconds=0.2)
    result = run(ws, "apply", write(tmp_path, numbered()), "--auto-approve")
    assert result.code == 0, result.out + result.err
    ws.reset_requests()
    return ws


def numbered() -> list[dict[str, Any]]:
    """The example manifests with the challenger by its number: this seed's versions are registered
    already (registration from MLflow is tests/integration/test_registration.py's)."""
    docs = base_documents()
    model(docs)["spec"]["aliases"]["challenger"] = 4
    return docs


def manifests(tmp_path: Path, champion: int, **rollout: Any) -> str:
    docs = numbered()
    model(docs)["spec"]["aliases"]["champion"] = champion
    endpoint(docs)["spec"]["rollout"] = {**ROLLOUT, **rollout}
    return write(tmp_path, docs)


def apply(ws: LocalWorkspace, path: str, *extra: str, traffic: bool = True) -> Any:
    if not traffic:
        return run(ws, "apply", path, "--auto-approve", *extra)
    with Traffic(ws.url, ws.token, NAME, rate=60):
        return run(ws, "apply", path, "--auto-approve", *extra)


def served(ws: LocalWorkspace) -> tuple[dict[str, str], dict[str, int]]:
    """The config the endpoint serves: versions and traffic by served entity."""
    with ws.state.lock:
        ws.state.settle()
        config = ws.state.serving.endpoints[NAME].config or {}
        return ({e["name"]: e["entity_version"] for e in config["served_entities"]},
                {r["served_entity_name"]: r["traffic_percentage"] for r in config["traffic_config"]["routes"]})


def marker(ws: LocalWorkspace) -> str | None:
    with ws.state.lock:
        return ws.state.serving.endpoints[NAME].tags.get(ROLLOUT_TAG)


def champion_alias(ws: LocalWorkspace) -> int:
    with ws.state.lock:
        return ws.state.catalog.models[MODEL].aliases["champion"]


def config_routes(ws: LocalWorkspace) -> list[dict[str, int]]:
    """The routes of every config write that landed, in order."""
    return [{r["served_entity_name"]: r["traffic_percentage"] for r in entry["body"]["traffic_config"]["routes"]}
            for entry in ws.requests() if entry["method"] == "PUT" and entry["path"] == CONFIG and entry["status"] < 300]


def assert_final(ws: LocalWorkspace, champion: str) -> None:
    """The endpoint exactly as the manifests say, names included; nothing of the rollout left."""
    assert served(ws) == ({"champion": champion, "challenger": "4"}, {"champion": 90, "challenger": 10})
    assert marker(ws) is None


# ---- the three outcomes ------------------------------------------------------------------------

def test_success_moves_the_traffic_in_steps_and_the_alias_only_at_the_end(deployed, tmp_path):
    ws = deployed
    path = manifests(tmp_path, 4)
    plan = run(ws, "plan", path)
    assert "step 2 of 3: 50% of champion's 90% → champion 45%, challenger 10%, champion-v4 45%" in plan.out
    assert "expected: 1.8s of pauses + 5 config updates" in plan.out
    result = apply(ws, path)
    assert result.code == 0, result.out + result.err
    assert config_routes(ws) == [
        {"champion": 90, "challenger": 10, "champion-v4": 0},  # added at 0%, smoke queries, then:
        {"champion": 81, "challenger": 10, "champion-v4": 9},
        {"champion": 45, "challenger": 10, "champion-v4": 45},
        {"champion": 0, "challenger": 10, "champion-v4": 90},
        {"champion": 90, "challenger": 10},  # the final config: the manifests', names included
    ]
    log = writes(ws)
    assert log[-1] == ("PUT", CHAMPION_ALIAS)  # the alias moves last,
    assert log[-2] == ("PATCH", TAGS) and log[-3] == ("PUT", CONFIG)  # after the final config and the marker's end
    assert result.out.count("analysis passed") == 3 and "smoke query 'answers-a-question' to champion-v4: passed" in \
        result.out
    assert_final(ws, "4")
    assert champion_alias(ws) == 4
    ws.reset_requests()  # no change means zero writes
    again = apply(ws, path)
    assert again.code == 0 and "No changes." in again.out and writes(ws) == []


def test_a_failed_smoke_query_shifts_no_traffic_and_exits_1_with_the_evidence(deployed, tmp_path):
    ws = deployed
    result = apply(ws, manifests(tmp_path, 5))
    assert result.code == 1
    line = next(line for line in result.out.splitlines() if line.strip().startswith("failed"))
    for evidence in ("rollout of champion to version 5 failed at its smoke queries, before any traffic",
                     "smoke query 'answers-a-question': status 500, expected 200",
                     "request POST /serving-endpoints/support-agent/served-models/champion-v5/invocations "
                     '{"messages": [{"role": "user", "content": "What is MLflow?"}]',
                     "ModuleNotFoundError: No module named 'langgraph'",
                     "rolled back: routes champion=90% challenger=10% restored, champion-v5 removed",
                     "aliases left where they were"):
        assert evidence in line, (evidence, line)
    assert all(routes.get("champion-v5", 0) == 0 for routes in config_routes(ws))  # no traffic ever shifted
    assert ("PUT", CHAMPION_ALIAS) not in writes(ws) and champion_alias(ws) == 3
    assert served(ws) == BEFORE and marker(ws) is None


def test_an_analysis_failure_at_step_2_restores_the_previous_split(deployed, tmp_path):
    ws = deployed
    stop = threading.Event()

    def degrade_at_step_2() -> None:  # version 4 starts failing once it gets half of the champion's traffic
        while not stop.wait(0.01):
            if "percent=50" in (marker(ws) or ""):
                with ws.state.lock:
                    ws.state.catalog.models[MODEL].versions[4].serving = parse_behaviour(
                        {"error_rate": 0.5, "status": 503, "message": "upstream connect error"})
                return

    watcher = threading.Thread(target=degrade_at_step_2, daemon=True)
    watcher.start()
    try:
        result = apply(ws, manifests(tmp_path, 4))
    finally:
        stop.set()
        watcher.join()
    assert result.code == 1
    assert "step 1 of 3 (10%): analysis passed" in result.out
    line = next(line for line in result.out.splitlines() if line.strip().startswith("failed"))
    assert "rollout of champion to version 4 failed at step 2 of 3 (50%): error rate" in line
    assert "> max_error_rate 0.05 (champion-v4: " in line and "5xx" in line
    assert "rolled back: routes champion=90% challenger=10% restored, champion-v4 removed" in line
    assert config_routes(ws)[-1] == {"champion": 90, "challenger": 10}  # one write puts the old split back
    assert all(routes.get("champion-v4", 0) <= 45 for routes in config_routes(ws))  # step 3 never came
    assert served(ws) == BEFORE and marker(ws) is None and champion_alias(ws) == 3


def test_a_version_that_fails_to_deploy_is_rolled_back_with_its_build_message(deployed, tmp_path):
    ws = deployed
    result = apply(ws, manifests(tmp_path, 8), traffic=False)
    assert result.code == 1
    assert "rollout of champion to version 8 failed at a config update: config update ended UPDATE_FAILED" in result.out
    assert "No module named 'langgraph'" in result.out
    assert served(ws) == BEFORE and marker(ws) is None and champion_alias(ws) == 3


def test_on_failure_keep_leaves_the_new_entity_at_0_percent_until_the_next_apply(deployed, tmp_path):
    ws = deployed
    result = apply(ws, manifests(tmp_path, 6, on_failure="keep"), traffic=False)
    assert result.code == 1 and "span \"main.agents.docs_index\" in error" in result.out
    assert "champion-v6 kept at 0% (on_failure: keep)" in result.out
    assert served(ws) == ({"champion": "3", "challenger": "4", "champion-v6": "6"},
                          {"champion": 90, "challenger": 10, "champion-v6": 0})
    assert marker(ws) == "entity=champion new=champion-v6 version=6 percent=0 failed"
    ws.reset_requests()  # the same manifests again: the kept entity's smoke queries run again, no redeploy
    again = apply(ws, manifests(tmp_path, 6, on_failure="keep"), traffic=False)
    assert again.code == 1 and "failed at its smoke queries" in again.out
    assert ("PUT", CONFIG) not in writes(ws) and marker(ws).endswith("failed")
    plan = run(ws, "plan", manifests(tmp_path, 3, on_failure="keep"), "--format", "json")
    change = next(c for c in plan.json["changes"] if c["address"] == f"serving_endpoint.{NAME}")
    assert [o["name"] for o in change["operations"]] == ["rollback_rollout"] and change["diff"] == []
    assert "rollout in progress: failed, new entity kept at 0%" in change["notes"][0]
    result = apply(ws, manifests(tmp_path, 3, on_failure="keep"), traffic=False)
    assert result.code == 0, result.out
    assert_final(ws, "3")


# ---- waiting for traffic -------------------------------------------------------------------------

def test_no_traffic_means_no_verdict_then_pass_or_fail_as_the_manifest_says(deployed, tmp_path):
    ws = deployed
    quiet = {"pause": "0.2s", "analysis": {**ROLLOUT["analysis"], "no_traffic_timeout": "0.4s"}}
    failed = apply(ws, manifests(tmp_path, 4, **quiet), traffic=False)
    assert failed.code == 1
    assert "failed at step 1 of 3 (10%): no verdict: fewer than min_requests 3 requests after 0.4s more" in failed.out
    assert served(ws) == BEFORE
    passing = {"pause": "0.2s", "analysis": {**ROLLOUT["analysis"], "no_traffic": "pass", "no_traffic_timeout": "0s"}}
    result = apply(ws, manifests(tmp_path, 4, **passing), traffic=False)
    assert result.code == 0, result.out
    assert result.out.count("no verdict (champion-v4: 0 requests") == 3 and "no_traffic: pass, going on" in result.out
    assert_final(ws, "4")


def test_gauges_of_the_last_window_are_read_once_per_window(deployed, tmp_path):
    """What real workspaces export: counts of the last window, stamped (metrics.py)."""
    ws = deployed
    ws.state.queries.configure(metrics_window_seconds=0.5)
    result = apply(ws, manifests(tmp_path, 4, pause="1.2s", analysis={**ROLLOUT["analysis"], "interval": "0.4s"}))
    assert result.code == 0, result.out
    assert result.out.count("analysis passed (champion-v4: ") == 3
    assert_final(ws, "4")


def test_no_wait_does_not_start_a_rollout(deployed, tmp_path):
    ws = deployed
    result = run(ws, "apply", manifests(tmp_path, 4), "--auto-approve", "--no-wait")
    assert result.code == 0, result.out + result.err  # what --no-wait says it does: not a failure
    assert "  not waited serving_endpoint.support-agent: no write needed | a rollout waits for each of its steps, " \
           "not started; run apply without --no-wait" in result.out.splitlines()
    assert writes(ws) == []


# ---- killed mid-rollout ----------------------------------------------------------------------------

def _at(ws: LocalWorkspace, percent: int, new_share: int | None) -> bool:
    """The marker records `percent` and the endpoint serves the new entity at `new_share` (None:
    being added), with no update in flight: the pause of that step (or the smoke queries)."""
    with ws.state.lock:
        ws.state.settle()
        ep = ws.state.serving.endpoints[NAME]
        if f"percent={percent} " not in (ep.tags.get(ROLLOUT_TAG, "") + " "):
            return False
        if new_share is None:
            return ep.pending is not None
        routes = {r["served_entity_name"]: r["traffic_percentage"] for r in (ep.config or {})["traffic_config"]["routes"]}
        return ep.pending is None and routes.get("champion-v4") == new_share


def _final_in_flight(ws: LocalWorkspace) -> bool:
    with ws.state.lock:
        ws.state.settle()
        pending = ws.state.serving.endpoints[NAME].pending
        return pending is not None and {e["name"] for e in pending.config["served_entities"]} == {"champion", "challenger"}


KILLS = [
    ("adding", lambda ws: _at(ws, 0, None), "rollout in progress: smoke queries", []),
    ("step 1", lambda ws: _at(ws, 10, 9), "rollout in progress: step 1 of 3", [0]),
    ("step 2", lambda ws: _at(ws, 50, 45), "rollout in progress: step 2 of 3", [0, 9]),
    ("step 3", lambda ws: _at(ws, 100, 90), "rollout in progress: step 3 of 3", [0, 9, 45]),
    ("final config", _final_in_flight, "champion-v4 is not served next to champion: apply removes the marker",
     [0, 9, 45, 90]),
]


def _killed(ws: LocalWorkspace, path: str, when: Callable[[LocalWorkspace], bool]) -> None:
    """Run `reconciler apply` in its own process, with traffic, and SIGKILL it once `when` holds."""
    env = dict(os.environ, DATABRICKS_HOST=ws.url, DATABRICKS_TOKEN=ws.token)
    for key in ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        env.pop(key, None)
    with Traffic(ws.url, ws.token, NAME, rate=60):
        victim = subprocess.Popen([str(ROOT / ".venv" / "bin" / "reconciler"), "apply", path, "--auto-approve"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while not when(ws):
            assert victim.poll() is None, f"apply ended before the moment to kill it: {victim.communicate()[0]}"
            assert time.monotonic() < deadline, "the moment to kill never came"
            time.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        victim.wait()


@pytest.mark.parametrize("moment, when, note, shares_before", KILLS, ids=[k[0] for k in KILLS])
def test_a_rollout_killed_at_each_step_is_resumed_by_the_next_apply(deployed, tmp_path, moment, when, note,
                                                                    shares_before):
    ws = deployed
    path = manifests(tmp_path, 4)
    _killed(ws, path, when)
    before = [routes.get("champion-v4") for routes in config_routes(ws)]
    plan = run(ws, "plan", path)
    assert plan.code == 0 and note in plan.out, plan.out
    assert "+ served_entities[champion-v4]" not in plan.out and ROLLOUT_TAG not in plan.out.split("# rollout")[0]
    markdown = run(ws, "plan", path, "--format", "markdown")
    assert note in markdown.out
    ws.reset_requests()
    result = apply(ws, path)
    assert result.code == 0, result.out + result.err
    resumed = [routes.get("champion-v4") for routes in config_routes(ws)]
    assert before[:len(shares_before)] == shares_before, (moment, before)
    assert not set(resumed) & set(shares_before[:-1]), f"{moment}: the re-run repeated an earlier step: {resumed}"
    if moment == "final config":  # it serves version 4 already: the alias need not wait for the marker's end
        assert sorted(writes(ws)) == [("PATCH", TAGS), ("PUT", CHAMPION_ALIAS)]
    else:
        assert writes(ws)[-1] == ("PUT", CHAMPION_ALIAS)
    assert_final(ws, "4")
    assert champion_alias(ws) == 4


def test_a_rollout_killed_at_step_2_whose_target_the_manifests_dropped_is_rolled_back_first(deployed, tmp_path):
    ws = deployed
    _killed(ws, manifests(tmp_path, 4), lambda w: _at(w, 50, 45))
    reverted = manifests(tmp_path, 3)
    plan = run(ws, "plan", reverted, "--format", "json")
    change = next(c for c in plan.json["changes"] if c["address"] == f"serving_endpoint.{NAME}")
    assert change["rollout"]["in_progress"] == {
        "entity": "champion", "new_entity": "champion-v4", "version": "4", "percent": 50, "failed": False, "step": 2,
        "of": 3, "resume": False, "note": change["notes"][0]}
    assert [o["name"] for o in change["operations"]] == ["rollback_rollout"] and change["diff"] == []
    ws.reset_requests()
    result = apply(ws, reverted)
    assert result.code == 0, result.out
    assert config_routes(ws) == [{"champion": 90, "challenger": 10}]  # one write restores the split
    assert writes(ws) == [("PUT", CONFIG), ("PATCH", TAGS)]
    assert_final(ws, "3")
    assert champion_alias(ws) == 3


def test_the_plan_json_shows_the_rollout_and_validates_against_the_plan_schema(deployed, tmp_path):
    import jsonschema

    schema = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())
    plan = run(deployed, "plan", manifests(tmp_path, 4), "--format", "json").json
    jsonschema.validate(plan, schema)
    rollout = next(c for c in plan["changes"] if c["address"] == f"serving_endpoint.{NAME}")["rollout"]
    assert rollout["expected"] == {"pause_seconds": 1.8, "config_updates": 5}
    assert rollout["targets"][0]["steps"][1] == {"percent": 50,
                                                 "traffic": {"champion": 45, "challenger": 10, "champion-v4": 45}}
    assert rollout["spec"]["smoke"][0]["expect"]["json"][0] == {"path": "$.choices[0].message.content",
                                                                "op": "matches", "value": "(?i)mlflow"}
    markdown = run(deployed, "plan", manifests(tmp_path, 4), "--format", "markdown").out
    assert "- **rollout** `serving_endpoint.support-agent`: champion v3 → v4: smoke queries, 10/50/100% steps" in markdown


def test_the_readme_example_rolls_out_as_written(deployed, tmp_path):
    """examples/rollout/support-agent.yaml, which the README quotes whole, with its pauses shortened."""
    example = ROOT / "examples" / "rollout" / "support-agent.yaml"
    text = example.read_text(encoding="utf-8")
    assert text.split("apiVersion:", 1)[1] in (ROOT / "README.md").read_text(encoding="utf-8")
    quick = (text.replace("champion: 3", "champion: 4").replace("pause: 5m", "pause: 0.5s")
             .replace("min_requests: 50", "min_requests: 3").replace("interval: 1m", "interval: 0.5s"))
    path = tmp_path / "example.yaml"
    path.write_text(quick, encoding="utf-8")
    result = apply(deployed, str(path))
    assert result.code == 0, result.out + result.err
    assert "smoke query 'responses-api' to champion-v4: passed" in result.out
    assert_final(deployed, "4")
