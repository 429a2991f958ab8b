"""Executes a plan: the fewest writes, in a safe order, safe to re-run at any point.

The executor is the same for every kind: it runs the kinds' apply steps phase by phase (the
order is in `kinds/__init__.py`: models and the alias changes no endpoint waits for; endpoints,
in parallel; the alias moves that wait for endpoints, only if those serve the new version
healthily; pruned endpoints), records each object's outcome and prints progress. What each step
writes is the kind's business (`kinds/registered_model.py`, `kinds/serving_endpoint.py`).

`--parallelism` bounds concurrent API calls, not endpoints in flight: an endpoint waiting for its
update holds no slot, so 50 endpoints that each take 5 minutes to update take 5 minutes together,
not ceil(50 / parallelism) times 5 minutes.

Re-running is always safe: each object's writes are re-derived from a fresh read with the same
planner functions (a write that already landed is simply not needed any more). A saved plan is
never executed: the CLI plans again and runs that plan once it equals the saved one
(pipeline.check_saved). Under the apply lock every write is fenced by the lease
(`Workspace.fence`): when the lease is lost, the run stops before its next write, says so in one
line (`LeaseLost`), and the next apply finishes the job. The same holds within a run: an object
whose step gave up on the workspace (its retries spent, or a write whose fate is unknown) is
re-read and its remaining writes re-derived, within its retry budget (`Executor._guard`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from reconciler.errors import Interrupted, LeaseLost, Problem, ReconcilerError, Unreachable
from reconciler.kinds import serving_endpoint
from reconciler.plan import Action, Change, Plan
from reconciler.render import Progress
from reconciler.workspace import Workspace

if TYPE_CHECKING:
    from reconciler.kinds import Step


@dataclass
class Outcome:
    address: str
    status: str  # "applied" | "sent" | "not waited" | "failed" | "skipped" | "unchanged"
    detail: str = ""
    writes: list[str] = field(default_factory=list)


@dataclass
class ApplyOptions:
    parallelism: int = 16
    timeout_seconds: float = 1800.0
    wait: bool = True
    allow_replace: bool = False


class Executor:
    def __init__(self, workspace: Workspace, plan: Plan, options: ApplyOptions, progress: Progress) -> None:
        self.workspace = workspace
        # Typed as what it stands for: every attribute is the workspace's, each call throttled.
        self.ws = cast("Workspace", _Throttled(workspace, threading.BoundedSemaphore(max(1, options.parallelism))))
        self.lease_lost: LeaseLost | None = None
        self.plan = plan
        self.options = options
        self.progress = progress
        self.outcomes: dict[str, Outcome] = {}
        self.polls: dict[str, int] = {}
        self.rederived: dict[str, int] = {}  # address -> times its step was run again after giving up
        self.served: dict[str, dict[str, Any]] = {}  # endpoint name -> the read that showed it serving
        self.registered: dict[str, str] = {}  # model_version address -> the version it registered or found

    # ---- entry point -----------------------------------------------------------------------------

    def run(self) -> list[Outcome]:
        from reconciler.kinds import steps

        changes = [c for c in self.plan.changes if c.action is not Action.NOOP]
        refused = [c for c in changes if c.action is Action.REPLACE and not self.options.allow_replace]
        if refused:
            raise ReconcilerError([Problem(f"needs replace ({'; '.join(c.replace_reasons)}): the endpoint would be "
                                           "deleted and re-created, with downtime; pass --allow-replace to do it",
                                           subject=c.address) for c in refused])
        ordered = steps()
        while ordered:
            # A step that starts early (the alias moves that wait for endpoints) runs with the step
            # before it: each of its changes starts once the changes it waits for have finished.
            batch = [ordered.pop(0)]
            while ordered and ordered[0][1].early:
                batch.append(ordered.pop(0))
            self._parallel([(c, step) for kind, step in batch for c in changes if c.kind == kind.key and step.takes(c)])
            if self.lease_lost is not None:
                break  # no later step starts: the next apply finishes the job
        return [self.outcomes[c.address] for c in changes if c.address in self.outcomes]

    def _parallel(self, work: list[tuple[Change, Step]]) -> None:
        """Run each change's step, on as many threads as the steps allow at once (`Step.in_flight`,
        default --parallelism); API calls are bounded by --parallelism either way (`_Throttled`)."""
        if not work:
            return
        threads = sum(min(step.in_flight or self.options.parallelism, count)
                      for step, count in Counter(step for _, step in work).items())
        work = sorted(work, key=lambda pair: pair[1].early)  # what early changes wait for is started first
        done = [threading.Event() for _ in work]
        finished: dict[str, list[threading.Event]] = {}  # address -> its changes' events, early ones aside
        for (change, step), event in zip(work, done, strict=True):
            if not step.early:
                finished.setdefault(change.address, []).append(event)
        # Every change is started and then every one waited for, so that an interrupt (which each
        # of them sees) is raised only once all have returned: no write is left in flight.
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            futures = [pool.submit(self._start, change, step, finished, event)
                       for (change, step), event in zip(work, done, strict=True)]
        for future in futures:
            future.result()

    def _start(self, change: Change, step: Step, finished: dict[str, list[threading.Event]],
               done: threading.Event) -> None:
        """Run one change's step, once (an early step's) the changes it waits for have finished.
        An early change waits only for changes submitted before it, so waits cannot go round."""
        try:
            if step.early:
                waits_for = sorted({a for op in change.operations for a in op.after} & finished.keys())
                for address in waits_for:
                    for event in finished[address]:
                        while not event.wait(0.2):
                            if self.ws.cancel.is_set():
                                raise Interrupted(self.ws.cancel_signal)
                ended = [a for a in waits_for if a not in self.outcomes]  # its step raised: the run stops
                if ended:
                    self.skip(change.address, f"not done: {', '.join(ended)} did not finish")
                    return
            self._guard(change, step.run)
        finally:
            done.set()

    def _guard(self, change: Change, fn: Callable[[Executor, Change], None]) -> None:
        """Run one object's step. A step that gave up on the workspace (`Unreachable`: retries
        spent, or a write whose fate is unknown) is run again, as a re-run of apply would: it
        re-reads the object and re-derives the writes still needed, so a write that landed is not
        repeated (`Workspace.try_again_in`: a pause apart, a few times, while the object's retry
        budget, the run's --deadline and the lease last)."""
        if self.ws.cancel.is_set():  # interrupted: start nothing new (interrupts.py)
            raise Interrupted(self.ws.cancel_signal)
        first_failure: float | None = None
        while True:
            try:
                self.check_lease()
                fn(self, change)
                return
            except Interrupted:
                raise  # not this object's failure: the run stops, and the CLI says so
            except LeaseLost as exc:
                self.lease_lost = exc
                self.skip(change.address, "stopped: the apply lock's lease was lost")
                return
            except Unreachable as exc:
                first_failure = time.monotonic() if first_failure is None else first_failure
                reason = _reason(exc)
                pause = self.workspace.try_again_in(exc, first_failure, self.rederived.get(change.address, 0))
                if pause is None:
                    self._fail(change.address, reason)
                    return
                self.rederived[change.address] = self.rederived.get(change.address, 0) + 1
                self.progress(change.address, f"re-reading it to re-derive its remaining writes, after: {reason}")
                if self.ws.cancel.wait(pause):
                    raise Interrupted(self.ws.cancel_signal) from None
            except ReconcilerError as exc:
                self._fail(change.address, _reason(exc))
                return
            except serving_endpoint.EndpointFailed as exc:
                self._fail(change.address, str(exc))
                return

    # ---- what the kinds' apply steps report (kinds/*.py) -----------------------------------------

    def wrote(self, address: str, description: str) -> None:
        outcome = self.outcomes.setdefault(address, Outcome(address, "applied"))
        outcome.writes.append(description)
        if outcome.status == "unchanged":
            outcome.status = "applied"
        self.progress(address, description)

    def skip(self, address: str, detail: str) -> None:
        outcome = self.outcomes.setdefault(address, Outcome(address, "skipped"))
        if outcome.status != "failed":
            outcome.status = "skipped" if not outcome.writes else "failed"
        outcome.detail = detail
        self.progress(address, f"SKIPPED: {detail}")

    def unchanged(self, address: str) -> None:
        """Done with `address`; if it needed no write, it is unchanged."""
        self.outcomes.setdefault(address, Outcome(address, "unchanged"))

    def sent(self, address: str) -> None:
        """Its writes were sent but not waited for (--no-wait)."""
        outcome = self.outcomes.setdefault(address, Outcome(address, "applied"))
        outcome.status, outcome.detail = "sent", "the update was sent, not waited for (--no-wait)"

    def not_waited(self, address: str, detail: str) -> None:
        """Left for a later apply by --no-wait's own rule (an alias move linked to an update that was
        sent, a rollout): what the user asked for, not a failure."""
        outcome = self.outcomes.setdefault(address, Outcome(address, "not waited"))
        if outcome.status not in ("failed", "skipped"):
            outcome.status = "not waited"
        outcome.detail = detail
        self.progress(address, f"NOT WAITED FOR: {detail}")

    def only_sent(self, addresses: list[str]) -> bool:
        """Whether each of `addresses` is unfinished only because --no-wait did not wait for it."""
        return bool(addresses) and all(self.outcomes[a].status in ("sent", "not waited") for a in addresses
                                       if a in self.outcomes)

    def unfinished(self, addresses: list[str]) -> list[str]:
        """Those of `addresses` that this run did not leave applied or unchanged."""
        return [a for a in addresses if self.outcomes.get(a, Outcome(a, "unchanged")).status
                not in ("applied", "unchanged")]

    def _fail(self, address: str, detail: str) -> None:
        outcome = self.outcomes.setdefault(address, Outcome(address, "failed"))
        outcome.status, outcome.detail = "failed", detail
        self.progress(address, f"FAILED: {detail}")

    def check_lease(self) -> None:
        """Raise LeaseLost once the apply lock's lease is not held with margin (no-op without a lock)."""
        if self.lease_lost is not None:
            raise self.lease_lost
        if self.workspace.fence is not None:
            self.workspace.fence()


def _reason(exc: ReconcilerError) -> str:
    return "; ".join(p.message if p.subject else str(p) for p in exc.problems)


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


def apply_plan(workspace: Workspace, plan: Plan, options: ApplyOptions,
               progress: Progress) -> tuple[list[Outcome], dict[str, int], LeaseLost | None]:
    """The outcomes, the polls per endpoint, and why the run stopped early (a lost lease) or None."""
    executor = Executor(workspace, plan, options, progress)
    outcomes = executor.run()
    return outcomes, executor.polls, executor.lease_lost
