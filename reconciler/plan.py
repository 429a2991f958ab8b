"""The plan: what apply will do, as a value you can print, save, review and apply.

Pure: takes validated manifests and the live state read by live.py, returns a `Plan`. A change
is data (address, action, field diff, operations, the reasons for a replace, notes) in one tree of
JSON-serialisable dataclasses; render.py prints it, apply.py executes it, `--out` saves it.

A saved plan is a commitment, never a program: `apply --plan` plans again from the manifests the
plan was made from and from fresh live state, and goes ahead only when the new plan equals the
saved one (`differences`); what runs is the new plan. Nothing (no operation, name, payload or host)
is ever taken from the file, which is only read as claims to compare (`read_saved`).

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

FORMAT_VERSION = "2"  # 2: `source` and `deployer` added; a plan is compared, no longer executed


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


@dataclass
class Source:
    """What a plan was made from, so `apply --plan` can plan again from the same: the manifest paths
    as given, the names of the variables the manifests use, and a digest of the files' contents and
    those variables' values (values never appear in a plan, only in the digest)."""

    paths: list[str]
    variables: list[str]
    digest: str


@dataclass
class Plan:
    changes: list[Change]
    warnings: list[str] = field(default_factory=list)
    stack: str | None = None
    prune: bool = False
    workspace_host: str | None = None  # a saved plan applies only to the workspace it was made against
    deployer: str | None = None  # the principal that keeps CAN_MANAGE ("user_name:..."), an input of the plan
    source: Source | None = None
    targets: list[str] = field(default_factory=list)  # --target: the plan holds these and what they depend on
    # Endpoints tagged as this stack's that left the manifests, which --prune would delete (listed
    # without --prune, so a plan never says "No changes" while one is still serving).
    not_in_manifests: list[str] = field(default_factory=list)

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
                "stack": self.stack, "prune": self.prune, "deployer": self.deployer,
                "source": asdict(self.source) if self.source else None,
                "targets": self.targets, "not_in_manifests": self.not_in_manifests,
                "summary": self.summary(), "warnings": self.warnings,
                "changes": [c.to_json() for c in self.changes]}

    def render(self, fmt: str = "text", *, colour: bool = False) -> str:
        """The plan as `reconciler plan --format FMT` prints it: "text", "markdown" or "json"."""
        from reconciler import render

        return render.rendered(self, fmt, colour=colour)


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
              warnings: list[str] | None = None, workspace_host: str | None = None, deployer: str | None = None,
              source: Source | None = None) -> Plan:
    """`live` is a live.LiveState (typed loosely here to keep this module free of I/O imports);
    `resolved` the entity versions per endpoint (`resolve_versions`). Each kind plans its own
    objects; the links between kinds (alias moves that wait for endpoints) are made here, and by
    the kinds that other kinds' manifests refer to (`Kind.link`)."""
    from reconciler.kinds import KINDS  # the kinds build on this module's data classes

    changes = [change for kind in KINDS
               for change in kind.module.plan_all(manifests, live, resolved, stack=stack, prune=prune,
                                                  deployer=deployer)]
    _link_alias_moves(manifests, changes, live, resolved)
    for kind in KINDS:
        if kind.link is not None:
            kind.link(changes)
    left = [] if prune else [f"serving_endpoint.{name}" for name in sorted(live.prunable)]
    return Plan(changes=changes, warnings=list(warnings or []), stack=stack, prune=prune,
                workspace_host=workspace_host, deployer=deployer, source=source, not_in_manifests=left)


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
            if model is None:
                continue
            for op in model.operations:
                if op.name != "set_alias" or op.args["alias"] != entity.alias:
                    continue
                if endpoint.address in op.after:  # a second entity of this endpoint follows the alias
                    op.args["followers"][endpoint.address].append(key)
                    continue
                op.after.append(endpoint.address)
                # Which served entities follow the alias: the move waits until each serves the version.
                op.args.setdefault("followers", {}).setdefault(endpoint.address, []).append(key)
                endpoint.notes.append(f"served_entities[{key}] follows alias {entity.alias} → version {version}; "
                                      "the alias moves only after this endpoint serves it")
                model.notes.append(f"alias {entity.alias} moves to version {version} only after {endpoint.address} "
                                   "serves it")


# ---- --target: the named objects and what they depend on -------------------------------------------

def select(plan: Plan, targets: list[str]) -> Plan:
    """`plan` limited to the `targets` (addresses as the plan prints them) and, transitively, what
    they depend on: the changes their operations wait for (`after`: an alias move waits for the
    endpoints that follow it) and what each kind names (`Kind.depends`: an endpoint, the models and
    registrations it serves). An address the plan does not hold is one error line, with the
    closest ones it does."""
    import difflib

    from reconciler.kinds import BY_KEY

    by_address = {c.address: c for c in plan.changes}
    problems = []
    for target in targets:
        if target in by_address:
            continue
        if target in plan.not_in_manifests:
            problems.append(Problem(f"--target {target}: not in the manifests (a managed endpoint of this stack); "
                                    "pass --prune to delete it"))
            continue
        close = difflib.get_close_matches(target, list(by_address), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else \
            f"; the plan holds {', '.join(list(by_address)[:5]) or 'no object'}{' ...' if len(by_address) > 5 else ''}"
        problems.append(Problem(f"--target {target}: no such object in the plan{hint}"))
    if problems:
        raise ReconcilerError(problems)
    wanted: set[str] = set()
    pending = list(dict.fromkeys(targets))
    while pending:
        address = pending.pop()
        if address in wanted or address not in by_address:
            continue
        wanted.add(address)
        change = by_address[address]
        depends = BY_KEY[change.kind].depends
        pending += [a for op in change.operations for a in op.after]
        pending += sorted(depends(change)) if depends is not None else []
    plan.changes = [c for c in plan.changes if c.address in wanted]
    plan.targets = list(dict.fromkeys(targets))
    plan.not_in_manifests = [a for a in plan.not_in_manifests if a in targets]
    return plan


# ---- a saved plan: claims to compare, never a program ----------------------------------------------

def read_saved(data: Any) -> dict[str, Any]:
    """A saved plan's JSON, checked to be a plan of this format whose names all follow their
    grammar (so no name in it can reach a request even by mistake). Raises one line per problem."""
    from reconciler.kinds import BY_KEY
    from reconciler.terms import IDENTITY_KEYS, name_problem

    if not isinstance(data, dict) or "format_version" not in data:
        raise ReconcilerError("not a reconciler plan (no format_version); make one with `reconciler plan --out`")
    if data["format_version"] != FORMAT_VERSION:
        raise ReconcilerError(f"not a reconciler plan of format_version {FORMAT_VERSION} (it says "
                              f"{json.dumps(data['format_version'])[:40]}); plan again with this version")
    problems: list[Problem] = []

    def check(ok: bool, message: str) -> None:
        if not ok:
            problems.append(Problem(f"malformed plan: {message}"))

    changes = data.get("changes")
    check(isinstance(changes, list), "'changes' is not a list")
    for i, change in enumerate(changes if isinstance(changes, list) else []):
        if not isinstance(change, dict):
            check(False, f"changes[{i}] is not an object")
            continue
        kind, name = change.get("kind"), change.get("name")
        if kind not in BY_KEY:
            check(False, f"changes[{i}]: unknown kind {json.dumps(kind)[:60]}")
            continue
        problem = name_problem(BY_KEY[kind].module.GRAMMAR, name)
        check(problem is None, f"changes[{i}]: {problem}")
        check(problem is not None or change.get("address") == f"{kind}.{name}",
              f"changes[{i}]: address {json.dumps(change.get('address'))[:80]} is not {kind}.{name}")
    stack, deployer, source = data.get("stack"), data.get("deployer"), data.get("source")
    if stack is not None:
        check(name_problem("stack", stack) is None, f"stack: {name_problem('stack', stack)}")
    if deployer is not None:
        key, _, who = str(deployer).partition(":")
        check(key in IDENTITY_KEYS and name_problem("identity", who) is None,
              f"deployer {json.dumps(deployer)[:80]} is not user_name:<e-mail> or service_principal_name:<id>")
    check(isinstance(source, dict) and isinstance(source.get("paths"), list) and
          all(isinstance(p, str) for p in source["paths"]) and isinstance(source.get("digest"), str),
          "'source' does not say which manifests it was made from")
    check(isinstance(data.get("warnings", []), list), "'warnings' is not a list")
    check(isinstance(data.get("targets", []), list) and all(isinstance(t, str) for t in data.get("targets", [])),
          "'targets' is not a list of addresses")
    if problems:
        raise ReconcilerError(problems)
    return data


STALE = ("changed since the plan was made; the saved plan is stale. Run `reconciler plan --out` again and review "
         "the new plan")


def differences(saved: dict[str, Any], fresh: Plan) -> list[Problem]:
    """Every way `saved` (checked by `read_saved`) is not `fresh`, the plan of the same manifests
    made now: one problem per difference. Empty means apply may go ahead, with `fresh`."""
    now = json.loads(json.dumps(fresh.to_json()))  # the JSON a saved plan holds, tuples as lists
    found = [Problem(message) for message in _header_differences(saved, now)]
    if any(saved.get(key) != now[key] for key in ("stack", "prune", "deployer")) or \
            sorted(saved.get("targets") or []) != sorted(now["targets"]):
        return found  # planned for other settings: every change follows from that, said once
    by_address: dict[str, list[dict[str, Any]]] = {}
    for change in saved["changes"]:
        by_address.setdefault(change["address"], []).append(change)
    ours = {c["address"]: c for c in now["changes"]}
    for address, copies in by_address.items():
        if len(copies) > 1:
            found.append(Problem(f"listed {len(copies)} times in the saved plan; the saved plan differs", subject=address))
        elif address not in ours:
            found.append(Problem(f"in the saved plan ({copies[0].get('action')}) but not in the plan of these manifests "
                                 "now; the saved plan differs", subject=address))
    for address, change in ours.items():
        if address not in by_address:
            found.append(Problem(f"in the plan of these manifests now ({change['action']}) but not in the saved plan; "
                                 "the saved plan differs", subject=address))
        elif len(by_address[address]) == 1:
            found += _change_differences(by_address[address][0], change)
    if not found and [c["address"] for c in saved["changes"]] != [c["address"] for c in now["changes"]]:
        found.append(Problem("changes: not in the order plan makes them; the saved plan differs"))
    if not found and saved.get("summary") != now["summary"]:
        found.append(Problem("summary: its counts are not the plan's; the saved plan differs"))
    return found


def _header_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    out = []
    if saved.get("workspace_host") != now["workspace_host"]:
        out.append(f"workspace: the plan was made against {json.dumps(saved.get('workspace_host'))[:200]}, not "
                   f"{now['workspace_host']}; plan again against this workspace")
    if saved.get("stack") != now["stack"]:
        def stack(name: Any) -> str:
            return f"stack {_shown(name)}" if name is not None else "no stack"

        out.append(f"stack: the plan was made for {stack(saved.get('stack'))}, this apply is for {stack(now['stack'])}; "
                   "pass the same --stack (or RECONCILER_STACK) to plan and apply")
    if sorted(saved.get("targets") or []) != sorted(now["targets"]):
        out.append(f"targets: the plan was made for {_shown(saved.get('targets') or 'every object')}, this apply for "
                   f"{_shown(now['targets'] or 'every object')}; pass the same --target options to plan and apply")
    if saved.get("prune") is not now["prune"]:
        out.append(f"prune: the plan was made {'with' if saved.get('prune') else 'without'} --prune, this apply "
                   f"runs {'with' if now['prune'] else 'without'} it; pass the same flags to plan and apply")
    if saved.get("deployer") != now["deployer"]:
        out.append(f"deployer: the plan keeps CAN_MANAGE for {_shown(saved.get('deployer'))}, this apply for "
                   f"{_shown(now['deployer'])}; pass --deployer (or RECONCILER_DEPLOYER) to plan as the identity "
                   "that applies")
    source, ours = saved.get("source") or {}, now["source"] or {}
    if source.get("digest") != ours.get("digest"):
        names = sorted(set(source.get("variables") or []) ^ set(ours.get("variables") or []))
        which = f" (variables used differ: {', '.join(map(str, names))[:200]})" if names else ""
        out.append(f"manifests: not the ones the plan was made from: other files, contents or variable values{which}; "
                   "plan again from these manifests (or give apply the PATHS, --var and --var-file plan had)")
    for key in sorted(set(saved) - set(now)):
        out.append(f"field {json.dumps(key)[:60]} is not part of a plan; the saved plan differs")
    for warning in [w for w in saved.get("warnings", []) if w not in now["warnings"]]:
        out.append(f"warning in the saved plan, not now: {str(warning)[:300]}; the saved plan differs")
    for warning in [w for w in now["warnings"] if w not in saved.get("warnings", [])]:
        out.append(f"warning now, not in the saved plan: {warning[:300]}; the saved plan differs")
    return out


def _change_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[Problem]:
    """A change of the saved plan against the same object's change now, field by field."""
    address = now["address"]
    if saved.get("fingerprint") != now["fingerprint"]:
        return [Problem(STALE, subject=address)]  # the workspace moved: every other field follows from it
    found = []
    for key in sorted(set(saved) | set(now)):
        before, after = saved.get(key), now.get(key)
        if before == after:
            continue
        if key not in now:
            found.append(f"field {json.dumps(key)[:60]} is not part of a change")
        elif isinstance(after, list) and isinstance(before, list):
            shown_before, shown_after = [_line(key, x) for x in before], [_line(key, x) for x in after]
            if sorted(shown_before) == sorted(shown_after):
                found.append(f"{key}: in another order than now")
            elif len(before) == len(after):  # the same items, some edited: one line per edited item
                found += [f"{key}[{i}]: the saved plan says {x}, now {y}"
                          for i, (x, y) in enumerate(zip(shown_before, shown_after, strict=True)) if x != y]
            else:
                found += [f"{key}: in the saved plan, not now: {x}" for x in shown_before if x not in shown_after]
                found += [f"{key}: now, not in the saved plan: {x}" for x in shown_after if x not in shown_before]
        elif isinstance(after, dict) and isinstance(before, dict):
            found += _leaf_differences(before, after, key)
        else:
            found.append(f"{key}: the saved plan says {_shown(before)}, now {_shown(after)}")
    return [Problem(f"{message}; the saved plan differs", subject=address) for message in found]


def _leaf_differences(before: dict[str, Any], after: dict[str, Any], where: str) -> list[str]:
    """`desired.permissions["user_name:x"]: the saved plan says "CAN_MANAGE", now absent`: one line
    per value that differs, however deep."""
    found = []
    for key in sorted(set(before) | set(after), key=str):
        path = f"{where}[{json.dumps(key)}]"
        old, new = before.get(key, _ABSENT), after.get(key, _ABSENT)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            found += _leaf_differences(old, new, path)
        else:
            found.append(f"{path}: the saved plan says {_shown(old)}, now {_shown(new)}")
    return found


_ABSENT = object()


def _line(key: str, item: Any) -> str:
    """One element of a change's list as a reviewer reads it (a diff line, an operation)."""
    if key == "diff" and isinstance(item, dict):
        return f"{item.get('path')}: {_shown(item.get('before'))} → {_shown(item.get('after'))}"
    if key == "operations" and isinstance(item, dict):
        after = f" (after {', '.join(map(str, item.get('after') or []))})" if item.get("after") else ""
        return f"{item.get('description')}{after} {_shown(item.get('args'))}"
    return _shown(item)


def _shown(value: Any) -> str:
    if value is _ABSENT:
        return "nothing"
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= 200 else text[:197] + "..."
