"""`reconciler export`: endpoints and models made by other clients, exported, then planned and applied.

The objects are created the way teams create them today (the databricks-sdk's typed API and the
MLflow deployments client), never through this tool; the exported manifests must then validate
(CLI and JSON Schema), plan to no changes and apply with zero writes. Bad input has its own tests.
Every test runs the real CLI against a fresh local workspace, over HTTP, through the real SDK.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from harness import MODEL, ROOT, run, write, writes
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.export.commented_yaml import scalar
from reconciler.manifests.yamlsource import read_documents

SEED = ROOT / "tests" / "seeds" / "support_agent.yaml"
ROUTER = "main.agents.router"
TRIAGE = "main.agents.triage"
SECRET_VALUE = "sk-live-0123456789abcdef"


def sdk_create(ws: Any, name: str, config: dict[str, Any], **extra: Any) -> None:
    from databricks.sdk.service import serving

    kwargs: dict[str, Any] = {"config": serving.EndpointCoreConfigInput.from_dict(config)}
    if "ai_gateway" in extra:
        kwargs["ai_gateway"] = serving.AiGatewayConfig.from_dict(extra.pop("ai_gateway"))
    if "tags" in extra:
        kwargs["tags"] = [serving.EndpointTag(key=k, value=v) for k, v in extra.pop("tags").items()]
    ws.client().serving_endpoints.create_and_wait(name=name, **kwargs, **extra)


def mlflow_create(ws: Any, payload: dict[str, Any]) -> None:
    import warnings

    import mlflow.deployments

    saved = dict(os.environ)
    os.environ.update({"DATABRICKS_HOST": ws.url, "DATABRICKS_TOKEN": ws.token})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mlflow.deployments.get_deploy_client("databricks").create_endpoint(config=payload)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def grant(ws: Any, endpoint: str, *acl: dict[str, str]) -> None:
    from databricks.sdk.service import serving

    w = ws.client()
    w.serving_endpoints.update_permissions(
        w.serving_endpoints.get(endpoint).id,
        access_control_list=[serving.ServingEndpointAccessControlRequest.from_dict(a) for a in acl])


@pytest.fixture
def adopted(make_workspace):
    """A workspace as a team has it before adopting the tool: five endpoints made with the SDK and
    the MLflow deployments client, models with aliases (two of them on one version)."""
    ws = make_workspace(SEED)
    ws.add_seed({"registered_models": [
        {"full_name": ROUTER, "comment": "Routes questions to the right agent",
         "versions": [{"version": 1}, {"version": 2}],
         "aliases": [{"alias_name": "prod", "version_num": 2}, {"alias_name": "champion", "version_num": 2},
                     {"alias_name": "blue", "version_num": 1}]},
        {"full_name": TRIAGE, "versions": [{"version": 1}, {"version": 2}]},
    ]})
    ws.client().registered_models.set_alias(MODEL, "challenger", 4)
    # One entity, no name, no traffic config: the server fills both (MLflow deployments client).
    mlflow_create(ws, {"name": "single", "config": {"served_entities": [
        {"entity_name": MODEL, "entity_version": "3", "workload_size": "Small", "scale_to_zero_enabled": True,
         "environment_vars": {"OPENAI_API_KEY": "{{secrets/support/openai}}", "ENABLE_MLFLOW_TRACING": "true"}}]}})
    # Two named entities, 90/10, secrets, tags, AI gateway, permissions (SDK).
    env = {"OPENAI_API_KEY": "{{secrets/support/openai}}", "VECTOR_SEARCH_INDEX": "main.agents.docs_index"}
    sdk_create(ws, "split", {
        "served_entities": [
            {"name": "challenger", "entity_name": MODEL, "entity_version": "4", "workload_size": "Small",
             "scale_to_zero_enabled": True, "environment_vars": env},
            {"name": "champion", "entity_name": MODEL, "entity_version": "3", "workload_size": "Medium",
             "scale_to_zero_enabled": False, "environment_vars": env}],
        "traffic_config": {"routes": [{"served_entity_name": "challenger", "traffic_percentage": 10},
                                      {"served_entity_name": "champion", "traffic_percentage": 90}]}},
        tags={"team": "support", "cost-center": "cx-042"},
        ai_gateway={"inference_table_config": {"catalog_name": "main", "schema_name": "agents",
                                               "table_name_prefix": "split", "enabled": True},
                    "usage_tracking_config": {"enabled": True},
                    "rate_limits": [{"calls": 100, "key": "user", "renewal_period": "minute"},
                                    {"calls": 1000, "key": "endpoint", "renewal_period": "minute"}],
                    "guardrails": {"input": {"pii": {"behavior": "BLOCK"}, "invalid_keywords": ["b", "a"]}}})
    grant(ws, "split", {"group_name": "support-team", "permission_level": "CAN_QUERY"},
          {"service_principal_name": "cx-deployer", "permission_level": "CAN_MANAGE"},
          {"user_name": "bob@example.com", "permission_level": "CAN_VIEW"})
    # A version no alias points at, legacy inference tables (auto capture), GPU, description. Seeded:
    # legacy inference tables can no longer be enabled through the API (since 2026-02-20), but
    # endpoints made before keep them.
    ws.add_seed({"serving_endpoints": [{"name": "pinned", "description": "Triage agent", "config": {
        "served_entities": [{"entity_name": TRIAGE, "entity_version": "2", "workload_size": "Small",
                             "workload_type": "GPU_SMALL", "scale_to_zero_enabled": False}],
        "auto_capture_config": {"catalog_name": "main", "schema_name": "agents", "table_name_prefix": "triage",
                                "enabled": True}}}]})
    # Two aliases on one version: the entity named like one of them, and one that is not (MLflow).
    mlflow_create(ws, {"name": "router", "config": {
        "served_entities": [{"name": "prod", "entity_name": ROUTER, "entity_version": "2", "workload_size": "Small",
                             "scale_to_zero_enabled": True},
                            {"name": "blue", "entity_name": ROUTER, "entity_version": "1", "workload_size": "Small",
                             "scale_to_zero_enabled": True}],
        "traffic_config": {"routes": [{"served_entity_name": "prod", "traffic_percentage": 100},
                                      {"served_entity_name": "blue", "traffic_percentage": 0}]}},
        "tags": [{"key": "team", "value": "routing"}]})
    mlflow_create(ws, {"name": "router-b", "config": {"served_entities": [
        {"entity_name": ROUTER, "entity_version": "2", "workload_size": "Small", "scale_to_zero_enabled": True}]}})
    ws.reset_requests()
    return ws


LEGACY_WARNING = ("warning: serving_endpoint.pinned: has a legacy inference table (auto_capture_config main.agents."
                  "triage), unsupported since March 20, 2026; not exported: disable it and use "
                  "ai_gateway.inference_table_config")


def export(ws: Any, out: Path, *args: str) -> Any:
    result = run(ws, "export", "--out", str(out), *args)
    assert result.code == 0, result.out + result.err
    return result


def manifests(out: Path) -> dict[str, dict[str, Any]]:
    """relative path → the (single) document in it."""
    return {str(p.relative_to(out)): yaml.safe_load(p.read_text()) for p in sorted(out.rglob("*.yaml"))}


def spec(out: Path, relative: str) -> dict[str, Any]:
    return manifests(out)[relative]["spec"]


# ---- round trips -------------------------------------------------------------------------------

def test_export_then_plan_shows_no_changes_and_apply_writes_nothing(adopted, tmp_path):
    out = tmp_path / "manifests"
    result = export(adopted, out, "--all-endpoints")
    assert writes(adopted) == []  # export only reads
    assert sorted(manifests(out)) == [
        "endpoints/pinned.yaml", "endpoints/router-b.yaml", "endpoints/router.yaml", "endpoints/single.yaml",
        "endpoints/split.yaml", f"models/{ROUTER}.yaml", f"models/{MODEL}.yaml"]
    assert result.err.splitlines() == [
        LEGACY_WARNING,
        "warning: skipped 1 Databricks foundation model endpoint(s) (pay-per-token, not described by manifests): "
        "databricks-meta-llama-3-3-70b-instruct"]

    assert run(adopted, "validate", str(out)).code == 0
    schema = json.loads((ROOT / "schemas" / "manifest.schema.json").read_text())
    for document in manifests(out).values():
        jsonschema.validate(document, schema)

    plan = run(adopted, "plan", str(out), "--detailed-exitcode")
    assert plan.code == 0, plan.out + plan.err
    assert plan.out.endswith("No changes. The workspace matches the manifests.\n")
    assert "Warning: serving_endpoint.pinned still has a legacy inference table" in plan.out  # unsupported: said
    applied = run(adopted, "apply", str(out), "--auto-approve")
    assert applied.code == 0, applied.out + applied.err
    assert writes(adopted) == []  # the apply lock's lease file is not counted (harness.LOCK_ROUTES)


def test_exported_manifests_are_what_a_person_would_write(adopted, tmp_path):
    out = tmp_path / "out"
    export(adopted, out, "--all-endpoints")
    single = spec(out, "endpoints/single.yaml")
    assert single == {"served_entities": [{
        "name": "support_agent-3", "entity_name": MODEL, "alias": "champion", "workload_size": "Small",
        "scale_to_zero_enabled": True,
        "environment_vars": {"ENABLE_MLFLOW_TRACING": "true", "OPENAI_API_KEY": "{{secrets/support/openai}}"}}]}
    text = (out / "endpoints" / "single.yaml").read_text()
    assert "alias: champion  # version 3" in text
    assert "traffic_config: the default single route, 100% to support_agent-3" in text
    assert "permission of the creator (user_name local.user@example.com, CAN_MANAGE)" in text
    assert "inherited permissions (group_name admins)" in text

    split = spec(out, "endpoints/split.yaml")
    assert [(e["name"], e["alias"], e["workload_size"]) for e in split["served_entities"]] == [
        ("champion", "champion", "Medium"), ("challenger", "challenger", "Small")]
    assert split["traffic_config"] == {"routes": [{"served_entity_name": "champion", "traffic_percentage": 90},
                                                  {"served_entity_name": "challenger", "traffic_percentage": 10}]}
    assert split["tags"] == {"cost-center": "cx-042", "team": "support"}
    assert split["permissions"] == [
        {"user_name": "bob@example.com", "permission_level": "CAN_VIEW"},
        {"group_name": "support-team", "permission_level": "CAN_QUERY"},
        {"service_principal_name": "cx-deployer", "permission_level": "CAN_MANAGE"}]
    assert split["ai_gateway"]["guardrails"] == {"input": {"pii": {"behavior": "BLOCK"},
                                                           "invalid_keywords": ["a", "b"]}}
    assert list(split) == ["served_entities", "traffic_config", "ai_gateway", "tags", "permissions"]

    pinned = spec(out, "endpoints/pinned.yaml")
    assert pinned == {
        "served_entities": [{"entity_name": TRIAGE, "entity_version": "2", "workload_size": "Small",
                             "workload_type": "GPU_SMALL", "scale_to_zero_enabled": False}],
        "description": "Triage agent"}
    pinned_text = (out / "endpoints" / "pinned.yaml").read_text()
    assert "served entity name triage-2: the server's default for version 2" in pinned_text
    assert "# - auto_capture_config (main.agents.triage): a legacy inference table; manifests cannot enable them " \
           "any more, and apply leaves it as it is: move to ai_gateway.inference_table_config" in pinned_text

    model = manifests(out)[f"models/{MODEL}.yaml"]
    assert model == {"apiVersion": "reconciler/v1", "kind": "RegisteredModel", "metadata": {"name": MODEL},
                     "spec": {"comment": "Customer support agent (LangGraph, logged with MLflow)",
                              "aliases": {"challenger": 4, "champion": 3}}}
    assert "# - owner (local.user@example.com): unmanaged" in (out / "models" / f"{MODEL}.yaml").read_text()
    assert f"models/{TRIAGE}.yaml" not in manifests(out)  # no alias serves it: no model manifest needed


def test_two_aliases_on_one_version_prefer_the_entity_name_then_champion(adopted, tmp_path):
    export(adopted, tmp_path, "--endpoint", "router", "--endpoint", "router-b")
    router = spec(tmp_path, "endpoints/router.yaml")
    assert [(e["name"], e["alias"]) for e in router["served_entities"]] == [("prod", "prod"), ("blue", "blue")]
    assert router["traffic_config"]["routes"][1] == {"served_entity_name": "blue", "traffic_percentage": 0}
    router_b = spec(tmp_path, "endpoints/router-b.yaml")
    assert [(e["name"], e["alias"]) for e in router_b["served_entities"]] == [("router-2", "champion")]


def test_an_endpoint_alone_brings_the_model_whose_aliases_it_serves(adopted, tmp_path):
    result = export(adopted, tmp_path, "--endpoint", "single")
    assert sorted(manifests(tmp_path)) == ["endpoints/single.yaml", f"models/{MODEL}.yaml"]
    assert f"registered model {MODEL} is exported too: single" in result.out
    assert run(adopted, "plan", str(tmp_path), "--detailed-exitcode").code == 0


def test_pin_versions_writes_entity_version_and_no_model(adopted, tmp_path):
    export(adopted, tmp_path, "--endpoint", "split", "--endpoint", "single", "--pin-versions")
    assert sorted(manifests(tmp_path)) == ["endpoints/single.yaml", "endpoints/split.yaml"]
    assert spec(tmp_path, "endpoints/single.yaml")["served_entities"][0] == {
        "entity_name": MODEL, "entity_version": "3", "workload_size": "Small", "scale_to_zero_enabled": True,
        "environment_vars": {"ENABLE_MLFLOW_TRACING": "true", "OPENAI_API_KEY": "{{secrets/support/openai}}"}}
    assert [e["entity_version"] for e in spec(tmp_path, "endpoints/split.yaml")["served_entities"]] == ["3", "4"]
    assert run(adopted, "plan", str(tmp_path), "--detailed-exitcode").code == 0


def test_a_model_alone(adopted, tmp_path):
    export(adopted, tmp_path, "--model", ROUTER, "--model", TRIAGE)
    assert manifests(tmp_path)[f"models/{ROUTER}.yaml"]["spec"] == {
        "comment": "Routes questions to the right agent", "aliases": {"blue": 1, "champion": 2, "prod": 2}}
    assert manifests(tmp_path)[f"models/{TRIAGE}.yaml"]["spec"] == {}
    assert "spec: {}\n  # Left out on purpose:\n  # - aliases: it has none" in \
        (tmp_path / "models" / f"{TRIAGE}.yaml").read_text()
    assert run(adopted, "plan", str(tmp_path), "--detailed-exitcode").code == 0


def test_variables_replace_whole_name_parts_and_round_trip(adopted, tmp_path):
    export(adopted, tmp_path, "--endpoint", "split", "--var", "catalog=main", "--var", "team=support",
           "--var", "a=agent")
    model_file = "models/{catalog}.agents.support_agent.yaml"
    assert sorted(manifests(tmp_path)) == ["endpoints/split.yaml", model_file]
    assert manifests(tmp_path)[model_file]["metadata"]["name"] == "${var.catalog}.agents.support_agent"
    split = spec(tmp_path, "endpoints/split.yaml")
    entity = split["served_entities"][0]
    assert entity["entity_name"] == "${var.catalog}.agents.support_agent"  # "agents" is not "agent": whole parts
    assert entity["environment_vars"]["VECTOR_SEARCH_INDEX"] == "${var.catalog}.agents.docs_index"
    assert split["ai_gateway"]["inference_table_config"]["catalog_name"] == "${var.catalog}"
    assert split["tags"] == {"cost-center": "cx-042", "team": "${var.team}"}
    assert split["permissions"][1] == {"group_name": "support-team", "permission_level": "CAN_QUERY"}

    assert run(adopted, "validate", str(tmp_path)).code == 1  # the variables are needed to read them
    same = ("--var", "catalog=main", "--var", "team=support")
    assert run(adopted, "validate", str(tmp_path), *same).code == 0
    plan = run(adopted, "plan", str(tmp_path), "--detailed-exitcode", *same)
    assert plan.code == 0, plan.out + plan.err


def test_export_is_deterministic_and_overwrites_its_own_files(adopted, tmp_path):
    export(adopted, tmp_path / "a", "--all-endpoints")
    export(adopted, tmp_path / "b", "--all-endpoints")
    export(adopted, tmp_path / "b", "--all-endpoints")
    first = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    second = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file()}
    assert first == second  # no leftovers (temporary files) either


def test_modeline_points_at_the_repository_schema(adopted, tmp_path):
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "manifest.schema.json").write_text("{}")
    export(adopted, tmp_path / "deploy" / "manifests", "--endpoint", "pinned")
    first = (tmp_path / "deploy" / "manifests" / "endpoints" / "pinned.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../../../schemas/manifest.schema.json"


def test_untagged_endpoint_is_adopted_without_a_write_and_tagged_with_its_next_change(adopted, tmp_path):
    """Regression (plan.py `_only_adopts`): a missing managed-by tag alone was planned as a
    patch_tags write, so export-then-plan never showed "no changes" for an endpoint made elsewhere."""
    export(adopted, tmp_path, "--endpoint", "pinned")
    plan = run(adopted, "plan", str(tmp_path), "--format", "json").json
    assert [(c["action"], c["operations"], c["diff"]) for c in plan["changes"]] == [("no-op", [], [])]
    path = tmp_path / "endpoints" / "pinned.yaml"
    document = yaml.safe_load(path.read_text())
    document["spec"]["tags"] = {"team": "triage"}
    write(tmp_path / "endpoints", [document], "pinned.yaml")
    plan = run(adopted, "plan", str(tmp_path), "--format", "json").json
    assert [d["path"] for d in plan["changes"][0]["diff"]] == ["tags[managed-by]", "tags[team]"]
    # Another tool's endpoint is taken over visibly: that tag change stays a change.
    adopted.client().serving_endpoints.patch("router-b", add_tags=[_tag("managed-by", "terraform")])
    export(adopted, tmp_path / "b", "--endpoint", "router-b")
    plan = run(adopted, "plan", str(tmp_path / "b"), "--format", "json").json
    change = next(c for c in plan["changes"] if c["address"] == "serving_endpoint.router-b")
    assert [d["path"] for d in change["diff"]] == ["tags[managed-by]"]


def _tag(key: str, value: str) -> Any:
    from databricks.sdk.service import serving

    return serving.EndpointTag(key=key, value=value)


# ---- bad input ---------------------------------------------------------------------------------

def test_a_plain_credential_is_never_exported_nor_printed(adopted, tmp_path):
    sdk_create(adopted, "leaky", {"served_entities": [
        {"entity_name": TRIAGE, "entity_version": "1",
         "environment_vars": {"OPENAI_API_KEY": SECRET_VALUE, "MODE": "fast"}}]})
    result = export(adopted, tmp_path, "--endpoint", "leaky")
    assert "warning: serving_endpoint.leaky: served entity 'triage-1': environment variable OPENAI_API_KEY holds a " \
        "plain value that looks like a credential: its value is NOT exported (nor shown)" in result.err
    text = (tmp_path / "endpoints" / "leaky.yaml").read_text()
    assert SECRET_VALUE not in result.out + result.err + text
    env = spec(tmp_path, "endpoints/leaky.yaml")["served_entities"][0]["environment_vars"]
    assert env == {"MODE": "fast", "OPENAI_API_KEY": "{{secrets/leaky/openai_api_key}}"}
    assert "# TODO: the workspace holds a plain value that looks like a credential" in text
    # It validates, and plan refuses it until the secret exists, without printing the value.
    assert run(adopted, "validate", str(tmp_path)).code == 0
    plan = run(adopted, "plan", str(tmp_path))
    assert plan.code == 1 and "secret scope 'leaky' does not exist" in plan.err
    assert SECRET_VALUE not in plan.out + plan.err


def test_unknown_names_fail_clearly(adopted, tmp_path):
    result = run(adopted, "export", "--out", str(tmp_path), "--endpoint", "nope", "--model", "main.agents.nope")
    assert result.code == 1
    assert result.err.splitlines() == [
        "nothing was exported:",
        "registered_model.main.agents.nope: does not exist in the workspace; nothing exported for it",
        "serving_endpoint.nope: does not exist in the workspace; nothing exported for it"]
    assert list(tmp_path.iterdir()) == []

    partial = run(adopted, "export", "--out", str(tmp_path), "--endpoint", "single", "--endpoint", "nope")
    assert partial.code == 1  # the typo must not pass a script silently; what exists is written
    assert "wrote " in partial.out and "endpoints/single.yaml" in partial.out
    assert "serving_endpoint.nope: does not exist" in partial.err
    assert partial.err.splitlines() == [
        "exported 2 object(s); 1 could not be exported:",
        "serving_endpoint.nope: does not exist in the workspace; nothing exported for it"]

    bad = run(adopted, "export", "--out", str(tmp_path), "--model", "support_agent")
    assert (bad.code, bad.err) == (1, "--model 'support_agent' is not a Unity Catalog model name; write "
                                      "catalog.schema.model\n")
    nothing = run(adopted, "export", "--out", str(tmp_path))
    assert nothing.code == 1 and "nothing to export" in nothing.err


def test_external_model_endpoints_are_noted_not_dropped(adopted, tmp_path):
    sdk_create(adopted, "gpt", {"served_entities": [
        {"name": "gpt-4o", "external_model": {"name": "gpt-4o", "provider": "openai", "task": "llm/v1/chat",
                                              "openai_config": {"openai_api_key": "{{secrets/support/openai}}"}}},
        {"name": "local", "entity_name": TRIAGE, "entity_version": "1"}],
        "traffic_config": {"routes": [{"served_entity_name": "gpt-4o", "traffic_percentage": 50},
                                      {"served_entity_name": "local", "traffic_percentage": 50}]}})
    alone = run(adopted, "export", "--out", str(tmp_path / "a"), "--endpoint", "gpt")
    assert alone.code == 1
    assert "serving_endpoint.gpt: not exported: served entity 'gpt-4o' is an external model (openai gpt-4o)" in alone.err
    note = (tmp_path / "a" / "endpoints" / "gpt.unsupported.txt").read_text()
    assert "would remove these on the next apply" in note
    assert not list((tmp_path / "a").rglob("*.yaml"))

    every = run(adopted, "export", "--out", str(tmp_path / "b"), "--all-endpoints")
    assert every.code == 0
    assert "warning: serving_endpoint.gpt: not exported: served entity 'gpt-4o' is an external model" in every.err
    assert (tmp_path / "b" / "endpoints" / "gpt.unsupported.txt").exists()
    assert run(adopted, "plan", str(tmp_path / "b"), "--detailed-exitcode").code == 0  # the note is not a manifest


def test_endpoint_mid_update_is_exported_from_the_config_it_serves(make_workspace, tmp_path):
    ws = make_workspace(SEED, update_seconds=30)
    ws.add_seed({"serving_endpoints": [{"name": "busy", "config": {"served_entities": [
        {"name": "current", "entity_name": MODEL, "entity_version": "2", "workload_size": "Small",
         "scale_to_zero_enabled": True}]}}]})
    from databricks.sdk.service import serving

    ws.client().serving_endpoints.update_config(
        "busy", served_entities=[serving.ServedEntityInput(name="current", entity_name=MODEL, entity_version="3",
                                                           workload_size="Small", scale_to_zero_enabled=True)])
    result = run(ws, "export", "--out", str(tmp_path), "--endpoint", "busy", "--pin-versions")
    assert result.code == 0, result.err
    assert "warning: serving_endpoint.busy: an update is in progress; exported the config it serves now" in result.err
    assert spec(tmp_path, "endpoints/busy.yaml")["served_entities"][0]["entity_version"] == "2"

    ws.add_seed({"registered_models": [{"full_name": TRIAGE, "versions": [{"version": 1}]}]})
    ws.client().serving_endpoints.create(name="new", config=serving.EndpointCoreConfigInput.from_dict(
        {"served_entities": [{"entity_name": TRIAGE, "entity_version": "1"}]}))
    creating = run(ws, "export", "--out", str(tmp_path / "new"), "--endpoint", "new")
    assert creating.code == 1
    assert "serving_endpoint.new: has no config serving yet (it is being created)" in creating.err


def test_write_errors_name_the_path_and_write_nothing(adopted, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run(adopted, "export", "--out", str(blocker), "--endpoint", "single", "--pin-versions")
    assert result.code == 1
    assert result.err.startswith(f"{blocker}/endpoints: cannot create directory: ")
    assert "nothing was exported" in result.err

    # A file that cannot be written after others were staged: none of them is left behind.
    (tmp_path / "out" / "endpoints" / "single.yaml").mkdir(parents=True)
    result = run(adopted, "export", "--out", str(tmp_path / "out"), "--endpoint", "single")
    assert result.code == 1
    assert result.err == f"{tmp_path}/out/endpoints/single.yaml: cannot write: it is a directory; nothing was " \
                         "exported\n"
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["endpoints", "models", "single.yaml"]
    assert list((tmp_path / "out" / "models").iterdir()) == []


def test_required_fields_the_workspace_does_not_report_are_written_with_a_todo(adopted, tmp_path):
    """An entity created without workload_size and scale_to_zero_enabled (the API accepts that on
    create): manifests must state both (normalize.FIELD_RULES, REQUIRED), so export writes what
    databricks-agents deploys with, marks it TODO and warns; plan then shows exactly those two."""
    sdk_create(adopted, "bare", {"served_entities": [{"entity_name": TRIAGE, "entity_version": "1"}]})
    result = export(adopted, tmp_path, "--endpoint", "bare")
    assert spec(tmp_path, "endpoints/bare.yaml")["served_entities"][0] == {
        "entity_name": TRIAGE, "entity_version": "1", "workload_size": "Small", "scale_to_zero_enabled": False}
    text = (tmp_path / "endpoints" / "bare.yaml").read_text()
    assert "scale_to_zero_enabled: false  # TODO: the workspace does not report it, and manifests must state it" in text
    assert "warning: serving_endpoint.bare: served entity 'triage-1': the workspace does not report workload_size" \
        in result.err
    plan = run(adopted, "plan", str(tmp_path), "--format", "json")
    change = next(c for c in plan.json["changes"] if c["address"] == "serving_endpoint.bare")
    assert [d["path"] for d in change["diff"]] == ["served_entities[triage-1].scale_to_zero_enabled",
                                                   "served_entities[triage-1].workload_size", "tags[managed-by]"]


def test_agent_bricks_endpoints_are_skipped_with_the_real_reason(adopted, tmp_path):
    """real-api/endpoint_list_01.json: READY Agent Bricks endpoints answer `config: {}`; their served
    entities are not visible through the API, so no manifest can describe them (export rules 5, 7)."""
    adopted.add_seed({"serving_endpoints": [{"name": "mas-996e9c3d-endpoint", "config": {},
                                             "task": "agent/v1/responses",
                                             "tile_endpoint_metadata": {"problem_type": "MULTI_AGENT_SUPERVISOR"}}]})
    asked = run(adopted, "export", "--out", str(tmp_path / "a"), "--endpoint", "mas-996e9c3d-endpoint")
    assert asked.code == 1
    assert asked.err.splitlines()[-1] == (
        "serving_endpoint.mas-996e9c3d-endpoint: not exported: it is READY with an empty config, as Agent Bricks "
        "endpoints (multi agent supervisor) are: its served entities are not visible through the API, which "
        "manifests cannot describe yet (see endpoints/mas-996e9c3d-endpoint.unsupported.txt)")
    assert "being created" not in asked.err
    every = run(adopted, "export", "--out", str(tmp_path / "b"), "--all-endpoints")
    assert every.code == 0
    assert "warning: skipped 1 Agent Bricks endpoint(s) (READY with an empty config: their served entities are not " \
           "visible through the API): mas-996e9c3d-endpoint" in every.err
    assert not (tmp_path / "b" / "endpoints" / "mas-996e9c3d-endpoint.yaml").exists()


def test_a_live_value_the_format_cannot_hold_is_left_out_and_unmanaged(adopted, tmp_path):
    """The workspace echoes `usage_tracking_config: {}` when `enabled` was never sent; the format
    requires `enabled`. That part is left out (so the live value stays), the rest is exported."""
    sdk_create(adopted, "gateway", {"served_entities": [{"entity_name": TRIAGE, "entity_version": "1",
                                                         "workload_size": "Small", "scale_to_zero_enabled": True}]},
               ai_gateway={"usage_tracking_config": {}, "inference_table_config": {
                   "catalog_name": "main", "schema_name": "agents", "enabled": True}})
    result = export(adopted, tmp_path, "--endpoint", "gateway")
    assert "warning: serving_endpoint.gateway: ai_gateway.usage_tracking_config does not fit the manifest format; " \
           "left out (unmanaged)" in result.err
    assert spec(tmp_path, "endpoints/gateway.yaml")["ai_gateway"] == {
        "inference_table_config": {"catalog_name": "main", "schema_name": "agents", "enabled": True}}
    assert run(adopted, "plan", str(tmp_path), "--detailed-exitcode").code == 0


# ---- the YAML writer ---------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40))
def test_any_string_loads_back_as_itself(text):
    """Every value export writes reads back unchanged through the manifest loader (which also
    substitutes ${var.NAME}: a literal "${" must come back as written)."""
    document = f"k: {scalar(text.replace('${', '$${'))}\n"
    problems: list[Any] = []
    [source] = read_documents("t.yaml", document.encode(), {}, problems)
    assert problems == [] and source.data == {"k": text}


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=30))
def test_any_key_loads_back_as_itself(key):
    """Keys (environment variable names, tag keys) are written as they are: the loader does not
    substitute variables in keys."""
    problems: list[Any] = []
    [source] = read_documents("t.yaml", f"{scalar(key)}: 1\n".encode(), {}, problems)
    assert problems == [] and source.data == {key: 1}


def test_foundation_model_endpoints():
    """Pay-per-token endpoints (served entities with `foundation_model`, which the local workspace
    cannot create): counted in one warning with --all-endpoints, a failure when asked for by name."""
    from reconciler.export.convert import export_objects
    from reconciler.export.documents import ExportOptions
    from reconciler.export.read import LiveObjects

    api = {"name": "databricks-claude", "id": "1", "creator": "system", "state": {"config_update": "NOT_UPDATING"},
           "config": {"served_entities": [{"name": "databricks-claude",
                                           "foundation_model": {"name": "claude", "display_name": "Claude"}}]}}
    listed = export_objects(LiveObjects(endpoints={"databricks-claude": api}, all_endpoints=True), ExportOptions())
    assert (listed.documents, listed.notes, listed.problems) == ([], {}, [])
    assert listed.warnings == ["skipped 1 Databricks foundation model endpoint(s) (pay-per-token, not described "
                               "by manifests): databricks-claude"]
    asked = export_objects(LiveObjects(endpoints={"databricks-claude": api}, requested_endpoints=["databricks-claude"]),
                           ExportOptions())
    assert [str(p) for p in asked.problems] == [
        "serving_endpoint.databricks-claude: not exported: served entity 'databricks-claude' is a Databricks "
        "foundation model (claude), which manifests cannot describe yet (see endpoints/databricks-claude.unsupported.txt)"]
    assert list(asked.notes) == ["endpoints/databricks-claude.unsupported.txt"]
    from reconciler.export.endpoints import unsupported_reasons

    assert unsupported_reasons({"name": "old", "config": {"served_models": [{"model_name": "m"}]}}) == [
        "its config lists no served_entities (an endpoint from the served_models era?)"]
