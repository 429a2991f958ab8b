"""The files of one MLflow object (a run, a logged model, a model version), as the Files API serves them.

A `FileSet` is a flat map from a relative path (`agent/MLmodel`) to its bytes; directories exist
only because a file lies under them, as in object storage, which is what backs the real
`/api/2.0/fs/...` paths MLflow uses for these objects. `files_api.py` maps an absolute Files API
path to the `FileSet` that owns it; this module answers what lies at a relative path in one set.

Seeds write artifacts as `{relative path: content}`; `seed_content` turns a seeded value into
bytes (a mapping becomes YAML, or JSON for a `.json` path, so an `MLmodel` reads like the real
file; a string is UTF-8 text).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

import yaml

from reconciler.localworkspace.clock import now_ms


@dataclass(frozen=True)
class StoredFile:
    content: bytes
    modified_at: int  # Unix milliseconds, the Files API's `last_modified`


@dataclass(frozen=True)
class Entry:
    """One item of a directory listing: `name` is the last path component."""
    name: str
    is_directory: bool
    file: StoredFile | None = None


@dataclass
class FileSet:
    files: dict[str, StoredFile] = field(default_factory=dict)

    def put(self, relative: str, content: bytes, *, modified_at: int | None = None) -> None:
        self.files[clean_relative(relative)] = StoredFile(content, now_ms() if modified_at is None else modified_at)

    def file(self, relative: str) -> StoredFile | None:
        return self.files.get(relative)

    def is_dir(self, relative: str) -> bool:
        """The root always exists; any other directory exists while a file lies under it."""
        prefix = f"{relative}/" if relative else ""
        return not relative or any(path.startswith(prefix) for path in self.files)

    def entries(self, relative: str) -> list[Entry]:
        """What lies directly under the directory `relative` ("" for the root), sorted by name."""
        prefix = f"{relative}/" if relative else ""
        found: dict[str, Entry] = {}
        for path, stored in self.files.items():
            if not path.startswith(prefix):
                continue
            name, _, rest = path[len(prefix):].partition("/")
            found[name] = Entry(name, is_directory=True) if rest else Entry(name, is_directory=False, file=stored)
        return [found[name] for name in sorted(found)]


def clean_relative(path: str) -> str:
    """`path` as a key of a FileSet; ValueError for an absolute path, `..`, `.` or an empty segment."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"'{path}' is not a relative file path (no leading '/', '.', '..' or empty parts)")
    return posixpath.join(*parts)


def seed_content(path: str, value: Any) -> bytes:
    """The bytes of a seeded artifact; ValueError for a value that cannot be a file."""
    if isinstance(value, bytes):  # YAML !!binary
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict):
        if path.endswith(".json"):
            return json.dumps(value, indent=2).encode()
        return yaml.safe_dump(value, sort_keys=False).encode()
    raise ValueError(f"artifact '{path}' must be text, a mapping (written as YAML, or JSON for .json) or !!binary")
