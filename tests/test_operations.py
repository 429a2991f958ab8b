"""The operation functions of each kind, table-driven: normalised desired and live state in, the
API calls apply will make out (name, description, args), one case per kind of change, each with its
reason. Live state comes from real answers (tests/fixtures/real_api/); no workspace, no I/O.

Rollout operations (`rollout`, `rollback_rollout`, `finish_rollout`) are tested in
tests/test_rollout_plan.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fixtures.real_api import capture

from reconciler.kinds import KINDS, model_version, registered_model, serving_endpoint
from reconciler.manifests.model import ServingEndpoint
from reconciler.normalize import acl_payload, desired_endpoint, live_endpoint, live_model, overlay
from reconciler.plan import Action

MODEL = "catalog.schema.model-A"


def ready_get(**extra: Any) -> dict[str, Any]:
    """endpoint_create_req_01 (two entities, 90/10) as GET answers it once READY, ours (tagged)."""
    body = capture("endpoint_create_req_01")
    for entity in body["config"]["served_entities"]:
        entity["workload_type"] = "CPU"
    return {"name": body["name"], "id": "abc123", "creator": "customer@example.com",
            "state": {"ready": "READY", "config_update": "NOT_UPDATING"}, "config": body["config"],
            "tags": [{"key": "managed-by", "value": "reconciler"}], **extra}


def manifest_spec(**changes: Any) -> dict[str, Any]:
    """The manifest that describes `ready_get()` exactly."""
    spec: dict[str, Any] = {
        "served_entities": [
            {"name": "current", "entity_name": MODEL, "entity_version": "1", "workload_size": "Small",
             "scale_to_zero_enabled": True},
            {"name": "challenger", "entity_name": "catalog.schema.model-B", "entity_version": "1",
             "workload_size": "Small", "scale_to_zero_enabled": True}],
        "traffic_config": {"routes": [{"served_entity_name": "current", "traffic_percentage": 90},
                                      {"served_entity_name": "challenger", "traffic_percentage": 10}]}}
    spec.update(changes)
    return spec


def desired(spec: dict[str, Any], *, stack: str | None = None, deployer: str | None = None) -> dict[str, Any]:
    manifest = ServingEndpoint.model_validate({"apiVersion": "reconciler/v1", "kind": "ServingEndpoint",
                                               "metadata": {"name": "multi-model"}, "spec": spec})
    versions = [str(e.entity_version) for e in manifest.spec.served_entities]
    return desired_endpoint(manifest, versions, stack=stack, deployer=deployer)


def acl(**grants: str) -> dict[str, Any]:
    """A Permissions API answer (no capture holds one): `user_name:x` → level."""
    entries = []
    for principal, level in grants.items():
        key, _, who = principal.partition(":")
        entries.append({key: who, "all_permissions": [{"permission_level": level, "inherited": False}]})
    return {"access_control_list": entries}


def described(ops: list[Any]) -> list[tuple[str, str]]:
    return [(op.name, op.description) for op in ops]


def gateway_table(enabled: bool, prefix: str = "feed") -> dict[str, Any]:
    return {"inference_table_config": {"catalog_name": "ml", "schema_name": "ads", "table_name_prefix": prefix,
                                       "enabled": enabled}}


# ---- serving endpoints: `operations` (an existing endpoint) ------------------------------------------

ENDPOINT_CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, str] | None, list[tuple[str, str]]]] = [
    ("nothing differs: no operation", manifest_spec(), {}, None, []),
    ("a version moves: one config write naming every entity's version and the routes",
     manifest_spec(served_entities=[
         {"name": "current", "entity_name": MODEL, "entity_version": "2", "workload_size": "Small",
          "scale_to_zero_enabled": True},
         {"name": "challenger", "entity_name": "catalog.schema.model-B", "entity_version": "1",
          "workload_size": "Small", "scale_to_zero_enabled": True}]), {}, None,
     [("update_config", "update_config(current=v2, challenger=v1; routes current=90% challenger=10%)")]),
    ("traffic shifts: a config write", manifest_spec(traffic_config={"routes": [
        {"served_entity_name": "current", "traffic_percentage": 50},
        {"served_entity_name": "challenger", "traffic_percentage": 50}]}), {}, None,
     [("update_config", "update_config(current=v1, challenger=v1; routes current=50% challenger=50%)")]),
    ("a tag is added and a live one removed: one PATCH", manifest_spec(tags={"team": "ads"}),
     {"tags": [{"key": "managed-by", "value": "reconciler"}, {"key": "old", "value": "1"}]}, None,
     [("patch_tags", "patch_tags(add: [team], delete: [old])")]),
    ("a grant is added: update (PATCH) only the new one", manifest_spec(permissions=[
        {"group_name": "ads", "permission_level": "CAN_QUERY"},
        {"user_name": "customer@example.com", "permission_level": "CAN_MANAGE"}]), {},
     {"user_name:customer@example.com": "CAN_MANAGE"},
     [("update_permissions", "update_permissions(group_name:ads → CAN_QUERY)")]),
    ("a grant is removed: set (PUT) the whole list", manifest_spec(permissions=[
        {"user_name": "customer@example.com", "permission_level": "CAN_MANAGE"}]), {},
     {"user_name:customer@example.com": "CAN_MANAGE", "group_name:old": "CAN_QUERY"},
     [("set_permissions", "set_permissions(1 principals; removes group_name:old)")]),
    ("the AI gateway changes: one PUT of the whole gateway", manifest_spec(ai_gateway={
        "usage_tracking_config": {"enabled": True}}), {}, None,
     [("put_ai_gateway", "put_ai_gateway(usage_tracking_config)")]),
    ("an enabled inference table moves: disable it first, then the new one", manifest_spec(
        ai_gateway=gateway_table(True, prefix="feed2")), {"ai_gateway": gateway_table(True)}, None,
     [("put_ai_gateway", "put_ai_gateway(inference_table_config disabled: an enabled table's location cannot "
                         "change)"), ("put_ai_gateway", "put_ai_gateway(inference_table_config)")]),
    ("everything at once: the config write comes last (a gateway write during its update is a 409)",
     manifest_spec(tags={"team": "ads"}, ai_gateway={"usage_tracking_config": {"enabled": True}},
                   traffic_config={"routes": [{"served_entity_name": "current", "traffic_percentage": 100},
                                              {"served_entity_name": "challenger", "traffic_percentage": 0}]}),
     {}, None,
     [("patch_tags", "patch_tags(add: [team], delete: [])"), ("put_ai_gateway", "put_ai_gateway(usage_tracking_config)"),
      ("update_config", "update_config(current=v1, challenger=v1; routes current=100% challenger=0%)")]),
]


@pytest.mark.parametrize(("reason", "spec", "api_changes", "grants", "expected"), ENDPOINT_CASES,
                         ids=[c[0] for c in ENDPOINT_CASES])
def test_endpoint_operations(reason: str, spec: dict[str, Any], api_changes: dict[str, Any],
                             grants: dict[str, str] | None, expected: list[tuple[str, str]]) -> None:
    live = live_endpoint(ready_get(**api_changes), acl(**grants) if grants is not None else None)
    assert described(serving_endpoint.operations(live, overlay(desired(spec), live))) == expected


# ---- serving endpoints: the change as a whole (`plan`) -------------------------------------------------

def test_create_names_every_entity_and_its_grants() -> None:
    spec = manifest_spec(permissions=[{"group_name": "ads", "permission_level": "CAN_QUERY"}])
    change = serving_endpoint.plan("multi-model", desired(spec), None, None)
    assert change.action is Action.CREATE
    assert described(change.operations) == [
        ("create_endpoint", "create_endpoint(current=model-A v1, challenger=model-B v1)"),
        ("update_permissions", "update_permissions(group_name:ads → CAN_QUERY)")]


def test_an_immutable_field_replaces_the_endpoint() -> None:
    change = serving_endpoint.plan("multi-model", desired(manifest_spec(route_optimized=True)), ready_get(), None)
    assert change.action is Action.REPLACE
    assert [op.name for op in change.operations] == ["delete_endpoint", "create_endpoint"]
    assert change.replace_reasons == ["route_optimized cannot change after creation"]


def test_a_pruned_endpoint_is_deleted() -> None:
    change = serving_endpoint.plan("multi-model", None, ready_get(), None)
    assert (change.action, described(change.operations)) == (Action.DELETE, [("delete_endpoint",
                                                                              "delete_endpoint(multi-model)")])


def test_adopting_an_endpoint_made_elsewhere_writes_nothing() -> None:
    """Only our ownership tags are missing (an exported endpoint): no operation; the tag rides along."""
    change = serving_endpoint.plan("multi-model", desired(manifest_spec()), ready_get(tags=[]), None)
    assert (change.action, change.operations) == (Action.NOOP, [])
    taken = serving_endpoint.plan("multi-model", desired(manifest_spec()),
                                  ready_get(tags=[{"key": "managed-by", "value": "terraform"}]), None)
    assert described(taken.operations) == [("patch_tags", "patch_tags(add: [managed-by], delete: [])")]


def test_the_deployer_keeps_control() -> None:
    spec = manifest_spec(permissions=[{"group_name": "ads", "permission_level": "CAN_QUERY"}])
    want = desired(spec, deployer="user_name:deployer@example.com")
    live = live_endpoint(ready_get(), acl(**{"user_name:deployer@example.com": "CAN_MANAGE"}))
    ops = serving_endpoint.operations(live, overlay(want, live))
    assert described(ops) == [("update_permissions", "update_permissions(group_name:ads → CAN_QUERY)")]


@pytest.mark.parametrize(("reason", "live_gateway", "wanted", "moves"), [
    ("enabled, moved elsewhere, still enabled", gateway_table(True), gateway_table(True, "feed2"), True),
    ("disabled live: nothing to disable first", gateway_table(False), gateway_table(True, "feed2"), False),
    ("switched off", gateway_table(True), gateway_table(False, "feed2"), False),
    ("same place", gateway_table(True), gateway_table(True), False),
], ids=lambda v: v if isinstance(v, str) else "")
def test_moves_inference_table(reason: str, live_gateway: dict[str, Any], wanted: dict[str, Any], moves: bool) -> None:
    assert serving_endpoint.moves_inference_table({"ai_gateway": live_gateway}, {"ai_gateway": wanted}) is moves


def test_create_payload_carries_what_a_replace_keeps() -> None:
    """Capture 03 reports an effective budget policy; a replace sends it as budget_policy_id."""
    replaced = capture("endpoint_create_resp_03")
    want = desired(manifest_spec())
    payload = serving_endpoint.create_payload("multi-model", overlay(want, None), want, replaced)
    assert payload["budget_policy_id"] == replaced["effective_budget_policy_id"]
    assert [e["name"] for e in payload["config"]["served_entities"]] == ["current", "challenger"]
    assert acl_payload({"group_name:ads": "CAN_QUERY"}) == [{"group_name": "ads", "permission_level": "CAN_QUERY"}]


# ---- registered models --------------------------------------------------------------------------------

def model_answer(*aliases: tuple[str, int], **fields: Any) -> dict[str, Any]:
    """uc_model_get_02's shape (placeholder values replaced)."""
    answer = capture("uc_model_get_02")
    answer.update(full_name=MODEL, comment="the agent", owner="ml-team", **fields)
    answer["aliases"] = [{**answer["aliases"][0], "alias_name": a, "version_num": v} for a, v in aliases]
    return answer


MODEL_CASES: list[tuple[str, dict[str, Any], dict[str, Any] | None, list[tuple[str, str]]]] = [
    ("a new model: created, then its aliases", {"comment": "the agent", "aliases": {"champion": 1}}, None,
     [("create_model", 'create_model(comment: "the agent")'), ("set_alias", "set_alias(champion → 1)")]),
    ("a new model with an owner: created, then updated", {"owner": "ml-team"}, None,
     [("create_model", "create_model(comment: null)"), ("update_model", 'update_model(owner: "ml-team")')]),
    ("nothing differs", {"comment": "the agent", "aliases": {"champion": 3}}, model_answer(("champion", 3)), []),
    ("an alias moves", {"aliases": {"champion": 4}}, model_answer(("champion", 3)),
     [("set_alias", "set_alias(champion → 4)")]),
    ("aliases given are complete: one not listed is deleted", {"aliases": {"champion": 3}},
     model_answer(("champion", 3), ("old", 1)), [("delete_alias", "delete_alias(old)")]),
    ("aliases left out are not managed", {"comment": "the agent"}, model_answer(("old", 1)), []),
    ("comment and owner changed: one update", {"comment": "new", "owner": "other"}, model_answer(),
     [("update_model", 'update_model(comment: "new", owner: "other")')]),
]


@pytest.mark.parametrize(("reason", "want", "answer", "expected"), MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_model_operations(reason: str, want: dict[str, Any], answer: dict[str, Any] | None,
                          expected: list[tuple[str, str]]) -> None:
    live = live_model(answer) if answer is not None else None
    assert described(registered_model.operations(want, live)) == expected
    change = registered_model.plan(MODEL, want, answer)
    assert change.action is (Action.CREATE if answer is None else Action.UPDATE if expected else Action.NOOP)


# ---- model versions registered from a logged agent ---------------------------------------------------------

SOURCE = "models:/m-6a1f2b3c4d5e4f60718293a4b5c6d7e8"
OURS = {"managed-by": "reconciler", "reconciler-source": SOURCE}


def version(number: str, status: str, tags: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": MODEL, "version": number, "status": status,
            "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}


VERSION_CASES: list[tuple[str, list[dict[str, Any]], Action, list[str]]] = [
    ("never registered: register it", [], Action.CREATE, ["register_version"]),
    ("registered and READY: nothing to do", [version("3", "READY", OURS)], Action.NOOP, []),
    ("our earlier registration failed: delete it, register again", [version("3", "FAILED_REGISTRATION", OURS)],
     Action.CREATE, ["delete_version", "register_version"]),
    ("somebody else's failed one is left alone", [version("3", "FAILED_REGISTRATION")], Action.CREATE,
     ["register_version"]),
]


@pytest.mark.parametrize(("reason", "versions", "action", "ops"), VERSION_CASES, ids=[c[0] for c in VERSION_CASES])
def test_model_version_operations(reason: str, versions: list[dict[str, Any]], action: Action, ops: list[str]) -> None:
    found = {"logged": {"model_id": SOURCE.split("/")[-1], "mlmodel": {"mlflow_version": "3.1.0"}}, "versions": versions}
    change = model_version.plan(f"{MODEL}@{SOURCE}", found, stack=None)
    assert (change.action, [op.name for op in change.operations]) == (action, ops)
    if "register_version" in ops:
        assert change.operations[-1].args == {"model": MODEL, "source": SOURCE}


# ---- every operation a kind may plan is one of its OPERATIONS (the plan schema lists them) -----------------

PLANNERS: dict[str, Callable[[], list[Any]]] = {
    "registered_model": lambda: [op for _, want, answer, _ in MODEL_CASES
                                 for op in registered_model.plan(MODEL, want, answer).operations],
    "serving_endpoint": lambda: [op for _, spec, changes, grants, _ in ENDPOINT_CASES for op in serving_endpoint.plan(
        "multi-model", desired(spec), ready_get(**changes), acl(**grants) if grants else None).operations],
    "model_version": lambda: [op for _, versions, _, _ in VERSION_CASES for op in model_version.plan(
        f"{MODEL}@{SOURCE}", {"logged": {}, "versions": versions}, stack=None).operations],
}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.key)
def test_planned_operations_are_declared(kind: Any) -> None:
    planned = {op.name for op in PLANNERS[kind.key]()}
    assert planned and planned <= set(kind.module.OPERATIONS)
