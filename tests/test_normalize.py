"""normalize.py, rule by rule, on real API answers (tests/fixtures/real_api/, copied from
shared/reference/real-api/). Each case names its rule and its reason; no workspace, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fixtures.real_api import capture, listed

from reconciler.diff import diff
from reconciler.manifests.model import RegisteredModel, ServingEndpoint
from reconciler.normalize import (
    FIELD_RULES,
    MANAGED_ENTITY_FIELDS,
    READ_ONLY_ENTITY_FIELDS,
    Semantics,
    comparable,
    config_payload,
    copied,
    creator_grants,
    desired_endpoint,
    desired_entity,
    desired_model,
    effective_entity,
    entity_defaults,
    is_agent,
    legacy_inference_table,
    live_endpoint,
    live_entity,
    live_model,
    live_permissions,
    overlay,
    rules,
    server_filled,
)


def endpoint(spec: dict[str, Any], name: str = "e") -> ServingEndpoint:
    return ServingEndpoint.model_validate({"apiVersion": "reconciler/v1", "kind": "ServingEndpoint",
                                           "metadata": {"name": name}, "spec": spec})


def model(spec: dict[str, Any]) -> RegisteredModel:
    return RegisteredModel.model_validate({"apiVersion": "reconciler/v1", "kind": "RegisteredModel",
                                           "metadata": {"name": "c.s.m"}, "spec": spec})


def two_entities() -> dict[str, Any]:
    """endpoint_create_req_01 (two served entities, 90/10) as GET answers it once READY."""
    body = capture("endpoint_create_req_01")
    return {"name": body["name"], "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
            "config": body["config"]}


def acl(*entries: dict[str, Any]) -> dict[str, Any]:
    """A Permissions API answer (SDK 0.156 `ObjectPermissions`): no capture holds one."""
    return {"object_id": "/serving-endpoints/x", "object_type": "serving-endpoint", "access_control_list": list(entries)}


def grant(key: str, who: str, *levels: str, inherited: bool = False) -> dict[str, Any]:
    return {key: who, "all_permissions": [{"permission_level": lvl, "inherited": inherited} for lvl in levels]}


def reversed_lists(api: dict[str, Any]) -> dict[str, Any]:
    config = api["config"]
    config["served_entities"].reverse()
    config["traffic_config"]["routes"].reverse()
    api.setdefault("tags", []).reverse()
    return api


# ---- the numbered rules: (rule, reason, check) -------------------------------------------------------


def rule_1_lists_are_maps() -> None:
    api = two_entities()
    api["tags"] = [{"key": "team", "value": "ads"}, {"key": "cost", "value": "7"}]
    assert live_endpoint(api) == live_endpoint(reversed_lists(two_entities() | {"tags": api["tags"][:]}))
    shape = live_endpoint(api)
    assert list(shape["served_entities"]) == ["current", "challenger"]
    assert shape["tags"] == {"team": "ads", "cost": "7"}
    entries = [grant("group_name", "ads", "CAN_QUERY"), grant("user_name", "a@example.com", "CAN_MANAGE")]
    assert live_permissions(acl(*entries)) == live_permissions(acl(*reversed(entries))) == {
        "group_name:ads": "CAN_QUERY", "user_name:a@example.com": "CAN_MANAGE"}
    answer = capture("uc_model_get_02")
    answer["aliases"] = [{"alias_name": "champion", "version_num": 3}, {"alias_name": "challenger", "version_num": 4}]
    assert live_model(answer)["aliases"] == {"champion": 3, "challenger": 4}


def rule_2_route_names() -> None:
    # endpoint_get_01 names its route by served_model_name only; capture 03 carries both names.
    assert live_endpoint(capture("endpoint_get_01"))["traffic"] == {"ads1-1": 100}
    in_flight = capture("endpoint_create_resp_03")
    assert live_endpoint(in_flight)["traffic"] == {"meta_llama_v3_1_8b_instruct-3": 100}
    # endpoint_create_req_01 writes its percentages as strings: they are numbers once normalised.
    assert live_endpoint(two_entities())["traffic"] == {"current": 90, "challenger": 10}


def rule_3_entities_are_complete() -> None:
    manifest = endpoint({"served_entities": [{"entity_name": "c.s.ads1", "entity_version": "1",
                                              "workload_size": "Small", "scale_to_zero_enabled": False}]})
    desired = desired_endpoint(manifest, ["1"], stack=None)
    assert desired["served_entities"]["ads1-1"]["workload_type"] == "CPU"  # the API's default, stated
    live = live_endpoint(capture("endpoint_get_01"))
    live["served_entities"]["ads1-1"] |= {"environment_vars": {"OLD": "1"}, "a_field_of_a_newer_api": {"x": 1}}
    effective = overlay(desired, live)["served_entities"]["ads1-1"]
    assert "environment_vars" not in effective  # managed, left out: reset
    assert effective["a_field_of_a_newer_api"] == {"x": 1}  # unknown to this release: kept as served
    # Provisioned throughput: the server fills workload_size/type (capture 02); they are no change.
    pt = capture("endpoint_create_resp_02")["pending_config"]["served_entities"][0]
    pt_desired = desired_entity(endpoint({"served_entities": [{
        "entity_name": pt["entity_name"], "entity_version": "1", "min_provisioned_throughput": 0,
        "max_provisioned_throughput": 970}]}).spec.served_entities[0], "1")
    assert "workload_type" not in pt_desired
    kept = effective_entity(pt_desired, live_entity(pt))
    assert (kept["workload_size"], kept["workload_type"]) == ("Small", "GPU_MEDIUM")
    # Endpoint-level blocks a manifest leaves out are not managed: live's are kept.
    live["ai_gateway"] = {"usage_tracking_config": {"enabled": True}}
    assert overlay(desired, live)["ai_gateway"] == {"usage_tracking_config": {"enabled": True}}


def rule_4_default_entity_name() -> None:
    # Capture 02 sent no name; the server answered `llama2-7b-1`: the short model name, '-', the version.
    pt = capture("endpoint_create_resp_02")["pending_config"]["served_entities"][0]
    manifest = endpoint({"served_entities": [{"entity_name": pt["entity_name"], "entity_version": "1",
                                              "min_provisioned_throughput": 0, "max_provisioned_throughput": 970}]})
    assert list(desired_endpoint(manifest, ["1"], stack=None)["served_entities"]) == [pt["name"]] == ["llama2-7b-1"]


def rule_5_single_route() -> None:
    manifest = endpoint({"served_entities": [{"entity_name": "c.s.ads1", "entity_version": "1",
                                              "workload_size": "Small", "scale_to_zero_enabled": False}]})
    desired = desired_endpoint(manifest, ["1"], stack=None)
    assert desired["traffic"] == live_endpoint(capture("endpoint_get_01"))["traffic"] == {"ads1-1": 100}


def rule_6_maps_are_complete() -> None:
    live = live_endpoint(capture("endpoint_get_01") | {"tags": [{"key": "team", "value": "ads"}]}, acl(
        grant("user_name", "customer@example.com", "CAN_MANAGE"), grant("group_name", "old", "CAN_QUERY")))
    base = {"served_entities": [{"entity_name": "c.s.ads1", "entity_version": "1", "workload_size": "Small",
                                 "scale_to_zero_enabled": False}]}
    # Tags given: the complete set (plus ours). Not given: live tags kept, ours ensured.
    given = overlay(desired_endpoint(endpoint(base | {"tags": {"env": "prod"}}), ["1"], stack="s"), live)
    assert given["tags"] == {"env": "prod", "managed-by": "reconciler", "reconciler-stack": "s"}
    left_out = overlay(desired_endpoint(endpoint(base), ["1"], stack=None), live)
    assert left_out["tags"] == {"team": "ads", "managed-by": "reconciler"}
    # Permissions given: complete, but the creator's own grant (endpoint_get_01's creator) stays.
    permissions = [{"group_name": "ads", "permission_level": "CAN_QUERY"}]
    effective = overlay(desired_endpoint(endpoint(base | {"permissions": permissions}), ["1"], stack=None), live)
    assert effective["permissions"] == {"group_name:ads": "CAN_QUERY", "user_name:customer@example.com": "CAN_MANAGE"}
    assert creator_grants(live) == {"user_name:customer@example.com": "CAN_MANAGE"}
    # The deploying identity keeps CAN_MANAGE where the manifest names it, even lower.
    named = permissions + [{"user_name": "deployer@example.com", "permission_level": "CAN_QUERY"}]
    deployed = overlay(desired_endpoint(endpoint(base | {"permissions": named}), ["1"], stack=None,
                                        deployer="user_name:deployer@example.com"), live)
    assert deployed["permissions"]["user_name:deployer@example.com"] == "CAN_MANAGE"
    # Aliases given: the complete set.
    assert desired_model(model({"aliases": {"champion": 3}})) == {"aliases": {"champion": 3}}
    assert desired_model(model({})) == {}


def rule_7_inherited_grants() -> None:
    answer = acl(grant("group_name", "admins", "CAN_MANAGE", inherited=True),
                 grant("user_name", "a@example.com", "CAN_VIEW", "CAN_QUERY"))
    assert live_permissions(answer) == {"user_name:a@example.com": "CAN_QUERY"}  # the highest direct level


def rule_8_sets_and_rate_limits() -> None:
    gateway = {"guardrails": {"input": {"invalid_keywords": ["b", "a"], "valid_topics": ["z", "y"]}},
               "rate_limits": [{"calls": 5, "key": "user"}, {"calls": 9, "key": "endpoint"}]}
    live = live_endpoint(capture("endpoint_get_01") | {"ai_gateway": gateway})["ai_gateway"]
    assert live["guardrails"]["input"] == {"invalid_keywords": ["a", "b"], "valid_topics": ["y", "z"]}
    assert [(r["key"], r["renewal_period"]) for r in live["rate_limits"]] == [("endpoint", "minute"), ("user", "minute")]


def rule_9_unset_values() -> None:
    get = capture("endpoint_get_01")  # no route_optimized at all
    assert live_endpoint(get)["route_optimized"] is False
    assert live_endpoint(capture("endpoint_create_resp_03"))["route_optimized"] is False
    get["description"] = None
    get["config"]["served_entities"][0]["environment_vars"] = None
    live = live_endpoint(get)
    assert "description" not in live and "environment_vars" not in live["served_entities"]["ads1-1"]


def rule_10_secret_references_are_text() -> None:
    reference = "{{secrets/ads/api_key}}"
    manifest = endpoint({"served_entities": [{"entity_name": "c.s.ads1", "entity_version": "1", "workload_size": "Small",
                                              "scale_to_zero_enabled": False, "environment_vars": {"KEY": reference}}]})
    get = capture("endpoint_get_01")
    get["config"]["served_entities"][0] |= {"entity_name": "c.s.ads1", "environment_vars": {"KEY": reference},
                                            "workload_type": "CPU"}
    get["tags"] = [{"key": "managed-by", "value": "reconciler"}]
    live = live_endpoint(get)
    assert diff(live, comparable(overlay(desired_endpoint(manifest, ["1"], stack=None), live))) == []
    get["config"]["served_entities"][0]["environment_vars"]["KEY"] = "{{secrets/ads/old_key}}"
    live = live_endpoint(get)
    changes = diff(live, comparable(overlay(desired_endpoint(manifest, ["1"], stack=None), live)))
    assert [(c.path, c.before, c.after) for c in changes] == [
        ("served_entities[ads1-1].environment_vars[KEY]", "{{secrets/ads/old_key}}", reference)]


def rule_11_write_only() -> None:
    manifest = endpoint({"served_entities": [{"entity_name": "c.s.ads1", "entity_version": "1", "workload_size": "Small",
                                              "scale_to_zero_enabled": False, "burst_scaling_enabled": True}]})
    desired = desired_endpoint(manifest, ["1"], stack=None)
    effective = overlay(desired, live_endpoint(capture("endpoint_get_01")))
    assert "burst_scaling_enabled" not in comparable(effective)["served_entities"]["ads1-1"]  # never diffed
    assert config_payload(effective, desired)["served_entities"][0]["burst_scaling_enabled"] is True  # sent


def rule_12_legacy_inference_tables() -> None:
    created = capture("endpoint_create_resp_01")  # enabled auto_capture_config, in its pending config
    assert legacy_inference_table(created) == created["pending_config"]["auto_capture_config"]
    created["pending_config"]["auto_capture_config"]["enabled"] = False
    assert legacy_inference_table(created) is None
    assert "auto_capture_config" not in live_endpoint(capture("endpoint_create_resp_01"))


def rule_13_agent_gateways() -> None:
    gateway = {"inference_table_config": {"catalog_name": "c", "schema_name": "s", "enabled": True},
               "usage_tracking_config": {"enabled": True}}
    agent = listed("mas-996e9c3d-endpoint")  # task agent/v1/responses
    assert is_agent(agent) and not is_agent(listed("lensiq-spill"))
    assert set(live_endpoint(agent | {"ai_gateway": gateway})["ai_gateway"]) == {"inference_table_config"}
    assert set(live_endpoint(listed("lensiq-spill") | {"ai_gateway": gateway})["ai_gateway"]) == set(gateway)


RULES: list[tuple[str, str, Callable[[], None]]] = [
    ("1", "the API re-orders identity lists; a positional diff shows changes that are not there", rule_1_lists_are_maps),
    ("2", "real routes carry served_model_name, served_entity_name or both", rule_2_route_names),
    ("3", "a served entity in a manifest is complete; server-filled and unknown fields are kept", rule_3_entities_are_complete),
    ("4", "the server names an unnamed entity <short model name>-<version>", rule_4_default_entity_name),
    ("5", "no traffic_config with one entity is the server's single 100% route", rule_5_single_route),
    ("6", "maps given are complete, but for tags left out, the creator and the deployer", rule_6_maps_are_complete),
    ("7", "inherited grants are not the endpoint's", rule_7_inherited_grants),
    ("8", "guardrail lists are sets; rate limits have a key", rule_8_sets_and_rate_limits),
    ("9", "None is no value; route_optimized absent is false", rule_9_unset_values),
    ("10", "secret references are compared as written", rule_10_secret_references_are_text),
    ("11", "write-only fields are sent, never diffed", rule_11_write_only),
    ("12", "legacy inference tables are outside the shape", rule_12_legacy_inference_tables),
    ("13", "agent endpoints' gateways hold inference tables only", rule_13_agent_gateways),
]


def test_every_numbered_rule_has_a_case() -> None:
    import re

    import reconciler.normalize as normalize

    numbered = re.findall(r"^ ?(\d+)\. ", (normalize.__doc__ or "").split("THE RULES")[1], re.MULTILINE)
    assert numbered == [number for number, _, _ in RULES]


@pytest.mark.parametrize(("number", "reason", "check"), RULES, ids=[f"rule {r[0]}" for r in RULES])
def test_rule(number: str, reason: str, check: Callable[[], None]) -> None:
    check()


# ---- the field-semantics table, row by row ------------------------------------------------------------

# A served entity each row's condition holds for: sized CPU, provisioned throughput (capture 02),
# provisioned concurrency.
SIZED = {"entity_name": "c.s.ads1", "entity_version": "1", "workload_size": "Small", "scale_to_zero_enabled": False}
THROUGHPUT = live_entity(capture("endpoint_create_resp_02")["pending_config"]["served_entities"][0])
CONCURRENT = {"entity_name": "c.s.ads1", "entity_version": "1", "min_provisioned_concurrency": 4,
              "max_provisioned_concurrency": 8, "scale_to_zero_enabled": False}
HOLDS = {"always": SIZED, "scaling": SIZED, "sized": SIZED, "provisioned throughput": THROUGHPUT,
         "provisioned concurrency": CONCURRENT}


def row_id(rule: Any) -> str:
    return f"{rule.semantics.value}:{rule.field}:{rule.when}"


@pytest.mark.parametrize("rule", [r for r in FIELD_RULES if r.entity_field], ids=row_id)
def test_entity_row(rule: Any) -> None:
    key = rule.entity_field
    entity = {k: v for k, v in HOLDS[rule.when].items() if k != key}
    assert rule.holds(entity) or rule.holds(HOLDS[rule.when]), "the row's condition holds for its example"
    if rule.semantics is Semantics.DEFAULT:
        assert entity_defaults(entity) == {key: rule.value} | {
            k: v for k, v in entity_defaults(entity).items() if k != key}
        assert entity_defaults({**entity, key: "X"}).get(key) is None  # stated: no default
    elif rule.semantics is Semantics.SERVER_FILLED:
        assert key in server_filled(HOLDS[rule.when])
        desired = {k: v for k, v in HOLDS[rule.when].items() if k != key}
        live = {**desired, key: "FILLED"}
        effective = {"served_entities": {"e": effective_entity(desired, live)}, "traffic": {"e": 100}}
        assert effective["served_entities"]["e"][key] == "FILLED"  # no change
        assert key not in config_payload(effective, {"served_entities": {"e": desired}})["served_entities"][0]
    elif rule.semantics is Semantics.READ_ONLY:
        assert key in READ_ONLY_ENTITY_FIELDS and key not in live_entity({**SIZED, key: "x"})
    elif rule.semantics is Semantics.WRITE_ONLY:
        state = {"served_entities": {"e": {**SIZED, key: True}}}
        assert key not in comparable(state)["served_entities"]["e"]
    elif rule.semantics is Semantics.REQUIRED:
        assert key in MANAGED_ENTITY_FIELDS and key not in entity_defaults(entity)  # validate asks for it
    elif rule.semantics is Semantics.EXCLUSIVE:
        assert rule.others and all(other in MANAGED_ENTITY_FIELDS for other in rule.others)
    else:
        pytest.fail(f"no check for a served entity row of {rule.semantics}")


@pytest.mark.parametrize("rule", [r for r in FIELD_RULES if not r.entity_field], ids=row_id)
def test_endpoint_row(rule: Any) -> None:
    from reconciler.kinds import serving_endpoint

    get = capture("endpoint_get_01")
    get["config"]["served_entities"][0] |= {"entity_name": "c.s.ads1", "workload_type": "CPU"}
    spec = {"served_entities": [{"entity_name": "c.s.ads1", "entity_version": "1", "workload_size": "Small",
                                 "scale_to_zero_enabled": False}]}
    if rule.semantics is Semantics.IMMUTABLE:
        value = "new text" if rule.field == "description" else True
        desired = desired_endpoint(endpoint(spec | {rule.field: value}), ["1"], stack=None)
        change = serving_endpoint.plan("e", desired, get, None)
        assert change.action.value == "replace" and change.replace_reasons == [f"{rule.field} cannot change after creation"]
    elif rule.semantics is Semantics.DEPRECATED:
        assert rule.fix and rule.field not in live_endpoint(get)
    elif rule.semantics is Semantics.WRITE_ONLY:
        assert rule.field not in live_endpoint(get | {rule.field: "policy-id"})  # GET's value is never compared
    else:
        pytest.fail(f"no check for an endpoint row of {rule.semantics}")


def test_rows_by_semantics_filter_on_their_condition() -> None:
    assert {r.entity_field for r in rules(Semantics.SERVER_FILLED, THROUGHPUT)} == {"workload_size", "workload_type"}
    assert rules(Semantics.SERVER_FILLED, SIZED) == []
    assert server_filled(CONCURRENT) == {"workload_size"}


def test_copied_is_deepcopy_for_json_values() -> None:
    """`copied` stands in for copy.deepcopy on the hot path (the overlay of every endpoint): equal
    values, no container shared with the original, and anything not JSON still deep-copied."""
    import copy

    original = capture("endpoint_get_01") | {"odd": ({"a": [1]},), "unset": None, "ratio": 0.5}
    result = copied(original)
    assert result == copy.deepcopy(original)
    result["config"]["served_entities"][0]["name"] = "changed"
    result["odd"][0]["a"].append(2)
    assert original == capture("endpoint_get_01") | {"odd": ({"a": [1]},), "unset": None, "ratio": 0.5}


# ---- live answers as the planner sees them ------------------------------------------------------------

def test_an_update_in_flight_is_judged_by_its_pending_config() -> None:
    """Capture 03 answered a create with only a pending config: that is what it will serve."""
    live = live_endpoint(capture("endpoint_create_resp_03"))
    assert list(live["served_entities"]) == ["meta_llama_v3_1_8b_instruct-3"]
    failed = capture("endpoint_get_01") | {"state": {"ready": "READY", "config_update": "UPDATE_FAILED"},
                                           "pending_config": {"served_entities": [{"name": "broken"}]}}
    assert list(live_endpoint(failed)["served_entities"]) == ["ads1-1"]  # a failed update serves nothing


def test_only_the_server_s_fields_are_dropped_from_a_live_entity() -> None:
    pt = capture("endpoint_create_resp_02")["pending_config"]["served_entities"][0]
    assert live_entity(pt) == {"entity_name": "takaakiyayoi_catalog.default.llama2-7b", "entity_version": "1",
                               "min_provisioned_throughput": 970, "max_provisioned_throughput": 970,
                               "workload_size": "Small", "workload_type": "GPU_MEDIUM"}
