"""Policies through `plan` (and `apply`) against the local workspace: what only live state shows.

The example policies (examples/policies/) with the production stack: drift that breaks a policy is
a plan warning (the plan corrects it); a live value the manifest leaves unmanaged that breaks a
rule fails plan and apply before any write; resources a served version was logged with but the
manifest does not declare fail plan (validate cannot know them).
"""

from __future__ import annotations

import copy

import pytest
import yaml
from harness import ROOT, base_documents, endpoint, run, write, writes

from reconciler.policy import DRIFT, UNMANAGED

POLICIES = str(ROOT / "examples" / "policies")
PROD = {"RECONCILER_STACK": "prod"}


def production_ready() -> list[dict]:
    docs = base_documents()
    for entity in endpoint(docs)["spec"]["served_entities"]:
        entity["scale_to_zero_enabled"] = False
    return docs


@pytest.fixture
def deployed(seeded_workspace, tmp_path):
    docs = production_ready()
    path = write(tmp_path, docs)
    result = run(seeded_workspace, "apply", path, POLICIES, "--auto-approve", env=PROD)
    assert result.code == 0, result.out + result.err
    seeded_workspace.reset_requests()
    return seeded_workspace, path


def at(path: str, text: str) -> str:
    """`path:line:col` of the first place `text` is written in the file."""
    for number, line in enumerate(open(path, encoding="utf-8").read().splitlines(), 1):
        if text in line:
            return f"{path}:{number}:{line.index(text) + 1}"
    raise AssertionError(f"{text!r} not in {path}")


def set_scale_to_zero_live(ws, value: bool) -> None:
    """Someone flips the setting in the UI: a config update from another client."""
    from databricks.sdk.service.serving import ServedEntityInput

    client = ws.client()
    current = client.serving_endpoints.get("support-agent").config
    entities = [ServedEntityInput.from_dict({**e.as_dict(), "scale_to_zero_enabled": value})
                for e in current.served_entities]
    client.serving_endpoints.update_config_and_wait("support-agent", served_entities=entities,
                                                    traffic_config=current.traffic_config)


def test_a_compliant_deployment_plans_no_changes_and_no_warnings(deployed):
    ws, path = deployed
    result = run(ws, "plan", path, POLICIES, "--detailed-exitcode", env=PROD)
    assert (result.code, result.out, result.err) == (0, "No changes. The workspace matches the manifests.\n", "")


def test_drift_that_breaks_a_policy_is_a_plan_warning(deployed):
    ws, path = deployed
    set_scale_to_zero_live(ws, True)
    result = run(ws, "plan", path, POLICIES, "--format", "json", env=PROD)
    assert result.code == 0, result.err
    plan = result.json
    assert plan["warnings"] == [
        f"{at(path, '- name: champion')}: policy 'production-serving' rule 'no-scale-to-zero': production endpoint "
        "support-agent may "
        f"scale to zero (cold starts); set scale_to_zero_enabled: false on every served entity ({DRIFT})"]
    change = next(c for c in plan["changes"] if c["address"] == "serving_endpoint.support-agent")
    assert [d["path"] for d in change["diff"]] == ["served_entities[challenger].scale_to_zero_enabled",
                                                   "served_entities[champion].scale_to_zero_enabled"]
    # The plan corrects it: apply goes ahead, and afterwards the policy holds live too.
    applied = run(ws, "apply", path, POLICIES, "--auto-approve", env=PROD)
    assert applied.code == 0, applied.out + applied.err
    again = run(ws, "plan", path, POLICIES, "--detailed-exitcode", env=PROD)
    assert (again.code, again.err) == (0, "")
    assert "Warning" not in again.out


def test_a_live_value_left_unmanaged_that_breaks_a_rule_fails_plan_and_apply(deployed, tmp_path):
    """The manifest leaves `ai_gateway` out entirely (not managed), under a rule that allows that; the
    live endpoint's inference table is off, and would stay off after apply. Validate cannot see it.
    (This used to leave a served entity's scale_to_zero_enabled out: served entities are complete
    now, so a field left out of one means the API's default and is never unmanaged.)"""
    from databricks.sdk.service.serving import AiGatewayInferenceTableConfig

    ws, _ = deployed
    docs = production_ready()
    del endpoint(docs)["spec"]["ai_gateway"]
    lenient = yaml.safe_load((ROOT / "examples" / "policies" / "production.yaml").read_text(encoding="utf-8"))
    lenient = copy.deepcopy(lenient)
    lenient["spec"]["rules"][0]["expression"] = (
        "!has(object.spec.ai_gateway) || (has(object.spec.ai_gateway.inference_table_config) && "
        "object.spec.ai_gateway.inference_table_config.enabled)")
    path = write(tmp_path, docs, "unmanaged.yaml")
    policy = write(tmp_path, [lenient], "policy.yaml")
    assert run(ws, "validate", path, policy, env=PROD).code == 0
    ws.client().serving_endpoints.put_ai_gateway("support-agent", inference_table_config=AiGatewayInferenceTableConfig(
        enabled=False))
    ws.reset_requests()
    expected = (f"{at(path, 'served_entities:')}: policy 'production-serving' rule 'inference-table': production "
                "endpoint without an inference table; add ai_gateway.inference_table_config with catalog_name, "
                f"schema_name, table_name_prefix and enabled: true ({UNMANAGED})\n")
    result = run(ws, "plan", path, policy, env=PROD)
    assert (result.code, result.out, result.err) == (1, "", expected)
    applied = run(ws, "apply", path, policy, "--auto-approve", env=PROD)
    assert (applied.code, applied.err) == (1, expected)
    assert writes(ws) == []


def test_resources_logged_but_not_declared_fail_plan_not_validate(seeded_workspace, tmp_path):
    """The seed's MLmodel of versions 3 and 4 declares the vector index and the LLM endpoint."""
    docs = production_ready()
    del endpoint(docs)["spec"]["resources"]["serving_endpoint"]
    path = write(tmp_path, docs)
    assert run(seeded_workspace, "validate", path, POLICIES, env=PROD).code == 0
    result = run(seeded_workspace, "plan", path, POLICIES, env=PROD)
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        f"{at(path, 'vector_search_index:')}: policy 'declared-resources' rule 'logged-resources-declared': a served model version was "
        "logged with Databricks resources that spec.resources does not declare; list there every resource its "
        "MLmodel names (the resources or auth_policy it was logged with)\n")
    assert writes(seeded_workspace) == []
    # Other stacks are not production: the same manifest plans (preflight only warns).
    other = run(seeded_workspace, "plan", path, POLICIES, env={"RECONCILER_STACK": "dev"})
    assert other.code == 0, other.err
    assert "was logged with serving_endpoint 'databricks-meta-llama-3-3-70b-instruct'" in other.out
