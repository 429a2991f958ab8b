"""Contract tests: MLflow's own client (tracking URI `databricks`) reads seeded runs, logged models and
their files from the local workspace over real HTTP; and the seed format for them is checked strictly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.localworkspace.server import LocalWorkspace

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
SEED = yaml.safe_load((SEEDS / "logged_agent.yaml").read_text())
EXPERIMENT = "3141592653589793"
RUN = "5b1e2f0c9d8a4e7b8c6d5e4f3a2b1c0d"  # the model's files are in the run's artifacts
MLFLOW3_RUN = "7c2d3e4f5a6b4c7d8e9f0a1b2c3d4e5f"  # logged the agent as logged model LOGGED
LOGGED = "m-4f0a6b7c8d9e4f1a2b3c4d5e6f7a8b9c"


def seeded_artifacts(kind: str, key: str, value: str) -> dict[str, Any]:
    entry = next(e for e in SEED[kind] if e[key] == value)
    return entry["artifacts"]  # type: ignore[no-any-return]


def test_get_run(mlflow_client: Any) -> None:
    run = mlflow_client.get_run(RUN)
    assert (run.info.run_id, run.info.experiment_id, run.info.status) == (RUN, EXPERIMENT, "FINISHED")
    assert run.info.artifact_uri == f"dbfs:/databricks/mlflow-tracking/{EXPERIMENT}/{RUN}/artifacts"
    assert run.info.run_name == "log-support-agent"
    assert run.data.params == {"llm_endpoint": "databricks-meta-llama-3-3-70b-instruct"}
    assert run.data.metrics == {"answer_relevance": 0.91}
    assert run.data.tags["mlflow.user"] == "local.user@example.com"


def test_a_run_records_the_models_it_logged(mlflow_client: Any) -> None:
    """MLflow 3 lists a run's logged models as its outputs (`register_model` reads them)."""
    outputs = mlflow_client.get_run(MLFLOW3_RUN).outputs
    assert [output.model_id for output in outputs.model_outputs] == [LOGGED]


def test_a_missing_run_is_resource_does_not_exist(mlflow_client: Any) -> None:
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as raised:
        mlflow_client.get_run("0" * 32)
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert f"Run '{'0' * 32}' not found." in str(raised.value)


def test_list_and_download_run_artifacts(mlflow_workspace: LocalWorkspace, mlflow_client: Any, tmp_path: Path) -> None:
    import mlflow

    assert [(f.path, f.is_dir) for f in mlflow_client.list_artifacts(RUN)] == [("agent", True)]
    listed = {f.path: f.file_size for f in mlflow_client.list_artifacts(RUN, "agent")}
    assert set(listed) == {"agent/MLmodel", "agent/python_env.yaml", "agent/python_model.pkl", "agent/requirements.txt"}
    assert listed["agent/requirements.txt"] == len("mlflow==3.17.2\nlanggraph==0.4.8\n")

    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{RUN}/agent", dst_path=str(tmp_path)))
    assert sorted(p.name for p in local.iterdir()) == ["MLmodel", "python_env.yaml", "python_model.pkl",
                                                       "requirements.txt"]
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert mlmodel == seeded_artifacts("mlflow_runs", "run_id", RUN)["agent/MLmodel"]
    # The SDK's Files API path, the one MLflow's Databricks run repository takes first.
    paths = [entry["path"] for entry in mlflow_workspace.requests()]
    root = f"/WorkspaceInternal/Mlflow/Artifacts/{EXPERIMENT}/Runs/{RUN}/artifacts"
    assert f"/api/2.0/fs/files{root}/agent/MLmodel" in paths
    assert not any(path.startswith("/api/2.0/mlflow/artifacts/") for path in paths)  # no fallback was needed


def test_get_a_logged_model_and_its_files(mlflow_client: Any, tmp_path: Path) -> None:
    import mlflow
    from mlflow.entities import LoggedModelStatus

    model = mlflow.get_logged_model(LOGGED)
    assert (model.model_id, model.name, model.experiment_id, model.source_run_id) == (
        LOGGED, "agent", EXPERIMENT, MLFLOW3_RUN)
    assert model.artifact_location == f"dbfs:/databricks/mlflow-tracking/{EXPERIMENT}/logged_models/{LOGGED}/artifacts"
    assert model.status == LoggedModelStatus.READY

    local = Path(mlflow.artifacts.download_artifacts(f"models:/{LOGGED}", dst_path=str(tmp_path)))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    seeded = seeded_artifacts("logged_models", "model_id", LOGGED)["MLmodel"]
    assert mlmodel["auth_policy"] == seeded["auth_policy"]
    assert mlmodel["metadata"] == {"task": "agent/v1/responses"}
    # Lists in the seed, JSON text in the file, as MLflow writes signatures.
    assert json.loads(mlmodel["signature"]["inputs"]) == seeded["signature"]["inputs"]
    assert (local / "requirements.txt").read_text() == "mlflow==3.17.2\n"


def test_a_missing_logged_model_is_not_found(mlflow_client: Any) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as raised:
        mlflow.get_logged_model("m-" + "0" * 32)
    assert raised.value.error_code == "NOT_FOUND"


def test_search_logged_models_by_name(mlflow_client: Any) -> None:
    found = mlflow_client.search_logged_models(experiment_ids=[EXPERIMENT], filter_string="name = 'agent'")
    assert sorted(m.model_id for m in found) == sorted(
        m["model_id"] for m in SEED["logged_models"] if m["name"] == "agent")
    assert mlflow_client.search_logged_models(experiment_ids=["42"], filter_string="name = 'agent'") == []


def test_tag_a_logged_model(mlflow_client: Any) -> None:
    import mlflow

    mlflow_client.set_logged_model_tags(LOGGED, {"reviewed": "yes"})
    assert mlflow.get_logged_model(LOGGED).tags["reviewed"] == "yes"


def test_run_artifacts_are_read_only(mlflow_workspace: LocalWorkspace) -> None:
    import io

    from databricks.sdk.errors import PermissionDenied

    w = mlflow_workspace.client()
    root = f"/WorkspaceInternal/Mlflow/Artifacts/{EXPERIMENT}/Runs/{RUN}/artifacts"
    with pytest.raises(PermissionDenied, match="read-only"):
        w.files.upload(f"{root}/agent/extra.txt", io.BytesIO(b"x"), overwrite=True)
    assert [e.name for e in w.files.list_directory_contents(f"{root}/agent")] == [
        "MLmodel", "python_env.yaml", "python_model.pkl", "requirements.txt"]


def test_files_of_another_experiment_are_not_found(mlflow_workspace: LocalWorkspace) -> None:
    from databricks.sdk.errors import NotFound

    w = mlflow_workspace.client()
    with pytest.raises(NotFound):
        w.files.download(f"/WorkspaceInternal/Mlflow/Artifacts/42/Runs/{RUN}/artifacts/agent/MLmodel")
    with pytest.raises(NotFound):
        w.files.get_directory_metadata(f"/WorkspaceInternal/Mlflow/Artifacts/{EXPERIMENT}/Runs/{RUN}/artifacts/nope")


# -- the seed format ------------------------------------------------------------------------------

RUN_ID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(("seed", "message", "reason"), [
    ({"mlflow_runs": [{"run_id": "abc", "experiment_id": "1"}]}, r"mlflow_runs\[0\] \(abc\): needs 'run_id': 32",
     "run ids have MLflow's grammar"),
    ({"mlflow_runs": [{"run_id": RUN_ID, "experiment_id": "exp"}]}, "needs 'experiment_id': decimal digits",
     "Databricks experiment ids are numbers"),
    ({"mlflow_runs": [{"run_id": RUN_ID, "experiment_id": "1", "artifact": {}}]}, "unknown field 'artifact'",
     "a typo is an error, not a silently empty run"),
    ({"mlflow_runs": [{"run_id": RUN_ID, "experiment_id": "1", "artifacts": {"../MLmodel": "x"}}]},
     "is not a relative file path", "artifact paths stay under the run's root"),
    ({"mlflow_runs": [{"run_id": RUN_ID, "experiment_id": "1", "artifacts": {"a": 3}}]}, "must be text, a mapping",
     "a number is not a file"),
    ({"mlflow_runs": [{"run_id": RUN_ID, "experiment_id": "1", "status": "DONE"}]}, "status must be one of",
     "run statuses are MLflow's"),
    ({"mlflow_runs": [{"run_id": RUN_ID, "experiment_id": "1", "registration": {"seconds": -1}}]},
     "registration seconds", "a registration cannot take negative time"),
    ({"mlflow_runs": [{"run_id": RUN_ID, "experiment_id": "1", "registration": {"fail": "x"}}]},
     "unknown field 'fail'", "registration plans are checked too"),
    ({"logged_models": [{"model_id": "m-1", "experiment_id": "1", "name": "agent"}]}, "needs 'model_id': 'm-'",
     "logged model ids have MLflow's grammar"),
    ({"logged_models": [{"model_id": "m-" + "a" * 32, "experiment_id": "1", "name": "agent",
                         "source_run_id": RUN_ID}]}, "is not a run of this seed", "a logged model's run must exist"),
    ({"mlflow_runs": [{"run_id": RUN_ID, "experiment_id": "1"}],
      "logged_models": [{"model_id": "m-" + "a" * 32, "experiment_id": "2", "name": "agent", "source_run_id": RUN_ID}]},
     "is in experiment 1, not 2", "a logged model lives in its run's experiment"),
    ({"logged_models": [{"model_id": "m-" + "a" * 32, "experiment_id": "1"}]}, "needs 'name'",
     "a logged model has the name it was logged under"),
    ({"logged_models": [{"model_id": "m-" + "a" * 32, "experiment_id": "1", "name": "agent",
                         "artifacts": {"MLmodel": {"signature": {"inputs": 3}}}}]}, "signature inputs must be",
     "a signature is column specs"),
    ({"mlflow_runs": {"run_id": RUN_ID}}, "mlflow_runs must be a list", "the sections are lists"),
])
def test_bad_mlflow_seeds_are_one_line_errors(seed: dict[str, Any], message: str, reason: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        LocalWorkspace(seed=seed)
    assert "\n" not in str(raised.value) and str(raised.value).startswith("seed"), reason


def test_a_seed_file_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"mlflow_runs:\n  - run_id: {RUN_ID}\n    experiment_id: '1'\n    colour: blue\n")
    with pytest.raises(ValueError, match=rf"^{bad}: mlflow_runs\[0\] \({RUN_ID}\): unknown field 'colour'"):
        LocalWorkspace(seed=bad)
