"""Model version registration: how MLflow's Unity Catalog client creates a version, and how long it
takes to become READY (or fail).

MLflow registers a version in three steps (`mlflow/store/_unity_catalog/registry/rest_store.py`,
`UcModelRegistryStore._create_and_finalize_model_version`): `POST .../model-versions/create`
answers a new version in PENDING_REGISTRATION; the client uploads the model's files to it (here
through the Files API, `files_api.py`); `POST .../model-versions/finalize` seals the files. On a
real workspace the version is READY right after finalize as far as MLflow knows (its
`_await_model_version_creation` is a no-op for UC), while the REST docs say versions "move to READY
status once the model version files are uploaded and the model version is finalized"
(`ModelVersionInfo.status`, SDK `service/catalog.py`). To let tests watch that move, and a failed
one, a finalized version stays PENDING_REGISTRATION for `RegistrationPlan.seconds`, then becomes
READY, or FAILED_REGISTRATION with the plan's `failure` as its `status_message`.

Which plan: the seeded `registration` of the logged model or run the version comes from
(`mlflow_tracking.py`), else the workspace default (`LocalWorkspace(registration_seconds=...)`,
`POST /__sim/registration`). A version created and never finalized (a client killed mid-upload)
stays PENDING_REGISTRATION, open to uploads, as a crashed registration leaves it.

Version numbers are never reused within a model, even after a delete, so a version registered
again after a crash is told apart from the one it replaces. That is what MLflow's own registry does
(`mlflow/store/model_registry/sqlalchemy_store.py`: `delete_model_version` only marks the row
deleted, `create_model_version` numbers from the max of all rows); Unity Catalog does not document it. This module also renders the
registry's objects in the shapes of MLflow's UC protos (`databricks_uc_registry_messages.proto`),
where aliases read `[{"alias": "champion", "version": "3"}]`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from reconciler.localworkspace import fields
from reconciler.localworkspace.catalog import Catalog, ModelVersion, RegisteredModel
from reconciler.localworkspace.clock import monotonic, now_ms
from reconciler.localworkspace.errors import invalid
from reconciler.localworkspace.mlflow_tracking import RegistrationPlan, Tracking
from reconciler.localworkspace.pages import paginate

PENDING, READY, FAILED = "PENDING_REGISTRATION", "READY", "FAILED_REGISTRATION"
VERSION_FILTER = re.compile(r"""\s*(name|run_id)\s*=\s*(?:'([^']*)'|"([^"]*)")\s*""")
# MLflow's resource dependencies as Unity Catalog records them: vector index and table -> table,
# UC function -> function, UC connection -> connection; endpoints have no governance form and are
# dropped (`uc_native_rest_store.py`, `_create_and_finalize_model_version`).
DEPENDENCY_FORMS = {
    "DATABRICKS_VECTOR_INDEX": ("table", "table_full_name"),
    "DATABRICKS_TABLE": ("table", "table_full_name"),
    "DATABRICKS_UC_FUNCTION": ("function", "function_full_name"),
    "DATABRICKS_UC_CONNECTION": ("connection", "connection_name"),
}


@dataclass
class _Finalized:
    version: ModelVersion
    at: float  # monotonic seconds


class Registration:
    def __init__(self, catalog: Catalog, tracking: Tracking, *, seconds: float = 0.0) -> None:
        self.catalog = catalog
        self.tracking = tracking
        self.default = RegistrationPlan(seconds=seconds)
        self._finalized: dict[str, _Finalized] = {}  # by version id, from finalize until it settles
        # By model full name: the model and the highest number handed out for it. The model itself is
        # kept so that a model deleted and created again under the same name starts again at 1.
        self._highest: dict[str, tuple[RegisteredModel, int]] = {}

    # -- the three steps -----------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> tuple[RegisteredModel, ModelVersion]:
        """`CreateModelVersionRequest`: a new version, PENDING_REGISTRATION and open to uploads."""
        model = self.catalog.model(fields.text(body, "name", required=True) or "")
        source = fields.text(body, "source", required=True)
        known = self._highest.get(model.full_name)
        number = max([*model.versions, known[1] if known and known[0] is model else 0]) + 1
        self._highest[model.full_name] = (model, number)
        now = now_ms()
        version = ModelVersion(
            version=number, status=PENDING, created_at=now, created_by=self.catalog.user, updated_at=now,
            updated_by=self.catalog.user, source=source, run_id=fields.text(body, "run_id") or None,
            comment=fields.text(body, "description") or None, model_id=fields.text(body, "model_id") or None,
            tags=tags_of(body),
        )
        origin = self.tracking.origin(source=source, run_id=version.run_id, model_id=version.model_id)
        version.serving = origin.serving if origin is not None else None  # how it answers once served
        workspace_id = fields.text(body, "run_tracking_server_id")
        if workspace_id and workspace_id.isdigit():
            version.extra["run_workspace_id"] = int(workspace_id)
        dependencies = _dependencies(body)
        if dependencies:
            version.extra["model_version_dependencies"] = {"dependencies": dependencies}
        model.versions[number] = version
        return model, version

    def accepts_files(self, version: ModelVersion) -> bool:
        """Files may be written to a version until it is finalized."""
        return version.status == PENDING and version.id not in self._finalized

    def finalize(self, full_name: str, number: str) -> tuple[RegisteredModel, ModelVersion]:
        """`FinalizeModelVersionRequest`: seal the files, start the plan's clock. Finalizing again
        answers the version as it is, so a retried request (MLflow retries 5xx) does not fail."""
        model = self.catalog.model(full_name)
        version = self.catalog.version(full_name, number)
        if not self.accepts_files(version):
            return model, version
        mlmodel = version.files.file("MLmodel")
        if mlmodel is not None:  # the rest of the workspace reads a version's MLmodel as a mapping
            try:
                parsed = yaml.safe_load(mlmodel.content)
            except (yaml.YAMLError, ValueError, RecursionError):  # whatever was uploaded, never a 500
                parsed = None
            version.mlmodel = parsed if isinstance(parsed, dict) else version.mlmodel
        self._finalized[version.id] = _Finalized(version, monotonic())
        self.settle()
        return model, version

    def plan(self, version: ModelVersion) -> RegistrationPlan:
        return self.tracking.registration_plan(source=version.source, run_id=version.run_id,
                                               model_id=version.model_id) or self.default

    def settle(self) -> None:
        """Let time act: finalized versions whose time is up become READY or FAILED_REGISTRATION.

        The plan is read now, not at finalize: shortening it (`set_registration(seconds=0)`, or a
        reseeded run) releases versions held pending, so a test can hold a registration, look at
        it, then let it finish without sleeping."""
        now = monotonic()
        for version_id, finalized in list(self._finalized.items()):
            plan = self.plan(finalized.version)
            if finalized.at + plan.seconds > now:
                continue
            version = finalized.version
            version.status = FAILED if plan.failure else READY
            version.status_message = plan.failure
            version.updated_at, version.updated_by = now_ms(), self.catalog.user
            del self._finalized[version_id]

    # -- reads ---------------------------------------------------------------------------------

    def search_versions(self, query: dict[str, str]) -> tuple[list[tuple[RegisteredModel, ModelVersion]], str | None]:
        """`SearchModelVersionsRequest` with the filters MLflow documents for Unity Catalog: one
        condition, `name = '<full name>'` or `run_id = '<run id>'` (`UcModelRegistryStore.search_model_versions`)."""
        key, value = _condition(query.get("filter", ""))
        if key == "name":  # a filter, not a lookup: no such model finds no versions
            model = self.catalog.models.get(value.lower())
            found = [(model, version) for version in model.versions.values()] if model else []
        else:
            found = [(model, version) for model in self.catalog.models.values()
                     for version in model.versions.values() if version.run_id == value]
        keyed = sorted(((f"{model.full_name}\x00{version.version:012d}", (model, version)) for model, version in found),
                       key=lambda pair: pair[0])
        # MLflow's client asks for 10000 by default (SEARCH_MODEL_VERSION_MAX_RESULTS_DEFAULT).
        return paginate(keyed, query, default=10000, limit=10000)

    # -- views (MLflow's UC protos) --------------------------------------------------------------

    def model_view(self, model: RegisteredModel, *, with_aliases: bool = True) -> dict[str, Any]:
        view: dict[str, Any] = {
            "name": model.full_name, "creation_timestamp": model.created_at,
            "last_updated_timestamp": model.updated_at or model.created_at, "user_id": model.created_by,
            "tags": [{"key": k, "value": v} for k, v in sorted(model.tags.items())],
        }
        if model.comment:
            view["description"] = model.comment
        if with_aliases:
            view["aliases"] = [{"alias": alias, "version": str(number)} for alias, number in sorted(model.aliases.items())]
        return view

    def version_view(self, model: RegisteredModel, version: ModelVersion, *, with_aliases: bool = True
                     ) -> dict[str, Any]:
        view: dict[str, Any] = {
            "name": model.full_name, "version": str(version.version), "creation_timestamp": version.created_at,
            "last_updated_timestamp": version.updated_at or version.created_at, "user_id": version.created_by,
            "status": version.status, "storage_location": f"{model.storage_location}/versions/{version.version}",
            "tags": [{"key": k, "value": v} for k, v in sorted(version.tags.items())],
        }
        for key, value in (("description", version.comment), ("source", version.source), ("run_id", version.run_id),
                           ("status_message", version.status_message), ("model_id", version.model_id)):
            if value:
                view[key] = value
        if "run_workspace_id" in version.extra:
            view["run_tracking_server_id"] = str(version.extra["run_workspace_id"])
        if with_aliases:
            view["aliases"] = [{"alias": alias, "version": str(number)}
                               for alias, number in sorted(model.aliases.items()) if number == version.version]
        return view


def tags_of(body: dict[str, Any]) -> dict[str, str]:
    """The `tags: [{key, value}]` of an MLflow request as a map."""
    tags = {}
    for i, tag in enumerate(fields.objects(body, "tags") or []):
        key = fields.text(tag, "key", parent=f"tags[{i}]", required=True) or ""
        tags[key] = fields.text(tag, "value", parent=f"tags[{i}]") or ""
    return tags


def _dependencies(body: dict[str, Any]) -> list[dict[str, Any]]:
    dependencies = []
    for i, dependency in enumerate(fields.objects(body, "model_version_dependencies") or []):
        kind = fields.text(dependency, "type", parent=f"model_version_dependencies[{i}]")
        name = fields.text(dependency, "name", parent=f"model_version_dependencies[{i}]")
        if kind in DEPENDENCY_FORMS and name:
            form, key = DEPENDENCY_FORMS[kind]
            dependencies.append({form: {key: name}})
    return dependencies


def _condition(raw: str) -> tuple[str, str]:
    found = VERSION_FILTER.fullmatch(raw or "")
    if found is None:
        raise invalid(f"Unsupported filter '{raw}': Unity Catalog model versions are searched by one condition, "
                      "name = '<catalog>.<schema>.<model>' or run_id = '<run id>'")
    return found[1], found[2] if found[2] is not None else found[3]

