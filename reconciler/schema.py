"""Writes the JSON Schema of the manifest format, generated from the pydantic model.

Editors use it for completion (`# yaml-language-server: $schema=...`); CI runs
`reconciler schema --check` so the committed file can never drift from the model.
"""

from __future__ import annotations

import json
import os

from reconciler.files import write_atomically

SCHEMA_FILE = "manifest.schema.json"


def manifest_schema() -> dict[str, object]:
    from pydantic import TypeAdapter

    from reconciler.manifests.model import ManifestDocument

    schema = TypeAdapter(ManifestDocument).json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "reconciler manifest (apiVersion reconciler/v1)", **schema}


def schema_text() -> str:
    return json.dumps(manifest_schema(), indent=2, sort_keys=False) + "\n"


def write_schema(out_dir: str) -> str:
    path = os.path.join(out_dir, SCHEMA_FILE)
    write_atomically(path, schema_text())  # never leave a half-written schema behind
    return path


def schema_is_current(out_dir: str) -> bool:
    try:
        with open(os.path.join(out_dir, SCHEMA_FILE), encoding="utf-8") as handle:
            return handle.read() == schema_text()
    except OSError:
        return False
