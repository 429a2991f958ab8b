"""The `RegisteredModel` kind: a Unity Catalog registered model, its comment, owner and aliases.

Its seam (see `kinds/__init__.py`): address `registered_model.<catalog.schema.model>`, manifest
model `manifests.model.RegisteredModel`, read with `Workspace.get_model` (aliases included),
normalised by `normalize.desired_model` / `live_model`, planned into at most one call per
changed part, executed in two steps (aliases no endpoint waits for before the endpoints; alias
moves linked to endpoints after them, only if those endpoints serve the new version healthily),
exported by `export/models.py`. Registered models are never deleted.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from reconciler.diff import diff
from reconciler.errors import AlreadyExists, ReconcilerError
from reconciler.kinds import model_version
from reconciler.normalize import desired_model, live_model, overlay
from reconciler.plan import Action, Change, Operation, fingerprint
from reconciler.terms import is_source

if TYPE_CHECKING:
    from reconciler.apply import Executor
    from reconciler.live import LiveState
    from reconciler.manifests.loader import Manifests
    from reconciler.workspace import Workspace

KEY = "registered_model"
GRAMMAR = "model"  # terms.GRAMMAR: what a name of this kind must look like, wherever it comes from
OPERATIONS = ("create_model", "update_model", "set_alias", "delete_alias")


def names(manifests: Manifests) -> set[str]:
    """The models to read: those with a manifest, those endpoints serve through an alias, and those
    a served version is to be registered into (it must exist: `model_version.check`)."""
    found = set(manifests.models)
    for loaded in manifests.endpoints.values():
        found |= {e.entity_name for e in loaded.manifest.spec.served_entities
                  if e.alias or is_source(e.entity_version)}
    return found


def read(ws: Workspace, name: str) -> dict[str, Any] | None:
    return ws.get_model(name)


# ---- plan ------------------------------------------------------------------------------------------

def plan_all(manifests: Manifests, live: LiveState, resolved: dict[str, list[str]], *, stack: str | None,
             prune: bool, deployer: str | None = None) -> list[Change]:
    return [plan(name, desired_model(loaded.manifest), live.models.get(name))
            for name, loaded in sorted(manifests.models.items())]


def plan(name: str, desired: dict[str, Any], live_api: dict[str, Any] | None) -> Change:
    address = f"{KEY}.{name}"
    now = live_model(live_api) if live_api is not None else None
    change = Change(address, KEY, name, Action.NOOP, desired=desired, fingerprint=fingerprint(now))
    change.operations = operations(desired, now)
    change.diff = diff(now or {}, overlay(desired, now))
    if now is None:
        change.action = Action.CREATE
    elif change.operations:
        change.action = Action.UPDATE
    return change


def operations(desired: dict[str, Any], live: dict[str, Any] | None) -> list[Operation]:
    ops: list[Operation] = []
    live_aliases = (live or {}).get("aliases", {})
    if live is None:
        ops.append(Operation("create_model", f"create_model(comment: {json.dumps(desired.get('comment'))})",
                             args={"comment": desired.get("comment")}))
        fields = {k: desired[k] for k in ("owner",) if k in desired}
    else:
        fields = {k: desired[k] for k in ("comment", "owner") if k in desired and desired[k] != live.get(k)}
    if fields:
        described = ", ".join(f"{k}: {json.dumps(v)}" for k, v in fields.items())
        ops.append(Operation("update_model", f"update_model({described})", args={"fields": fields}))
    for alias, version in sorted(desired.get("aliases", {}).items()):
        if live_aliases.get(alias) != version:
            ops.append(Operation("set_alias", f"set_alias({alias} → {version})",
                                 args={"alias": alias, "version": version}))
    if "aliases" in desired:
        for alias in sorted(set(live_aliases) - set(desired["aliases"])):
            ops.append(Operation("delete_alias", f"delete_alias({alias})", args={"alias": alias}))
    return ops


# ---- apply -----------------------------------------------------------------------------------------

def has_unlinked(change: Change) -> bool:
    return any(not op.after for op in change.operations)


def has_linked(change: Change) -> bool:
    return any(op.after for op in change.operations)


def apply_unlinked(ex: Executor, change: Change) -> None:
    _apply(ex, change, linked=False)


def apply_linked(ex: Executor, change: Change) -> None:
    _apply(ex, change, linked=True)


def _apply(ex: Executor, change: Change, *, linked: bool) -> None:
    """The model's writes, re-derived from a fresh read: either those no endpoint waits for, or
    (`linked`) the alias changes that wait for endpoints, each only once they serve the version."""
    linked_aliases = {op.args.get("alias"): op.after for op in change.operations if op.after}
    followers = {op.args.get("alias"): op.args.get("followers", {}) for op in change.operations if op.after}
    waiting = {a: ex.unfinished(deps) for a, deps in linked_aliases.items()} if linked else {}
    api = ex.ws.get_model(change.name)
    now = live_model(api) if api is not None else None
    desired = model_version.alias_numbers(ex, change)  # aliases named by a source: the number registered
    for op in operations(desired, now):
        is_linked = op.name in ("set_alias", "delete_alias") and op.args["alias"] in linked_aliases
        if is_linked != linked:
            continue
        if linked and waiting.get(op.args["alias"]):
            unfinished = ", ".join(waiting[op.args["alias"]])
            if not ex.options.wait and ex.only_sent(waiting[op.args["alias"]]):
                ex.not_waited(change.address, f"{op.description} not done: {unfinished} not waited for (--no-wait); "
                                              "run apply again once it serves the new version")
            else:
                ex.skip(change.address, f"{op.description} not done: {unfinished} did not finish registering or "
                                        "serving the new version")
            continue
        not_serving = _not_serving(ex, linked_aliases[op.args["alias"]], followers[op.args["alias"]], change.name,
                                   op.args.get("version")) if linked else ""
        if not_serving:
            ex.skip(change.address, f"{op.description} not done: {not_serving}")
            continue
        _write(ex.ws, change.name, op.name, op.args)
        ex.wrote(change.address, op.description)
    ex.unchanged(change.address)


def _not_serving(ex: Executor, addresses: list[str], followers: dict[str, list[str]], model: str,
                 version: Any) -> str:
    """Why the endpoints an alias move waits for do not serve `model` `version` healthily now
    ("" when they all do). The ones this run updated were just seen serving it; any other (an
    update left in progress by an interrupted run, which the plan linked) is waited for and
    looked at now, so an alias never points at a version that is not being served."""
    from reconciler.kinds import serving_endpoint

    reasons = []
    for address in addresses:
        if not address.startswith(f"{serving_endpoint.KEY}."):
            continue  # a registration this move waited for (kinds/model_version.py): it finished
        name = address.split(".", 1)[1]
        api = ex.served.get(name)
        if api is None:
            deadline = time.monotonic() + ex.options.timeout_seconds
            api = serving_endpoint.wait(ex, name, address, deadline, check_failure=False) if ex.options.wait \
                else ex.ws.get_endpoint(name) or {}
        reason = not_serving(api, model, version, followers.get(address, []))
        if reason:
            reasons.append(f"{name} {reason}")
    return "; ".join(reasons)


def not_serving(api: dict[str, Any], model: str, version: Any, followers: list[str]) -> str:
    """Why endpoint `api` does not serve `model` `version` healthily through every served entity
    in `followers` (those that follow the alias), or "". The version served by some other entity
    (a challenger) does not count: the alias must be what its followers serve."""
    state = api.get("state") or {}
    if state.get("ready") != "READY" or state.get("config_update") != "NOT_UPDATING":
        return f"does not serve version {version} healthily (ready {state.get('ready')}, config_update " \
               f"{state.get('config_update')})"
    if version is None:
        return ""
    entities = {e.get("name"): e for e in (api.get("config") or {}).get("served_entities") or []}
    for key in followers or []:
        entity = entities.get(key) or {}
        if (entity.get("entity_name"), str(entity.get("entity_version"))) != (model, str(version)):
            return f"does not serve version {version} through served entity {key}, which follows the alias " \
                   f"(it serves {entity.get('entity_name')} version {entity.get('entity_version')})"
    if not followers and not any((e.get("entity_name"), str(e.get("entity_version"))) == (model, str(version))
                                 for e in entities.values()):
        return f"does not serve version {version}"
    return ""


def _write(ws: Workspace, name: str, op: str, args: dict[str, Any]) -> None:
    if op == "create_model":
        try:
            ws.create_model(name, comment=args.get("comment"))
        except ReconcilerError as exc:
            # A retried POST whose first attempt landed: the model is there, which was the goal.
            if not isinstance(exc, AlreadyExists) and ws.get_model(name) is None:
                raise
    elif op == "update_model":
        ws.update_model(name, args["fields"])
    elif op == "set_alias":
        ws.set_alias(name, args["alias"], int(args["version"]))
    elif op == "delete_alias":
        ws.delete_alias(name, args["alias"])
