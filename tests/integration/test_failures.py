"""What users see when the workspace or their inputs are bad: one line per cause, exit 1, no
traceback, nothing written."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from harness import base_documents, run, write, writes


def assert_one_clean_error(result, *fragments):
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err + result.out and "Config:" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_unreachable_host(workspace, tmp_path):
    result = run(workspace, "plan", write(tmp_path, base_documents()), env={"DATABRICKS_HOST": "http://127.0.0.1:1"})
    assert_one_clean_error(result, "cannot reach Databricks host http://127.0.0.1:1")


def test_bad_token_is_reported_once(seeded_workspace, tmp_path):
    result = run(seeded_workspace, "plan", write(tmp_path, base_documents()), env={"DATABRICKS_TOKEN": "wrong"})
    # Five first-round reads fail alike: the model, the endpoint, the endpoint list, the secret
    # scopes, the logged agent.
    assert_one_clean_error(result, "Invalid access token", "(and 4 more)")
    assert "wrong" not in result.err


def test_read_only_token_cannot_apply(seeded_workspace, tmp_path):
    seeded_workspace.add_token("reader", read_only=True)
    result = run(seeded_workspace, "apply", write(tmp_path, base_documents()), "--auto-approve", "--no-lock",
                 env={"DATABRICKS_TOKEN": "reader"})
    assert result.code == 1 and "permission denied" in result.out and "Traceback" not in result.out + result.err
    assert "Apply failed" in result.out and writes(seeded_workspace) == []


def test_two_auth_methods_at_once(seeded_workspace, tmp_path):
    result = run(seeded_workspace, "plan", write(tmp_path, base_documents()),
                 env={"DATABRICKS_CLIENT_ID": "a", "DATABRICKS_CLIENT_SECRET": "b"})
    assert_one_clean_error(result, "more than one authorization method configured")


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a JSON plan"),
    (json.dumps({"format_version": "9"}), "not a reconciler plan"),
    (json.dumps({"format_version": "1", "changes": []}), "not a reconciler plan of format_version 2"),
    (json.dumps({"format_version": "2", "source": {"paths": [], "variables": [], "digest": ""},
                 "changes": [{"x": 1}]}), "malformed plan: changes[0]: unknown kind null"),
])
def test_bad_plan_files(workspace, tmp_path, content, message):
    path = tmp_path / "plan.json"
    path.write_text(content)
    assert_one_clean_error(run(workspace, "apply", "--plan", str(path)), str(path), message)


def test_plan_from_another_workspace_is_refused(seeded_workspace, make_workspace, tmp_path):
    docs = base_documents()
    out = str(tmp_path / "plan.json")
    assert run(seeded_workspace, "plan", write(tmp_path, docs), "--out", out).code == 0
    other = make_workspace()
    assert_one_clean_error(run(other, "apply", "--plan", out), "made against", "plan again against this workspace")


def test_apply_without_a_terminal_refuses_to_prompt(seeded_workspace, tmp_path):
    result = run(seeded_workspace, "apply", write(tmp_path, base_documents()))
    assert result.code == 1 and "pass --auto-approve" in result.err and writes(seeded_workspace) == []


def test_rate_limiting_beyond_the_retry_budget(seeded_workspace, tmp_path):
    seeded_workspace.set_faults(1.0, seed=1, kinds=["429"])
    result = run(seeded_workspace, "plan", write(tmp_path, base_documents()), env={"RECONCILER_RETRY_SECONDS": "2"})
    seeded_workspace.set_faults(0.0)
    assert result.code == 1 and "Traceback" not in result.err
    assert "rate limited" in result.err or "gave up after retrying" in result.err, result.err


def test_a_plan_read_that_gave_up_is_read_again_within_the_budget(seeded_workspace, tmp_path):
    """The endpoint's GET meets 429s (Retry-After 1 s) until a 2 s budget has no room for another
    wait: that read gives up, and is read again after the pause the server asked for, instead of
    losing the whole plan (`Workspace.persevering`): one read short of a budget, not a failed run."""
    route = ("GET", "/api/2.0/serving-endpoints/support-agent")
    seeded_workspace.set_faults(1.0, seed=1, kinds=["429"], retry_after=1, max_faults=2, only=route)
    seeded_workspace.reset_requests()
    result = run(seeded_workspace, "plan", write(tmp_path, base_documents()), env={"RECONCILER_RETRY_SECONDS": "2"})
    seeded_workspace.set_faults(0.0)
    assert result.code == 0, result.err
    answered = [e["status"] for e in seeded_workspace.requests() if (e["method"], e["path"]) == route]
    assert answered[:2] == [429, 429] and len(answered) == 3 and answered[2] != 429, answered  # 404: to be created


def test_unexpected_fields_and_enum_values_from_the_workspace_are_not_changes(seeded_workspace, tmp_path):
    """A newer API may answer with fields and enum values this release does not know: fields are kept
    as the server sent them (never a crash or a diff), and an enum value of a field the manifest
    states is compared as written. Here the manifest leaves workload_type out, which means the
    API's default (CPU): the plan shows that reset explicitly, and says why (this used to be
    silent: a field left out was not managed)."""
    ws = seeded_workspace
    path = write(tmp_path, base_documents())
    assert run(ws, "apply", path, "--auto-approve").code == 0
    with ws.state.lock:
        endpoint = ws.state.serving.endpoints["support-agent"]
        endpoint.config["served_entities"][0]["workload_type"] = "GPU_FROM_THE_FUTURE"
        endpoint.config["served_entities"][0]["future_field"] = {"nested": [1, 2]}
        endpoint.ai_gateway = {**endpoint.ai_gateway, "future_block": {"enabled": True}}
    raw = ws.client().api_client.do("GET", "/api/2.0/serving-endpoints/support-agent")
    assert raw["config"]["served_entities"][0]["workload_type"] == "GPU_FROM_THE_FUTURE"  # on the wire
    assert raw["ai_gateway"]["future_block"] == {"enabled": True}
    result = run(ws, "plan", path, "--format", "json")
    assert (result.code, result.err) == (0, ""), result.out + result.err
    [change] = [c for c in result.json["changes"] if c["address"] == "serving_endpoint.support-agent"]
    assert change["diff"] == [{"path": "served_entities[champion].workload_type", "before": "GPU_FROM_THE_FUTURE",
                               "after": "CPU"}]
    assert "served_entities[champion].workload_type: GPU_FROM_THE_FUTURE → CPU only because the manifest leaves " \
           "workload_type out" in change["notes"]


def test_a_bad_manifest_is_reported_before_anything_about_the_workspace(seeded_workspace, tmp_path):
    """A refused manifest is what the user sees, whether or not the host answers, and nothing is
    sent (reads do not start while the manifests load: names are held to the grammar first)."""
    docs = base_documents()
    docs[1]["spec"]["served_entities"][0]["entity_versionn"] = "3"
    path = write(tmp_path, docs)
    for env in ({}, {"DATABRICKS_HOST": "http://127.0.0.1:1"}):
        result = run(seeded_workspace, "plan", path, env=env)
        assert_one_clean_error(result, "unknown field 'entity_versionn'")
    assert seeded_workspace.requests() == []


def test_plan_reads_each_object_once(seeded_workspace, tmp_path):
    seeded_workspace.reset_requests()
    result = run(seeded_workspace, "plan", write(tmp_path, base_documents()))
    assert result.code == 0, result.err
    reads = Counter(r["path"] for r in seeded_workspace.requests() if r["method"] == "GET")
    assert reads["/api/2.0/serving-endpoints/support-agent"] == 1
    assert reads["/api/2.1/unity-catalog/models/main.agents.support_agent"] == 1
