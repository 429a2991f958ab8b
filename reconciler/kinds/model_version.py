"""The `ModelVersion` kind: a Unity Catalog model version that the manifests name by the logged agent
it is registered from, and that apply registers once.

A manifest writes a version as its number (`champion: 3`) or as the URI MLflow printed when it
logged the agent (`challenger: models:/m-<id>`, or `runs:/<run_id>/<path>`): in a RegisteredModel's
`aliases` and in a served entity's `entity_version` (`manifests/model.py`). This kind has no
document of its own; each distinct (model, source) those fields name is one object.

Its seam (see `kinds/__init__.py`):
- address `model_version.<catalog.schema.model>@<source>`; `names` are those the manifests name;
- `read`: what was logged (the run or logged model, and its MLmodel, read as MLflow's Databricks
  repositories read them) and the versions of the model registered from it, with their tags;
- `resolve`, right after the reads: a source that already has a READY version IS that version
  from then on (the lowest, if several): the other kinds plan its number as if the manifest had
  written it. A source to register stays a source in their desired state, and its logged MLmodel
  is what preflight checks for it (`live.mlmodels`);
- `check`: what was logged, before anything is written (it exists; Unity Catalog's signature rule;
  the MLflow version each declared resource type needs; nobody else's registration in flight);
- `plan`: no change ("version 7 (already registered)"), or `register_version`, preceded by
  `delete_version` for a version of ours that an interrupted or failed run left unfinished; the
  diff shows what the agent was logged with (resources, user API scopes) for reviewers;
- `link`: alias moves to a version being registered wait for it (`op.after`);
- apply (phase 1, after the models exist): re-read, register through MLflow's own client
  (`Workspace.register_version`), wait until READY (also with --no-wait: what names the version
  needs it READY); the number goes to `ex.registered`, where the other kinds' steps find it
  (`alias_numbers`, `entity_numbers`). An endpoint that serves a version this run failed to
  register is not touched, nor is an alias that points at it.

Idempotent without a state file: every version registered here carries the tags `managed-by:
reconciler`, `reconciler-source: <source>` (and the stack). A version from the source is found by
that tag, or by its `model_id` / `source` as MLflow recorded them (a version registered by hand
counts too). So a re-run never registers a second version for a source: a READY one is used; one
of ours left PENDING_REGISTRATION (a crashed run) or FAILED_REGISTRATION is deleted and registered
again, and the plan says so; one of somebody else's still registering stops the plan.
"""

from __future__ import annotations

import copy
import re
import time
from collections import defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import yaml

from reconciler.diff import diff
from reconciler.errors import Interrupted, Problem, ReconcilerError
from reconciler.plan import Action, Change, Operation, fingerprint
from reconciler.terms import SOURCE, STACK_TAG, is_source, own_tags, tag_map

if TYPE_CHECKING:
    from reconciler.apply import Executor
    from reconciler.live import LiveState
    from reconciler.manifests.loader import Loaded, Manifests
    from reconciler.manifests.yamlsource import Loc
    from reconciler.workspace import Workspace

KEY = "model_version"
GRAMMAR = "model version"  # terms.GRAMMAR: what a name of this kind must look like, wherever it comes from
OPERATIONS = ("register_version", "delete_version")
SOURCE_TAG = "reconciler-source"
READY, PENDING, FAILED = "READY", "PENDING_REGISTRATION", "FAILED_REGISTRATION"
FIRST_POLL_SECONDS = 0.5
MAX_POLL_SECONDS = 5.0
# The MLflow release that first logs each resource type for automatic authentication passthrough
# (shared/seeds/003: "Databricks resources that support automatic authentication passthrough and the
# minimum mlflow version required to log them"). `app` and `lakebase` are not in that table.
MIN_MLFLOW = {"vector_search_index": (2, 13, 1), "serving_endpoint": (2, 13, 1), "sql_warehouse": (2, 16, 1),
              "function": (2, 16, 1), "genie_space": (2, 17, 1), "table": (2, 18, 0), "uc_connection": (2, 17, 1)}
SIGNATURE_RULE = ("Unity Catalog requires a signature with inputs and outputs; log it again with signature= "
                  "(mlflow.models.infer_signature) or an input_example")


def address(model: str, source: str) -> str:
    return f"{KEY}.{model}@{source}"


def split(name: str) -> tuple[str, str]:
    """`main.agents.bot@models:/m-...` → (model, source); model names have no `@` (terms.UC_PART)."""
    model, _, source = name.partition("@")
    return model, source


def depends(change: Change) -> set[str]:
    """A registration needs its registered model (created first when its manifest is new)."""
    return {f"registered_model.{split(change.name)[0]}"}


def references(manifests: Manifests) -> dict[str, list[tuple[Loaded[Any], Loc]]]:
    """Every `model@source` the manifests name, with where (first the models' aliases, then the
    endpoints' served entities, in file order)."""
    found: dict[str, list[tuple[Loaded[Any], Loc]]] = defaultdict(list)
    for name, model in manifests.models.items():
        for alias, version in (model.manifest.spec.aliases or {}).items():
            if is_source(version):
                found[f"{name}@{version}"].append((model, ("spec", "aliases", alias)))
    for endpoint in manifests.endpoints.values():
        for i, entity in enumerate(endpoint.manifest.spec.served_entities):
            if is_source(entity.entity_version):
                found[f"{entity.entity_name}@{entity.entity_version}"].append(
                    (endpoint, ("spec", "served_entities", i, "entity_version")))
    return dict(found)


def names(manifests: Manifests) -> set[str]:
    return set(references(manifests))


# ---- read --------------------------------------------------------------------------------------

def read(ws: Workspace, name: str) -> dict[str, Any]:
    """{"logged": what the source is (see `_logged`), "versions": the model's versions from it}."""
    model, source = split(name)
    logged = _logged(ws, source)
    # All of the model's versions (a page holds 1000): searching by run would miss one registered
    # by hand without a run_id (`MlflowClient.create_model_version` takes it as optional).
    found = ws.search_model_versions(full_name=model)
    return {"logged": logged, "versions": sorted((v for v in found if v.get("name") == model
                                                  and _registered_from(v, source, logged)),
                                                 key=lambda v: int(v["version"]))}


def _logged(ws: Workspace, source: str) -> dict[str, Any]:
    """What `source` names, resolved the way `mlflow.register_model` resolves it
    (`_model_registry/fluent.py`, `_register_model`): `models:/m-<id>` is that logged model;
    `runs:/<run>/<path>` is the run's files at `path` when an MLmodel is there (registered from
    `<run artifact root>/<path>`), else the logged model named `path` that the run logged (the one
    at the largest step if several). Keys: `registers_as` (the `source` MLflow will record),
    `run_id`, `model_id`, `mlmodel` (the parsed file, or None), and `problem` or `unreadable`."""
    match = SOURCE.fullmatch(source)
    assert match is not None  # names come from manifests the model validated
    if match["model_id"]:
        found = ws.get_logged_model(match["model_id"])
        if found is None:
            return {"problem": f"logged model {match['model_id']} does not exist in this workspace"}
        return _with_mlmodel(ws, found["info"], source)
    run_id, path = match["run_id"], match["path"]
    run = ws.get_run(run_id)
    if run is None:
        return {"problem": f"run {run_id} does not exist in this workspace"}
    info = run["info"]
    root = (info.get("artifact_uri") or "").rstrip("/")
    logged: dict[str, Any] = {"run_id": run_id, "registers_as": f"{root}/{path}"}
    try:
        text = ws.read_tracking_file(root, f"{path}/MLmodel")
    except ReconcilerError as exc:  # not in the workspace's artifact store: MLflow may still read it
        return {**logged, "mlmodel": None, "unreadable": exc.problems[0].message}
    if text is not None:
        return {**logged, "mlmodel": _parse(text)}
    models = [m for m in ws.search_logged_models(info["experiment_id"], path) if m["info"].get("source_run_id") == run_id]
    if not models:
        return {"problem": f"run {run_id} has no model at '{path}' (no MLmodel there, and no logged model named "
                           f"'{path}' that it logged)"}
    steps = {o.get("model_id"): _int(o.get("step")) for o in (run.get("outputs") or {}).get("model_outputs") or []}
    chosen = max(models, key=lambda m: steps.get(m["info"]["model_id"], 0))
    return _with_mlmodel(ws, chosen["info"], source)


def _with_mlmodel(ws: Workspace, info: dict[str, Any], source: str) -> dict[str, Any]:
    model_id = info["model_id"]
    logged: dict[str, Any] = {"model_id": model_id, "run_id": info.get("source_run_id"),
                              "registers_as": f"models:/{model_id}"}
    try:
        text = ws.read_tracking_file(info.get("artifact_uri") or "", "MLmodel")
    except ReconcilerError as exc:
        return {**logged, "mlmodel": None, "unreadable": exc.problems[0].message}
    if text is None:
        return {**logged, "mlmodel": None, "unreadable": f"logged model {model_id} has no MLmodel file"}
    return {**logged, "mlmodel": _parse(text)}


def _parse(text: bytes) -> dict[str, Any] | None:
    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _registered_from(version: dict[str, Any], source: str, logged: dict[str, Any]) -> bool:
    """Ours for this source (the tag), or recorded by MLflow as this logged model or these files."""
    if tag_map(version).get(SOURCE_TAG) == source:
        return True
    model_id = logged.get("model_id")
    if model_id and (version.get("model_id") == model_id or version.get("source") == f"models:/{model_id}"):
        return True
    return bool(logged.get("registers_as")) and version.get("source") == logged["registers_as"]


def _versions_now(found: dict[str, Any]) -> dict[str, Any]:
    return {"versions": {v["version"]: v.get("status") for v in found["versions"]}}


# ---- what a source stands for ----------------------------------------------------------------------

def ready_version(found: dict[str, Any] | None) -> str | None:
    """The version a source stands for: its lowest READY version (numbers are never reused)."""
    return next((v["version"] for v in (found or {}).get("versions", []) if v.get("status") == READY), None)


def _ours(version: dict[str, Any], stack: str | None) -> bool:
    tags = tag_map(version)
    return all(tags.get(key) == value for key, value in own_tags(stack).items()) and tags.get(STACK_TAG) == stack


def _unfinished(found: dict[str, Any], stack: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(ours, theirs): versions from the source that are not READY. Ours are replaced; a registration
    of somebody else's still PENDING is waited for by nobody: the plan stops on it."""
    unfinished = [v for v in found["versions"] if v.get("status") != READY]
    return [v for v in unfinished if _ours(v, stack)], [v for v in unfinished if not _ours(v, stack)]


def marker(source: str, stack: str | None) -> dict[str, str]:
    """The tags of a version this reconciler registers: how a re-run knows it (module docstring)."""
    return {**own_tags(stack), SOURCE_TAG: source}


def resolve(manifests: Manifests, live: LiveState) -> Manifests:
    """The manifests with every source that has a READY version written as that version's number,
    so the other kinds plan exactly as if the manifest had said it. For a source still to register,
    what was logged is its MLmodel for preflight (`live.mlmodels[(model, source)]`)."""
    found = live.objects.get(KEY, {})
    numbers = {name: ready_version(read) for name, read in found.items()}
    for name, read in found.items():
        logged = (read or {}).get("logged", {}).get("mlmodel")
        if numbers[name] is None and logged is not None:
            live.mlmodels[split(name)] = logged

    def pinned(model: str, version: Any) -> Any:
        return (numbers.get(f"{model}@{version}") or version) if is_source(version) else version

    models = {}
    for name, model in manifests.models.items():
        aliases = model.manifest.spec.aliases
        if aliases and any(pinned(name, v) != v for v in aliases.values()):
            model_spec = model.manifest.spec.model_copy(update={"aliases": {
                alias: int(pinned(name, v)) if pinned(name, v) != v else v for alias, v in aliases.items()}})
            model = replace(model, manifest=model.manifest.model_copy(update={"spec": model_spec}))
        models[name] = model
    endpoints = {}
    for name, endpoint in manifests.endpoints.items():
        entities = endpoint.manifest.spec.served_entities
        if any(pinned(e.entity_name, e.entity_version) != e.entity_version for e in entities):
            endpoint_spec = endpoint.manifest.spec.model_copy(update={"served_entities": [
                e.model_copy(update={"entity_version": pinned(e.entity_name, e.entity_version)}) for e in entities]})
            endpoint = replace(endpoint, manifest=endpoint.manifest.model_copy(update={"spec": endpoint_spec}))
        endpoints[name] = endpoint
    return replace(manifests, models=models, endpoints=endpoints)


# ---- preflight ---------------------------------------------------------------------------------

def check(manifests: Manifests, live: LiveState, stack: str | None) -> tuple[list[Problem], list[str]]:
    """What was logged, checked before anything is written, at the first place the manifests name
    it. `manifests` as written (sources, not numbers)."""
    from reconciler.workspace import REGISTRATION_EXTRA, registration_installed

    problems: list[Problem] = []
    warnings: list[str] = []
    found = live.objects.get(KEY, {})
    for name, places in sorted(references(manifests).items()):
        model, source = split(name)
        loaded, loc = places[0]
        read = found.get(name) or {"logged": {}, "versions": []}
        logged = read["logged"]
        if ready_version(read) is not None:
            continue  # registered (even if the run was deleted since): its own MLmodel is checked where it is served
        if logged.get("problem"):
            problems.append(loaded.problem(loc, f"{source}: {logged['problem']}; check the URI MLflow printed when it "
                                                "logged the agent"))
            continue
        _, theirs = _unfinished(read, stack)
        for version in theirs:
            if version.get("status") == PENDING:
                problems.append(loaded.problem(loc, f"version {version['version']} of '{model}' is being registered "
                                                    f"from {source} by someone else (PENDING_REGISTRATION); wait for "
                                                    "it to finish, or delete it"))
        if live.models.get(model) is None and model not in manifests.models:
            problems.append(loaded.problem(loc, f"model '{model}' does not exist; add a RegisteredModel manifest for "
                                                "it (apply creates it), or create it"))
        if not registration_installed():
            problems.append(loaded.problem(loc, f"{source} is to be registered: {REGISTRATION_EXTRA}"))
        mlmodel = logged.get("mlmodel")
        if mlmodel is None:
            warnings.append(f"{address(model, source)}: its MLmodel could not be read "
                            f"({logged.get('unreadable') or 'not YAML'}); it was not checked before registration")
            continue
        problems += [loaded.problem(loc, f"the agent logged as {source} {message}")
                     for message in logged_problems(mlmodel)]
    return problems, warnings


def logged_problems(mlmodel: dict[str, Any]) -> list[str]:
    """What Unity Catalog or automatic authentication would refuse in a logged MLmodel (pure)."""
    from reconciler.live import mlmodel_resources

    problems = []
    signature = mlmodel.get("signature")
    if not isinstance(signature, dict) or not _given(signature.get("inputs")):
        problems.append(f"has no signature; {SIGNATURE_RULE}")
    elif not _given(signature.get("outputs")):
        problems.append(f"has a signature with inputs only; {SIGNATURE_RULE}")
    logged_with = _release(mlmodel.get("mlflow_version"))
    if logged_with is not None:
        for kind in sorted({kind for kind, _ in mlmodel_resources(mlmodel)}):
            needed = MIN_MLFLOW.get(kind)
            if needed is not None and logged_with < needed:
                problems.append(f"declares {kind} resources, which need MLflow {'.'.join(map(str, needed))} or later "
                                f"to be logged (it was logged with MLflow {mlmodel['mlflow_version']}); log it again "
                                "with a newer MLflow")
    return problems


def _given(value: Any) -> bool:
    """A signature part is there: MLflow writes each as JSON text, and `null` when absent."""
    return bool(value) and value not in ("null", "[]")


def _release(value: Any) -> tuple[int, ...] | None:
    found = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", str(value or ""))
    return tuple(int(part or 0) for part in found.groups()) if found else None


# ---- plan --------------------------------------------------------------------------------------

def plan_all(manifests: Manifests, live: LiveState, resolved: dict[str, list[str]], *, stack: str | None,
             prune: bool, deployer: str | None = None) -> list[Change]:
    # `read` always answers a dict (never None: a source with no version yet has an empty list).
    return [plan(name, read or {}, stack=stack) for name, read in sorted(live.objects.get(KEY, {}).items())]


def plan(name: str, found: dict[str, Any], *, stack: str | None) -> Change:
    model, source = split(name)
    change = Change(address(model, source), KEY, name, Action.NOOP, desired={"model": model, "source": source},
                    fingerprint=fingerprint(_versions_now(found)))
    ready = ready_version(found)
    if ready is not None:
        change.desired = {**(change.desired or {}), "version": ready}
        change.notes.append(f"version {ready} (already registered)")
        return change
    change.action = Action.CREATE
    change.diff = diff({}, logged_view(source, found["logged"]))
    ours, theirs = _unfinished(found, stack)
    for version in ours:
        change.operations.append(Operation(
            "delete_version", f"delete_version({version['version']}: {version.get('status')})",
            args={"version": version["version"]}))
        change.notes.append(f"version {version['version']} was registered from this source by an earlier apply and "
                            f"left {version.get('status')}; it is deleted and the agent registered again")
    for version in theirs:  # FAILED_REGISTRATION (a PENDING one stops the plan: `check`)
        change.notes.append(f"version {version['version']} from this source ended {version.get('status')} (not "
                            "registered by the reconciler; left as it is)")
    change.operations.append(Operation("register_version", f"register_version({source} → {model})",
                                       args={"model": model, "source": source}))
    change.notes.append(f"registered with MLflow's Unity Catalog client; what names it waits until it is {READY}")
    return change


def logged_view(source: str, logged: dict[str, Any]) -> dict[str, Any]:
    """What reviewers should see of a logged agent: where it comes from, the MLflow it was logged
    with, the resources it declared (automatic authentication) and the API scopes it asks users for
    (on-behalf-of-user authentication, `auth_policy.user_auth_policy.api_scopes`)."""
    from reconciler.live import mlmodel_resources

    view: dict[str, Any] = {"source": source}
    for key in ("run_id", "model_id"):
        if logged.get(key):
            view[key] = logged[key]
    mlmodel = logged.get("mlmodel") or {}
    if mlmodel.get("mlflow_version"):
        view["mlflow_version"] = str(mlmodel["mlflow_version"])
    resources: dict[str, list[str]] = {}
    for kind, resource in sorted(mlmodel_resources(mlmodel)):
        resources.setdefault(kind, []).append(resource)
    if resources:
        view["logged_resources"] = resources
    scopes = ((mlmodel.get("auth_policy") or {}).get("user_auth_policy") or {}).get("api_scopes")
    if isinstance(scopes, list) and scopes:
        view["user_api_scopes"] = sorted(str(scope) for scope in scopes)
    return view


def link(changes: list[Change]) -> None:
    """Alias moves to a version being registered wait for its registration (and run after the
    endpoints, with the other linked moves); the objects that name a version say which one."""
    by_address = {c.address: c for c in changes}
    for change in changes:
        if change.kind != KEY:
            continue
        model, source = split(change.name)
        registering = change.action is not Action.NOOP
        shown = source if registering else (change.desired or {}).get("version")
        said = f"{source} is registered first ({change.address})" if registering else \
            f"version {shown} is {source} (already registered)"
        owner = by_address.get(f"registered_model.{model}")
        owner_ops, owner_notes = (owner.operations, owner.notes) if owner is not None else ([], [])
        for op in owner_ops:
            if op.name != "set_alias" or str(op.args.get("version")) != shown:
                continue
            if registering and change.address not in op.after:
                op.after.append(change.address)
            owner_notes.append(f"alias {op.args['alias']}: {said}")
        for other in changes:
            if other.kind != "serving_endpoint" or other.action is Action.NOOP or other.desired is None:
                continue
            changed = {d.path for d in other.diff}
            for entity, fields in other.desired.get("served_entities", {}).items():
                if fields.get("entity_name") != model or fields.get("entity_version") != shown:
                    continue
                if registering or other.action is Action.CREATE or \
                        f"served_entities[{entity}].entity_version" in changed:
                    other.notes.append(f"served_entities[{entity}]: {said}")


# ---- apply -------------------------------------------------------------------------------------

def apply(ex: Executor, change: Change) -> None:
    """Register the source unless a READY version from it exists now; wait until it is READY."""
    model, source = split(change.name)
    found = read(ex.ws, change.name)
    ready = ready_version(found)
    if ready is not None:  # registered since the plan (or by the run this one finishes)
        ex.registered[change.address] = ready
        ex.progress(change.address, f"version {ready} (already registered)")
        ex.unchanged(change.address)
        return
    stack = ex.plan.stack
    ours, theirs = _unfinished(found, stack)
    pending = [v["version"] for v in theirs if v.get("status") == PENDING]
    if pending:
        raise ReconcilerError(Problem(f"version {pending[0]} is being registered from {source} by someone else; "
                                      "wait for it to finish, or delete it", subject=change.address))
    for version in ours:
        ex.ws.delete_model_version(model, version["version"])
        ex.wrote(change.address, f"delete_version({version['version']}: {version.get('status')})")
    deadline = time.monotonic() + ex.options.timeout_seconds
    registered = ex.ws.register_version(model, source, tags=marker(source, stack), timeout=ex.options.timeout_seconds)
    number = registered["version"]
    ex.wrote(change.address, f"register_version({source}) → version {number}")
    _wait_until_ready(ex, change.address, model, number, deadline)
    ex.registered[change.address] = number
    ex.progress(change.address, f"version {number} {READY}")


def _wait_until_ready(ex: Executor, where: str, model: str, number: str, deadline: float) -> None:
    """Poll the version until it leaves PENDING_REGISTRATION (interruptible, bounded by --timeout)."""
    interval = FIRST_POLL_SECONDS
    while True:
        found = ex.ws.get_model_version(model, number)
        status = (found or {}).get("status")
        if status == READY:
            return
        if found is None:
            raise ReconcilerError(Problem(f"version {number} was deleted while it was registering", subject=where))
        if status == FAILED:
            why = (ex.ws.get_version_status(model, number) or {}).get("status_message") or "the server gave no reason"
            raise ReconcilerError(Problem(f"registration of version {number} ended {FAILED}: {why}", subject=where))
        if time.monotonic() + interval > deadline:
            raise ReconcilerError(Problem(f"version {number} is still {status} after --timeout "
                                          f"{ex.options.timeout_seconds:.0f}s; run apply again to wait for it",
                                          subject=where))
        ex.progress(where, f"version {number} {status}")
        if ex.ws.cancel.wait(interval):
            raise Interrupted(ex.ws.cancel_signal)
        interval = min(interval * 1.5, MAX_POLL_SECONDS)


def alias_numbers(ex: Executor, change: Change) -> dict[str, Any]:
    """A model's desired state with each alias named by a source this run registered written as
    its number; one still unregistered stays as it is (its move is linked: it waits, or is skipped)."""
    desired = copy.deepcopy(change.desired or {})
    aliases = desired.get("aliases") or {}
    for alias, version in aliases.items():
        number = ex.registered.get(address(change.name, version)) if is_source(version) else None
        if number is not None:
            aliases[alias] = int(number)
    return desired


def entity_numbers(ex: Executor, change: Change) -> dict[str, Any] | None:
    """An endpoint's desired state with each version named by its source written as the number
    this run registered for it; None, and the endpoint skipped, when one was not registered."""
    desired = copy.deepcopy(change.desired or {})
    missing = []
    for fields in (desired.get("served_entities") or {}).values():
        version = fields.get("entity_version")
        if is_source(version):
            where = address(fields.get("entity_name", ""), version)
            number = ex.registered.get(where)
            if number is None:
                missing.append(where)
            fields["entity_version"] = number
    if missing:
        ex.skip(change.address, f"not updated: {', '.join(missing)} was not registered")
        return None
    return desired
