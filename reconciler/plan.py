"""The plan: what apply will do, as a value you can print, save, review and apply.

Pure: takes validated manifests and the live state read by live.py, returns a `Plan`. A change
is data (address, action, field diff, operations, the reasons for a replace, notes) in one tree of
JSON-serialisable dataclasses; render.py prints it, apply.py executes it, `--out` saves it.

Each operation is exactly one call of the narrowest API that makes its part match; no change,
no operation. Alias moves that an endpoint serves through are linked to that endpoint: they
run only after the endpoint serves the new version (see `_link_alias_moves`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from reconciler.diff import FieldChange, diff
from reconciler.errors import Problem, ReconcilerError
from reconciler.manifests.loader import Manifests
from reconciler.normalize import (
    desired_endpoint,
    desired_model,
    live_endpoint,
    live_model,
    overlay,
)
from reconciler.terms import MANAGED_BY_TAG, STACK_TAG, default_entity_name, updating

FORMAT_VERSION = "1"
CONFIG_KEYS = ("served_entities", "traffic", "auto_capture_config")
OWN_TAG_PATHS = (f"tags[{MANAGED_BY_TAG}]", f"tags[{STACK_TAG}]")
REPLACE_KEYS = {"description": "description cannot change after creation",
                "route_optimized": "route_optimized cannot change after creation"}


class Action(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    NOOP = "no-op"


@dataclass
class Operation:
    """One API call apply will make. `after` names changes that must have succeeded first."""

    name: str
    description: str
    after: list[str] = field(default_factory=list)
    args: dict[str, Any] = field(default_factory=dict)  # manifest values only, never live ones


@dataclass
class Change:
    address: str  # "serving_endpoint.support-agent", "registered_model.main.agents.support_agent"
    kind: str  # "serving_endpoint" | "registered_model"
    name: str
    action: Action
    diff: list[FieldChange] = field(default_factory=list)
    operations: list[Operation] = field(default_factory=list)
    replace_reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    desired: dict[str, Any] | None = None  # the manifest's part only; apply overlays it on a fresh read
    fingerprint: str = ""  # of the live object as planned; a saved plan is stale if it differs

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["action"] = self.action.value
        data["diff"] = [c.to_json() for c in self.diff]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Change:
        return cls(
            address=data["address"], kind=data["kind"], name=data["name"], action=Action(data["action"]),
            diff=[FieldChange(d["path"], d["before"], d["after"]) for d in data.get("diff", [])],
            operations=[Operation(**o) for o in data.get("operations", [])],
            replace_reasons=list(data.get("replace_reasons", [])), notes=list(data.get("notes", [])),
            desired=data.get("desired"), fingerprint=data.get("fingerprint", ""))


@dataclass
class Plan:
    changes: list[Change]
    warnings: list[str] = field(default_factory=list)
    stack: str | None = None
    prune: bool = False
    workspace_host: str | None = None  # a saved plan applies only to the workspace it was made against

    @property
    def has_changes(self) -> bool:
        return any(c.action is not Action.NOOP for c in self.changes)

    def summary(self) -> dict[str, int]:
        counts = {a.value: 0 for a in Action}
        for change in self.changes:
            counts[change.action.value] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "workspace_host": self.workspace_host,
                "stack": self.stack, "prune": self.prune,
                "summary": self.summary(), "warnings": self.warnings,
                "changes": [c.to_json() for c in self.changes]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            raise ReconcilerError(f"not a reconciler plan (format_version {FORMAT_VERSION} expected)")
        return cls(changes=[Change.from_json(c) for c in data.get("changes", [])],
                   warnings=list(data.get("warnings", [])), stack=data.get("stack"), prune=bool(data.get("prune")),
                   workspace_host=data.get("workspace_host"))


def fingerprint(live: dict[str, Any] | None) -> str:
    if live is None:
        return "absent"
    return hashlib.sha256(json.dumps(live, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---- alias resolution ----------------------------------------------------------------------------

def resolve_versions(manifests: Manifests, live_models: dict[str, dict[str, Any] | None]) -> dict[str, list[str]]:
    """Entity versions per endpoint, aliases resolved: from the manifests where they manage the
    model's aliases, else from the workspace. Raises with every alias that cannot be resolved."""
    problems: list[Problem] = []
    resolved: dict[str, list[str]] = {}
    for name, loaded in manifests.endpoints.items():
        versions = []
        for i, entity in enumerate(loaded.manifest.spec.served_entities):
            if entity.entity_version is not None:
                versions.append(entity.entity_version)
                continue
            alias = entity.alias or ""
            model = manifests.models.get(entity.entity_name)
            if model is not None and model.manifest.spec.aliases is not None:
                versions.append(str(model.manifest.spec.aliases[alias]))
                continue
            live = live_models.get(entity.entity_name)
            aliases = live_model(live)["aliases"] if live else {}
            if alias not in aliases:
                where = "does not exist in the workspace" if live is None else \
                    f"has no alias '{alias}' in the workspace (it has: {', '.join(sorted(aliases)) or 'none'})"
                problems.append(loaded.problem(("spec", "served_entities", i, "alias"),
                                               f"model '{entity.entity_name}' {where}; set the alias or pin "
                                               "entity_version"))
                versions.append("0")
                continue
            versions.append(str(aliases[alias]))
        resolved[name] = versions
    if problems:
        raise ReconcilerError(problems)
    return resolved


# ---- per-object planning -------------------------------------------------------------------------

def plan_model(name: str, desired: dict[str, Any], live_api: dict[str, Any] | None) -> Change:
    address = f"registered_model.{name}"
    live = live_model(live_api) if live_api is not None else None
    change = Change(address, "registered_model", name, Action.NOOP, desired=desired, fingerprint=fingerprint(live))
    change.operations = model_operations(desired, live)
    effective = overlay(desired, live)
    change.diff = diff(live or {}, effective)
    if live is None:
        change.action = Action.CREATE
    elif change.operations:
        change.action = Action.UPDATE
    return change


def model_operations(desired: dict[str, Any], live: dict[str, Any] | None) -> list[Operation]:
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


def plan_endpoint(name: str, desired: dict[str, Any] | None, live_api: dict[str, Any] | None,
                  acl: dict[str, Any] | None) -> Change:
    address = f"serving_endpoint.{name}"
    live = live_endpoint(live_api, acl) if live_api is not None else None
    change = Change(address, "serving_endpoint", name, Action.NOOP, desired=desired, fingerprint=fingerprint(live))
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
    change.operations = endpoint_operations(live, effective)
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


def endpoint_operations(live: dict[str, Any], effective: dict[str, Any]) -> list[Operation]:
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


# ---- the whole plan ------------------------------------------------------------------------------

def make_plan(manifests: Manifests, live: Any, resolved: dict[str, list[str]], *, stack: str | None, prune: bool,
              warnings: list[str] | None = None, workspace_host: str | None = None) -> Plan:
    """`live` is a live.LiveState (typed loosely here to keep this module free of I/O imports);
    `resolved` the entity versions per endpoint (`resolve_versions`)."""
    changes: list[Change] = []
    for name, loaded in sorted(manifests.models.items()):
        changes.append(plan_model(name, desired_model(loaded.manifest), live.models.get(name)))
    for name, loaded in sorted(manifests.endpoints.items()):
        desired = desired_endpoint(loaded.manifest, resolved[name], stack=stack)
        changes.append(plan_endpoint(name, desired, live.endpoints.get(name), live.permissions.get(name)))
    if prune:
        for name, api in sorted(live.prunable.items()):
            changes.append(plan_endpoint(name, None, api, None))
    _link_alias_moves(manifests, changes, live, resolved)
    return Plan(changes=changes, warnings=list(warnings or []), stack=stack, prune=prune,
                workspace_host=workspace_host)


def _link_alias_moves(manifests: Manifests, changes: list[Change], live: Any,
                      resolved: dict[str, list[str]]) -> None:
    """An alias that an endpoint serves through moves only after that endpoint serves the new
    version; the plan shows both ends of the link. An update in progress (left by an interrupted
    apply, or started elsewhere) does not serve its pending version yet: the move waits for it too."""
    by_address = {c.address: c for c in changes}
    for name, loaded in sorted(manifests.endpoints.items()):
        endpoint = by_address[f"serving_endpoint.{name}"]
        in_progress = updating(live.endpoints.get(name))
        if endpoint.action is Action.DELETE or (endpoint.action is Action.NOOP and not in_progress):
            continue
        # Removing an alias is a move too: it waits until the endpoints serving the model are done.
        for served in {e.entity_name for e in loaded.manifest.spec.served_entities}:
            model = by_address.get(f"registered_model.{served}")
            for op in model.operations if model else []:
                if op.name == "delete_alias" and endpoint.address not in op.after:
                    op.after.append(endpoint.address)
        live_entities = live_endpoint(live.endpoints[name])["served_entities"] if live.endpoints.get(name) else {}
        for entity, version in zip(loaded.manifest.spec.served_entities, resolved[name], strict=True):
            key = entity.name or default_entity_name(entity.entity_name, version)
            if entity.alias is None or (live_entities.get(key, {}).get("entity_version") == version and not in_progress):
                continue
            model = by_address.get(f"registered_model.{entity.entity_name}")
            for op in model.operations if model else []:
                if op.name != "set_alias" or op.args["alias"] != entity.alias or endpoint.address in op.after:
                    continue
                op.after.append(endpoint.address)
                endpoint.notes.append(f"served_entities[{key}] follows alias {entity.alias} → version {version}; "
                                      "the alias moves only after this endpoint serves it")
                model.notes.append(f"alias {entity.alias} moves to version {version} only after {endpoint.address} "
                                   "serves it")
