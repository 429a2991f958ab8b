"""The `/api/2.0/mlflow/...` routes: what MLflow's own client calls with tracking URI `databricks`
and registry URI `databricks-uc`.

Paths and methods are MLflow's (`extract_api_info_for_service` over `MlflowService` and
`UcModelRegistryService`); bodies are the proto-JSON of `mlflow/protos/service.proto` and
`databricks_uc_registry_messages.proto`. MLflow sends a GET's fields as the query string and every
other method's, DELETE included, as a JSON body (`mlflow/utils/rest_utils.py`, `call_endpoint`).

Tracking (reads of seeded objects, `mlflow_tracking.py`): get a run; get, search and tag logged
models. Run and logged model files are read through the Files API (`files_api.py`), the path
MLflow's Databricks artifact repositories take first.

Unity Catalog registry (`registration.py` for versions; registered models and aliases are the
same objects the `/api/2.1/unity-catalog/...` routes serve, `catalog.py`): registered models
create/get/update/delete/search, tags, aliases; model versions create/finalize/get/update/delete/
search/get-download-uri, tags. How a new version's files are uploaded is the client's choice
between two paths (`UcModelRegistryStore._get_artifact_repo`):
- `is_databricks_sdk_models_artifact_repository_enabled` true: `DatabricksSDKModelsArtifactRepository`
  writes through the Files API (`PUT /api/2.0/fs/files/Models/{catalog}/{schema}/{model}/{version}/...`).
  Unless `MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC` is set, the client asks the
  workspace (`GET .../registered-models:is-databricks-sdk-models-artifact-repository-enabled`,
  `mlflow/utils/_unity_catalog_utils.py`); workspaces answer true where cloud storage is not
  reachable from the client (mlflow/mlflow#13632, "auto opt-in ... for SEG enabled workspaces").
- otherwise `POST .../model-versions/generate-temporary-credentials`: either cloud credentials
  (S3, ADLS, GCS, R2), which the client uses with boto3 / azure / google-cloud libraries that
  mlflow-skinny does not bring, against cloud endpoints, not 127.0.0.1; or storage mode
  DEFAULT_STORAGE, where it asks for presigned URLs (`POST /api/2.0/fs/create-upload-url`), which
  this workspace has disabled, as it has for downloads (`routes.create_download_url`).
So the local workspace answers true, like those workspaces, and the unmodified client takes the
Files API path over plain HTTP with no environment switch; a client forced onto credentials
(the variable set to false) is refused with a message saying so, leaving its version pending.
"""

from __future__ import annotations

from typing import Any

from reconciler.localworkspace import fields
from reconciler.localworkspace.bodies import parse_body
from reconciler.localworkspace.catalog import parse_version, split_full_name
from reconciler.localworkspace.errors import invalid, permission_denied
from reconciler.localworkspace.pages import paginate
from reconciler.localworkspace.registration import tags_of
from reconciler.localworkspace.routes import Request, route
from reconciler.localworkspace.state import WorkspaceState

MLFLOW = "/api/2.0/mlflow"
UC = MLFLOW + "/unity-catalog"


def _args(request: Request) -> dict[str, Any]:
    if request.method in ("GET", "HEAD"):
        return dict(request.query)
    if request.method == "DELETE":  # the server does not parse DELETE bodies; MLflow sends one
        return parse_body("POST", request.raw, "application/json")
    return request.body


def _name(args: dict[str, Any]) -> str:
    return fields.text(args, "name", required=True) or ""


def _version(args: dict[str, Any]) -> str:
    """A version number, which MLflow sends as a string (the protos declare it so)."""
    value = args.get("version")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return fields.text(args, "version", required=True) or ""


# -- tracking: runs and logged models ------------------------------------------------------------

@route("GET", MLFLOW + "/runs/get")
def get_run(state: WorkspaceState, request: Request) -> dict[str, Any]:
    args = _args(request)
    run_id = args.get("run_id") or args.get("run_uuid")
    if not run_id:
        raise invalid("Missing required field: run_id")
    return {"run": state.tracking.run_view(state.tracking.run(run_id))}


@route("POST", MLFLOW + "/logged-models/search")
def search_logged_models(state: WorkspaceState, request: Request) -> dict[str, Any]:
    fields.integer(request.body, "max_results")  # a wrong type is a 400, as the proto parser answers
    fields.text(request.body, "page_token")
    return state.tracking.search_logged_models(request.body)


@route("GET", MLFLOW + "/logged-models/{model_id}")
def get_logged_model(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return {"model": state.tracking.logged_model_view(state.tracking.logged_model(request.params["model_id"]))}


@route("PATCH", MLFLOW + "/logged-models/{model_id}/tags")
def set_logged_model_tags(state: WorkspaceState, request: Request) -> dict[str, Any]:
    """`register_model` records the versions registered from a logged model in its
    `mlflow.modelVersions` tag (`_model_registry/fluent.py`, `_register_model`)."""
    model = state.tracking.set_logged_model_tags(request.params["model_id"], request.body)
    return {"model": state.tracking.logged_model_view(model)}


# -- Unity Catalog registered models --------------------------------------------------------------

@route("POST", UC + "/registered-models/create")
def create_registered_model(state: WorkspaceState, request: Request) -> dict[str, Any]:
    model = state.catalog.create({"full_name": _name(request.body),
                                  "comment": fields.text(request.body, "description") or None})
    model.tags.update(tags_of(request.body))
    return {"registered_model": state.registration.model_view(model)}


@route("GET", UC + "/registered-models/get")
def get_registered_model(state: WorkspaceState, request: Request) -> dict[str, Any]:
    return {"registered_model": state.registration.model_view(state.catalog.model(_name(_args(request))))}


@route("PATCH", UC + "/registered-models/update")
def update_registered_model(state: WorkspaceState, request: Request) -> dict[str, Any]:
    """Description and rename; MLflow passes the new name as given, usually the full name."""
    model = state.catalog.model(_name(request.body))
    patch: dict[str, Any] = {"comment": fields.text(request.body, "description")}
    new_name = fields.text(request.body, "new_name")
    if new_name:
        if "." in new_name:
            catalog_name, schema_name, new_name = split_full_name(new_name)
            if (catalog_name, schema_name) != (model.catalog_name, model.schema_name):
                raise invalid("A registered model can only be renamed within its schema.")
        patch["new_name"] = new_name
    return {"registered_model": state.registration.model_view(state.catalog.update(model.full_name, patch))}


@route("DELETE", UC + "/registered-models/delete")
def delete_registered_model(state: WorkspaceState, request: Request) -> dict[str, Any]:
    state.catalog.delete(_name(_args(request)))
    return {}


@route("GET", UC + "/registered-models/search")
def search_registered_models(state: WorkspaceState, request: Request) -> dict[str, Any]:
    # Page sizes as the Unity Catalog list of models (`RegisteredModelsAPI.list` docstring).
    page, next_token = paginate(sorted(state.catalog.models.items()), request.query, default=100, limit=1000)
    result: dict[str, Any] = {"registered_models": [state.registration.model_view(m, with_aliases=False) for m in page]}
    if next_token:
        result["next_page_token"] = next_token
    return result


@route("POST", UC + "/registered-models/set-tag")
def set_registered_model_tag(state: WorkspaceState, request: Request) -> dict[str, Any]:
    model = state.catalog.model(_name(request.body))
    model.tags[fields.text(request.body, "key", required=True) or ""] = fields.text(request.body, "value") or ""
    return {}


@route("DELETE", UC + "/registered-models/delete-tag")
def delete_registered_model_tag(state: WorkspaceState, request: Request) -> dict[str, Any]:
    args = _args(request)
    state.catalog.model(_name(args)).tags.pop(fields.text(args, "key", required=True) or "", None)
    return {}


@route("POST", UC + "/registered-models/alias")
def set_alias(state: WorkspaceState, request: Request) -> dict[str, Any]:
    args = request.body
    alias = fields.text(args, "alias", required=True) or ""
    state.catalog.set_alias(_name(args), alias, {"version_num": parse_version(_version(args))})
    return {}


@route("GET", UC + "/registered-models/alias")
def get_version_by_alias(state: WorkspaceState, request: Request) -> dict[str, Any]:
    args = _args(request)
    model, version = state.catalog.version_by_alias(_name(args), fields.text(args, "alias", required=True) or "")
    return {"model_version": state.registration.version_view(model, version)}


@route("DELETE", UC + "/registered-models/alias")
def delete_alias(state: WorkspaceState, request: Request) -> dict[str, Any]:
    args = _args(request)
    state.catalog.delete_alias(_name(args), fields.text(args, "alias", required=True) or "")
    return {}


@route("GET", UC + "/registered-models:is-databricks-sdk-models-artifact-repository-enabled")
def sdk_models_artifact_repository_enabled(state: WorkspaceState, request: Request) -> dict[str, Any]:
    """True: a new version's files go through the Files API (see the module docstring)."""
    return {"is_databricks_sdk_models_artifact_repository_enabled": True}


# -- Unity Catalog model versions -----------------------------------------------------------------

@route("POST", UC + "/model-versions/create")
def create_model_version(state: WorkspaceState, request: Request) -> dict[str, Any]:
    model, version = state.registration.create(request.body)
    return {"model_version": state.registration.version_view(model, version)}


@route("POST", UC + "/model-versions/finalize")
def finalize_model_version(state: WorkspaceState, request: Request) -> dict[str, Any]:
    model, version = state.registration.finalize(_name(request.body), _version(request.body))
    return {"model_version": state.registration.version_view(model, version)}


@route("GET", UC + "/model-versions/get")
def get_model_version(state: WorkspaceState, request: Request) -> dict[str, Any]:
    args = _args(request)
    model = state.catalog.model(_name(args))
    return {"model_version": state.registration.version_view(model, state.catalog.version(model.full_name,
                                                                                           _version(args)))}


@route("PATCH", UC + "/model-versions/update")
def update_model_version(state: WorkspaceState, request: Request) -> dict[str, Any]:
    """Only the description changes (`UpdateModelVersionRequest`)."""
    model = state.catalog.model(_name(request.body))
    version = state.catalog.update_version(model.full_name, _version(request.body),
                                           {"comment": fields.text(request.body, "description")})
    return {"model_version": state.registration.version_view(model, version)}


@route("DELETE", UC + "/model-versions/delete")
def delete_model_version(state: WorkspaceState, request: Request) -> dict[str, Any]:
    args = _args(request)
    state.catalog.delete_version(_name(args), _version(args))
    return {}


@route("GET", UC + "/model-versions/search")
def search_model_versions(state: WorkspaceState, request: Request) -> dict[str, Any]:
    """Results carry no aliases (MLflow drops them: `model_version_search_from_uc_proto`)."""
    page, next_token = state.registration.search_versions(request.query)
    result: dict[str, Any] = {"model_versions": [state.registration.version_view(model, version, with_aliases=False)
                                                 for model, version in page]}
    if next_token:
        result["next_page_token"] = next_token
    return result


@route("GET", UC + "/model-versions/get-download-uri")
def get_download_uri(state: WorkspaceState, request: Request) -> dict[str, Any]:
    args = _args(request)
    model = state.catalog.model(_name(args))
    version = state.catalog.version(model.full_name, _version(args))
    return {"artifact_uri": f"{model.storage_location}/versions/{version.version}"}


@route("POST", UC + "/model-versions/set-tag")
def set_model_version_tag(state: WorkspaceState, request: Request) -> dict[str, Any]:
    version = state.catalog.version(_name(request.body), _version(request.body))
    version.tags[fields.text(request.body, "key", required=True) or ""] = fields.text(request.body, "value") or ""
    return {}


@route("DELETE", UC + "/model-versions/delete-tag")
def delete_model_version_tag(state: WorkspaceState, request: Request) -> dict[str, Any]:
    args = _args(request)
    state.catalog.version(_name(args), _version(args)).tags.pop(fields.text(args, "key", required=True) or "", None)
    return {}


@route("POST", UC + "/model-versions/generate-temporary-credentials")
def generate_temporary_credentials(state: WorkspaceState, request: Request) -> dict[str, Any]:
    raise permission_denied(
        "This workspace vends no cloud storage credentials: model version files go through the Files API "
        "(/api/2.0/fs/files/Models/...). Unset MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC "
        "or set it to true.")

