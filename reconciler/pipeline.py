"""The whole flow of `plan` (and of `apply`, which plans first), as one function to read top to bottom.

manifests → desired; workspace → live (two rounds of parallel reads: the objects, then what they
lead to), with the versions named by their source settled where they are registered; aliases
resolved to versions once; preflight checks of the manifests against the workspace; then the pure
planner builds the `Plan`, whole. The CLI and the Python API call this;
nothing patches the plan afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler.errors import ReconcilerError
from reconciler.live import read_dependencies, read_objects
from reconciler.manifests.loader import Manifests, load_manifests
from reconciler.plan import Plan, make_plan, resolve_versions
from reconciler.preflight import preflight
from reconciler.workspace import Workspace


def load(paths: Sequence[str], variables: Mapping[str, str], *, stack: str | None = None) -> Manifests:
    """Read, validate and cross-check manifest files offline, policies included (raises with every
    problem); `stack` is what policies that match on stacks compare with."""
    return load_manifests(paths, variables, stack=stack)


def plan(workspace: Workspace, manifests: Manifests, *, stack: str | None, prune: bool, parallelism: int) -> Plan:
    """Read what the manifests name, check it, and plan: everything `reconciler plan` does."""
    from reconciler.kinds import KINDS

    live = read_objects(workspace, manifests, parallelism=parallelism, prune=prune, stack=stack)
    written = manifests
    for kind in KINDS:  # references settled now: a version named by its source, if registered, is its number
        if kind.resolve is not None:
            manifests = kind.resolve(manifests, live)
    resolved = resolve_versions(manifests, live.models)
    read_dependencies(workspace, manifests, live, resolved, parallelism=parallelism)
    problems, warnings = preflight(manifests, live, resolved)
    for kind in KINDS:
        if kind.check is not None:
            kind_problems, kind_warnings = kind.check(written, live, stack)
            problems += kind_problems
            warnings += kind_warnings
    if manifests.policies:  # policies again, now with live state and MLmodels known (reconciler/policy.py)
        from reconciler.policy import check_live, compile_policies, plan_views

        compiled, _ = compile_policies(manifests.policies.values())  # they compiled when loaded
        violations, policy_warnings = check_live(compiled, manifests, plan_views(manifests, live, resolved),
                                                 stack=stack)
        problems += violations
        warnings += [str(w) for w in policy_warnings]
    if problems:
        raise ReconcilerError(problems)
    return make_plan(manifests, live, resolved, stack=stack, prune=prune, warnings=warnings,
                     workspace_host=workspace.host)
