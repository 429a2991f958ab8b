"""Reads the live state the manifests name, in parallel, each object once.

Two rounds: first every registered model and endpoint the manifests name (plus the managed
endpoint list with --prune and the secret scope list when secrets are referenced); then what
depends on the first round: endpoint permissions (need the endpoint id; read when the
manifest manages them or the endpoint will be replaced), the model versions
that would newly be served or aliased (READY check), their MLmodel files, secret keys and
dependent resources. A missing object is None (it will be created), never an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
    prunable: dict[str, dict[str, Any]] = field(default_factory=dict)
    listed: list[dict[str, Any]] | None = None  # every endpoint, summarised (read with --prune or for alias moves)
    warnings: list[str] = field(default_factory=list)  # about what the workspace answered

    @property
    def models(self) -> dict[str, dict[str, Any] | None]:
        return self.objects.setdefault("registered_model", {})

    @property
    def endpoints(self) -> dict[str, dict[str, Any] | None]:
        return self.objects.setdefault("serving_endpoint", {})


def run_parallel(calls: Iterable[tuple[Any, Callable[[], Any]]], parallelism: int) -> dict[Any, Any]:
    """Run keyed calls on a thread pool; every failure is collected, then raised together (one
    line per cause: `errors.collapse`). An interrupt stops it at once: calls not started are
    cancelled, and `Interrupted` is raised as it is."""
    calls = list(calls)
    results: dict[Any, Any] = {}
    problems: list[Problem] = []
    if not calls:
        return results
    interrupted: Interrupted | None = None
    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(calls)))) as pool:
        futures = [(key, pool.submit(fn)) for key, fn in calls]
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


def read_objects(workspace: Workspace, manifests: Manifests, *, parallelism: int, prune: bool,
                 stack: str | None) -> LiveState:
    """Round one: the objects themselves, each kind's (`kinds.KINDS`), and the lists they need."""
    from reconciler.kinds import KINDS

    live = LiveState()
    calls: list[tuple[Any, Callable[[], Any]]] = []
    for kind in KINDS:
        live.objects[kind.key] = {}
        calls += [((kind.key, n), lambda k=kind, n=n: k.module.read(workspace, n))
                  for n in sorted(kind.module.names(manifests))]
    if secret_references(manifests):
        calls.append((("scopes", ""), workspace.list_secret_scopes))
    if prune:
        calls.append((("list", ""), workspace.list_endpoints))
    results = run_parallel(calls, parallelism)
    for (kind, name), value in results.items():
        if kind in live.objects:
            live.objects[kind][name] = value
        elif kind == "scopes":
            live.secret_scopes = value
        elif kind == "list":
            live.listed = value
            for summary in value:
                if not owned_by_stack(summary, stack) or summary["name"] in manifests.endpoints:
                    continue
                problem = name_problem("endpoint", summary["name"])
                if problem:  # a server answer is held to the grammar too: such a name never reaches a request
                    live.warnings.append(f"the workspace lists a managed endpoint whose name is not one: {problem}; "
                                         "it is left alone")
                    continue
                live.prunable[summary["name"]] = summary
    return live


def read_dependencies(workspace: Workspace, manifests: Manifests, live: LiveState, resolved: dict[str, list[str]],
                      *, parallelism: int) -> None:
    """Round two: what the first round's objects lead to (see the module docstring)."""
    calls: list[tuple[Any, Callable[[], Any]]] = []
    for name, loaded in manifests.endpoints.items():
        api = live.endpoints.get(name)
        if api is not None and (loaded.manifest.spec.permissions is not None or replacing(loaded.manifest, api)) \
                and api.get("id"):
            calls.append((("acl", name), lambda n=name, i=api["id"]: workspace.get_endpoint_permissions(n, i)))
    versions, mlmodels = versions_to_check(manifests, live, resolved)
    # A version still named by its source is registered by apply: nothing to read yet, and its
    # MLmodel is the one logged (`kinds/model_version.resolve` put it in live.mlmodels).
    calls += [(("version", k), lambda k=k: workspace.get_model_version(*k)) for k in sorted(versions)
              if not is_source(k[1])]
    calls += [(("mlmodel", k), lambda k=k: workspace.read_mlmodel(*k)) for k in sorted(mlmodels)
              if not is_source(k[1])]
    scopes = {scope for scope, _ in secret_references(manifests)}
    calls += [(("keys", s), lambda s=s: workspace.list_secret_keys(s))
              for s in sorted(scopes) if live.secret_scopes is not None and s in live.secret_scopes]
    if live.listed is None and alias_moves(manifests, live):  # who else serves what the aliases leave
        calls.append((("list", ""), workspace.list_endpoints))
    results = run_parallel(calls, parallelism)
    for (kind, key), value in results.items():
        if kind == "list":
            live.listed = value
            continue
        {"acl": live.permissions, "version": live.versions, "mlmodel": live.mlmodels,
         "keys": live.secret_keys}[kind][key] = value
    # Resources: those declared by manifests and those the read MLmodels declare.
    wanted = declared_resources(manifests) | {r for m in live.mlmodels.values() for r in mlmodel_resources(m)
                                              if r[0] in RESOURCE_TYPES}
    live.resources = run_parallel([(r, lambda r=r: workspace.resource_exists(*r)) for r in sorted(wanted)], parallelism)


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
    for name, loaded in manifests.models.items():
        aliases = live_model(live.models[name])["aliases"] if live.models.get(name) else {}
        for alias, version in (loaded.manifest.spec.aliases or {}).items():
            if aliases.get(alias) != version:
                versions.add((name, str(version)))
    for name, loaded in manifests.endpoints.items():
        api = live.endpoints.get(name)
        served = {(f["entity_name"], f.get("entity_version")) for f in
                  (live_endpoint(api)["served_entities"].values() if api else [])}
        for entity, version in zip(loaded.manifest.spec.served_entities, resolved[name], strict=True):
            key = (entity.entity_name, version)
            if key not in served:
                versions.add(key)
                mlmodels.add(key)
            elif loaded.manifest.spec.resources is not None:
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
    """Resources an MLmodel declares, under `resources` or `auth_policy.system_auth_policy`."""
    if not mlmodel:
        return set()
    sections = [mlmodel.get("resources"),
                ((mlmodel.get("auth_policy") or {}).get("system_auth_policy") or {}).get("resources")]
    found = set()
    for section in sections:
        databricks = (section or {}).get("databricks") if isinstance(section, dict) else None
        for kind, entries in (databricks or {}).items():
            for entry in entries or []:
                if isinstance(entry, dict) and entry.get("name"):
                    found.add((kind, str(entry["name"])))
    return found


def alias_moves(manifests: Manifests, live: LiveState) -> list[tuple[str, str, int, int | None]]:
    """(model, alias, live version, new version or None when removed) of every alias the manifests
    move or remove."""
    moves = []
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
                calls.append((("acl", change.name), lambda n=change.name, i=api["id"]:
                              workspace.get_endpoint_permissions(n, i)))
        if {op.name for op in change.operations} & {"create_endpoint", "update_config"}:
            models |= {f["entity_name"] for f in (change.desired or {}).get("served_entities", {}).values()}
    calls += [(("grants", m), lambda m=m: workspace.model_privileges(m)) for m in sorted(models)]
    calls += [(("model", m), lambda m=m: workspace.get_model(m)) for m in sorted(models) if m not in live.models]
    for (kind, key), value in run_parallel(calls, parallelism).items():
        if kind == "acl":
            access.endpoint_levels[key] = live_permissions(value).get(principal)
        elif kind == "grants":
            access.model_grants[key] = value
        else:
            access.model_owners[key] = (value or {}).get("owner")
    for model in models & set(live.models):
        access.model_owners[model] = (live.models[model] or {}).get("owner")
    return access
