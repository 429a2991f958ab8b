"""Checks of the manifests against what the workspace holds, made before anything is written.

Pure: works on the LiveState read by live.py. Errors (the plan fails, exit 1, nothing to apply)
point at the manifest field that caused them; warnings are printed with the plan. Besides model
versions, secrets, resources and MLmodels:
- AI gateway features an agent endpoint does not support ("agent endpoints currently only support
  inference tables", SDK 0.156 docstring of `put_ai_gateway`) are errors, found before any write.
  What makes an endpoint an agent endpoint, with the evidence named in the message: once it exists,
  the `task` the server set on it; before, the MLmodel `metadata.task` of a version it will serve
  (terms.AGENT_TASK cites both);
- an endpoint that still carries a legacy inference table (`auto_capture_config`) is a warning:
  unsupported since March 20, 2026, and config writes leave it alone (normalize.py rule 12);
- an Agent Bricks endpoint (READY with `config: {}`, real-api/endpoint_list_01.json) shows no
  served entities through the API: a manifest cannot describe it, so naming it is an error;
- enum values this release does not know are warnings again (checks.check_warnings).
"""

from __future__ import annotations

from typing import Any

from reconciler.errors import Problem
from reconciler.live import LiveState, mlmodel_resources
from reconciler.manifests.checks import check_warnings
from reconciler.manifests.loader import Loaded, Manifests
from reconciler.manifests.model import ServingEndpoint
from reconciler.normalize import is_agent, legacy_inference_table
from reconciler.terms import SECRET_REF, agent_task, is_source
from reconciler.workspace import RESOURCE_TYPES

# AI gateway features beyond inference tables, and whether a manifest's value turns each on.
AGENT_UNSUPPORTED = {
    "usage_tracking_config": lambda value: bool(value.get("enabled")),
    "rate_limits": bool,
    "guardrails": lambda value: any(value.values()),
    "fallback_config": lambda value: bool(value.get("enabled")),
}

FIX_VERSION = "register it first (mlflow.register_model) or point at another version"


def preflight(manifests: Manifests, live: LiveState, resolved: dict[str, list[str]]) -> tuple[list[Problem], list[str]]:
    problems: list[Problem] = []
    warnings: list[str] = []
    for name, loaded in manifests.models.items():
        for alias, version in (loaded.manifest.spec.aliases or {}).items():
            message = _version_problem(live, name, str(version))
            if message:
                problems.append(loaded.problem(("spec", "aliases", alias), f"alias {alias}: {message}"))
    warnings += [str(w) for w in check_warnings(manifests)]
    for name, loaded in manifests.endpoints.items():
        spec = loaded.manifest.spec
        api = live.endpoints.get(name)
        problems += _agent_gateway_problems(loaded, api, live, resolved[name])
        legacy = legacy_inference_table(api)
        if legacy is not None:
            table = ".".join(str(legacy.get(k)) for k in ("catalog_name", "schema_name", "table_name_prefix")
                             if legacy.get(k))
            warnings.append(f"serving_endpoint.{name} still has a legacy inference table (auto_capture_config"
                            f"{': ' + table if table else ''}), unsupported since March 20, 2026; config writes leave "
                            "it as it is: disable it (a config update with auto_capture_config: {enabled: false}) and "
                            "log to ai_gateway.inference_table_config instead")
        if api is not None and api.get("config") == {}:
            problems.append(loaded.problem(("metadata", "name"), f"serving endpoint '{name}' is READY with an empty "
                                           "config, as Agent Bricks endpoints are: its served entities are not "
                                           "visible through the API; manage it in Agent Bricks and remove this "
                                           "manifest"))
        for i, (entity, version) in enumerate(zip(spec.served_entities, resolved[name], strict=True)):
            loc = ("spec", "served_entities", i, "alias" if entity.alias else "entity_version")
            message = _version_problem(live, entity.entity_name, version)
            if message:
                problems.append(loaded.problem(loc, message))
            problems += _secret_problems(loaded, i, live)
            key = (entity.entity_name, version)
            if key in live.mlmodels:
                problems += _mlmodel_problems(loaded, i, version, live, warnings)
        for kind, names in (spec.resources.model_dump(exclude_none=True) if spec.resources else {}).items():
            for j, resource in enumerate(names):
                if live.resources.get((kind, resource)) is False:
                    problems.append(loaded.problem(("spec", "resources", kind, j),
                                                   f"{kind} '{resource}' does not exist in the workspace; create it "
                                                   "or remove it from resources"))
    return problems, warnings


def _agent_gateway_problems(loaded: Loaded[ServingEndpoint], api: dict[str, Any] | None, live: LiveState,
                            versions: list[str]) -> list[Problem]:
    gateway = loaded.manifest.spec.ai_gateway
    used = [key for key, enabled in AGENT_UNSUPPORTED.items()
            if gateway is not None and getattr(gateway, key) is not None and enabled(_plain(getattr(gateway, key)))]
    if not used:
        return []
    evidence = None
    if is_agent(api):
        evidence = f"the workspace set its task to {api['task']}"  # type: ignore[index]
    for entity, version in zip(loaded.manifest.spec.served_entities, versions, strict=True):
        task = agent_task(live.mlmodels.get((entity.entity_name, version)))
        if evidence is None and task is not None:
            evidence = f"version {version} of '{entity.entity_name}' was logged as {task} (MLmodel metadata.task)"
    if evidence is None:
        return []
    return [loaded.problem(("spec", "ai_gateway", key), f"ai_gateway.{key} is not supported on agent endpoints, and "
                                                        f"'{loaded.name}' serves an agent ({evidence}): agent "
                                                        "endpoints support only inference tables; remove "
                                                        f"ai_gateway.{key}") for key in used]


def _plain(value: Any) -> Any:
    """A manifest model's value as plain data (lists of models as lists of dicts)."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.model_dump(exclude_none=True) if hasattr(value, "model_dump") else value


def _version_problem(live: LiveState, model: str, version: str) -> str | None:
    key = (model, version)
    if key not in live.versions:
        return None  # not re-checked: already served or aliased live
    info = live.versions[key]
    if info is None:
        return f"version {version} of model '{model}' does not exist; {FIX_VERSION}"
    status = info.get("status") or "READY"
    if status != "READY":
        return f"version {version} of model '{model}' is {status}, not READY; wait for registration to finish or {FIX_VERSION}"
    return None


def _secret_problems(loaded, i, live: LiveState) -> list[Problem]:  # type: ignore[no-untyped-def]
    problems = []
    entity = loaded.manifest.spec.served_entities[i]
    for var, value in (entity.environment_vars or {}).items():
        match = SECRET_REF.fullmatch(value)
        if not match or live.secret_scopes is None:
            continue
        scope, key = match.groups()
        loc = ("spec", "served_entities", i, "environment_vars", var)
        if scope not in live.secret_scopes:
            problems.append(loaded.problem(loc, f"secret scope '{scope}' does not exist in the workspace; create it "
                                                f"(databricks secrets create-scope {scope})"))
        elif key not in (live.secret_keys.get(scope) or set()):
            problems.append(loaded.problem(loc, f"secret '{key}' is not in scope '{scope}'; add it "
                                                f"(databricks secrets put-secret {scope} {key})"))
    return problems


def _mlmodel_problems(loaded, i, version: str, live: LiveState, warnings: list[str]) -> list[Problem]:  # type: ignore[no-untyped-def]
    entity = loaded.manifest.spec.served_entities[i]
    mlmodel = live.mlmodels.get((entity.entity_name, version))
    label = f"the agent logged as {version}" if is_source(version) else f"version {version} of '{entity.entity_name}'"
    if mlmodel is None:
        warnings.append(f"serving_endpoint.{loaded.name}: {label} has no readable MLmodel file; its resources were "
                        "not cross-checked")
        return []
    logged = {r for r in mlmodel_resources(mlmodel) if r[0] in RESOURCE_TYPES}
    problems = []
    for kind, name in sorted(logged):
        if live.resources.get((kind, name)) is False:
            problems.append(loaded.problem(("spec", "served_entities", i),
                                           f"{label} was logged with {kind} '{name}', which does not exist in the "
                                           "workspace; create it or log a version without it"))
    resources = loaded.manifest.spec.resources
    if resources is None:
        return problems
    declared = {(k, n) for k, names in resources.model_dump(exclude_none=True).items() for n in names}
    for kind, name in sorted(declared - logged):
        j = getattr(resources, kind).index(name)
        problems.append(loaded.problem(("spec", "resources", kind, j),
                                       f"{kind} '{name}' is declared here but {label} was not logged with it: "
                                       "queries that use it will fail with a permission error; log the model with "
                                       "this resource (mlflow log_model resources=[...]) or remove it"))
    for kind, name in sorted(logged - declared):
        warnings.append(f"serving_endpoint.{loaded.name}: {label} was logged with {kind} '{name}', which "
                        "spec.resources does not list; add it so plan checks it")
    return problems
