"""The `model_version` kind's pure core, table-driven: the URIs a version may be written as, what a
logged MLmodel must hold to be registered, what the plan shows of a logged agent, how a source that
is already registered becomes its number, and what a re-run does with versions a crash left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.kinds import model_version
from reconciler.live import LiveState
from reconciler.manifests.loader import load_manifests
from reconciler.plan import Action, Change, Operation
from reconciler.terms import is_source, version_label
from reconciler.workspace import tracking_files_root

MODEL = "main.agents.support_agent"
RUN = "5b1e2f0c9d8a4e7b8c6d5e4f3a2b1c0d"
LOGGED = "m-4f0a6b7c8d9e4f1a2b3c4d5e6f7a8b9c"
SOURCE = f"models:/{LOGGED}"
NAME = f"{MODEL}@{SOURCE}"
ADDRESS = f"model_version.{NAME}"
OURS = [{"key": "managed-by", "value": "reconciler"}, {"key": "reconciler-source", "value": SOURCE}]
SIGNED = {"inputs": '[{"type": "string"}]', "outputs": '[{"type": "string"}]', "params": None}


@pytest.mark.parametrize("value, source, reason", [
    (SOURCE, True, "an MLflow 3 logged model, as log_model prints it"),
    (f"runs:/{RUN}/agent", True, "a run's artifact path, the MLflow 2 form"),
    (f"runs:/{RUN}/nested/agent.v2", True, "a path of several parts"),
    (f"runs:/{RUN}", False, "a run without the path of the model in it"),
    (f"runs:/{RUN}/../agent", False, "a path that climbs out of the run"),
    (f"runs:/{RUN}/a//b", False, "an empty path part"),
    ("models:/main.agents.support_agent/3", False, "a registered version: write its number"),
    ("models:/m-4F0A6B7C8D9E4F1A2B3C4D5E6F7A8B9C", False, "ids are lower-case hex"),
    ("3", False, "a number is a number"),
    (3, False, "not text"),
])
def test_what_names_a_version_by_its_source(value: Any, source: bool, reason: str) -> None:
    assert is_source(value) is source, reason


def test_operations_name_versions_by_number_or_by_source() -> None:
    assert (version_label("3"), version_label(SOURCE)) == ("v3", SOURCE)


@pytest.mark.parametrize("uri, root, reason", [
    (f"dbfs:/databricks/mlflow-tracking/31/{RUN}/artifacts", ["WorkspaceInternal", "Mlflow", "Artifacts", "31", "Runs",
                                                             RUN, "artifacts"], "a run's root"),
    (f"dbfs:/databricks/mlflow-tracking/31/logged_models/{LOGGED}/artifacts",
     ["WorkspaceInternal", "Mlflow", "Artifacts", "31", "LoggedModels", LOGGED, "artifacts"], "a logged model's root"),
    ("s3://bucket/mlruns/1/abc/artifacts", None, "outside the workspace's artifact store"),
    ("dbfs:/databricks/mlflow-tracking/31/tr-123/artifacts", None, "a trace, not a run"),
    (f"dbfs:/databricks/mlflow-tracking/31/{RUN}/../../x", None, "a path that climbs"),
])
def test_where_mlflow_keeps_a_runs_or_logged_models_files(uri: str, root: list[str] | None, reason: str) -> None:
    assert tracking_files_root(uri) == root, reason


@pytest.mark.parametrize("mlmodel, problems, reason", [
    ({"signature": SIGNED, "mlflow_version": "3.1.0"}, [], "signed, recent MLflow"),
    ({"mlflow_version": "3.1.0"}, ["has no signature"], "Unity Catalog refuses a model without one"),
    ({"signature": {"inputs": '[{"type": "string"}]', "outputs": None}}, ["has a signature with inputs only"],
     "outputs are required too"),
    ({"signature": {"inputs": "null", "outputs": "null"}}, ["has no signature"], "MLflow writes absent parts as null"),
    ({"signature": SIGNED, "mlflow_version": "2.17.0",
      "resources": {"databricks": {"table": [{"name": "main.agents.docs"}], "function": [{"name": "main.a.f"}]}}},
     ["declares table resources, which need MLflow 2.18.0 or later"], "tables came in 2.18.0, functions in 2.16.1"),
    ({"signature": SIGNED, "mlflow_version": "2.13.0", "auth_policy": {"system_auth_policy": {"resources": {
        "databricks": {"serving_endpoint": [{"name": "llm"}]}}}}},
     ["declares serving_endpoint resources, which need MLflow 2.13.1 or later"], "system auth resources count too"),
    ({"signature": SIGNED, "mlflow_version": "2.18.0.dev0",
      "resources": {"databricks": {"table": [{"name": "t"}], "app": [{"name": "a"}]}}}, [],
     "a dev build of the release is that release; app has no documented minimum"),
])
def test_what_a_logged_model_needs_to_be_registered(mlmodel: dict[str, Any], problems: list[str], reason: str) -> None:
    found = model_version.logged_problems(mlmodel)
    assert len(found) == len(problems), (reason, found)
    for text, expected in zip(found, problems, strict=True):
        assert text.startswith(expected), (reason, text)


def test_the_plan_shows_what_the_agent_was_logged_with() -> None:
    logged = {"model_id": LOGGED, "run_id": RUN, "mlmodel": {
        "mlflow_version": "3.1.0", "signature": SIGNED,
        "auth_policy": {"system_auth_policy": {"resources": {"databricks": {
            "serving_endpoint": [{"name": "llm"}], "vector_search_index": [{"name": "main.agents.docs_index"}]}}},
            "user_auth_policy": {"api_scopes": ["vectorsearch.vector-search-indexes", "serving.serving-endpoints"]}}}}
    assert model_version.logged_view(SOURCE, logged) == {
        "source": SOURCE, "run_id": RUN, "model_id": LOGGED, "mlflow_version": "3.1.0",
        "logged_resources": {"serving_endpoint": ["llm"], "vector_search_index": ["main.agents.docs_index"]},
        "user_api_scopes": ["serving.serving-endpoints", "vectorsearch.vector-search-indexes"]}


def version(number: int, status: str = "READY", tags: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"name": MODEL, "version": str(number), "status": status, "source": SOURCE, "tags": tags or []}


@pytest.mark.parametrize("versions, action, operations, reason", [
    ([], Action.CREATE, ["register_version"], "nothing registered from it yet"),
    ([version(7)], Action.NOOP, [], "registered (by hand or by us): that version"),
    ([version(6, "FAILED_REGISTRATION"), version(7)], Action.NOOP, [], "a READY one wins over a failed one"),
    ([version(8, "PENDING_REGISTRATION", OURS)], Action.CREATE, ["delete_version", "register_version"],
     "ours, left by a crashed run: deleted and registered again"),
    ([version(8, "FAILED_REGISTRATION", OURS)], Action.CREATE, ["delete_version", "register_version"],
     "ours, failed: deleted and registered again"),
    ([version(8, "FAILED_REGISTRATION")], Action.CREATE, ["register_version"], "somebody else's failure: left alone"),
    ([version(8, "PENDING_REGISTRATION", OURS + [{"key": "reconciler-stack", "value": "other"}])], Action.CREATE,
     ["register_version"], "another stack's is not ours to delete (and its PENDING one stops the plan: check)"),
])
def test_plan(versions: list[dict[str, Any]], action: Action, operations: list[str], reason: str) -> None:
    change = model_version.plan(NAME, {"logged": {"model_id": LOGGED}, "versions": versions}, stack=None)
    assert (change.action, [op.name for op in change.operations]) == (action, operations), reason
    if action is Action.NOOP:
        assert change.notes == ["version 7 (already registered)"] and change.desired == {
            "model": MODEL, "source": SOURCE, "version": "7"}


def manifests(tmp_path: Path, aliases: dict[str, Any], entity_version: Any = None) -> Any:
    documents: list[dict[str, Any]] = [{"apiVersion": "reconciler/v1", "kind": "RegisteredModel",
                                        "metadata": {"name": MODEL}, "spec": {"aliases": aliases}}]
    if entity_version is not None:
        documents.append({"apiVersion": "reconciler/v1", "kind": "ServingEndpoint", "metadata": {"name": "bot"},
                          "spec": {"served_entities": [{"name": "new", "entity_name": MODEL,
                                                        "entity_version": entity_version, "workload_size": "Small",
                                                        "scale_to_zero_enabled": False}]}})
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump_all(documents), encoding="utf-8")
    return load_manifests([str(path)], {})


def test_a_registered_source_is_its_number_for_every_other_kind(tmp_path: Path) -> None:
    written = manifests(tmp_path, {"champion": 3, "challenger": SOURCE}, entity_version=SOURCE)
    assert set(model_version.references(written)) == {NAME}
    live = LiveState()
    live.objects[model_version.KEY] = {NAME: {"logged": {"mlmodel": {"flavors": {}}}, "versions": [version(7)]}}
    pinned = model_version.resolve(written, live)
    assert pinned.models[MODEL].manifest.spec.aliases == {"champion": 3, "challenger": 7}
    assert pinned.endpoints["bot"].manifest.spec.served_entities[0].entity_version == "7"
    assert written.models[MODEL].manifest.spec.aliases["challenger"] == SOURCE  # the manifests as written stay
    assert live.mlmodels == {}  # the registered version's own MLmodel is read where it is served


def test_a_source_to_register_stays_a_source_and_its_logged_mlmodel_is_checked(tmp_path: Path) -> None:
    written = manifests(tmp_path, {"challenger": SOURCE})
    live = LiveState()
    logged = {"mlflow_version": "3.1.0"}
    live.objects[model_version.KEY] = {NAME: {"logged": {"mlmodel": logged}, "versions": []}}
    pinned = model_version.resolve(written, live)
    assert pinned.models[MODEL].manifest.spec.aliases == {"challenger": SOURCE}
    assert live.mlmodels == {(MODEL, SOURCE): logged}
    live.objects["registered_model"] = {MODEL: {"aliases": []}}
    problems, _ = model_version.check(written, live, None)
    assert [p.message for p in problems] == [f"the agent logged as {SOURCE} has no signature; "
                                             f"{model_version.SIGNATURE_RULE}"]
    assert problems[0].line == 7  # at the alias that names it


def test_alias_moves_to_a_version_being_registered_wait_for_it() -> None:
    registering = Change(ADDRESS, model_version.KEY, NAME, Action.CREATE, desired={"model": MODEL, "source": SOURCE})
    move = Operation("set_alias", f"set_alias(challenger → {SOURCE})", args={"alias": "challenger", "version": SOURCE})
    other = Operation("set_alias", "set_alias(champion → 3)", args={"alias": "champion", "version": 3})
    owner = Change(f"registered_model.{MODEL}", "registered_model", MODEL, Action.UPDATE, operations=[other, move])
    model_version.link([owner, registering])
    assert (move.after, other.after) == ([ADDRESS], [])
    assert owner.notes == [f"alias challenger: {SOURCE} is registered first ({ADDRESS})"]


def test_an_already_registered_source_is_named_where_it_is_used() -> None:
    found = Change(ADDRESS, model_version.KEY, NAME, Action.NOOP, desired={"model": MODEL, "source": SOURCE,
                                                                           "version": "7"})
    move = Operation("set_alias", "set_alias(champion → 7)", args={"alias": "champion", "version": 7})
    owner = Change(f"registered_model.{MODEL}", "registered_model", MODEL, Action.UPDATE, operations=[move])
    model_version.link([owner, found])
    assert move.after == [] and owner.notes == [f"alias champion: version 7 is {SOURCE} (already registered)"]


def test_a_registered_version_outlives_the_run_that_logged_it(tmp_path: Path) -> None:
    """Found by our tag after its logged model was deleted: still that version, and no problem."""
    written = manifests(tmp_path, {"challenger": SOURCE})
    live = LiveState()
    live.objects[model_version.KEY] = {NAME: {"logged": {"problem": f"logged model {LOGGED} does not exist"},
                                              "versions": [version(7, tags=OURS)]}}
    live.objects["registered_model"] = {MODEL: {"aliases": []}}
    assert model_version.check(written, live, None) == ([], [])
    assert model_version.resolve(written, live).models[MODEL].manifest.spec.aliases == {"challenger": 7}
