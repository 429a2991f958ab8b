"""reconciler: declarative GitOps for AI agents served on Databricks.

The Python API is `reconciler.api` (load, plan, apply; see its docstring and the README's
"Python API"). Its names are also here, imported on first use so that `reconciler --help` and
`validate` stay fast: `reconciler.api`, `reconciler.load`, `reconciler.LoadedManifests`,
`reconciler.Plan`, `reconciler.ApplyResult`, `reconciler.ReconcilerError`, ... (`plan` and
`apply` are also submodules' names, so call them as `reconciler.api.plan` and `reconciler.api.apply`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler import api
    from reconciler.api import ApplyResult, LoadedManifests, load
    from reconciler.apply import Outcome
    from reconciler.errors import Problem, ReconcilerError
    from reconciler.plan import Action, Change, Plan

_EXPORTS = {"api": "reconciler.api", "load": "reconciler.api", "LoadedManifests": "reconciler.api",
            "ApplyResult": "reconciler.api", "Outcome": "reconciler.apply", "Plan": "reconciler.plan",
            "Change": "reconciler.plan", "Action": "reconciler.plan", "ReconcilerError": "reconciler.errors",
            "Problem": "reconciler.errors"}
__all__ = ["Action", "ApplyResult", "Change", "LoadedManifests", "Outcome", "Plan", "Problem", "ReconcilerError",
           "api", "load"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'reconciler' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    return module if name == "api" else getattr(module, name)
