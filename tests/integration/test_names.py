"""Names are checked at every boundary: a name from a manifest, a plan file, a variable, --stack or
a server answer is held to the API's grammar before any request; and below that check, every
path segment `workspace.py` sends is exactly one percent-encoded segment (the request log's
`raw_path` and `segments`)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from harness import MODEL, base_documents, endpoint, model, run, write, writes

import reconciler.workspace as workspace_module
from reconciler.errors import ReconcilerError
from reconciler.workspace import Workspace

TRAVERSAL = "../../2.1/unity-catalog/models/main.agents.support_agent"


def assert_refused_before_any_request(ws, result, fragment):
    assert result.code == 1 and "Traceback" not in result.err, result.out + result.err
    assert fragment in result.err, result.err
    assert ws.requests() == []


def test_a_name_from_a_manifest(seeded_workspace, tmp_path):
    docs = base_documents()
    endpoint(docs)["metadata"]["name"] = TRAVERSAL
    result = run(seeded_workspace, "plan", write(tmp_path, docs))
    assert_refused_before_any_request(seeded_workspace, result, f"endpoint name '{TRAVERSAL}' is invalid")


def test_a_name_from_a_variable(seeded_workspace, tmp_path):
    docs = base_documents()
    endpoint(docs)["metadata"]["name"] = "${var.name}"
    for bad in (TRAVERSAL, "a/b", "..", "a b", "a%2Fb"):
        result = run(seeded_workspace, "apply", write(tmp_path, docs), "--auto-approve", "--var", f"name={bad}")
        # A problem never quotes a variable's value of 4 characters or more (it may be a credential,
        # loader._unquoted): it names the variable instead.
        shown = bad if len(bad) < 4 else "${var.name}"
        assert_refused_before_any_request(seeded_workspace, result, f"endpoint name '{shown}' is invalid")


def test_a_model_name_from_a_variable(seeded_workspace, tmp_path):
    docs = base_documents()
    model(docs)["metadata"]["name"] = "main.agents.${var.model}"
    result = run(seeded_workspace, "plan", write(tmp_path, docs), "--var", "model=../x")
    assert_refused_before_any_request(seeded_workspace, result, "'main.agents.${var.model}' is not a Unity Catalog model name")


def test_a_secret_scope_from_a_manifest(seeded_workspace, tmp_path):
    docs = base_documents()
    endpoint(docs)["spec"]["served_entities"][0]["environment_vars"]["OPENAI_API_KEY"] = "{{secrets/../openai}}"
    result = run(seeded_workspace, "plan", write(tmp_path, docs))
    assert_refused_before_any_request(seeded_workspace, result, "malformed secret reference")


@pytest.mark.parametrize("command", ["validate", "plan", "apply", "export"])
def test_a_stack(seeded_workspace, tmp_path, command):
    extra = ["--endpoint", "support-agent"] if command == "export" else [write(tmp_path, base_documents())]
    result = run(seeded_workspace, command, *extra, "--stack", "../../../Users/someone/team-config")
    assert_refused_before_any_request(seeded_workspace, result, "--stack: '../../../Users/someone/team-config' is "
                                                                "not a valid stack name")


def test_a_name_from_a_plan_file(seeded_workspace, tmp_path):
    docs = base_documents()
    plan_file = tmp_path / "plan.json"
    assert run(seeded_workspace, "plan", write(tmp_path, docs), "--out", str(plan_file)).code == 0
    plan = json.loads(plan_file.read_text())
    plan["changes"][0].update(name=f"main.agents/{TRAVERSAL}", address=f"registered_model.main.agents/{TRAVERSAL}")
    plan_file.write_text(json.dumps(plan))
    seeded_workspace.reset_requests()
    result = run(seeded_workspace, "apply", "--plan", str(plan_file))
    assert_refused_before_any_request(seeded_workspace, result, "is not a valid model name")


def test_a_name_from_a_server_answer(seeded_workspace, tmp_path):
    """A managed endpoint the workspace lists under a name no endpoint can have is never pruned."""
    ws = seeded_workspace
    docs = base_documents()
    assert run(ws, "apply", write(tmp_path, docs), "--auto-approve").code == 0
    with ws.state.lock:  # as if the workspace held one (its own API refuses to create it)
        endpoints = ws.state.serving.endpoints
        endpoints["x/../support-agent"] = dataclasses.replace(endpoints["support-agent"], name="x/../support-agent")
    only_model = [model(docs)]
    ws.reset_requests()
    result = run(ws, "apply", write(tmp_path, only_model), "--auto-approve", "--prune")
    assert "the workspace lists a managed endpoint whose name is not one: 'x/../support-agent' is not a valid " \
           "endpoint name" in result.out
    assert not [r for r in ws.requests() if "x" in r["segments"] or "x/../support-agent" in r["segments"]]
    assert ("DELETE", "/api/2.0/serving-endpoints/support-agent") in writes(ws)  # the real one, pruned


# ---- below the grammar check: one encoded segment per name --------------------------------------------

NAMES = ["a/b", "%2F", "a b"]
CALLS = {  # each workspace.py call with a name in its path, and where the name lands among the segments
    "get_endpoint": (lambda ws, n: ws.get_endpoint(n), 3),
    "get_endpoint_permissions": (lambda ws, n: ws.get_endpoint_permissions("e", n), 4),
    "get_model": (lambda ws, n: ws.get_model(n), 4),
    "get_model_version (model)": (lambda ws, n: ws.get_model_version(n, "1"), 4),
    "get_model_version (version)": (lambda ws, n: ws.get_model_version(MODEL, n), 6),
    "model_privileges": (lambda ws, n: ws.model_privileges(n), 5),
    "resource_exists": (lambda ws, n: ws.resource_exists("vector_search_index", n), 4),
    "build_logs_tail (endpoint)": (lambda ws, n: ws.build_logs_tail(n, "champion"), 3),
    "build_logs_tail (entity)": (lambda ws, n: ws.build_logs_tail("support-agent", n), 5),
    "update_model": (lambda ws, n: ws.update_model(n, {"comment": "x"}), 4),
    "set_alias (model)": (lambda ws, n: ws.set_alias(n, "champion", 3), 4),
    "set_alias (alias)": (lambda ws, n: ws.set_alias(MODEL, n, 3), 6),
    "delete_alias": (lambda ws, n: ws.delete_alias(MODEL, n), 6),
    "update_config": (lambda ws, n: ws.update_config(n, {"served_entities": []}), 3),
    "patch_tags": (lambda ws, n: ws.patch_tags(n, add={"a": "b"}, delete=[]), 3),
    "put_ai_gateway": (lambda ws, n: ws.put_ai_gateway(n, {}), 3),
    "update_permissions": (lambda ws, n: ws.update_permissions("e", n, [], replace=False), 4),
    "delete_endpoint": (lambda ws, n: ws.delete_endpoint(n), 3),
}


@pytest.fixture
def unchecked(monkeypatch):
    """The grammar check bypassed: what reaches the wire is then the encoder's business alone."""
    monkeypatch.setattr(workspace_module, "name_problem", lambda kind, value: None)


@pytest.mark.parametrize("call", list(CALLS))
def test_every_call_sends_a_name_as_one_encoded_segment(seeded_workspace, unchecked, call):
    fn, index = CALLS[call]
    ws = Workspace(seeded_workspace.client(), retry_seconds=2)
    for name in NAMES:
        seeded_workspace.reset_requests()
        try:
            fn(ws, name)
        except ReconcilerError:
            pass  # the workspace refuses the name or finds nothing: what matters is what was sent
        [request] = seeded_workspace.requests()
        assert request["segments"][index] == name, (name, request["raw_path"])
        assert request["raw_path"].split("/")[index + 1] == name.replace("%", "%25").replace("/", "%2F") \
            .replace(" ", "%20"), request["raw_path"]


@pytest.mark.parametrize("call", list(CALLS))
def test_a_dot_segment_is_never_sent(seeded_workspace, unchecked, call):
    """`..` has no encoding that survives `requests` (it decodes %2E, an unreserved character, and
    urllib3 then resolves the segment), so the encoder refuses it, grammar or not."""
    fn, _ = CALLS[call]
    ws = Workspace(seeded_workspace.client(), retry_seconds=2)
    for name in ("..", "."):
        try:
            fn(ws, name)  # build_logs_tail answers "" for any failure: it only decorates another error
        except ReconcilerError as exc:
            assert "cannot be sent as a name" in str(exc)
    assert seeded_workspace.requests() == []
