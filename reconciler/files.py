"""Local files: read only when they are what they claim, written whole or not at all.

`read_regular` reads the files a user names (manifests, variable files, saved plans): only regular
files (a FIFO named `x.yaml` would block the read forever; a symlink to `/dev/zero` would be read
until memory runs out), and only up to a size, both checked on the opened file before reading.

Saved plans, the JSON Schema and exported manifests are written here, through the redaction layer
(`redact.scrub`: no token or registered credential reaches a file). Every file is first written to a temporary file beside it and then renamed over the target, so a
reader never sees half a file, and a write error leaves no temporary behind. `write_files` stages
all its files before renaming any, so a group (an export) is written completely or not at all,
and, given `inside`, refuses any path that would resolve outside that directory (a name taken
from a server answer is never allowed to walk out of `--out`).
"""

from __future__ import annotations

import os
import stat

from reconciler.errors import ReconcilerError
from reconciler.redact import scrub

_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


class Unreadable(Exception):
    """A file refused before (or while) reading it; the message says why, without the path.
    `size` is set when it is too large."""

    def __init__(self, message: str, *, size: int | None = None) -> None:
        super().__init__(message)
        self.size = size


def read_regular(path: str, *, limit: int) -> bytes:
    """The bytes of `path` if it is a regular file (through any symlink) of at most `limit` bytes;
    else `Unreadable` (or `OSError` when it cannot be opened)."""
    _refuse_unless_regular(os.stat(path).st_mode)  # a socket cannot even be opened: say what it is
    # O_NONBLOCK: opening a FIFO nobody writes to would otherwise block right here; and the opened
    # file is checked again, in case the path was swapped in between.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        _refuse_unless_regular(info.st_mode)
        data = handle.read(min(info.st_size, limit) + 1) if info.st_size <= limit else b""
    size = max(info.st_size, len(data))
    if size > limit:
        raise Unreadable(f"is {size / 1048576:.1f} MiB, more than the {limit / 1048576:g} MiB allowed", size=size)
    return data


def _refuse_unless_regular(mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise Unreadable(f"is {kind}, not a file; refusing to read it")


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
                    handle.write(scrub(text))
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
