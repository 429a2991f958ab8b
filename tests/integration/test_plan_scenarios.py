"""The plan issue's scenarios, each asserting the exact plan: actions, field paths, operations.

Every test runs the real CLI against a fresh local workspace seeded with the support agent's
model versions (tests/seeds/support_agent.yaml), through the real databricks-sdk over HTTP.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from harness import (
    LOGGED_AGENT,
    MODEL,
    ROOT,
    base_documents,
    endpoint,
    model,
    plan_json,
    run,
    summary,
    write,
    writes,
)

EP = "serving_endpoint.support-agent"
RM = f"registered_model.{MODEL}"


@pytest.fixture
def deployed(seeded_workspace, tmp_path):
    """The example applied: the baseline every update scenario starts from."""
    docs = base_documents()
    result = run(seeded_workspace, "apply", write(tmp_path, docs), "--auto-approve")
    assert result.code == 0, result.out + result.err
    seeded_workspace.reset_requests()
    return seeded_workspace, docs


def test_empty_workspace_plans_everything_as_create(workspace, tmp_path):
    workspace.add_seed({"registered_models": [{"full_name": "main.agents.other", "versions": [{"version": 1}]}]})
    docs = [
        {"apiVersion": "reconciler/v1", "kind": "RegisteredModel", "metadata": {"name": "main.agents.fresh"},
         "spec": {"comment": "new"}},
        {"apiVersion": "reconciler/v1", "kind": "ServingEndpoint", "metadata": {"name": "fresh"},
         "spec": {"served_entities": [{"entity_name": "main.agents.other", "entity_version": 1, "workload_size": "Small",
                                       "scale_to_zero_enabled": True}], "tags": {"a": "b"}}},
    ]
    plan = plan_json(workspace, write(tmp_path, docs))
    entity = "served_entities[other-1]"
    assert summary(plan) == {
        "registered_model.main.agents.fresh": ("create", ["comment"], ["create_model"]),
        "serving_endpoint.fresh": ("create", [
            f"{entity}.entity_name", f"{entity}.entity_version", f"{entity}.scale_to_zero_enabled",
            f"{entity}.workload_size", f"{entity}.workload_type", "tags[a]", "tags[managed-by]", "traffic[other-1]"],
            ["create_endpoint"]),
    }
    assert writes(workspace) == []  # a plan never writes


def test_after_apply_the_plan_is_empty(deployed, tmp_path):
    ws, docs = deployed
    result = run(ws, "plan", write(tmp_path, docs), "--detailed-exitcode")
    assert (result.code, result.out) == (0, "No changes. The workspace matches the manifests.\n")
    assert writes(ws) == []


def test_server_filled_defaults_and_reordered_lists_are_not_changes(make_workspace, tmp_path):
    """An endpoint created by someone else: the server filled the entity name, workload_type CPU,
    the 100% route (with both name keys), sorted the tags; the manifest leaves all that out (its
    workload_type is the API's default, CPU: normalize.FIELD_RULES)."""
    ws = make_workspace(ROOT / "tests" / "seeds" / "support_agent.yaml")
    ws.add_seed({"serving_endpoints": [{
        "name": "legacy", "config": {"served_entities": [{"entity_name": MODEL, "entity_version": "3",
                                                           "workload_size": "Small", "scale_to_zero_enabled": False}]},
        "tags": [{"key": "zeta", "value": "1"}, {"key": "managed-by", "value": "reconciler"}, {"key": "alpha", "value": "2"}],
    }]})
    docs = [{"apiVersion": "reconciler/v1", "kind": "ServingEndpoint", "metadata": {"name": "legacy"},
             "spec": {"served_entities": [{"entity_name": MODEL, "entity_version": 3, "workload_size": "Small",
                                           "scale_to_zero_enabled": False}],
                      "tags": {"alpha": "2", "zeta": "1"}}}]
    api = ws.client().serving_endpoints.get("legacy").as_dict()
    assert api["config"]["served_entities"][0]["name"] == "support_agent-3"
    assert api["config"]["served_entities"][0]["workload_type"] == "CPU"
    plan = plan_json(ws, write(tmp_path, docs))
    assert summary(plan) == {"serving_endpoint.legacy": ("no-op", [], [])}


def test_version_bump_through_an_alias_move(deployed, tmp_path):
    ws, docs = deployed
    model(docs)["spec"]["aliases"]["champion"] = 4
    plan = plan_json(ws, write(tmp_path, docs))
    assert summary(plan) == {
        RM: ("update", ["aliases[champion]"], ["set_alias"]),
        EP: ("update", ["served_entities[champion].entity_version"], ["update_config"]),
        LOGGED_AGENT: ("no-op", [], []),  # the challenger's source: registered as version 4 already
    }
    diff = plan["changes"][1]["diff"][0]
    assert (diff["before"], diff["after"]) == ("3", "4")
    alias_op = plan["changes"][0]["operations"][0]
    assert alias_op["description"] == "set_alias(champion → 4)" and alias_op["after"] == [EP]
    assert any("follows alias champion" in n for n in plan["changes"][1]["notes"])


def test_traffic_shift(deployed, tmp_path):
    ws, docs = deployed
    endpoint(docs)["spec"]["traffic_config"]["routes"][0]["traffic_percentage"] = 50
    endpoint(docs)["spec"]["traffic_config"]["routes"][1]["traffic_percentage"] = 50
    plan = plan_json(ws, write(tmp_path, docs))
    assert summary(plan)[EP] == ("update", ["traffic[challenger]", "traffic[champion]"], ["update_config"])
    markdown = run(ws, "plan", write(tmp_path, docs), "--format", "markdown").out
    assert "traffic [champion] 90% → 50%" in markdown.replace("traffic[", "traffic [")


def test_environment_variable_added_changed_and_removed(deployed, tmp_path):
    ws, docs = deployed
    env = endpoint(docs)["spec"]["served_entities"][0]["environment_vars"]
    env["NEW_SETTING"] = "1"
    env["VECTOR_SEARCH_INDEX"] = "main.agents.docs_index_v2"
    del env["ENABLE_MLFLOW_TRACING"]
    ws.add_seed({"vector_search_indexes": [{"name": "main.agents.docs_index_v2"}]})
    plan = plan_json(ws, write(tmp_path, docs))
    prefix = "served_entities[champion].environment_vars"
    assert summary(plan)[EP] == ("update", [f"{prefix}[ENABLE_MLFLOW_TRACING]", f"{prefix}[NEW_SETTING]",
                                            f"{prefix}[VECTOR_SEARCH_INDEX]"], ["update_config"])


def test_tag_change_patches_only_the_keys_that_differ(deployed, tmp_path):
    ws, docs = deployed
    endpoint(docs)["spec"]["tags"] = {"team": "cx", "cost-center": "cx-042"}
    plan = plan_json(ws, write(tmp_path, docs))
    assert summary(plan)[EP] == ("update", ["tags[team]"], ["patch_tags"])
    assert plan["changes"][1]["operations"][0]["description"] == "patch_tags(add: [team], delete: [])"
    result = run(ws, "apply", write(tmp_path, docs), "--auto-approve")
    assert result.code == 0, result.out + result.err
    tag_writes = [r for r in ws.requests() if r["method"] == "PATCH"]
    assert [r["body"] for r in tag_writes] == [{"add_tags": [{"key": "team", "value": "cx"}]}]


def test_ai_gateway_change(deployed, tmp_path):
    ws, docs = deployed
    endpoint(docs)["spec"]["ai_gateway"]["usage_tracking_config"] = {"enabled": True}
    plan = plan_json(ws, write(tmp_path, docs))
    assert summary(plan)[EP] == ("update", ["ai_gateway.usage_tracking_config.enabled"], ["put_ai_gateway"])


def test_permission_change_and_removal(deployed, tmp_path):
    ws, docs = deployed
    endpoint(docs)["spec"]["permissions"][0]["permission_level"] = "CAN_VIEW"
    plan = plan_json(ws, write(tmp_path, docs))
    assert summary(plan)[EP] == ("update", ["permissions[group_name:support-team]"], ["update_permissions"])
    endpoint(docs)["spec"]["permissions"].pop(1)
    plan = plan_json(ws, write(tmp_path, docs))
    assert summary(plan)[EP] == ("update", ["permissions[group_name:support-team]",
                                            "permissions[service_principal_name:cx-deployer]"], ["set_permissions"])


def test_alias_removed_from_the_manifest_is_deleted(deployed, tmp_path):
    ws, docs = deployed
    del model(docs)["spec"]["aliases"]["challenger"]
    endpoint(docs)["spec"]["served_entities"][1]["alias"] = "champion"
    plan = plan_json(ws, write(tmp_path, docs))
    assert summary(plan)[RM] == ("update", ["aliases[challenger]"], ["delete_alias"])


def test_description_change_is_a_replace(deployed, tmp_path):
    ws, docs = deployed
    endpoint(docs)["spec"]["description"] = "now with a description"
    plan = plan_json(ws, write(tmp_path, docs))
    action, paths, ops = summary(plan)[EP]
    assert (action, paths, ops[:2]) == ("replace", ["description"], ["delete_endpoint", "create_endpoint"])
    assert plan["changes"][1]["replace_reasons"] == ["description cannot change after creation"]
    refused = run(ws, "apply", write(tmp_path, docs), "--auto-approve")
    assert refused.code == 1 and "--allow-replace" in refused.err and writes(ws) == []


def test_drift_from_another_client_is_shown(deployed, tmp_path):
    ws, docs = deployed
    client = ws.client()
    client.serving_endpoints.patch("support-agent", add_tags=[__import__("databricks.sdk.service.serving",
                                                                         fromlist=["x"]).EndpointTag(key="team", value="ui")])
    plan = plan_json(ws, write(tmp_path, docs))
    assert summary(plan)[EP] == ("update", ["tags[team]"], ["patch_tags"])
    diff = plan["changes"][1]["diff"][0]
    assert (diff["before"], diff["after"]) == ("ui", "support")


@pytest.mark.parametrize("mutate, field, message", [
    (lambda docs: endpoint(docs)["spec"]["served_entities"][0]["environment_vars"].update(
        OPENAI_API_KEY="{{secrets/support/missing}}"), "OPENAI_API_KEY",
     "secret 'missing' is not in scope 'support'; add it (databricks secrets put-secret support missing)"),
    (lambda docs: endpoint(docs)["spec"]["served_entities"][0]["environment_vars"].update(
        OPENAI_API_KEY="{{secrets/nope/openai}}"), "OPENAI_API_KEY",
     "secret scope 'nope' does not exist in the workspace; create it (databricks secrets create-scope nope)"),
    (lambda docs: endpoint(docs)["spec"]["resources"].update(table=["main.agents.missing"]), "main.agents.missing",
     "table 'main.agents.missing' does not exist in the workspace; create it or remove it from resources"),
    (lambda docs: endpoint(docs)["spec"]["resources"].update(function=["main.agents.lookup_order"]),
     "main.agents.lookup_order",
     "function 'main.agents.lookup_order' is declared here but version 3 of 'main.agents.support_agent' "
     "was not logged with it: queries that use it will fail with a permission error; log the model with this "
     "resource (mlflow log_model resources=[...]) or remove it"),
    (lambda docs: model(docs)["spec"]["aliases"].update(challenger=5), "challenger: 5",
     "alias challenger: version 5 of model 'main.agents.support_agent' is PENDING_REGISTRATION, not READY; "
     "wait for registration to finish or register it first (mlflow.register_model) or point at another version"),
    (lambda docs: model(docs)["spec"]["aliases"].update(challenger=9), "challenger: 9",
     "alias challenger: version 9 of model 'main.agents.support_agent' does not exist; register it first "
     "(mlflow.register_model) or point at another version"),
], ids=["missing-secret-key", "missing-secret-scope", "missing-resource", "mlmodel-missing-declared-resource",
        "version-not-ready", "version-missing"])
def test_preflight_errors_name_the_manifest_field(seeded_workspace, tmp_path, mutate, field, message):
    docs = base_documents()
    mutate(docs)
    path = write(tmp_path, docs)
    result = run(seeded_workspace, "plan", path)
    assert result.code == 1 and result.out == ""
    lines = result.err.strip().splitlines()
    matching = [line for line in lines if line.endswith(": " + message)]
    assert matching, result.err
    location = matching[0][len(path) + 1:].split(":")
    assert matching[0].startswith(path + ":")
    assert field in Path(path).read_text().splitlines()[int(location[0]) - 1]
    assert "Traceback" not in result.err and writes(seeded_workspace) == []


def test_endpoint_mid_update_is_reported(deployed, tmp_path):
    ws, docs = deployed
    ws.set_update_seconds(30)
    from databricks.sdk.service.serving import ServedEntityInput, TrafficConfig

    client = ws.client()
    current = client.serving_endpoints.get("support-agent").config
    client.serving_endpoints.update_config(
        "support-agent", served_entities=[ServedEntityInput.from_dict(e.as_dict()) for e in current.served_entities],
        traffic_config=TrafficConfig.from_dict({"routes": [{"served_entity_name": "champion", "traffic_percentage": 50},
                                                           {"served_entity_name": "challenger", "traffic_percentage": 50}]}))
    plan = plan_json(ws, write(tmp_path, docs))
    ep = plan["changes"][1]
    assert ep["action"] == "update" and "an update is in progress; apply waits for it before writing" in ep["notes"]


def test_json_plan_validates_against_the_committed_schema(deployed, tmp_path):
    ws, docs = deployed
    model(docs)["spec"]["aliases"]["champion"] = 4
    schema = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())
    plan = plan_json(ws, write(tmp_path, docs))
    jsonschema.validate(plan, schema)
    out = Path(tmp_path) / "plan.json"
    assert run(ws, "plan", write(tmp_path, docs), "--out", str(out)).code == 0
    jsonschema.validate(json.loads(out.read_text()), schema)


def test_detailed_exitcode_and_prune(deployed, tmp_path):
    ws, docs = deployed
    endpoint(docs)["spec"]["tags"]["team"] = "cx"
    assert run(ws, "plan", write(tmp_path, docs), "--detailed-exitcode").code == 2
    only_model = [model(docs)]
    plan = plan_json(ws, write(tmp_path, only_model), "--prune")
    assert summary(plan)[EP] == ("delete", [], ["delete_endpoint"])
    plan = plan_json(ws, write(tmp_path, only_model))
    assert EP not in summary(plan)  # without --prune nothing is deleted
