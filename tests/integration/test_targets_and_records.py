"""A no-op apply writes nothing; plan names the stack's managed endpoints that left the manifests;
--target limits plan and apply to named objects and what they depend on; apply --format json is
an audit record. All through the CLI, against the local workspace (its request log is the proof)."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
from databricks.sdk.service.serving import EndpointCoreConfigInput, EndpointTag
from harness import MODEL, ROOT, base_documents, endpoint, model, run, write, writes

APPLY_SCHEMA = json.loads((ROOT / "schemas" / "apply.schema.json").read_text(encoding="utf-8"))
WRITES = ("POST", "PUT", "PATCH", "DELETE")
A, B = "serving_endpoint.support-agent", "serving_endpoint.support-agent-b"
REGISTERED = f"registered_model.{MODEL}"
CONFIG = EndpointCoreConfigInput.from_dict({"served_entities": [
    {"entity_name": MODEL, "entity_version": "3", "workload_size": "Small", "scale_to_zero_enabled": True}]})


def two_endpoints() -> list[dict]:
    """The example, plus a second endpoint that pins version 3 (it follows no alias)."""
    documents = base_documents()
    second = copy.deepcopy(endpoint(documents))
    second["metadata"]["name"] = "support-agent-b"
    second["spec"]["served_entities"] = [{"name": "main", "entity_name": MODEL, "entity_version": 3,
                                          "workload_size": "Small", "scale_to_zero_enabled": True}]
    second["spec"]["traffic_config"] = {"routes": [{"served_entity_name": "main", "traffic_percentage": 100}]}
    return documents + [second]


def any_write(ws) -> list[tuple[str, str]]:
    """Every write request of any kind, the apply lock's lease included."""
    return [(r["method"], r["path"]) for r in ws.requests() if r["method"] in WRITES]


# ---- a no-op apply makes no write at all -----------------------------------------------------------

def test_a_no_op_apply_makes_no_write_not_even_the_lock(seeded_workspace, tmp_path):
    path = write(tmp_path, base_documents())
    assert run(seeded_workspace, "apply", path, "--auto-approve").code == 0
    seeded_workspace.reset_requests()
    result = run(seeded_workspace, "apply", path, "--auto-approve")
    assert (result.code, result.out) == (0, "No changes. The workspace matches the manifests.\n")
    assert any_write(seeded_workspace) == []
    saved = tmp_path / "plan.json"
    assert run(seeded_workspace, "plan", path, "--out", str(saved)).code == 0
    result = run(seeded_workspace, "apply", "--plan", str(saved), path, "--format", "json")
    assert result.code == 0 and result.json["result"] == "no changes" and result.json["objects"] == []
    assert any_write(seeded_workspace) == []


def test_an_apply_with_changes_takes_the_lock_then_plans_again_under_it(seeded_workspace, tmp_path):
    seeded_workspace.reset_requests()
    assert run(seeded_workspace, "apply", write(tmp_path, base_documents()), "--auto-approve").code == 0
    log = [(r["method"], r["path"]) for r in seeded_workspace.requests()]
    read = ("GET", "/api/2.0/serving-endpoints/support-agent")
    lock = next(i for i, (method, path) in enumerate(log) if method == "POST" and path.startswith("/api/2.0/workspace/"))
    managed = log.index(writes(seeded_workspace)[0])
    assert log.index(read) < lock, "planned before the lock"
    assert read in log[lock:managed], "and again under it, before the first managed write"


# ---- plan names the stack's managed endpoints that left the manifests --------------------------------

@pytest.fixture
def left(seeded_workspace):
    """Endpoints the manifests do not name: this (default) stack's, another stack's, and an unmanaged one."""
    client = seeded_workspace.client()
    client.serving_endpoints.create("ours", config=CONFIG, tags=[EndpointTag(key="managed-by", value="reconciler")])
    client.serving_endpoints.create("theirs", config=CONFIG, tags=[EndpointTag(key="managed-by", value="reconciler"),
                                                                   EndpointTag(key="reconciler-stack", value="other")])
    client.serving_endpoints.create("unmanaged", config=CONFIG)
    return seeded_workspace


@pytest.mark.parametrize("stack, listed", [(None, "ours"), ("other", "theirs")])
def test_plan_mentions_managed_endpoints_that_left_the_manifests(left, tmp_path, stack, listed):
    path = write(tmp_path, base_documents())
    options = ("--stack", stack) if stack else ()
    assert run(left, "apply", path, "--auto-approve", *options).code == 0
    line = f"1 managed endpoint not in the manifests; --prune deletes it: serving_endpoint.{listed}"
    text = run(left, "plan", path, *options)
    assert (text.code, text.out) == (0, f"No changes to the objects in the manifests.\n{line}\n")
    markdown = run(left, "plan", path, "--format", "markdown", *options)
    assert line.replace("_", "\\_") in markdown.out and "No changes to the objects in the manifests." in markdown.out
    as_json = run(left, "plan", path, "--format", "json", *options).json
    assert as_json["not_in_manifests"] == [f"serving_endpoint.{listed}"] and as_json["summary"]["delete"] == 0
    pruned = run(left, "plan", path, "--format", "json", "--prune", *options).json
    assert pruned["not_in_manifests"] == []
    assert [c["address"] for c in pruned["changes"] if c["action"] == "delete"] == [f"serving_endpoint.{listed}"]


def test_without_endpoints_left_behind_plan_says_no_changes_as_before(seeded_workspace, tmp_path):
    path = write(tmp_path, base_documents())
    assert run(seeded_workspace, "apply", path, "--auto-approve").code == 0
    assert run(seeded_workspace, "plan", path).out == "No changes. The workspace matches the manifests.\n"
    assert run(seeded_workspace, "plan", path, "--format", "json").json["not_in_manifests"] == []


# ---- --target -----------------------------------------------------------------------------------------

@pytest.fixture
def deployed(seeded_workspace, tmp_path):
    documents = two_endpoints()
    assert run(seeded_workspace, "apply", write(tmp_path, documents), "--auto-approve").code == 0
    for document in documents:
        if document["kind"] == "ServingEndpoint":
            document["spec"]["tags"]["team"] = "platform"  # both endpoints change
    seeded_workspace.reset_requests()
    return seeded_workspace, documents


def test_a_target_limits_plan_and_apply_to_that_object_and_what_it_depends_on(deployed, tmp_path):
    ws, documents = deployed
    path = write(tmp_path, documents)
    plan = run(ws, "plan", path, "--target", B, "--format", "json").json
    assert {c["address"]: c["action"] for c in plan["changes"]} == {REGISTERED: "no-op", B: "update"}
    assert plan["targets"] == [B]
    result = run(ws, "apply", path, "--target", B, "--auto-approve")
    assert result.code == 0, result.err
    assert writes(ws) == [("PATCH", "/api/2.0/serving-endpoints/support-agent-b/tags")]
    after = run(ws, "plan", path, "--format", "json").json
    assert {c["address"] for c in after["changes"] if c["action"] != "no-op"} == {A}


def test_a_targeted_alias_move_takes_the_endpoints_that_follow_it_along(deployed, tmp_path):
    """An alias moves only after the endpoints following it serve the version: targeting the model
    plans those endpoints too (the other endpoint, which pins its version, is left out)."""
    ws, documents = deployed
    model(documents)["spec"]["aliases"]["champion"] = 4
    plan = run(ws, "plan", write(tmp_path, documents), "--target", REGISTERED, "--format", "json").json
    changes = {c["address"]: c for c in plan["changes"]}
    assert set(changes) == {REGISTERED, A}
    assert changes[REGISTERED]["operations"][0]["after"] == [A]


def test_an_unknown_target_is_one_line_with_the_closest_addresses(deployed, tmp_path):
    ws, documents = deployed
    result = run(ws, "plan", write(tmp_path, documents), "--target", "serving_endpoint.suport-agent-b")
    assert result.code == 1 and result.out == ""
    assert result.err.splitlines() == ["--target serving_endpoint.suport-agent-b: no such object in the plan; did you "
                                       f"mean {B} or {A}?"]
    result = run(ws, "apply", write(tmp_path, documents), "--target", "nothing.like.it", "--auto-approve")
    assert result.code == 1 and len(result.err.splitlines()) == 1 and "no such object in the plan" in result.err
    assert any_write(ws) == []


def test_a_saved_plan_must_be_applied_with_its_targets(deployed, tmp_path):
    ws, documents = deployed
    path = write(tmp_path, documents)
    saved = tmp_path / "plan.json"
    assert run(ws, "plan", path, "--target", B, "--out", str(saved)).code == 0
    result = run(ws, "apply", "--plan", str(saved), path)
    assert result.code == 1 and "targets: the plan was made for" in result.err and any_write(ws) == []
    assert run(ws, "apply", "--plan", str(saved), path, "--target", B).code == 0
    assert writes(ws) == [("PATCH", "/api/2.0/serving-endpoints/support-agent-b/tags")]


# ---- apply --format json: the audit record ----------------------------------------------------------

def test_apply_writes_an_audit_record_on_stdout(seeded_workspace, tmp_path):
    path = write(tmp_path, base_documents())
    sha = "0123456789abcdef0123456789abcdef01234567"
    result = run(seeded_workspace, "apply", path, "--auto-approve", "--format", "json", env={"GITHUB_SHA": sha})
    assert result.code == 0, result.err
    record = json.loads(result.out)  # stdout is the record alone; the plan and progress are on stderr
    jsonschema.validate(record, APPLY_SCHEMA)
    assert "Plan: 1 to create, 1 to update" in result.err and "Apply complete" in result.err
    assert record["result"] == "complete" and record["commit"] == sha
    assert record["workspace_host"] == seeded_workspace.url and record["identity"] == "local.user@example.com"
    assert record["manifests"]["paths"] == [path] and record["manifests"]["digest"].startswith("sha256:")
    assert record["summary"]["applied"] == 2 and record["summary"]["failed"] == 0
    objects = {o["address"]: o for o in record["objects"]}
    assert objects[A]["action"] == "create" and objects[A]["outcome"] == "applied"
    assert objects[A]["writes"] == ["create_endpoint(support-agent)", "update_permissions(group_name:support-team, "
                                    "service_principal_name:cx-deployer)"]
    assert objects[REGISTERED]["operations"] == ["set_alias(challenger → 4)"]
    assert seeded_workspace.token not in result.out + result.err


def test_a_failed_apply_is_recorded_as_failed(seeded_workspace, tmp_path):
    seeded_workspace.add_token("reader", read_only=True)
    result = run(seeded_workspace, "apply", write(tmp_path, base_documents()), "--auto-approve", "--no-lock",
                 "--format", "json", env={"DATABRICKS_TOKEN": "reader", "CI_COMMIT_SHA": "not a commit"})
    assert result.code == 1
    record = json.loads(result.out)
    jsonschema.validate(record, APPLY_SCHEMA)
    assert record["result"] == "failed" and record["commit"] is None and record["summary"]["failed"] >= 1
    assert "permission denied" in next(o for o in record["objects"] if o["address"] == A)["detail"].lower()
