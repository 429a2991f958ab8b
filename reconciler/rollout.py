"""Health-gated promotion of a served entity's new version: smoke queries, traffic steps with
metric analysis between them, automatic rollback, and resumption from live state alone.

Who calls it: `kinds/serving_endpoint.py`, at two marked hooks. At plan time (`plan_change`) it
turns an endpoint change whose served entity versions change under `spec.rollout` into rollout
operations and the plan's `rollout` member; at apply time (`run`) it makes every config write and
wait of that endpoint. Smoke checks are judged by `smoke.py`, metrics by `analysis.py`; calls go
through `Workspace` (`query_entity`, `metrics`, `update_config`, `patch_tags`).

The order, for each served entity E whose version changes (a *target*; several roll out one
after another, by name):
1. the marker tag `reconciler-rollout` records the target (step 0), then the new version is added
   next to E under a temporary name N at 0% of the traffic (one config update), and waited for;
2. every smoke query goes to N directly (the per-entity route) before it takes any traffic;
3. for each step p: the marker records p, N gets p% of E's share (a 90/10 endpoint at step 50 of
   a new champion serves 45/45/10; one config update), then the pause, during which the metrics
   export is read and N's error rate and p99 latency are judged (no verdict below min_requests);
4. the final config: exactly the manifests' (N removed, E at the new version under its own name);
   then the marker is removed. Alias moves wait for this (the executor's link, plan.py).
On any failure: the split before the rollout is restored and N removed (or kept at 0% with
`on_failure: keep`, marker marked failed), aliases untouched, and the failure is raised with its
evidence. The rollback writes only what differs from live, so it is idempotent.

Live state alone says where a rollout stands: the marker (entity, new entity, target version,
percent) and the endpoint's config. `before` folds N's share back into E and drops the marker,
so the plan diffs the endpoint as it was before the rollout (the marker and N are the
reconciler's, never a diff). An unfinished rollout whose target the manifests still ask for is
resumed from its recorded step (its pause is run again: how long it had run is not known); one
they no longer ask for is rolled back first. A new endpoint, a replaced one, or a change that
moves no version, has no rollout: it is written as before.

Waits use `ws.cancel.wait`, so Ctrl-C stops a pause at once; an interrupted rollout is left as it
stands (no call can be made after an interrupt) and the next apply resumes it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from reconciler import analysis, smoke
from reconciler.errors import Interrupted, LeaseLost, Problem, ReconcilerError
from reconciler.kinds import serving_endpoint
from reconciler.kinds.serving_endpoint import EndpointFailed
from reconciler.normalize import config_payload, live_endpoint, overlay
from reconciler.plan import Change, Operation
from reconciler.terms import ROLLOUT_TAG, name_problem, tag_map, updating

if TYPE_CHECKING:
    from reconciler.apply import Executor
    from reconciler.manifests.model import Rollout

CONFIG_KEYS = ("served_entities", "traffic", "auto_capture_config")
NO_TRAFFIC_TIMEOUT = {"wait": "30m", "pass": "0s", "fail": "0s"}
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(duration: str) -> float:
    """`90s`, `5m`, `1h` (the manifest's Duration pattern) in seconds."""
    return float(duration[:-1]) * UNITS[duration[-1]]


# ---- the manifest's rollout, as plan data ---------------------------------------------------------

def spec_json(rollout: Rollout) -> dict[str, Any]:
    """The rollout block with every default made explicit and durations in seconds: what the plan
    shows and saves, and what apply runs."""
    analysis_spec = None
    if rollout.analysis is not None:
        a = rollout.analysis
        analysis_spec = {"max_error_rate": a.max_error_rate, "max_p99_latency_ms": a.max_p99_latency_ms,
                         "min_requests": a.min_requests, "no_traffic": a.no_traffic,
                         "no_traffic_timeout_seconds": seconds(a.no_traffic_timeout or NO_TRAFFIC_TIMEOUT[a.no_traffic]),
                         "interval_seconds": seconds(a.interval)}
    return {"smoke": [_smoke_json(q) for q in rollout.smoke or []], "steps": list(rollout.steps or []),
            "pause_seconds": seconds(rollout.pause), "analysis": analysis_spec, "on_failure": rollout.on_failure}


def _smoke_json(query: Any) -> dict[str, Any]:
    expect = query.expect
    checks = [{"path": c.path, "op": op, "value": getattr(c, op)}
              for c in expect.json_checks or [] for op in smoke.OPERATORS if op in c.model_fields_set]
    return {"name": query.name, "request": query.request.model_dump(mode="json", exclude_none=True),
            "expect": {"status": expect.status, "max_latency_ms": expect.max_latency_ms, "json": checks,
                       "no_span_errors": expect.no_span_errors}}


# ---- live state: the marker, and the endpoint as it was before the rollout -----------------------

@dataclass(frozen=True)
class Marker:
    """The marker tag's content: which entity rolls to which version under which name, and the
    traffic percentage of its share the new version was last given (0: added, smoke queries not
    passed yet). `failed`: a rollout that failed with `on_failure: keep`."""

    entity: str
    new: str
    version: str
    percent: int
    failed: bool = False

    def value(self) -> str:
        return (f"entity={self.entity} new={self.new} version={self.version} percent={self.percent}"
                + (" failed" if self.failed else ""))


def read_marker(api: dict[str, Any] | None, subject: str = "") -> Marker | None:
    """The endpoint's rollout marker, checked like any server answer (names by their grammar)."""
    value = tag_map(api or {}).get(ROLLOUT_TAG)
    if value is None:
        return None
    words = value.split()
    pairs = dict(w.split("=", 1) for w in words if "=" in w)
    flags = [w for w in words if "=" not in w]
    problems = [name_problem("served entity", pairs.get(k)) for k in ("entity", "new")]
    problems.append(name_problem("version", pairs.get("version")))
    percent = pairs.get("percent", "")
    if any(problems) or not percent.isdigit() or int(percent) > 100 or flags not in ([], ["failed"]):
        raise ReconcilerError(Problem(f"tag {ROLLOUT_TAG}={value[:120]!r} is not a rollout marker this reconciler "
                                      f"wrote; delete the tag (and any served entity it names) by hand",
                                      subject=subject))
    return Marker(pairs["entity"], pairs["new"], pairs["version"], int(percent), failed=flags == ["failed"])


def before(live: dict[str, Any], marker: Marker | None) -> dict[str, Any]:
    """The normalised endpoint as it was before an unfinished rollout: the new entity's share given
    back to the entity it replaces, the new entity and the marker gone. Unchanged without a marker,
    and once the final config has landed (the replaced entity is gone then)."""
    if marker is None:
        return live
    view = copy.deepcopy(live)
    view["tags"].pop(ROLLOUT_TAG, None)
    if serves_both(marker, live):
        entities, traffic = view["served_entities"], view["traffic"]
        del entities[marker.new]
        traffic[marker.entity] = traffic.get(marker.entity, 0) + traffic.pop(marker.new, 0)
    return view


def serves_both(marker: Marker, live: dict[str, Any]) -> bool:
    """The endpoint serves the replaced entity and the new one side by side: mid-rollout."""
    entities = live["served_entities"]
    return marker.new != marker.entity and marker.new in entities and marker.entity in entities


def start_percent(marker: Marker, live: dict[str, Any]) -> int:
    """Where a wanted unfinished rollout resumes: its recorded percentage, or its smoke queries when
    it failed (kept at 0%) or its new entity is not served (never added, or removed by hand)."""
    return 0 if marker.failed or marker.new not in live["served_entities"] else marker.percent


# ---- targets: the served entities whose version changes -------------------------------------------

@dataclass(frozen=True)
class Target:
    entity: str  # the served entity being replaced, as live names it
    name: str  # its name in the manifests: the same, unless the server's default name follows the version
    new: str  # the name the new version is served under during the steps
    version_from: str
    version_to: str
    share: int  # the entity's traffic percentage: the steps are shares of it
    fields: dict[str, Any]  # the new version's served-entity fields, as the final config has them

    def splits(self, traffic: dict[str, int], steps: list[int]) -> list[dict[str, int]]:
        return [split(traffic, self, p) for p in steps]


def targets(view: dict[str, Any], effective: dict[str, Any]) -> list[Target]:
    """Served entities whose version (or model) changes, by name; and an entity named by the
    server's default (`<model>-<version>`), whose name changes with its version, paired with the
    one entity of the same model that leaves."""
    have, want = view["served_entities"], effective["served_entities"]
    taken = set(have) | set(want)
    found = []
    for name, fields in want.items():
        old = have.get(name)
        if old is not None and _version(old) != _version(fields):
            found.append(Target(name, name, temporary_name(name, str(fields.get("entity_version")), taken),
                                str(old.get("entity_version")), str(fields.get("entity_version")),
                                view["traffic"].get(name, 0), fields))
    added = [n for n in want if n not in have]
    removed = [n for n in have if n not in want]
    for name in added:
        model = want[name].get("entity_name")
        pairs = [old for old in removed if have[old].get("entity_name") == model]
        if len(pairs) == 1 and sum(1 for n in added if want[n].get("entity_name") == model) == 1:
            old = pairs[0]
            found.append(Target(old, name, name, str(have[old].get("entity_version")),
                                str(want[name].get("entity_version")), view["traffic"].get(old, 0), want[name]))
    return sorted(found, key=lambda t: t.entity)


def _version(fields: dict[str, Any]) -> tuple[Any, Any]:
    return fields.get("entity_name"), fields.get("entity_version")


def temporary_name(entity: str, version: str, taken: set[str]) -> str:
    """`champion-v4`: the entity's name and the version it rolls to (a valid served entity name,
    at most 63 characters), numbered when a served entity already has it. A version still to be
    registered from what MLflow logged (`models:/m-...`) has no number yet: `champion-vN` until apply
    registers it and derives the rollout again with its number."""
    number = version if version.isdigit() else "N"
    for i in range(1, 100):
        suffix = f"-v{number}" + (f"-{i}" if i > 1 else "")
        candidate = entity[:63 - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
    raise ReconcilerError(f"served entity {entity}: no free name for its rollout")


def split(traffic: dict[str, int], target: Target, percent: int) -> dict[str, int]:
    """The routes at a step: `percent` of the entity's share moves to the new entity (rounded half
    up; the shares still add up to 100), the other entities keep theirs."""
    moved = (target.share * percent + 50) // 100
    routes = {name: pct for name, pct in traffic.items() if name != target.new}
    routes[target.entity] = target.share - moved
    routes[target.new] = moved
    return routes


def step_config(baseline: dict[str, Any], target: Target, percent: int) -> dict[str, Any]:
    """The config at a step: the baseline with the new entity added and the split moved."""
    config = {k: copy.deepcopy(baseline[k]) for k in CONFIG_KEYS if k in baseline}
    config["served_entities"][target.new] = copy.deepcopy(target.fields)
    config["traffic"] = split(baseline["traffic"], target, percent)
    return config


def promoted(baseline: dict[str, Any], target: Target) -> dict[str, Any]:
    """The baseline once the target has rolled out: the entity at its new version, under its
    manifest name, with the entity's share (the baseline of the next target)."""
    config = copy.deepcopy(baseline)
    config["served_entities"] = {target.name if n == target.entity else n: copy.deepcopy(target.fields)
                                 if n == target.entity else f for n, f in baseline["served_entities"].items()}
    config["traffic"] = {target.name if n == target.entity else n: p for n, p in baseline["traffic"].items()}
    return config


def resumable(marker: Marker, found: list[Target], live: dict[str, Any],
              desired_entities: dict[str, Any]) -> Target | None:
    """The target an unfinished rollout is still wanted for: same entity, version and new name,
    and, if the new entity is live, with the fields the manifests give it."""
    for target in found:
        if (target.entity, target.new, target.version_to) != (marker.entity, marker.new, marker.version):
            continue
        serving = live["served_entities"].get(marker.new)
        wanted = desired_entities.get(target.name, {})
        if serving is None or all(serving.get(k) == v for k, v in wanted.items()):
            return target
    return None


@dataclass(frozen=True)
class Situation:
    """What a rollout has to do, from the manifests and live state: the marker of an unfinished
    rollout (None: there is none), the targets in the order they roll out (a resumed one first),
    the one resumed (None: an unfinished rollout is not wanted any more, or there is none) and the
    percentage it resumes at."""

    marker: Marker | None
    targets: list[Target]
    resumed: Target | None
    start: int

    def start_of(self, target: Target) -> int:
        return self.start if target is self.resumed else 0


def situation(spec: dict[str, Any] | None, api: dict[str, Any], live: dict[str, Any], view: dict[str, Any],
              effective: dict[str, Any], desired_entities: dict[str, Any], subject: str) -> Situation:
    """The one reading of live state that plan and apply share (`live` is the endpoint as it is,
    `view` as it was before an unfinished rollout; `effective` what the manifests make of it)."""
    marker = read_marker(api, subject)
    found = targets(view, effective) if spec is not None else []
    resumed = resumable(marker, found, live, desired_entities) if marker is not None else None
    if resumed is None or marker is None:
        return Situation(marker, found, None, 0)
    return Situation(marker, [resumed] + [t for t in found if t is not resumed], resumed, start_percent(marker, live))


# ---- the plan ------------------------------------------------------------------------------------

def plan_change(change: Change, spec: dict[str, Any] | None, live_api: dict[str, Any], live: dict[str, Any],
                view: dict[str, Any], effective: dict[str, Any]) -> None:
    """Give an endpoint update its rollout: operations in place of the one config write, the
    plan's `rollout` member (steps, splits, pauses, checks, expected duration) and notes."""
    now = situation(spec, live_api, live, view, effective, (change.desired or {}).get("served_entities", {}),
                    change.address)
    if now.marker is None and not now.targets:
        return
    ops = [op for op in change.operations if op.name != "update_config"]
    progress = None
    if now.marker is not None:
        progress = _progress(now, spec, live)
        change.notes.append(progress["note"])
        if now.resumed is None:
            ops.append(Operation("rollback_rollout", _rollback_description(now.marker, view))
                       if serves_both(now.marker, live) else
                       Operation("finish_rollout", f"finish_rollout(remove the {ROLLOUT_TAG} marker; "
                                                   f"{now.marker.new} is not served next to {now.marker.entity})"))
    for target in now.targets:
        ops.append(Operation("rollout", _rollout_description(target, spec or {}, now.start_of(target)),
                             args={"entity": target.name, "version": target.version_to}))
    if not now.targets:
        ops += [op for op in change.operations if op.name == "update_config"]
    change.operations = ops
    change.rollout = _rollout_json(spec, now, view, progress, live)


def _progress(now: Situation, spec: dict[str, Any] | None, live: dict[str, Any]) -> dict[str, Any]:
    """Where an unfinished rollout stands, and what apply does about it ("step 2 of 3")."""
    marker = now.marker
    assert marker is not None
    steps = (spec or {}).get("steps") or []
    step = 0 if marker.failed or marker.percent == 0 else \
        next((i for i, p in enumerate(steps, 1) if p >= marker.percent), len(steps))
    where = "failed, new entity kept at 0%" if marker.failed else \
        ("smoke queries" if step == 0 else f"step {step} of {len(steps)}")
    if now.resumed is not None and marker.failed:
        then = "apply runs its smoke queries again"
    elif now.resumed is not None:
        then = "apply resumes it" + (" from its smoke queries" if now.start == 0 and step else "")
    elif serves_both(marker, live):
        then = "the manifests no longer ask for it: apply rolls it back first"
    else:
        then = f"{marker.new} is not served next to {marker.entity}: apply removes the marker"
    note = f"rollout in progress: {where} ({marker.entity} → version {marker.version} as {marker.new}); {then}"
    return {"entity": marker.entity, "new_entity": marker.new, "version": marker.version, "percent": marker.percent,
            "failed": marker.failed, "step": step, "of": len(steps), "resume": now.resumed is not None, "note": note}


def _rollout_json(spec: dict[str, Any] | None, now: Situation, view: dict[str, Any], progress: dict[str, Any] | None,
                  live: dict[str, Any]) -> dict[str, Any]:
    steps = (spec or {}).get("steps") or []
    described, pauses = [], 0.0
    updates = 1 if now.marker is not None and now.resumed is None and serves_both(now.marker, live) else 0
    for target in now.targets:
        start = now.start_of(target)
        todo = [p for p in steps if p >= start] if target.share else []
        pauses += len(todo) * (spec or {}).get("pause_seconds", 0)
        updates += len(todo) + 1 + (start == 0)
        described.append({"entity": target.entity, "name": target.name, "new_entity": target.new,
                          "from_version": target.version_from, "to_version": target.version_to,
                          "share": target.share, "resume_at_percent": start if target is now.resumed else None,
                          "steps": [{"percent": p, "traffic": split(view["traffic"], target, p)} for p in todo]})
    return {"spec": spec, "targets": described, "in_progress": progress,
            "expected": {"pause_seconds": round(pauses, 3), "config_updates": updates}}


def _rollout_description(target: Target, spec: dict[str, Any], start: int) -> str:
    steps = [p for p in spec.get("steps") or [] if p >= start] if target.share else []
    parts = [f"{target.entity} v{target.version_from} → v{target.version_to} as {target.new}"]
    if start == 0:
        count = len(spec.get("smoke") or [])
        parts.append(f"{count} smoke {'query' if count == 1 else 'queries'}")
    parts.append(f"steps {'/'.join(map(str, steps))}% of {target.share}%" if steps else "no traffic steps")
    if start:
        parts.append(f"resumed at {start}%")
    return f"rollout({'; '.join(parts)})"


def _rollback_description(marker: Marker, view: dict[str, Any]) -> str:
    routes = " ".join(f"{n}={p}%" for n, p in view["traffic"].items())
    return f"rollback_rollout(remove {marker.new}; routes {routes}; remove the {ROLLOUT_TAG} marker)"


# ---- apply ---------------------------------------------------------------------------------------

class RolloutFailed(Exception):
    """Raised inside a rollout; `run` rolls back and reports it with its evidence."""

    def __init__(self, where: str, evidence: str) -> None:
        super().__init__(f"{where}: {evidence}")
        self.where, self.evidence = where, evidence


def wanted(change: Change, api: dict[str, Any] | None, view: dict[str, Any], effective: dict[str, Any]) -> bool:
    """Whether apply must go through `run` for this endpoint's config."""
    if api is None:
        return False
    spec = (change.rollout or {}).get("spec")
    return read_marker(api, change.address) is not None or (spec is not None and bool(targets(view, effective)))


def run(ex: Executor, change: Change, api: dict[str, Any], desired: dict[str, Any]) -> None:
    """Every config write of an endpoint with a rollout, from a fresh read: an unwanted unfinished
    rollout rolled back (or finished), each target rolled out, then the manifests' config."""
    rollout = _Rollout(ex, change, (change.rollout or {}).get("spec"))
    live = live_endpoint(api)
    marker = read_marker(api, change.address)
    view = before(live, marker)
    effective = overlay(desired, view)
    now = situation(rollout.spec, api, live, view, effective, desired.get("served_entities", {}), change.address)
    if now.marker is not None:
        rollout.origin[now.marker.new] = now.marker.entity
    if now.marker is not None and now.resumed is None:
        rollout.end(now.marker, view)
    baseline = view
    for i, target in enumerate(now.targets):
        final = effective if i == len(now.targets) - 1 else promoted(baseline, target)
        rollout.roll(target, baseline, final, now.start_of(target))
        baseline = final
    rollout.finish(effective)


class _Rollout:
    """One endpoint's rollout at apply time: each method reads fresh state and writes only what
    differs from it, so any of them may be re-run after an interruption."""

    def __init__(self, ex: Executor, change: Change, spec: dict[str, Any] | None) -> None:
        self.ex, self.name, self.address, self.spec = ex, change.name, change.address, spec
        # What the manifest states of each served entity (config_payload resends server-filled
        # values only where stated); a temporary entity states what the entity it stands for does.
        self.stated: dict[str, Any] = (change.desired or {}).get("served_entities", {})
        self.origin: dict[str, str] = {}  # temporary entity name -> the manifest's entity

    # -- the phases --------------------------------------------------------------------------------

    def roll(self, target: Target, baseline: dict[str, Any], final: dict[str, Any], start: int) -> None:
        spec = self.spec or {}
        steps = [p for p in spec.get("steps") or [] if p >= start] if target.share else []
        label = f"rollout {target.entity} v{target.version_from} → v{target.version_to}"
        self.origin[target.new] = target.entity
        try:
            if start == 0:
                self.mark(Marker(target.entity, target.new, target.version_to, 0))
                self.put(step_config(baseline, target, 0), f"{label}: add {target.new} at 0%")
                self.smoke(target)
            for p in steps:
                number = (spec["steps"].index(p) + 1, len(spec["steps"]))
                self.mark(Marker(target.entity, target.new, target.version_to, p))
                self.put(step_config(baseline, target, p), f"{label}: step {number[0]} of {number[1]}: "
                                                           f"{target.new} at {p}% of {target.share}%")
                self.pause(target, f"step {number[0]} of {number[1]} ({p}%)")
            self.put(final, f"{label}: final config")
            self.mark(None)
        except (Interrupted, LeaseLost):
            raise  # no call can be made now: the marker says where this stands, for the next apply
        except RolloutFailed as failure:
            self.fail(target, baseline, failure.where, failure.evidence)
        except ReconcilerError as exc:
            self.fail(target, baseline, "a workspace call", "; ".join(p.message for p in exc.problems))
        except EndpointFailed as exc:
            self.fail(target, baseline, "a config update", str(exc))

    def end(self, marker: Marker, view: dict[str, Any]) -> None:
        """Roll back an unfinished rollout the manifests no longer ask for (or just drop the
        marker of one whose final config had landed)."""
        self.put(view, f"rollback_rollout: remove {marker.new}, restore the split before the rollout")
        self.mark(None)

    def finish(self, effective: dict[str, Any]) -> None:
        api = self.put(effective, "update_config: the manifests' config")
        if (api.get("state") or {}).get("ready") != "READY":
            raise EndpointFailed("update finished but the endpoint is NOT_READY")
        self.ex.served[self.name] = api
        self.ex.progress(self.address, "serving (READY, NOT_UPDATING)")

    def fail(self, target: Target, baseline: dict[str, Any], where: str, evidence: str) -> NoReturn:
        """Restore the split before this target's rollout, then raise with the evidence."""
        try:
            done = self.rollback(target, baseline)
        except (Interrupted, LeaseLost):
            raise
        except (ReconcilerError, EndpointFailed) as exc:
            reason = "; ".join(p.message for p in exc.problems) if isinstance(exc, ReconcilerError) else str(exc)
            done = (f"the rollback failed too ({reason}); the {ROLLOUT_TAG} marker stays: run apply again to roll "
                    "it back")
        raise EndpointFailed(f"rollout of {target.entity} to version {target.version_to} failed at {where}: "
                             f"{evidence}; {done}; aliases left where they were")

    def rollback(self, target: Target, baseline: dict[str, Any]) -> str:
        routes = " ".join(f"{n}={p}%" for n, p in baseline["traffic"].items())
        keep = (self.spec or {}).get("on_failure") == "keep" and target.new != target.entity and \
            target.new in live_endpoint(self.read())["served_entities"]
        if keep:
            self.put(step_config(baseline, target, 0), f"rollback: {target.new} kept at 0%, routes {routes}")
            self.mark(Marker(target.entity, target.new, target.version_to, 0, failed=True))
            return f"rolled back: routes {routes} restored, {target.new} kept at 0% (on_failure: keep)"
        self.put(baseline, f"rollback: remove {target.new}, routes {routes}")
        self.mark(None)
        return f"rolled back: routes {routes} restored, {target.new} removed"

    # -- smoke queries and analysis ----------------------------------------------------------------

    def smoke(self, target: Target) -> None:
        failures = []
        for query in (self.spec or {}).get("smoke") or []:
            body = smoke.request_body(query["request"])
            answer = self.ex.ws.query_entity(self.name, target.new, body)
            asked_trace = bool((query["request"].get("databricks_options") or {}).get("return_trace"))
            wrong = smoke.judge(query["expect"], asked_trace, answer.status, answer.body, answer.seconds * 1000)
            if wrong:
                failures.append(f"smoke query '{query['name']}': {'; '.join(wrong)} (request POST /serving-endpoints/"
                                f"{self.name}/served-models/{target.new}/invocations {smoke.excerpt(body, 200)}; "
                                f"answer {answer.status}: {smoke.excerpt(answer.body)})")
            self.ex.progress(self.address, f"smoke query '{query['name']}' to {target.new}: "
                                           f"{'FAILED' if wrong else 'passed'} ({answer.status}, "
                                           f"{answer.seconds * 1000:.0f} ms)")
        if failures:
            raise RolloutFailed("its smoke queries, before any traffic", " | ".join(failures))

    def pause(self, target: Target, where: str) -> None:
        """The pause after a step, with the analysis: the metrics read at its start and end (and
        every `interval` when they are gauges of a window); without a verdict then, read again
        every `interval` up to `no_traffic_timeout`, then go on or fail as `no_traffic` says."""
        spec = self.spec or {}
        rules = spec.get("analysis")
        if rules is None:
            self.ex.progress(self.address, f"{where}: pause {spec.get('pause_seconds', 0):g}s (no analysis)")
            self.sleep(spec.get("pause_seconds", 0))
            return
        window = analysis.Window(self.scrape())
        gauges = not window.first.counters
        end = time.monotonic() + spec["pause_seconds"]
        give_up = end + rules["no_traffic_timeout_seconds"]
        self.ex.progress(self.address, f"{where}: pause {spec['pause_seconds']:g}s, analysing {target.new}")
        while True:
            now = time.monotonic()
            if now < end:
                self.sleep(min(end - now, rules["interval_seconds"]) if gauges else end - now)
                if gauges and time.monotonic() < end:
                    window.add(self.scrape())
                continue
            window.add(self.scrape())
            judged = analysis.verdict(target.new, window.tally(target.new), rules)
            if judged.passed is not None or now >= give_up:
                break
            # Counters can be read again at any time (a read costs one GET): sooner after a short pause.
            again = rules["interval_seconds"] if gauges else \
                min(rules["interval_seconds"], max(0.5, spec["pause_seconds"] / 4))
            self.sleep(min(again, give_up - now))
        others = "; ".join(analysis.describe(n, window.tally(n)) for n in sorted(window.last.tallies)
                           if n != target.new)
        figures = judged.figures + (f"; others: {others}" if others else "")
        if judged.passed is None:
            if rules["no_traffic"] == "pass":
                self.ex.progress(self.address, f"{where}: no verdict ({figures}); no_traffic: pass, going on")
                return
            raise RolloutFailed(where, f"no verdict: fewer than min_requests {rules['min_requests']} requests "
                                       f"after {rules['no_traffic_timeout_seconds']:g}s more ({figures})")
        if not judged.passed:
            raise RolloutFailed(where, f"{'; '.join(judged.findings)} ({figures})")
        self.ex.progress(self.address, f"{where}: analysis passed ({figures})")

    def scrape(self) -> analysis.Scrape:
        text = self.ex.ws.metrics(self.name)
        try:
            return analysis.parse(text)
        except ValueError as exc:
            raise RolloutFailed("reading the metrics export", f"not Prometheus text ({exc})") from None

    # -- the writes, each only when live differs -----------------------------------------------------

    def read(self) -> dict[str, Any]:
        api = self.ex.ws.get_endpoint(self.name)
        if api is None:
            raise RolloutFailed("a read", "the endpoint disappeared")
        return api

    def put(self, config: dict[str, Any], description: str) -> dict[str, Any]:
        """Make the config `config` (normalised) serve, waiting for it; no write when it already is."""
        api = self.read()
        if updating(api):
            api = self.wait()
        live = live_endpoint(api)
        if any(live.get(k) != config.get(k) for k in CONFIG_KEYS):
            stated = {"served_entities": {n: self.stated.get(self.origin.get(n, n), {})
                                          for n in config.get("served_entities", {})}}
            serving_endpoint._update_config(self.ex, self.name, self.address, config_payload(config, stated),
                                            self.deadline())
            self.ex.wrote(self.address, description)
            api = self.wait()
        return api

    def wait(self) -> dict[str, Any]:
        return serving_endpoint.wait(self.ex, self.name, self.address, self.deadline(), check_failure=True, eager=True)

    def mark(self, marker: Marker | None) -> None:
        """Record (or, with None, remove) the marker, when live says otherwise."""
        current = tag_map(self.read()).get(ROLLOUT_TAG)
        if marker is None and current is not None:
            self.ex.ws.patch_tags(self.name, add={}, delete=[ROLLOUT_TAG])
            self.ex.wrote(self.address, f"patch_tags(delete: [{ROLLOUT_TAG}])")
        elif marker is not None and current != marker.value():
            self.ex.ws.patch_tags(self.name, add={ROLLOUT_TAG: marker.value()}, delete=[])
            self.ex.wrote(self.address, f"patch_tags({ROLLOUT_TAG}: {marker.value()})")

    def sleep(self, seconds_: float) -> None:
        """Wait, interruptibly; a wait that would outlast the run's deadline fails at once, while
        there is still time to roll back."""
        deadline = self.ex.ws.deadline
        if deadline is not None and time.monotonic() + seconds_ > deadline:
            raise RolloutFailed("a pause", f"waiting {seconds_:g}s more would end after the run's deadline")
        if seconds_ <= 0:
            return
        with self.ex.progress.waiting(self.address, "a rollout pause"):  # the CI heartbeat names it
            if self.ex.ws.cancel.wait(seconds_):
                raise Interrupted(self.ex.ws.cancel_signal)

    def deadline(self) -> float:
        """`--timeout` bounds each wait for one config update (a rollout waits for several)."""
        return time.monotonic() + self.ex.options.timeout_seconds
