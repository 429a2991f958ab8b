"""Writing local files whole or not at all: saved plans, the JSON Schema, exported manifests.

Every file is first written to a temporary file beside it and then renamed over the target, so a
reader never sees half a file, and a write error leaves no temporary behind. `write_files` stages
all its files before renaming any, so a group (an export) is written completely or not at all,
and, given `inside`, refuses any path that would resolve outside that directory (a name taken
from a server answer is never allowed to walk out of `--out`).
"""

from __future__ import annotations

import os

from reconciler.errors import ReconcilerError


def write_atomically(path: str, text: str) -> None:
    write_files({path: text}, failed="")


def write_files(files: dict[str, str], *, inside: str | None = None, failed: str = "nothing was written") -> list[str]:
    """Write `{path: text}`, all of them or none; returns the paths written. `failed` ends every
    error line (what the caller wants the user to know about the others)."""
    suffix = f"; {failed}" if failed else ""
    root = os.path.realpath(inside) if inside is not None else None
    staged: list[tuple[str, str]] = []
    try:
        for path, text in files.items():
            if root is not None and os.path.commonpath([root, os.path.realpath(path)]) != root:
                raise ReconcilerError(f"{path}: refusing to write outside {inside}{suffix}")
            folder = os.path.dirname(path) or "."
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as exc:
                raise ReconcilerError(f"{folder}: cannot create directory: {exc.strerror or exc}{suffix}") from None
            if os.path.isdir(path):
                raise ReconcilerError(f"{path}: cannot write: it is a directory{suffix}")
            tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp{os.getpid()}")
            staged.append((tmp, path))
            try:
                with open(tmp, "w", encoding="utf-8") as handle:
                    handle.write(text)
            except OSError as exc:
                raise ReconcilerError(f"{path}: cannot write: {exc.strerror or exc}{suffix}") from None
        for done, (tmp, path) in enumerate(staged):
            try:
                os.replace(tmp, path)
            except OSError as exc:
                written = ", ".join(p for _, p in staged[:done]) or "none"
                raise ReconcilerError(f"{path}: cannot write: {exc.strerror or exc} (written before it: {written})"
                                      ) from None
    finally:
        for tmp, _ in staged:
            if os.path.lexists(tmp):
                os.unlink(tmp)
    return [path for _, path in staged]
