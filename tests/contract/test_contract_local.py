"""The fidelity contract (contract.py) against the local workspace, on every `make test`: the
same steps `make test-real` runs against a real one, so neither side can drift unnoticed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contract import PROBE_TASK, Target, run_contract, scratch

PROBE_MLMODEL = {"artifact_path": "agent", "flavors": {"python_function": {"loader_module": "mlflow.pyfunc.model"}},
                 "metadata": {"task": PROBE_TASK}}


def test_the_contract_holds_on_the_local_workspace(make_workspace: Any, tmp_path: Path) -> None:
    ws = make_workspace()
    target = Target("local", env={"DATABRICKS_HOST": ws.url, "DATABRICKS_TOKEN": ws.token}, client=ws.client(),
                    catalog="reconciler_contract", schema="run_1", endpoint="reconciler-contract",
                    workdir=tmp_path, captures=tmp_path / "captures", wait_seconds=60)
    with scratch(target, own_catalog=True):
        ws.add_seed({"registered_models": [{"full_name": target.model, "versions": [
            {"version": v, "mlmodel": PROBE_MLMODEL} for v in (1, 2)]}]})
        run_contract(target)
    # Everything it made is gone, and what it saw was saved for review.
    assert ws.client().api_client.do("GET", "/api/2.0/serving-endpoints")["endpoints"] == []
    assert {p.name for p in (tmp_path / "captures").iterdir()} == {
        "create_endpoint_get.json", "probe_ai_gateway_already_enabled.json", "probe_config_without_scale_to_zero.json",
        "probe_legacy_inference_table.json", "switch_endpoint_get.json", "replace_endpoint_get.json"}
    assert ws.url not in (tmp_path / "captures" / "create_endpoint_get.json").read_text()
