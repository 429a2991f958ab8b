"""Everything the local workspace holds, behind one lock.

`WorkspaceState` groups the per-domain stores (Unity Catalog catalogs, schemas, models and grants, serving
endpoints, dependent resources and secrets, workspace files, the principals and their tokens,
queries to served models, MLflow runs and logged models, registration) and the one re-entrant
lock that makes every request atomic: the server holds `lock` while a route handler runs (a
query takes it itself, around its sleep), so a request sees and leaves a consistent state
however many clients call at once. Tests may read `LocalWorkspace.state`
for white-box assertions; they should hold `lock` while they do.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from reconciler.localworkspace.catalog import Catalog
from reconciler.localworkspace.containers import Containers
from reconciler.localworkspace.grants import Grants
from reconciler.localworkspace.identities import Identities, Principal
from reconciler.localworkspace.mlflow_tracking import Tracking
from reconciler.localworkspace.queries import Queries
from reconciler.localworkspace.registration import Registration
from reconciler.localworkspace.resources import Resources
from reconciler.localworkspace.serving import Serving
from reconciler.localworkspace.workspace_files import WorkspaceFiles

DEFAULT_USER = "local.user@example.com"


class WorkspaceState:
    def __init__(self, *, update_seconds: float, registration_seconds: float = 0.0, user: str = DEFAULT_USER) -> None:
        self.lock = threading.RLock()
        self.user = user
        self.identities = Identities.with_default_user(user)
        self.grants = Grants()
        self.catalog = Catalog(user)
        self.containers = Containers(self.catalog, user)  # catalogs and schemas
        self.serving = Serving(self.catalog, self.identities, update_seconds)
        self.resources = Resources(user)
        self.files = WorkspaceFiles(user)
        self.queries = Queries()  # draws, metrics and log of the queries to served models
        self.tracking = Tracking(user)
        self.registration = Registration(self.catalog, self.tracking, seconds=registration_seconds)

    @property
    def update_seconds(self) -> float:
        return self.serving.update_seconds

    @update_seconds.setter
    def update_seconds(self, seconds: float) -> None:
        """Applies to updates issued from now on."""
        self.serving.update_seconds = seconds

    def settle(self) -> None:
        """Let time act: finish the registrations, then the endpoint updates, that are due."""
        with self.lock:
            self.registration.settle()
            self.serving.settle()

    def add_seed(self, seed: dict[str, Any] | str | Path, *, source: str = "seed") -> None:
        """Add the objects of a seed (a mapping, or a YAML/JSON file) to this workspace."""
        from reconciler.localworkspace.seed import apply_seed, load_seed_file

        if isinstance(seed, (str, Path)):
            source, seed = str(seed), load_seed_file(seed)
        with self.lock:
            apply_seed(self, seed, source=source)

    def current_user(self, caller: Principal | None = None) -> dict[str, Any]:
        """The SCIM `Me` answer for the calling principal (the default user when none is known)."""
        return (caller or self.identities.default_principal()).scim_me()
