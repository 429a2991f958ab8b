"""One apply at a time per stack, with no extra infrastructure: a lease file in the workspace.

The lease is a small JSON file (holder, expiry) at `/Shared/.reconciler/locks/<stack>.json`,
created through the Workspace API with `overwrite: false`, which fails if the file exists: that
is the atomic test-and-set. The holder renews it while it works (a killed run stops renewing),
releases it at the end, and anyone may steal it once it has expired. A lease whose holder is a
process on this same machine that no longer runs is taken over at once (as git does with its
lock files), so re-running after a crash on a laptop or a CI runner does not wait out the lease.

Limit, stated plainly: the Workspace API has no compare-and-swap, so two runs that both find the
same *expired* lease can both steal it in a narrow window (each re-reads the lease just before
deleting it, which shrinks but does not close that window). A live lease is never stolen.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any

from reconciler.errors import Interrupted, ReconcilerError
from reconciler.workspace import Workspace

LOCK_DIR = "/Shared/.reconciler/locks"
LEASE_SECONDS = 120.0
RENEW_EVERY_SECONDS = 30.0
RETRY_SECONDS = 2.0
RELEASE_BUDGET_SECONDS = 30.0  # a release keeps trying this long even when the run's budget is shorter


def holder_identity() -> str:
    try:
        user = os.environ.get("GITHUB_ACTOR") or getpass.getuser()
    except Exception:  # no user name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _abandoned(lease: dict[str, Any]) -> bool:
    """Expired, or held by a process of this machine that is gone."""
    if float(lease.get("expires_at") or 0) < time.time():
        return True
    if lease.get("host") != socket.gethostname() or not isinstance(lease.get("pid"), int):
        return False
    try:
        os.kill(lease["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists but is not ours to signal
    return False


class ApplyLock:
    """`with ApplyLock(ws, stack, timeout_seconds=...)`: held for the block, renewed meanwhile."""

    def __init__(self, workspace: Workspace, stack: str | None, *, timeout_seconds: float,
                 lease_seconds: float = LEASE_SECONDS, renew_every_seconds: float = RENEW_EVERY_SECONDS,
                 retry_seconds: float = RETRY_SECONDS) -> None:
        self.ws = workspace
        self.path = f"{LOCK_DIR}/{stack or 'default'}.json"
        self.timeout = timeout_seconds
        self.lease = lease_seconds
        self.renew_every = renew_every_seconds
        self.retry = retry_seconds
        self.token = uuid.uuid4().hex
        self.holder = holder_identity()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _content(self) -> bytes:
        return json.dumps({"holder": self.holder, "token": self.token, "host": socket.gethostname(),
                           "pid": os.getpid(), "expires_at": time.time() + self.lease}).encode()

    def _read(self) -> dict[str, Any] | None:
        raw = self.ws.read_file(self.path)
        return None if raw is None else self._parse(raw)

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any]:
        try:
            data = json.loads(raw)
            return data if isinstance(data, dict) else {}
        except ValueError:
            return {}  # unreadable lease: treated as expired

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            if self.ws.create_file(self.path, self._content(), overwrite=False):
                break
            current = self._read()
            if current is not None and current.get("token") == self.token:
                break  # our create landed but its answer was lost, so the SDK's retry met it: ours
            if current is not None and _abandoned(current):
                if self._read() == current:  # still the same expired lease: steal it
                    self.ws.delete_file(self.path)
                continue
            if time.monotonic() + self.retry > deadline:
                who = (current or {}).get("holder", "another run")
                left = max(0.0, float((current or {}).get("expires_at") or 0) - time.time())
                raise ReconcilerError(f"apply lock {self.path} is held by {who} (lease ends in {left:.0f}s unless "
                                      "renewed); wait for that run, or pass --lock-timeout 10m to wait here")
            if self.ws.cancel.wait(self.retry):  # interrupted while waiting for the lock (interrupts.py)
                raise Interrupted(self.ws.cancel_signal)
        self._renewer = threading.Thread(target=self._renew, name="apply-lock-renewer", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                if (self._read() or {}).get("token") != self.token:
                    return  # lost it (stolen after a stall); the release will not touch it
                self.ws.replace_file(self.path, self._content())
            except ReconcilerError:
                continue  # a transient failure; the lease has minutes of slack

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        budget = max(self.ws.retry_seconds, RELEASE_BUDGET_SECONDS)
        try:
            raw = self.ws.read_file(self.path, budget=budget)
            if raw is not None and self._parse(raw).get("token") == self.token:
                self.ws.delete_file(self.path, budget=budget)
        except ReconcilerError as exc:
            # The lease expires by itself; say so, or the next run's wait for it is a mystery.
            sys.stderr.write(f"warning: apply lock {self.path} not released ({exc.problems[0].message}); it expires "
                             f"within {self.lease:.0f}s, or at once for a run on this machine\n")

    def __enter__(self) -> ApplyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
