"""The managed kinds, one module each, and the one table every stage iterates.

A kind's module says everything kind-specific: its address (`KEY`), the grammar its names follow
(`GRAMMAR`, a key of `terms.GRAMMAR`: a saved plan's names are held to it), which objects the
manifests name (`names`), how it is read (`read`), how its desired and live states become a
`Change` (`plan_all`), the operation names it may plan (`OPERATIONS`, which the plan schema
lists), and the apply steps that execute it. The pipeline, the planner, the executor and the plan
schema test iterate `KINDS`; none of them asks "which kind is this?". Adding a kind is one module,
one line here, and its local-workspace routes.

A kind that other kinds' manifests refer to (a model version named by its source, in aliases and
served entities) may also say, in its line: `resolve` (after the reads, the references it can
settle now: the manifests the rest of the plan sees), `check` (its preflight, on the manifests as
written) and `link` (after planning, what in other changes waits for its own).

Apply runs the steps of all kinds by phase (lower first; the changes of one step in parallel; the
steps of one phase in the order of `KINDS`): registered models and the alias changes no endpoint
waits for, then the model versions registered from MLflow (1), endpoints (2), the alias moves
that wait for endpoints or registrations (3: `early`, each as soon as its endpoints serve, while
other endpoints still update), pruned endpoints (4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reconciler.kinds import model_version, registered_model, serving_endpoint

if TYPE_CHECKING:
    from reconciler.apply import Executor
    from reconciler.errors import Problem
    from reconciler.live import LiveState
    from reconciler.manifests.loader import Manifests
    from reconciler.plan import Change


@dataclass(frozen=True)
class Step:
    phase: int
    takes: Callable[[Change], bool]
    run: Callable[[Executor, Change], None]
    in_flight: int = 0  # changes handled at once; 0: --parallelism (API calls are bounded by it anyway)
    # Runs with the step before it rather than after it: each change starts as soon as the changes
    # its operations wait for (`after`) have finished (an alias moves once its endpoints serve).
    early: bool = False


@dataclass(frozen=True)
class Kind:
    key: str  # address prefix and Change.kind: "serving_endpoint"
    manifest_kind: str | None  # the manifests' `kind:`; None: named inside other kinds' documents
    module: Any  # GRAMMAR, names, read, plan_all, OPERATIONS
    steps: tuple[Step, ...]
    resolve: Callable[[Manifests, LiveState], Manifests] | None = None
    check: Callable[[Manifests, LiveState, str | None], tuple[list[Problem], list[str]]] | None = None
    link: Callable[[list[Change]], None] | None = None
    # What a change of this kind needs besides what its operations wait for (`after`), by address:
    # `--target` takes it along (plan.select).
    depends: Callable[[Change], set[str]] | None = None


def _is_delete(change: Change) -> bool:
    from reconciler.plan import Action

    return change.action is Action.DELETE


KINDS: tuple[Kind, ...] = (
    Kind(registered_model.KEY, "RegisteredModel", registered_model, (
        Step(1, registered_model.has_unlinked, registered_model.apply_unlinked),
        Step(3, registered_model.has_linked, registered_model.apply_linked, early=True),
    )),
    Kind(serving_endpoint.KEY, "ServingEndpoint", serving_endpoint, (
        # Endpoints waiting for their updates hold no API slot, so many are applied at once.
        Step(2, lambda c: not _is_delete(c), serving_endpoint.apply_change, in_flight=256),
        Step(4, _is_delete, serving_endpoint.delete),
    ), depends=serving_endpoint.depends),
    # Registered in phase 1 after the models (steps of one phase run in this table's order), listed last
    # so the plan shows what names a version before the registration. Each registration is a child
    # process with MLflow, numpy and pandas loaded, and one at a time: two URIs of one logged agent
    # (`runs:/<run>/agent`, `models:/m-<id>`) must find the version the first registered.
    Kind(model_version.KEY, None, model_version, (Step(1, lambda c: True, model_version.apply, in_flight=1),),
         resolve=model_version.resolve, check=model_version.check, link=model_version.link,
         depends=model_version.depends),
)
BY_KEY = {kind.key: kind for kind in KINDS}


def steps() -> list[tuple[Kind, Step]]:
    """Every kind's apply steps, in the order apply runs them."""
    return sorted(((kind, step) for kind in KINDS for step in kind.steps), key=lambda pair: pair[1].phase)
