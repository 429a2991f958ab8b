"""End-to-end apply through the CLI against the local workspace: minimal writes (counted from the
workspace's request log), safe promotion, failure handling, saved plans, recovery."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter

import pytest
from harness import MODEL, ROOT, base_documents, endpoint, model, run, write, writes

CONFIG_PUT = ("PUT", "/api/2.0/serving-endpoints/support-agent/config")
CREATE = ("POST", "/api/2.0/serving-endpoints")


def apply_ok(ws, path, *extra):
    result = run(ws, "apply", path, "--auto-approve", *extra)
    assert result.code == 0, result.out + result.err
    return result


def assert_converged(ws, path):
    ws.reset_requests()
    result = run(ws, "plan", path, "--detailed-exitcode")
    assert (result.code, result.err) == (0, ""), result.out + result.err
    again = run(ws, "apply", path, "--auto-approve")
    assert again.code == 0 and writes(ws) == [], again.out


def test_create_from_empty_then_a_second_apply_writes_nothing(seeded_workspace, tmp_path):
    ws = seeded_workspace
    path = write(tmp_path, base_documents())
    result = apply_ok(ws, path)
    assert writes(ws) == [
        CREATE,
        ("PATCH", next(p for m, p in writes(ws) if p.startswith("/api/2.0/permissions/"))),
        ("PUT", f"/api/2.1/unity-catalog/models/{MODEL}/aliases/challenger"),
    ]
    assert "Apply complete: 2 applied, 0 failed, 0 not applied." in result.out
    assert_converged(ws, path)


def _scenarios():
    def alias_move(docs):
        model(docs)["spec"]["aliases"]["champion"] = 4

    def traffic(docs):
        for route, pct in zip(endpoint(docs)["spec"]["traffic_config"]["routes"], (50, 50), strict=True):
            route["traffic_percentage"] = pct

    def env(docs):
        variables = endpoint(docs)["spec"]["served_entities"][0]["environment_vars"]
        variables["NEW_SETTING"] = "1"
        del variables["ENABLE_MLFLOW_TRACING"]

    def tags(docs):
        endpoint(docs)["spec"]["tags"] = {"team": "cx"}

    def gateway(docs):
        endpoint(docs)["spec"]["ai_gateway"]["usage_tracking_config"] = {"enabled": True}

    def permissions(docs):
        endpoint(docs)["spec"]["permissions"] = [{"group_name": "support-team", "permission_level": "CAN_VIEW"}]

    def alias_removed(docs):
        del model(docs)["spec"]["aliases"]["challenger"]
        endpoint(docs)["spec"]["served_entities"][1]["alias"] = "champion"

    def description(docs):
        endpoint(docs)["spec"]["description"] = "replaced"

    return {
        "alias-move": (alias_move, [CONFIG_PUT, ("PUT", f"/api/2.1/unity-catalog/models/{MODEL}/aliases/champion")]),
        "traffic-shift": (traffic, [CONFIG_PUT]),
        "env-vars": (env, [CONFIG_PUT]),
        "tags": (tags, [("PATCH", "/api/2.0/serving-endpoints/support-agent/tags")]),
        "ai-gateway": (gateway, [("PUT", "/api/2.0/serving-endpoints/support-agent/ai-gateway")]),
        "permissions": (permissions, ["PUT permissions"]),
        "alias-removed": (alias_removed, [CONFIG_PUT, ("DELETE", f"/api/2.1/unity-catalog/models/{MODEL}/aliases/challenger")]),
        "replace": (description, [("DELETE", "/api/2.0/serving-endpoints/support-agent"), CREATE, "PATCH permissions"]),
    }


@pytest.mark.parametrize("name", list(_scenarios()))
def test_each_scenario_applies_with_exactly_its_writes_and_converges(seeded_workspace, tmp_path, name):
    mutate, expected = _scenarios()[name]
    ws = seeded_workspace
    docs = base_documents()
    apply_ok(ws, write(tmp_path, docs))
    mutate(docs)
    path = write(tmp_path, docs)
    ws.reset_requests()
    apply_ok(ws, path, "--allow-replace")
    got = [f"{m} permissions" if p.startswith("/api/2.0/permissions/") else (m, p) for m, p in writes(ws)]
    assert got == expected
    assert_converged(ws, path)


def test_safe_promotion_moves_the_alias_only_after_the_endpoint_serves_the_version(seeded_workspace, tmp_path):
    ws = seeded_workspace
    docs = base_documents()
    apply_ok(ws, write(tmp_path, docs))
    model(docs)["spec"]["aliases"]["champion"] = 4
    ws.set_update_seconds(0.3)
    ws.reset_requests()
    apply_ok(ws, write(tmp_path, docs))
    log = [(r["method"], r["path"]) for r in ws.requests()]
    config_at, alias_at = log.index(CONFIG_PUT), log.index(("PUT", f"/api/2.1/unity-catalog/models/{MODEL}/aliases/champion"))
    polls = [i for i, (m, p) in enumerate(log) if (m, p) == ("GET", "/api/2.0/serving-endpoints/support-agent")]
    assert config_at < max(p for p in polls if p < alias_at) < alias_at  # polled until served, then moved


def test_update_failed_leaves_alias_and_serving_config_untouched(seeded_workspace, tmp_path):
    ws = seeded_workspace
    docs = base_documents()
    apply_ok(ws, write(tmp_path, docs))
    model(docs)["spec"]["aliases"]["champion"] = 6  # version 6 is seeded to fail deployment
    result = run(ws, "apply", write(tmp_path, docs), "--auto-approve")
    assert result.code == 1
    assert "ModuleNotFoundError: No module named 'langgraph'" in result.out
    assert "Apply failed" in result.out and "set_alias(champion → 6) not done" in result.out
    client = ws.client()
    aliases = {a.alias_name: a.version_num for a in client.registered_models.get(MODEL, include_aliases=True).aliases}
    assert aliases == {"champion": 3, "challenger": 4}
    served = {e.name: e.entity_version for e in client.serving_endpoints.get("support-agent").config.served_entities}
    assert served == {"champion": "3", "challenger": "4"}
    # The failed update is still the endpoint's pending_config; it must not count as served.
    again = run(ws, "plan", write(tmp_path, docs), "--detailed-exitcode")
    assert again.code == 2 and 'served_entities[champion].entity_version: "3" → "6"' in again.out
    assert "the last config update failed; the previous config is still serving" in again.out


def _saved_tag_change_plan(ws, tmp_path):
    """The example applied, then a plan to change one tag saved with --out."""
    docs = base_documents()
    apply_ok(ws, write(tmp_path, docs))
    endpoint(docs)["spec"]["tags"]["team"] = "cx"
    plan_file = str(tmp_path / "plan.json")
    assert run(ws, "plan", write(tmp_path, docs), "--out", plan_file).code == 0
    assert ws.token not in open(plan_file).read()
    return plan_file


def test_stale_saved_plan_is_refused(seeded_workspace, tmp_path):
    from databricks.sdk.service.serving import EndpointTag

    ws = seeded_workspace
    plan_file = _saved_tag_change_plan(ws, tmp_path)
    ws.client().serving_endpoints.patch("support-agent", add_tags=[EndpointTag(key="owner", value="someone")])
    ws.reset_requests()
    result = run(ws, "apply", "--plan", plan_file)
    assert result.code == 1 and writes(ws) == []
    assert "serving_endpoint.support-agent: changed since the plan was made; the saved plan is stale" in result.err


def test_saved_plan_applies_exactly(seeded_workspace, tmp_path):
    ws = seeded_workspace
    plan_file = _saved_tag_change_plan(ws, tmp_path)
    ws.reset_requests()
    result = run(ws, "apply", "--plan", plan_file)
    assert result.code == 0, result.err
    assert writes(ws) == [("PATCH", "/api/2.0/serving-endpoints/support-agent/tags")]


def test_an_update_started_by_someone_else_is_waited_out(seeded_workspace, tmp_path):
    from databricks.sdk.service.serving import ServedEntityInput, TrafficConfig

    ws = seeded_workspace
    docs = base_documents()
    apply_ok(ws, write(tmp_path, docs))
    ws.set_update_seconds(0.6)
    client = ws.client()
    current = client.serving_endpoints.get("support-agent").config
    client.serving_endpoints.update_config("support-agent", served_entities=[
        ServedEntityInput.from_dict({**e.as_dict(), "workload_size": "Medium"}) for e in current.served_entities],
        traffic_config=TrafficConfig.from_dict(current.traffic_config.as_dict()))
    model(docs)["spec"]["aliases"]["champion"] = 4
    ws.reset_requests()
    result = apply_ok(ws, write(tmp_path, docs))
    assert "waiting for it before writing" in result.out
    assert not [r for r in ws.requests() if r["status"] == 409]


def test_no_wait_sends_the_update_and_leaves_linked_aliases(seeded_workspace, tmp_path):
    ws = seeded_workspace
    docs = base_documents()
    apply_ok(ws, write(tmp_path, docs))
    model(docs)["spec"]["aliases"]["champion"] = 4
    ws.set_update_seconds(5)
    ws.reset_requests()
    result = run(ws, "apply", write(tmp_path, docs), "--auto-approve", "--no-wait")
    # The alias move was not done, as --no-wait says: not a failure, and the run says so distinctly.
    assert result.code == 0, result.out + result.err
    assert writes(ws) == [CONFIG_PUT]
    lines = result.out.splitlines()
    assert any(line.startswith("  sent       serving_endpoint.support-agent: update_config(") and
               line.endswith(" | the update was sent, not waited for (--no-wait)") for line in lines)
    assert "  not waited registered_model.main.agents.support_agent: no write needed | set_alias(champion → 4) " \
           "not done: serving_endpoint.support-agent not waited for (--no-wait); run apply again once it serves " \
           "the new version" in lines
    assert "Apply complete: 1 applied, 0 failed, 0 not applied, 1 not waited for (--no-wait: run apply again to " \
           "finish)." in lines
    assert "Apply failed" not in result.out

    # What --no-wait does not excuse still fails: an update that was refused (a read-only token).
    ws.set_update_seconds(0)
    model(docs)["spec"]["aliases"]["champion"] = 3
    endpoint(docs)["spec"]["tags"]["team"] = "cx"
    ws.add_token("reader", read_only=True)
    failed = run(ws, "apply", write(tmp_path, docs), "--auto-approve", "--no-wait", "--no-lock",
                 env={"DATABRICKS_TOKEN": "reader"})
    assert failed.code == 1 and "Apply failed" in failed.out and "not waited" not in failed.out


def test_faults_still_converge_without_duplicate_writes(seeded_workspace, tmp_path):
    ws = seeded_workspace
    docs = base_documents()
    path = write(tmp_path, docs)
    ws.set_faults(0.2, seed=7, kinds=["429", "503", "drop", "drop_after"])
    for _ in range(4):
        if run(ws, "apply", path, "--auto-approve").code == 0:
            break
    ws.set_faults(0.0)
    landed = Counter((r["method"], r["path"]) for r in ws.requests()
                     if r["method"] != "GET" and r["status"] is not None and r["status"] < 300)
    assert landed[CREATE] == 1 and all(count == 1 for count in landed.values()), landed
    assert_converged(ws, path)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_run_killed_mid_apply_is_finished_by_the_next(tmp_path):
    port = _free_port()
    reconciler = [sys.executable, "-m", "reconciler.cli"] if False else [str(ROOT / ".venv" / "bin" / "reconciler")]
    server = subprocess.Popen(reconciler + ["sim", "serve", "--port", str(port), "--seed",
                                            str(ROOT / "tests" / "seeds" / "support_agent.yaml"),
                                            "--update-seconds", "3", "--token", "t"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "listening" in server.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, DATABRICKS_HOST=url, DATABRICKS_TOKEN="t")
        path = write(tmp_path, base_documents())
        apply = subprocess.Popen(reconciler + ["apply", path, "--auto-approve"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # kill it while the endpoint create is in progress
            log = json.load(urllib.request.urlopen(f"{url}/__sim/requests"))
            log = log["requests"] if isinstance(log, dict) else log
            if any(r["method"] == "POST" and r["path"] == "/api/2.0/serving-endpoints" for r in log):
                break
            time.sleep(0.05)
        apply.send_signal(signal.SIGKILL)
        apply.wait()
        finish = subprocess.run(reconciler + ["apply", path, "--auto-approve"], env=env, capture_output=True, text=True)
        assert finish.returncode == 0, finish.stdout + finish.stderr
        log = json.load(urllib.request.urlopen(f"{url}/__sim/requests"))
        log = log["requests"] if isinstance(log, dict) else log
        landed = Counter((r["method"], r["path"]) for r in log if r["method"] != "GET" and r["status"] < 300)
        assert landed[("POST", "/api/2.0/serving-endpoints")] == 1
        assert landed[("PUT", f"/api/2.1/unity-catalog/models/{MODEL}/aliases/challenger")] == 1
        again = subprocess.run(reconciler + ["plan", path, "--detailed-exitcode"], env=env, capture_output=True, text=True)
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)


def test_a_create_that_failed_is_planned_again(seeded_workspace, tmp_path):
    ws = seeded_workspace
    docs = base_documents()
    model(docs)["spec"]["aliases"]["champion"] = 6  # fails to deploy: the new endpoint never serves
    result = run(ws, "apply", write(tmp_path, docs), "--auto-approve")
    assert result.code == 1 and "ModuleNotFoundError" in result.out
    model(docs)["spec"]["aliases"]["champion"] = 3
    again = run(ws, "plan", write(tmp_path, docs), "--format", "json")
    ops = {c["address"]: [o["name"] for o in c["operations"]] for c in again.json["changes"]}
    assert ops["serving_endpoint.support-agent"] == ["update_config"]
    apply_ok(ws, write(tmp_path, docs))
    assert_converged(ws, write(tmp_path, docs))


def test_a_write_that_gave_up_is_re_derived_from_a_fresh_read_in_the_same_run(seeded_workspace, tmp_path):
    """The config PUT meets two 429s with Retry-After: 1 in a 2 s retry budget, so its call gives
    up; the run re-reads the endpoint, finds the write still needed and makes it: one run, one
    config write landed, converged."""
    ws = seeded_workspace
    docs = base_documents()
    apply_ok(ws, write(tmp_path, docs))
    for route, pct in zip(endpoint(docs)["spec"]["traffic_config"]["routes"], (50, 50), strict=True):
        route["traffic_percentage"] = pct
    path = write(tmp_path, docs)
    ws.reset_requests()
    ws.set_faults(1.0, seed=1, kinds=["429"], retry_after=1, max_faults=2, only=CONFIG_PUT)
    result = run(ws, "apply", path, "--auto-approve", env={"RECONCILER_RETRY_SECONDS": "2"})
    ws.set_faults(0.0)
    assert result.code == 0, result.out + result.err
    assert "re-reading it to re-derive its remaining writes" in result.out
    log = ws.requests()
    puts = [i for i, r in enumerate(log) if (r["method"], r["path"]) == CONFIG_PUT]
    assert [log[i]["fault"] for i in puts] == ["429", "429", None] and log[puts[-1]]["status"] == 200
    endpoint_get = ("GET", CONFIG_PUT[1].removesuffix("/config"))
    assert any((r["method"], r["path"]) == endpoint_get for r in log[puts[1]:puts[2]])  # re-read in between
    assert_converged(ws, path)


def test_a_write_that_keeps_giving_up_fails_the_object_within_its_budget(seeded_workspace, tmp_path):
    """Every config PUT meets a 429: the step is re-derived within one more retry budget, then the
    object fails with the server's reason (the next run finishes the job)."""
    ws = seeded_workspace
    docs = base_documents()
    apply_ok(ws, write(tmp_path, docs))
    endpoint(docs)["spec"]["tags"]["release"] = "r2"
    for route, pct in zip(endpoint(docs)["spec"]["traffic_config"]["routes"], (50, 50), strict=True):
        route["traffic_percentage"] = pct
    path = write(tmp_path, docs)
    ws.reset_requests()
    ws.set_faults(1.0, seed=1, kinds=["429"], retry_after=1, only=CONFIG_PUT)
    result = run(ws, "apply", path, "--auto-approve", env={"RECONCILER_RETRY_SECONDS": "2"})
    ws.set_faults(0.0)
    assert result.code == 1 and "Traceback" not in result.out + result.err
    assert re.search(r"^  failed +serving_endpoint\.support-agent", result.out, re.M) and "rate limited" in result.out, \
        result.out
    puts = [r for r in ws.requests() if (r["method"], r["path"]) == CONFIG_PUT]
    assert 2 < len(puts) <= 2 * 4  # two attempts per try: the first, and at most MAX_AGAIN more
    tag_writes = [r for r in ws.requests() if r["method"] == "PATCH"]
    assert len(tag_writes) == 1  # landed once; a re-derivation does not repeat it
    apply_ok(ws, path)  # the next run finishes the job
    assert_converged(ws, path)


def test_an_alias_moves_as_soon_as_its_endpoint_serves_while_another_still_updates(make_workspace, tmp_path):
    """Two agents bumped at once: agent 0's alias moves once agent 0's endpoint serves the new
    version, while agent 1's config write is still unanswered (its answer is held back); agent
    1's alias moves only after its own endpoint serves. Before, every alias move waited for every
    endpoint (kinds/__init__.py: the alias step is `early`)."""
    import threading

    from bench import fleet

    ws = make_workspace(fleet.seed(2, versions=3), update_seconds=0.2)
    ws.log_responses = True
    path = str(fleet.write_manifests(tmp_path / "manifests", 2, version=2))
    slow = ws.hold_answer("PUT", f"/api/2.0/serving-endpoints/{fleet.endpoint_name(1)}/config")
    outcome: dict[str, object] = {}
    runner = threading.Thread(target=lambda: outcome.update(result=run(ws, "apply", path, "--auto-approve")))
    runner.start()
    first_alias = ("PUT", f"/api/2.1/unity-catalog/models/{fleet.model_name(0)}/aliases/champion")
    deadline = time.monotonic() + 30
    try:
        while not any((e["method"], e["path"]) == first_alias for e in ws.requests()):
            assert time.monotonic() < deadline, "agent 0's alias waited for agent 1's endpoint"
            time.sleep(0.05)
        assert slow.reached.is_set() and not slow.released.is_set()
    finally:
        slow.release()
        runner.join(timeout=60)
    result = outcome["result"]
    assert result.code == 0, result.out + result.err
    log = ws.requests()
    order = [(e["method"], e["path"]) for e in log if e["method"] != "GET"]
    second_alias = ("PUT", f"/api/2.1/unity-catalog/models/{fleet.model_name(1)}/aliases/champion")
    assert order.index(first_alias) < order.index(second_alias)
    ready = [i for i, e in enumerate(log) if e["method"] == "GET" and e["path"].endswith(fleet.endpoint_name(1))
             and ((e.get("response") or {}).get("body") or {}).get("state", {}).get("config_update") == "NOT_UPDATING"]
    assert ready and ready[-1] < [i for i, e in enumerate(log) if (e["method"], e["path"]) == second_alias][0]


def test_an_apply_reads_a_ready_version_and_its_mlmodel_once(make_workspace, tmp_path):
    """Apply plans before the lock and again under it; what cannot change between the two (a READY
    version, that version's MLmodel file) is read once per run (Workspace.get_model_version,
    read_mlmodel), while the model and the endpoint, which can, are read by both plans."""
    from bench import fleet

    ws = make_workspace(fleet.seed(1, versions=2), update_seconds=0.1)
    path = str(fleet.write_manifests(tmp_path / "manifests", 1, version=2))
    ws.reset_requests()
    apply_ok(ws, path)
    gets = Counter(e["path"] for e in ws.requests() if e["method"] == "GET")
    assert gets[f"/api/2.1/unity-catalog/models/{fleet.model_name(0)}/versions/2"] == 1, gets
    assert gets["/api/2.0/fs/files/Models/main/bench/agent_000/2/MLmodel"] == 1, gets
    assert gets[f"/api/2.1/unity-catalog/models/{fleet.model_name(0)}"] >= 2, gets
