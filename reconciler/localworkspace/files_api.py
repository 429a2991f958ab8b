"""The Files API paths MLflow reads and writes: model version files, run and logged model artifacts.

`routes.py` sends `/api/2.0/fs/files{path}` (GET/HEAD: `w.files.download` / `get_metadata`; PUT:
`w.files.upload`) and `/api/2.0/fs/directories{path}` (HEAD: `get_directory_metadata`; GET:
`list_directory_contents`) here, with the SDK's shapes (`databricks/sdk/service/files.py`). The
paths, and whose files they are:

    /Models/{catalog}/{schema}/{model}/{version}/...      a Unity Catalog model version
        (`DatabricksSDKModelsArtifactRepository.model_base_path`); writable until the version is
        finalized (`registration.py`), read-only after. A seeded version's `mlmodel` appears as
        its `MLmodel` file.
    /WorkspaceInternal/Mlflow/Artifacts/{experiment}/Runs/{run_id}/artifacts/...
    /WorkspaceInternal/Mlflow/Artifacts/{experiment}/LoggedModels/{model_id}/artifacts/...
        a seeded run's or logged model's artifacts (`DatabricksRunArtifactRepository` /
        `DatabricksLoggedModelArtifactRepository._build_root_path`); read-only, since the local
        workspace does not log MLflow objects.

Anything else (`/Volumes/...`) is not modelled and answers 404. Errors use the Files API's
NOT_FOUND, which the SDK raises as `NotFound`; MLflow's repositories treat exactly that as "not a
directory" (`DatabricksSDKModelsArtifactRepository._is_dir`).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from reconciler.localworkspace.artifacts import FileSet, StoredFile
from reconciler.localworkspace.catalog import ModelVersion
from reconciler.localworkspace.errors import ApiError, invalid, permission_denied
from reconciler.localworkspace.pages import paginate

if TYPE_CHECKING:
    from reconciler.localworkspace.state import WorkspaceState

TRACKING_ROOT = ("WorkspaceInternal", "Mlflow", "Artifacts")


@dataclass(frozen=True)
class Located:
    files: FileSet
    relative: str  # "" for the root of the set
    version: ModelVersion | None = None  # set for /Models/... paths


def locate(state: WorkspaceState, path: str) -> Located | None:
    """The file set that owns absolute `path`, or None if no object of this workspace does."""
    parts = path.strip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    if parts[0] == "Models" and len(parts) >= 5:
        try:
            version = state.catalog.version(".".join(parts[1:4]), parts[4])
        except ApiError:
            return None
        return Located(_version_files(state, version), "/".join(parts[5:]), version)
    if tuple(parts[:3]) == TRACKING_ROOT and len(parts) >= 7 and parts[6] == "artifacts":
        experiment_id, kind, object_id = parts[3], parts[4], parts[5]
        owners: dict[str, dict[str, Any]] = {"Runs": state.tracking.runs, "LoggedModels": state.tracking.logged_models}
        owner: Any = owners.get(kind, {}).get(object_id)
        if owner is None or owner.experiment_id != experiment_id:
            return None
        return Located(owner.files, "/".join(parts[7:]))
    return None


def _version_files(state: WorkspaceState, version: ModelVersion) -> FileSet:
    """A version's uploaded files, plus its seeded `mlmodel` as `MLmodel` when none was uploaded."""
    if version.mlmodel is None or version.files.file("MLmodel") is not None:
        return version.files
    content = state.catalog.mlmodel_text(version)
    return FileSet({**version.files.files, "MLmodel": StoredFile(content, version.created_at)})


def download(state: WorkspaceState, path: str) -> tuple[bytes, dict[str, str]]:
    """The bytes of the file at `path` and the headers the SDK reads (`FilesAPI.download`)."""
    found = locate(state, path)
    stored = found.files.file(found.relative) if found is not None and found.relative else None
    if stored is None:
        raise file_not_found()
    return stored.content, {"Content-Type": "application/octet-stream",
                            "Last-Modified": formatdate(stored.modified_at / 1000, usegmt=True)}


def upload(state: WorkspaceState, path: str, content: bytes, query: dict[str, str]) -> None:
    """`PUT /api/2.0/fs/files{path}?overwrite=`: "If true or unspecified, an existing file will be
    overwritten. If false, an error will be returned if the path points to an existing file"
    (`FilesAPI.upload` docstring)."""
    found = locate(state, path)
    if found is None:
        raise ApiError(404, "NOT_FOUND", f"No model version or volume holds '{path}'.")
    if found.version is None:
        raise permission_denied("MLflow run and logged model artifacts are read-only here: the local workspace does "
                                "not log them (seed them under mlflow_runs and logged_models).")
    if not found.relative:
        raise invalid(f"'{path}' is a directory, not a file.")
    if not state.registration.accepts_files(found.version):
        raise permission_denied(f"Model version {found.version.version} is {found.version.status}: its files can no "
                                "longer change.")
    files = found.version.files
    parents = found.relative.split("/")[:-1]
    if files.is_dir(found.relative) or any(files.file("/".join(parents[:i + 1])) for i in range(len(parents))):
        raise ApiError(409, "ALREADY_EXISTS", f"'{path}' collides with an existing file or directory.")
    if query.get("overwrite", "true").lower() == "false" and files.file(found.relative) is not None:
        raise ApiError(409, "ALREADY_EXISTS", f"The file '{path}' already exists.")
    files.put(found.relative, content)


def directory_exists(state: WorkspaceState, path: str) -> None:
    """HEAD `/api/2.0/fs/directories{path}`: 200 for a directory, 404 otherwise (a file included)."""
    _directory(state, path)


def list_directory(state: WorkspaceState, path: str, query: dict[str, str]) -> dict[str, Any]:
    """GET `/api/2.0/fs/directories{path}`: "If unspecified, at most 1000 directory entries will be
    returned. The maximum value is 1000" (`FilesAPI.list_directory_contents` docstring)."""
    found = _directory(state, path)
    base = "/" + path.strip("/")
    entries = [(entry.name, entry) for entry in found.files.entries(found.relative)]
    page, next_token = paginate(entries, {"max_results": query.get("page_size", ""),
                                          "page_token": query.get("page_token", "")}, default=1000, limit=1000)
    contents = []
    for entry in page:
        item: dict[str, Any] = {"path": f"{base}/{entry.name}", "name": entry.name, "is_directory": entry.is_directory}
        if entry.file is not None:
            item.update(file_size=len(entry.file.content), last_modified=entry.file.modified_at)
        contents.append(item)
    result: dict[str, Any] = {"contents": contents}
    if next_token:
        result["next_page_token"] = next_token
    return result


def file_not_found() -> ApiError:
    """The Files API's answer for a missing file."""
    return ApiError(404, "NOT_FOUND", "The file being accessed is not found.")


def _directory(state: WorkspaceState, path: str) -> Located:
    found = locate(state, path)
    if found is None or not found.files.is_dir(found.relative):
        raise ApiError(404, "NOT_FOUND", "The directory being accessed is not found.")
    return found
