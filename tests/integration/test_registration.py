"""From a logged agent to a served alias: versions named by their source, registered by apply through
MLflow's own Unity Catalog client, against the local workspace over real HTTP.

The workspace is the demo's (demo/workspace-seed.yaml): versions 1-3 of the support agent, and the
new agent as MLflow logged it (logged model m-6a1f..., not registered). The example manifests name
it `challenger: models:/m-6a1f...`. Registering runs MLflow in a child process (a few seconds each on
a busy machine), so these tests register as few versions as they can.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from harness import MODEL, ROOT, base_documents, change, endpoint, model, plan_json, run, write, writes

SEED = yaml.safe_load((ROOT / "demo" / "workspace-seed.yaml").read_text(encoding="utf-8"))
LOGGED = "m-6a1f2b3c4d5e4f60718293a4b5c6d7e8"
SOURCE = f"models:/{LOGGED}"
MV = f"model_version.{MODEL}@{SOURCE}"
RM = f"registered_model.{MODEL}"
EP = "serving_endpoint.support-agent"
UC = "/api/2.0/mlflow/unity-catalog/model-versions"
CREATE_VERSION = ("POST", f"{UC}/create")
FAILURE = "Failed to copy the model version's files to managed storage: python_model.pkl is missing"


def seed(**registration: Any) -> dict[str, Any]:
    data = copy.deepcopy(SEED)
    data["logged_models"][0]["registration"] = registration
    return data


@pytest.fixture
def logged(make_workspace):
    """The demo's workspace; registering the logged agent takes no time."""
    return make_workspace(seed(seconds=0))


def versions_from(ws, source: str = SOURCE) -> list[tuple[int, str]]:
    """(number, status) of the versions registered from `source`, as MLflow's UC route shows them."""
    found = ws.client().api_client.do("GET", f"{UC}/search", query={"filter": f"name = '{MODEL}'"})
    return [(int(v["version"]), v["status"]) for v in found.get("model_versions", [])
            if v.get("model_id") == source.removeprefix("models:/") or v.get("source") == source]


def landed(ws) -> list[tuple[str, str]]:
    """The writes the workspace accepted, MLflow's registration protocol included."""
    return [(r["method"], r["path"]) for r in ws.requests() if r["method"] not in ("GET", "HEAD") and r["status"] < 300
            and not r["path"].startswith("/api/2.0/workspace/")]


def index(log: list[tuple[str, str]], method: str, path: str) -> int:
    return next(i for i, entry in enumerate(log) if entry == (method, path))


def test_from_a_logged_agent_to_a_served_alias(make_workspace, tmp_path):
    ws = make_workspace(seed(seconds=1))  # PENDING_REGISTRATION for a second after MLflow finalizes it
    path = write(tmp_path, base_documents())

    plan = run(ws, "plan", path)
    assert plan.code == 0, plan.err
    assert f"+ {MV} (create)" in plan.out
    assert f"register_version({SOURCE} → {MODEL})" in plan.out
    assert '+ user_api_scopes: ["serving.serving-endpoints", "vectorsearch.vector-search-indexes"]' in plan.out
    assert '+ logged_resources.vector_search_index: ["main.agents.docs_index"]' in plan.out
    assert f"set_alias(challenger → {SOURCE})  (after {EP}, {MV})" in plan.out
    assert f"challenger=support_agent {SOURCE}" in plan.out  # the endpoint serves what is registered
    markdown = run(ws, "plan", path, "--format", "markdown").out
    assert f"**registration** `{MV}`: registers `{SOURCE}` as a new version; it asks users for API scopes " \
           "`serving.serving-endpoints`, `vectorsearch.vector-search-indexes`" in markdown
    as_json = plan_json(ws, path)
    jsonschema.validate(as_json, json.loads((ROOT / "schemas" / "plan.schema.json").read_text()))
    registration = change(as_json, MV)
    assert (registration["action"], [op["name"] for op in registration["operations"]]) == ("create", ["register_version"])
    assert {d["path"]: d["after"] for d in registration["diff"]}["user_api_scopes"] == [
        "serving.serving-endpoints", "vectorsearch.vector-search-indexes"]

    ws.reset_requests()
    applied = run(ws, "apply", path, "--auto-approve")
    assert applied.code == 0, applied.out + applied.err
    assert "version 4 PENDING_REGISTRATION" in applied.out and "version 4 READY" in applied.out
    assert versions_from(ws) == [(4, "READY")]
    log = landed(ws)
    assert log.count(CREATE_VERSION) == 1
    alias = ("PUT", f"/api/2.1/unity-catalog/models/{MODEL}/aliases/challenger")
    # Registered and READY, then the endpoint created serving it, then (once it serves) the alias.
    assert index(log, "POST", f"{UC}/finalize") < index(log, "POST", "/api/2.0/serving-endpoints") < index(log, *alias)
    served = ws.client().serving_endpoints.get("support-agent").config.served_entities
    assert {e.name: e.entity_version for e in served} == {"champion": "3", "challenger": "4"}
    aliases = ws.client().registered_models.get(MODEL, include_aliases=True).aliases
    assert {a.alias_name: a.version_num for a in aliases} == {"champion": 3, "challenger": 4}

    ws.reset_requests()
    again = run(ws, "apply", path, "--auto-approve")
    assert again.code == 0 and writes(ws) == [], again.out
    assert "No changes." in again.out
    assert run(ws, "plan", path, "--detailed-exitcode").code == 0


def test_a_registered_source_is_that_version_and_the_plan_says_so(logged, tmp_path):
    """Promotion by source: the logged agent that is challenger becomes champion too, with no new version."""
    docs = base_documents()
    path = write(tmp_path, docs)
    assert run(logged, "apply", path, "--auto-approve").code == 0
    model(docs)["spec"]["aliases"]["champion"] = SOURCE
    logged.reset_requests()
    plan = run(logged, "plan", write(tmp_path, docs))
    assert f"alias champion: version 4 is {SOURCE} (already registered)" in plan.out
    assert "~ aliases[champion]: 3 → 4" in plan.out and "register_version" not in plan.out
    applied = run(logged, "apply", write(tmp_path, docs), "--auto-approve")
    assert applied.code == 0, applied.out
    assert CREATE_VERSION not in landed(logged) and versions_from(logged) == [(4, "READY")]


def test_a_failed_registration_leaves_aliases_and_endpoints_untouched(make_workspace, tmp_path):
    ws = make_workspace(seed(failure=FAILURE))
    path = write(tmp_path, base_documents())
    ws.reset_requests()
    result = run(ws, "apply", path, "--auto-approve")
    assert result.code == 1
    assert f"{MV}: FAILED: registration of version 4 ended FAILED_REGISTRATION: {FAILURE}" in result.out
    log = landed(ws)
    assert log.count(CREATE_VERSION) == 1
    assert not [entry for entry in log if entry[1].startswith(("/api/2.0/serving-endpoints", "/api/2.1/unity-catalog"))]
    assert "not updated: " + MV + " was not registered" in result.out
    assert ws.client().registered_models.get(MODEL, include_aliases=True).aliases[0].alias_name == "champion"

    # The next plan replaces the failed version of ours (once the cause is fixed, it registers).
    as_json = plan_json(ws, path)
    assert [op["description"] for op in change(as_json, MV)["operations"]] == [
        "delete_version(4: FAILED_REGISTRATION)", f"register_version({SOURCE} → {MODEL})"]


def test_a_version_a_crashed_run_left_pending_is_deleted_and_registered_again(logged, tmp_path):
    """What a client killed mid-upload leaves: created with our marker, never finalized."""
    logged.client().api_client.do("POST", f"{UC}/create", body={
        "name": MODEL, "source": SOURCE, "model_id": LOGGED, "run_id": SEED["mlflow_runs"][0]["run_id"],
        "tags": [{"key": "managed-by", "value": "reconciler"}, {"key": "reconciler-source", "value": SOURCE}]})
    assert versions_from(logged) == [(4, "PENDING_REGISTRATION")]
    path = write(tmp_path, base_documents())
    plan = run(logged, "plan", path)
    assert "version 4 was registered from this source by an earlier apply and left PENDING_REGISTRATION; it is " \
           "deleted and the agent registered again" in plan.out
    assert "1. delete_version(4: PENDING_REGISTRATION)" in plan.out
    applied = run(logged, "apply", path, "--auto-approve")
    assert applied.code == 0, applied.out + applied.err
    assert versions_from(logged) == [(5, "READY")]  # numbers are not reused


def test_somebody_elses_registration_in_flight_stops_the_plan(logged, tmp_path):
    logged.client().api_client.do("POST", f"{UC}/create", body={"name": MODEL, "source": SOURCE, "model_id": LOGGED})
    result = run(logged, "plan", write(tmp_path, base_documents()))
    assert result.code == 1
    assert re.search(rf"manifests\.yaml:\d+:\d+: version 4 of '{MODEL}' is being registered from {SOURCE} by "
                     "someone else \\(PENDING_REGISTRATION\\); wait for it to finish, or delete it", result.err)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["logged_models"][0]["artifacts"]["MLmodel"].pop("signature"),
     f"the agent logged as {SOURCE} has no signature; Unity Catalog requires a signature with inputs and outputs"),
    (lambda s: s["logged_models"][0]["artifacts"]["MLmodel"].update(mlflow_version="2.12.2"),
     f"the agent logged as {SOURCE} declares serving_endpoint resources, which need MLflow 2.13.1 or later to be "
     "logged (it was logged with MLflow 2.12.2)"),
    (lambda s: s["logged_models"][0]["artifacts"]["MLmodel"]["auth_policy"]["system_auth_policy"]["resources"][
        "databricks"].pop("vector_search_index"),
     f"vector_search_index 'main.agents.docs_index' is declared here but the agent logged as {SOURCE} was not "
     "logged with it"),
    (lambda s: s.pop("logged_models"),
     f"{SOURCE}: logged model {LOGGED} does not exist in this workspace; check the URI MLflow printed"),
])
def test_what_was_logged_is_checked_before_anything_is_written(make_workspace, tmp_path, edit, message):
    data = seed()
    edit(data)
    ws = make_workspace(data)
    result = run(ws, "apply", write(tmp_path, base_documents()), "--auto-approve")
    assert result.code == 1 and message in result.err, result.err
    assert re.match(r".*manifests\.yaml:\d+:\d+: ", result.err)
    assert landed(ws) == []


def test_registration_without_numpy_and_pandas_asks_for_the_extra(logged, tmp_path, monkeypatch):
    """Without them MLflow cannot load the MLmodel to register it: one line, before anything is written."""
    monkeypatch.setitem(sys.modules, "numpy", None)  # importlib.util.find_spec answers None for it
    result = run(logged, "apply", write(tmp_path, base_documents()), "--auto-approve")
    assert result.code == 1
    assert f"{SOURCE} is to be registered: registering a version needs MLflow's model loading, which needs numpy " \
           "and pandas: pip install 'reconciler[mlflow]'" in result.err
    assert landed(logged) == []


def test_a_served_entity_may_name_its_version_by_source_and_a_model_needs_to_exist(logged, tmp_path):
    docs = [endpoint(base_documents())]
    spec = docs[0]["spec"]
    spec["served_entities"] = [{**spec["served_entities"][1], "alias": None}]
    del spec["served_entities"][0]["alias"]
    spec["served_entities"][0]["entity_version"] = SOURCE
    del spec["traffic_config"]
    path = write(tmp_path, docs)
    applied = run(logged, "apply", path, "--auto-approve")
    assert applied.code == 0, applied.out + applied.err
    served = logged.client().serving_endpoints.get("support-agent").config.served_entities
    assert [(e.name, e.entity_version) for e in served] == [("challenger", "4")]
    assert run(logged, "plan", path, "--detailed-exitcode").code == 0

    spec["served_entities"][0]["entity_name"] = "main.agents.nobody"
    result = run(logged, "plan", write(tmp_path, docs))
    assert result.code == 1 and "model 'main.agents.nobody' does not exist; add a RegisteredModel manifest" in result.err


def test_run_uris_resolve_as_mlflow_resolves_them(make_workspace, tmp_path):
    """`runs:/<run>/agent` is the run's files when it has them (MLflow 2), else the logged model of that
    name it logged (MLflow 3); the second and `models:/m-...` of the same agent are one version."""
    ws = make_workspace(Path(__file__).parents[1] / "seeds" / "logged_agent.yaml")
    files, mlflow3 = "runs:/5b1e2f0c9d8a4e7b8c6d5e4f3a2b1c0d/agent", "runs:/7c2d3e4f5a6b4c7d8e9f0a1b2c3d4e5f/agent"
    docs = [{"apiVersion": "reconciler/v1", "kind": "RegisteredModel", "metadata": {"name": MODEL},
             "spec": {"aliases": {"a": files, "b": mlflow3, "c": "models:/m-4f0a6b7c8d9e4f1a2b3c4d5e6f7a8b9c"}}}]
    path = write(tmp_path, docs)
    applied = run(ws, "apply", path, "--auto-approve")
    assert applied.code == 0, applied.out + applied.err
    aliases = {a.alias_name: a.version_num for a in ws.client().registered_models.get(MODEL, include_aliases=True).aliases}
    assert aliases["b"] == aliases["c"] != aliases["a"]
    sources = {v.version: v.source for v in ws.client().model_versions.list(MODEL)}
    assert sources == {aliases["a"]: "dbfs:/databricks/mlflow-tracking/3141592653589793/5b1e2f0c9d8a4e7b8c6d5e4f3a2b1c0d/"
                                      "artifacts/agent", aliases["b"]: "models:/m-4f0a6b7c8d9e4f1a2b3c4d5e6f7a8b9c"}
    ws.reset_requests()
    again = run(ws, "apply", path, "--auto-approve")
    assert again.code == 0 and "No changes." in again.out
    # The only non-GET: MLflow's search for the logged model a run URI names (a read sent as POST).
    assert landed(ws) == [("POST", "/api/2.0/mlflow/logged-models/search")]


# ---- Workspace.register_version itself ---------------------------------------------------------------

def test_the_registration_never_goes_to_another_workspace_than_ours(logged, make_workspace, monkeypatch):
    """MLflow takes its credentials from the SDK's unified auth (the environment here); when they point
    at another host than the Workspace the reconciler talks to, nothing is sent."""
    from reconciler.errors import WorkspaceError
    from reconciler.workspace import Workspace

    elsewhere = make_workspace(seed(seconds=0))
    monkeypatch.setenv("DATABRICKS_HOST", elsewhere.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", elsewhere.token)
    ours = Workspace(logged.client())
    with pytest.raises(WorkspaceError, match=f"MLflow's credentials point at {elsewhere.url}, not {logged.url}"):
        ours.register_version(MODEL, SOURCE, tags={}, timeout=300)
    assert CREATE_VERSION not in landed(logged) + landed(elsewhere)


def test_an_interrupt_stops_a_registration_at_once_and_leaves_it_for_the_next_run(logged, monkeypatch):
    import threading
    import time

    from reconciler.errors import Interrupted
    from reconciler.workspace import Workspace

    monkeypatch.setenv("DATABRICKS_HOST", logged.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", logged.token)
    workspace = Workspace(logged.client())
    outcome: list[BaseException] = []

    def register() -> None:
        try:
            workspace.register_version(MODEL, SOURCE, tags={}, timeout=300)
        except BaseException as exc:  # what the caller would see
            outcome.append(exc)

    thread = threading.Thread(target=register)
    thread.start()
    deadline = time.monotonic() + 300  # a ceiling for a busy machine, not a measurement
    while CREATE_VERSION not in landed(logged):
        assert thread.is_alive() and time.monotonic() < deadline, outcome
        time.sleep(0.02)
    logged.set_latency(2000)  # the copy now takes seconds: the interrupt lands in the middle of it
    workspace.cancel.set()
    thread.join(timeout=300)
    logged.set_latency(0)
    assert not thread.is_alive() and len(outcome) == 1 and isinstance(outcome[0], Interrupted), outcome
    # The child is gone (register_version waited for it); what it created stays for the next plan.
    assert versions_from(logged) == [(4, "PENDING_REGISTRATION")]
