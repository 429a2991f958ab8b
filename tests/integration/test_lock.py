"""The apply lock: a lease file created atomically through the Workspace API."""

from __future__ import annotations

import json
import threading
import time

from harness import base_documents, model, run, write

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
