"""Issue 13: one test per problem found by comparing the reconciler with the real API, each through
the real CLI against the local workspace (real HTTP, the unmodified databricks-sdk), asserting on
the plan and on the request log (what was sent, byte for byte). Each docstring names the problem
and its source; `normalize.FIELD_RULES` holds the same sources next to the rules."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from harness import MODEL, ROOT, base_documents, endpoint, run, write, writes

SEEDS = ROOT / "tests" / "seeds"
ENDPOINTS = "/api/2.0/serving-endpoints"
AGENT = "main.agents.responses_agent"
CONFIG_PUT = ("PUT", f"{ENDPOINTS}/support-agent/config")


@pytest.fixture
def ws(make_workspace: Any) -> Any:
    """The example's workspace plus `fidelity.yaml`: principals with tokens, an agent model whose
    MLmodel says it is a ResponsesAgent, and endpoints only the server could have made."""
    workspace = make_workspace(SEEDS / "support_agent.yaml")
    workspace.add_seed(SEEDS / "fidelity.yaml")
    return workspace


def apply_ok(ws: Any, path: str, *extra: str) -> Any:
    result = run(ws, "apply", path, "--auto-approve", *extra)
    assert result.code == 0, result.out + result.err
    return result


def plan_of(ws: Any, path: str, address: str) -> dict[str, Any]:
    result = run(ws, "plan", path, "--format", "json")
    assert result.code == 0, result.err
    return next(c for c in result.json["changes"] if c["address"] == address)


def no_changes(ws: Any, path: str) -> None:
    """Plan shows nothing to do, and apply then writes nothing: no endless rollouts."""
    ws.reset_requests()
    result = run(ws, "plan", path, "--detailed-exitcode")
    assert result.code == 0, result.out + result.err
    assert result.out.endswith("No changes. The workspace matches the manifests.\n")
    assert run(ws, "apply", path, "--auto-approve").code == 0
    assert writes(ws) == []


def bodies(ws: Any, method: str, path: str) -> list[dict[str, Any]]:
    return [r["body"] for r in ws.requests() if (r["method"], r["path"]) == (method, path) and r["status"] < 300]


def entity(name: str, version: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "entity_name": MODEL, "entity_version": version, **fields}


def manifest(name: str, *entities: dict[str, Any], routes: dict[str, int] | None = None,
             **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"served_entities": list(entities), **spec}
    if routes is not None:
        body["traffic_config"] = {"routes": [{"served_entity_name": n, "traffic_percentage": p}
                                             for n, p in routes.items()]}
    return {"apiVersion": "reconciler/v1", "kind": "ServingEndpoint", "metadata": {"name": name}, "spec": body}


# ---- 1. write-only fields ------------------------------------------------------------------------------

def test_1_a_write_only_field_is_sent_and_never_a_change(ws, tmp_path):
    """Problem 1: `burst_scaling_enabled` is accepted on write and never returned by GET
    (databricks/cli bundle/direct/dresources/configs/model_serving_endpoints.generated.yml:
    spec:input_only). Set in a manifest, it is sent, and the second plan shows no changes (before,
    every apply sent update_config: a new config version and a rollout each time)."""
    docs = base_documents()
    endpoint(docs)["spec"]["served_entities"][0]["burst_scaling_enabled"] = False
    path = write(tmp_path, docs)
    apply_ok(ws, path)
    [created] = bodies(ws, "POST", ENDPOINTS)
    assert created["config"]["served_entities"][0]["burst_scaling_enabled"] is False
    raw = ws.client().api_client.do("GET", f"{ENDPOINTS}/support-agent")
    assert "burst_scaling_enabled" not in json.dumps(raw)
    no_changes(ws, path)
    # A config write made for another reason still sends it (it is the manifest's).
    endpoint(docs)["spec"]["traffic_config"]["routes"][0]["traffic_percentage"] = 80
    endpoint(docs)["spec"]["traffic_config"]["routes"][1]["traffic_percentage"] = 20
    path = write(tmp_path, docs)
    ws.reset_requests()
    apply_ok(ws, path)
    [put] = bodies(ws, *CONFIG_PUT)
    assert put["served_entities"][0]["burst_scaling_enabled"] is False
    no_changes(ws, path)


# ---- 2. legacy inference tables -------------------------------------------------------------------------

def test_2_legacy_inference_tables_are_refused_warned_about_and_never_resent(ws, tmp_path):
    """Problem 2: "Starting February 20, 2026, legacy inference tables can not be enabled on new or
    existing model serving endpoints"; unsupported from March 20, 2026 (Databricks docs, "Enable
    inference tables on model serving endpoints"). validate refuses `auto_capture_config` with the
    fix; plan warns about a live one; a config write leaves it out (the API keeps the previous
    configuration's), where it used to resend the live one."""
    refused = manifest("legacy-capture", entity("legacy-3", "3", workload_size="Small", scale_to_zero_enabled=True),
                       auto_capture_config={"catalog_name": "main", "schema_name": "agents", "enabled": True})
    result = run(ws, "validate", write(tmp_path, [refused], "refused.yaml"))
    assert result.code == 1
    assert "auto_capture_config is deprecated: legacy inference tables can not be enabled since February 20, 2026" \
        in result.err and "use ai_gateway.inference_table_config" in result.err

    # The seeded endpoint keeps its legacy table; the manifest moves it to version 4.
    docs = [manifest("legacy-capture", entity("support_agent-3", "4", workload_size="Small",
                                              scale_to_zero_enabled=True))]
    path = write(tmp_path, docs)
    plan = run(ws, "plan", path)
    assert plan.code == 0, plan.err
    assert ("Warning: serving_endpoint.legacy-capture still has a legacy inference table (auto_capture_config: "
            "main.agents.legacy), unsupported since March 20, 2026") in plan.out
    ws.reset_requests()
    apply_ok(ws, path)
    [put] = bodies(ws, "PUT", f"{ENDPOINTS}/legacy-capture/config")
    assert "auto_capture_config" not in put
    live = ws.client().api_client.do("GET", f"{ENDPOINTS}/legacy-capture")["config"]
    assert live["auto_capture_config"]["enabled"] is True  # left as it was
    assert live["served_entities"][0]["entity_version"] == "4"


# ---- 3. enum values newer than the SDK -------------------------------------------------------------------

def _newer(ws: Any) -> None:
    ws.add_seed({"serving_endpoints": [{"name": "newer", "config": {
        "served_entities": [entity("big", "3", workload_size="Small", workload_type="GPU_H200_8",
                                   scale_to_zero_enabled=False),
                            entity("small", "4", workload_size="Small", scale_to_zero_enabled=False)],
        "traffic_config": {"routes": [{"served_entity_name": "big", "traffic_percentage": 100},
                                      {"served_entity_name": "small", "traffic_percentage": 0}]}}}]})


def test_3_a_workload_type_the_sdk_does_not_know_round_trips_byte_for_byte(ws, tmp_path):
    """Problem 3: SDK 0.156's dataclasses turn enum values they do not know into None (`_enum` in
    databricks/sdk/service/_internal.py), so a workload type newer than the SDK was dropped on read
    and a traffic change moved the entity to CPU. GPU_H200_8 is invented (GPU_XLARGE_8 is known).
    Stated in the manifest: validate warns, plan shows no change, and a traffic change resends it
    as written (the PUT body in the request log), with a field newer than this release that the
    server answered (resent as it came: the old normaliser's whitelist dropped it)."""
    _newer(ws)
    big = entity("big", "3", workload_size="Small", workload_type="GPU_H200_8", scale_to_zero_enabled=False)
    small = entity("small", "4", workload_size="Small", scale_to_zero_enabled=False)
    path = write(tmp_path, [manifest("newer", big, small, routes={"big": 100, "small": 0})])
    validated = run(ws, "validate", path)
    assert validated.code == 0
    assert validated.err.splitlines() == [
        f"{path}:11:20: warning: workload_type 'GPU_H200_8' is not one this release knows (CPU, CPU_MEDIUM, CPU_LARGE, "
        "GPU_SMALL, GPU_MEDIUM, GPU_LARGE, GPU_XLARGE, GPU_XLARGE_8, MULTIGPU_MEDIUM); it is sent as written and the "
        "workspace decides: check the spelling, or ignore this if the workspace offers it"]
    no_changes(ws, path)
    with ws.state.lock:  # and a field newer than this release, as a newer server would answer it
        ws.state.serving.endpoints["newer"].config["served_entities"][0]["future_field"] = {"nested": [1, 2]}
    no_changes(ws, path)

    path = write(tmp_path, [manifest("newer", big, small, routes={"big": 90, "small": 10})])
    ws.reset_requests()
    apply_ok(ws, path)
    [put] = bodies(ws, "PUT", f"{ENDPOINTS}/newer/config")
    assert put["served_entities"][0] == {**big, "future_field": {"nested": [1, 2]}}
    assert '"workload_type": "GPU_H200_8"' in json.dumps(put)
    served = ws.client().api_client.do("GET", f"{ENDPOINTS}/newer")["config"]["served_entities"]
    assert served[0]["workload_type"] == "GPU_H200_8"
    no_changes(ws, path)


def test_3_left_out_the_newer_workload_type_is_reset_explicitly(ws, tmp_path):
    """Problem 3, the other half: a manifest that leaves workload_type out means the API's default
    (CPU); plan shows that change and says why, never silently."""
    _newer(ws)
    big = entity("big", "3", workload_size="Small", scale_to_zero_enabled=False)
    small = entity("small", "4", workload_size="Small", scale_to_zero_enabled=False)
    path = write(tmp_path, [manifest("newer", big, small, routes={"big": 100, "small": 0})])
    change = plan_of(ws, path, "serving_endpoint.newer")
    assert change["diff"] == [{"path": "served_entities[big].workload_type", "before": "GPU_H200_8", "after": "CPU"},
                              {"path": "tags[managed-by]", "before": None, "after": "reconciler"}]
    assert "served_entities[big].workload_type: GPU_H200_8 → CPU only because the manifest leaves workload_type " \
           "out" in change["notes"]


# ---- 4. replace keeps what the manifest does not manage ----------------------------------------------------

def test_4_a_replace_keeps_tags_gateway_budget_policy_notifications_and_grants(ws, tmp_path):
    """Problem 4: a replace built the new endpoint from the manifest alone, losing unmanaged tags,
    the AI gateway, the budget policy and email notifications. GET returns
    `effective_budget_policy_id`, never `budget_policy_id` (databricks/cli
    configs/model_serving_endpoints.yml), which the SDK's dataclasses do not have: it is read raw."""
    gateway = {"inference_table_config": {"catalog_name": "main", "schema_name": "agents",
                                          "table_name_prefix": "kept", "enabled": True},
               "usage_tracking_config": {"enabled": True}}
    notifications = {"on_update_failure": ["oncall@example.com"]}
    ws.add_seed({"serving_endpoints": [{
        "name": "kept", "description": "old", "budget_policy_id": "policy-1", "email_notifications": notifications,
        "tags": [{"key": "team", "value": "support"}, {"key": "managed-by", "value": "reconciler"}],
        "ai_gateway": gateway,
        "access_control_list": [{"group_name": "support-team", "permission_level": "CAN_QUERY"}],
        "config": {"served_entities": [entity("current", "3", workload_size="Small", scale_to_zero_enabled=False)]}}]})
    docs = [manifest("kept", entity("current", "3", workload_size="Small", scale_to_zero_enabled=False),
                     description="new")]
    path = write(tmp_path, docs)
    change = plan_of(ws, path, "serving_endpoint.kept")
    assert change["action"] == "replace"
    assert "the new endpoint keeps what the manifest does not manage: tags, the AI gateway, direct grants, the " \
           "budget policy, email notifications" in change["notes"]
    ws.reset_requests()
    apply_ok(ws, path, "--allow-replace")
    [created] = bodies(ws, "POST", ENDPOINTS)
    assert (created["budget_policy_id"], created["email_notifications"], created["ai_gateway"]) == (
        "policy-1", notifications, gateway)
    got = ws.client().api_client.do("GET", f"{ENDPOINTS}/kept")
    assert got["description"] == "new"
    assert {t["key"]: t["value"] for t in got["tags"]} == {"team": "support", "managed-by": "reconciler"}
    assert got["ai_gateway"] == gateway and got["email_notifications"] == notifications
    assert got["effective_budget_policy_id"] == "policy-1"
    acl = ws.client().api_client.do("GET", f"/api/2.0/permissions/serving-endpoints/{got['id']}")
    assert {"group_name": "support-team", "all_permissions": [{"permission_level": "CAN_QUERY", "inherited": False}]} \
        in acl["access_control_list"]
    no_changes(ws, path)


# ---- 5. provisioned throughput and concurrency ------------------------------------------------------------

def test_5_server_filled_values_of_provisioned_throughput_are_neither_changes_nor_resent(ws, tmp_path):
    """Problem 5: real servers fill `workload_size: Small` and a GPU `workload_type` on
    provisioned-throughput entities (shared/reference/real-api/endpoint_create_resp_02.json, _03);
    they are no change, and config writes do not send them back."""
    docs = [manifest("pt", entity("current", "3", min_provisioned_throughput=0, max_provisioned_throughput=970,
                                  environment_vars={"MODE": "a"}))]
    path = write(tmp_path, docs)
    apply_ok(ws, path)
    served = ws.client().api_client.do("GET", f"{ENDPOINTS}/pt")["config"]["served_entities"][0]
    assert served["workload_size"] == "Small" and served["workload_type"].startswith("GPU")
    no_changes(ws, path)
    docs[0]["spec"]["served_entities"][0]["environment_vars"] = {"MODE": "b"}
    path = write(tmp_path, docs)
    ws.reset_requests()
    apply_ok(ws, path)
    [put] = bodies(ws, "PUT", f"{ENDPOINTS}/pt/config")
    assert "workload_size" not in put["served_entities"][0] and "workload_type" not in put["served_entities"][0]
    no_changes(ws, path)


def test_5_size_to_provisioned_concurrency_and_back_and_to_throughput_each_in_one_apply(ws, tmp_path):
    """Problem 5: switching an entity from `workload_size` to provisioned concurrency failed with a
    400 (the live size was resent: "Do not use if min_provisioned_concurrency and
    max_provisioned_concurrency are specified", SDK 0.156 docstring of workload_size), and validate
    accepted both at once. Each switch is one config PUT now, and converges."""
    docs = base_documents()
    path = write(tmp_path, docs)
    apply_ok(ws, path)
    champion = endpoint(docs)["spec"]["served_entities"][0]
    del champion["workload_size"]
    champion.update(min_provisioned_concurrency=4, max_provisioned_concurrency=8)
    path = write(tmp_path, docs)
    ws.reset_requests()
    apply_ok(ws, path)
    assert writes(ws) == [CONFIG_PUT]
    [put] = bodies(ws, *CONFIG_PUT)
    assert "workload_size" not in put["served_entities"][0]
    no_changes(ws, path)

    both = copy.deepcopy(docs)
    endpoint(both)["spec"]["served_entities"][0]["workload_size"] = "Small"
    refused = run(ws, "validate", write(tmp_path, both, "both.yaml"))
    assert refused.code == 1 and "sets both workload_size and min_provisioned_concurrency" in refused.err

    del champion["min_provisioned_concurrency"], champion["max_provisioned_concurrency"]
    champion["workload_size"] = "Small"
    path = write(tmp_path, docs)
    ws.reset_requests()
    apply_ok(ws, path)
    assert writes(ws) == [CONFIG_PUT]
    no_changes(ws, path)

    # And to provisioned throughput: the server then picks the size and a GPU type itself.
    del champion["workload_size"], champion["scale_to_zero_enabled"]
    champion["max_provisioned_throughput"] = 970
    path = write(tmp_path, docs)
    ws.reset_requests()
    apply_ok(ws, path)
    assert writes(ws) == [CONFIG_PUT]
    served = ws.client().api_client.do("GET", f"{ENDPOINTS}/support-agent")["config"]["served_entities"][0]
    assert served["workload_type"].startswith("GPU") and served["workload_size"] == "Small"
    no_changes(ws, path)


# ---- 6. git is the truth -----------------------------------------------------------------------------------

def test_6_reverting_a_commit_reverts_production(ws, tmp_path):
    """Problem 6: a field left out of a served entity was "not managed", so after applying
    `workload_type: GPU_SMALL` and `max_provisioned_throughput: 100` and reverting that commit, plan
    said "No changes" while production kept GPU_SMALL. A served entity is complete now: left out
    means the API's default (CPU, documented in ServedEntityInput.workload_type; no throughput)."""
    before = base_documents()
    path = write(tmp_path, before)
    apply_ok(ws, path)
    commit = copy.deepcopy(before)
    endpoint(commit)["spec"]["served_entities"][0].update(workload_type="GPU_SMALL", max_provisioned_throughput=100)
    apply_ok(ws, write(tmp_path, commit, "commit.yaml"))
    served = ws.client().api_client.do("GET", f"{ENDPOINTS}/support-agent")["config"]["served_entities"][0]
    assert (served["workload_type"], served["max_provisioned_throughput"]) == ("GPU_SMALL", 100)

    change = plan_of(ws, path, "serving_endpoint.support-agent")  # the revert
    assert change["diff"] == [
        {"path": "served_entities[champion].max_provisioned_throughput", "before": 100, "after": None},
        {"path": "served_entities[champion].workload_type", "before": "GPU_SMALL", "after": "CPU"}]
    assert [op["name"] for op in change["operations"]] == ["update_config"]
    assert change["notes"][:2] == [
        "served_entities[champion].max_provisioned_throughput: 100 → unset only because the manifest leaves "
        "max_provisioned_throughput out",
        "served_entities[champion].workload_type: GPU_SMALL → CPU only because the manifest leaves workload_type out"]
    apply_ok(ws, path)
    served = ws.client().api_client.do("GET", f"{ENDPOINTS}/support-agent")["config"]["served_entities"][0]
    assert served["workload_type"] == "CPU" and "max_provisioned_throughput" not in served
    no_changes(ws, path)


# ---- 7. the AI gateway of agent endpoints ------------------------------------------------------------------

def _agent(**gateway: Any) -> dict[str, Any]:
    doc = manifest("agent", {"name": "current", "entity_name": AGENT, "entity_version": "1", "workload_size": "Small",
                             "scale_to_zero_enabled": False})
    doc["spec"]["ai_gateway"] = {"inference_table_config": {"catalog_name": "main", "schema_name": "agents",
                                                            "table_name_prefix": "agent", "enabled": True}, **gateway}
    return doc


def test_7_unsupported_gateway_features_on_an_agent_fail_plan_before_any_write(ws, tmp_path):
    """Problem 7: "agent endpoints currently only support inference tables" (SDK 0.156 docstring of
    put_ai_gateway, the REST reference). Before the endpoint exists, the served version's MLmodel
    `metadata.task` says it is an agent (MLflow writes agent/v1/responses for a ResponsesAgent;
    databricks-agents' `_check_model_is_agent`); once it exists, the `task` the server set."""
    path = write(tmp_path, [_agent(usage_tracking_config={"enabled": True})])
    ws.reset_requests()
    result = run(ws, "apply", path, "--auto-approve")
    assert result.code == 1 and writes(ws) == []
    assert ("ai_gateway.usage_tracking_config is not supported on agent endpoints, and 'agent' serves an agent "
            "(version 1 of 'main.agents.responses_agent' was logged as agent/v1/responses (MLmodel metadata.task)): "
            "agent endpoints support only inference tables; remove ai_gateway.usage_tracking_config") in result.err

    apply_ok(ws, write(tmp_path, [_agent()]))
    assert ws.client().api_client.do("GET", f"{ENDPOINTS}/agent")["task"] == "agent/v1/responses"
    limited = _agent(rate_limits=[{"calls": 10, "key": "user", "renewal_period": "minute"}])
    refused = run(ws, "plan", write(tmp_path, [limited]))
    assert refused.code == 1
    assert "ai_gateway.rate_limits is not supported on agent endpoints, and 'agent' serves an agent (the workspace " \
           "set its task to agent/v1/responses)" in refused.err


def test_7_gateway_writes_on_an_agent_never_resend_an_enabled_inference_table(ws, tmp_path):
    """Problem 7: databricks-agents 1.13 never resends `ai_gateway` on redeploy because the PUT fails
    with "Inference tables is already enabled" (deployments.py). Here: a redeploy sends no gateway
    write at all; moving the table is disable-then-enable ("On update, you have to disable inference
    table first", AiGatewayInferenceTableConfig docstrings), two PUTs the API accepts."""
    doc = _agent()
    path = write(tmp_path, [doc])
    apply_ok(ws, path)
    doc["spec"]["served_entities"][0]["entity_version"] = "2"
    path = write(tmp_path, [doc])
    ws.reset_requests()
    apply_ok(ws, path)
    assert writes(ws) == [("PUT", f"{ENDPOINTS}/agent/config")]
    doc["spec"]["ai_gateway"]["inference_table_config"]["table_name_prefix"] = "agent_v2"
    path = write(tmp_path, [doc])
    ws.reset_requests()
    apply_ok(ws, path)
    assert bodies(ws, "PUT", f"{ENDPOINTS}/agent/ai-gateway") == [
        {"inference_table_config": {"enabled": False}},
        {"inference_table_config": {"catalog_name": "main", "schema_name": "agents", "table_name_prefix": "agent_v2",
                                    "enabled": True}}]
    no_changes(ws, path)


# ---- 8. Agent Bricks ----------------------------------------------------------------------------------------

def test_8_a_ready_agent_bricks_endpoint_is_not_taken_for_one_being_created(ws, tmp_path):
    """Problem 8: READY Agent Bricks endpoints answer `config: {}`
    (shared/reference/real-api/endpoint_list_01.json); export said they were "being created". It
    skips them with the real reason; a manifest naming one fails plan saying why."""
    result = run(ws, "export", "--out", str(tmp_path / "out"), "--all-endpoints")
    assert result.code == 0, result.err
    assert "warning: skipped 1 Agent Bricks endpoint(s) (READY with an empty config: their served entities are not " \
           "visible through the API): mas-996e9c3d-endpoint" in result.err
    assert "being created" not in result.err
    asked = run(ws, "export", "--out", str(tmp_path / "one"), "--endpoint", "mas-996e9c3d-endpoint")
    assert asked.code == 1 and "it is READY with an empty config, as Agent Bricks endpoints (multi agent " \
                               "supervisor) are" in asked.err
    named = manifest("mas-996e9c3d-endpoint", {"entity_name": AGENT, "entity_version": "1", "workload_size": "Small",
                                                "scale_to_zero_enabled": False})
    plan = run(ws, "plan", write(tmp_path, [named]))
    assert plan.code == 1 and "is READY with an empty config, as Agent Bricks endpoints are" in plan.err


# ---- 9. scale_to_zero_enabled is always sent ---------------------------------------------------------------

def test_9_scale_to_zero_is_stated_exported_and_always_sent(ws, tmp_path):
    """Problem 9: a real update failed with "scaleToZeroEnabled is undefined"
    (terraform-provider-databricks #4064, #3946). Manifests must state it on entities that scale
    (validate, with the fix), every create and config write sends it, and export always writes it."""
    docs = base_documents()
    missing = copy.deepcopy(docs)
    del endpoint(missing)["spec"]["served_entities"][1]["scale_to_zero_enabled"]
    refused = run(ws, "validate", write(tmp_path, missing, "missing.yaml"))
    assert refused.code == 1
    assert "served entity 'challenger' leaves out scale_to_zero_enabled, which has no default in the API; add " \
           "scale_to_zero_enabled: false" in refused.err
    path = write(tmp_path, docs)
    apply_ok(ws, path)
    endpoint(docs)["spec"]["served_entities"][0]["environment_vars"]["MODE"] = "fast"
    path = write(tmp_path, docs)
    apply_ok(ws, path)
    sent = [e for r in ws.requests() if r["method"] in ("POST", "PUT") and r["path"].startswith(ENDPOINTS)
            for e in (r["body"].get("config") or r["body"]).get("served_entities", [])]
    assert len(sent) == 4 and all(isinstance(e["scale_to_zero_enabled"], bool) for e in sent)
    out = tmp_path / "exported"
    assert run(ws, "export", "--out", str(out), "--endpoint", "support-agent").code == 0
    text = (out / "endpoints" / "support-agent.yaml").read_text()
    assert text.count("scale_to_zero_enabled: true") == 2


# ---- 10. a caller without the grant --------------------------------------------------------------------------

def test_10_a_caller_without_a_grant_meets_a_clear_refusal(ws, tmp_path):
    """Problem 10: the local workspace had one user and enforced no endpoint permissions, so tests
    could not see a caller without permission. Tokens belong to principals now and endpoint
    permissions are enforced (Permissions API levels): a viewer who may only query the endpoint
    (group support-team, CAN_QUERY) cannot plan a manifest that manages its permissions (reading
    them needs CAN_MANAGE), and the refusal is one line naming the object, not a traceback."""
    path = write(tmp_path, base_documents())
    apply_ok(ws, path)
    viewer = run(ws, "plan", path, env={"DATABRICKS_TOKEN": "viewer-token"})
    assert viewer.code == 1 and "Traceback" not in viewer.err
    [line] = viewer.err.splitlines()
    assert line.startswith("serving_endpoint.support-agent: ") and "permission denied (403 PERMISSION_DENIED)" in line
    assert "User viewer@example.com does not have Manage permissions on serving endpoint 'support-agent'" in line
