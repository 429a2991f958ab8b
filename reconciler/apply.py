"""Executes a plan: the fewest writes, in a safe order, safe to re-run at any point.

Order: (1) registered models and the alias changes no endpoint waits for; (2) endpoints, in
parallel, each one: wait for an update already in progress, then tags, AI gateway, permissions,
and last the config write, then wait for it to finish; (3) alias moves linked to endpoints, only
if every endpoint they wait for now serves the new version healthily; (4) pruned endpoints.

`--parallelism` bounds concurrent API calls, not endpoints in flight: an endpoint waiting for its
update holds no slot, so 50 endpoints that each take 5 minutes to update take 5 minutes together,
not ceil(50 / parallelism) times 5 minutes.

Re-running is always safe: each object's writes are re-derived from a fresh read with the same
planner functions (a write that already landed is simply not needed any more), and with a saved
plan every object is first checked against the fingerprint it had when the plan was made.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import AlreadyExists, Conflict, Problem, ReconcilerError
from reconciler.normalize import acl_payload, config_payload, live_endpoint, live_model, overlay
from reconciler.plan import (
    Action,
    Change,
    Plan,
    endpoint_operations,
    fingerprint,
    model_operations,
    tag_changes,
)
from reconciler.terms import managed, updating
from reconciler.workspace import Workspace

FIRST_POLL_SECONDS = 0.5
MAX_POLL_SECONDS = 10.0
# Endpoints applied at once; each mostly sleeps between polls, so this is not --parallelism.
MAX_ENDPOINTS_IN_FLIGHT = 256


@dataclass
class Outcome:
    address: str
    status: str  # "applied" | "failed" | "skipped" | "unchanged"
    detail: str = ""
    writes: list[str] = field(default_factory=list)


class Progress:
    """What apply is doing, as it happens.

    In CI logs (no TTY): one plain line per event, with the elapsed time. On a terminal: one line
    per object, rewritten in place with its latest state and how long it has been at it, so fifty
    endpoints waiting for their updates read as fifty lines, not a scrolling wall.
    """

    def __init__(self, stream: Any = None, *, live: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.live = bool(getattr(self.stream, "isatty", lambda: False)()) if live is None else live
        self.start = time.monotonic()
        self.lock = threading.Lock()
        self.rows: dict[str, tuple[float, str]] = {}  # address -> (first seen, latest state)
        self.drawn = 0
        self.stopped = threading.Event()
        if self.live:
            threading.Thread(target=self._tick, name="apply-progress", daemon=True).start()

    def __call__(self, address: str, message: str) -> None:
        with self.lock:
            if not self.live:
                self.stream.write(f"[{time.monotonic() - self.start:6.1f}s] {address}: {message}\n")
                self.stream.flush()
                return
            first_seen = self.rows.get(address, (time.monotonic(), ""))[0]
            self.rows[address] = (first_seen, message)
            self._draw()

    def _draw(self) -> None:
        import shutil

        width = max(20, shutil.get_terminal_size().columns - 1)  # a wrapped line would break the redraw
        if self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F")  # back to the first line of the block
        for address, (first_seen, state) in self.rows.items():
            line = f"{address}: {state} ({time.monotonic() - first_seen:.0f}s)"
            self.stream.write("\x1b[2K" + line[:width] + "\n")
        self.drawn = len(self.rows)
        self.stream.flush()

    def _tick(self) -> None:
        while not self.stopped.wait(1.0):
            with self.lock:
                if self.rows:
                    self._draw()

    def close(self) -> None:
        self.stopped.set()


@dataclass
class ApplyOptions:
    parallelism: int = 16
    timeout_seconds: float = 1800.0
    wait: bool = True
    allow_replace: bool = False
    saved_plan: bool = False


class EndpointFailed(Exception):
    """An endpoint update that ended badly; its message is for the user."""


class Executor:
    def __init__(self, workspace: Workspace, plan: Plan, options: ApplyOptions, progress: Progress) -> None:
        self.ws = _Throttled(workspace, threading.BoundedSemaphore(max(1, options.parallelism)))
        self.plan = plan
        self.options = options
        self.progress = progress
        self.outcomes: dict[str, Outcome] = {}
        self.polls: dict[str, int] = {}
        self.served: dict[str, dict[str, Any]] = {}  # endpoint name -> the read that showed it serving

    # ---- entry point -----------------------------------------------------------------------------

    def run(self) -> list[Outcome]:
        changes = [c for c in self.plan.changes if c.action is not Action.NOOP]
        refused = [c for c in changes if c.action is Action.REPLACE and not self.options.allow_replace]
        if refused:
            raise ReconcilerError([Problem(f"needs replace ({'; '.join(c.replace_reasons)}): the endpoint would be "
                                           "deleted and re-created, with downtime; pass --allow-replace to do it",
                                           subject=c.address) for c in refused])
        if self.options.saved_plan:
            self._refuse_if_stale(changes)
        models = [c for c in changes if c.kind == "registered_model"]
        endpoints = [c for c in changes if c.kind == "serving_endpoint" and c.action is not Action.DELETE]
        # A model whose every operation waits for an endpoint has nothing to do before phase 3.
        self._parallel([c for c in models if any(not op.after for op in c.operations)],
                       lambda c: self._apply_model(c, linked=False))
        self._parallel(endpoints, self._apply_endpoint, in_flight=MAX_ENDPOINTS_IN_FLIGHT)
        self._parallel([c for c in models if any(op.after for op in c.operations)],
                       lambda c: self._apply_model(c, linked=True))
        self._parallel([c for c in changes if c.action is Action.DELETE], self._delete_endpoint)
        return [self.outcomes[c.address] for c in changes if c.address in self.outcomes]

    def _parallel(self, changes: list[Change], fn: Callable[[Change], None], *, in_flight: int = 0) -> None:
        """Run `fn` per change on `in_flight` threads (default: --parallelism); API calls are
        bounded by --parallelism either way (see `_Throttled`)."""
        if not changes:
            return
        with ThreadPoolExecutor(max_workers=max(1, min(in_flight or self.options.parallelism, len(changes)))) as pool:
            list(pool.map(lambda c: self._guard(c, fn), changes))

    def _guard(self, change: Change, fn: Callable[[Change], None]) -> None:
        try:
            fn(change)
        except ReconcilerError as exc:
            self._fail(change.address, "; ".join(p.message if p.subject else str(p) for p in exc.problems))
        except EndpointFailed as exc:
            self._fail(change.address, str(exc))

    def _fail(self, address: str, detail: str) -> None:
        outcome = self.outcomes.setdefault(address, Outcome(address, "failed"))
        outcome.status, outcome.detail = "failed", detail
        self.progress(address, f"FAILED: {detail}")

    def _wrote(self, address: str, description: str) -> None:
        outcome = self.outcomes.setdefault(address, Outcome(address, "applied"))
        outcome.writes.append(description)
        if outcome.status == "unchanged":
            outcome.status = "applied"
        self.progress(address, description)

    # ---- staleness -------------------------------------------------------------------------------

    def _read(self, change: Change) -> dict[str, Any] | None:
        """The object's normalised live state, read now, shaped exactly as plan shaped it."""
        if change.kind == "registered_model":
            api = self.ws.get_model(change.name)
            return live_model(api) if api is not None else None
        api = self.ws.get_endpoint(change.name)
        if api is None:
            return None
        wants_acl = change.desired is not None and "permissions" in change.desired
        acl = self.ws.get_endpoint_permissions(change.name, api["id"]) if wants_acl and api.get("id") else None
        return live_endpoint(api, acl)

    def _refuse_if_stale(self, changes: list[Change]) -> None:
        from reconciler.live import run_parallel

        now = run_parallel([(c.address, lambda c=c: fingerprint(self._read(c))) for c in changes],
                           self.options.parallelism)
        stale = [c for c in changes if now[c.address] != c.fingerprint]
        if stale:
            raise ReconcilerError([Problem("changed since the plan was made; the saved plan is stale. Run "
                                           "`reconciler plan --out` again and review the new plan", subject=c.address)
                                   for c in stale])

    # ---- registered models -----------------------------------------------------------------------

    def _apply_model(self, change: Change, *, linked: bool) -> None:
        linked_aliases = {op.args.get("alias"): op.after for op in change.operations if op.after}
        if linked:
            waiting = {a: [d for d in deps if self.outcomes.get(d, Outcome(d, "unchanged")).status
                           not in ("applied", "unchanged")] for a, deps in linked_aliases.items()}
        api = self.ws.get_model(change.name)
        live = live_model(api) if api is not None else None
        for op in model_operations(change.desired or {}, live):
            is_linked = op.name in ("set_alias", "delete_alias") and op.args["alias"] in linked_aliases
            if is_linked != linked:
                continue
            if linked and waiting.get(op.args["alias"]):
                self._skip(change.address, f"{op.description} not done: {', '.join(waiting[op.args['alias']])} "
                                           "did not finish serving the new version")
                continue
            not_serving = self._not_serving(linked_aliases[op.args["alias"]], change.name, op.args.get("version")) \
                if linked else ""
            if not_serving:
                self._skip(change.address, f"{op.description} not done: {not_serving}")
                continue
            self._model_write(change.name, op.name, op.args)
            self._wrote(change.address, op.description)
        self.outcomes.setdefault(change.address, Outcome(change.address, "unchanged"))

    def _not_serving(self, addresses: list[str], model: str, version: Any) -> str:
        """Why the endpoints an alias move waits for do not serve `model` `version` healthily now
        ("" when they all do). The ones this run updated were just seen serving it; any other (an
        update left in progress by an interrupted run, which the plan linked) is waited for and
        looked at now, so an alias never points at a version that is not being served."""
        reasons = []
        for address in addresses:
            name = address.split(".", 1)[1]
            api = self.served.get(name)
            if api is None:
                deadline = time.monotonic() + self.options.timeout_seconds
                api = self._wait(name, address, deadline, check_failure=False) if self.options.wait \
                    else self.ws.get_endpoint(name) or {}
            state = api.get("state") or {}
            served = {(e.get("entity_name"), e.get("entity_version"))
                      for e in (api.get("config") or {}).get("served_entities") or []}
            if state.get("ready") != "READY" or state.get("config_update") != "NOT_UPDATING" or \
                    (version is not None and (model, str(version)) not in served):
                reasons.append(f"{name} does not serve version {version} healthily "
                               f"(config_update {state.get('config_update')})")
        return "; ".join(reasons)

    def _skip(self, address: str, detail: str) -> None:
        outcome = self.outcomes.setdefault(address, Outcome(address, "skipped"))
        if outcome.status != "failed":
            outcome.status = "skipped" if not outcome.writes else "failed"
        outcome.detail = detail
        self.progress(address, f"SKIPPED: {detail}")

    def _model_write(self, name: str, op: str, args: dict[str, Any]) -> None:
        if op == "create_model":
            try:
                self.ws.create_model(name, comment=args.get("comment"))
            except ReconcilerError as exc:
                # A retried POST whose first attempt landed: the model is there, which was the goal.
                if not isinstance(exc, AlreadyExists) and self.ws.get_model(name) is None:
                    raise
        elif op == "update_model":
            self.ws.update_model(name, args["fields"])
        elif op == "set_alias":
            self.ws.set_alias(name, args["alias"], int(args["version"]))
        elif op == "delete_alias":
            self.ws.delete_alias(name, args["alias"])

    # ---- serving endpoints -----------------------------------------------------------------------

    def _apply_endpoint(self, change: Change) -> None:
        name, address = change.name, change.address
        deadline = time.monotonic() + self.options.timeout_seconds
        api = self.ws.get_endpoint(name)
        if api is not None and updating(api):
            self.progress(address, "an update is in progress; waiting for it before writing")
            api = self._wait(name, address, deadline, check_failure=False)
        if change.action is Action.REPLACE and api is not None:
            self.ws.delete_endpoint(name)
            self._wrote(address, f"delete_endpoint({name}) for replacement")
            api = None
        desired = change.desired or {}
        if api is None:
            api = self._create(change, desired)
            if api is None:
                return
        acl = self.ws.get_endpoint_permissions(name, api["id"]) if "permissions" in desired and api.get("id") else None
        live = live_endpoint(api, acl)
        effective = overlay(desired, live)
        ops = endpoint_operations(live, effective)
        config_op = next((op for op in ops if op.name == "update_config"), None)
        for op in ops:  # everything but the config first: an AI gateway write during an update is a 409
            if op is config_op:
                continue
            if op.name == "patch_tags":
                add, delete = tag_changes(live, effective)
                self.ws.patch_tags(name, add=add, delete=delete)
            elif op.name == "put_ai_gateway":
                self.ws.put_ai_gateway(name, effective.get("ai_gateway", {}))
            else:
                grants = effective["permissions"]
                if op.name == "update_permissions":
                    grants = {p: lvl for p, lvl in grants.items() if live.get("permissions", {}).get(p) != lvl}
                self.ws.update_permissions(name, api["id"], acl_payload(grants), replace=op.name == "set_permissions")
            self._wrote(address, op.description)
        if config_op is not None:
            self._update_config(name, address, config_payload(effective), deadline)
            self._wrote(address, config_op.description)
        if config_op is not None or updating(api):
            self._finish(name, address, deadline)
        self.outcomes.setdefault(address, Outcome(address, "unchanged"))

    def _create(self, change: Change, desired: dict[str, Any]) -> dict[str, Any] | None:
        name, address = change.name, change.address
        effective = overlay(desired, None)
        payload = {"name": name, "config": config_payload(effective), "tags": effective.get("tags", {}),
                   **{k: effective[k] for k in ("ai_gateway", "description", "route_optimized") if k in effective}}
        try:
            api = self.ws.create_endpoint(payload)
        except Conflict:
            api = self._adopt_existing(name)  # a retried POST whose first attempt landed
        self._wrote(address, f"create_endpoint({name})")
        if "permissions" in desired and api.get("id"):
            acl = self.ws.get_endpoint_permissions(name, api["id"])
            grants = {p: lvl for p, lvl in desired["permissions"].items()
                      if live_endpoint(api, acl).get("permissions", {}).get(p) != lvl}
            if grants:
                self.ws.update_permissions(name, api["id"], acl_payload(grants), replace=False)
                self._wrote(address, f"update_permissions({', '.join(sorted(grants))})")
        self._finish(name, address, time.monotonic() + self.options.timeout_seconds)
        return None

    def _adopt_existing(self, name: str) -> dict[str, Any]:
        api = self.ws.get_endpoint(name)
        if api is None or not managed(api):
            raise EndpointFailed("create_endpoint: an endpoint with this name already exists and is not managed by "
                                 "the reconciler; run `reconciler export` to adopt it, or rename")
        return api

    def _update_config(self, name: str, address: str, payload: dict[str, Any], deadline: float) -> None:
        try:
            self.ws.update_config(name, payload)
        except Conflict:
            # 409: an update is in progress. Ours, if a retried PUT's first attempt landed (then the
            # pending config is what we sent); else someone else's: wait it out and write once more.
            api = self._wait(name, address, deadline, check_failure=False)
            if live_endpoint(api)["served_entities"] != live_endpoint({"config": payload})["served_entities"]:
                self.ws.update_config(name, payload)

    def _finish(self, name: str, address: str, deadline: float) -> None:
        if not self.options.wait:
            self.progress(address, "not waiting for the update to finish (--no-wait); linked alias moves are skipped")
            self.outcomes.setdefault(address, Outcome(address, "applied")).status = "sent"
            return
        api = self._wait(name, address, deadline, check_failure=True)
        if (api.get("state") or {}).get("ready") != "READY":
            raise EndpointFailed("update finished but the endpoint is NOT_READY")
        self.served[name] = api
        self.progress(address, "serving (READY, NOT_UPDATING)")

    def _wait(self, name: str, address: str, deadline: float, *, check_failure: bool) -> dict[str, Any]:
        """Poll until no update is in progress, backing off from 0.5 s to 10 s between polls."""
        interval = FIRST_POLL_SECONDS
        last_state = None
        while True:
            api = self.ws.get_endpoint(name)
            self.polls[address] = self.polls.get(address, 0) + 1
            if api is None:
                raise EndpointFailed("the endpoint disappeared while waiting for its update")
            state = (api.get("state") or {}).get("config_update")
            if state != last_state:
                self.progress(address, f"config_update {state}" if last_state else f"waiting: config_update {state}")
            last_state = state
            if not updating(api):
                if check_failure and state in ("UPDATE_FAILED", "UPDATE_CANCELED"):
                    raise EndpointFailed(self._failure_message(name, api, state))
                return api
            if time.monotonic() + interval > deadline:
                raise EndpointFailed(f"still updating after --timeout {self.options.timeout_seconds:.0f}s; the update "
                                     "goes on in the workspace: run apply again to wait for it and finish")
            time.sleep(interval)
            interval = min(interval * 1.5, MAX_POLL_SECONDS)

    def _failure_message(self, name: str, api: dict[str, Any], state: str) -> str:
        parts = [f"config update ended {state}; the previous config keeps serving"]
        for config in (api.get("pending_config"), api.get("config")):
            for entity in (config or {}).get("served_entities") or []:
                entity_state = entity.get("state") or {}
                if entity_state.get("deployment") == "DEPLOYMENT_FAILED":
                    parts.append(f"served entity {entity.get('name')}: {entity_state.get('deployment_state_message')}")
                    logs = self.ws.build_logs_tail(name, entity.get("name") or "")
                    if logs:
                        parts.append(f"build logs: {logs}")
        return "; ".join(dict.fromkeys(parts))

    def _delete_endpoint(self, change: Change) -> None:
        self.ws.delete_endpoint(change.name)
        self._wrote(change.address, f"delete_endpoint({change.name})")


class _Throttled:
    """The workspace, with at most `--parallelism` of its calls running at once."""

    def __init__(self, workspace: Workspace, slots: threading.BoundedSemaphore) -> None:
        self._workspace = workspace
        self._slots = slots

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._workspace, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._slots:
                return attribute(*args, **kwargs)
        return call


def apply_plan(workspace: Workspace, plan: Plan, options: ApplyOptions, progress: Progress) -> tuple[list[Outcome], dict[str, int]]:
    executor = Executor(workspace, plan, options, progress)
    return executor.run(), executor.polls
