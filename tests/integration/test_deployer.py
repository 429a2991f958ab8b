"""The deployer keeps control: the identity that applies keeps CAN_MANAGE on the endpoints whose
permissions it writes, is an input of the plan (made in CI by a read-only identity), and plan
checks, through the Permissions and Unity Catalog effective-permissions APIs, that it can do what
apply will need."""

from __future__ import annotations

import json

import pytest
from harness import MODEL, SEED, base_documents, endpoint, run, write, writes

SP = "6f0d1c9e-2b7a-4c3d-9e8f-0a1b2c3d4e5f"  # the deploying service principal
IDENTITIES = {
    "users": [{"user_name": "viewer@example.com", "groups": ["support-team"], "tokens": ["viewer-token"]},
              {"user_name": "outsider@example.com", "tokens": ["outsider-token"]},
              {"user_name": "ops@example.com", "admin": True, "tokens": ["ops-token"]}],
    "service_principals": [{"application_id": SP, "display_name": "cx-deployer", "tokens": ["deployer-token"]}],
    "grants": [{"securable_type": "function", "full_name": MODEL, "principal": SP, "privileges": ["EXECUTE"]}],
}


@pytest.fixture
def ws(make_workspace):
    workspace = make_workspace(SEED)
    workspace.add_seed(IDENTITIES)
    workspace.add_token("reader-token", read_only=True)  # the workspace admin's, for reading only (CI's plan)
    with workspace.state.lock:  # pay-per-token foundation model endpoints are open to every user
        workspace.state.serving.endpoints["databricks-meta-llama-3-3-70b-instruct"].acl[("group_name", "users")] = \
            "CAN_QUERY"
    return workspace


def as_(token):
    return {"DATABRICKS_TOKEN": token}


def grants(ws, name="support-agent"):
    client = ws.client()
    acl = client.api_client.do("GET", f"/api/2.0/permissions/serving-endpoints/{client.serving_endpoints.get(name).id}")
    return {next(e[k] for k in ("user_name", "group_name", "service_principal_name") if k in e):
            e["all_permissions"][0]["permission_level"] for e in acl["access_control_list"]
            if not e["all_permissions"][0].get("inherited")}


def with_grants(*entries):
    docs = base_documents()
    endpoint(docs)["spec"]["permissions"] = list(entries)
    return docs


def test_the_deployer_keeps_can_manage_when_the_manifest_grants_it_less(ws, tmp_path):
    """The issue's run: granting the deploying identity CAN_QUERY removed its own CAN_MANAGE."""
    docs = with_grants({"group_name": "support-team", "permission_level": "CAN_QUERY"},
                       {"service_principal_name": SP, "permission_level": "CAN_QUERY"})
    result = run(ws, "apply", write(tmp_path, docs), "--auto-approve", env=as_("deployer-token"))
    assert result.code == 0, result.out + result.err
    note = f"service_principal_name:{SP} keeps CAN_MANAGE: it is the identity that applies (the manifest grants it " \
           "CAN_QUERY)"
    assert note in result.out
    assert grants(ws) == {SP: "CAN_MANAGE", "support-team": "CAN_QUERY"}
    again = run(ws, "plan", write(tmp_path, docs), "--detailed-exitcode", env=as_("deployer-token"))
    assert again.code == 0, again.out + again.err  # and it stays so: no change planned against it
    plan = json.loads(run(ws, "plan", write(tmp_path, docs), "--format", "json", env=as_("deployer-token")).out)
    assert plan["deployer"] == f"service_principal_name:{SP}"


def test_a_plan_made_by_a_reader_for_the_deployer_is_applied_by_the_deployer_only(ws, tmp_path):
    docs = with_grants({"group_name": "support-team", "permission_level": "CAN_QUERY"},
                       {"service_principal_name": SP, "permission_level": "CAN_MANAGE"})
    assert run(ws, "apply", write(tmp_path, docs), "--auto-approve", env=as_("deployer-token")).code == 0
    endpoint(docs)["spec"]["tags"]["team"] = "cx"
    plan_file = tmp_path / "plan.json"
    made = run(ws, "plan", write(tmp_path, docs), "--out", str(plan_file), "--deployer", SP, env=as_("reader-token"))
    assert made.code == 0, made.err
    ws.reset_requests()
    wrong = run(ws, "apply", "--plan", str(plan_file), env=as_("ops-token"))
    assert wrong.code == 1 and writes(ws) == []
    assert wrong.err.strip() == f"deployer: the plan keeps CAN_MANAGE for \"service_principal_name:{SP}\", this " \
                                "apply for \"user_name:ops@example.com\"; pass --deployer (or RECONCILER_DEPLOYER) " \
                                "to plan as the identity that applies"
    applied = run(ws, "apply", "--plan", str(plan_file), env=as_("deployer-token"))
    assert applied.code == 0, applied.err
    assert writes(ws) == [("PATCH", "/api/2.0/serving-endpoints/support-agent/tags")]


def test_plan_says_what_the_deploying_identity_lacks(ws, tmp_path):
    docs = base_documents()
    assert run(ws, "apply", write(tmp_path, docs), "--auto-approve").code == 0
    endpoint(docs)["spec"]["served_entities"][0]["workload_size"] = "Medium"  # a config write: EXECUTE needed
    ws.reset_requests()
    result = run(ws, "plan", write(tmp_path, docs), "--deployer", "outsider@example.com")
    assert result.code == 1 and writes(ws) == []
    unseen = "(as a direct grant: grants through its groups are not visible when planning as another identity)"
    assert result.err.strip().splitlines() == [
        f"registered_model.{MODEL}: the deploying identity user_name:outsider@example.com holds no EXECUTE on this "
        f"model {unseen}, which serving_endpoint.support-agent needs to serve it (automatic authentication "
        "passthrough); grant it EXECUTE on the model (or its schema or catalog), or apply as an identity that holds it",
        "serving_endpoint.support-agent: the deploying identity user_name:outsider@example.com holds no permission "
        f"on this endpoint {unseen}, not CAN_MANAGE, which apply needs to write it; grant it CAN_MANAGE, or apply "
        "as an identity that holds it"]


def test_the_caller_as_deployer_is_checked_with_its_groups(ws, tmp_path):
    docs = base_documents()
    assert run(ws, "apply", write(tmp_path, docs), "--auto-approve").code == 0
    del endpoint(docs)["spec"]["permissions"]  # a viewer cannot read the ACL
    endpoint(docs)["spec"]["tags"]["team"] = "cx"
    ws.reset_requests()
    result = run(ws, "apply", write(tmp_path, docs), "--auto-approve", env=as_("viewer-token"))
    assert result.code == 1 and writes(ws) == []
    assert result.err.strip() == "serving_endpoint.support-agent: the deploying identity user_name:viewer@example.com " \
                                 "holds CAN_QUERY on this endpoint, not CAN_MANAGE, which apply needs to write it; " \
                                 "grant it CAN_MANAGE, or apply as an identity that holds it"


def test_a_plan_that_leaves_no_one_managing_an_endpoint_is_refused(ws, tmp_path):
    docs = with_grants({"group_name": "support-team", "permission_level": "CAN_QUERY"})
    assert run(ws, "apply", write(tmp_path, docs), "--auto-approve", env=as_("deployer-token")).code == 0
    assert grants(ws) == {SP: "CAN_MANAGE", "support-team": "CAN_QUERY"}  # the creator's grant is kept
    docs = with_grants({"group_name": "support-team", "permission_level": "CAN_QUERY"},
                       {"service_principal_name": SP, "permission_level": "CAN_QUERY"})
    path = write(tmp_path, docs)
    ws.reset_requests()
    result = run(ws, "apply", path, "--auto-approve", env=as_("ops-token"))  # an admin, holding no grant of its own
    assert result.code == 1 and writes(ws) == []
    [line] = result.err.strip().splitlines()
    assert line.startswith(f"{path}:") and line.endswith(
        "after apply no principal would hold CAN_MANAGE on this endpoint (only workspace admins, through their "
        "inherited grant); grant CAN_MANAGE to a user, group or service principal here")


def test_the_deployer_keeps_can_manage_when_the_manifest_leaves_it_out(ws, tmp_path):
    """Not the creator and not named: without the deployer rule, apply would remove its own grant."""
    docs = with_grants({"group_name": "support-team", "permission_level": "CAN_QUERY"},
                       {"service_principal_name": SP, "permission_level": "CAN_MANAGE"})
    assert run(ws, "apply", write(tmp_path, docs), "--auto-approve").code == 0  # created by the admin user
    docs = with_grants({"group_name": "support-team", "permission_level": "CAN_VIEW"})
    result = run(ws, "apply", write(tmp_path, docs), "--auto-approve", env=as_("deployer-token"))
    assert result.code == 0, result.out + result.err
    assert f"service_principal_name:{SP} keeps CAN_MANAGE: it is the identity that applies (the manifest does not " \
           "name it)" in result.out
    assert grants(ws)[SP] == "CAN_MANAGE" and grants(ws)["support-team"] == "CAN_VIEW"
