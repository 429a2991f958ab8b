"""Unity Catalog catalogs and schemas, as far as the local workspace needs them: the scratch
catalog and schema the contract tests (`tests/contract/`) create, fill and remove, here exactly
as on a real workspace.

Called by the route handlers (`routes.py`) under the workspace lock. Routes and shapes are SDK
0.156's (`service/catalog.py`: `CatalogsAPI.create/get/delete`, `SchemasAPI.create/get/delete`,
`CatalogInfo`, `SchemaInfo`). Rules:
- names are case-insensitive and kept lower-case, like every Unity Catalog identifier;
- a schema needs its catalog; a catalog exists when it was created here, or when a seeded
  registered model lives in it (seeds describe a world that exists);
- deleting a catalog or schema that still holds something needs `force=true` ("Force deletion
  even if the catalog is not empty", `CatalogsAPI.delete` docstring; the same for schemas), which
  deletes what it holds (here: schemas and registered models). The error codes are the generic
  ones and the messages are ours: no real answer for these cases was recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.localworkspace import fields
from reconciler.localworkspace.catalog import NAME_PART, Catalog
from reconciler.localworkspace.clock import METASTORE_ID, now_ms
from reconciler.localworkspace.errors import already_exists, invalid, not_found


@dataclass
class Container:
    name: str  # "cat" or "cat.schema"
    owner: str
    created_at: int
    comment: str | None = None


class Containers:
    """Catalogs and schemas by lower-case name; `catalog` holds the models inside them."""

    def __init__(self, catalog: Catalog, user: str) -> None:
        self.models = catalog
        self.user = user
        self.catalogs: dict[str, Container] = {}
        self.schemas: dict[str, Container] = {}

    def _known_catalog(self, name: str) -> bool:
        return name in self.catalogs or any(m.catalog_name == name for m in self.models.models.values())

    def _known_schema(self, full_name: str) -> bool:
        return full_name in self.schemas or any(f"{m.catalog_name}.{m.schema_name}" == full_name
                                                for m in self.models.models.values())

    # -- catalogs ------------------------------------------------------------------------------

    def create_catalog(self, body: dict[str, Any], caller: str) -> dict[str, Any]:
        name = _part(fields.text(body, "name", required=True) or "", "catalog")
        if self._known_catalog(name):
            raise already_exists(f"Catalog '{name}' already exists")
        self.catalogs[name] = Container(name, caller, now_ms(), fields.text(body, "comment"))
        return self.catalog_info(name)

    def catalog_info(self, name: str) -> dict[str, Any]:
        name = _part(name, "catalog")
        if not self._known_catalog(name):
            raise not_found(f"Catalog '{name}' does not exist.")
        found = self.catalogs.get(name) or Container(name, self.user, 0)
        return _info(found, {"name": name, "full_name": name, "catalog_type": "MANAGED_CATALOG"})

    def delete_catalog(self, name: str, *, force: bool) -> None:
        self.catalog_info(name)
        name = name.lower()
        inside = [s for s in self._schemas_of(name)]
        if inside and not force:
            raise invalid(f"Catalog '{name}' is not empty (it holds {len(inside)} schema(s)); delete them first or "
                          "pass force=true")
        for schema in inside:
            self._drop_schema(schema)
        self.catalogs.pop(name, None)

    # -- schemas -------------------------------------------------------------------------------

    def create_schema(self, body: dict[str, Any], caller: str) -> dict[str, Any]:
        name = _part(fields.text(body, "name", required=True) or "", "schema")
        catalog = _part(fields.text(body, "catalog_name", required=True) or "", "catalog")
        if not self._known_catalog(catalog):
            raise not_found(f"Catalog '{catalog}' does not exist.")
        full_name = f"{catalog}.{name}"
        if self._known_schema(full_name):
            raise already_exists(f"Schema '{full_name}' already exists")
        self.schemas[full_name] = Container(full_name, caller, now_ms(), fields.text(body, "comment"))
        return self.schema_info(full_name)

    def schema_info(self, full_name: str) -> dict[str, Any]:
        catalog, name = _schema_name(full_name)
        full_name = f"{catalog}.{name}"
        if not self._known_schema(full_name):
            raise not_found(f"Schema '{full_name}' does not exist.")
        found = self.schemas.get(full_name) or Container(full_name, self.user, 0)
        return _info(found, {"name": name, "catalog_name": catalog, "full_name": full_name})

    def delete_schema(self, full_name: str, *, force: bool) -> None:
        self.schema_info(full_name)
        full_name = full_name.lower()
        models = [k for k, m in self.models.models.items() if f"{m.catalog_name}.{m.schema_name}" == full_name]
        if models and not force:
            raise invalid(f"Schema '{full_name}' is not empty (it holds {len(models)} registered model(s)); delete "
                          "them first or pass force=true")
        self._drop_schema(full_name)

    def _schemas_of(self, catalog: str) -> list[str]:
        named = {s for s in self.schemas if s.startswith(f"{catalog}.")}
        named |= {f"{m.catalog_name}.{m.schema_name}" for m in self.models.models.values() if m.catalog_name == catalog}
        return sorted(named)

    def _drop_schema(self, full_name: str) -> None:
        for key in [k for k, m in self.models.models.items() if f"{m.catalog_name}.{m.schema_name}" == full_name]:
            del self.models.models[key]
        self.schemas.pop(full_name, None)


def _part(name: str, what: str) -> str:
    if not NAME_PART.match(name):
        raise invalid(f"Invalid {what} name '{name}': names may not contain a period, space, forward slash or "
                      "control characters")
    return name.lower()


def _schema_name(full_name: str) -> tuple[str, str]:
    parts = full_name.split(".")
    if len(parts) != 2:
        raise invalid(f"Invalid schema full name '{full_name}': expected <catalog>.<schema>")
    return _part(parts[0], "catalog"), _part(parts[1], "schema")


def _info(found: Container, names: dict[str, Any]) -> dict[str, Any]:
    info = {**names, "owner": found.owner, "metastore_id": METASTORE_ID, "created_at": found.created_at,
            "created_by": found.owner}
    if found.comment is not None:
        info["comment"] = found.comment
    return info
