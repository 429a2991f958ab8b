"""Fixtures of the local workspace's contract tests (the shared ones are in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

SEEDS = Path(__file__).resolve().parents[1] / "seeds"


@pytest.fixture
def ws(make_workspace: Any) -> Any:
    """`support_agent.yaml` plus `fidelity.yaml`: principals with tokens, grants, an agent model and
    endpoints only the server could have made."""
    workspace = make_workspace(SEEDS / "support_agent.yaml")
    workspace.add_seed(SEEDS / "fidelity.yaml")
    return workspace
