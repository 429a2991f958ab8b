"""The package as users install it: what its wheel requires, and MLflow used for what it does.

- The built wheel's `Requires-Dist` bounds `databricks-sdk` from below only, so the reconciler
  installs next to whatever newer SDK a Databricks runtime or a project already has.
- An MLmodel's declared resources are read with MLflow's own resource classes (mlflow-skinny's
  `mlflow/models/resources.py`), loaded only when an MLmodel is checked (that `--help` and
  `validate` import no MLflow is checked in test_validate.py).
"""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import requires
from pathlib import Path

from packaging.requirements import Requirement

from reconciler import live

REPO = Path(__file__).resolve().parents[1]


def sdk_requirement(lines: list[str]) -> Requirement:
    [sdk] = [r for r in map(Requirement, lines) if r.name == "databricks-sdk"]
    return sdk


def assert_lower_bound_only(requirement: Requirement) -> None:
    operators = {spec.operator for spec in requirement.specifier}
    assert operators == {">="}, f"databricks-sdk must have a lower bound only, not {requirement.specifier}"


def test_the_built_wheel_bounds_the_sdk_from_below_only(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info next to the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "reconciler", source / "reconciler", ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = (tmp_path / "dist").glob("reconciler-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(name))
    required = metadata.get_all("Requires-Dist")
    assert_lower_bound_only(sdk_requirement(required))
    assert {Requirement(r).name for r in required} >= {"databricks-sdk", "mlflow-skinny"}


def test_the_installed_package_says_the_same() -> None:
    assert_lower_bound_only(sdk_requirement(requires("reconciler") or []))


# ---- MLflow's resource classes --------------------------------------------------------------------

MLMODEL = {
    "flavors": {"python_function": {}},
    "resources": {"api_version": "1", "databricks": {
        "vector_search_index": [{"name": "main.agents.docs_index"}],
        "serving_endpoint": [{"name": "databricks-meta-llama-3-3-70b-instruct"}],
        "function": [{"name": "main.agents.lookup", "on_behalf_of_user": False}],
    }},
    "auth_policy": {"system_auth_policy": {"resources": {"api_version": "1", "databricks": {
        "sql_warehouse": [{"name": "abc123"}]}}}},
}


def test_declared_resources_are_read_with_mlflows_own_classes() -> None:
    module = live._mlflow_resources()
    assert Path(module.__file__).parts[-3:] == ("mlflow", "models", "resources.py")
    assert live.mlmodel_resources(MLMODEL) == {
        ("vector_search_index", "main.agents.docs_index"), ("serving_endpoint", "databricks-meta-llama-3-3-70b-instruct"),
        ("function", "main.agents.lookup"), ("sql_warehouse", "abc123")}
    # Every resource type the reconciler checks is one MLflow declares.
    from reconciler.workspace import RESOURCE_TYPES
    assert set(RESOURCE_TYPES) <= {t.value for t in module.ResourceType}


def test_a_resource_type_this_mlflow_does_not_know_is_still_read() -> None:
    newer = {"resources": {"api_version": "1", "databricks": {"quantum_index": [{"name": "q1"}, {"nameless": 1}],
                                                              "table": [{"name": "main.a.t"}, "junk"]}}}
    assert live.mlmodel_resources(newer) == {("quantum_index", "q1"), ("table", "main.a.t")}
    assert live.mlmodel_resources({"resources": "not a mapping", "auth_policy": []}) == set()
    assert live.mlmodel_resources(None) == set()
