"""One apply at a time per stack, with no extra infrastructure: a fenced lease file in the workspace.

The lease is a small JSON file (holder, token, expiry) at `/Shared/.reconciler/locks/<stack>.json`.
Taking it is an import with `overwrite: false`, which fails if the file exists: the atomic
test-and-set. Renewing it is an import with `format: RAW, overwrite: true`, the one overwrite real
workspaces accept for a workspace file (`format: AUTO` with `overwrite: true` has been answered 400
RESOURCE_ALREADY_EXISTS, databricks/cli#3386; localworkspace/workspace_files.py cites both), made
only after reading the file back and finding our own token in it. Anyone may take over a lease
that has expired, or at once one whose holder is a process of this machine that no longer runs
(as git does with its lock files), so re-running after a crash does not wait out the lease.

The lease fences the run's writes (`fence`, wired into `Workspace.fence`): a write is sent only
while the lease is ours with `margin` seconds left, measured on this process's monotonic clock from
the moment the last create or renewal that landed was sent, and every write attempt is bounded by
that time (`Workspace._call`). A run stalled past its lease (suspended, a laptop lid closed, a
renewal that kept failing) therefore stops before its next write, even though another run may have
taken the lease meanwhile; the executor says so in one line, and the next apply finishes the job.

A file at the lock path that is not a valid lease (a notebook, a person's file, a lease with
`expires_at: "soon"`) is never deleted nor overwritten: apply refuses with how to remove it.

Limits, stated plainly: the Workspace API has no compare-and-swap, so two runs that both find the
same *expired* lease can both take it over in a narrow window (each reads the lease again just
before deleting it). Expiry is judged by the wall clock written in the lease, so hosts whose
clocks disagree by more than `margin` can take a lease early. A request the network holds for
longer than `margin` after it left is not fenced.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass

from reconciler.errors import Interrupted, LeaseLost, ReconcilerError
from reconciler.terms import name_problem
from reconciler.workspace import Workspace

LOCK_DIR = "/Shared/.reconciler/locks"
LEASE_SECONDS = 120.0  # RECONCILER_LEASE_SECONDS overrides it (tests use a short lease)
RETRY_SECONDS = 2.0
RELEASE_BUDGET_SECONDS = 30.0  # a release keeps trying this long, whatever the run's retry budget
SHOWN = 120  # characters of a holder's name quoted from a lease file


def holder_identity() -> str:
    try:
        user = os.environ.get("GITHUB_ACTOR") or getpass.getuser()
    except Exception:  # no user name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def lease_seconds_setting() -> float:
    raw = os.environ.get("RECONCILER_LEASE_SECONDS")
    if not raw:
        return LEASE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value <= 0:
        raise ReconcilerError(f"RECONCILER_LEASE_SECONDS={raw!r}: expected a positive number of seconds")
    return value


@dataclass(frozen=True)
class Lease:
    holder: str
    token: str
    host: str
    pid: int
    expires_at: float  # Unix seconds

    def abandoned(self) -> bool:
        """Expired, or held by a process of this machine that is gone."""
        if self.expires_at < time.time():
            return True
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except (OSError, OverflowError, ValueError):
            return False  # exists but is not ours to signal (or not a pid at all)
        return False


def parse_lease(raw: bytes) -> Lease | str:
    """The lease in a lock file, or why the file is not one (it is then never touched)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "not JSON"
    if not isinstance(data, dict):
        return "not a JSON object"
    for key, kind in (("holder", str), ("token", str), ("host", str), ("pid", int), ("expires_at", (int, float))):
        value = data.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is str and not value):
            return f"'{key}' is missing or not a {'number' if isinstance(kind, tuple) else kind.__name__}"
    if not math.isfinite(data["expires_at"]):
        return "'expires_at' is not a finite number"
    return Lease(data["holder"][:SHOWN], data["token"], data["host"], data["pid"], float(data["expires_at"]))


class ApplyLock:
    """`with ApplyLock(ws, stack, timeout_seconds=...)`: held for the block, renewed meanwhile, and
    fencing `ws`'s writes (`ws.fence`) while held."""

    def __init__(self, workspace: Workspace, stack: str | None, *, timeout_seconds: float,
                 lease_seconds: float | None = None, renew_every_seconds: float | None = None,
                 margin_seconds: float | None = None, retry_seconds: float = RETRY_SECONDS) -> None:
        problem = name_problem("stack", stack) if stack is not None else None
        if problem:
            raise ReconcilerError(f"--stack: {problem}")
        self.ws = workspace
        self.path = f"{LOCK_DIR}/{stack or 'default'}.json"
        self.timeout = timeout_seconds
        self.lease = lease_seconds if lease_seconds is not None else lease_seconds_setting()
        self.renew_every = renew_every_seconds if renew_every_seconds is not None else self.lease / 4
        self.margin = margin_seconds if margin_seconds is not None else self.lease / 4
        self.retry = retry_seconds
        self.token = uuid.uuid4().hex
        self.holder = holder_identity()
        self._held_until: float | None = None  # monotonic: the lease is ours until then, for sure
        self._renewed_at: float | None = None
        self._lost: str | None = None  # why the lease is no longer ours
        self._last_error = ""  # the last renewal failure, for the message if the lease runs out
        self._may_have_landed = False  # a create was sent: the file may be ours even if we never heard
        self._mutex = threading.Lock()  # a renewal and the release never interleave
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _content(self) -> bytes:
        return json.dumps({"holder": self.holder, "token": self.token, "host": socket.gethostname(),
                           "pid": os.getpid(), "expires_at": time.time() + self.lease}).encode()

    # ---- the fence ---------------------------------------------------------------------------------

    def fence(self) -> float:
        """Until when (monotonic) a write may still be sent; raises LeaseLost when the lease is not
        ours with `margin` seconds left. `Workspace._call` asks before every write attempt."""
        if self._lost is None:
            if self._held_until is None:
                self._lost = "it is not held"
            elif time.monotonic() >= self._held_until - self.margin:
                since = time.monotonic() - (self._renewed_at or 0.0)
                cause = f": {self._last_error}" if self._last_error else ""
                self._lost = f"not renewed for {since:.0f}s, less than {self.margin:.0f}s of it left{cause}"
        if self._lost is not None:
            raise LeaseLost(f"apply lock {self.path}: lease lost ({self._lost}); stopped before the next write. Run "
                            "apply again: it re-reads the workspace and finishes the job")
        return (self._held_until or 0.0) - self.margin

    def _held(self, sent_at: float) -> None:
        """A create or renewal sent at `sent_at` (monotonic) landed."""
        self._held_until = sent_at + self.lease
        self._renewed_at = sent_at
        self._last_error = ""

    # ---- taking the lease --------------------------------------------------------------------------

    def acquire(self) -> None:
        try:
            self._take()
        except BaseException:
            if self._may_have_landed:  # e.g. the create landed, then reading it back failed
                self._delete_if_ours(after_failure=True)
            raise
        self.ws.fence = self.fence
        self._renewer = threading.Thread(target=self._renew, name="apply-lock-renewer", daemon=True)
        self._renewer.start()

    def _take(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            sent_at = time.monotonic()
            self._may_have_landed = True
            if self.ws.create_file(self.path, self._content(), overwrite=False):
                self._held(sent_at)
                return
            raw = self.ws.read_file(self.path)
            if raw is None:
                continue  # released between our create and our read: try again at once
            lease = parse_lease(raw)
            if isinstance(lease, str):
                raise ReconcilerError(f"apply lock {self.path}: the file there is not a reconciler lease ({lease}); it "
                                      "was left as it is. If no apply is running, remove it (databricks workspace "
                                      f"delete {self.path}) and run apply again")
            if lease.token == self.token:
                self._held(sent_at)  # our create landed but its answer was lost; the retry met it
                return
            if lease.abandoned():
                if self.ws.read_file(self.path) == raw:  # still the same abandoned lease: take it over
                    self.ws.delete_file(self.path)
                continue
            if time.monotonic() + self.retry > deadline:
                left = max(0.0, lease.expires_at - time.time())
                raise ReconcilerError(f"apply lock {self.path} is held by {lease.holder} (lease ends in {left:.0f}s "
                                      "unless renewed); wait for that run, or pass --lock-timeout 10m to wait here")
            if self.ws.cancel.wait(self.retry):  # interrupted while waiting for the lock (interrupts.py)
                raise Interrupted(self.ws.cancel_signal)

    # ---- renewing ----------------------------------------------------------------------------------

    def _renew(self) -> None:
        wait = self.renew_every
        while not self._stop.wait(wait):
            with self._mutex:
                if self._stop.is_set():
                    return
                renewed = self._renew_once()
            if self._lost is not None:
                return  # lost it: the fence stops the run's writes; the release will not touch it
            wait = self.renew_every if renewed else min(self.retry, self.renew_every)

    def _renew_once(self) -> bool:
        """Read the lease back; if it is still ours and held with margin, write it again."""
        try:
            left = self.fence() - time.monotonic()
            raw = self.ws.read_file(self.path, budget=left)
            lease = parse_lease(raw) if raw is not None else None
            if not isinstance(lease, Lease) or lease.token != self.token:
                self._lost = "the lease file was removed" if raw is None else \
                    f"taken over by {lease.holder}" if isinstance(lease, Lease) else "the lease file was replaced"
                return False
            sent_at = time.monotonic()
            self.ws.replace_file(self.path, self._content(), budget=left)  # fenced: a write
        except LeaseLost:
            return False
        except ReconcilerError as exc:
            self._last_error = exc.problems[0].message
            return False
        self._held(sent_at)
        return True

    # ---- releasing ---------------------------------------------------------------------------------

    def release(self) -> None:
        self._stop.set()
        with self._mutex:  # a renewal in flight finishes first; none starts after this
            pass
        if self._renewer is not None:
            self._renewer.join()
        try:
            self._delete_if_ours(after_failure=False)
        finally:
            if self.ws.fence == self.fence:
                self.ws.fence = None

    def _delete_if_ours(self, *, after_failure: bool) -> None:
        """Delete the lease if the file is still ours and held with margin; say so when it stays."""
        budget = RELEASE_BUDGET_SECONDS
        try:
            raw = self.ws.read_file(self.path, budget=budget)
            lease = parse_lease(raw) if raw is not None else None
            if not isinstance(lease, Lease) or lease.token != self.token:
                return  # gone, or another run's now: not ours to delete
            if not after_failure:
                self.fence()  # expired: another run may be taking it over this instant; leave it be
            self.ws.delete_file(self.path, budget=budget)
        except LeaseLost:
            self._warn("its lease ran out before the release; the next run takes it over")
        except ReconcilerError as exc:
            # The lease expires by itself; say so, or the next run's wait for it is a mystery.
            self._warn(f"{exc.problems[0].message}; it expires within {self.lease:.0f}s, or at once for a run on "
                       "this machine")

    def _warn(self, why: str) -> None:
        sys.stderr.write(f"warning: apply lock {self.path} not released ({why})\n")

    def __enter__(self) -> ApplyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
