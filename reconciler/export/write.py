"""Export's files: every document rendered and written under `--out`, all of them or none.

Called by the `export` command in cli.py. Files go through `files.write_files` (staged, then
renamed; scrubbed by the redaction layer; never outside `--out`). Also the lines the command prints.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from reconciler.export.commented_yaml import render
from reconciler.export.documents import Export, ExportOptions
from reconciler.files import write_files
from reconciler.schema import SCHEMA_FILE

SCHEMA_PATH = os.path.join("schemas", SCHEMA_FILE)


def schema_ref(out_dir: str, folder: str) -> str | None:
    """The modeline's relative path to schemas/manifest.schema.json of the repository holding
    `out_dir` (the nearest parent that has one), or None outside such a repository."""
    target = os.path.abspath(os.path.join(out_dir, folder))
    current = os.path.abspath(out_dir)
    while True:
        if os.path.isfile(os.path.join(current, SCHEMA_PATH)):
            return os.path.relpath(os.path.join(current, SCHEMA_PATH), target).replace(os.sep, "/")
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def write_export(out_dir: str, result: Export) -> list[str]:
    """Write every document and note under `out_dir`, all of them or none. Returns the paths
    written. Raises ReconcilerError naming the path that cannot be written."""
    files = {os.path.join(out_dir, doc.path): render(doc, schema_ref=schema_ref(out_dir, os.path.dirname(doc.path)))
             for doc in result.documents}
    files.update({os.path.join(out_dir, relative): text for relative, text in result.notes.items()})
    return write_files(files, inside=out_dir, failed="nothing was exported")


def summary(result: Export, written: Sequence[str], out_dir: str, options: ExportOptions) -> list[str]:
    """The lines `reconciler export` prints on stdout."""
    lines = [f"wrote {path}" for path in written]
    endpoints = sum(1 for d in result.documents if d.kind == "ServingEndpoint")
    models = len(result.documents) - endpoints
    for model, users in sorted(result.implied.items()):
        lines.append(f"  (registered model {model} is exported too: {', '.join(users)} serve(s) through its aliases)")
    if result.documents:
        flags = (" --stack " + options.stack if options.stack else "") + \
            (" (with the same --var values)" if options.variables else "")
        lines.append(f"Exported {endpoints} serving endpoint(s) and {models} registered model(s) to {out_dir}. "
                     f"Check: reconciler plan {out_dir}{flags}")
    return lines
