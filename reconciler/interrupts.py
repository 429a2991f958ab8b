"""Ctrl-C and SIGTERM: stop promptly, without leaving a write to land behind our back.

The CLI installs `Interrupts` for the run of a command. What the first SIGINT or SIGTERM does
depends on where the run is:

- before a workspace is connected, or at a prompt (`raising()`), nothing is in flight: it raises
  `errors.Interrupted` in the main thread at once;
- once a workspace is connected, it sets the workspace's `cancel` event and returns. Every call
  and every wait watches that event (`workspace.Workspace._call`, the executor's endpoint waits,
  the lock's retries): waits and reads are abandoned at once, no new write starts, and a write in
  flight is let return (its attempt is bounded), so the run unwinds to the CLI with `Interrupted`,
  which releases the apply lease (no abandoned write can land under the next run's lease) and
  exits 130 (SIGINT) or 143 (SIGTERM).

A second signal ends the process at once (the lease then expires by itself, or is taken over at
once by the next run on this machine, see lock.py). The next apply finishes the job: every write
is re-derived from a fresh read.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from reconciler.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    def __init__(self) -> None:
        self.signum: int | None = None
        self.workspace: Any = None  # a Workspace, once connected
        self._raising = 0
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers belong to the main thread; a caller elsewhere keeps its own
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def watch(self, workspace: Any) -> None:
        """From now on the first signal cancels `workspace`'s calls and waits (see the docstring)."""
        self.workspace = workspace
        if self.signum is not None:  # it came while connecting
            raise Interrupted(self.signum)

    @contextlib.contextmanager
    def raising(self) -> Iterator[None]:
        """A block that may be stopped at any point (a prompt waiting for input)."""
        self._raising += 1
        try:
            if self.signum is not None:
                raise Interrupted(self.signum)
            yield
        finally:
            self._raising -= 1

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            # The second one: the user means it. Straight to the terminal (the streams may be
            # mid-write in the frame this handler interrupted), then out.
            os.write(2, b"interrupted again: stopping now (the apply lease expires by itself)\n")
            os._exit(128 + signum)
        self.signum = signum
        workspace = self.workspace
        if workspace is not None:
            workspace.cancel_signal = signum
            workspace.cancel.set()
        if workspace is None or self._raising:
            raise Interrupted(signum)
