"""An apply stalled past its lease (SIGSTOP), whose lease another apply then takes, must not write
again once it runs on (SIGCONT): the lease fences every write (reconciler/lock.py).

The stalled run is a real `reconciler apply` process with a 3 s lease, calling as its own user
(`stalled@example.com`), so the request log tells its requests from the other run's. It is stopped
at three points: while it waits for its endpoint update, between two writes (the first one landed,
its answer held back by the local workspace until the process is stopped), and while it waits to
retry a write the workspace answered 503. The evidence is the request log: no request from the
stalled run that writes anything (lease file included) was received after the other run's
create-if-absent of the lease landed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import MODEL, SEED, base_documents, endpoint, model, run, write

RECONCILER = str(Path(sys.executable).parent / "reconciler")
STALLED = "stalled@example.com"
TAGS = ("PATCH", "/api/2.0/serving-endpoints/support-agent/tags")
CONFIG = ("PUT", "/api/2.0/serving-endpoints/support-agent/config")


@pytest.fixture
def deployed(make_workspace, tmp_path):
    ws = make_workspace(SEED)
    ws.add_seed({"users": [{"user_name": STALLED, "admin": True, "tokens": ["stalled-token"]}],
                 "grants": [{"securable_type": "function", "full_name": MODEL, "principal": STALLED,
                             "privileges": ["EXECUTE"]}]})
    assert run(ws, "apply", write(tmp_path, base_documents(), "base.yaml"), "--auto-approve").code == 0
    ws.reset_requests()
    return ws


def wait_for(condition, what: str, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def landed(ws, method: str, path: str, identity: str, **where):
    return [r for r in ws.requests() if (r["method"], r["path"], r["identity"]) == (method, path, identity)
            and all(r.get(k) == v for k, v in where.items())]


def stall_and_take_over(ws, tmp_path, stalled_docs, stop_when, *, on_stopped=None, other_docs=None):
    """Start the stalled run, SIGSTOP it once `stop_when()` holds, let another apply (of the example
    manifests, or `other_docs`: it must have something to apply, or it takes no lease) take the
    lease and finish, SIGCONT the stalled run and let it end."""
    path = write(tmp_path, stalled_docs, "stalled.yaml")
    env = {**os.environ, "DATABRICKS_HOST": ws.url, "DATABRICKS_TOKEN": "stalled-token",
           "RECONCILER_LEASE_SECONDS": "3"}
    for key in ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        env.pop(key, None)
    stalled = subprocess.Popen([RECONCILER, "apply", path, "--auto-approve"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: stop_when() or stalled.poll() is not None, "the stall point")
        assert stalled.poll() is None, stalled.communicate()
        stalled.send_signal(signal.SIGSTOP)
        if on_stopped:
            on_stopped()
        other = run(ws, "apply", write(tmp_path, other_docs or base_documents(), "other.yaml"), "--auto-approve",
                    "--lock-timeout", "60s")
        assert other.code == 0, other.out + other.err
    finally:
        stalled.send_signal(signal.SIGCONT)
    out, err = stalled.communicate(timeout=120)
    [taken] = [r for r in ws.requests() if r["path"] == "/api/2.0/workspace/import" and r["identity"] != STALLED
               and (r["body"] or {}).get("overwrite") is False and r["status"] == 200]
    late = [(r["method"], r["path"]) for r in ws.requests() if r["identity"] == STALLED and r["method"] != "GET"
            and r["received_at"] > taken["received_at"]]
    return stalled.returncode, out, err, late


def assert_stopped_cleanly(code, err, late):
    assert late == [], f"the stalled run wrote after its lease was taken: {late}"
    assert code == 1 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "lease lost" in lines[0] and "stopped before the next write" in lines[0], err


def test_stalled_while_waiting_for_its_update(deployed, tmp_path):
    """The issue's run: champion 3 → 4; while the stalled run waits for its update, the other run
    puts champion back on version 3. Without the fence the stalled run then moved the alias to 4,
    since the challenger served version 4."""
    ws = deployed
    ws.set_update_seconds(3)
    docs = base_documents()
    model(docs)["spec"]["aliases"]["champion"] = 4
    code, out, err, late = stall_and_take_over(ws, tmp_path, docs,
                                               lambda: landed(ws, *CONFIG, STALLED, status=200))
    assert_stopped_cleanly(code, err, late)
    aliases = {a.alias_name: a.version_num for a in ws.client().registered_models.get(MODEL, include_aliases=True).aliases}
    assert aliases["champion"] == 3


def test_stalled_between_two_writes(deployed, tmp_path):
    ws = deployed
    docs = base_documents()
    endpoint(docs)["spec"]["tags"]["team"] = "cx"
    endpoint(docs)["spec"]["ai_gateway"]["inference_table_config"]["enabled"] = False  # a second write
    hold = ws.hold_answer(*TAGS)  # the tag write lands; its answer waits until the run is stopped
    code, out, err, late = stall_and_take_over(ws, tmp_path, docs, hold.reached.is_set, on_stopped=hold.release)
    assert_stopped_cleanly(code, err, late)
    assert landed(ws, *TAGS, STALLED, status=200)  # the first write landed before the stall...
    assert not landed(ws, "PUT", "/api/2.0/serving-endpoints/support-agent/ai-gateway", STALLED)  # ...not the second


def test_stalled_while_waiting_to_retry_a_write(deployed, tmp_path):
    ws = deployed
    docs = base_documents()
    endpoint(docs)["spec"]["tags"]["team"] = "cx"
    ws.set_faults(1.0, kinds=["503"], retry_after=1, max_faults=1, only=TAGS)
    other = base_documents()  # the stalled run's write did not land: the other run must change something
    endpoint(other)["spec"]["tags"]["team"] = "platform"
    code, out, err, late = stall_and_take_over(ws, tmp_path, docs,
                                               lambda: landed(ws, *TAGS, STALLED, fault="503"), other_docs=other)
    assert_stopped_cleanly(code, err, late)
    assert [r["status"] for r in ws.requests() if (r["method"], r["path"], r["identity"]) == (*TAGS, STALLED)] == [503]
