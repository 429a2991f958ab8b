"""Unity Catalog registered models, their versions and aliases, as the local workspace keeps them.

Called by the route handlers (`routes.py`) under the workspace lock, and by the seed loader.
Rules kept here because the reconciler depends on them:
- identifiers are case-insensitive and stored lower-case, as Unity Catalog does;
- `GET .../models/{full_name}` returns `aliases` only with `include_aliases=true`, and version
  lists never carry aliases (`ModelVersionsAPI.list` docstring);
- an alias names exactly one version; setting an existing alias moves it;
- a model version's `MLmodel` file is served through the Files API at
  `/Models/{catalog}/{schema}/{model}/{version}/MLmodel`.
The Unity Catalog REST API has no call that creates a model version: versions come from the seed
(`LocalWorkspace.add_seed`) or from MLflow's registration routes (`registration.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from reconciler.localworkspace import fields
from reconciler.localworkspace.artifacts import FileSet
from reconciler.localworkspace.clock import METASTORE_ID, now_ms, uuid_id
from reconciler.localworkspace.errors import already_exists, invalid, not_found
from reconciler.localworkspace.pages import paginate

VERSION_STATUSES = ("READY", "PENDING_REGISTRATION", "FAILED_REGISTRATION")
# Unity Catalog names may not contain a period, space, forward slash or control characters.
NAME_PART = re.compile(r"^[^./\s\x00-\x1f\x7f]+$")
ALIAS_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class ModelVersion:
    version: int
    status: str
    created_at: int
    created_by: str
    source: str | None = None
    run_id: str | None = None
    comment: str | None = None
    mlmodel: dict[str, Any] | None = None  # the MLmodel file, served as YAML through the Files API
    deploy_failure: str | None = None  # deploying this version to an endpoint fails with this message
    serving: Any = None  # a queries.Behaviour: how it answers queries once served (seed key `serving`)
    status_message: str | None = None  # why registration failed (MLflow's UC routes only; `registration.py`)
    model_id: str | None = None  # the MLflow 3 logged model it was registered from
    tags: dict[str, str] = field(default_factory=dict)  # MLflow model version tags
    files: FileSet = field(default_factory=FileSet)  # uploaded by MLflow's registration (`files_api.py`)
    id: str = field(default_factory=uuid_id)
    updated_at: int = 0
    updated_by: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # other API fields given by a seed


@dataclass
class RegisteredModel:
    catalog_name: str
    schema_name: str
    name: str
    owner: str
    created_at: int
    created_by: str
    comment: str | None = None
    storage_location: str = ""
    updated_at: int = 0
    updated_by: str = ""
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # MLflow registered model tags

    @property
    def full_name(self) -> str:
        return f"{self.catalog_name}.{self.schema_name}.{self.name}"


def split_full_name(full_name: str) -> tuple[str, str, str]:
    parts = full_name.lower().split(".")
    if len(parts) != 3 or not all(NAME_PART.match(part) for part in parts):
        raise invalid(f"Invalid full name '{full_name}': expected <catalog>.<schema>.<model>")
    return parts[0], parts[1], parts[2]


def check_alias(alias: str) -> None:
    if not ALIAS_NAME.match(alias):
        raise invalid(f"Invalid alias name '{alias}': use letters, digits, '_' and '-'")


def parse_version(raw: str | int | None) -> int:
    try:
        version = int(raw) if raw is not None else 0  # none: refused below, as a version under 1
    except (TypeError, ValueError):
        raise invalid(f"Invalid model version '{raw}': versions are positive integers") from None
    if version < 1:
        raise invalid(f"Invalid model version '{raw}': versions are positive integers")
    return version


class Catalog:
    """Registered models by lower-case full name."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.models: dict[str, RegisteredModel] = {}

    # -- lookups -------------------------------------------------------------------------------

    def model(self, full_name: str) -> RegisteredModel:
        split_full_name(full_name)  # a name that breaks the grammar is refused (400), never looked up
        found = self.models.get(full_name.lower())
        if found is None:
            # The message Unity Catalog gives for a missing model (models are FUNCTION securables).
            raise not_found(f"Routine or Model '{full_name}' does not exist.")
        return found

    def version(self, full_name: str, version: str | int | None) -> ModelVersion:
        model = self.model(full_name)
        number = parse_version(version)
        found = model.versions.get(number)
        if found is None:
            raise not_found(f"Model Version '{model.full_name}' version '{number}' does not exist.")
        return found

    def version_by_alias(self, full_name: str, alias: str) -> tuple[RegisteredModel, ModelVersion]:
        model = self.model(full_name)
        check_alias(alias)
        number = model.aliases.get(alias.lower())
        if number is None or number not in model.versions:
            raise not_found(f"Alias '{alias}' does not exist on registered model '{model.full_name}'.")
        return model, model.versions[number]

    # -- writes --------------------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> RegisteredModel:
        name = fields.text(body, "name")
        catalog_name = fields.text(body, "catalog_name")
        schema_name = fields.text(body, "schema_name")
        full_name = fields.text(body, "full_name")
        if full_name and not (name and catalog_name and schema_name):
            catalog_name, schema_name, name = split_full_name(full_name)
        for key, value in (("name", name), ("catalog_name", catalog_name), ("schema_name", schema_name)):
            if not value:
                raise invalid(f"Missing required field: {key}")
        assert name and catalog_name and schema_name
        catalog_name, schema_name, name = split_full_name(f"{catalog_name}.{schema_name}.{name}")
        key = f"{catalog_name}.{schema_name}.{name}"
        if key in self.models:
            raise already_exists(f"Routine or Model '{key}' already exists")
        now = now_ms()
        model = RegisteredModel(
            catalog_name=catalog_name, schema_name=schema_name, name=name,
            owner=fields.text(body, "owner") or self.user, created_at=now, created_by=self.user,
            comment=fields.text(body, "comment"), updated_at=now, updated_by=self.user,
            storage_location=fields.text(body, "storage_location")
            or f"s3://local-workspace-metastore/{METASTORE_ID}/models/{uuid_id()}",
        )
        self.models[key] = model
        return model

    def update(self, full_name: str, body: dict[str, Any]) -> RegisteredModel:
        """PATCH: comment, owner and new_name; aliases are not changed by this call."""
        model = self.model(full_name)
        comment = fields.text(body, "comment")
        owner = fields.text(body, "owner")
        new_name = fields.text(body, "new_name")
        if new_name is not None:
            if not NAME_PART.match(new_name):
                raise invalid(f"Invalid new_name '{new_name}'")
            new_key = f"{model.catalog_name}.{model.schema_name}.{new_name.lower()}"
            if new_key != model.full_name and new_key in self.models:
                raise already_exists(f"Routine or Model '{new_key}' already exists")
            del self.models[model.full_name]
            model.name = new_name.lower()
            self.models[new_key] = model
        if comment is not None:
            model.comment = comment
        if owner is not None:
            model.owner = owner
        model.updated_at, model.updated_by = now_ms(), self.user
        return model

    def delete(self, full_name: str) -> None:
        model = self.model(full_name)
        del self.models[model.full_name]

    def set_alias(self, full_name: str, alias: str, body: dict[str, Any]) -> dict[str, Any]:
        model = self.model(full_name)
        version_num = fields.integer(body, "version_num", required=True)
        check_alias(alias)
        if version_num not in model.versions:
            raise not_found(f"Model Version '{model.full_name}' version '{version_num}' does not exist.")
        model.aliases[alias.lower()] = version_num  # moves the alias if it pointed elsewhere
        model.updated_at, model.updated_by = now_ms(), self.user
        return {"alias_name": alias.lower(), "version_num": version_num}

    def delete_alias(self, full_name: str, alias: str) -> None:
        """Idempotent: removing an alias that is not set succeeds (the docs do not say otherwise,
        and a retried DELETE must not fail)."""
        model = self.model(full_name)
        check_alias(alias)
        if model.aliases.pop(alias.lower(), None) is not None:
            model.updated_at, model.updated_by = now_ms(), self.user

    def update_version(self, full_name: str, version: str, body: dict[str, Any]) -> ModelVersion:
        """PATCH: "Currently only the comment of the model version can be updated." (SDK docstring)."""
        found = self.version(full_name, version)
        comment = fields.text(body, "comment")
        if comment is not None:
            found.comment = comment
        found.updated_at, found.updated_by = now_ms(), self.user
        return found

    def delete_version(self, full_name: str, version: str) -> None:
        model = self.model(full_name)
        found = self.version(full_name, version)
        del model.versions[found.version]
        model.aliases = {alias: number for alias, number in model.aliases.items() if number != found.version}

    # -- views ---------------------------------------------------------------------------------

    def model_info(self, model: RegisteredModel, *, include_aliases: bool) -> dict[str, Any]:
        info: dict[str, Any] = {
            "full_name": model.full_name, "catalog_name": model.catalog_name, "schema_name": model.schema_name,
            "name": model.name, "owner": model.owner, "storage_location": model.storage_location,
            "metastore_id": METASTORE_ID, "created_at": model.created_at, "created_by": model.created_by,
            "updated_at": model.updated_at, "updated_by": model.updated_by, "browse_only": False,
        }
        if model.comment is not None:
            info["comment"] = model.comment
        if include_aliases:
            info["aliases"] = [{"alias_name": alias, "version_num": number}
                               for alias, number in sorted(model.aliases.items())]
        return info

    def version_info(self, model: RegisteredModel, version: ModelVersion, *, include_aliases: bool) -> dict[str, Any]:
        info: dict[str, Any] = {
            **version.extra,
            "model_name": model.name, "catalog_name": model.catalog_name, "schema_name": model.schema_name,
            "version": version.version, "status": version.status, "id": version.id,
            "storage_location": f"{model.storage_location}/versions/{version.version}",
            "metastore_id": METASTORE_ID, "created_at": version.created_at, "created_by": version.created_by,
            "updated_at": version.updated_at or version.created_at,
            "updated_by": version.updated_by or version.created_by,
        }
        for key in ("source", "run_id", "comment"):
            if getattr(version, key) is not None:
                info[key] = getattr(version, key)
        if include_aliases:
            info["aliases"] = [{"alias_name": alias, "version_num": number}
                               for alias, number in sorted(model.aliases.items()) if number == version.version]
        return info

    def list_models(self, query: dict[str, str]) -> dict[str, Any]:
        catalog_name, schema_name = query.get("catalog_name"), query.get("schema_name")
        if bool(catalog_name) != bool(schema_name):
            raise invalid("catalog_name and schema_name must be given together")
        models = sorted(self.models.items())
        if catalog_name and schema_name:
            models = [(key, m) for key, m in models
                      if m.catalog_name == catalog_name.lower() and m.schema_name == schema_name.lower()]
        # Page sizes from the `RegisteredModelsAPI.list` docstring: 10000 within one schema,
        # otherwise 100 by default and at most 1000.
        scoped = bool(catalog_name)
        page, next_token = paginate(models, query, default=10000 if scoped else 100, limit=10000 if scoped else 1000)
        result: dict[str, Any] = {"registered_models": [self.model_info(m, include_aliases=False) for m in page]}
        if next_token:
            result["next_page_token"] = next_token
        return result

    def list_versions(self, full_name: str, query: dict[str, str]) -> dict[str, Any]:
        model = self.model(full_name)
        # Zero-padded keys so the page token orders versions numerically.
        versions = [(f"{number:012d}", v) for number, v in sorted(model.versions.items())]
        page, next_token = paginate(versions, query, default=100, limit=1000)
        result: dict[str, Any] = {"model_versions": [self.version_info(model, v, include_aliases=False) for v in page]}
        if next_token:
            result["next_page_token"] = next_token
        return result

    def mlmodel_text(self, version: ModelVersion) -> bytes:
        """A seeded version's `mlmodel` as the YAML file MLflow writes (`files_api.py` serves it)."""
        return yaml.safe_dump(version.mlmodel, sort_keys=False).encode()

    # -- seeding -------------------------------------------------------------------------------

    def seed_version(self, model: RegisteredModel, entry: dict[str, Any]) -> None:
        """Add (or replace) a version from a seed entry already checked by `seed.py`."""
        number = parse_version(entry["version"])
        now = now_ms()
        known = {"version", "status", "source", "run_id", "comment", "mlmodel", "deploy_failure", "serving",
                 "status_message", "model_id", "tags"}
        model.versions[number] = ModelVersion(
            version=number, status=entry.get("status", "READY"), created_at=entry.get("created_at", now),
            created_by=entry.get("created_by", self.user), source=entry.get("source"), run_id=entry.get("run_id"),
            comment=entry.get("comment"), mlmodel=entry.get("mlmodel"), deploy_failure=entry.get("deploy_failure"),
            serving=entry.get("serving"),
            status_message=entry.get("status_message"), model_id=entry.get("model_id"),
            tags=dict(entry.get("tags") or {}),
            extra={k: v for k, v in entry.items() if k not in known and k not in ("created_at", "created_by")},
        )

