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

from reconciler.diff import FieldChange
from reconciler.errors import Problem, ReconcilerError
from reconciler.manifests.loader import Manifests
from reconciler.normalize import live_endpoint, live_model
from reconciler.terms import default_entity_name, updating

FORMAT_VERSION = "1"


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
    # A serving endpoint's health-gated promotion (reconciler/rollout.py `_rollout_json`): its spec,
    # targets with their steps and splits, an unfinished rollout found live, the expected duration.
    rollout: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["action"] = self.action.value
        data["diff"] = [c.to_json() for c in self.diff]
        if self.rollout is None:
            del data["rollout"]  # only endpoints with a rollout carry the member
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Change:
        return cls(
            address=data["address"], kind=data["kind"], name=data["name"], action=Action(data["action"]),
            diff=[FieldChange(d["path"], d["before"], d["after"]) for d in data.get("diff", [])],
            operations=[Operation(**o) for o in data.get("operations", [])],
            replace_reasons=list(data.get("replace_reasons", [])), notes=list(data.get("notes", [])),
            desired=data.get("desired"), fingerprint=data.get("fingerprint", ""), rollout=data.get("rollout"))


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


# ---- the whole plan ------------------------------------------------------------------------------

def make_plan(manifests: Manifests, live: Any, resolved: dict[str, list[str]], *, stack: str | None, prune: bool,
              warnings: list[str] | None = None, workspace_host: str | None = None) -> Plan:
    """`live` is a live.LiveState (typed loosely here to keep this module free of I/O imports);
    `resolved` the entity versions per endpoint (`resolve_versions`). Each kind plans its own
    objects; the links between kinds (alias moves that wait for endpoints) are made here, and by
    the kinds that other kinds' manifests refer to (`Kind.link`)."""
    from reconciler.kinds import KINDS  # the kinds build on this module's data classes

    changes = [change for kind in KINDS
               for change in kind.module.plan_all(manifests, live, resolved, stack=stack, prune=prune)]
    _link_alias_moves(manifests, changes, live, resolved)
    for kind in KINDS:
        if kind.link is not None:
            kind.link(changes)
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
