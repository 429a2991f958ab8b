"""The Workspace API's file tree (`w.workspace`): import, export, get-status, mkdirs, list, delete.

The reconciler keeps an atomic lease file here (only one `apply` at a time): `import` with
`overwrite: false` is the compare-and-set, answering RESOURCE_ALREADY_EXISTS when the path is
taken, and it is atomic because every request runs under the workspace lock. The rules follow the
`WorkspaceAPI` docstrings in `databricks/sdk/service/workspace.py`: missing paths are
RESOURCE_DOES_NOT_EXIST, a non-empty directory deleted without `recursive` is
DIRECTORY_NOT_EMPTY, `mkdirs` over a file is RESOURCE_ALREADY_EXISTS, and a SOURCE import needs a
`language` (the SDK's `upload` hints "Perhaps you forgot to specify the `format=ImportFormat.AUTO`"
on exactly that INVALID_PARAMETER_VALUE).
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
from reconciler.localworkspace.errors import ApiError, already_exists, invalid, not_found

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
        existing = self.objects.get(path)
        if existing is not None and (not overwrite or existing.object_type == "DIRECTORY"):
            raise already_exists(f"Path ({path}) already exists.")
        if fmt == "SOURCE" and language is None:
            raise invalid("The language of a SOURCE import must be specified (or use format AUTO or RAW).")
        if fmt == "RAW" or (fmt == "AUTO" and not content.startswith(NOTEBOOK_HEADER)):
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
                raise already_exists(f"Path ({partial}) already exists and is not a directory.")

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


def normalise(raw_path: str | None) -> str:
    if not raw_path:
        raise invalid("Missing required field: path")
    if not raw_path.startswith("/"):
        raise invalid(f"Path ({raw_path}) must be absolute.")
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
