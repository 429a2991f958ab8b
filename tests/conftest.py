"""Shared fixtures: a fresh local workspace per test, over real HTTP, for the real `databricks-sdk`.

- `workspace`: an empty, started `LocalWorkspace`. Its updates take `update_seconds=0`: a create or
  config update still answers IN_PROGRESS, and the next read finds it finished, so the SDK's
  waiters return on their first poll instead of sleeping 1-2 s.
- `make_workspace(seed=..., **kwargs)`: starts one with a seed (a path or a mapping) and any
  `LocalWorkspace` option (e.g. `update_seconds=0.5` to observe IN_PROGRESS and 409s); every one
  is stopped at teardown.
- `SEEDS`: the directory of seed files (`SEEDS / "support_agent.yaml"` matches the example manifests).
Starting and stopping a workspace takes a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.localworkspace.server import LocalWorkspace

SEEDS = Path(__file__).parent / "seeds"


@pytest.fixture
def make_workspace() -> Iterator[Callable[..., LocalWorkspace]]:
    started: list[LocalWorkspace] = []

    def make(seed: dict[str, Any] | str | Path | None = None, **options: Any) -> LocalWorkspace:
        options.setdefault("update_seconds", 0.0)
        workspace = LocalWorkspace(seed=seed, **options).start()
        started.append(workspace)
        return workspace

    yield make
    for workspace in started:
        workspace.stop()


@pytest.fixture
def workspace(make_workspace: Callable[..., LocalWorkspace]) -> LocalWorkspace:
    return make_workspace()


@pytest.fixture
def seeded_workspace(make_workspace: Callable[..., LocalWorkspace]) -> LocalWorkspace:
    """A workspace seeded with `tests/seeds/support_agent.yaml`."""
    return make_workspace(SEEDS / "support_agent.yaml")
