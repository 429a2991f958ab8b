"""The `ServingEndpoint` kind: a Model Serving endpoint, its served entities, traffic, tags, AI
gateway and permissions.

Its seam (see `kinds/__init__.py`): address `serving_endpoint.<name>`, manifest model
`manifests.model.ServingEndpoint`, read with `Workspace.get_endpoint` (and its ACL when the
manifest manages permissions), normalised by `normalize.desired_endpoint` / `live_endpoint`,
planned into the narrowest call per changed part (`operations`), executed by `apply_change`
(wait for an update in progress, tags, AI gateway, permissions, then the config write and the
wait for it), deleted by `delete` (prune), exported by `export/endpoints.py`.

Serving endpoint updates are asynchronous: an endpoint with an update in progress refuses
another one (409), so every write waits for it first, and the config write is made last (an AI
gateway write during its update is a 409 too).

Health-gated promotion (`spec.rollout`) lives in `reconciler/rollout.py`; the places it joins in
here are marked ROLLOUT HOOK: the live endpoint is seen as it was before an unfinished rollout,
a version change is planned as rollout operations, and apply hands it every config write.

A replace (a change to an immutable field, `normalize.IMMUTABLE_FIELDS`) re-creates the endpoint
with everything the manifest does not manage taken from the one it replaces: tags when `tags:` is
absent, the AI gateway when `ai_gateway:` is absent, direct grants when `permissions:` is absent,
the budget policy (GET's `effective_budget_policy_id`: GET never returns `budget_policy_id`,
databricks/cli model_serving_endpoints.yml) and email notifications.

AI gateway writes follow what the API accepts: an inference table's location cannot change while
it is enabled ("On update, you have to disable inference table first", `AiGatewayInferenceTableConfig`
docstrings), so a move is two writes, disable then the new one; on agent endpoints only inference
tables are compared and written (normalize.py rule 13), so an inference table that is already
enabled is never sent again: the write the API refuses with "Inference tables is already enabled"
(databricks-agents 1.13 `deployments.py` never resends `ai_gateway` on redeploy for that reason).
Other endpoints get their whole gateway in one PUT, as Terraform's provider sends it.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any, overload

from reconciler.diff import diff
from reconciler.errors import Conflict, Interrupted
from reconciler.kinds import model_version
from reconciler.normalize import (
    IMMUTABLE_FIELDS,
    MANAGED_ENTITY_FIELDS,
    WRITE_ONLY_ENTITY_FIELDS,
    acl_payload,
    comparable,
    config_payload,
    desired_endpoint,
    live_endpoint,
    overlay,
)
from reconciler.plan import Action, Change, Operation, fingerprint
from reconciler.terms import (
    MANAGED_BY_TAG,
    MANAGED_BY_VALUE,
    STACK_TAG,
    default_entity_name,
    managed,
    owned_by_stack,
    tag_map,
    update_failed,
    updating,
    version_label,
)

if TYPE_CHECKING:
    from reconciler.apply import Executor
    from reconciler.live import LiveState
    from reconciler.manifests.loader import Manifests
    from reconciler.manifests.model import ServingEndpoint
    from reconciler.workspace import Workspace

KEY = "serving_endpoint"
GRAMMAR = "endpoint"  # terms.GRAMMAR: what a name of this kind must look like, wherever it comes from
OPERATIONS = ("create_endpoint", "update_config", "patch_tags", "put_ai_gateway", "update_permissions",
              "set_permissions", "delete_endpoint", "rollout", "rollback_rollout", "finish_rollout")
CONFIG_KEYS = ("served_entities", "traffic")
OWN_TAG_PATHS = (f"tags[{MANAGED_BY_TAG}]", f"tags[{STACK_TAG}]")
INFERENCE_TABLE_LOCATION = ("catalog_name", "schema_name", "table_name_prefix")
# Endpoint settings a replace carries over from the endpoint it replaces, as GET names them.
KEPT_ON_REPLACE = {"effective_budget_policy_id": "budget_policy_id", "email_notifications": "email_notifications"}
RESET_RULE = ("a served entity in a manifest is complete (new in this release): a field it leaves out means the "
              "API's default, so a live value it does not state is reset; state the field to keep it (README, "
              "\"Upgrading\")")
FIRST_POLL_SECONDS = 0.5
EAGER_POLL_SECONDS = 0.1
MAX_POLL_SECONDS = 10.0
POLL_SHARE = 0.1  # a poll comes at most this share of the time waited so far after the update finished
STEADY_POLL_SECONDS = 3.0  # ... and at most this long after it, until the wait is long (poll_interval)


class EndpointFailed(Exception):
    """An endpoint update that ended badly; its message is for the user."""


def names(manifests: Manifests) -> set[str]:
    return set(manifests.endpoints)


def read(ws: Workspace, name: str) -> dict[str, Any] | None:
    return ws.get_endpoint(name)


def depends(change: Change) -> set[str]:
    """What an endpoint serves: each served model (its aliases included) and a version being
    registered for it (`model_version.<model>@<source>`), as addresses."""
    found = set()
    for entity in (change.desired or {}).get("served_entities", {}).values():
        found |= {f"registered_model.{entity.get('entity_name')}",
                  f"model_version.{entity.get('entity_name')}@{entity.get('entity_version')}"}
    return found


# ---- plan ------------------------------------------------------------------------------------------

def plan_all(manifests: Manifests, live: LiveState, resolved: dict[str, list[str]], *, stack: str | None,
             prune: bool, deployer: str | None = None) -> list[Change]:
    """Every endpoint of the manifests, and with `prune` the managed ones of this stack that left them."""
    changes = []
    for name, loaded in sorted(manifests.endpoints.items()):
        change = plan(name, desired_endpoint(loaded.manifest, resolved[name], stack=stack, deployer=deployer),
                      live.endpoints.get(name), live.permissions.get(name), rollout=loaded.manifest.spec.rollout)
        change.notes += reset_notes(loaded.manifest, resolved[name], change)
        changes.append(change)
    if prune:
        changes += [plan(name, None, api, None) for name, api in sorted(live.prunable.items())]
    return changes


def plan(name: str, desired: dict[str, Any] | None, live_api: dict[str, Any] | None,
         acl: dict[str, Any] | None, *, rollout: Any = None) -> Change:
    address = f"{KEY}.{name}"
    live = live_endpoint(live_api, acl) if live_api is not None else None
    change = Change(address, KEY, name, Action.NOOP, desired=desired, fingerprint=fingerprint(live))
    # ROLLOUT HOOK (reconciler/rollout.py): diff the endpoint as it was before an unfinished rollout.
    actual, live = live, _before_rollout(live_api, live, address)
    if desired is None:  # pruned: managed by us, gone from the manifests
        change.action = Action.DELETE
        change.operations = [Operation("delete_endpoint", f"delete_endpoint({name})")]
        return change
    effective = overlay(desired, live)
    change.notes += _deployer_notes(desired, effective)
    if live is None:
        change.action = Action.CREATE
        change.diff = diff({}, effective)
        change.operations = create_operations(name, effective)
        return change
    change.diff = diff(live, comparable(effective))
    change.replace_reasons = [reason for key, reason in IMMUTABLE_FIELDS.items() if effective.get(key) != live.get(key)]
    if change.replace_reasons:
        change.action = Action.REPLACE
        change.operations = [Operation("delete_endpoint", f"delete_endpoint({name})")] + \
            create_operations(name, effective)
        kept = [what for what, present in (("tags", "tags" not in desired), ("the AI gateway", "ai_gateway" not in desired
                and "ai_gateway" in live), ("direct grants", "permissions" not in desired and live.get("permissions")),
                ("the budget policy", (live_api or {}).get("effective_budget_policy_id")),
                ("email notifications", (live_api or {}).get("email_notifications"))) if present]
        if kept:
            change.notes.append(f"the new endpoint keeps what the manifest does not manage: {', '.join(kept)}")
        return change
    change.operations = operations(live, effective)
    if actual is not None and live_api is not None:  # ROLLOUT HOOK: version changes under spec.rollout
        from reconciler import rollout as rollouts

        rollouts.plan_change(change, rollouts.spec_json(rollout) if rollout is not None else None, live_api, actual,
                             live, effective)
    if _only_adopts(live, effective, change.operations):
        change.operations = []
        change.diff = [d for d in change.diff if d.path not in OWN_TAG_PATHS]
        change.notes.append("not tagged managed-by: reconciler yet (adopted, e.g. by `reconciler export`); "
                            "the tag is added with its next change")
    if change.operations:
        change.action = Action.UPDATE
    if updating(live_api):
        change.notes.append("an update is in progress; apply waits for it before writing")
    elif update_failed(live_api):
        change.notes.append("the last config update failed; the previous config is still serving")
    return change


@overload
def _before_rollout(api: dict[str, Any], live: dict[str, Any], address: str) -> dict[str, Any]: ...
@overload
def _before_rollout(api: dict[str, Any] | None, live: dict[str, Any] | None, address: str) -> dict[str, Any] | None: ...
def _before_rollout(api: dict[str, Any] | None, live: dict[str, Any] | None, address: str) -> dict[str, Any] | None:
    """ROLLOUT HOOK: the live endpoint without an unfinished rollout's marker and new entity."""
    if api is None or live is None:
        return live
    from reconciler import rollout as rollouts

    return rollouts.before(live, rollouts.read_marker(api, address))


def _deployer_notes(desired: dict[str, Any], effective: dict[str, Any]) -> list[str]:
    """The plan says when the deploying identity keeps CAN_MANAGE that the manifest does not give it
    (not when it is the creator the manifest leaves out: the creator's grant was always kept)."""
    deployer = desired.get("deployer")
    said = desired.get("permissions", {}).get(deployer)
    if deployer is None or effective.get("permissions", {}).get(deployer) != "CAN_MANAGE" or said == "CAN_MANAGE":
        return []
    if said is None and deployer.split(":", 1)[1] == effective.get("creator"):
        return []
    how = f"the manifest grants it {said}" if said else "the manifest does not name it"
    return [f"{deployer} keeps CAN_MANAGE: it is the identity that applies ({how})"]


def create_operations(name: str, effective: dict[str, Any]) -> list[Operation]:
    entities = ", ".join(f"{n}={f['entity_name'].rsplit('.', 1)[-1]} {version_label(f['entity_version'])}"
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
    effective = comparable(effective)
    add, delete = tag_changes(live, effective)
    if add or delete:
        ops.append(Operation("patch_tags", f"patch_tags(add: [{', '.join(sorted(add))}], delete: [{', '.join(delete)}])"))
    if live.get("ai_gateway", {}) != effective.get("ai_gateway", {}):
        if moves_inference_table(live, effective):
            ops.append(Operation("put_ai_gateway", "put_ai_gateway(inference_table_config disabled: an enabled "
                                                   "table's location cannot change)", args={"step": "disable_table"}))
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
        versions = ", ".join(f"{n}={version_label(f.get('entity_version'))}" for n, f in effective["served_entities"].items())
        ops.append(Operation("update_config", f"update_config({versions}; routes {routes})"))
    return ops


def moves_inference_table(live: dict[str, Any], effective: dict[str, Any]) -> bool:
    """An enabled inference table that stays enabled somewhere else: the API wants it disabled first."""
    before = (live.get("ai_gateway") or {}).get("inference_table_config") or {}
    after = (effective.get("ai_gateway") or {}).get("inference_table_config") or {}
    return bool(before.get("enabled") and after.get("enabled") and
                any(after.get(key) not in (None, before.get(key)) for key in INFERENCE_TABLE_LOCATION))


def reset_notes(manifest: ServingEndpoint, versions: list[str], change: Change) -> list[str]:
    """For this release: each served entity field that plan resets only because the manifest leaves
    it out (it meant "not managed" before), and one line saying why. Values of environment
    variables are not shown (they may be credentials)."""
    if change.action not in (Action.UPDATE, Action.REPLACE):
        return []
    stated = {entity.name or default_entity_name(entity.entity_name, version): entity.model_fields_set
              for entity, version in zip(manifest.spec.served_entities, versions, strict=True)}
    resets: dict[tuple[str, str], list[Any]] = {}
    for field_change in change.diff:
        match = re.fullmatch(r"served_entities\[([A-Za-z0-9_-]+)\]\.([a-z_]+)(\[.*\])?", field_change.path)
        if not match or field_change.before is None or match[1] not in stated:
            continue
        entity, key = match[1], match[2]
        if key in stated[entity] or key not in MANAGED_ENTITY_FIELDS or key in ("entity_name", "entity_version"):
            continue
        resets.setdefault((entity, key), []).append(field_change)
    notes = []
    for (entity, key), found in sorted(resets.items()):
        if key == "environment_vars":
            names = ", ".join(c.path.rsplit("[", 1)[-1].rstrip("]") for c in found)
            notes.append(f"served_entities[{entity}].environment_vars: {names} removed only because the manifest "
                         "leaves environment_vars out")
        else:
            after = "unset" if found[0].after is None else found[0].after
            notes.append(f"served_entities[{entity}].{key}: {found[0].before} → {after} only because the manifest "
                         f"leaves {key} out")
    return notes + [RESET_RULE] if notes else []


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
    desired = model_version.entity_numbers(ex, change)  # versions named by a source: the number registered
    if desired is None:
        return  # skipped: a version it would serve was not registered
    deadline = time.monotonic() + ex.options.timeout_seconds
    api = ex.ws.get_endpoint(name)
    if api is not None and updating(api):
        ex.progress(address, "an update is in progress; waiting for it before writing")
        api = wait(ex, name, address, deadline, check_failure=False)
    replaced = None
    if change.action is Action.REPLACE and api is not None:
        refused = ownership_problem(api, ex.plan.stack)
        if refused:
            ex.skip(address, f"delete_endpoint({name}) for replacement not done: {refused}")
            return
        # What the new endpoint keeps is read before the old one goes (see the module docstring).
        acl = ex.ws.get_endpoint_permissions(name, api["id"]) if api.get("id") else None
        replaced = (api, acl)
        ex.ws.delete_endpoint(name)
        ex.wrote(address, f"delete_endpoint({name}) for replacement")
        api = None
    if api is None:
        _create(ex, change, desired, replaced)
        return
    acl = ex.ws.get_endpoint_permissions(name, api["id"]) if "permissions" in desired and api.get("id") else None
    live = _before_rollout(api, live_endpoint(api, acl), address)  # ROLLOUT HOOK
    effective = overlay(desired, live)
    ops = operations(live, effective)
    config_op = next((op for op in ops if op.name == "update_config"), None)
    from reconciler import rollout as rollouts  # ROLLOUT HOOK: it makes every config write of this endpoint

    rolling = rollouts.wanted(change, api, live, effective)
    if rolling and not ex.options.wait:
        ex.not_waited(address, "a rollout waits for each of its steps, not started; run apply without --no-wait")
        return
    for op in ops:  # everything but the config first: an AI gateway write during an update is a 409
        if op is config_op:
            continue
        if op.name == "patch_tags":
            add, delete = tag_changes(live, effective)
            ex.ws.patch_tags(name, add=add, delete=delete)
        elif op.name == "put_ai_gateway" and op.args.get("step") == "disable_table":
            gateway = live.get("ai_gateway") or {}
            ex.ws.put_ai_gateway(name, {**gateway, "inference_table_config": {"enabled": False}})
        elif op.name == "put_ai_gateway":
            ex.ws.put_ai_gateway(name, effective.get("ai_gateway", {}))
        else:
            grants = effective["permissions"]
            if op.name == "update_permissions":
                grants = {p: lvl for p, lvl in grants.items() if live.get("permissions", {}).get(p) != lvl}
            ex.ws.update_permissions(name, api["id"], acl_payload(grants), replace=op.name == "set_permissions")
        ex.wrote(address, op.description)
    if rolling:  # ROLLOUT HOOK
        rollouts.run(ex, change, api, desired)
        ex.unchanged(address)
        return
    if config_op is not None:
        _update_config(ex, name, address, config_payload(effective, desired), deadline)
        ex.wrote(address, config_op.description)
    if config_op is not None or updating(api):
        _finish(ex, name, address, deadline)
    ex.unchanged(address)

def create_payload(name: str, effective: dict[str, Any], desired: dict[str, Any],
                   replaced: dict[str, Any] | None) -> dict[str, Any]:
    """POST /serving-endpoints body: the effective state, and for a replace the settings of the
    endpoint it replaces that manifests cannot state (KEPT_ON_REPLACE)."""
    payload: dict[str, Any] = {
        "name": name, "config": config_payload(effective, desired), "tags": effective.get("tags", {}),
        **{k: effective[k] for k in ("ai_gateway", "description", "route_optimized") if k in effective}}
    for live_key, key in KEPT_ON_REPLACE.items():
        if replaced is not None and replaced.get(live_key):
            payload[key] = replaced[live_key]
    return payload

def _create(ex: Executor, change: Change, desired: dict[str, Any],
            replaced: tuple[dict[str, Any], dict[str, Any] | None] | None = None) -> None:
    name, address = change.name, change.address
    effective = overlay(desired, live_endpoint(*replaced) if replaced else None)
    try:
        api = ex.ws.create_endpoint(create_payload(name, effective, desired, replaced[0] if replaced else None))
    except Conflict:
        api = _adopt_existing(ex, name)  # a retried POST whose first attempt landed
    ex.wrote(address, f"create_endpoint({name})")
    if effective.get("permissions") and api.get("id"):
        acl = ex.ws.get_endpoint_permissions(name, api["id"])
        grants = {p: lvl for p, lvl in effective["permissions"].items()  # the deployer's CAN_MANAGE kept
                  if live_endpoint(api, acl).get("permissions", {}).get(p) != lvl}
        if grants:
            ex.ws.update_permissions(name, api["id"], acl_payload(grants), replace=False)
            ex.wrote(address, f"update_permissions({', '.join(sorted(grants))})")
    _finish(ex, name, address, time.monotonic() + ex.options.timeout_seconds)

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
        if not _serves(api, payload):
            ex.ws.update_config(name, payload)

def _serves(api: dict[str, Any], payload: dict[str, Any]) -> bool:
    """Whether the endpoint's config is `payload`'s: every field sent (but the write-only ones, which
    GET never shows) as sent, server-filled fields aside."""
    serving = live_endpoint(api)["served_entities"]
    for entity in payload["served_entities"]:
        live = serving.get(entity["name"])
        sent = {k: v for k, v in entity.items() if k != "name" and k not in WRITE_ONLY_ENTITY_FIELDS}
        if live is None or any(live.get(k) != v for k, v in sent.items()):
            return False
    return set(serving) == {e["name"] for e in payload["served_entities"]}

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

def wait(ex: Executor, name: str, address: str, deadline: float, *, check_failure: bool,
         eager: bool = False) -> dict[str, Any]:
    """Poll until no update is in progress (`_poll`); while it waits, the progress heartbeat names it."""
    with ex.progress.waiting(address, "config_update IN_PROGRESS"):
        return _poll(ex, name, address, deadline, check_failure=check_failure, eager=eager)


def _poll(ex: Executor, name: str, address: str, deadline: float, *, check_failure: bool,
          eager: bool) -> dict[str, Any]:
    """Poll at `poll_interval`s; bounded by --timeout (`deadline`) and the run's --deadline, and
    abandoned at once on an interrupt (interrupts.py)."""
    limit = deadline if ex.ws.deadline is None else min(deadline, ex.ws.deadline)
    interval = EAGER_POLL_SECONDS if eager else FIRST_POLL_SECONDS
    started = time.monotonic()
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
        ex.check_lease()  # a run stalled past its lease stops here, before anything it would do next
        if time.monotonic() + interval > limit:
            bound = f"--timeout {ex.options.timeout_seconds:.0f}s" if limit == deadline else "the run's --deadline"
            raise EndpointFailed(f"still updating after {bound}; the update goes on in the workspace: run "
                                 "apply again to wait for it and finish")
        if ex.ws.cancel.wait(interval):
            raise Interrupted(ex.ws.cancel_signal)
        interval = poll_interval(time.monotonic() - started, eager=eager)


def poll_interval(waited: float, *, eager: bool = False) -> float:
    """Seconds to the next poll after `waited` seconds of waiting: the time between an update
    finishing and the poll that sees it is bounded relative to the wait so far (a 5 s update is seen
    within 0.5 s, not 1.6 s late as a x1.5 backoff would) and absolutely (a 60 s one within 3 s); only
    a long wait (minutes, as real updates take) polls less often, up to every 10 s (1/40 of the
    wait). `eager` (a rollout, whose updates follow one another so their overshoots add up): from
    0.1 s, then 15% of the time waited."""
    if eager:
        return min(max(EAGER_POLL_SECONDS, 0.15 * waited), MAX_POLL_SECONDS)
    return min(max(FIRST_POLL_SECONDS, POLL_SHARE * waited), max(STEADY_POLL_SECONDS, waited / 40), MAX_POLL_SECONDS)

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

def ownership_problem(api: dict[str, Any], stack: str | None) -> str:
    """Why an endpoint is not ours to delete ("" when it is): only one that carries `managed-by:
    reconciler` and this stack's tag (none without a stack), as read just before the delete."""
    tags = tag_map(api)
    if tags.get(MANAGED_BY_TAG) != MANAGED_BY_VALUE:
        return f"it is not tagged {MANAGED_BY_TAG}: {MANAGED_BY_VALUE} (any more); delete it by hand if it must go"
    if not owned_by_stack(api, stack):
        theirs = tags.get(STACK_TAG)
        belongs = f"it belongs to stack {theirs!r}" if theirs else "it belongs to no stack"
        return f"{belongs}, and this apply is for {f'stack {stack!r}' if stack else 'no stack'}"
    return ""


def delete(ex: Executor, change: Change) -> None:
    """Prune: re-read just before deleting, and delete only what is still this stack's."""
    api = ex.ws.get_endpoint(change.name)
    if api is None:
        ex.unchanged(change.address)
        return
    refused = ownership_problem(api, ex.plan.stack)
    if refused:
        ex.skip(change.address, f"delete_endpoint({change.name}) not done: {refused}")
        return
    ex.ws.delete_endpoint(change.name)
    ex.wrote(change.address, f"delete_endpoint({change.name})")
