"""The managed kinds, one module each, and the one table every stage iterates.

A kind's module says everything kind-specific: its address (`KEY`), the grammar its names follow
(`GRAMMAR`, a key of `terms.GRAMMAR`: a saved plan's names are held to it), how it is read (`read`),
how its desired and live states become a `Change` (`plan_all`), the operation names it may plan
(`OPERATIONS`, which the plan schema lists), and the apply steps that execute it. The pipeline,
the planner, the executor and the plan schema test iterate `KINDS`; none of them asks "which kind
is this?". Adding a kind is one module, one line here, and its local-workspace routes.

Apply runs the steps of all kinds by phase (lower first; the changes of one step in parallel):
registered models and the alias changes no endpoint waits for (1), endpoints (2), the alias moves
that wait for endpoints (3), pruned endpoints (4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reconciler.kinds import registered_model, serving_endpoint

if TYPE_CHECKING:
    from reconciler.apply import Executor
    from reconciler.plan import Change


@dataclass(frozen=True)
class Step:
    phase: int
    takes: Callable[[Change], bool]
    run: Callable[[Executor, Change], None]
    in_flight: int = 0  # changes handled at once; 0: --parallelism (API calls are bounded by it anyway)


@dataclass(frozen=True)
class Kind:
    key: str  # address prefix and Change.kind: "serving_endpoint"
    manifest_kind: str  # the manifests' `kind:`
    module: Any  # GRAMMAR, read, plan_all, OPERATIONS
    steps: tuple[Step, ...]


def _is_delete(change: Change) -> bool:
    from reconciler.plan import Action

    return change.action is Action.DELETE


KINDS: tuple[Kind, ...] = (
    Kind(registered_model.KEY, "RegisteredModel", registered_model, (
        Step(1, registered_model.has_unlinked, registered_model.apply_unlinked),
        Step(3, registered_model.has_linked, registered_model.apply_linked),
    )),
    Kind(serving_endpoint.KEY, "ServingEndpoint", serving_endpoint, (
        # Endpoints waiting for their updates hold no API slot, so many are applied at once.
        Step(2, lambda c: not _is_delete(c), serving_endpoint.apply_change, in_flight=256),
        Step(4, _is_delete, serving_endpoint.delete),
    )),
)
BY_KEY = {kind.key: kind for kind in KINDS}


def steps() -> list[tuple[Kind, Step]]:
    """Every kind's apply steps, in the order apply runs them."""
    return sorted(((kind, step) for kind in KINDS for step in kind.steps), key=lambda pair: pair[1].phase)
