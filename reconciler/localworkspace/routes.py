"""The REST routes the local workspace answers: method, path pattern and handler, in one table.

Paths, methods and JSON shapes are the ones `databricks-sdk` 0.156 sends (its `service/*.py`
modules) and the MLflow deployments client uses (the trailing-slash collection path). Handlers
are thin: they read the request, call the store that owns the rule (`serving.py`, `catalog.py`,
`resources.py`, `workspace_files.py`, `queries.py`) and shape the answer. The server runs every
handler under the workspace lock, after letting due endpoint updates finish; query handlers
(`locked=False`) take the lock themselves so the latency they sleep does not hold it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reconciler.localworkspace import files_api, queries
from reconciler.localworkspace.errors import ApiError, permission_denied
from reconciler.localworkspace.grants import securable
from reconciler.localworkspace.identities import Principal
from reconciler.localworkspace.pages import query_bool
from reconciler.localworkspace.state import WorkspaceState


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # percent-decoded, without the query string
    query: dict[str, str]
    body: dict[str, Any]  # the parsed JSON object (or multipart form) body; {} when there is none
    params: dict[str, str] = field(default_factory=dict)  # from the path pattern
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    raw: bytes = b""  # the body as sent: a file upload, or the JSON MLflow sends with DELETE
    caller: Principal | None = None  # who the token belongs to (None: the default user, for direct calls)


@dataclass
class Response:
    body: dict[str, Any] | bytes = field(default_factory=dict)  # bytes are sent as a file download
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[WorkspaceState, Request], "Response | dict[str, Any]"]


@dataclass(frozen=True)
class Route:
    method: str
    parts: tuple[str, ...]  # literal path segments, "{name}" (one segment) or "{name:path}" (the rest)
    handler: Handler
    template: str
    trailing_slash: bool = False
    locked: bool = True  # False: the handler takes the workspace lock itself (queries sleep outside it)
    raw_body: bool = False  # the body is not JSON (a file upload): handlers read `Request.raw`


ROUTES: list[Route] = []


def route(method: str, template: str, *, trailing_slash: bool = False, locked: bool = True,
          raw_body: bool = False) -> Callable[[Handler], Handler]:
    """Register a handler; `{name}` matches one path segment, `{name:path}` the rest of the path.
    The server runs it under the workspace lock unless `locked` is False; a `raw_body` route's body
    is not JSON (a file upload): it reads `Request.raw`."""
    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, tuple(template.strip("/").split("/")), handler, template, trailing_slash,
                            locked, raw_body))
        return handler
    return register


def segments_of(path: str) -> list[str]:
    """The segments of an already decoded path (for callers that have no raw path)."""
    return path.strip("/").split("/") if path.strip("/") else []


def _bind(parts: tuple[str, ...], segments: list[str], trailing_slash: bool) -> dict[str, str] | None:
    """Match decoded `segments` against a template's parts. Each segment was percent-decoded on its
    own, exactly once (server.py), so `a%2Fb` is the single segment "a/b": a `{name}` takes it
    whole and the handler judges the name. A `{name:path}` joins the rest with "/" (an encoded
    slash in a file path means a slash; databricks/cli `libs/testserver/router.go` matches them
    the same way)."""
    if trailing_slash and len(segments) == len(parts) + 1 and segments[-1] == "":
        segments = segments[:-1]
    params: dict[str, str] = {}
    for i, part in enumerate(parts):
        if part.startswith("{") and part.endswith(":path}"):
            rest = segments[i:]
            if not rest or not all(rest):
                return None
            params[part[1:-len(":path}")]] = "/".join(rest)
            return params
        if i >= len(segments):
            return None
        if part.startswith("{"):
            if not segments[i]:
                return None
            params[part[1:-1]] = segments[i]
        elif part != segments[i]:
            return None
    return params if len(segments) == len(parts) else None


def match(method: str, path: str | list[str]) -> tuple[Route, dict[str, str]] | None:
    """The route for `method` and a decoded path (or its decoded segments); HEAD is answered by the
    GET route. None when nothing routes."""
    wanted = "GET" if method == "HEAD" else method
    segments = segments_of(path) if isinstance(path, str) else path
    for candidate in ROUTES:
        if candidate.method != wanted:
            continue
        params = _bind(candidate.parts, segments, candidate.trailing_slash)
        if params is not None:
            return candidate, params
    return None


def unknown_route(method: str, path: str) -> ApiError:
    """What Databricks answers for a path/method it has no API for."""
    return ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")


# -- serving endpoints ---------------------------------------------------------------------------

SERVING = "/api/2.0/serving-endpoints"


@route("GET", SERVING, trailing_slash=True)
def list_endpoints(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return {"endpoints": state.serving.list(request.caller)}


@route("POST", SERVING, trailing_slash=True)  # the MLflow deployments client posts to ".../serving-endpoints/"
def create_endpoint(state: WorkspaceState, request: Request) -> dict[str, Any]:
    endpoint = state.serving.create(request.body, caller=request.caller)
    return state.serving.detailed(endpoint, request.caller)


@route("GET", SERVING + "/{name}")
def get_endpoint(state: WorkspaceState, request: Request) -> dict[str, Any]:
    endpoint = state.serving.get(request.params["name"], request.caller, "CAN_VIEW")
    return state.serving.detailed(endpoint, request.caller)


@route("DELETE", SERVING + "/{name}")
def delete_endpoint(state: WorkspaceState, request: Request) -> dict[str, Any]:
    state.serving.delete(request.params["name"], request.caller)
    return {}


@route("PUT", SERVING + "/{name}/config")
def update_config(state: WorkspaceState, request: Request) -> dict[str, Any]:
    endpoint = state.serving.update_config(request.params["name"], request.body, request.caller)
    return state.serving.detailed(endpoint, request.caller)


@route("PATCH", SERVING + "/{name}/tags")
def patch_tags(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.serving.patch_tags(request.params["name"], request.body, request.caller)


@route("PUT", SERVING + "/{name}/ai-gateway")
def put_ai_gateway(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.serving.put_ai_gateway(request.params["name"], request.body, request.caller)


@route("PUT", SERVING + "/{name}/rate-limits")
def put_rate_limits(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.serving.put_rate_limits(request.params["name"], request.body, request.caller)


@route("PATCH", SERVING + "/{name}/notifications")
def update_notifications(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.serving.update_notifications(request.params["name"], request.body, request.caller)


@route("GET", SERVING + "/{name}/served-models/{served_model_name}/build-logs")
def build_logs(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.serving.build_logs(request.params["name"], request.params["served_model_name"], request.caller)


# -- queries to served models (`queries.py`) ------------------------------------------------------

def query_route(template: str, api: str) -> None:
    def handler(state: WorkspaceState, request: Request) -> Response:
        status, body, headers = queries.invoke(state, request.body, api=api, endpoint_name=request.params.get("name"),
                                               entity_name=request.params.get("served_entity"), caller=request.caller)
        return Response(body, status=status, headers=headers)
    route("POST", template, locked=False)(handler)


query_route("/serving-endpoints/{name}/invocations", "invocations")
query_route("/serving-endpoints/{name}/served-models/{served_entity}/invocations", "invocations")
query_route("/serving-endpoints/chat/completions", "chat")
query_route("/serving-endpoints/responses", "responses")


@route("GET", SERVING + "/{name}/metrics")
def export_metrics(state: WorkspaceState, request: Request) -> Response:
    text, content_type = queries.export_metrics(state, request.params["name"], request.headers.get("accept", ""),
                                                request.caller)
    return Response(text, headers={"Content-Type": content_type})


PERMISSIONS = "/api/2.0/permissions/serving-endpoints/{endpoint_id}"


@route("GET", PERMISSIONS)
def get_permissions(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.serving.permissions(request.params["endpoint_id"], request.caller)


@route("PUT", PERMISSIONS)
def set_permissions(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.serving.set_permissions(request.params["endpoint_id"], request.body, request.caller, replace=True)


@route("PATCH", PERMISSIONS)
def update_permissions(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.serving.set_permissions(request.params["endpoint_id"], request.body, request.caller, replace=False)


@route("GET", PERMISSIONS + "/permissionLevels")
def permission_levels(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.serving.permission_levels(request.params["endpoint_id"], request.caller)


# -- Unity Catalog catalogs and schemas (containers.py) -------------------------------------------

CATALOGS = "/api/2.1/unity-catalog/catalogs"
SCHEMAS = "/api/2.1/unity-catalog/schemas"


def _caller_name(state: WorkspaceState, request: Request) -> str:
    return state.serving.caller_or_default(request.caller).name


@route("POST", CATALOGS)
def create_catalog(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.containers.create_catalog(request.body, _caller_name(state, request))


@route("GET", CATALOGS + "/{name}")
def get_catalog(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.containers.catalog_info(request.params["name"])


@route("DELETE", CATALOGS + "/{name}")
def delete_catalog(state: WorkspaceState, request: Request) -> dict[str, Any]:
    state.containers.delete_catalog(request.params["name"], force=query_bool(request.query, "force"))
    return {}


@route("POST", SCHEMAS)
def create_schema(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.containers.create_schema(request.body, _caller_name(state, request))


@route("GET", SCHEMAS + "/{full_name}")
def get_schema(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.containers.schema_info(request.params["full_name"])


@route("DELETE", SCHEMAS + "/{full_name}")
def delete_schema(state: WorkspaceState, request: Request) -> dict[str, Any]:
    state.containers.delete_schema(request.params["full_name"], force=query_bool(request.query, "force"))
    return {}


# -- Unity Catalog models ------------------------------------------------------------------------

MODELS = "/api/2.1/unity-catalog/models"


@route("POST", MODELS)
def create_model(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.catalog.model_info(state.catalog.create(request.body), include_aliases=False)


@route("GET", MODELS)
def list_models(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.catalog.list_models(request.query)


@route("GET", MODELS + "/{full_name}")
def get_model(state: WorkspaceState, request: Request) -> dict[str, Any]:
    model = state.catalog.model(request.params["full_name"])
    return state.catalog.model_info(model, include_aliases=query_bool(request.query, "include_aliases"))


@route("PATCH", MODELS + "/{full_name}")
def update_model(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.catalog.model_info(state.catalog.update(request.params["full_name"], request.body),
                                    include_aliases=False)


@route("DELETE", MODELS + "/{full_name}")
def delete_model(state: WorkspaceState, request: Request) -> dict[str, Any]:
    state.catalog.delete(request.params["full_name"])
    return {}


@route("GET", MODELS + "/{full_name}/versions")
def list_versions(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.catalog.list_versions(request.params["full_name"], request.query)


@route("GET", MODELS + "/{full_name}/versions/{version}")
def get_version(state: WorkspaceState, request: Request) -> dict[str, Any]:
    model = state.catalog.model(request.params["full_name"])
    version = state.catalog.version(request.params["full_name"], request.params["version"])
    return state.catalog.version_info(model, version, include_aliases=query_bool(request.query, "include_aliases"))


@route("PATCH", MODELS + "/{full_name}/versions/{version}")
def update_version(state: WorkspaceState, request: Request) -> dict[str, Any]:
    model = state.catalog.model(request.params["full_name"])
    version = state.catalog.update_version(request.params["full_name"], request.params["version"], request.body)
    return state.catalog.version_info(model, version, include_aliases=False)


@route("DELETE", MODELS + "/{full_name}/versions/{version}")
def delete_version(state: WorkspaceState, request: Request) -> dict[str, Any]:
    state.catalog.delete_version(request.params["full_name"], request.params["version"])
    return {}


@route("GET", MODELS + "/{full_name}/aliases/{alias}")
def get_by_alias(state: WorkspaceState, request: Request) -> dict[str, Any]:
    model, version = state.catalog.version_by_alias(request.params["full_name"], request.params["alias"])
    return state.catalog.version_info(model, version, include_aliases=query_bool(request.query, "include_aliases"))


@route("PUT", MODELS + "/{full_name}/aliases/{alias}")
def set_alias(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.catalog.set_alias(request.params["full_name"], request.params["alias"], request.body)


@route("DELETE", MODELS + "/{full_name}/aliases/{alias}")
def delete_alias(state: WorkspaceState, request: Request) -> dict[str, Any]:
    state.catalog.delete_alias(request.params["full_name"], request.params["alias"])
    return {}


# -- Files API: model version files, MLflow run and logged model artifacts (files_api.py) ---------

@route("GET", "/api/2.0/fs/files/{file_path:path}")
def download_file(state: WorkspaceState, request: Request) -> Response:
    """GET (and HEAD, for `w.files.get_metadata`), e.g. `/Models/{catalog}/{schema}/{model}/{version}/MLmodel`."""
    content, headers = files_api.download(state, request.params["file_path"])
    return Response(content, headers=headers)


@route("PUT", "/api/2.0/fs/files/{file_path:path}", raw_body=True)
def upload_file(state: WorkspaceState, request: Request) -> Response:
    """`w.files.upload`, as MLflow's registration writes a new version's files; no response body."""
    files_api.upload(state, request.params["file_path"], request.raw, request.query)
    return Response(b"", status=204)


@route("GET", "/api/2.0/fs/directories/{directory_path:path}")
def list_directory(state: WorkspaceState, request: Request) -> dict[str, Any]:
    """GET lists (`w.files.list_directory_contents`); HEAD answers whether it exists (`get_directory_metadata`)."""
    if request.method == "HEAD":
        files_api.directory_exists(state, request.params["directory_path"])
        return {}
    return files_api.list_directory(state, request.params["directory_path"], request.query)


@route("POST", "/api/2.0/fs/create-download-url")
def create_download_url(state: WorkspaceState, request: Request) -> dict[str, Any]:
    """`w.files.download` asks for a presigned URL first and falls back to the direct GET when
    that fails (`mixins/files.py`, `_init_download_response_mode_csp_with_fallback`). This
    workspace answers as one where presigned URLs are not enabled, with the ErrorInfo reason the
    SDK itself recognises (`_is_presigned_urls_disabled_error`)."""
    raise ApiError(403, "PERMISSION_DENIED", "Presigned URLs are not enabled for this workspace.", details=[{
        "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "FILES_API_API_IS_NOT_ENABLED",
        "domain": "filesystem.databricks.com", "metadata": {}}])


# -- secrets and dependent resources -------------------------------------------------------------

@route("GET", "/api/2.0/secrets/scopes/list")
def list_scopes(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.resources.list_scopes()


@route("GET", "/api/2.0/secrets/list")
def list_secrets(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.resources.list_secrets(request.query.get("scope", ""))


def resource_route(kind: str, template: str) -> None:
    def get(state: WorkspaceState, request: Request) -> dict[str, Any]:
        return state.resources.get(kind, next(iter(request.params.values())))
    route("GET", template)(get)


resource_route("vector_search_indexes", "/api/2.0/vector-search/indexes/{name}")
resource_route("sql_warehouses", "/api/2.0/sql/warehouses/{id}")
resource_route("functions", "/api/2.1/unity-catalog/functions/{name}")
resource_route("connections", "/api/2.1/unity-catalog/connections/{name}")
resource_route("genie_spaces", "/api/2.0/genie/spaces/{space_id}")
resource_route("apps", "/api/2.0/apps/{name}")


@route("GET", "/api/2.1/unity-catalog/tables/{full_name}/exists")
def table_exists(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return {"table_exists": state.resources.exists("tables", request.params["full_name"])}


resource_route("tables", "/api/2.1/unity-catalog/tables/{full_name}")


@route("GET", "/api/2.0/preview/scim/v2/Me")
def current_user(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.current_user(request.caller)


@route("GET", "/api/2.1/unity-catalog/effective-permissions/{securable_type}/{full_name}")
def effective_permissions(state: WorkspaceState, request: Request) -> dict[str, Any]:
    """`w.grants.get_effective`; see `grants.py`. A model that does not exist is 404, as `get` is."""
    securable_type, full_name = request.params["securable_type"], request.params["full_name"]
    kind, name = securable(securable_type, full_name)
    if kind == "FUNCTION" and not state.resources.exists("functions", name):
        state.catalog.model(name)
    return state.grants.effective(securable_type, full_name, request.query.get("principal"))


# -- Workspace API (the lease file) --------------------------------------------------------------

@route("POST", "/api/2.0/workspace/import")
def workspace_import(state: WorkspaceState, request: Request) -> dict[str, Any]:
    state.files.import_(request.body)
    return {}


@route("GET", "/api/2.0/workspace/export")
def workspace_export(state: WorkspaceState, request: Request) -> Response | dict[str, Any]:
    found = state.files.export(request.query)
    if query_bool(request.query, "direct_download"):  # `w.workspace.download`
        return Response(found.content, headers={"Content-Type": "application/octet-stream"})
    return state.files.export_body(found)


@route("GET", "/api/2.0/workspace/get-status")
def workspace_get_status(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.files.lookup(request.query.get("path")).info()


@route("GET", "/api/2.0/workspace/list")
def workspace_list(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return state.files.list(request.query)


@route("POST", "/api/2.0/workspace/mkdirs")
def workspace_mkdirs(state: WorkspaceState, request: Request) -> dict[str, Any]:
    state.files.mkdirs(request.body)
    return {}


@route("POST", "/api/2.0/workspace/delete")
def workspace_delete(state: WorkspaceState, request: Request) -> dict[str, Any]:
    state.files.delete(request.body)
    return {}


# Requests that change nothing although they are not GETs: allowed for a read-only token.
READS_BY_POST = {"/api/2.0/fs/create-download-url", "/api/2.0/mlflow/logged-models/search"}


def refuse_write(method: str, path: str) -> ApiError | None:
    """The answer to a read-only token attempting `method path`, or None when it is a read."""
    if method in ("GET", "HEAD") or path in READS_BY_POST:
        return None
    return permission_denied("This token is read-only: it may not perform this operation.")


# The MLflow routes (tracking and Unity Catalog registration) live in their own module and add
# themselves to ROUTES; imported last, so the table is complete whenever this module is imported.
from reconciler.localworkspace import mlflow_routes  # noqa: E402,F401
