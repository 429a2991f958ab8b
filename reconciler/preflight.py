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
After the plan is made, what the deploying identity needs to apply it is checked too
(`access_problems`), and no plan may leave an endpoint without a CAN_MANAGE holder
(`manager_problems`).
"""

from __future__ import annotations

from typing import Any

from reconciler.errors import Problem
from reconciler.live import Access, LiveState, alias_moves, mlmodel_resources
from reconciler.manifests.checks import check_warnings
from reconciler.manifests.loader import Loaded, Manifests
from reconciler.manifests.model import ServingEndpoint
from reconciler.normalize import is_agent, legacy_inference_table, live_endpoint, overlay
from reconciler.terms import SECRET_REF, agent_task, is_source
from reconciler.workspace import RESOURCE_TYPES

# AI gateway features beyond inference tables, and whether a manifest's value turns each on.
AGENT_UNSUPPORTED = {
    "usage_tracking_config": lambda value: bool(value.get("enabled")),
    "rate_limits": bool,
    "guardrails": lambda value: any(value.values()),
    "fallback_config": lambda value: bool(value.get("enabled")),
}
# Unity Catalog's built-in group of every identity of the account: a grant to it is everyone's.
ACCOUNT_USERS = "account users"
PERMISSION_WRITES = ("update_permissions", "set_permissions")

FIX_VERSION = "register it first (mlflow.register_model) or point at another version"


def preflight(manifests: Manifests, live: LiveState, resolved: dict[str, list[str]]) -> tuple[list[Problem], list[str]]:
    problems: list[Problem] = []
    warnings: list[str] = []
    for name, model in manifests.models.items():
        for alias, version in (model.manifest.spec.aliases or {}).items():
            message = _version_problem(live, name, str(version))
            if message:
                problems.append(model.problem(("spec", "aliases", alias), f"alias {alias}: {message}"))
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
        evidence = f"the workspace set its task to {(api or {}).get('task')}"
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


def _secret_problems(loaded: Loaded[ServingEndpoint], i: int, live: LiveState) -> list[Problem]:
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


def _mlmodel_problems(loaded: Loaded[ServingEndpoint], i: int, version: str, live: LiveState,
                      warnings: list[str]) -> list[Problem]:
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


def shared_model_warnings(manifests: Manifests, live: LiveState) -> list[str]:
    """Models are shared across stacks: an alias these manifests move or remove may be what an
    endpoint they do not manage follows (resolved when its own stack planned)."""
    warnings = []
    for model, alias, version, new in alias_moves(manifests, live):
        for summary in live.listed or []:
            name = summary.get("name")
            if name in manifests.endpoints:
                continue
            served = {(e.get("entity_name"), str(e.get("entity_version")))
                      for e in (summary.get("config") or {}).get("served_entities") or []}
            if (model, str(version)) in served:
                what = f"moves from version {version} to {new}" if new is not None else \
                    f"is removed (it points at version {version})"
                warnings.append(f"registered_model.{model}: alias {alias} {what}, and serving_endpoint.{name}, which "
                                f"these manifests do not manage, serves version {version}; if it follows the alias, "
                                "its next apply moves it too")
    return warnings


def manager_problems(manifests: Manifests, plan: Any, live: LiveState) -> list[Problem]:
    """A permissions write that would leave an endpoint with no CAN_MANAGE holder besides workspace
    admins (whose inherited grant is not the endpoint's) is refused: no one could manage it again
    without an admin. A new endpoint's creator holds CAN_MANAGE, so only existing ones are checked."""
    problems = []
    for change in plan.changes:
        loaded = manifests.endpoints.get(change.name) if change.kind == "serving_endpoint" else None
        api = live.endpoints.get(change.name)
        if loaded is None or api is None or not {op.name for op in change.operations} & set(PERMISSION_WRITES):
            continue
        effective = overlay(change.desired or {}, live_endpoint(api, live.permissions.get(change.name)))
        if "CAN_MANAGE" not in effective.get("permissions", {}).values():
            problems.append(loaded.problem(("spec", "permissions"), "after apply no principal would hold CAN_MANAGE on "
                                           "this endpoint (only workspace admins, through their inherited grant); "
                                           "grant CAN_MANAGE to a user, group or service principal here"))
    return problems


def access_problems(plan: Any, access: Access) -> list[Problem]:
    """What the deploying identity lacks for this plan: CAN_MANAGE on each existing endpoint apply
    writes, and EXECUTE (or ALL_PRIVILEGES, or ownership) on each model an endpoint write serves,
    which automatic authentication passthrough needs."""
    problems = []
    who = access.principal
    unseen = "" if access.groups is not None else \
        " (as a direct grant: grants through its groups are not visible when planning as another identity)"
    for name, level in sorted(access.endpoint_levels.items()):
        if level != "CAN_MANAGE":
            problems.append(Problem(f"the deploying identity {who} holds {level or 'no permission'} on this endpoint"
                                    f"{unseen}, not CAN_MANAGE, which apply needs to write it; grant it CAN_MANAGE, "
                                    "or apply as an identity that holds it", subject=f"serving_endpoint.{name}"))
    holders = {who.split(":", 1)[1], ACCOUNT_USERS} | (access.groups or set())
    for model, grants in sorted(access.model_grants.items()):
        if access.model_owners.get(model) in holders:
            continue  # the owner holds every privilege on it
        held = set().union(*(grants.get(h, set()) for h in holders))
        if held & {"EXECUTE", "ALL_PRIVILEGES"}:
            continue
        users = sorted(c.address for c in plan.changes if c.kind == "serving_endpoint" and
                       model in {f.get("entity_name") for f in (c.desired or {}).get("served_entities", {}).values()})
        problems.append(Problem(f"the deploying identity {who} holds no EXECUTE on this model{unseen}, which "
                                f"{', '.join(users)} needs to serve it (automatic authentication passthrough); grant "
                                "it EXECUTE on the model (or its schema or catalog), or apply as an identity that "
                                "holds it", subject=f"registered_model.{model}"))
    return problems
