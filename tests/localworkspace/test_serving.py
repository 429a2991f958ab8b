"""Contract tests: Model Serving endpoints through the real `databricks-sdk` over real HTTP."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk.errors import (
    BadRequest,
    InvalidParameterValue,
    OperationFailed,
    ResourceAlreadyExists,
    ResourceConflict,
    ResourceDoesNotExist,
)
from databricks.sdk.service.serving import (
    AiGatewayConfig,
    AiGatewayInferenceTableConfig,
    AiGatewayRateLimit,
    AiGatewayRateLimitKey,
    AiGatewayRateLimitRenewalPeriod,
    AiGatewayUsageTrackingConfig,
    EmailNotifications,
    EndpointCoreConfigInput,
    EndpointStateConfigUpdate,
    EndpointStateReady,
    EndpointTag,
    ExternalModel,
    ExternalModelProvider,
    OpenAiConfig,
    RateLimit,
    RateLimitKey,
    RateLimitRenewalPeriod,
    Route,
    ServedEntityInput,
    ServedModelStateDeployment,
    ServingEndpointAccessControlRequest,
    ServingEndpointPermissionLevel,
    TrafficConfig,
)

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
MODEL = "main.agents.support_agent"


def entity(version: int | str, **fields: Any) -> ServedEntityInput:
    """A scaling served entity; it states `scale_to_zero_enabled`, as config updates must."""
    fields.setdefault("scale_to_zero_enabled", False)
    return ServedEntityInput(entity_name=MODEL, entity_version=str(version), workload_size="Small", **fields)


def config(*entities: ServedEntityInput, routes: list[Route] | None = None) -> EndpointCoreConfigInput:
    traffic = TrafficConfig(routes=routes) if routes is not None else None
    return EndpointCoreConfigInput(name="ignored", served_entities=list(entities), traffic_config=traffic)


@pytest.fixture
def w(seeded_workspace: Any) -> Any:
    return seeded_workspace.client()


def test_create_fills_in_what_the_real_service_fills_in(w: Any) -> None:
    created = w.serving_endpoints.create(
        name="support-agent", config=config(entity(3, scale_to_zero_enabled=True)),
        tags=[EndpointTag(key="team", value="support"), EndpointTag(key="cost-center", value="cx-042")],
    ).response
    # The create answer: the first config is still being deployed.
    assert created.state.ready == EndpointStateReady.NOT_READY
    assert created.state.config_update == EndpointStateConfigUpdate.IN_PROGRESS
    assert created.config is None
    pending = created.pending_config.served_entities[0]
    assert pending.state.deployment == ServedModelStateDeployment.DEPLOYMENT_CREATING

    endpoint = w.serving_endpoints.wait_get_serving_endpoint_not_updating("support-agent")
    served = endpoint.config.served_entities[0]
    assert served.name == "support_agent-3"  # short model name + version for Unity Catalog models
    assert served.workload_type.value == "CPU"
    assert served.scale_to_zero_enabled is True
    assert served.creator == endpoint.creator == w.current_user.me().user_name
    assert served.state.deployment == ServedModelStateDeployment.DEPLOYMENT_READY
    route = endpoint.config.traffic_config.routes[0]
    assert (route.served_entity_name, route.served_model_name, route.traffic_percentage) == (
        "support_agent-3", "support_agent-3", 100)
    assert endpoint.config.config_version == 1
    assert [t.key for t in endpoint.tags] == ["cost-center", "team"]  # sorted by key
    assert re.fullmatch(r"[0-9a-f]{32}", endpoint.id)
    assert endpoint.permission_level.value == "CAN_MANAGE"
    assert endpoint.pending_config is None
    assert (endpoint.state.ready, endpoint.state.config_update) == (
        EndpointStateReady.READY, EndpointStateConfigUpdate.NOT_UPDATING)
    assert endpoint.description == "" and endpoint.route_optimized is False


def test_scale_to_zero_is_absent_unless_sent(w: Any) -> None:
    w.serving_endpoints.create(name="plain", config=config(ServedEntityInput(entity_name=MODEL, entity_version="3")))
    raw = w.api_client.do("GET", "/api/2.0/serving-endpoints/plain")
    assert "scale_to_zero_enabled" not in raw["config"]["served_entities"][0]


def test_create_and_wait_then_update_goes_through_in_progress(make_workspace: Any) -> None:
    ws = make_workspace(SEEDS / "support_agent.yaml", update_seconds=1.0)
    w = ws.client()
    w.serving_endpoints.create_and_wait(name="support-agent", config=config(entity(3)))

    w.serving_endpoints.update_config(name="support-agent", served_entities=[entity(4)])
    during = w.serving_endpoints.get("support-agent")
    assert during.state.config_update == EndpointStateConfigUpdate.IN_PROGRESS
    assert during.state.ready == EndpointStateReady.READY  # the old config keeps serving
    assert during.config.served_entities[0].entity_version == "3"
    assert during.pending_config.served_entities[0].entity_version == "4"
    assert during.pending_config.served_entities[0].name == "support_agent-3"  # a version change keeps the name
    assert during.pending_config.config_version == 2
    with pytest.raises(ResourceConflict):
        w.serving_endpoints.update_config(name="support-agent", served_entities=[entity(3)])
    with pytest.raises(ResourceConflict):
        w.serving_endpoints.put_ai_gateway(name="support-agent",
                                           usage_tracking_config=AiGatewayUsageTrackingConfig(enabled=True))
    w.serving_endpoints.patch(name="support-agent", add_tags=[EndpointTag(key="team", value="support")])

    after = w.serving_endpoints.wait_get_serving_endpoint_not_updating("support-agent")
    assert after.config.served_entities[0].entity_version == "4"
    assert after.config.config_version == 2
    assert after.pending_config is None


def test_a_failing_version_ends_update_failed_and_the_old_config_keeps_serving(w: Any) -> None:
    w.serving_endpoints.create_and_wait(name="support-agent", config=config(entity(3), entity(4), routes=[
        Route(served_entity_name="support_agent-3", traffic_percentage=90),
        Route(served_entity_name="support_agent-4", traffic_percentage=10)]))
    with pytest.raises(OperationFailed, match="UPDATE_FAILED"):
        w.serving_endpoints.update_config_and_wait(name="support-agent", served_entities=[
            entity(3, name="support_agent-3"), entity(6, name="candidate"), entity(4, name="support_agent-4")],
            traffic_config=TrafficConfig(routes=[Route(served_entity_name="support_agent-3", traffic_percentage=100)]))

    endpoint = w.serving_endpoints.get("support-agent")
    assert endpoint.state.config_update == EndpointStateConfigUpdate.UPDATE_FAILED
    assert endpoint.state.ready == EndpointStateReady.READY
    assert [e.entity_version for e in endpoint.config.served_entities] == ["3", "4"]
    failed = {e.name: e.state for e in endpoint.pending_config.served_entities}
    assert failed["candidate"].deployment == ServedModelStateDeployment.DEPLOYMENT_FAILED
    assert "No module named 'langgraph'" in failed["candidate"].deployment_state_message
    assert failed["support_agent-3"].deployment == ServedModelStateDeployment.DEPLOYMENT_READY  # unchanged
    logs = w.serving_endpoints.build_logs("support-agent", "candidate").logs
    assert "No module named 'langgraph'" in logs and "Build failed" in logs

    # A failed update does not block the next one.
    fixed = w.serving_endpoints.update_config_and_wait(name="support-agent", served_entities=[entity(4)])
    assert fixed.config.served_entities[0].entity_version == "4"
    assert fixed.state.config_update == EndpointStateConfigUpdate.NOT_UPDATING


def test_a_new_endpoint_whose_first_config_fails_is_not_ready(w: Any) -> None:
    with pytest.raises(OperationFailed):
        w.serving_endpoints.create_and_wait(name="doomed", config=config(entity(6)))
    endpoint = w.serving_endpoints.get("doomed")
    assert endpoint.state.ready == EndpointStateReady.NOT_READY
    assert endpoint.config is None
    assert endpoint.pending_config.served_entities[0].state.deployment == ServedModelStateDeployment.DEPLOYMENT_FAILED


@pytest.mark.parametrize(("version", "model", "error"), [
    (99, MODEL, ResourceDoesNotExist),  # no such version
    (5, MODEL, InvalidParameterValue),  # PENDING_REGISTRATION
    (1, "main.agents.nope", ResourceDoesNotExist),  # no such model
])
def test_only_existing_ready_versions_can_be_served(w: Any, version: int, model: str, error: type) -> None:
    with pytest.raises(error):
        w.serving_endpoints.create(name="x", config=config(ServedEntityInput(entity_name=model,
                                                                             entity_version=str(version))))
    w.serving_endpoints.create_and_wait(name="ok", config=config(entity(3)))
    with pytest.raises(error):
        w.serving_endpoints.update_config(name="ok", served_entities=[ServedEntityInput(
            entity_name=model, entity_version=str(version), scale_to_zero_enabled=True)])


@pytest.mark.parametrize(("reason", "body", "message"), [
    ("dot in name", {"name": "support.agent", "config": {"served_entities": [{"entity_name": MODEL,
                                                                             "entity_version": "3"}]}},
     "Invalid endpoint name"),
    ("name of 64 characters", {"name": "a" * 64, "config": {"served_entities": [{"entity_name": MODEL,
                                                                                "entity_version": "3"}]}},
     "at most 63"),
    ("no config", {"name": "x"}, "config"),
    ("no served entities", {"name": "x", "config": {"served_entities": []}}, "at least one"),
    ("traffic adds up to 90", {"name": "x", "config": {
        "served_entities": [{"entity_name": MODEL, "entity_version": "3"}],
        "traffic_config": {"routes": [{"served_entity_name": "support_agent-3", "traffic_percentage": 90}]}}},
     "add up to 100"),
    ("route to an unknown entity", {"name": "x", "config": {
        "served_entities": [{"entity_name": MODEL, "entity_version": "3"}],
        "traffic_config": {"routes": [{"served_model_name": "ghost", "traffic_percentage": 100}]}}},
     "'ghost'"),
    ("two entities, no traffic config", {"name": "x", "config": {"served_entities": [
        {"entity_name": MODEL, "entity_version": "3"}, {"entity_name": MODEL, "entity_version": "4"}]}},
     "traffic_config is required"),
    ("UC model without a version", {"name": "x", "config": {"served_entities": [{"entity_name": MODEL}]}},
     "entity_version"),
    ("sixteen entities", {"name": "x", "config": {"served_entities": [
        {"name": f"e{i}", "entity_name": MODEL, "entity_version": "3"} for i in range(16)]}},
     "served_models cannot contain more than 15 elements"),
    ("bad workload type", {"name": "x", "config": {"served_entities": [
        {"entity_name": MODEL, "entity_version": "3", "workload_type": "TPU"}]}}, "workload_type"),
])
def test_invalid_creates_are_rejected_with_invalid_parameter_value(w: Any, reason: str, body: dict[str, Any],
                                                                   message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message) as caught:
        w.api_client.do("POST", "/api/2.0/serving-endpoints", body=body)
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE", reason


@pytest.mark.parametrize("body", [
    {"name": 42, "config": {}},
    {"name": "x", "config": {"served_entities": [{"entity_name": MODEL, "entity_version": 3}]}},
    {"name": "x", "config": {"served_entities": {"entity_name": MODEL}}},
    {"name": "x", "config": {"served_entities": [{"entity_name": MODEL, "entity_version": "3",
                                                  "scale_to_zero_enabled": "yes"}]}},
    {"name": "x", "tags": [{"key": 1}], "config": {}},
])
def test_wrong_types_are_malformed_requests(w: Any, body: dict[str, Any]) -> None:
    with pytest.raises(BadRequest) as caught:
        w.api_client.do("POST", "/api/2.0/serving-endpoints", body=body)
    assert caught.value.error_code == "MALFORMED_REQUEST"


def test_duplicate_missing_and_deleted_endpoints(w: Any) -> None:
    w.serving_endpoints.create(name="support-agent", config=config(entity(3)))
    with pytest.raises(ResourceAlreadyExists):
        w.serving_endpoints.create(name="support-agent", config=config(entity(3)))
    with pytest.raises(ResourceDoesNotExist, match="Endpoint with name 'ghost' does not exist"):
        w.serving_endpoints.get("ghost")
    names = [e.name for e in w.serving_endpoints.list()]
    assert names == ["databricks-meta-llama-3-3-70b-instruct", "support-agent"]
    w.serving_endpoints.delete("support-agent")
    with pytest.raises(ResourceDoesNotExist):
        w.serving_endpoints.get("support-agent")
    with pytest.raises(ResourceDoesNotExist):
        w.serving_endpoints.delete("support-agent")


def test_list_items_carry_only_a_summary_of_the_config(w: Any) -> None:
    w.serving_endpoints.create_and_wait(name="support-agent", config=config(entity(3)),
                                        tags=[EndpointTag(key="team", value="support")])
    listed = {e.name: e for e in w.serving_endpoints.list()}["support-agent"]
    assert listed.config.served_entities[0].as_dict() == {
        "name": "support_agent-3", "entity_name": MODEL, "entity_version": "3"}
    assert listed.tags[0].key == "team"
    assert listed.state.ready == EndpointStateReady.READY


def test_traffic_only_update_keeps_the_entities(w: Any) -> None:
    w.serving_endpoints.create_and_wait(name="ab", config=config(entity(3, name="a"), entity(4, name="b"), routes=[
        Route(served_model_name="a", traffic_percentage=50), Route(served_model_name="b", traffic_percentage=50)]))
    updated = w.serving_endpoints.update_config_and_wait(name="ab", traffic_config=TrafficConfig(routes=[
        Route(served_entity_name="a", traffic_percentage=80), Route(served_entity_name="b", traffic_percentage=20)]))
    assert [e.name for e in updated.config.served_entities] == ["a", "b"]
    assert {r.served_entity_name: r.traffic_percentage for r in updated.config.traffic_config.routes} == {
        "a": 80, "b": 20}
    assert updated.config.config_version == 2


def test_secret_references_come_back_unchanged_and_plaintext_keys_never(w: Any) -> None:
    env = {"OPENAI_API_KEY": "{{secrets/support/openai}}", "ENABLE_MLFLOW_TRACING": "true"}
    w.serving_endpoints.create(name="agent", config=config(entity(3, environment_vars=env)))
    assert w.serving_endpoints.get("agent").config.served_entities[0].environment_vars == env
    w.serving_endpoints.create(name="gpt", config=config(ServedEntityInput(external_model=ExternalModel(
        name="gpt-4o", provider=ExternalModelProvider.OPENAI, task="llm/v1/chat",
        openai_config=OpenAiConfig(openai_api_key_plaintext="sk-secret")))))
    gpt = w.api_client.do("GET", "/api/2.0/serving-endpoints/gpt")
    assert gpt["config"]["served_entities"][0]["name"] == "gpt-4o"
    assert "workload_type" not in gpt["config"]["served_entities"][0]
    assert "sk-secret" not in str(gpt)


def test_tags_are_patched_and_returned_sorted(w: Any) -> None:
    w.serving_endpoints.create(name="agent", config=config(entity(3)),
                               tags=[EndpointTag(key="team", value="support"), EndpointTag(key="old", value="x")])
    result = w.serving_endpoints.patch(name="agent", add_tags=[EndpointTag(key="managed-by", value="reconciler"),
                                                               EndpointTag(key="team", value="cx")],
                                       delete_tags=["old", "never-there"])
    assert [(t.key, t.value) for t in result.tags] == [("managed-by", "reconciler"), ("team", "cx")]
    assert [(t.key, t.value) for t in w.serving_endpoints.get("agent").tags] == [
        ("managed-by", "reconciler"), ("team", "cx")]


def test_ai_gateway_is_replaced_and_its_inference_table_is_fixed_while_enabled(w: Any) -> None:
    w.serving_endpoints.create_and_wait(name="agent", config=config(entity(3)), ai_gateway=AiGatewayConfig(
        usage_tracking_config=AiGatewayUsageTrackingConfig(enabled=False)))
    table = AiGatewayInferenceTableConfig(catalog_name="main", schema_name="agents", table_name_prefix="agent",
                                          enabled=True)
    limit = AiGatewayRateLimit(calls=100, key=AiGatewayRateLimitKey.USER,
                               renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE)
    put = w.serving_endpoints.put_ai_gateway(name="agent", inference_table_config=table,
                                             usage_tracking_config=AiGatewayUsageTrackingConfig(enabled=True),
                                             rate_limits=[limit])
    assert put.inference_table_config == table and put.rate_limits == [limit]
    assert w.serving_endpoints.get("agent").ai_gateway.usage_tracking_config.enabled is True
    moved = AiGatewayInferenceTableConfig(catalog_name="other", schema_name="agents", enabled=True)
    with pytest.raises(InvalidParameterValue, match="disable it first"):
        w.serving_endpoints.put_ai_gateway(name="agent", inference_table_config=moved)
    with pytest.raises(InvalidParameterValue, match="catalog_name and schema_name"):
        w.serving_endpoints.put_ai_gateway(name="agent", inference_table_config=AiGatewayInferenceTableConfig(
            enabled=True, table_name_prefix="x"))


def test_rate_limits_and_notifications(w: Any) -> None:
    w.serving_endpoints.create(name="agent", config=config(entity(3)))
    limits = [RateLimit(calls=10, key=RateLimitKey.ENDPOINT, renewal_period=RateLimitRenewalPeriod.MINUTE)]
    assert w.serving_endpoints.put(name="agent", rate_limits=limits).rate_limits == limits
    emails = EmailNotifications(on_update_failure=["oncall@example.com"])
    result = w.serving_endpoints.update_notifications(name="agent", email_notifications=emails)
    assert result.email_notifications == emails
    assert w.serving_endpoints.get("agent").email_notifications == emails


def test_build_logs(w: Any) -> None:
    w.serving_endpoints.create_and_wait(name="agent", config=config(entity(3)))
    assert "Build succeeded" in w.serving_endpoints.build_logs("agent", "support_agent-3").logs
    with pytest.raises(ResourceDoesNotExist):
        w.serving_endpoints.build_logs("agent", "ghost")


def test_permissions_by_endpoint_id(w: Any) -> None:
    endpoint = w.serving_endpoints.create(name="agent", config=config(entity(3))).response
    me = w.current_user.me().user_name

    def grants(permissions: Any) -> dict[str, tuple[str, bool]]:
        return {(a.user_name or a.group_name or a.service_principal_name):
                (a.all_permissions[0].permission_level.value, bool(a.all_permissions[0].inherited))
                for a in permissions.access_control_list}

    initial = w.serving_endpoints.get_permissions(endpoint.id)
    assert initial.object_id == f"/serving-endpoints/{endpoint.id}" and initial.object_type == "serving-endpoint"
    assert grants(initial) == {me: ("CAN_MANAGE", False), "admins": ("CAN_MANAGE", True)}

    merged = w.serving_endpoints.update_permissions(endpoint.id, access_control_list=[
        ServingEndpointAccessControlRequest(group_name="support-team",
                                            permission_level=ServingEndpointPermissionLevel.CAN_QUERY)])
    assert grants(merged) == {me: ("CAN_MANAGE", False), "support-team": ("CAN_QUERY", False),
                              "admins": ("CAN_MANAGE", True)}

    replaced = w.serving_endpoints.set_permissions(endpoint.id, access_control_list=[
        ServingEndpointAccessControlRequest(service_principal_name="cx-deployer",
                                            permission_level=ServingEndpointPermissionLevel.CAN_MANAGE)])
    assert grants(replaced) == {"cx-deployer": ("CAN_MANAGE", False), "admins": ("CAN_MANAGE", True)}
    assert grants(w.serving_endpoints.get_permissions(endpoint.id)) == grants(replaced)

    levels = w.serving_endpoints.get_permission_levels(endpoint.id).permission_levels
    assert [level.permission_level.value for level in levels] == ["CAN_MANAGE", "CAN_QUERY", "CAN_VIEW"]
    with pytest.raises(InvalidParameterValue):
        w.api_client.do("PATCH", f"/api/2.0/permissions/serving-endpoints/{endpoint.id}", body={
            "access_control_list": [{"group_name": "g", "permission_level": "CAN_RUN"}]})
    with pytest.raises(ResourceDoesNotExist):
        w.serving_endpoints.get_permissions("0" * 32)
