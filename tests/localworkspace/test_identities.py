"""Contract tests: who is calling. Tokens belong to users and service principals, SCIM `Me` answers
per token, endpoint permissions are enforced on every call, and Unity Catalog effective
permissions come from seeded grants, through the unmodified `databricks-sdk` over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from databricks.sdk.errors import InvalidParameterValue, PermissionDenied, ResourceDoesNotExist
from databricks.sdk.service.serving import (
    EndpointCoreConfigInput,
    EndpointTag,
    ServedEntityInput,
    ServingEndpointAccessControlRequest,
    ServingEndpointPermissionLevel,
)

MODEL = "main.agents.support_agent"
DEPLOYER = "6f0d1c9e-2b7a-4c3d-9e8f-0a1b2c3d4e5f"


def entity(version: int) -> ServedEntityInput:
    return ServedEntityInput(entity_name=MODEL, entity_version=str(version), workload_size="Small",
                             scale_to_zero_enabled=False)


def config(version: int) -> EndpointCoreConfigInput:
    return EndpointCoreConfigInput(name="ignored", served_entities=[entity(version)])


def grant(group: str, level: str) -> list[ServingEndpointAccessControlRequest]:
    return [ServingEndpointAccessControlRequest(group_name=group,
                                                permission_level=ServingEndpointPermissionLevel(level))]


# -- identities ------------------------------------------------------------------------------------

def test_me_answers_for_the_tokens_principal(ws: Any) -> None:
    """SCIM `Me` (`w.current_user.me()`) per token. For a service principal `userName` is its
    application id, a UUID: databricks/cli `libs/iamutil/service_principal.go` tells service
    principals from users by exactly that. The default token keeps the default user, an admin."""
    me = ws.client().current_user.me()
    assert me.user_name == ws.state.user and "admins" in [g.display for g in me.groups]
    viewer = ws.client(token="viewer-token").current_user.me()
    assert (viewer.user_name, viewer.display_name) == ("viewer@example.com", "Viewer")
    assert [g.display for g in viewer.groups] == ["support-team"]
    deployer = ws.client(token="deployer-token").current_user.me()
    assert (deployer.user_name, deployer.display_name) == (DEPLOYER, "cx-deployer") and not deployer.emails
    assert len({me.id, viewer.id, deployer.id}) == 3


def test_tokens_can_be_added_for_seeded_principals(ws: Any) -> None:
    """`add_token` and `POST /__sim/tokens` take a principal; an unknown one is refused."""
    ws.add_token("second-viewer-token", principal="viewer@example.com")
    assert ws.client(token="second-viewer-token").current_user.me().user_name == "viewer@example.com"
    with pytest.raises(ValueError, match="no user or service principal"):
        ws.add_token("t", principal="ghost@example.com")


def test_bad_identity_seeds_name_the_entry(make_workspace: Any) -> None:
    with pytest.raises(ValueError, match=r"service_principals\[0\].*not a UUID"):
        make_workspace({"service_principals": [{"application_id": "deployer"}]})
    with pytest.raises(ValueError, match=r"users\[0\].*unknown field 'role'"):
        make_workspace({"users": [{"user_name": "a@example.com", "role": "admin"}]})


# -- endpoint permissions, enforced ----------------------------------------------------------------

def test_each_call_needs_its_level(ws: Any) -> None:
    """Reading needs CAN_VIEW, config/tags/AI Gateway/permissions/delete CAN_MANAGE (levels as the
    Permissions API lists them, `ServingEndpointPermissionLevel`); a refusal is 403
    PERMISSION_DENIED, which the SDK raises as `PermissionDenied`. Group grants count."""
    admin, viewer = ws.client(), ws.client(token="viewer-token")
    endpoint = admin.serving_endpoints.create_and_wait(name="guarded", config=config(3))
    with pytest.raises(PermissionDenied, match="viewer@example.com does not have View permissions"):
        viewer.serving_endpoints.get("guarded")
    assert "guarded" not in [e.name for e in viewer.serving_endpoints.list()]

    admin.serving_endpoints.update_permissions(endpoint.id, access_control_list=grant("support-team", "CAN_VIEW"))
    assert viewer.serving_endpoints.get("guarded").permission_level.value == "CAN_VIEW"
    listed = viewer.api_client.do("GET", "/api/2.0/serving-endpoints")["endpoints"]
    assert [e["permission_level"] for e in listed if e["name"] == "guarded"] == ["CAN_VIEW"]
    refused = [
        lambda: viewer.serving_endpoints.update_config(name="guarded", served_entities=[entity(4)]),
        lambda: viewer.serving_endpoints.patch(name="guarded", add_tags=[EndpointTag(key="k", value="v")]),
        lambda: viewer.serving_endpoints.put_ai_gateway(name="guarded"),
        lambda: viewer.serving_endpoints.get_permissions(endpoint.id),
        lambda: viewer.serving_endpoints.set_permissions(endpoint.id, access_control_list=grant("users", "CAN_QUERY")),
        lambda: viewer.serving_endpoints.delete("guarded"),
    ]
    for call in refused:
        with pytest.raises(PermissionDenied, match="Manage permissions"):
            call()
    assert viewer.serving_endpoints.build_logs("guarded", "support_agent-3").logs

    admin.serving_endpoints.update_permissions(endpoint.id, access_control_list=grant("support-team", "CAN_MANAGE"))
    viewer.serving_endpoints.patch(name="guarded", add_tags=[EndpointTag(key="k", value="v")])
    viewer.serving_endpoints.delete("guarded")


def test_the_creator_manages_and_admins_inherit(ws: Any) -> None:
    """The creator gets CAN_MANAGE and `admins` an inherited CAN_MANAGE (Permissions API answer);
    a service principal that creates an endpoint is its `creator` by application id, with
    `creator_kind` not "User"; a workspace admin manages endpoints it was never granted."""
    deployer = ws.client(token="deployer-token")
    created = deployer.serving_endpoints.create_and_wait(name="by-sp", config=config(3))
    assert created.creator == DEPLOYER
    raw = deployer.api_client.do("GET", "/api/2.0/serving-endpoints/by-sp")
    assert (raw["creator_kind"], raw["creator_display_name"]) == ("ServicePrincipal", "cx-deployer")
    assert raw["config"]["served_entities"][0]["creator"] == DEPLOYER
    acl = deployer.serving_endpoints.get_permissions(created.id).access_control_list
    assert {(a.service_principal_name or a.group_name, a.all_permissions[0].permission_level.value) for a in acl} == {
        (DEPLOYER, "CAN_MANAGE"), ("admins", "CAN_MANAGE")}
    ops = ws.client(token="ops-token")
    assert ops.serving_endpoints.get("by-sp").permission_level.value == "CAN_MANAGE"
    with pytest.raises(PermissionDenied):
        ws.client(token="outsider-token").serving_endpoints.get("by-sp")


def test_a_set_that_drops_the_creator_locks_it_out(ws: Any) -> None:
    """PUT replaces the direct grants, the creator's too (Terraform re-adds the current user on
    every set for this reason: `permission_definitions.go`, `AddCurrentUserAsManage`). The lockout
    is visible: the creator, not an admin, can no longer manage its endpoint."""
    deployer = ws.client(token="deployer-token")
    created = deployer.serving_endpoints.create_and_wait(name="locked", config=config(3))
    deployer.serving_endpoints.set_permissions(created.id, access_control_list=grant("support-team", "CAN_QUERY"))
    with pytest.raises(PermissionDenied):
        deployer.serving_endpoints.update_config(name="locked", served_entities=[entity(4)])
    with pytest.raises(PermissionDenied):
        deployer.serving_endpoints.get("locked")


def test_updates_fail_when_the_creator_left_the_workspace(ws: Any) -> None:
    """Databricks docs (DEFAULTS.md A7): "Updates fail with PERMISSION_DENIED if the recorded creator
    is no longer a workspace member, even when the caller has valid permissions"."""
    with pytest.raises(PermissionDenied, match="no longer a member"):
        ws.client().serving_endpoints.update_config(name="orphaned", served_entities=[entity(4)])
    assert ws.client().serving_endpoints.get("orphaned").creator == "leaver@example.com"


def test_read_only_tokens_still_read_and_never_write(ws: Any) -> None:
    ws.add_token("reader", read_only=True)
    reader = ws.client(token="reader")
    assert reader.serving_endpoints.get("legacy-capture").name == "legacy-capture"
    with pytest.raises(PermissionDenied, match="read-only"):
        reader.serving_endpoints.delete("legacy-capture")


def test_the_request_log_names_who_called(ws: Any) -> None:
    """The request log records the principal (never the token) so trust tests can say "no write
    from X after T"."""
    ws.reset_requests()
    ws.client(token="deployer-token").serving_endpoints.list()
    with pytest.raises(PermissionDenied):
        ws.client(token="wrong").serving_endpoints.list()
    log = ws.requests()
    assert [(r["identity"], r["status"]) for r in log if r["path"] == "/api/2.0/serving-endpoints"] == [
        (DEPLOYER, 200), (None, 403)]
    assert "deployer-token" not in str(log)


# -- Unity Catalog effective permissions -----------------------------------------------------------

@pytest.mark.parametrize("securable_type", ["function", "FUNCTION"])
def test_effective_permissions_of_a_model(ws: Any, securable_type: str) -> None:
    """`w.grants.get_effective` (GET /api/2.1/unity-catalog/effective-permissions/{type}/{name},
    SDK `catalog.py`): privileges on the model and those inherited from its schema and catalog,
    naming their source. Registered models are FUNCTION securables; the SDK passes the type as a
    plain string. Querying a model version needs USE_CATALOG, USE_SCHEMA and EXECUTE."""
    w = ws.client()
    mine = w.grants.get_effective(securable_type, MODEL, principal=DEPLOYER)
    assert [(a.principal, [(p.privilege.value, p.inherited_from_type) for p in a.privileges])
            for a in mine.privilege_assignments] == [(DEPLOYER, [("EXECUTE", None)])]
    group = w.grants.get_effective(securable_type, MODEL, principal="deployers")
    assert [(p.privilege.value, p.inherited_from_type.value, p.inherited_from_name)
            for p in group.privilege_assignments[0].privileges] == [
        ("USE_SCHEMA", "SCHEMA", "main.agents"), ("USE_CATALOG", "CATALOG", "main")]
    everyone = w.grants.get_effective(securable_type, MODEL)
    assert [a.principal for a in everyone.privilege_assignments] == [DEPLOYER, "deployers"]
    assert w.grants.get_effective(securable_type, MODEL, principal="viewer@example.com").privilege_assignments == []


def test_effective_permissions_of_what_does_not_exist(ws: Any) -> None:
    w = ws.client()
    with pytest.raises(ResourceDoesNotExist):
        w.grants.get_effective("function", "main.agents.nope")
    with pytest.raises(InvalidParameterValue):
        w.grants.get_effective("function", "main.agents")
    with pytest.raises(InvalidParameterValue):
        w.grants.get_effective("volume", "main.agents.v")
    assert w.grants.get_effective("schema", "main.agents", principal="deployers").privilege_assignments[0].principal
