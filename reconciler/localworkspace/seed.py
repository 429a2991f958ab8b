"""Seed files: the objects a local workspace starts with (or is given later through `add_seed`).

A seed is YAML or JSON of API-shaped objects; the format is documented in `server.py`. Loading
checks it strictly (unknown top-level keys, typos in model and version fields, wrong types) and
turns every problem into a one-line `ValueError` naming the file and the object, which the CLI
prints as is. Objects are added in dependency order: MLflow runs, then logged models (checked in
`mlflow_tracking.py`), then models and versions, so logged models can name their run and seeded
endpoints and aliases can refer to versions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from reconciler.localworkspace.catalog import VERSION_STATUSES, RegisteredModel, split_full_name
from reconciler.localworkspace.clock import now_ms
from reconciler.localworkspace.errors import ApiError
from reconciler.localworkspace.queries import parse_behaviour
from reconciler.localworkspace.resources import KINDS

if TYPE_CHECKING:
    from reconciler.localworkspace.state import WorkspaceState

TOP_LEVEL_KEYS = ("users", "service_principals", "grants", "mlflow_runs", "logged_models", "registered_models",
                  "serving_endpoints", "secret_scopes", *KINDS)
MODEL_KEYS = {"full_name", "comment", "owner", "aliases", "versions", "storage_location"}
VERSION_KEYS = {"version", "status", "source", "run_id", "comment", "mlmodel", "deploy_failure", "run_workspace_id",
                "model_version_dependencies", "created_at", "created_by", "serving",
                "status_message", "model_id", "tags"}


def load_seed_file(path: str | Path) -> dict[str, Any]:
    """Parse a seed file (JSON if it ends in .json, YAML otherwise); ValueError names the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read seed file: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ValueError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a seed must be a mapping of {', '.join(TOP_LEVEL_KEYS)}")
    return data


def apply_seed(state: WorkspaceState, seed: dict[str, Any], *, source: str) -> None:
    """Add every object of `seed` to `state` (the caller holds the lock)."""
    if not isinstance(seed, dict):
        raise ValueError(f"{source}: a seed must be a mapping of {', '.join(TOP_LEVEL_KEYS)}")
    unknown = sorted(set(seed) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ValueError(f"{source}: unknown seed key '{unknown[0]}'; expected {', '.join(TOP_LEVEL_KEYS)}")
    for key in TOP_LEVEL_KEYS:
        if seed.get(key) is not None and not isinstance(seed[key], list):
            raise ValueError(f"{source}: {key} must be a list")
    for kind, key in (("user", "users"), ("service_principal", "service_principals")):  # see identities.py
        for i, entry in enumerate(seed.get(key) or []):
            guarded(f"{source}: {key}[{i}]", entry, lambda k=kind, e=entry: state.identities.seed(k, e))
    for i, entry in enumerate(seed.get("grants") or []):  # see grants.py
        guarded(f"{source}: grants[{i}]", entry, lambda e=entry: state.grants.seed(e))
    for kind, add in (("mlflow_runs", state.tracking.seed_run), ("logged_models", state.tracking.seed_logged_model)):
        for i, entry in enumerate(seed.get(kind) or []):  # runs first: a logged model names its run
            guarded(f"{source}: {kind}[{i}]", entry, lambda e=entry, a=add: a(e))
    for i, entry in enumerate(seed.get("registered_models") or []):
        where = f"{source}: registered_models[{i}]"
        guarded(where, entry, lambda e=entry, w=where: _seed_model(state, e, w))
    for i, entry in enumerate(seed.get("serving_endpoints") or []):
        where = f"{source}: serving_endpoints[{i}]"
        guarded(where, entry, lambda e=entry: state.serving.create(e, seeded=True))
    for i, entry in enumerate(seed.get("secret_scopes") or []):
        where = f"{source}: secret_scopes[{i}]"
        guarded(where, entry, lambda e=entry, w=where: _seed_scope(state, e, w))
    for kind, spec in KINDS.items():
        for i, entry in enumerate(seed.get(kind) or []):
            where = f"{source}: {kind}[{i}]"
            if not isinstance(entry, dict) or entry.get(spec.key) in (None, ""):
                raise ValueError(f"{where}: each entry needs '{spec.key}'")
            state.resources.add(kind, entry)


def guarded(where: str, entry: Any, action: Any) -> None:
    """Run `action`, turning an API error into a ValueError that names the object."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: must be a mapping")
    name = entry.get("full_name") or entry.get("model_id") or entry.get("run_id") or entry.get("name") \
        or entry.get("user_name") or entry.get("application_id")
    label = f"{where} ({name})" if name else where
    try:
        action()
    except ApiError as exc:
        raise ValueError(f"{label}: {exc.message}") from None
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from None


def _seed_model(state: WorkspaceState, entry: dict[str, Any], where: str) -> None:
    unknown = sorted(set(entry) - MODEL_KEYS)
    if unknown:
        raise ValueError(f"unknown field '{unknown[0]}'; expected {', '.join(sorted(MODEL_KEYS))}")
    full_name = entry.get("full_name")
    if not isinstance(full_name, str):
        raise ValueError("needs 'full_name' (catalog.schema.model)")
    catalog = state.catalog
    key = ".".join(split_full_name(full_name))
    model = catalog.models.get(key)
    if model is None:  # a model seen again (add_seed at run time) gains versions and aliases
        catalog_name, schema_name, name = key.split(".")
        model = RegisteredModel(catalog_name=catalog_name, schema_name=schema_name, name=name,
                                owner=catalog.user, created_at=now_ms(), created_by=catalog.user,
                                storage_location=f"s3://local-workspace-metastore/models/{key.replace('.', '/')}")
        catalog.models[key] = model
    for field_name in ("comment", "owner", "storage_location"):
        if entry.get(field_name) is not None:
            setattr(model, field_name, _text(entry, field_name))
    versions = entry.get("versions") or []
    if not isinstance(versions, list):
        raise ValueError("versions must be a list")
    for j, version in enumerate(versions):
        catalog.seed_version(model, _checked_version(version, f"versions[{j}]"))
    aliases = entry.get("aliases") or []
    if not isinstance(aliases, list):
        raise ValueError("aliases must be a list of {alias_name, version_num}")
    for alias in aliases:
        if not isinstance(alias, dict) or not isinstance(alias.get("alias_name"), str):
            raise ValueError("aliases must be a list of {alias_name, version_num}")
        catalog.set_alias(key, alias["alias_name"], {"version_num": alias.get("version_num")})


def _checked_version(version: Any, where: str) -> dict[str, Any]:
    if not isinstance(version, dict):
        raise ValueError(f"{where}: must be a mapping")
    unknown = sorted(set(version) - VERSION_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown field '{unknown[0]}'; expected {', '.join(sorted(VERSION_KEYS))}")
    number = version.get("version")
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ValueError(f"{where}: 'version' must be a positive integer")
    if version.get("status", "READY") not in VERSION_STATUSES:
        raise ValueError(f"{where}: status must be one of {', '.join(VERSION_STATUSES)}")
    if version.get("mlmodel") is not None and not isinstance(version["mlmodel"], dict):
        raise ValueError(f"{where}: mlmodel must be a mapping (the MLmodel file's contents)")
    for key in ("source", "run_id", "comment", "deploy_failure", "status_message", "model_id"):
        if version.get(key) is not None:
            _text(version, key, where)
    tags = version.get("tags")
    if tags is not None and (not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values())):
        raise ValueError(f"{where}: tags must be a mapping of strings (MLflow version tags)")
    if version.get("serving") is not None:  # how the version answers queries (queries.py)
        try:
            version = {**version, "serving": parse_behaviour(version["serving"])}
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return version


def _seed_scope(state: WorkspaceState, entry: dict[str, Any], where: str) -> None:
    name, keys = entry.get("name"), entry.get("keys") or []
    if not isinstance(name, str) or not name:
        raise ValueError("needs 'name'")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ValueError("keys must be a list of key names (values are never seeded)")
    state.resources.add_secret_scope(name, keys)


def _text(entry: dict[str, Any], key: str, where: str = "") -> str:
    value = entry[key]
    if not isinstance(value, str):
        raise ValueError(f"{where + ': ' if where else ''}'{key}' must be a string")
    return value
