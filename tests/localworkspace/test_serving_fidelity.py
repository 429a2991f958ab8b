"""Contract tests: Model Serving answers shaped like real Databricks, through the unmodified
`databricks-sdk` (and the MLflow deployments client) over real HTTP. Each test's docstring names
the source of the behaviour it pins; `serving.py` and `serving_input.py` cite them next to the code."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import requests
from databricks.sdk.errors import BadRequest, InvalidParameterValue, PermissionDenied
from databricks.sdk.service.serving import (
    AiGatewayInferenceTableConfig,
    AiGatewayRateLimit,
    AiGatewayRateLimitKey,
    AiGatewayRateLimitRenewalPeriod,
    AiGatewayUsageTrackingConfig,
    AutoCaptureConfigInput,
    RateLimit,
    RateLimitKey,
    RateLimitRenewalPeriod,
    Route,
    ServedEntityInput,
    TrafficConfig,
)

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
MODEL = "main.agents.support_agent"
AGENT = "main.agents.responses_agent"
ENDPOINTS = "/api/2.0/serving-endpoints"


@pytest.fixture
def w(ws: Any) -> Any:
    return ws.client()


def entity(version: int | str, model: str = MODEL, **fields: Any) -> dict[str, Any]:
    return {"entity_name": model, "entity_version": str(version), "workload_size": "Small",
            "scale_to_zero_enabled": False, **fields}


def create(w: Any, name: str, *entities: dict[str, Any], **body: Any) -> dict[str, Any]:
    w.api_client.do("POST", ENDPOINTS, body={"name": name, "config": {"served_entities": list(entities)}, **body})
    w.serving_endpoints.wait_get_serving_endpoint_not_updating(name)
    return w.api_client.do("GET", f"{ENDPOINTS}/{name}")  # type: ignore[no-any-return]


def put_config(w: Any, name: str, body: dict[str, Any]) -> dict[str, Any]:
    w.api_client.do("PUT", f"{ENDPOINTS}/{name}/config", body=body)
    w.serving_endpoints.wait_get_serving_endpoint_not_updating(name)
    return w.api_client.do("GET", f"{ENDPOINTS}/{name}")  # type: ignore[no-any-return]


# -- 1. the shapes GET and list answer -------------------------------------------------------------

def test_get_carries_the_real_extras(w: Any) -> None:
    """real-api/endpoint_create_resp_02/03 and endpoint_list_01: the `served_models` mirror next to
    `served_entities` (model_name/model_version), `state.suspend` and `system_update_failure`,
    `creator_display_name`, `creator_kind`, `description: ""`; databricks/cli resources.yml: GET
    returns `effective_budget_policy_id`, never `budget_policy_id`; email notifications are kept."""
    got = create(w, "shaped", entity(3), budget_policy_id="policy-1",
                 email_notifications={"on_update_failure": ["oncall@example.com"]})
    served = got["config"]["served_entities"][0]
    mirror = got["config"]["served_models"][0]
    assert (mirror["name"], mirror["model_name"], mirror["model_version"]) == (served["name"], MODEL, "3")
    assert "entity_name" not in mirror and mirror["state"] == served["state"]
    assert got["state"] == {"ready": "READY", "config_update": "NOT_UPDATING", "suspend": "NOT_SUSPENDED",
                            "system_update_failure": False}
    assert (got["creator_display_name"], got["creator_kind"], got["description"]) == ("Local User", "User", "")
    assert got["effective_budget_policy_id"] == "policy-1" and "budget_policy_id" not in got
    assert got["email_notifications"] == {"on_update_failure": ["oncall@example.com"]}
    assert "task" not in got and "endpoint_type" not in got  # a custom model endpoint
    sdk_view = w.serving_endpoints.get("shaped")
    assert sdk_view.config.served_models[0].model_version == "3"
    assert sdk_view.budget_policy_id is None  # SDK 0.156 has no effective_budget_policy_id field


def test_pending_config_carries_the_mirror_too(make_workspace: Any) -> None:
    """real-api/endpoint_create_resp_02.json: `pending_config` has both lists while creating."""
    w = make_workspace(SEEDS / "support_agent.yaml", update_seconds=30).client()
    created = w.api_client.do("POST", ENDPOINTS, body={"name": "pending", "config": {"served_entities": [entity(3)]}})
    assert [m["model_version"] for m in created["pending_config"]["served_models"]] == ["3"]
    assert created["state"]["config_update"] == "IN_PROGRESS"


def test_list_items_say_their_type_and_mirror_custom_models(w: Any) -> None:
    """real-api/endpoint_list_01.json: custom items carry `type: UC_MODEL` on both lists;
    pay-per-token items carry `type: FOUNDATION_MODEL`, `task`, `endpoint_type` and no mirror;
    Agent Bricks items are READY with `config: {}` and an agent `task`."""
    create(w, "listed", entity(3))
    items = {e["name"]: e for e in w.api_client.do("GET", ENDPOINTS)["endpoints"]}
    custom = items["listed"]["config"]
    assert custom["served_entities"][0]["type"] == custom["served_models"][0]["type"] == "UC_MODEL"
    assert custom["served_models"][0]["model_name"] == MODEL
    foundation = items["databricks-qwen3-embedding-0-6b"]
    assert foundation["config"]["served_entities"][0]["type"] == "FOUNDATION_MODEL"
    assert "served_models" not in foundation["config"]
    assert (foundation["task"], foundation["endpoint_type"]) == ("llm/v1/embeddings", "FOUNDATION_MODEL_API")
    assert "suspend" not in foundation["state"]
    bricks = items["mas-996e9c3d-endpoint"]
    assert bricks["config"] == {} and bricks["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert bricks["task"] == "agent/v1/responses" and bricks["tile_endpoint_metadata"]["problem_type"]


def test_an_agent_bricks_endpoint_is_ready_with_an_empty_config(w: Any) -> None:
    """real-api/endpoint_list_01.json (`mas-*-endpoint`: READY, NOT_UPDATING, `config: {}`)."""
    raw = w.api_client.do("GET", f"{ENDPOINTS}/mas-996e9c3d-endpoint")
    assert raw["config"] == {} and "pending_config" not in raw
    sdk_view = w.serving_endpoints.get("mas-996e9c3d-endpoint")
    assert sdk_view.state.ready.value == "READY" and not sdk_view.config.served_entities


def test_the_server_sets_task_for_agent_endpoints(w: Any) -> None:
    """databricks-api.md "Agent endpoints": create has no `task` parameter; the server sets it. The
    served version's MLmodel `metadata.task` says it is an agent (`agent/v1/responses` is what
    MLflow writes for a ResponsesAgent); a LangGraph model without it is a custom endpoint."""
    assert create(w, "agent", entity(1, AGENT))["task"] == "agent/v1/responses"
    assert w.serving_endpoints.get("agent").task == "agent/v1/responses"
    assert "task" not in create(w, "custom", entity(3))


def test_get_has_every_top_level_key_of_the_real_2025_capture(w: Any) -> None:
    """The top-level keys of real-api/endpoint_create_resp_03.json (a live 2025 create answer, listed
    here because tests do not read shared/), less `resource_credential_strategy`, which only that
    provisioned foundation model shows."""
    real_keys = {"name", "creator", "creation_timestamp", "last_updated_timestamp", "state", "id",
                 "permission_level", "route_optimized", "creator_display_name", "creator_kind",
                 "effective_budget_policy_id"}
    assert real_keys <= set(create(w, "captured", entity(3), budget_policy_id="p"))


# -- 2. write-only fields --------------------------------------------------------------------------

def test_write_only_fields_are_accepted_and_never_returned(w: Any) -> None:
    """databricks/cli bundle/direct/dresources/resources.yml: `burst_scaling_enabled` is "Accepted on
    write but not returned by GET"; the endpoint's top-level `rate_limits` are not in
    `ServingEndpointDetailed` (SDK 0.156), and resources.yml ignored remote changes to them (#4638)."""
    got = create(w, "writeonly", entity(3, burst_scaling_enabled=False),
                 rate_limits=[{"calls": 10, "key": "endpoint", "renewal_period": "minute"}])
    assert "burst_scaling_enabled" not in json.dumps(got) and "rate_limits" not in got
    w.serving_endpoints.put(name="writeonly", rate_limits=[
        RateLimit(calls=5, key=RateLimitKey.USER, renewal_period=RateLimitRenewalPeriod.MINUTE)])
    assert "rate_limits" not in w.api_client.do("GET", f"{ENDPOINTS}/writeonly")


# -- 3. legacy inference tables --------------------------------------------------------------------

@pytest.mark.parametrize(("reason", "capture"), [
    ("enabled true", {"catalog_name": "main", "schema_name": "agents", "enabled": True}),
    ("a location without enabled (enabled defaults to true)", {"catalog_name": "main", "schema_name": "agents"}),
])
def test_legacy_inference_tables_can_not_be_enabled(w: Any, reason: str, capture: dict[str, Any]) -> None:
    """Databricks docs, "Enable inference tables on model serving endpoints using the API": "Starting
    February 20, 2026, legacy inference tables can not be enabled on new or existing model serving
    endpoints." The error text is ours (no real one was found)."""
    with pytest.raises(InvalidParameterValue, match="can not be enabled") as on_create:
        w.api_client.do("POST", ENDPOINTS, body={"name": "x", "config": {
            "served_entities": [entity(3)], "auto_capture_config": capture}})
    assert on_create.value.error_code == "INVALID_PARAMETER_VALUE", reason
    create(w, "plain", entity(3))
    with pytest.raises(InvalidParameterValue, match="ai_gateway.inference_table_config"):
        w.serving_endpoints.update_config(name="plain", served_entities=[ServedEntityInput.from_dict(entity(4))],
                                          auto_capture_config=AutoCaptureConfigInput.from_dict(capture))
    disabled = put_config(w, "plain", {"served_entities": [entity(4)], "auto_capture_config": {"enabled": False}})
    assert disabled["config"]["auto_capture_config"] == {"enabled": False}


def test_an_endpoint_seeded_with_a_legacy_table_keeps_it(w: Any) -> None:
    """The legacy table stays on endpoints that have one ("can not be enabled", not "is removed"); a
    config update that sends it back unchanged is accepted: databricks-agents 1.13 resends
    `config.auto_capture_config` on every redeploy. `enabled` and the payload table are filled in
    as in real-api/endpoint_create_resp_01.json."""
    live = w.api_client.do("GET", f"{ENDPOINTS}/legacy-capture")["config"]["auto_capture_config"]
    assert live["enabled"] is True and live["state"] == {"payload_table": {"name": "legacy_payload"}}
    updated = put_config(w, "legacy-capture", {"served_entities": [entity(4)], "auto_capture_config": live})
    assert updated["config"]["auto_capture_config"]["table_name_prefix"] == "legacy"
    kept = put_config(w, "legacy-capture", {"served_entities": [entity(3)]})
    assert kept["config"]["auto_capture_config"]["enabled"] is True


# -- 4. provisioned throughput, concurrency, sizes, scale to zero ----------------------------------

def test_provisioned_throughput_entities_get_the_servers_values(w: Any) -> None:
    """real-api/endpoint_create_resp_02.json and _03 (DEFAULTS.md B3/B4): an entity created with only
    min/max_provisioned_throughput comes back with `workload_size: Small`, a GPU `workload_type`,
    `min_dbus`/`max_dbus`, and no `scale_to_zero_enabled`."""
    served = create(w, "pt", {"entity_name": MODEL, "entity_version": "3", "min_provisioned_throughput": 0,
                              "max_provisioned_throughput": 970})["config"]["served_entities"][0]
    assert served["workload_size"] == "Small" and served["workload_type"].startswith("GPU")
    assert served["max_dbus"] == 24.0 and "scale_to_zero_enabled" not in served


def test_workload_size_with_provisioned_concurrency_is_refused(w: Any) -> None:
    """SDK 0.156 docstring of `workload_size`: "Do not use if min_provisioned_concurrency and
    max_provisioned_concurrency are specified"."""
    with pytest.raises(InvalidParameterValue, match="workload_size"):
        w.api_client.do("POST", ENDPOINTS, body={"name": "both", "config": {"served_entities": [
            entity(3, min_provisioned_concurrency=4, max_provisioned_concurrency=8)]}})


def test_one_config_put_switches_between_size_concurrency_and_throughput(w: Any) -> None:
    """Issue 13 problem 5: switching an entity between `workload_size`, provisioned concurrency and
    provisioned throughput is one config PUT each way (the PUT replaces the entity as a whole,
    `update_config` docstring)."""
    create(w, "switch", entity(3, name="current"))
    concurrency = {"name": "current", "entity_name": MODEL, "entity_version": "3", "scale_to_zero_enabled": False,
                   "min_provisioned_concurrency": 4, "max_provisioned_concurrency": 8}
    served = put_config(w, "switch", {"served_entities": [concurrency]})["config"]["served_entities"][0]
    assert "workload_size" not in served and served["max_provisioned_concurrency"] == 8
    throughput = {"name": "current", "entity_name": MODEL, "entity_version": "3", "max_provisioned_throughput": 970}
    served = put_config(w, "switch", {"served_entities": [throughput]})["config"]["served_entities"][0]
    assert served["workload_type"].startswith("GPU") and "max_provisioned_concurrency" not in served
    served = put_config(w, "switch", {"served_entities": [entity(3, name="current")]})["config"]["served_entities"][0]
    assert (served["workload_size"], served["workload_type"]) == ("Small", "CPU")
    assert "max_provisioned_throughput" not in served and "max_dbus" not in served


def test_a_config_update_must_state_scale_to_zero_on_scaling_entities(w: Any) -> None:
    """terraform-provider-databricks #4064 (and #3946): a real update failed with "scaleToZeroEnabled
    is undefined. Please set it to either true or false." once the provider stopped sending the
    field. Creates without it are accepted; provisioned-throughput entities need not state it."""
    create(w, "scaling", {"entity_name": MODEL, "entity_version": "3", "workload_size": "Small"})
    with pytest.raises(InvalidParameterValue, match="scaleToZeroEnabled is undefined"):
        w.api_client.do("PUT", f"{ENDPOINTS}/scaling/config", body={"served_entities": [
            {"entity_name": MODEL, "entity_version": "4", "workload_size": "Small"}]})
    put_config(w, "scaling", {"served_entities": [{"entity_name": MODEL, "entity_version": "4",
                                                   "max_provisioned_throughput": 970}]})
    put_config(w, "scaling", {"traffic_config": {"routes": [
        {"served_entity_name": "support_agent-3", "traffic_percentage": 100}]}})  # no entities sent


# -- 5. enum values newer than the SDK -------------------------------------------------------------

def test_a_workload_type_the_sdk_does_not_know_is_echoed_byte_for_byte(w: Any) -> None:
    """SDK 0.156 `_enum()` turns unknown values into None; the real server knows newer workload
    types than any SDK (issue 13 problem 3). `GPU_H200_8` is invented and unknown to SDK 0.156."""
    got = create(w, "newer", entity(3, workload_type="GPU_H200_8"))
    assert got["config"]["served_entities"][0]["workload_type"] == "GPU_H200_8"
    assert got["config"]["served_models"][0]["workload_type"] == "GPU_H200_8"
    assert w.serving_endpoints.get("newer").config.served_entities[0].workload_type is None  # the SDK drops it
    with pytest.raises(InvalidParameterValue, match="workload_type"):
        create(w, "nonsense", entity(3, workload_type="TPU_V5"))


# -- 6. fifteen served entities --------------------------------------------------------------------

def test_fifteen_served_entities_and_not_sixteen(ws: Any, w: Any) -> None:
    """DEFAULTS.md A8 (databricks-sdk-py#1496: "serving endpoints accept up to 15 served entities");
    databricks-agents 1.13 `deployments.py` matches the backend's "served_models cannot contain
    more than 15 elements" (INVALID_PARAMETER_VALUE)."""
    ws.add_seed({"registered_models": [{"full_name": "main.agents.many",
                                        "versions": [{"version": v} for v in range(1, 17)]}]})
    entities = [entity(v, "main.agents.many") for v in range(1, 17)]
    routes = [{"served_entity_name": f"many-{v}", "traffic_percentage": 100 if v == 1 else 0} for v in range(1, 17)]
    w.api_client.do("POST", ENDPOINTS, body={"name": "many", "config": {
        "served_entities": entities[:15], "traffic_config": {"routes": routes[:15]}}})
    got = w.serving_endpoints.wait_get_serving_endpoint_not_updating("many")
    assert len(got.config.served_entities) == 15
    with pytest.raises(InvalidParameterValue, match="served_models cannot contain more than 15 elements"):
        w.api_client.do("PUT", f"{ENDPOINTS}/many/config", body={
            "served_entities": entities, "traffic_config": {"routes": routes}})


def test_two_entities_with_one_name_are_a_plain_bad_request(w: Any) -> None:
    """databricks-agents 1.13 `deployments.py` catches "Cannot create 2+ served entities" as a
    `BadRequest` that is not an `InvalidParameterValue` (that clause comes first and re-raises); it
    meets it redeploying a version whose derived entity name is already served. One version under
    two names is accepted (no evidence that the backend refuses it)."""
    with pytest.raises(BadRequest, match="Cannot create 2\\+ served entities") as caught:
        w.api_client.do("POST", ENDPOINTS, body={"name": "twice", "config": {
            "served_entities": [entity(3, name="a"), entity(4, name="a")],
            "traffic_config": {"routes": [{"served_entity_name": "a", "traffic_percentage": 100}]}}})
    assert not isinstance(caught.value, InvalidParameterValue)
    w.api_client.do("POST", ENDPOINTS, body={"name": "ab", "config": {
        "served_entities": [entity(3, name="a"), entity(3, name="b")],
        "traffic_config": {"routes": [{"served_entity_name": "a", "traffic_percentage": 50},
                                      {"served_entity_name": "b", "traffic_percentage": 50}]}}})


# -- 8. the databricks-agents redeploy pattern and the AI Gateway of agents ------------------------

def test_a_redeploy_that_echoes_the_live_entities_is_accepted(w: Any) -> None:
    """databricks-agents 1.13 `deployments.py` (`_update_served_models`, `_update_traffic_config`):
    the new entity first, then every live `ServedEntityOutput` passed back to `update_config` as
    GET returned it (the SDK serialises `state`, `creator` and `creation_timestamp` too), new
    version at 100% and the old routes at 0%, `auto_capture_config` from the live config. It runs
    against real workspaces, so the API tolerates those read-only fields. Also sent here: the raw
    echo of everything GET returned for the entity, and the `served_models` mirror."""
    create(w, "agents_main-agents-responses_agent", entity(1, AGENT, name="main-agents-responses_agent_1",
                                                           environment_vars={"ENABLE_MLFLOW_TRACING": "true"}))
    live = w.serving_endpoints.get("agents_main-agents-responses_agent").config
    new = ServedEntityInput(name="main-agents-responses_agent_2", entity_name=AGENT, entity_version="2",
                            workload_size="Small", scale_to_zero_enabled=False)
    w.serving_endpoints.update_config_and_wait(
        name="agents_main-agents-responses_agent", served_entities=[new, *live.served_entities],
        traffic_config=TrafficConfig(routes=[Route(served_model_name=new.name, traffic_percentage=100)] + [
            Route(served_model_name=r.served_model_name, traffic_percentage=0) for r in live.traffic_config.routes]),
        auto_capture_config=live.auto_capture_config)
    raw = w.api_client.do("GET", f"{ENDPOINTS}/agents_main-agents-responses_agent")["config"]
    assert [e["entity_version"] for e in raw["served_entities"]] == ["2", "1"]
    old = raw["served_entities"][1]
    assert old["state"]["deployment"] == "DEPLOYMENT_READY"  # unchanged, so not redeployed
    raw_echo = put_config(w, "agents_main-agents-responses_agent", {
        "served_entities": raw["served_entities"], "served_models": raw["served_models"],
        "traffic_config": raw["traffic_config"], "config_version": raw["config_version"]})
    assert raw_echo["config"]["served_entities"][1]["creation_timestamp"] == old["creation_timestamp"]


def test_agent_endpoints_support_only_inference_tables_in_their_gateway(w: Any) -> None:
    """SDK 0.156 docstring of `put_ai_gateway`: "agent endpoints currently only support inference
    tables". Other endpoints take every feature."""
    table = AiGatewayInferenceTableConfig(catalog_name="main", schema_name="agents", table_name_prefix="agent",
                                          enabled=True)
    create(w, "agent", entity(1, AGENT), ai_gateway={"inference_table_config": table.as_dict()})
    with pytest.raises(InvalidParameterValue, match="agent endpoints currently only support inference tables"):
        w.serving_endpoints.put_ai_gateway(name="agent", usage_tracking_config=AiGatewayUsageTrackingConfig(
            enabled=True))
    with pytest.raises(InvalidParameterValue, match="rate_limits"):
        w.serving_endpoints.put_ai_gateway(name="agent", rate_limits=[AiGatewayRateLimit(
            calls=5, key=AiGatewayRateLimitKey.USER, renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE)])
    with pytest.raises(InvalidParameterValue, match="agent endpoints"):
        w.api_client.do("POST", ENDPOINTS, body={"name": "agent2", "config": {"served_entities": [entity(2, AGENT)]},
                                                 "ai_gateway": {"usage_tracking_config": {"enabled": True}}})
    create(w, "custom", entity(3))
    w.serving_endpoints.put_ai_gateway(name="custom", usage_tracking_config=AiGatewayUsageTrackingConfig(enabled=True))


def test_enabling_inference_tables_again_on_an_agent_is_refused(w: Any) -> None:
    """databricks-agents 1.13 `deployments.py`: it never resends `ai_gateway` on redeploy because
    "using the put_ai_gateway throws an error 'Inference tables is already enabled'". Disabling is
    accepted."""
    table = {"catalog_name": "main", "schema_name": "agents", "table_name_prefix": "agent", "enabled": True}
    create(w, "agent", entity(1, AGENT), ai_gateway={"inference_table_config": table})
    with pytest.raises(InvalidParameterValue, match="^Inference tables is already enabled$"):
        w.serving_endpoints.put_ai_gateway(name="agent", inference_table_config=AiGatewayInferenceTableConfig(
            **table))
    off = w.serving_endpoints.put_ai_gateway(name="agent", inference_table_config=AiGatewayInferenceTableConfig(
        enabled=False))
    assert off.inference_table_config.enabled is False


def test_the_mlflow_deployments_client_sees_the_same_shapes(ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second, independent client (databricks-api.md): the MLflow deployments client reads the
    mirror and `effective_budget_policy_id` as raw JSON and meets the scale-to-zero rule on update."""
    from mlflow.deployments import get_deploy_client

    for key in [k for k in os.environ if k.startswith("DATABRICKS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DATABRICKS_HOST", ws.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", ws.token)
    client = get_deploy_client("databricks")
    client.create_endpoint(config={"name": "via-mlflow", "budget_policy_id": "p",
                                   "config": {"served_entities": [entity(3)]}})
    got = client.get_endpoint("via-mlflow")
    assert got["effective_budget_policy_id"] == "p" and got["config"]["served_models"][0]["model_version"] == "3"
    with pytest.raises(requests.HTTPError, match="400"):
        client.update_endpoint_config("via-mlflow", config={"served_entities": [
            {"entity_name": MODEL, "entity_version": "4", "workload_size": "Small"}]})


def test_a_non_admin_without_a_grant_cannot_redeploy(ws: Any, w: Any) -> None:
    """Config writes need CAN_MANAGE (see test_identities.py for the whole permission table)."""
    create(w, "guarded", entity(3))
    with pytest.raises(PermissionDenied):
        ws.client(token="viewer-token").serving_endpoints.update_config(
            name="guarded", served_entities=[ServedEntityInput.from_dict(entity(4))])
