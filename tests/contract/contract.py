"""The fidelity contract: what issue 13 found the real API to do, as steps any workspace can be
checked against, the local one (`test_contract_local.py`, in `make test`) or a real one
(`test_contract_real.py`, `make test-real`, opt-in: it creates and removes a scratch catalog,
schema, model and endpoint, and real endpoint updates take minutes each).

The steps run in order on one scratch endpoint serving a tiny MLflow ResponsesAgent ("probe",
versions 1 and 2), through the real CLI in-process and, for the probes a tool would never send,
through the SDK's API client directly. Each step says what it checks and where the expectation
comes from. With `RECONCILER_CAPTURES=DIR` every answer a step looks at is saved as
`DIR/<step>_<what>.json` in the shape of shared/reference/real-api/ (source, kind, note, body),
the host replaced by `$DATABRICKS_HOST`: review them before sharing (they hold your workspace's
names and e-mail addresses).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.cli import main

PROBE_TASK = "agent/v1/responses"  # what MLflow writes for a ResponsesAgent (mlflow/pyfunc/__init__.py)


@dataclass
class Target:
    """A workspace under test, and the scratch objects the contract uses in it."""

    name: str  # "local" | "real"
    env: dict[str, str]  # what the CLI's environment gets on top of os.environ (auth)
    client: Any  # a databricks.sdk WorkspaceClient: "someone else" for raw probes and checks
    catalog: str
    schema: str
    endpoint: str
    workdir: Path
    captures: Path | None = None
    wait_seconds: float = 3600.0  # real endpoint updates take minutes; the local ones, none
    made: list[tuple[str, str]] = field(default_factory=list)  # what cleanup removes, newest last

    @property
    def model(self) -> str:
        return f"{self.catalog}.{self.schema}.probe"

    def cli(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        saved = dict(os.environ)
        os.environ.update(self.env)
        code = 0
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return code, out.getvalue(), err.getvalue()

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.api_client.do(method, path, body=body)

    def endpoint_json(self) -> dict[str, Any]:
        return self.api("GET", f"/api/2.0/serving-endpoints/{self.endpoint}")  # type: ignore[no-any-return]

    def capture(self, name: str, kind: str, body: Any, note: str) -> None:
        if self.captures is None:
            return
        host = self.client.config.host or ""
        text = json.dumps({"source_url": "$DATABRICKS_HOST", "source_title": "reconciler make test-real",
                           "kind": kind, "note": note, "body": body}, indent=2, sort_keys=False)
        self.captures.mkdir(parents=True, exist_ok=True)
        (self.captures / f"{name}.json").write_text(text.replace(host, "$DATABRICKS_HOST") + "\n", encoding="utf-8")


def manifest(target: Target, **changes: Any) -> dict[str, Any]:
    """The scratch endpoint's manifest: probe version 1, sized, not scaling to zero, a write-only
    field, an inference table in the scratch schema, and no `tags:` (so tags are not managed)."""
    entity: dict[str, Any] = {"name": "current", "entity_name": target.model, "entity_version": "1",
                              "workload_size": "Small", "scale_to_zero_enabled": True,
                              "burst_scaling_enabled": True, "environment_vars": {"ENABLE_MLFLOW_TRACING": "true"}}
    entity.update(changes.pop("entity", {}))
    for key in [k for k, v in entity.items() if v is None]:
        del entity[key]
    spec: dict[str, Any] = {"served_entities": [entity], "ai_gateway": {"inference_table_config": {
        "catalog_name": target.catalog, "schema_name": target.schema, "table_name_prefix": "probe", "enabled": True}}}
    spec.update(changes)
    return {"apiVersion": "reconciler/v1", "kind": "ServingEndpoint", "metadata": {"name": target.endpoint},
            "spec": spec}


def write(target: Target, document: dict[str, Any], name: str = "endpoint.yaml") -> str:
    path = target.workdir / name
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return str(path)


def refused(target: Target, call: Callable[[], Any]) -> Any:
    """The error a call the API must refuse raises (the step fails if it was accepted)."""
    from databricks.sdk.errors import DatabricksError

    try:
        call()
    except DatabricksError as exc:
        return exc
    raise AssertionError("the workspace accepted a request the contract says it refuses")


def config_version(target: Target) -> int:
    return int((target.endpoint_json().get("config") or {}).get("config_version") or 0)


def wait_not_updating(target: Target) -> dict[str, Any]:
    deadline = time.monotonic() + target.wait_seconds
    while True:
        got = target.endpoint_json()
        if (got.get("state") or {}).get("config_update") != "IN_PROGRESS":
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{target.endpoint} still updating after {target.wait_seconds:.0f}s")
        time.sleep(min(30.0, max(1.0, target.wait_seconds / 100)))


def apply(target: Target, path: str, *extra: str) -> None:
    code, out, err = target.cli("apply", path, "--auto-approve", "--timeout", f"{target.wait_seconds:.0f}s", *extra)
    assert code == 0, out + err


def no_changes(target: Target, path: str) -> None:
    code, out, err = target.cli("plan", path, "--detailed-exitcode")
    assert code == 0, out + err
    assert out.endswith("No changes. The workspace matches the manifests.\n"), out


def plan_change(target: Target, path: str) -> dict[str, Any]:
    code, out, err = target.cli("plan", path, "--format", "json")
    assert code == 0, err
    return next(c for c in json.loads(out)["changes"] if c["kind"] == "serving_endpoint")  # type: ignore[no-any-return]


# ---- the steps ------------------------------------------------------------------------------------------

def step_create(target: Target) -> None:
    """Create through apply, then GET: the real extras (the `served_models` mirror, databricks/cli#3880;
    `effective_budget_policy_id` never `budget_policy_id`, cli model_serving_endpoints.yml; the
    server-set agent `task`) and no write-only field (`burst_scaling_enabled`, input_only)."""
    apply(target, write(target, manifest(target)))
    target.made.append(("endpoint", target.endpoint))
    got = target.endpoint_json()
    target.capture("create_endpoint_get", "endpoint_get", got, "GET after the contract's create (apply)")
    config = got["config"]
    assert [m["model_name"] for m in config["served_models"]] == [target.model]
    assert "budget_policy_id" not in got
    assert got.get("task") == PROBE_TASK, got.get("task")
    assert "burst_scaling_enabled" not in json.dumps(config)


def step_no_endless_rollouts(target: Target) -> None:
    """The second plan shows no changes: server-filled values, the write-only field and unknown
    fields are no change (issue 13 problems 1 and 6)."""
    no_changes(target, write(target, manifest(target)))


def step_agent_gateway_preflight(target: Target) -> None:
    """"agent endpoints currently only support inference tables" (SDK put_ai_gateway docstring):
    plan refuses usage tracking on the agent endpoint before anything is written."""
    before = config_version(target)
    document = manifest(target)
    document["spec"]["ai_gateway"]["usage_tracking_config"] = {"enabled": True}
    code, out, err = target.cli("apply", write(target, document, "usage.yaml"), "--auto-approve")
    assert code == 1 and "is not supported on agent endpoints" in err, out + err
    assert config_version(target) == before and "usage_tracking_config" not in json.dumps(
        target.endpoint_json().get("ai_gateway") or {})


def step_raw_probes(target: Target) -> None:
    """What the real API refuses, asked directly: an enabled inference table sent again on an agent
    endpoint ("Inference tables is already enabled", databricks-agents 1.13 deployments.py); a
    config update without scale_to_zero_enabled ("scaleToZeroEnabled is undefined",
    terraform-provider-databricks #4064); a legacy inference table ("can not be enabled" since
    2026-02-20, Databricks docs). Each answer is captured."""
    table = manifest(target)["spec"]["ai_gateway"]
    again = refused(target, lambda: target.api("PUT", f"/api/2.0/serving-endpoints/{target.endpoint}/ai-gateway",
                                                table))
    target.capture("probe_ai_gateway_already_enabled", "error", {"error_code": again.error_code,
                                                                 "message": str(again)},
                   "PUT ai-gateway re-enabling the enabled inference table of an agent endpoint")
    assert "already enabled" in str(again)
    entity = {"name": "current", "entity_name": target.model, "entity_version": "1", "workload_size": "Small"}
    undefined = refused(target, lambda: target.api("PUT", f"/api/2.0/serving-endpoints/{target.endpoint}/config",
                                                   {"served_entities": [entity]}))
    target.capture("probe_config_without_scale_to_zero", "error", {"error_code": undefined.error_code,
                                                                   "message": str(undefined)},
                   "PUT config whose scaling entity leaves out scale_to_zero_enabled")
    assert "scaleToZeroEnabled" in str(undefined)
    target.made.append(("endpoint", f"{target.endpoint}-legacy"))  # removed at the end if it was made after all
    legacy = refused(target, lambda: target.api("POST", "/api/2.0/serving-endpoints", {
        "name": f"{target.endpoint}-legacy", "config": {
            "served_entities": [{**entity, "scale_to_zero_enabled": True}],
            "auto_capture_config": {"catalog_name": target.catalog, "schema_name": target.schema,
                                    "table_name_prefix": "legacy", "enabled": True}}}))
    target.capture("probe_legacy_inference_table", "error", {"error_code": legacy.error_code, "message": str(legacy)},
                   "POST serving-endpoints with auto_capture_config enabled")


def step_switch_and_revert(target: Target) -> None:
    """Switching the entity from a workload size to provisioned concurrency is one config write, and
    reverting that commit is another: the plan names each field reset only because the manifest
    leaves it out (issue 13 problems 5 and 6; SDK: no workload_size with provisioned concurrency)."""
    before = config_version(target)
    switched = manifest(target, entity={"workload_size": None, "min_provisioned_concurrency": 0,
                                        "max_provisioned_concurrency": 4})
    apply(target, write(target, switched, "switched.yaml"))
    assert config_version(target) == before + 1
    no_changes(target, write(target, switched, "switched.yaml"))
    target.capture("switch_endpoint_get", "endpoint_get", target.endpoint_json(),
                   "GET after switching the entity to provisioned concurrency")
    reverted = write(target, manifest(target))
    change = plan_change(target, reverted)
    assert {"path": "served_entities[current].max_provisioned_concurrency", "before": 4, "after": None} \
        in change["diff"]
    assert any("only because the manifest leaves max_provisioned_concurrency out" in n for n in change["notes"])
    apply(target, reverted)
    assert config_version(target) == before + 2
    no_changes(target, reverted)


def step_replace_keeps_what_is_not_managed(target: Target) -> None:
    """A replace (description is fixed at creation) keeps tags the manifest does not manage and the
    AI gateway (issue 13 problem 4)."""
    target.api("PATCH", f"/api/2.0/serving-endpoints/{target.endpoint}/tags",
               {"add_tags": [{"key": "owner-team", "value": "contract"}]})
    gateway = target.endpoint_json().get("ai_gateway")
    path = write(target, manifest(target, description="reconciler contract: replaced"), "replace.yaml")
    apply(target, path, "--allow-replace")
    got = target.endpoint_json()
    target.capture("replace_endpoint_get", "endpoint_get", got, "GET after a replace that keeps unmanaged settings")
    assert got.get("description") == "reconciler contract: replaced"
    assert {"key": "owner-team", "value": "contract"} in got.get("tags", [])
    assert got.get("ai_gateway") == gateway
    no_changes(target, path)


STEPS = (step_create, step_no_endless_rollouts, step_agent_gateway_preflight, step_raw_probes, step_switch_and_revert,
         step_replace_keeps_what_is_not_managed)


def run_contract(target: Target) -> None:
    for step in STEPS:
        try:
            step(target)
        except AssertionError as exc:
            raise AssertionError(f"{target.name} workspace, {step.__name__}: {exc}") from exc


# ---- scratch objects -------------------------------------------------------------------------------------

@contextlib.contextmanager
def scratch(target: Target, *, own_catalog: bool) -> Iterator[Target]:
    """Create the scratch catalog (unless given) and schema; remove all the contract made, whatever
    happens (endpoints first, then the schema or catalog with what it holds)."""
    client = target.client
    try:
        if own_catalog:
            client.catalogs.create(target.catalog, comment="reconciler contract tests (scratch)")
            target.made.append(("catalog", target.catalog))
        client.schemas.create(target.schema, target.catalog, comment="reconciler contract tests (scratch)")
        target.made.append(("schema", f"{target.catalog}.{target.schema}"))
        yield target
    finally:
        for kind, name in reversed(target.made):
            with contextlib.suppress(Exception):
                if kind == "endpoint":
                    client.serving_endpoints.delete(name)
                elif kind == "schema" and not own_catalog:
                    client.schemas.delete(name, force=True)
                elif kind == "catalog":
                    client.catalogs.delete(name, force=True)
