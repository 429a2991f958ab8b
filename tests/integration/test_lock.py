"""The apply lock: a lease file created atomically through the Workspace API."""

from __future__ import annotations

import json
import threading
import time

import pytest
from harness import base_documents, model, run, write, writes

from reconciler.errors import LeaseLost, ReconcilerError
from reconciler.lock import LOCK_DIR, ApplyLock
from reconciler.workspace import Workspace


def connect(ws):
    return Workspace(ws.client())


def test_a_held_lock_refuses_a_second_holder_and_releases(workspace):
    first = ApplyLock(connect(workspace), "prod", timeout_seconds=0)
    first.acquire()
    second = ApplyLock(connect(workspace), "prod", timeout_seconds=0)
    try:
        second.acquire()
        raise AssertionError("a live lease was taken twice")
    except Exception as exc:  # ReconcilerError, printed as one line by the CLI
        assert "is held by" in str(exc) and "--lock-timeout" in str(exc)
    other_stack = ApplyLock(connect(workspace), "staging", timeout_seconds=0)
    other_stack.acquire()  # stacks lock independently
    other_stack.release()
    first.release()
    assert connect(workspace).read_file(f"{LOCK_DIR}/prod.json") is None
    second.acquire()
    second.release()


def test_an_expired_lease_is_stolen(workspace):
    stale = ApplyLock(connect(workspace), None, timeout_seconds=0, lease_seconds=0.2)
    stale.acquire()
    stale._stop.set()  # as if the process had been killed: no renewal, no release
    time.sleep(0.3)
    thief = ApplyLock(connect(workspace), None, timeout_seconds=0)
    thief.acquire()
    content = json.loads(connect(workspace).read_file(f"{LOCK_DIR}/default.json"))
    assert content["token"] == thief.token
    stale.release()  # the old holder must not remove the thief's lease
    assert json.loads(connect(workspace).read_file(f"{LOCK_DIR}/default.json"))["token"] == thief.token
    thief.release()


def test_the_holder_renews_its_lease(workspace):
    holder = ApplyLock(connect(workspace), "s", timeout_seconds=0, lease_seconds=0.5, renew_every_seconds=0.1)
    holder.acquire()
    time.sleep(0.8)  # longer than the lease: renewal keeps it alive
    contender = ApplyLock(connect(workspace), "s", timeout_seconds=0)
    try:
        contender.acquire()
        raise AssertionError("a renewed lease was stolen")
    except Exception as exc:
        assert "is held by" in str(exc)
    holder.release()


def test_two_concurrent_applies_never_interleave_writes(seeded_workspace, tmp_path):
    ws = seeded_workspace
    docs = base_documents()
    path = write(tmp_path, docs)
    ws.set_update_seconds(0.5)
    results = {}

    def apply(name):
        results[name] = run(ws, "apply", path, "--auto-approve", "--lock-timeout", "30s")

    first = threading.Thread(target=apply, args=("a",))
    first.start()
    time.sleep(0.05)
    apply("b")
    first.join()
    assert results["a"].code == 0 and results["b"].code == 0, (results["a"].err, results["b"].err)
    creates = [r for r in ws.requests() if r["method"] == "POST" and r["path"] == "/api/2.0/serving-endpoints"]
    assert len(creates) == 1  # the second run waited, then found nothing left to do
    model(docs)  # the documents are unchanged


def test_a_lock_held_elsewhere_fails_apply_with_one_line(seeded_workspace, tmp_path):
    holder = ApplyLock(connect(seeded_workspace), None, timeout_seconds=0)
    holder.acquire()
    result = run(seeded_workspace, "apply", write(tmp_path, base_documents()), "--auto-approve")
    holder.release()
    assert result.code == 1 and len(result.err.strip().splitlines()) == 1 and "is held by" in result.err


# ---- renewal against the real overwrite behaviour, fencing, and files that are not leases --------------

def lock_requests(ws, path):
    """The lock file's requests in the log: (method, api path, format, overwrite, status)."""
    return [(r["method"], r["path"], (r["body"] or {}).get("format"), (r["body"] or {}).get("overwrite"), r["status"])
            for r in ws.requests() if (r["body"] or {}).get("path") == path or r["query"].get("path") == path]


def test_renewals_are_raw_overwrites_which_the_workspace_accepts(workspace):
    """Real workspaces refuse `format: AUTO, overwrite: true` on an existing file (databricks/cli#3386),
    and so does the local workspace; the lease is renewed with RAW, which they accept."""
    ws = connect(workspace)
    holder = ApplyLock(ws, "s", timeout_seconds=0, lease_seconds=1.0, renew_every_seconds=0.1, margin_seconds=0.3)
    holder.acquire()
    assert not ws.create_file(holder.path, b"{}", overwrite=True)  # AUTO over a file: RESOURCE_ALREADY_EXISTS
    deadline = time.monotonic() + 30
    while len([r for r in lock_requests(workspace, holder.path) if r[2] == "RAW"]) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    holder.release()
    imports = [r for r in lock_requests(workspace, holder.path) if r[1] == "/api/2.0/workspace/import"]
    assert imports[0][2:] == ("AUTO", False, 200)  # taken: create-if-absent
    assert imports[1][2:] == ("AUTO", True, 400)  # the AUTO overwrite above, refused
    renewals = imports[2:]
    assert len(renewals) >= 3 and all(r[2:] == ("RAW", True, 200) for r in renewals), renewals
    assert lock_requests(workspace, holder.path)[-1][:2] == ("POST", "/api/2.0/workspace/delete")


def test_a_lease_is_kept_for_more_than_three_lease_periods(workspace):
    holder = ApplyLock(connect(workspace), "s", timeout_seconds=0, lease_seconds=1.5, renew_every_seconds=0.25,
                       margin_seconds=0.3)
    holder.acquire()
    started = time.monotonic()
    refusals = 0
    while time.monotonic() - started < 3.5 * holder.lease:
        holder.fence()  # raises LeaseLost if it ran out
        contender = ApplyLock(connect(workspace), "s", timeout_seconds=0)
        try:
            contender.acquire()
            raise AssertionError("a renewed lease was taken")
        except ReconcilerError as exc:
            assert "is held by" in str(exc)
            refusals += 1
        time.sleep(0.2)
    holder.release()
    assert refusals >= 3 and connect(workspace).read_file(holder.path) is None


def test_a_lease_taken_over_stops_the_old_holders_writes(workspace):
    """The old holder stalled past its lease; another run took it over. The old holder's fence now
    refuses every write, and its renewer never overwrites the new holder's lease."""
    ws = connect(workspace)
    old = ApplyLock(ws, None, timeout_seconds=0, lease_seconds=0.6, renew_every_seconds=0.1, margin_seconds=0.2)
    old.acquire()
    with old._mutex:  # a stall: nothing of the old holder runs, its renewer included
        time.sleep(0.8)
        thief = ApplyLock(connect(workspace), None, timeout_seconds=0)
        thief.acquire()
    with pytest.raises(LeaseLost, match="lease lost"):
        old.fence()
    with pytest.raises(LeaseLost):
        ws.patch_tags("support-agent", add={"a": "b"}, delete=[])  # refused before any request
    time.sleep(0.3)  # the renewer's next turn
    old.release()
    assert json.loads(connect(workspace).read_file(thief.path))["token"] == thief.token
    assert not [r for r in workspace.requests() if r["path"].startswith("/api/2.0/serving-endpoints")]
    thief.release()


@pytest.mark.parametrize("content, why", [
    (b"team notes: do not delete", "not JSON"),
    (json.dumps({"holder": "x", "token": "t", "host": "h", "pid": 1, "expires_at": "soon"}).encode(),
     "'expires_at' is missing or not a number"),
    (json.dumps(["a", "list"]).encode(), "not a JSON object"),
    (b"# Databricks notebook source\nprint(1)\n", "not JSON"),
])
def test_a_file_at_the_lock_path_that_is_not_a_lease_is_left_alone(seeded_workspace, tmp_path, content, why):
    ws = connect(seeded_workspace)
    path = f"{LOCK_DIR}/default.json"
    assert ws.create_file(path, content, overwrite=False)
    before = ws.read_file(path)
    seeded_workspace.reset_requests()
    result = run(seeded_workspace, "apply", write(tmp_path, base_documents()), "--auto-approve")
    assert result.code == 1 and len(result.err.strip().splitlines()) == 1, result.err
    assert f"apply lock {path}: the file there is not a reconciler lease ({why})" in result.err
    assert f"databricks workspace delete {path}" in result.err and "Traceback" not in result.err
    assert ws.read_file(path) == before
    assert [r for r in lock_requests(seeded_workspace, path) if r[1] != "/api/2.0/workspace/export"] == [
        ("POST", "/api/2.0/workspace/import", "AUTO", False, 400)]  # only the create-if-absent, refused
    assert writes(seeded_workspace) == []


def test_a_stack_that_would_leave_the_lock_directory_is_refused(seeded_workspace, tmp_path):
    ws = connect(seeded_workspace)
    theirs = "/Users/someone/team-config"
    assert ws.create_file(theirs, b"their config", overwrite=False)
    seeded_workspace.reset_requests()
    result = run(seeded_workspace, "apply", write(tmp_path, base_documents()), "--auto-approve",
                 "--stack", "../../../Users/someone/team-config")
    assert result.code == 1 and len(result.err.strip().splitlines()) == 1, result.err
    assert "--stack: '../../../Users/someone/team-config' is not a valid stack name" in result.err
    assert seeded_workspace.requests() == [] and ws.read_file(theirs) == b"their config"
    seeded_workspace.reset_requests()
    with pytest.raises(ReconcilerError, match="not a valid stack name"):
        ApplyLock(ws, "../x", timeout_seconds=0)
    with pytest.raises(ReconcilerError, match="not a valid workspace path"):
        ws.delete_file("/Shared/.reconciler/locks/../../../Users/someone/team-config")
    assert seeded_workspace.requests() == []


def test_an_apply_longer_than_three_lease_periods_keeps_its_lease(seeded_workspace, tmp_path):
    """A 2 s lease and an endpoint create that takes 7 s: renewed all along, never lost."""
    ws = seeded_workspace
    ws.set_update_seconds(7)
    result = run(ws, "apply", write(tmp_path, base_documents()), "--auto-approve",
                 env={"RECONCILER_LEASE_SECONDS": "2"})
    assert result.code == 0, result.out + result.err
    path = f"{LOCK_DIR}/default.json"
    log = lock_requests(ws, path)
    renewals = [r for r in log if r[2] == "RAW"]
    assert len(renewals) >= 3 and all(r[4] == 200 for r in renewals)
    assert log[-1][:2] == ("POST", "/api/2.0/workspace/delete") and connect(ws).read_file(path) is None
