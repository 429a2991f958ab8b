"""The only module that talks to Databricks, through `databricks-sdk`.

Reads return plain dicts shaped like the REST API's JSON (what the normaliser consumes) or None
when the object does not exist. Writes take the plain payloads the planner computed. Every SDK
failure is translated here, once, into a `ReconcilerError` that names the object, the operation
and the cause in one line; tokens never appear in those messages (the SDK does not put them in
errors, and we never format request headers).

Contract for callers: reads are side-effect free and safe to repeat. Writes are the narrowest
API call for one change; `set_alias`, `patch_tags`, `put_ai_gateway`, permissions and config
PUTs are idempotent when repeated with the same payload, and `create_*` treat "already exists"
as a question answered by reading back (see apply.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any

import yaml

from reconciler.errors import Problem, ReconcilerError

# Dependent resources an agent may declare, by MLflow resource type key.
RESOURCE_TYPES = ("serving_endpoint", "vector_search_index", "sql_warehouse", "function", "genie_space",
                  "table", "uc_connection", "app", "lakebase")


class NotFoundError(Exception):
    """Raised inside `translate` by reads that want None for a missing object."""


@contextlib.contextmanager
def translate(subject: str, operation: str) -> Iterator[None]:
    """Turn any SDK / network failure into one clear line: `subject: operation: cause`."""
    from databricks.sdk import errors

    try:
        yield
    except ReconcilerError:
        raise
    except errors.DatabricksError as exc:
        raise ReconcilerError(Problem(f"{operation}: {_describe(exc)}", subject=subject), cause=exc) from None
    except TimeoutError as exc:
        cause = exc.__cause__
        detail = _describe(cause) if isinstance(cause, errors.DatabricksError) else str(exc) or "timed out"
        raise ReconcilerError(Problem(f"{operation}: gave up after retrying: {detail}", subject=subject)) from None
    except OSError as exc:  # requests' ConnectionError is an OSError too
        raise ReconcilerError(Problem(f"{operation}: network error: {_first_line(exc)}", subject=subject)) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    # The SDK appends its whole resolved config ("... Config: host=..., token=***, ..."): noise.
    return line.split(" Config: ", 1)[0].rstrip(". ")[:300]


def _describe(exc: Exception) -> str:
    from databricks.sdk import errors

    message = _first_line(exc)
    code = getattr(exc, "error_code", None)
    code = None if code is None or str(code).isdigit() else code
    if isinstance(exc, errors.Unauthenticated):
        return f"authentication failed (401 {code or 'UNAUTHENTICATED'}): {message}; check DATABRICKS_TOKEN or --profile"
    if isinstance(exc, errors.PermissionDenied):
        return f"permission denied (403 {code or 'PERMISSION_DENIED'}): {message}"
    if isinstance(exc, errors.TooManyRequests):
        return f"rate limited (429 {code or ''}): {message}".replace(" )", ")")
    return f"{code}: {message}" if code else message


class Workspace:
    """A connected workspace: typed SDK calls in, API-shaped dicts out."""

    def __init__(self, client: Any) -> None:
        self.w = client

    @classmethod
    def connect(cls, *, profile: str | None = None, parallelism: int = 16,
                retry_timeout_seconds: int = 300, http_timeout_seconds: int = 60) -> Workspace:
        """Unified auth (DATABRICKS_HOST/TOKEN, profile, OAuth M2M), failing fast on an unreachable host."""
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.config import Config

        logging.getLogger("databricks.sdk").setLevel(logging.ERROR)  # its warnings are ours to word
        if profile is None and os.environ.get("DATABRICKS_HOST"):
            _check_reachable(os.environ["DATABRICKS_HOST"])  # before the SDK's start-up probe retries it
        try:
            # A short budget for the start-up probe of /.well-known/databricks-config: an unreachable
            # host would otherwise block construction for the whole retry budget.
            config = Config(profile=profile, retry_timeout_seconds=5, http_timeout_seconds=10,
                            max_connection_pools=max(20, parallelism),
                            max_connections_per_pool=max(20, parallelism),
                            disable_experimental_files_api_client=True)
        except ValueError as exc:
            raise ReconcilerError(f"Databricks authentication is not configured: {_first_line(exc)} "
                                  "(set DATABRICKS_HOST and DATABRICKS_TOKEN, or pass --profile)") from None
        _check_reachable(config.host)
        # How long the SDK keeps retrying 429/503/connection errors before giving up.
        config.retry_timeout_seconds = int(os.environ.get("RECONCILER_RETRY_SECONDS") or retry_timeout_seconds)
        config.http_timeout_seconds = http_timeout_seconds
        return cls(WorkspaceClient(config=config))

    # ---- reads -------------------------------------------------------------------------------

    def get_endpoint(self, name: str) -> dict[str, Any] | None:
        from databricks.sdk.errors import NotFound

        with translate(f"serving_endpoint.{name}", "get"):
            try:
                return self.w.serving_endpoints.get(name).as_dict()
            except NotFound:
                return None

    def list_endpoints(self) -> list[dict[str, Any]]:
        with translate("serving_endpoints", "list"):
            return [e.as_dict() for e in self.w.serving_endpoints.list()]

    def get_endpoint_permissions(self, name: str, endpoint_id: str) -> dict[str, Any]:
        with translate(f"serving_endpoint.{name}", "get_permissions"):
            return self.w.serving_endpoints.get_permissions(endpoint_id).as_dict()

    def get_model(self, full_name: str) -> dict[str, Any] | None:
        from databricks.sdk.errors import NotFound

        with translate(f"registered_model.{full_name}", "get"):
            try:
                # Aliases come back only with include_aliases=true.
                return self.w.registered_models.get(full_name, include_aliases=True).as_dict()
            except NotFound:
                return None

    def get_model_version(self, full_name: str, version: str) -> dict[str, Any] | None:
        from databricks.sdk.errors import NotFound

        with translate(f"registered_model.{full_name}", f"get version {version}"):
            try:
                return self.w.model_versions.get(full_name, int(version)).as_dict()
            except NotFound:
                return None

    def list_secret_scopes(self) -> set[str]:
        with translate("secrets", "list_scopes"):
            return {s.name for s in self.w.secrets.list_scopes() if s.name}

    def list_secret_keys(self, scope: str) -> set[str] | None:
        from databricks.sdk.errors import NotFound

        with translate(f"secret_scope.{scope}", "list_secrets"):
            try:
                return {s.key for s in self.w.secrets.list_secrets(scope) if s.key}
            except NotFound:
                return None

    def resource_exists(self, kind: str, name: str) -> bool:
        from databricks.sdk.errors import NotFound

        getters = {
            "serving_endpoint": lambda: self.w.serving_endpoints.get(name),
            "vector_search_index": lambda: self.w.vector_search_indexes.get_index(name),
            "sql_warehouse": lambda: self.w.warehouses.get(name),
            "function": lambda: self.w.functions.get(name),
            "genie_space": lambda: self.w.genie.get_space(name),
            "table": lambda: self.w.tables.get(name),
            "uc_connection": lambda: self.w.connections.get(name),
            "app": lambda: self.w.apps.get(name),
            "lakebase": lambda: self.w.database.get_database_instance(name),
        }
        with translate(f"{kind}.{name}", "get"):
            try:
                getters[kind]()
                return True
            except NotFound:
                return False

    def read_mlmodel(self, full_name: str, version: str) -> dict[str, Any] | None:
        """The version's MLmodel file (resources, auth_policy), or None if it has none."""
        from databricks.sdk.errors import NotFound

        catalog, schema, model = full_name.split(".")
        path = f"/Models/{catalog}/{schema}/{model}/{version}/MLmodel"
        with translate(f"registered_model.{full_name}", f"read MLmodel of version {version}"):
            try:
                content = self.w.files.download(path).contents.read()
            except NotFound:
                return None
        try:
            data = yaml.safe_load(content)
        except yaml.YAMLError:
            raise ReconcilerError(Problem(f"MLmodel of version {version} is not valid YAML",
                                          subject=f"registered_model.{full_name}")) from None
        return data if isinstance(data, dict) else None

    def build_logs_tail(self, name: str, served_name: str, lines: int = 5) -> str:
        """Last lines of a served entity's build logs, best effort (for failure messages)."""
        try:
            logs = self.w.serving_endpoints.build_logs(name, served_name).logs or ""
        except Exception:  # logs only decorate an error we are already reporting
            return ""
        return " | ".join(line.strip() for line in logs.strip().splitlines()[-lines:] if line.strip())

    # ---- writes ------------------------------------------------------------------------------

    def create_model(self, full_name: str, *, comment: str | None) -> None:
        catalog, schema, name = full_name.split(".")
        with translate(f"registered_model.{full_name}", "create"):
            self.w.registered_models.create(catalog_name=catalog, schema_name=schema, name=name, comment=comment)

    def update_model(self, full_name: str, fields: dict[str, Any]) -> None:
        with translate(f"registered_model.{full_name}", "update"):
            self.w.registered_models.update(full_name, **fields)

    def set_alias(self, full_name: str, alias: str, version: int) -> None:
        with translate(f"registered_model.{full_name}", f"set_alias({alias} → {version})"):
            self.w.registered_models.set_alias(full_name, alias, version)

    def delete_alias(self, full_name: str, alias: str) -> None:
        from databricks.sdk.errors import NotFound

        with translate(f"registered_model.{full_name}", f"delete_alias({alias})"):
            try:
                self.w.registered_models.delete_alias(full_name, alias)
            except NotFound:
                pass  # already gone: the goal of the write holds

    def create_endpoint(self, payload: dict[str, Any]) -> dict[str, Any]:
        from databricks.sdk.service import serving

        name = payload["name"]
        with translate(f"serving_endpoint.{name}", "create"):
            wait = self.w.serving_endpoints.create(
                name=name,
                config=serving.EndpointCoreConfigInput.from_dict(payload["config"]),
                ai_gateway=serving.AiGatewayConfig.from_dict(payload["ai_gateway"]) if payload.get("ai_gateway") else None,
                tags=[serving.EndpointTag(key=k, value=v) for k, v in payload.get("tags", {}).items()] or None,
                description=payload.get("description"),
                route_optimized=payload.get("route_optimized"),
            )
            return wait.response.as_dict() if wait.response is not None else {}

    def update_config(self, name: str, payload: dict[str, Any]) -> None:
        from databricks.sdk.service import serving

        with translate(f"serving_endpoint.{name}", "update_config"):
            self.w.serving_endpoints.update_config(
                name,
                served_entities=[serving.ServedEntityInput.from_dict(e) for e in payload["served_entities"]],
                traffic_config=serving.TrafficConfig.from_dict(payload["traffic_config"])
                if payload.get("traffic_config") else None,
                auto_capture_config=serving.AutoCaptureConfigInput.from_dict(payload["auto_capture_config"])
                if payload.get("auto_capture_config") else None,
            )

    def patch_tags(self, name: str, *, add: dict[str, str], delete: list[str]) -> None:
        from databricks.sdk.service import serving

        with translate(f"serving_endpoint.{name}", "patch_tags"):
            self.w.serving_endpoints.patch(
                name, add_tags=[serving.EndpointTag(key=k, value=v) for k, v in add.items()] or None,
                delete_tags=delete or None)

    def put_ai_gateway(self, name: str, payload: dict[str, Any]) -> None:
        from databricks.sdk.service import serving

        parts = {
            "inference_table_config": serving.AiGatewayInferenceTableConfig,
            "usage_tracking_config": serving.AiGatewayUsageTrackingConfig,
            "guardrails": serving.AiGatewayGuardrails,
            "fallback_config": serving.FallbackConfig,
        }
        kwargs: dict[str, Any] = {k: cls.from_dict(payload[k]) for k, cls in parts.items() if payload.get(k) is not None}
        if payload.get("rate_limits") is not None:
            kwargs["rate_limits"] = [serving.AiGatewayRateLimit.from_dict(r) for r in payload["rate_limits"]]
        with translate(f"serving_endpoint.{name}", "put_ai_gateway"):
            self.w.serving_endpoints.put_ai_gateway(name, **kwargs)

    def update_permissions(self, name: str, endpoint_id: str, acl: list[dict[str, str]], *, replace: bool) -> None:
        """PATCH (merge) the given grants, or PUT (replace) the direct grants when `replace`."""
        from databricks.sdk.service import serving

        entries = [serving.ServingEndpointAccessControlRequest.from_dict(a) for a in acl]
        operation = "set_permissions" if replace else "update_permissions"
        with translate(f"serving_endpoint.{name}", operation):
            if replace:
                self.w.serving_endpoints.set_permissions(endpoint_id, access_control_list=entries)
            else:
                self.w.serving_endpoints.update_permissions(endpoint_id, access_control_list=entries)

    def delete_endpoint(self, name: str) -> None:
        from databricks.sdk.errors import NotFound

        with translate(f"serving_endpoint.{name}", "delete"):
            try:
                self.w.serving_endpoints.delete(name)
            except NotFound:
                pass  # already gone


    # ---- workspace files (the apply lock's lease) --------------------------------------------------

    def create_file(self, path: str, content: bytes, *, overwrite: bool) -> bool:
        """Write a workspace file; with overwrite=False, False if the path already exists (atomic)."""
        import base64

        from databricks.sdk.errors import ResourceAlreadyExists
        from databricks.sdk.service.workspace import ImportFormat

        with translate(f"workspace_file.{path}", "import"):
            self.w.workspace.mkdirs(path.rsplit("/", 1)[0])
            try:
                self.w.workspace.import_(path, content=base64.b64encode(content).decode(), format=ImportFormat.AUTO,
                                         overwrite=overwrite)
            except ResourceAlreadyExists:
                return False
        return True

    def read_file(self, path: str) -> bytes | None:
        import base64

        from databricks.sdk.errors import NotFound
        from databricks.sdk.service.workspace import ExportFormat

        with translate(f"workspace_file.{path}", "export"):
            try:
                return base64.b64decode(self.w.workspace.export(path, format=ExportFormat.AUTO).content or "")
            except NotFound:
                return None

    def delete_file(self, path: str) -> None:
        from databricks.sdk.errors import NotFound

        with translate(f"workspace_file.{path}", "delete"):
            try:
                self.w.workspace.delete(path)
            except NotFound:
                pass


def _check_reachable(host: str | None) -> None:
    if not host:
        raise ReconcilerError("no Databricks host configured; set DATABRICKS_HOST (and DATABRICKS_TOKEN) or pass --profile")
    url = urllib.parse.urlparse(host if "://" in host else f"https://{host}")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=10).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ReconcilerError(f"cannot reach Databricks host {url.scheme}://{url.netloc}: {reason}") from None
