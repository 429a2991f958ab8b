"""The `ServingEndpoint` kind: a Model Serving endpoint, its served entities, traffic, tags, AI
gateway and permissions.

Its seam (see `kinds/__init__.py`): address `serving_endpoint.<name>`, manifest model
`manifests.model.ServingEndpoint`, read with `Workspace.get_endpoint` (and its ACL when the
manifest manages permissions), normalised by `normalize.desired_endpoint` / `live_endpoint`,
planned into the narrowest call per changed part (`operations`), executed by `apply_change`
(wait for an update in progress, tags, AI gateway, permissions, then the config write and the
wait for it), deleted by `delete` (prune), exported by `export.endpoints`.

Serving endpoint updates are asynchronous: an endpoint with an update in progress refuses
another one (409), so every write waits for it first, and the config write is made last (an AI
gateway write during its update is a 409 too).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from reconciler.diff import diff
from reconciler.errors import Conflict, Interrupted
from reconciler.normalize import acl_payload, config_payload, desired_endpoint, live_endpoint, overlay
from reconciler.plan import Action, Change, Operation, fingerprint
from reconciler.terms import MANAGED_BY_TAG, STACK_TAG, managed, updating

if TYPE_CHECKING:
    from reconciler.apply import Executor
    from reconciler.live import LiveState
    from reconciler.manifests.loader import Manifests
    from reconciler.workspace import Workspace

KEY = "serving_endpoint"
OPERATIONS = ("create_endpoint", "update_config", "patch_tags", "put_ai_gateway", "update_permissions",
              "set_permissions", "delete_endpoint")
CONFIG_KEYS = ("served_entities", "traffic", "auto_capture_config")
OWN_TAG_PATHS = (f"tags[{MANAGED_BY_TAG}]", f"tags[{STACK_TAG}]")
REPLACE_KEYS = {"description": "description cannot change after creation",
                "route_optimized": "route_optimized cannot change after creation"}
FIRST_POLL_SECONDS = 0.5
MAX_POLL_SECONDS = 10.0


class EndpointFailed(Exception):
    """An endpoint update that ended badly; its message is for the user."""


def names(manifests: Manifests) -> set[str]:
    return set(manifests.endpoints)


def read(ws: Workspace, name: str) -> dict[str, Any] | None:
    return ws.get_endpoint(name)


def current(ws: Workspace, change: Change) -> dict[str, Any] | None:
    """The endpoint's normalised state now, shaped as `plan` shaped it (for a saved plan's check)."""
    api = ws.get_endpoint(change.name)
    if api is None:
        return None
    wants_acl = change.desired is not None and "permissions" in change.desired
    acl = ws.get_endpoint_permissions(change.name, api["id"]) if wants_acl and api.get("id") else None
    return live_endpoint(api, acl)


# ---- plan ------------------------------------------------------------------------------------------

def plan_all(manifests: Manifests, live: LiveState, resolved: dict[str, list[str]], *, stack: str | None,
             prune: bool) -> list[Change]:
    """Every endpoint of the manifests, and with `prune` the managed ones of this stack that left them."""
    changes = [plan(name, desired_endpoint(loaded.manifest, resolved[name], stack=stack), live.endpoints.get(name),
                    live.permissions.get(name)) for name, loaded in sorted(manifests.endpoints.items())]
    if prune:
        changes += [plan(name, None, api, None) for name, api in sorted(live.prunable.items())]
    return changes


def plan(name: str, desired: dict[str, Any] | None, live_api: dict[str, Any] | None,
                  acl: dict[str, Any] | None) -> Change:
    address = f"{KEY}.{name}"
    live = live_endpoint(live_api, acl) if live_api is not None else None
    change = Change(address, KEY, name, Action.NOOP, desired=desired, fingerprint=fingerprint(live))
    if desired is None:  # pruned: managed by us, gone from the manifests
        change.action = Action.DELETE
        change.operations = [Operation("delete_endpoint", f"delete_endpoint({name})")]
        return change
    effective = overlay(desired, live)
    if live is None:
        change.action = Action.CREATE
        change.diff = diff({}, effective)
        change.operations = create_operations(name, effective)
        return change
    change.diff = diff(live, effective)
    change.replace_reasons = [reason for key, reason in REPLACE_KEYS.items() if effective.get(key) != live.get(key)]
    if change.replace_reasons:
        change.action = Action.REPLACE
        change.operations = [Operation("delete_endpoint", f"delete_endpoint({name})")] + \
            create_operations(name, effective)
        return change
    change.operations = operations(live, effective)
    if _only_adopts(live, effective, change.operations):
        change.operations = []
        change.diff = [d for d in change.diff if d.path not in OWN_TAG_PATHS]
        change.notes.append("not tagged managed-by: reconciler yet (adopted, e.g. by `reconciler export`); "
                            "the tag is added with its next change")
    if change.operations:
        change.action = Action.UPDATE
    state = (live_api or {}).get("state") or {}
    if updating(live_api):
        change.notes.append("an update is in progress; apply waits for it before writing")
    elif state.get("config_update") == "UPDATE_FAILED":
        change.notes.append("the last config update failed; the previous config is still serving")
    return change


def create_operations(name: str, effective: dict[str, Any]) -> list[Operation]:
    entities = ", ".join(f"{n}={f['entity_name'].rsplit('.', 1)[-1]} v{f['entity_version']}"
                         for n, f in effective["served_entities"].items())
    ops = [Operation("create_endpoint", f"create_endpoint({entities})")]
    grants = effective.get("permissions") or {}
    if grants:
        ops.append(Operation("update_permissions",
                             f"update_permissions({', '.join(f'{p} → {lvl}' for p, lvl in sorted(grants.items()))})"))
    return ops


def operations(live: dict[str, Any], effective: dict[str, Any]) -> list[Operation]:
    """The writes that turn `live` into `effective`, narrowest call per changed part, in the order
    apply makes them: the config write last, since an AI gateway write during its update is a 409."""
    ops: list[Operation] = []
    add, delete = tag_changes(live, effective)
    if add or delete:
        ops.append(Operation("patch_tags", f"patch_tags(add: [{', '.join(sorted(add))}], delete: [{', '.join(delete)}])"))
    if live.get("ai_gateway", {}) != effective.get("ai_gateway", {}):
        ops.append(Operation("put_ai_gateway", "put_ai_gateway(" + ", ".join(sorted(effective.get("ai_gateway", {}))) + ")"))
    upsert, remove = permission_changes(live, effective)
    if remove:
        ops.append(Operation("set_permissions", f"set_permissions({len(effective['permissions'])} principals; "
                                                f"removes {', '.join(remove)})"))
    elif upsert:
        ops.append(Operation("update_permissions",
                             f"update_permissions({', '.join(f'{p} → {lvl}' for p, lvl in sorted(upsert.items()))})"))
    if any(live.get(k) != effective.get(k) for k in CONFIG_KEYS):
        routes = " ".join(f"{n}={p}%" for n, p in effective["traffic"].items())
        versions = ", ".join(f"{n}=v{f.get('entity_version')}" for n, f in effective["served_entities"].items())
        ops.append(Operation("update_config", f"update_config({versions}; routes {routes})"))
    return ops


def _only_adopts(live: dict[str, Any], effective: dict[str, Any], ops: list[Operation]) -> bool:
    """True when the one difference is that an endpoint made elsewhere lacks our ownership tags.

    Tagging alone is not worth a write, and adopting an endpoint (`reconciler export`, then plan)
    must show no changes; the tags ride along with the endpoint's next real change. Only for an
    endpoint with no `managed-by` tag at all: taking over another tool's endpoint, or moving ours
    to another stack, stays a change."""
    if [op.name for op in ops] != ["patch_tags"] or MANAGED_BY_TAG in live.get("tags", {}):
        return False
    add, delete = tag_changes(live, effective)
    return not delete and set(add) <= {MANAGED_BY_TAG, STACK_TAG}


def tag_changes(live: dict[str, Any], effective: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    live_tags, tags = live.get("tags", {}), effective.get("tags", {})
    add = {k: v for k, v in tags.items() if live_tags.get(k) != v}
    return add, sorted(set(live_tags) - set(tags))


def permission_changes(live: dict[str, Any], effective: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    if "permissions" not in effective:
        return {}, []
    live_grants, grants = live.get("permissions", {}), effective["permissions"]
    upsert = {p: lvl for p, lvl in grants.items() if live_grants.get(p) != lvl}
    return upsert, sorted(set(live_grants) - set(grants))


# ---- apply -----------------------------------------------------------------------------------------

def apply_change(ex: Executor, change: Change) -> None:
    name, address = change.name, change.address
    deadline = time.monotonic() + ex.options.timeout_seconds
    api = ex.ws.get_endpoint(name)
    if api is not None and updating(api):
        ex.progress(address, "an update is in progress; waiting for it before writing")
        api = wait(ex, name, address, deadline, check_failure=False)
    if change.action is Action.REPLACE and api is not None:
        ex.ws.delete_endpoint(name)
        ex.wrote(address, f"delete_endpoint({name}) for replacement")
        api = None
    desired = change.desired or {}
    if api is None:
        api = _create(ex, change, desired)
        if api is None:
            return
    acl = ex.ws.get_endpoint_permissions(name, api["id"]) if "permissions" in desired and api.get("id") else None
    live = live_endpoint(api, acl)
    effective = overlay(desired, live)
    ops = operations(live, effective)
    config_op = next((op for op in ops if op.name == "update_config"), None)
    for op in ops:  # everything but the config first: an AI gateway write during an update is a 409
        if op is config_op:
            continue
        if op.name == "patch_tags":
            add, delete = tag_changes(live, effective)
            ex.ws.patch_tags(name, add=add, delete=delete)
        elif op.name == "put_ai_gateway":
            ex.ws.put_ai_gateway(name, effective.get("ai_gateway", {}))
        else:
            grants = effective["permissions"]
            if op.name == "update_permissions":
                grants = {p: lvl for p, lvl in grants.items() if live.get("permissions", {}).get(p) != lvl}
            ex.ws.update_permissions(name, api["id"], acl_payload(grants), replace=op.name == "set_permissions")
        ex.wrote(address, op.description)
    if config_op is not None:
        _update_config(ex, name, address, config_payload(effective), deadline)
        ex.wrote(address, config_op.description)
    if config_op is not None or updating(api):
        _finish(ex, name, address, deadline)
    ex.unchanged(address)

def _create(ex: Executor, change: Change, desired: dict[str, Any]) -> dict[str, Any] | None:
    name, address = change.name, change.address
    effective = overlay(desired, None)
    payload = {"name": name, "config": config_payload(effective), "tags": effective.get("tags", {}),
               **{k: effective[k] for k in ("ai_gateway", "description", "route_optimized") if k in effective}}
    try:
        api = ex.ws.create_endpoint(payload)
    except Conflict:
        api = _adopt_existing(ex, name)  # a retried POST whose first attempt landed
    ex.wrote(address, f"create_endpoint({name})")
    if "permissions" in desired and api.get("id"):
        acl = ex.ws.get_endpoint_permissions(name, api["id"])
        grants = {p: lvl for p, lvl in desired["permissions"].items()
                  if live_endpoint(api, acl).get("permissions", {}).get(p) != lvl}
        if grants:
            ex.ws.update_permissions(name, api["id"], acl_payload(grants), replace=False)
            ex.wrote(address, f"update_permissions({', '.join(sorted(grants))})")
    _finish(ex, name, address, time.monotonic() + ex.options.timeout_seconds)
    return None

def _adopt_existing(ex: Executor, name: str) -> dict[str, Any]:
    api = ex.ws.get_endpoint(name)
    if api is None or not managed(api):
        raise EndpointFailed("create_endpoint: an endpoint with this name already exists and is not managed by "
                             "the reconciler; run `reconciler export` to adopt it, or rename")
    return api

def _update_config(ex: Executor, name: str, address: str, payload: dict[str, Any], deadline: float) -> None:
    try:
        ex.ws.update_config(name, payload)
    except Conflict:
        # 409: an update is in progress. Ours, if a retried PUT's first attempt landed (then the
        # pending config is what we sent); else someone else's: wait it out and write once more.
        api = wait(ex, name, address, deadline, check_failure=False)
        if live_endpoint(api)["served_entities"] != live_endpoint({"config": payload})["served_entities"]:
            ex.ws.update_config(name, payload)

def _finish(ex: Executor, name: str, address: str, deadline: float) -> None:
    if not ex.options.wait:
        ex.progress(address, "not waiting for the update to finish (--no-wait); linked alias moves are skipped")
        ex.sent(address)
        return
    api = wait(ex, name, address, deadline, check_failure=True)
    if (api.get("state") or {}).get("ready") != "READY":
        raise EndpointFailed("update finished but the endpoint is NOT_READY")
    ex.served[name] = api
    ex.progress(address, "serving (READY, NOT_UPDATING)")

def wait(ex: Executor, name: str, address: str, deadline: float, *, check_failure: bool) -> dict[str, Any]:
    """Poll until no update is in progress (`_poll`); while it waits, the progress heartbeat names it."""
    with ex.progress.waiting(address, "config_update IN_PROGRESS"):
        return _poll(ex, name, address, deadline, check_failure=check_failure)

def _poll(ex: Executor, name: str, address: str, deadline: float, *, check_failure: bool) -> dict[str, Any]:
    """Poll, backing off from 0.5 s to 10 s between polls; bounded by --timeout (`deadline`) and the
    run's --deadline, and abandoned at once on an interrupt (interrupts.py)."""
    limit = deadline if ex.ws.deadline is None else min(deadline, ex.ws.deadline)
    interval = FIRST_POLL_SECONDS
    last_state = None
    while True:
        api = ex.ws.get_endpoint(name)
        ex.polls[address] = ex.polls.get(address, 0) + 1
        if api is None:
            raise EndpointFailed("the endpoint disappeared while waiting for its update")
        state = (api.get("state") or {}).get("config_update")
        if state != last_state:
            ex.progress(address, f"config_update {state}" if last_state else f"waiting: config_update {state}")
        last_state = state
        if not updating(api):
            if check_failure and state in ("UPDATE_FAILED", "UPDATE_CANCELED"):
                raise EndpointFailed(_failure_message(ex, name, api, state))
            return api
        if time.monotonic() + interval > limit:
            bound = f"--timeout {ex.options.timeout_seconds:.0f}s" if limit == deadline else "the run's --deadline"
            raise EndpointFailed(f"still updating after {bound}; the update goes on in the workspace: run "
                                 "apply again to wait for it and finish")
        if ex.ws.cancel.wait(interval):
            raise Interrupted(ex.ws.cancel_signal)
        interval = min(interval * 1.5, MAX_POLL_SECONDS)

def _failure_message(ex: Executor, name: str, api: dict[str, Any], state: str) -> str:
    parts = [f"config update ended {state}; the previous config keeps serving"]
    for config in (api.get("pending_config"), api.get("config")):
        for entity in (config or {}).get("served_entities") or []:
            entity_state = entity.get("state") or {}
            if entity_state.get("deployment") == "DEPLOYMENT_FAILED":
                parts.append(f"served entity {entity.get('name')}: {entity_state.get('deployment_state_message')}")
                logs = ex.ws.build_logs_tail(name, entity.get("name") or "")
                if logs:
                    parts.append(f"build logs: {logs}")
    return "; ".join(dict.fromkeys(parts))

def delete(ex: Executor, change: Change) -> None:
    ex.ws.delete_endpoint(change.name)
    ex.wrote(change.address, f"delete_endpoint({change.name})")
