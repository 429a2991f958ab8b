"""Contract tests: MLflow's own client (registry URI `databricks-uc`) registers model versions in the
local workspace over real HTTP, through the same create / upload / finalize protocol it uses with
Databricks, and the versions it makes are the ones the SDK's Unity Catalog routes show.

`mlflow.register_model` loads the logged MLmodel through `mlflow.models.Model` to check its
signature (`UcModelRegistryStore._validate_model_signature`), which imports numpy and pandas: these
tests need the `dev` extra.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from databricks.sdk.service.catalog import ModelVersionInfoStatus

from reconciler.localworkspace.clock import WORKSPACE_ID
from reconciler.localworkspace.server import LocalWorkspace

MODEL = "main.agents.support_agent"
MODEL_FILES = "/Models/main/agents/support_agent"
EXPERIMENT = "3141592653589793"
RUN = "5b1e2f0c9d8a4e7b8c6d5e4f3a2b1c0d"  # the model's files are in the run's artifacts, under agent/
RUN_SOURCE = f"dbfs:/databricks/mlflow-tracking/{EXPERIMENT}/{RUN}/artifacts/agent"
MLFLOW3_RUN = "7c2d3e4f5a6b4c7d8e9f0a1b2c3d4e5f"
LOGGED = "m-4f0a6b7c8d9e4f1a2b3c4d5e6f7a8b9c"  # logged by MLFLOW3_RUN
FAILING = "m-8e1b2c3d4e5f4a6b7c8d9e0f1a2b3c4d"  # its seeded registration plan fails
FAILURE = "Failed to copy the model version's files to managed storage: python_model.pkl is missing"
UNSIGNED = "m-2d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a"


def register(uri: str, **kwargs: Any) -> Any:
    import mlflow

    return mlflow.register_model(uri, MODEL, **kwargs)


def registry_calls(workspace: LocalWorkspace) -> list[tuple[str, str]]:
    """The registration protocol as the server saw it: UC registry calls (`model-versions/create`)
    and model file writes (`PUT MLmodel`)."""
    calls = []
    for entry in workspace.requests():
        path = entry["path"]
        if "/mlflow/unity-catalog/" in path:
            calls.append((entry["method"], path.split("/unity-catalog/", 1)[1]))
        elif path.startswith(f"/api/2.0/fs/files{MODEL_FILES}") and entry["method"] == "PUT":
            calls.append(("PUT", path.rsplit("/", 1)[1]))
    return calls


def test_register_from_a_run_artifact_path(mlflow_workspace: LocalWorkspace) -> None:
    version = register(f"runs:/{RUN}/agent")
    assert (version.version, version.status, version.source, version.run_id) == ("1", "READY", RUN_SOURCE, RUN)

    w = mlflow_workspace.client()
    info = w.model_versions.get(MODEL, 1)
    assert (info.status, info.source, info.run_id) == (ModelVersionInfoStatus.READY, RUN_SOURCE, RUN)
    assert info.run_workspace_id == int(WORKSPACE_ID)  # from the X-Databricks-Org-Id of the run's read
    # The MLmodel's resources, as Unity Catalog records them (the serving endpoint has no such form).
    assert info.model_version_dependencies.as_dict() == {"dependencies": [
        {"table": {"table_full_name": "main.agents.docs_index"}},
        {"function": {"function_full_name": "main.agents.lookup_order"}}]}
    # The files MLflow uploaded are the logged ones, byte for byte, MLmodel included.
    logged = f"/WorkspaceInternal/Mlflow/Artifacts/{EXPERIMENT}/Runs/{RUN}/artifacts/agent"
    for name in ("MLmodel", "python_model.pkl", "requirements.txt"):
        assert w.files.download(f"{MODEL_FILES}/1/{name}").contents.read() == \
            w.files.download(f"{logged}/{name}").contents.read()

    # The path MLflow's client took: ask the workspace, upload through the Files API, finalize.
    calls = registry_calls(mlflow_workspace)
    assert calls[:3] == [("POST", "registered-models/create"),  # 409: it exists, so MLflow goes on
                         ("POST", "model-versions/create"),
                         ("GET", "registered-models:is-databricks-sdk-models-artifact-repository-enabled")], calls
    assert calls[-1] == ("POST", "model-versions/finalize")
    assert sorted(calls[3:-1]) == [("PUT", "MLmodel"), ("PUT", "python_env.yaml"), ("PUT", "python_model.pkl"),
                                   ("PUT", "requirements.txt")]


def test_register_from_a_logged_model(mlflow_workspace: LocalWorkspace, mlflow_client: Any) -> None:
    import mlflow

    version = register(f"models:/{LOGGED}")
    assert (version.source, version.run_id, version.model_id) == (f"models:/{LOGGED}", MLFLOW3_RUN, LOGGED)
    info = mlflow_workspace.client().model_versions.get(MODEL, int(version.version))
    assert (info.status, info.source, info.run_id) == (ModelVersionInfoStatus.READY, f"models:/{LOGGED}", MLFLOW3_RUN)
    # register_model records the version on the logged model (`_model_registry/fluent.py`).
    assert json.loads(mlflow.get_logged_model(LOGGED).tags["mlflow.modelVersions"]) == [
        {"name": MODEL, "version": version.version}]


def test_a_runs_uri_without_files_resolves_to_the_logged_model(mlflow_workspace: LocalWorkspace) -> None:
    """MLflow 3 keeps the files on the logged model; `runs:/<run>/agent` finds it by name and run."""
    version = register(f"runs:/{MLFLOW3_RUN}/agent")
    assert (version.source, version.run_id) == (f"models:/{LOGGED}", MLFLOW3_RUN)


def test_tags_and_description_are_kept(mlflow_workspace: LocalWorkspace, mlflow_client: Any) -> None:
    """What a client can mark its own registrations with: version tags (MLflow) and the description,
    which Unity Catalog shows as the version's comment."""
    version = mlflow_client.create_model_version(MODEL, RUN_SOURCE, run_id=RUN, tags={"managed-by": "reconciler"},
                                                 description="registered from git")
    read = mlflow_client.get_model_version(MODEL, version.version)
    assert (read.tags, read.description) == ({"managed-by": "reconciler"}, "registered from git")
    assert mlflow_workspace.client().model_versions.get(MODEL, int(version.version)).comment == "registered from git"
    mlflow_client.set_model_version_tag(MODEL, version.version, "stage", "canary")
    mlflow_client.delete_model_version_tag(MODEL, version.version, "managed-by")
    assert mlflow_client.get_model_version(MODEL, version.version).tags == {"stage": "canary"}


def test_pending_registration_then_ready(mlflow_workspace: LocalWorkspace) -> None:
    """A registration held pending is PENDING_REGISTRATION everywhere, and READY once released."""
    mlflow_workspace.set_registration(seconds=3600)
    version = register(f"runs:/{RUN}/agent")
    assert version.status == "PENDING_REGISTRATION"
    w = mlflow_workspace.client()
    assert w.model_versions.get(MODEL, 1).status == ModelVersionInfoStatus.PENDING_REGISTRATION
    assert w.model_versions.get(MODEL, 1).status == ModelVersionInfoStatus.PENDING_REGISTRATION

    # Released from another process's point of view: the HTTP control.
    requests.post(f"{mlflow_workspace.url}/__sim/registration", json={"seconds": 0}, timeout=10).raise_for_status()
    assert w.model_versions.get(MODEL, 1).status == ModelVersionInfoStatus.READY


def test_a_failed_registration(mlflow_workspace: LocalWorkspace, mlflow_client: Any) -> None:
    """The seeded plan of the logged model fails its registration: FAILED_REGISTRATION with the
    message, which only MLflow's routes carry (Unity Catalog's `ModelVersionInfo` has no such field)."""
    version = register(f"models:/{FAILING}")
    assert (version.status, version.status_message) == ("FAILED_REGISTRATION", FAILURE)
    info = mlflow_workspace.client().model_versions.get(MODEL, int(version.version))
    assert info.status == ModelVersionInfoStatus.FAILED_REGISTRATION
    assert mlflow_client.get_model_version(MODEL, version.version).status_message == FAILURE


def test_a_failure_after_a_wait_for_any_source(mlflow_workspace: LocalWorkspace, mlflow_client: Any) -> None:
    mlflow_workspace.set_registration(seconds=3600, failure="Registration was cancelled")
    version = register(f"runs:/{RUN}/agent")
    assert version.status == "PENDING_REGISTRATION"
    mlflow_workspace.set_registration(seconds=0, failure="Registration was cancelled")
    read = mlflow_client.get_model_version(MODEL, version.version)
    assert (read.status, read.status_message) == ("FAILED_REGISTRATION", "Registration was cancelled")
    mlflow_workspace.set_registration()  # back to READY at once
    assert register(f"runs:/{RUN}/agent").status == "READY"


def test_aliases_in_mlflows_shape(mlflow_workspace: LocalWorkspace, mlflow_client: Any) -> None:
    first, second = register(f"runs:/{RUN}/agent"), register(f"models:/{LOGGED}")
    mlflow_client.set_registered_model_alias(MODEL, "champion", first.version)
    assert mlflow_client.get_model_version_by_alias(MODEL, "champion").version == first.version
    assert mlflow_client.get_model_version(MODEL, first.version).aliases == ["champion"]
    w = mlflow_workspace.client()
    raw = w.api_client.do("GET", "/api/2.0/mlflow/unity-catalog/registered-models/get", query={"name": MODEL})
    assert raw["registered_model"]["aliases"] == [{"alias": "champion", "version": "1"}]
    assert [(a.alias_name, a.version_num) for a in w.registered_models.get(MODEL, include_aliases=True).aliases] == [
        ("champion", 1)]

    mlflow_client.set_registered_model_alias(MODEL, "champion", second.version)  # moves it
    assert mlflow_client.get_registered_model(MODEL).aliases == {"champion": "2"}
    mlflow_client.delete_registered_model_alias(MODEL, "champion")
    assert mlflow_client.get_registered_model(MODEL).aliases == {}
    assert w.registered_models.get(MODEL, include_aliases=True).aliases == []


def test_search_model_versions(mlflow_workspace: LocalWorkspace, mlflow_client: Any) -> None:
    register(f"runs:/{RUN}/agent")
    register(f"models:/{LOGGED}")
    found = mlflow_client.search_model_versions(f"name = '{MODEL}'")
    assert [(v.version, v.run_id, v.status) for v in found] == [("1", RUN, "READY"), ("2", MLFLOW3_RUN, "READY")]
    assert [v.version for v in mlflow_client.search_model_versions(f"run_id = '{MLFLOW3_RUN}'")] == ["2"]
    assert mlflow_client.search_model_versions("name = 'main.agents.nobody'") == []


def test_an_unsigned_model_is_refused_before_anything_is_created(mlflow_workspace: LocalWorkspace) -> None:
    """MLflow's client checks the signature locally (Unity Catalog requires inputs and outputs)."""
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="did not contain any signature metadata"):
        register(f"models:/{UNSIGNED}")
    assert ("POST", "model-versions/create") not in registry_calls(mlflow_workspace)
    assert list(mlflow_workspace.client().model_versions.list(MODEL)) == []


def test_version_numbers_are_not_reused(mlflow_workspace: LocalWorkspace, mlflow_client: Any) -> None:
    from databricks.sdk.errors import NotFound

    assert register(f"runs:/{RUN}/agent").version == "1"
    mlflow_client.delete_model_version(MODEL, "1")
    with pytest.raises(NotFound):
        mlflow_workspace.client().model_versions.get(MODEL, 1)
    assert register(f"runs:/{RUN}/agent").version == "2"


def test_a_registration_whose_client_died_stays_pending_and_open(mlflow_workspace: LocalWorkspace) -> None:
    """Create without finalize, as a client killed mid-upload leaves it: PENDING_REGISTRATION and
    open to uploads until someone finalizes; files are sealed after, and finalizing again is harmless."""
    import io

    from databricks.sdk.errors import PermissionDenied

    w = mlflow_workspace.client()
    uc = "/api/2.0/mlflow/unity-catalog/model-versions"
    created = w.api_client.do("POST", f"{uc}/create", body={"name": MODEL, "source": RUN_SOURCE, "run_id": RUN})
    assert created["model_version"]["status"] == "PENDING_REGISTRATION"
    w.files.upload(f"{MODEL_FILES}/1/MLmodel", io.BytesIO(b"flavors: {}\n"), overwrite=True)
    assert w.model_versions.get(MODEL, 1).status == ModelVersionInfoStatus.PENDING_REGISTRATION

    finalized = w.api_client.do("POST", f"{uc}/finalize", body={"name": MODEL, "version": "1"})
    assert finalized["model_version"]["status"] == "READY"
    with pytest.raises(PermissionDenied, match="READY"):
        w.files.upload(f"{MODEL_FILES}/1/MLmodel", io.BytesIO(b"changed"), overwrite=True)
    assert w.api_client.do("POST", f"{uc}/finalize", body={"name": MODEL, "version": "1"}) == finalized
    assert w.files.download(f"{MODEL_FILES}/1/MLmodel").contents.read() == b"flavors: {}\n"


def test_a_client_forced_onto_storage_credentials_is_told_why(mlflow_workspace: LocalWorkspace,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """With MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC=false the client asks for cloud
    credentials, which this workspace does not vend; the version it created is left pending."""
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC", "false")
    with pytest.raises(MlflowException, match="vends no cloud storage credentials"):
        register(f"runs:/{RUN}/agent")
    calls = registry_calls(mlflow_workspace)
    assert ("GET", "registered-models:is-databricks-sdk-models-artifact-repository-enabled") not in calls
    assert calls[-1] == ("POST", "model-versions/generate-temporary-credentials")
    assert mlflow_workspace.client().model_versions.get(MODEL, 1).status == ModelVersionInfoStatus.PENDING_REGISTRATION


def test_registered_models_through_mlflow(mlflow_workspace: LocalWorkspace, mlflow_client: Any) -> None:
    """`register_model` creates the registered model when it is new (and tolerates one that exists)."""
    import mlflow

    version = mlflow.register_model(f"runs:/{RUN}/agent", "main.agents.triage")
    assert version.version == "1"
    model = mlflow_client.get_registered_model("main.agents.triage")
    assert (model.name, model.aliases) == ("main.agents.triage", {})
    assert mlflow_workspace.client().registered_models.get("main.agents.triage").full_name == "main.agents.triage"
    mlflow_client.update_registered_model("main.agents.triage", description="Triage agent")
    assert mlflow_workspace.client().registered_models.get("main.agents.triage").comment == "Triage agent"
    assert {m.name for m in mlflow_client.search_registered_models()} == {MODEL, "main.agents.triage"}


def test_only_a_ready_registration_can_be_served(mlflow_workspace: LocalWorkspace) -> None:
    """A version MLflow registered is served like a seeded one, once READY (`serving.py`)."""
    from databricks.sdk.errors import InvalidParameterValue
    from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput

    mlflow_workspace.set_registration(seconds=3600)
    version = register(f"models:/{LOGGED}")
    w = mlflow_workspace.client()
    config = EndpointCoreConfigInput(name="support-agent", served_entities=[ServedEntityInput(
        entity_name=MODEL, entity_version=version.version, workload_size="Small", scale_to_zero_enabled=True)])
    with pytest.raises(InvalidParameterValue, match="PENDING_REGISTRATION"):
        w.serving_endpoints.create(name="support-agent", config=config)
    mlflow_workspace.set_registration(seconds=0)
    endpoint = w.serving_endpoints.create_and_wait(name="support-agent", config=config)
    assert endpoint.config.served_entities[0].entity_version == version.version


def test_a_model_created_again_starts_at_version_1(mlflow_workspace: LocalWorkspace, mlflow_client: Any) -> None:
    assert register(f"runs:/{RUN}/agent").version == "1"
    assert register(f"runs:/{RUN}/agent").version == "2"
    mlflow_client.delete_registered_model(MODEL)
    assert register(f"runs:/{RUN}/agent").version == "1"
