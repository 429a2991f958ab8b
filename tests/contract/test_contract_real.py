"""The fidelity contract (contract.py) against the workspace in DATABRICKS_HOST: `make test-real`.

Opt-in (marker `real`, left out of `make test`) and slow: it creates a scratch catalog (or, with
RECONCILER_REAL_CATALOG=name, only a schema in that catalog), registers a tiny MLflow
ResponsesAgent there (two versions), serves it on a scratch endpoint through several config
updates and a replace (real updates take minutes each), then removes everything it made.
RECONCILER_CAPTURES=DIR saves what it saw, shaped like shared/reference/real-api/.
Authentication is the SDK's usual (DATABRICKS_HOST plus DATABRICKS_TOKEN, a profile, or OAuth M2M).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import pytest
from contract import Target, run_contract, scratch

pytestmark = pytest.mark.real


def register_probe(model: str, experiment: str) -> None:
    """Two versions of a ResponsesAgent that answers "ok", logged and registered with MLflow's own
    client (tracking URI `databricks`, registry URI `databricks-uc`)."""
    import mlflow
    from mlflow.pyfunc import ResponsesAgent
    from mlflow.types.responses import ResponsesAgentResponse

    class Probe(ResponsesAgent):
        def predict(self, request):  # type: ignore[no-untyped-def]
            return ResponsesAgentResponse(output=[self.create_text_output_item(text="ok", id="probe")])

    mlflow.set_tracking_uri("databricks")
    mlflow.set_registry_uri("databricks-uc")
    mlflow.set_experiment(experiment)
    for _ in range(2):
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(name="agent", python_model=Probe(), pip_requirements=["mlflow>=3"])
        mlflow.register_model(info.model_uri, model)


def test_the_contract_holds_on_the_real_workspace(tmp_path: Path) -> None:
    if not os.environ.get("DATABRICKS_HOST"):
        pytest.skip("DATABRICKS_HOST is not set: no real workspace to check the contract against")
    from databricks.sdk import WorkspaceClient

    client = WorkspaceClient()
    suffix = uuid.uuid4().hex[:8]
    given = os.environ.get("RECONCILER_REAL_CATALOG")
    captures = os.environ.get("RECONCILER_CAPTURES")
    target = Target("real", env={}, client=client, catalog=given or f"reconciler_contract_{suffix}",
                    schema=f"contract_{suffix}", endpoint=f"reconciler-contract-{suffix}", workdir=tmp_path,
                    captures=Path(captures) if captures else None)
    experiment = f"/Users/{client.current_user.me().user_name}/reconciler-contract-{suffix}"
    with scratch(target, own_catalog=given is None):
        try:
            register_probe(target.model, experiment)
            run_contract(target)
        finally:
            with contextlib.suppress(Exception):  # the contract's own failure is the one to see
                found = client.experiments.get_by_name(experiment).experiment
                if found and found.experiment_id:
                    client.experiments.delete_experiment(found.experiment_id)
