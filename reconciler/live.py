"""Reads the live state the manifests name, in parallel, each object once.

Two rounds: first every registered model and endpoint the manifests name (plus the endpoint
list, for the managed endpoints of the stack that left the manifests, which --prune deletes and
plan otherwise mentions, and the secret scope list when secrets are referenced); then what
depends on the first round: endpoint permissions (need the endpoint id; read when the
manifest manages them or the endpoint will be replaced), the model versions
that would newly be served or aliased (READY check), their MLmodel files, secret keys and
dependent resources. A missing object is None (it will be created), never an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from reconciler.errors import Interrupted, Problem, ReconcilerError, collapse
from reconciler.manifests.loader import Manifests
from reconciler.normalize import IMMUTABLE_FIELDS, live_endpoint, live_model
from reconciler.terms import SECRET_REF, is_source, name_problem, owned_by_stack
from reconciler.workspace import RESOURCE_TYPES, Workspace

Key = tuple[str, str]


@dataclass
class LiveState:
    objects: dict[str, dict[str, dict[str, Any] | None]] = field(default_factory=dict)  # kind key -> name -> API
    permissions: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[Key, dict[str, Any] | None] = field(default_factory=dict)
    mlmodels: dict[Key, dict[str, Any] | None] = field(default_factory=dict)
    secret_scopes: set[str] | None = None
    secret_keys: dict[str, set[str] | None] = field(default_factory=dict)
    resources: dict[Key, bool] = field(default_factory=dict)
    prunable: dict[str, dict[str, Any]] = field(default_factory=dict)  # this stack's, gone from the manifests
    listed: list[dict[str, Any]] | None = None  # every endpoint the manifests do not name, summarised
    warnings: list[str] = field(default_factory=list)  # about what the workspace answered

    @property
    def models(self) -> dict[str, dict[str, Any] | None]:
        return self.objects.setdefault("registered_model", {})

    @property
    def endpoints(self) -> dict[str, dict[str, Any] | None]:
        return self.objects.setdefault("serving_endpoint", {})


def run_parallel(calls: Iterable[tuple[Any, Callable[[], Any]]], parallelism: int,
                 workspace: Workspace) -> dict[Any, Any]:
    """Run keyed reads on a thread pool, each one tried again when it gives up on the workspace
    (`Workspace.persevering`); every failure is collected, then raised together (one line per
    cause: `errors.collapse`). An interrupt stops it at once: calls not started are cancelled,
    and `Interrupted` is raised as it is."""
    calls = list(calls)
    results: dict[Any, Any] = {}
    problems: list[Problem] = []
    if not calls:
        return results
    interrupted: Interrupted | None = None
    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(calls)))) as pool:
        futures = [(key, pool.submit(workspace.persevering(fn))) for key, fn in calls]
        for key, future in futures:
            if interrupted is not None:
                future.cancel()
                continue
            try:
                results[key] = future.result()
            except Interrupted as exc:
                interrupted = exc
            except ReconcilerError as exc:
                problems += exc.problems
    if interrupted is not None:
        raise interrupted
    if problems:
        raise ReconcilerError(collapse(problems, by_cause=True))
    return results


def secret_references(manifests: Manifests) -> set[Key]:
    refs = set()
    for loaded in manifests.endpoints.values():
        for entity in loaded.manifest.spec.served_entities:
            for value in (entity.environment_vars or {}).values():
                match = SECRET_REF.fullmatch(value)
                if match:
                    refs.add((match.group(1), match.group(2)))
    return refs


def read_objects(workspace: Workspace, manifests: Manifests, *, parallelism: int, stack: str | None) -> LiveState:
    """Round one: the objects themselves, each kind's (`kinds.KINDS`), and the lists they need."""
    from reconciler.kinds import KINDS

    live = LiveState()
    calls: list[tuple[Any, Callable[[], Any]]] = []
    for kind in KINDS:
        live.objects[kind.key] = {}
        calls += [((kind.key, n), partial(kind.module.read, workspace, n))
                  for n in sorted(kind.module.names(manifests))]
    # The endpoint list among the first: it is the biggest answer (every endpoint of the workspace,
    # not paginated), so it is read alongside the others and boiled down (`_left_manifests`) before
    # they pile up, instead of last, alone, at the tail of the reads. Second, not first: a refusal
    # that fails every call alike (a bad token) is still told naming an object (`errors.collapse`).
    calls.insert(1, (("list", ""), partial(_left_manifests, workspace, manifests)))
    if secret_references(manifests):
        calls.append((("scopes", ""), workspace.list_secret_scopes))
    results = run_parallel(calls, parallelism, workspace)
    for (kind, name), value in results.items():
        if kind in live.objects:
            live.objects[kind][name] = value
        elif kind == "scopes":
            live.secret_scopes = value
        elif kind == "list":
            live.listed = value
            for summary in value:
                if not owned_by_stack(summary, stack):
                    continue
                problem = name_problem("endpoint", summary["name"])
                if problem:  # a server answer is held to the grammar too: such a name never reaches a request
                    live.warnings.append(f"the workspace lists a managed endpoint whose name is not one: {problem}; "
                                         "it is left alone")
                    continue
                live.prunable[summary["name"]] = summary
    return live


def _left_manifests(workspace: Workspace, manifests: Manifests) -> list[dict[str, Any]]:
    """The listed endpoints the manifests do not name: what plan mentions (`plan.py`), --prune deletes
    and `preflight.shared_model_warnings` checks. Those the manifests name are read whole anyway;
    at 5,000 endpoints, keeping their summaries too would hold every endpoint twice."""
    return [summary for summary in workspace.list_endpoints() if summary["name"] not in manifests.endpoints]


def read_dependencies(workspace: Workspace, manifests: Manifests, live: LiveState, resolved: dict[str, list[str]],
                      *, parallelism: int) -> None:
    """Round two: what the first round's objects lead to (see the module docstring)."""
    calls: list[tuple[Any, Callable[[], Any]]] = []
    for name, loaded in manifests.endpoints.items():
        api = live.endpoints.get(name)
        if api is not None and (loaded.manifest.spec.permissions is not None or replacing(loaded.manifest, api)) \
                and api.get("id"):
            calls.append((("acl", name), partial(workspace.get_endpoint_permissions, name, api["id"])))
    versions, mlmodels = versions_to_check(manifests, live, resolved)
    # A version still named by its source is registered by apply: nothing to read yet, and its
    # MLmodel is the one logged (`kinds/model_version.resolve` put it in live.mlmodels).
    calls += [(("version", k), partial(workspace.get_model_version, *k)) for k in sorted(versions)
              if not is_source(k[1])]
    calls += [(("mlmodel", k), partial(workspace.read_mlmodel, *k)) for k in sorted(mlmodels)
              if not is_source(k[1])]
    scopes = {scope for scope, _ in secret_references(manifests)}
    calls += [(("keys", s), partial(workspace.list_secret_keys, s))
              for s in sorted(scopes) if live.secret_scopes is not None and s in live.secret_scopes]
    found: dict[str, dict[Any, Any]] = {"acl": live.permissions, "version": live.versions, "mlmodel": live.mlmodels,
                                        "keys": live.secret_keys}
    for (kind, key), value in run_parallel(calls, parallelism, workspace).items():
        found[kind][key] = value
    # Resources: those declared by manifests and those the read MLmodels declare.
    wanted = declared_resources(manifests) | {r for m in live.mlmodels.values() for r in mlmodel_resources(m)
                                              if r[0] in RESOURCE_TYPES}
    live.resources = run_parallel([(r, partial(workspace.resource_exists, *r)) for r in sorted(wanted)], parallelism,
                                  workspace)


def replacing(manifest: Any, api: dict[str, Any]) -> bool:
    """The manifest changes a field fixed at creation (normalize.IMMUTABLE_FIELDS): the endpoint
    will be replaced, and the new one keeps the direct grants of this one unless the manifest
    states its own, so they are read."""
    live = live_endpoint(api)
    return any(getattr(manifest.spec, key) is not None and getattr(manifest.spec, key) != live.get(key)
               for key in IMMUTABLE_FIELDS)


def versions_to_check(manifests: Manifests, live: LiveState,
                      resolved: dict[str, list[str]]) -> tuple[set[Key], set[Key]]:
    """Versions that would newly be served or aliased (their READY state matters), and the
    versions whose MLmodel must be read. A version the endpoint already serves was READY when it
    was deployed; re-reading it on every plan would cost a call per object for nothing."""
    versions: set[Key] = set()
    mlmodels: set[Key] = set()
    for name, model in manifests.models.items():
        model_api = live.models.get(name)
        aliases = live_model(model_api)["aliases"] if model_api else {}
        for alias, version in (model.manifest.spec.aliases or {}).items():
            if aliases.get(alias) != version:
                versions.add((name, str(version)))
    for name, endpoint in manifests.endpoints.items():
        api = live.endpoints.get(name)
        served = {(f["entity_name"], f.get("entity_version")) for f in
                  (live_endpoint(api)["served_entities"].values() if api else [])}
        for entity, version in zip(endpoint.manifest.spec.served_entities, resolved[name], strict=True):
            key = (entity.entity_name, version)
            if key not in served:
                versions.add(key)
                mlmodels.add(key)
            elif endpoint.manifest.spec.resources is not None:
                mlmodels.add(key)
    return versions, mlmodels


def declared_resources(manifests: Manifests) -> set[Key]:
    found = set()
    for loaded in manifests.endpoints.values():
        resources = loaded.manifest.spec.resources
        for kind, names in (resources.model_dump(exclude_none=True) if resources else {}).items():
            found |= {(kind, n) for n in names}
    return found


def mlmodel_resources(mlmodel: dict[str, Any] | None) -> set[Key]:
    """Resources an MLmodel declares, under `resources` or `auth_policy.system_auth_policy`, read
    with MLflow's own resource classes (`_ResourceBuilder.from_dict`, which MLflow uses to read them
    back), one resource type at a time: a type this MLflow does not know (an agent logged with a
    newer one) is kept by the names written, so it is still checked."""
    if not isinstance(mlmodel, dict):
        return set()
    policy = mlmodel.get("auth_policy")
    system = policy.get("system_auth_policy") if isinstance(policy, dict) else None
    sections = [mlmodel.get("resources"), system.get("resources") if isinstance(system, dict) else None]
    found = set()
    for section in sections:
        if not isinstance(section, dict):
            continue
        databricks = section.get("databricks")
        for kind, entries in (databricks.items() if isinstance(databricks, dict) else ()):
            entries = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
            try:
                built = _mlflow_resources()._ResourceBuilder.from_dict(
                    {"api_version": str(section.get("api_version", "1")), "databricks": {kind: entries}})
                entries = built["databricks"].get(kind, [])
            except (ValueError, KeyError, TypeError):  # a type or version it does not know, an entry without a name
                pass
            found |= {(kind, str(e["name"])) for e in entries if e.get("name")}
    return found


_MLFLOW_RESOURCES: Any = None


def _mlflow_resources() -> Any:
    """MLflow's `mlflow/models/resources.py` (mlflow-skinny), loaded on its own, once, when an
    MLmodel is first checked. `import mlflow.models.resources` would run `mlflow/__init__.py` and
    `mlflow/models/__init__.py` first: 1.5-2.6 s, numpy and pandas included when present (and
    `mlflow.models.Model.load`, through its signature module, needs numpy, which mlflow-skinny
    lacks). The module itself imports only the standard library and yaml: about 30 ms (measured
    with python -X importtime and perf_counter; Python 3.11, mlflow-skinny 3.18)."""
    global _MLFLOW_RESOURCES
    if _MLFLOW_RESOURCES is None:
        import importlib.util
        import os

        package = importlib.util.find_spec("mlflow")  # found, not imported
        assert package is not None and package.submodule_search_locations, "mlflow-skinny is a dependency"
        path = os.path.join(list(package.submodule_search_locations)[0], "models", "resources.py")
        spec = importlib.util.spec_from_file_location("reconciler._mlflow_resources", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _MLFLOW_RESOURCES = module
    return _MLFLOW_RESOURCES


def alias_moves(manifests: Manifests, live: LiveState) -> list[tuple[str, str, int, int | str | None]]:
    """(model, alias, live version, new version, or the logged agent it is to be registered from, or
    None when removed) of every alias the manifests move or remove."""
    moves: list[tuple[str, str, int, int | str | None]] = []
    for name, loaded in sorted(manifests.models.items()):
        wanted = loaded.manifest.spec.aliases
        api = live.models.get(name)
        if wanted is None or api is None:
            continue
        for alias, version in sorted(live_model(api)["aliases"].items()):
            if wanted.get(alias) != version:
                moves.append((name, alias, version, wanted.get(alias)))
    return moves


# ---- what the deploying identity may do (read after planning: only what apply will touch) ---------

@dataclass
class Access:
    """What the identity that applies holds on what apply will write."""

    principal: str  # "user_name:..." / "service_principal_name:..."
    groups: set[str] | None  # its groups, when known (it is the caller); None otherwise
    endpoint_levels: dict[str, str | None] = field(default_factory=dict)  # endpoint -> its level there
    model_grants: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # model -> principal -> privileges
    model_owners: dict[str, str | None] = field(default_factory=dict)


def read_access(workspace: Workspace, plan: Any, live: LiveState, principal: str, groups: set[str] | None, *,
                parallelism: int) -> Access:
    """The deploying identity's permission on each existing endpoint apply will write (the level the
    endpoint GET reports for the caller; for another identity, its direct grants in the ACL), and
    its Unity Catalog privileges on each model an endpoint write will serve (effective-permissions
    API, inherited ones included)."""
    from reconciler.normalize import live_permissions
    from reconciler.plan import Action

    access = Access(principal, groups)
    calls: list[tuple[Any, Callable[[], Any]]] = []
    models: set[str] = set()
    for change in plan.changes:
        if change.kind != "serving_endpoint":
            continue
        if change.action in (Action.UPDATE, Action.REPLACE, Action.DELETE):
            api = live.endpoints.get(change.name) or live.prunable.get(change.name) or {}
            if groups is not None and api.get("permission_level"):
                access.endpoint_levels[change.name] = api["permission_level"]
            elif change.name in live.permissions:
                access.endpoint_levels[change.name] = live_permissions(live.permissions[change.name]).get(principal)
            elif api.get("id"):
                calls.append((("acl", change.name), partial(workspace.get_endpoint_permissions, change.name, api["id"])))
        if {op.name for op in change.operations} & {"create_endpoint", "update_config"}:
            models |= {f["entity_name"] for f in (change.desired or {}).get("served_entities", {}).values()}
    calls += [(("grants", m), partial(workspace.model_privileges, m)) for m in sorted(models)]
    calls += [(("model", m), partial(workspace.get_model, m)) for m in sorted(models) if m not in live.models]
    for (kind, key), value in run_parallel(calls, parallelism, workspace).items():
        if kind == "acl":
            access.endpoint_levels[key] = live_permissions(value).get(principal)
        elif kind == "grants":
            access.model_grants[key] = value
        else:
            access.model_owners[key] = (value or {}).get("owner")
    for model in models & set(live.models):
        access.model_owners[model] = (live.models[model] or {}).get("owner")
    return access
