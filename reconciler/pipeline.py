"""The whole flow of `plan` (and of `apply`, which plans first), as one function to read top to bottom.

manifests → desired; workspace → live (two rounds of parallel reads: the objects, then what they
lead to); aliases resolved to versions once; preflight checks of the manifests against the
workspace; then the pure planner builds the `Plan`, whole. The CLI and the Python API call this;
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


def load(paths: Sequence[str], variables: Mapping[str, str]) -> Manifests:
    """Read, validate and cross-check manifest files offline (raises with every problem)."""
    return load_manifests(paths, variables)


def plan(workspace: Workspace, manifests: Manifests, *, stack: str | None, prune: bool, parallelism: int) -> Plan:
    """Read what the manifests name, check it, and plan: everything `reconciler plan` does."""
    live = read_objects(workspace, manifests, parallelism=parallelism, prune=prune, stack=stack)
    resolved = resolve_versions(manifests, live.models)
    read_dependencies(workspace, manifests, live, resolved, parallelism=parallelism)
    problems, warnings = preflight(manifests, live, resolved)
    if problems:
        raise ReconcilerError(problems)
    return make_plan(manifests, live, resolved, stack=stack, prune=prune, warnings=warnings,
                     workspace_host=workspace.host)
