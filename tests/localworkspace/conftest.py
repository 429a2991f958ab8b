"""Fixtures of the local workspace's contract tests (the shared ones are in tests/conftest.py).

- `ws`: `support_agent.yaml` plus `fidelity.yaml` (principals with tokens, grants, an agent model
  and endpoints only the server could have made).
- `mlflow_workspace`: a workspace seeded with `tests/seeds/logged_agent.yaml`, and the process set up
  the way a user points MLflow at Databricks: `DATABRICKS_HOST` / `DATABRICKS_TOKEN`, tracking URI
  `databricks`, registry URI `databricks-uc` (environment variables, restored after the test).
- `mlflow_client`: `MlflowClient(tracking_uri="databricks", registry_uri="databricks-uc")` for it.
Nothing in MLflow is patched: its requests reach the workspace over real HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.localworkspace.server import LocalWorkspace

SEEDS = Path(__file__).resolve().parents[1] / "seeds"

# Other ways the SDK's unified auth could pick credentials up: cleared so DATABRICKS_TOKEN is the one.
OTHER_AUTH = ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET",
              "DATABRICKS_AUTH_TYPE", "DATABRICKS_USERNAME", "DATABRICKS_PASSWORD",
              "MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC", "MLFLOW_ENABLE_UC_NATIVE_MODEL_REGISTRY")


@pytest.fixture
def ws(make_workspace: Any) -> Any:
    """`support_agent.yaml` plus `fidelity.yaml`: principals with tokens, grants, an agent model and
    endpoints only the server could have made."""
    workspace = make_workspace(SEEDS / "support_agent.yaml")
    workspace.add_seed(SEEDS / "fidelity.yaml")
    return workspace


@pytest.fixture
def mlflow_workspace(make_workspace: Callable[..., LocalWorkspace], monkeypatch: pytest.MonkeyPatch,
                     tmp_path: Any) -> LocalWorkspace:
    workspace = make_workspace(SEEDS / "logged_agent.yaml")
    for name in OTHER_AUTH:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABRICKS_HOST", workspace.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", workspace.token)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-databrickscfg"))  # no ~/.databrickscfg profile
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "databricks")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "databricks-uc")
    return workspace


@pytest.fixture
def mlflow_client(mlflow_workspace: LocalWorkspace) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri="databricks", registry_uri="databricks-uc")
