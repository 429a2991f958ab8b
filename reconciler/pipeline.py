"""The whole flow of `plan` (and of `apply`, which plans first), as functions to read top to bottom.

manifests → desired; workspace → live (two rounds of parallel reads: the objects, then what they
lead to), with the versions named by their source settled where they are registered; aliases
resolved to versions once; preflight checks of the manifests against the workspace; then the pure
planner builds the `Plan`, whole; then what the deploying identity needs to apply it is checked.
The CLI and the Python API call this; nothing patches the plan afterwards.

A saved plan is a commitment, never a program: `apply --plan` loads the manifests again (the paths
the plan records, or the PATHS given), plans again against fresh live state (`plan`) and compares
(`check_saved`): the same objects, actions, diff lines, operations, deploying identity, workspace
and sources, or nothing is written. What runs is the new plan; nothing is taken from the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.errors import ReconcilerError
from reconciler.live import read_access, read_dependencies, read_objects
from reconciler.manifests.loader import Manifests
from reconciler.plan import Plan, Source, differences, make_plan, resolve_versions, select
from reconciler.preflight import access_problems, manager_problems, preflight, shared_model_warnings
from reconciler.terms import identity_principal, name_problem
from reconciler.workspace import Workspace


def deploying_identity(workspace: Workspace, deployer: str | None) -> tuple[str, set[str] | None]:
    """The principal that keeps CAN_MANAGE (`user_name:...` / `service_principal_name:...`): the one
    given (--deployer), else the caller (SCIM Me). Its groups when it is the caller, else None (the
    groups of another identity cannot be read with the SCIM Me call)."""
    if deployer is not None:
        problem = name_problem("identity", deployer)
        if problem:
            raise ReconcilerError(f"--deployer: {problem}")
    me = workspace.persevering(workspace.current_user)()
    name = me.get("userName") or ""
    if deployer is not None and deployer != name:
        return identity_principal(deployer), None
    if name_problem("identity", name):
        raise ReconcilerError(f"the workspace names the calling identity {name!r}, which is neither an e-mail nor an "
                              "application id; pass --deployer")
    return identity_principal(name), {g["display"] for g in me.get("groups") or [] if g.get("display")}


def plan(workspace: Workspace, manifests: Manifests, *, stack: str | None, prune: bool, parallelism: int,
         deployer: str | None = None, source: Source | None = None, targets: Sequence[str] = ()) -> Plan:
    """Read what the manifests name, check it, and plan: everything `reconciler plan` does.
    `deployer` is the identity that will apply (default: the caller); `targets` (--target) limit
    the plan to those objects and what they depend on (`plan.select`)."""
    from reconciler.kinds import KINDS

    live = read_objects(workspace, manifests, parallelism=parallelism, stack=stack)
    principal, groups = deploying_identity(workspace, deployer)
    written = manifests
    for kind in KINDS:  # references settled now: a version named by its source, if registered, is its number
        if kind.resolve is not None:
            manifests = kind.resolve(manifests, live)
    resolved = resolve_versions(manifests, live.models)
    read_dependencies(workspace, manifests, live, resolved, parallelism=parallelism)
    problems, warnings = preflight(manifests, live, resolved)
    warnings += live.warnings + shared_model_warnings(manifests, live)
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
    the_plan = make_plan(manifests, live, resolved, stack=stack, prune=prune, warnings=warnings,
                         workspace_host=workspace.host, deployer=principal, source=source)
    if targets:
        the_plan = select(the_plan, list(targets))
    problems = manager_problems(manifests, the_plan, live)
    access = read_access(workspace, the_plan, live, principal, groups, parallelism=parallelism)
    problems += access_problems(the_plan, access)
    if problems:
        raise ReconcilerError(problems)
    return the_plan


def check_saved(saved: dict[str, Any], fresh: Plan) -> None:
    """Refuse, one line per difference, unless `fresh` (planned now) is the saved plan."""
    found = differences(saved, fresh)
    if found:
        raise ReconcilerError(found)
