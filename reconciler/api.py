"""The Python API, for notebooks and jobs: load manifests, plan, apply; what the CLI runs.

    from reconciler import api

    manifests = api.load("manifests/", variables={"catalog": "prod"}, stack="prod")
    plan = api.plan(manifests)                  # the notebook's own auth, or client=WorkspaceClient(...)
    for change in plan.changes:                 # plan.render("markdown"), plan.to_json()
        print(change.address, change.action.value)
    result = api.apply(plan, manifests)         # per-object outcomes; result.ok, result.to_json()

`reconciler plan` and `reconciler apply` (cli.py) are these functions plus printing, prompts and
exit codes; these functions never print (unless `apply(..., echo=True)`) and never exit. Every
problem raises `ReconcilerError` (errors.py: one `Problem` per line, with its file position or
object); an apply whose objects fail returns, with those outcomes, and `result.ok` False.

`apply` takes the plan together with the manifests it was made from. A plan without changes is
done with no request at all. Otherwise it takes the stack's apply lock, plans again under it and
applies that plan, which must be the one given (`exact`, the default: a plan reviewed an hour ago
is refused once the workspace moved, one line per difference) or, with `exact=False`, whatever
the manifests ask now. With `lock=False` the plan given is applied as it is (each object's writes
are re-derived from a fresh read just before they are made, as always: apply.py).
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from reconciler.errors import ReconcilerError
from reconciler.manifests.loader import Manifests, load_manifests
from reconciler.plan import Action, Plan, Source

if TYPE_CHECKING:  # the workspace side is imported when used: `validate` loads without it
    from databricks.sdk import WorkspaceClient

    from reconciler.apply import Outcome
    from reconciler.errors import LeaseLost
    from reconciler.render import Progress
    from reconciler.workspace import Workspace

DEFAULT_PATHS = ("manifests",)
RECORD_FORMAT_VERSION = "1"
COMMIT = re.compile(r"[0-9a-fA-F]{7,64}")
PathLike = Union[str, "os.PathLike[str]"]
Client = Union["WorkspaceClient", "Workspace", None]


@dataclass(frozen=True)
class LoadedManifests:
    """Validated manifests and what they were made from (paths, used variables, digest)."""

    manifests: Manifests
    source: Source
    stack: str | None = None

    @property
    def warnings(self) -> list[str]:
        """Printed by `validate`, never fatal: values this release does not know, warning-severity policy rules."""
        return [str(w) for w in self.manifests.warnings]


def load(paths: PathLike | Sequence[PathLike] = (), *, texts: str | Sequence[str] | Mapping[str, str] = (),
         variables: Mapping[str, object] | Sequence[str] | None = None, var_files: Sequence[PathLike] = (),
         stack: str | None = None) -> LoadedManifests:
    """Read, validate and cross-check manifests offline, policies included.

    `paths`: files and directories (default `manifests/` when no `texts` are given); `texts`: YAML
    strings (problems name them `<text 1>`, ... or by the mapping's keys). `variables` fill
    `${var.NAME}` (a mapping, or `NAME=VALUE` strings as `--var` takes them), over `var_files` and
    `RECONCILER_VAR_NAME` environment variables. `stack` is what policies that match on stacks
    compare with, and what plan and apply tag and lock. Raises `ReconcilerError` with every problem."""
    from reconciler.manifests.variables import collect_variables
    from reconciler.terms import name_problem

    if stack is not None and name_problem("stack", stack):
        raise ReconcilerError(f"--stack: {name_problem('stack', stack)}")
    path_list = [os.fspath(paths)] if isinstance(paths, (str, os.PathLike)) else [os.fspath(p) for p in paths]
    if isinstance(texts, str):
        texts = [texts]
    named = dict(texts) if isinstance(texts, Mapping) else {f"<text {i}>": t for i, t in enumerate(texts, 1)}
    if not path_list and not named:
        path_list = list(DEFAULT_PATHS)
    given = variables or {}
    assignments = [f"{k}={v}" for k, v in given.items()] if isinstance(given, Mapping) else list(given)
    values = collect_variables(assignments, [os.fspath(p) for p in var_files])
    recording = _Recording(values)
    manifests = load_manifests(path_list, recording, stack=stack, texts=named)
    used = sorted(n for n in recording.used if n in values)
    # What the manifests were made from (a plan's `source`): the digest of the contents, order-free
    # (the same files given in another order are the same), and of the used variables' values.
    # (Of the bytes loaded: a file edited since is not what was planned.)
    parts = [hashlib.sha256(text.encode("utf-8")).hexdigest() for text in named.values()]
    parts += [manifests.digests[path] for path in manifests.files]
    parts.sort()
    parts += [f"{name}={hashlib.sha256(values[name].encode()).hexdigest()}" for name in used]
    digest = "sha256:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()
    return LoadedManifests(manifests, Source(paths=path_list, variables=used, digest=digest), stack)


class _Recording(dict[str, str]):
    """Variables, remembering which ones the manifests looked up (those are what a plan depends on)."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.used: set[str] = set()

    def __contains__(self, name: object) -> bool:
        self.used.add(str(name))
        return super().__contains__(name)

    def __getitem__(self, name: str) -> str:
        self.used.add(name)
        return str(super().__getitem__(name))


def connect(client: Client = None, *, parallelism: int = 16) -> Workspace:
    """The workspace a `WorkspaceClient` points at (None: the SDK's default config, which in a
    notebook is the notebook's own auth, elsewhere DATABRICKS_HOST/TOKEN or a profile)."""
    from reconciler.workspace import Workspace

    if isinstance(client, Workspace):
        return client
    if client is None:
        return Workspace.connect(parallelism=parallelism)
    return Workspace(client)


def plan(manifests: LoadedManifests, *, client: Client = None, prune: bool = False, deployer: str | None = None,
         targets: Sequence[str] = (), parallelism: int = 16) -> Plan:
    """Read the live workspace and plan what apply would change: the `Plan` value (`.changes`,
    `.to_json()`, `.render("text" | "markdown" | "json")`). `deployer` is the identity that will
    apply (default: the caller); `targets` limit the plan to those addresses and what they depend on."""
    from reconciler import pipeline

    workspace = connect(client, parallelism=parallelism)
    return pipeline.plan(workspace, manifests.manifests, stack=manifests.stack, prune=prune,
                         parallelism=parallelism, deployer=deployer, source=manifests.source, targets=targets)


@dataclass
class ApplyResult:
    """What an apply did, per object, and the audit record of it (`to_json`, `schemas/apply.schema.json`)."""

    plan: Plan  # the plan applied (made under the apply lock)
    outcomes: list[Outcome]
    workspace_host: str
    identity: str  # who applied: the calling identity's user name or application id
    commit: str | None  # in CI: GITHUB_SHA or CI_COMMIT_SHA
    started_at: str
    finished_at: str = ""
    lease_lost: LeaseLost | None = None  # the run stopped before its next write (lock.py)

    @property
    def failed(self) -> list[Outcome]:
        """Objects not left as the plan says: failed, or skipped (not applied)."""
        return [o for o in self.outcomes if o.status in ("failed", "skipped")]

    @property
    def ok(self) -> bool:
        return not self.failed and self.lease_lost is None

    def to_json(self) -> dict[str, Any]:
        from reconciler.redact import scrub

        by_address = {o.address: o for o in self.outcomes}
        objects = []
        for change in self.plan.changes:
            if change.action is Action.NOOP:
                continue
            done = by_address.get(change.address)
            objects.append({"address": change.address, "kind": change.kind, "name": change.name,
                            "action": change.action.value,
                            "operations": [op.description for op in change.operations],
                            "outcome": done.status if done else "not run",
                            "writes": list(done.writes) if done else [], "detail": done.detail if done else ""})
        counts = {status: sum(1 for o in objects if o["outcome"] == status)
                  for status in ("applied", "sent", "not waited", "unchanged", "failed", "skipped", "not run")}
        source = self.plan.source
        record = {
            "format_version": RECORD_FORMAT_VERSION,
            "result": "no changes" if not objects else "complete" if self.ok else "failed",
            "workspace_host": self.workspace_host, "identity": self.identity, "deployer": self.plan.deployer,
            "stack": self.plan.stack, "prune": self.plan.prune, "targets": self.plan.targets,
            "manifests": {"paths": source.paths, "variables": source.variables, "digest": source.digest}
            if source else None,
            "commit": self.commit, "started_at": self.started_at, "finished_at": self.finished_at,
            "stopped": str(self.lease_lost) if self.lease_lost else None,
            "summary": counts, "objects": objects,
        }
        return _scrubbed(record, scrub)


def apply(plan: Plan, manifests: LoadedManifests, *, client: Client = None, exact: bool = True,
          allow_replace: bool = False, wait: bool = True, timeout_seconds: float = 1800.0, lock: bool = True,
          lock_timeout_seconds: float = 0.0, parallelism: int = 16, echo: bool = False,
          progress: Progress | None = None, on_plan: Callable[[Plan], None] | None = None) -> ApplyResult:
    """Apply `plan`, made from `manifests` (see the module docstring for the lock and `exact`).

    `wait=False` does not wait for endpoint updates; `timeout_seconds` bounds each wait;
    `allow_replace` allows delete-and-recreate (downtime). Progress lines are printed only with
    `echo` (on stdout) or to a `progress` given. `on_plan` hears the plan made under the lock
    before any write. Returns per-object outcomes; raises `ReconcilerError` when nothing could be
    applied (a stale plan, the lock held elsewhere, a replace without `allow_replace`)."""
    from reconciler import pipeline
    from reconciler.apply import ApplyOptions, apply_plan
    from reconciler.render import Progress

    workspace = connect(client, parallelism=parallelism)
    mine = progress is None
    progress = progress or Progress(sys.stdout if echo else io.StringIO(), live=False if not echo else None)
    started = _now()
    try:
        me = workspace.current_user()
        identity = str(me.get("userName") or "")
        result = ApplyResult(plan, [], workspace.host, identity, ci_commit(), started)
        if not plan.has_changes:
            result.finished_at = _now()
            return result  # nothing to apply: no lock, no write
        held = None
        try:
            if lock:
                from reconciler.lock import ApplyLock

                held = ApplyLock(workspace, manifests.stack, timeout_seconds=lock_timeout_seconds)
                with progress.waiting(held.path, "waiting for the apply lock"):
                    held.acquire()  # from here on, writes are fenced by the lease (Workspace.fence)
                fresh = pipeline.plan(workspace, manifests.manifests, stack=manifests.stack, prune=plan.prune,
                                      parallelism=parallelism, deployer=_identity(plan.deployer),
                                      source=manifests.source, targets=plan.targets)
                if exact:  # the plan made now must be the one given, or nothing is written
                    pipeline.check_saved(json.loads(json.dumps(plan.to_json())), fresh)
                result.plan = plan = fresh
            if on_plan is not None:
                on_plan(plan)
            if plan.has_changes:
                options = ApplyOptions(parallelism=parallelism, timeout_seconds=timeout_seconds, wait=wait,
                                       allow_replace=allow_replace)
                result.outcomes, _, result.lease_lost = apply_plan(workspace, plan, options, progress)
        finally:
            if held is not None:
                # Also when acquiring failed: a create whose answer was lost may have landed; release
                # only removes a lease holding this run's token. Everything this run started has
                # returned by now (the executor waits for writes in flight), so the release's own
                # calls must not be cancelled by an interrupt.
                workspace.cancel.clear()
                held.release()
        result.finished_at = _now()
        return result
    finally:
        if mine:
            progress.close()


def ci_commit() -> str | None:
    """The commit a CI run applies (GitHub Actions' GITHUB_SHA, GitLab's CI_COMMIT_SHA), if it looks like one."""
    for name in ("GITHUB_SHA", "CI_COMMIT_SHA"):
        value = os.environ.get(name, "").strip()
        if COMMIT.fullmatch(value):
            return value.lower()
    return None


def _identity(principal: str | None) -> str | None:
    """`user_name:a@b.c` → `a@b.c`: the deployer a plan recorded, as `--deployer` takes it."""
    return principal.split(":", 1)[1] if principal else None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _scrubbed(value: Any, scrub: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list):
        return [_scrubbed(v, scrub) for v in value]
    if isinstance(value, dict):
        return {k: _scrubbed(v, scrub) for k, v in value.items()}
    return value
