"""A saved plan is a commitment, never a program: `apply --plan` plans again and applies only if the
new plan is the saved one. A corpus of tampered plans, each refused with exit 1, one line per
difference, and no write to models, aliases, endpoints or permissions (the local workspace's
request log); and the plans that are what they say, applied."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from databricks.sdk.service.serving import EndpointCoreConfigInput, EndpointTag
from harness import MODEL, base_documents, endpoint, model, run, write, writes

EP = "serving_endpoint.support-agent"
RM = f"registered_model.{MODEL}"
STRANGER = "user_name:stranger@example.net"


@pytest.fixture
def deployed(seeded_workspace, tmp_path):
    """The example deployed, and two endpoints these manifests do not own: one unmanaged, one
    managed by another stack."""
    ws = seeded_workspace
    assert run(ws, "apply", write(tmp_path, base_documents(), "base.yaml"), "--auto-approve").code == 0
    config = EndpointCoreConfigInput.from_dict({"served_entities": [
        {"entity_name": MODEL, "entity_version": "3", "workload_size": "Small", "scale_to_zero_enabled": True}]})
    client = ws.client()
    client.serving_endpoints.create("other-agent", config=config)
    client.serving_endpoints.create("team-agent", config=config, tags=[
        EndpointTag(key="managed-by", value="reconciler"), EndpointTag(key="reconciler-stack", value="other")])
    return ws


def saved(ws, tmp_path, docs, *extra) -> tuple[Path, dict]:
    path = write(tmp_path, docs, "planned.yaml")
    out = tmp_path / "plan.json"
    result = run(ws, "plan", path, "--out", str(out), *extra)
    assert result.code == 0, result.err
    return out, json.loads(out.read_text())


def tag_change(ws, tmp_path) -> tuple[Path, dict]:
    docs = base_documents()
    endpoint(docs)["spec"]["tags"]["team"] = "cx"
    return saved(ws, tmp_path, docs)


def alias_move(ws, tmp_path) -> tuple[Path, dict]:
    docs = base_documents()
    model(docs)["spec"]["aliases"]["champion"] = 4
    return saved(ws, tmp_path, docs)


def change_of(plan: dict, address: str) -> dict:
    return next(c for c in plan["changes"] if c["address"] == address)


def foreign_deletes(ws, tmp_path, plan):
    """Two deletes of endpoints the stack does not own, fingerprints copied from a plan that named them."""
    docs = base_documents()
    for name in ("other-agent", "team-agent"):
        doc = copy.deepcopy(endpoint(docs))
        doc["metadata"]["name"] = name
        docs.append(doc)
    named = json.loads(run(ws, "plan", write(tmp_path, docs, "named.yaml"), "--format", "json").out)
    for name in ("other-agent", "team-agent"):
        change = change_of(named, f"serving_endpoint.{name}")
        change.update(action="delete", diff=[], desired=None, notes=[],
                      operations=[{"name": "delete_endpoint", "description": f"delete_endpoint({name})", "after": [],
                                   "args": {}}])
        plan["changes"].append(change)
        plan["summary"]["delete"] += 1


def stranger_in_desired(ws, tmp_path, plan):
    desired = change_of(plan, EP)["desired"]
    desired["permissions"][STRANGER] = "CAN_MANAGE"
    desired["served_entities"]["champion"]["environment_vars"]["HTTPS_PROXY"] = "http://proxy.example.net:3128"


def emptied_after(ws, tmp_path, plan):
    for op in change_of(plan, RM)["operations"]:
        op["after"] = []


def reordered(ws, tmp_path, plan):
    plan["changes"].reverse()


def duplicated(ws, tmp_path, plan):
    plan["changes"].append(copy.deepcopy(change_of(plan, EP)))


def no_host(ws, tmp_path, plan):
    plan["workspace_host"] = None


def other_stack(ws, tmp_path, plan):
    plan["stack"] = "other"


def pruning(ws, tmp_path, plan):
    plan["prune"] = True


def other_deployer(ws, tmp_path, plan):
    plan["deployer"] = STRANGER


def edited_fingerprint(ws, tmp_path, plan):
    change_of(plan, EP)["fingerprint"] = "0" * 16


def action_no_op(ws, tmp_path, plan):
    change = change_of(plan, EP)
    change["action"] = "no-op"
    plan["summary"]["update"] -= 1
    plan["summary"]["no-op"] += 1


def extra_operation(ws, tmp_path, plan):
    change_of(plan, EP)["operations"].append({"name": "update_permissions", "after": [], "args": {},
                                              "description": f"update_permissions({STRANGER} → CAN_MANAGE)"})


# (tamper, saved plan, the lines expected on stderr: each a fragment of one line)
CORPUS = {
    "deletes of endpoints not owned": (foreign_deletes, tag_change, [
        "serving_endpoint.other-agent: in the saved plan (delete) but not in the plan of these manifests now",
        "serving_endpoint.team-agent: in the saved plan (delete) but not in the plan of these manifests now"]),
    "a stranger's grant and a proxy in desired": (stranger_in_desired, tag_change, [
        f'{EP}: desired["permissions"]["{STRANGER}"]: the saved plan says "CAN_MANAGE", now nothing',
        f'{EP}: desired["served_entities"]["champion"]["environment_vars"]["HTTPS_PROXY"]: the saved plan says '
        '"http://proxy.example.net:3128", now nothing']),
    "an operation's after emptied": (emptied_after, alias_move, [
        f"{RM}: operations[0]: the saved plan says set_alias(champion → 4) {{"]),
    "changes reordered": (reordered, tag_change, ["changes: not in the order plan makes them"]),
    "a change duplicated": (duplicated, tag_change, [f"{EP}: listed 2 times in the saved plan"]),
    "workspace_host null": (no_host, tag_change, ["plan.json: names no workspace it was made against"]),
    "another stack": (other_stack, tag_change, ["stack: the plan was made for stack \"other\", this apply is for no stack"]),
    "prune turned on": (pruning, tag_change, ["prune: the plan was made with --prune, this apply runs without it"]),
    "another deployer": (other_deployer, tag_change, [f"deployer: the plan keeps CAN_MANAGE for \"{STRANGER}\""]),
    "a fingerprint edited": (edited_fingerprint, tag_change, [f"{EP}: changed since the plan was made; the saved "
                                                              "plan is stale"]),
    "an update made a no-op": (action_no_op, tag_change, [f"{EP}: action: the saved plan says \"no-op\", now "
                                                          "\"update\""]),
    "an operation added": (extra_operation, tag_change, [f"{EP}: operations: in the saved plan, not now: "
                                                         f"update_permissions({STRANGER} → CAN_MANAGE)"]),
}


def assert_refused(ws, result, expected):
    assert result.code == 1, result.out + result.err
    lines = result.err.strip().splitlines()
    assert "Traceback" not in result.err and len(lines) == len(expected), result.err
    for fragment in expected:
        assert any(fragment in line for line in lines), (fragment, result.err)
    assert writes(ws) == []  # nothing written to models, aliases, endpoints or permissions


@pytest.mark.parametrize("case", list(CORPUS))
def test_a_tampered_plan_is_refused_before_any_write(deployed, tmp_path, case):
    tamper, make, expected = CORPUS[case]
    plan_file, plan = make(deployed, tmp_path)
    tamper(deployed, tmp_path, plan)
    plan_file.write_text(json.dumps(plan))
    deployed.reset_requests()
    assert_refused(deployed, run(deployed, "apply", "--plan", str(plan_file)), expected)


@pytest.mark.parametrize("content, message", [
    ("TRUNCATED", "not a JSON plan"),
    (json.dumps({"format_version": "1", "changes": []}), "not a reconciler plan of format_version 2 (it says \"1\")"),
    ("NAME", "malformed plan: changes[1]: '../../2.1/unity-catalog/models/main.agents.support_agent' is not a valid "
             "endpoint name"),
])
def test_a_plan_that_is_not_one_is_refused_before_any_request(deployed, tmp_path, content, message):
    plan_file, plan = tag_change(deployed, tmp_path)
    if content == "TRUNCATED":
        content = plan_file.read_text()[:-40]
    elif content == "NAME":  # the name reached request paths unchecked and deleted the model
        change = change_of(plan, EP)
        change["name"] = "../../2.1/unity-catalog/models/main.agents.support_agent"
        change["address"] = f"serving_endpoint.{change['name']}"
        change["action"] = "delete"
        content = json.dumps(plan)
    plan_file.write_text(content)
    deployed.reset_requests()
    result = run(deployed, "apply", "--plan", str(plan_file))
    assert result.code == 1 and result.err.strip().splitlines() == [f"{plan_file}: {message}"] or \
        message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert deployed.requests() == []


def test_a_plan_of_other_manifests_is_refused(deployed, tmp_path):
    plan_file, _ = tag_change(deployed, tmp_path)
    docs = base_documents()
    endpoint(docs)["spec"]["tags"]["team"] = "ops"
    deployed.reset_requests()
    result = run(deployed, "apply", write(tmp_path, docs, "others.yaml"), "--plan", str(plan_file))
    lines = result.err.strip().splitlines()
    assert result.code == 1 and writes(deployed) == []
    assert "manifests: not the ones the plan was made from" in lines[0]
    assert all(line.startswith(f"{EP}: ") and "the saved plan differs" in line for line in lines[1:]), result.err
    assert any('tags[team]: "support" → "ops"' in line for line in lines)


def test_the_plan_is_applied_from_the_manifests_it_records_or_the_paths_given(deployed, tmp_path):
    plan_file, plan = tag_change(deployed, tmp_path)
    assert plan["source"]["paths"] == [str(tmp_path / "planned.yaml")] and plan["source"]["variables"] == []
    deployed.reset_requests()
    result = run(deployed, "apply", str(tmp_path / "planned.yaml"), "--plan", str(plan_file))
    assert result.code == 0, result.err
    assert writes(deployed) == [("PATCH", "/api/2.0/serving-endpoints/support-agent/tags")]
    _, again = saved(deployed, tmp_path, base_documents())  # and back, from the recorded path
    deployed.reset_requests()
    result = run(deployed, "apply", "--plan", str(tmp_path / "plan.json"))
    assert result.code == 0, result.err
    assert f"Planning again from the manifests {tmp_path / 'plan.json'} was made from" in result.out
    assert writes(deployed) == [("PATCH", "/api/2.0/serving-endpoints/support-agent/tags")]


def test_variables_are_given_to_apply_as_to_plan(deployed, tmp_path):
    docs = base_documents()
    endpoint(docs)["spec"]["tags"]["team"] = "${var.team}"
    plan_file, plan = saved(deployed, tmp_path, docs, "--var", "team=cx")
    assert plan["source"]["variables"] == ["team"] and "cx" not in json.dumps(plan["source"])
    deployed.reset_requests()
    missing = run(deployed, "apply", "--plan", str(plan_file))
    assert missing.code == 1 and "variable 'team' is not defined" in missing.err and deployed.requests() == []
    other = run(deployed, "apply", "--plan", str(plan_file), "--var", "team=ops")
    assert other.code == 1 and "manifests: not the ones the plan was made from" in other.err
    assert writes(deployed) == []
    same = run(deployed, "apply", "--plan", str(plan_file), "--var", "team=cx")
    assert same.code == 0, same.err
    assert writes(deployed) == [("PATCH", "/api/2.0/serving-endpoints/support-agent/tags")]
