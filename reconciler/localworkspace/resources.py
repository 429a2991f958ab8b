"""Objects the reconciler only reads: secret scopes and keys, and the resources an agent depends
on (vector search indexes, SQL warehouses, UC functions, tables, connections, Genie spaces, apps).

They exist only because a seed says so; each kind answers GET by its key with the API's shape
(server-filled fields added to what the seed gave) or 404 with the error a real workspace uses
for that kind. Secret values are never stored: a seed names keys only, and the API lists keys only.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconciler.localworkspace.clock import METASTORE_ID, now_ms, uuid_id
from reconciler.localworkspace.errors import not_found


def _uc_parts(full_name: str) -> dict[str, Any]:
    parts = full_name.split(".")
    if len(parts) != 3:
        return {"full_name": full_name}
    return {"full_name": full_name, "catalog_name": parts[0], "schema_name": parts[1], "name": parts[2],
            "metastore_id": METASTORE_ID}


@dataclass(frozen=True)
class ResourceKind:
    key: str  # the field that names an object of this kind, and its path parameter
    error_code: str
    missing: str  # 404 message; {key} is replaced by the name asked for
    defaults: Callable[[str], dict[str, Any]]  # server-filled fields of an object named so
    case_insensitive: bool = False  # Unity Catalog names


KINDS: dict[str, ResourceKind] = {
    "vector_search_indexes": ResourceKind(
        "name", "RESOURCE_DOES_NOT_EXIST", "Vector search index '{key}' does not exist.",
        lambda name: {"name": name, "endpoint_name": "local-vector-search", "index_type": "DELTA_SYNC",
                      "primary_key": "id", "status": {"ready": True, "message": "Index is ready.",
                                                      "indexed_row_count": 0}}),
    "sql_warehouses": ResourceKind(
        "id", "RESOURCE_DOES_NOT_EXIST", "Warehouse {key} does not exist.",
        lambda warehouse_id: {"id": warehouse_id, "name": warehouse_id, "state": "RUNNING",
                              "cluster_size": "2X-Small", "warehouse_type": "PRO",
                              "enable_serverless_compute": True}),
    "functions": ResourceKind(
        "full_name", "RESOURCE_DOES_NOT_EXIST", "Routine or Model '{key}' does not exist.",
        lambda full_name: {**_uc_parts(full_name), "data_type": "TABLE_TYPE", "routine_body": "SQL",
                           "security_type": "DEFINER", "function_id": uuid_id()},
        case_insensitive=True),
    "tables": ResourceKind(
        # Unity Catalog's own code for a missing table; the SDK maps it by status to NotFound.
        "full_name", "TABLE_DOES_NOT_EXIST", "Table '{key}' does not exist.",
        lambda full_name: {**_uc_parts(full_name), "table_type": "MANAGED", "data_source_format": "DELTA",
                           "table_id": uuid_id()},
        case_insensitive=True),
    "connections": ResourceKind(
        "name", "RESOURCE_DOES_NOT_EXIST", "Connection '{key}' does not exist.",
        lambda name: {"name": name, "full_name": name, "connection_type": "HTTP", "connection_id": uuid_id(),
                      "metastore_id": METASTORE_ID, "read_only": True},
        case_insensitive=True),
    "genie_spaces": ResourceKind(
        "space_id", "RESOURCE_DOES_NOT_EXIST", "Genie space '{key}' does not exist.",
        lambda space_id: {"space_id": space_id, "title": space_id}),
    "apps": ResourceKind(
        "name", "RESOURCE_DOES_NOT_EXIST", "App with name {key} does not exist or is deleted.",
        lambda name: {"name": name, "url": f"https://{name}-{METASTORE_ID[:8]}.local.databricksapps.com",
                      "app_status": {"state": "RUNNING", "message": "App is running"},
                      "compute_status": {"state": "ACTIVE", "message": "App compute is running."}}),
}


class Resources:
    """Existence-only objects by kind and key, plus secret scopes."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.objects: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self.secret_scopes: dict[str, dict[str, int]] = {}  # scope -> key -> last update (ms)

    def add(self, kind: str, entry: dict[str, Any]) -> None:
        spec = KINDS[kind]
        key = str(entry[spec.key])
        stored = {**spec.defaults(key), "creator": self.user, **copy.deepcopy(entry)}
        self.objects[kind][key.lower() if spec.case_insensitive else key] = stored

    def get(self, kind: str, key: str) -> dict[str, Any]:
        spec = KINDS[kind]
        found = self.objects[kind].get(key.lower() if spec.case_insensitive else key)
        if found is None:
            raise not_found(spec.missing.format(key=key), spec.error_code)
        return copy.deepcopy(found)

    def exists(self, kind: str, key: str) -> bool:
        spec = KINDS[kind]
        return (key.lower() if spec.case_insensitive else key) in self.objects[kind]

    def add_secret_scope(self, name: str, keys: list[str]) -> None:
        scope = self.secret_scopes.setdefault(name, {})
        for key in keys:
            scope[key] = now_ms()

    def list_scopes(self) -> dict[str, Any]:
        return {"scopes": [{"name": name, "backend_type": "DATABRICKS"} for name in sorted(self.secret_scopes)]}

    def list_secrets(self, scope: str) -> dict[str, Any]:
        if scope not in self.secret_scopes:
            raise not_found(f"Scope {scope} does not exist!")
        keys = self.secret_scopes[scope]
        return {"secrets": [{"key": key, "last_updated_timestamp": keys[key]} for key in sorted(keys)]}
