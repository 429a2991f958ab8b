"""Runs the real `reconciler` command line in this process and times it.

In-process, after a warm-up run, so a figure measures the command's work and not the
interpreter's start-up and imports (the start-up case measures those on their own).
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from dataclasses import dataclass

from reconciler.cli import main


@dataclass
class Run:
    code: int
    out: str
    err: str
    seconds: float


def run_cli(env: dict[str, str], *args: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    os.environ.update(env)
    code = 0
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        seconds = time.perf_counter() - started
        os.environ.clear()
        os.environ.update(saved)
    return Run(code, out.getvalue(), err.getvalue(), seconds)
