"""The Workspace API's file tree (`w.workspace`): import, export, get-status, mkdirs, list, delete.

The reconciler keeps an atomic lease file here (only one `apply` at a time): `import` with
`overwrite: false` is the compare-and-set, answering RESOURCE_ALREADY_EXISTS when the path is
taken, and it is atomic because every request runs under the workspace lock. The rules follow the
`WorkspaceAPI` docstrings in `databricks/sdk/service/workspace.py`: missing paths are
RESOURCE_DOES_NOT_EXIST, a non-empty directory deleted without `recursive` is
DIRECTORY_NOT_EMPTY, `mkdirs` over a file is RESOURCE_ALREADY_EXISTS, and a SOURCE import needs a
`language` (the SDK's `upload` hints "Perhaps you forgot to specify the `format=ImportFormat.AUTO`"
on exactly that INVALID_PARAMETER_VALUE).

Overwriting, as real workspaces answer it:
- `overwrite: false` on a path that exists: 400 RESOURCE_ALREADY_EXISTS "<path> already exists.
  Please pass overwrite=true to overwrite it." (databricks/cli `libs/filer/
  workspace_files_client.go`, branch sankalp-mittal/workspace-import-migration: "verified against a
  real workspace"; shared/reference/databricks-api.md: 400 on real workspaces);
- `format: AUTO` with `overwrite: true` on an existing workspace FILE: 400 RESOURCE_ALREADY_EXISTS
  "Node named '<file name>' already exists" (databricks/cli#3386: `databricks workspace import
  ... --format AUTO --overwrite` on an existing file, Databricks CLI v0.263.0). A lease renewed this
  way is never renewed;
- an overwrite that would change the object's type (a FILE over a NOTEBOOK or the reverse): 400
  INVALID_PARAMETER_VALUE "Cannot overwrite the asset at <path> due to type mismatch (asked: FILE,
  actual: NOTEBOOK)" (same databricks/cli comment, observed against aws-prod-ucws).

What does replace a file's content on real workspaces, and what a lease renewal can build on:
1. `format: RAW` with `overwrite: true` on the existing FILE replaces its bytes in place: the
   Terraform provider's `databricks_workspace_file` updates files exactly so
   (terraform-provider-databricks `workspace/resource_workspace_file.go`,
   `workspaceFileUploadOptionFunc`: Format "RAW", Overwrite true, since #4200, 2024-11), through
   `w.workspace.import_(path, content=..., format=ImportFormat.RAW, overwrite=True)` or
   `w.workspace.upload(..., format=ImportFormat.RAW, overwrite=True)`. It is unconditional: it
   cannot tell whether someone else's lease is there, so read the file first and write only while
   it is still ours (the read and the write are two calls; a competitor can slip in between).
2. `delete` then `import` with `overwrite: false`: both documented calls; the import is the same
   compare-and-set as taking the lease, so a competitor that took the file in between makes our
   import fail with RESOURCE_ALREADY_EXISTS, and we know we lost it. Between the two calls the path
   is free for anyone, so a renewal that loses this race must stop writing.
Paths are checked, never resolved: `.` and `..` segments are refused (`check_path`), as real
workspaces refuse them.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from dataclasses import dataclass
from itertools import count
from typing import Any

from reconciler.localworkspace import fields
from reconciler.localworkspace.clock import now_ms
from reconciler.localworkspace.errors import ApiError, invalid, invalid_request_path, not_found

IMPORT_FORMATS = ("AUTO", "DBC", "HTML", "JUPYTER", "RAW", "R_MARKDOWN", "SOURCE")
LANGUAGES = ("PYTHON", "SQL", "SCALA", "R")
NOTEBOOK_HEADER = b"# Databricks notebook source"
FILE_TYPES = {"PYTHON": "py", "SQL": "sql", "SCALA": "scala", "R": "r"}


@dataclass
class WorkspaceObject:
    path: str
    object_type: str  # DIRECTORY | FILE | NOTEBOOK
    object_id: int
    created_at: int
    modified_at: int
    content: bytes = b""
    language: str | None = None

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"path": self.path, "object_type": self.object_type, "object_id": self.object_id,
                                "resource_id": str(self.object_id), "created_at": self.created_at,
                                "modified_at": self.modified_at}
        if self.object_type == "FILE":
            info["size"] = len(self.content)
        if self.language:
            info["language"] = self.language
        return info


class WorkspaceFiles:
    def __init__(self, user: str) -> None:
        self._ids = count(1_000_000_000_000)
        self.objects: dict[str, WorkspaceObject] = {}
        for path in ("/", "/Users", f"/Users/{user}", "/Shared"):
            self._add(path, "DIRECTORY")

    def _add(self, path: str, object_type: str, content: bytes = b"", language: str | None = None) -> WorkspaceObject:
        now = now_ms()
        previous = self.objects.get(path)
        obj = WorkspaceObject(path=path, object_type=object_type, object_id=next(self._ids),
                              created_at=previous.created_at if previous else now, modified_at=now,
                              content=content, language=language)
        self.objects[path] = obj
        return obj

    def lookup(self, raw_path: str | None) -> WorkspaceObject:
        path = normalise(raw_path)
        found = self.objects.get(path)
        if found is None:
            raise not_found(f"Path ({path}) doesn't exist.")
        return found

    def children(self, path: str) -> list[WorkspaceObject]:
        prefix = path.rstrip("/") + "/"
        return [o for p, o in sorted(self.objects.items()) if p.startswith(prefix) and "/" not in p[len(prefix):]]

    def import_(self, body: dict[str, Any]) -> None:
        path = normalise(fields.text(body, "path", required=True))
        fmt = fields.one_of(fields.text(body, "format"), IMPORT_FORMATS, "format") or "SOURCE"
        language = fields.one_of(fields.text(body, "language"), LANGUAGES, "language")
        overwrite = body.get("overwrite") in (True, "true")
        content = decode_content(body.get("content"))
        parent = posixpath.dirname(path)
        if self.objects.get(parent) is None or self.objects[parent].object_type != "DIRECTORY":
            raise not_found(f"The parent folder ({parent}) does not exist.")
        if fmt == "SOURCE" and language is None:
            raise invalid("The language of a SOURCE import must be specified (or use format AUTO or RAW).")
        asked = "FILE" if fmt == "RAW" or (fmt == "AUTO" and not content.startswith(NOTEBOOK_HEADER)) else "NOTEBOOK"
        existing = self.objects.get(path)
        if existing is not None:
            check_overwrite(existing, asked, fmt, overwrite=overwrite)
        if asked == "FILE":
            self._add(path, "FILE", content)
        else:
            self._add(path, "NOTEBOOK", content, language or "PYTHON")

    def export(self, query: dict[str, str]) -> WorkspaceObject:
        found = self.lookup(query.get("path"))
        if found.object_type == "DIRECTORY":
            raise invalid(f"Exporting the directory ({found.path}) is not supported by the local workspace.")
        return found

    def export_body(self, found: WorkspaceObject) -> dict[str, Any]:
        file_type = FILE_TYPES.get(found.language or "", posixpath.splitext(found.path)[1].lstrip("."))
        return {"content": base64.b64encode(found.content).decode(), "file_type": file_type}

    def mkdirs(self, body: dict[str, Any]) -> None:
        path = normalise(fields.text(body, "path", required=True))
        partial = ""
        for part in path.strip("/").split("/"):
            partial = f"{partial}/{part}"
            existing = self.objects.get(partial)
            if existing is None:
                self._add(partial, "DIRECTORY")
            elif existing.object_type != "DIRECTORY":
                raise taken(f"Path ({partial}) already exists and is not a directory.")

    def delete(self, body: dict[str, Any]) -> None:
        path = normalise(fields.text(body, "path", required=True))
        recursive = fields.boolean(body, "recursive") or False
        found = self.lookup(path)
        if path == "/":
            raise invalid("The root folder cannot be deleted.")
        inside = [p for p in self.objects if p.startswith(path + "/")]
        if inside and not recursive:
            raise ApiError(400, "DIRECTORY_NOT_EMPTY", f"Folder ({path}) is not empty.")
        for p in [*inside, found.path]:
            del self.objects[p]

    def list(self, query: dict[str, str]) -> dict[str, Any]:
        found = self.lookup(query.get("path"))
        items = self.children(found.path) if found.object_type == "DIRECTORY" else [found]
        return {"objects": [o.info() for o in items]}


def check_overwrite(existing: WorkspaceObject, asked: str, fmt: str, *, overwrite: bool) -> None:
    """Refuse an import over an existing object the way real workspaces do (module docstring)."""
    path = existing.path
    if not overwrite or existing.object_type == "DIRECTORY":
        raise taken(f"{path} already exists. Please pass overwrite=true to overwrite it.")
    if existing.object_type != asked:
        raise invalid(f"Cannot overwrite the asset at {path} due to type mismatch (asked: {asked}, actual: "
                      f"{existing.object_type})")
    if existing.object_type == "FILE" and fmt == "AUTO":
        raise taken(f"Node named '{posixpath.basename(path)}' already exists")


def taken(message: str) -> ApiError:
    """The Workspace API's "already exists": RESOURCE_ALREADY_EXISTS with status 400 on real
    workspaces (databricks/cli#3386), which the SDK maps by code to ResourceAlreadyExists."""
    return ApiError(400, "RESOURCE_ALREADY_EXISTS", message)


def check_path(raw_path: str) -> None:
    """`.` and `..` segments are refused, never resolved (errors.invalid_request_path)."""
    if any(segment in (".", "..") for segment in raw_path.split("/")):
        raise invalid_request_path()


def normalise(raw_path: str | None) -> str:
    if not raw_path:
        raise invalid("Missing required field: path")
    if not raw_path.startswith("/"):
        # The message real workspaces give ("Path (...) doesn't start with '/'", e.g.
        # terraform-provider-databricks#126).
        raise invalid(f"Path ({raw_path}) doesn't start with '/'")
    check_path(raw_path)
    return posixpath.normpath("/" + raw_path.lstrip("/"))


def decode_content(content: Any) -> bytes:
    if content is None:
        return b""
    if isinstance(content, bytes):  # a multipart upload
        return content
    if not isinstance(content, str):
        raise invalid("content must be a base64-encoded string")
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("content is not valid base64") from None
