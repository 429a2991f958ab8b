"""Regression tests for what the reliability suite and the bench found, one per finding, each
failing before its fix (they run in `make test`)."""

from __future__ import annotations

import copy
import threading
import time

import soaklib
from integration.harness import run

from reconciler.lock import ApplyLock
from reconciler.workspace import Workspace


def apply_ok(ws, path, *extra):
    result = run(ws, "apply", path, "--auto-approve", *extra)
    assert result.code == 0, result.out + result.err
    return result


def test_a_lease_whose_create_answer_was_lost_is_taken_as_ours(workspace):
    """Fault soak: a dropped answer to the lease's create made the SDK retry meet its own landed
    create, and the run refused to start, "held by" itself (then every run of that process
    waited out the 120 s lease)."""
    lock = ApplyLock(Workspace(workspace.client()), "prod", timeout_seconds=0)
    assert Workspace(workspace.client()).create_file(lock.path, lock._content(), overwrite=False)  # the lost one
    lock.acquire()
    lock.release()
    assert Workspace(workspace.client()).read_file(lock.path) is None


def test_an_update_left_in_progress_is_waited_for_before_the_alias_moves(make_workspace, tmp_path):
    """Crash soak: a run killed after its config write left the update in progress; the next run
    saw the pending config already serving the new version, so it moved the alias at once,
    while the endpoint was still updating (and could yet fail)."""
    from databricks.sdk.service.serving import ServedEntityInput, TrafficConfig

    ws = make_workspace(soaklib.seed(), update_seconds=0.0)
    docs = soaklib.base_documents()
    apply_ok(ws, soaklib.write(tmp_path, docs))
    ws.set_update_seconds(0.5)
    client = ws.client()
    current = client.serving_endpoints.get(soaklib.ENDPOINT).config
    client.serving_endpoints.update_config(  # what the killed run had sent: champion on version 4
        soaklib.ENDPOINT, served_entities=[ServedEntityInput.from_dict(
            {**e.as_dict(), "entity_version": "4" if e.name == "champion" else e.entity_version})
            for e in current.served_entities], traffic_config=TrafficConfig.from_dict(current.traffic_config.as_dict()))
    next(d for d in docs if d["kind"] == "RegisteredModel")["spec"]["aliases"]["champion"] = 4
    ws.log_responses = True
    ws.reset_requests()
    apply_ok(ws, soaklib.write(tmp_path, docs))
    log = ws.requests()
    assert soaklib.unsafe_alias_moves(log, docs) == []
    assert [e["path"].rsplit("/", 1)[1] for e in soaklib.managed_writes(log)] == ["champion"]  # no config resent


def test_a_line_break_in_a_value_stays_inside_its_problem_line(workspace, tmp_path):
    """Fuzz: a route named "\\r" was echoed raw, splitting its problem over two lines."""
    docs = soaklib.base_documents()
    endpoint = next(d for d in docs if d["kind"] == "ServingEndpoint")
    endpoint["spec"]["traffic_config"]["routes"][1]["served_entity_name"] = "\r\x1b[31m"
    path = soaklib.write(tmp_path, docs)
    result = run(workspace, "validate", path)
    assert result.code == 1
    assert all(line.startswith(f"{path}:") for line in result.err.splitlines()), result.err
    assert "'\\r\\x1b[31m'" in result.err


def test_endpoints_waiting_for_their_updates_hold_no_parallelism_slot(make_workspace, tmp_path):
    """Bench: with --parallelism 16, 50 endpoints updated in waves of 16 (30 s for 5 s updates):
    a thread per endpoint waited inside the pool. --parallelism bounds API calls, not endpoints."""
    ws = make_workspace(soaklib.seed(), update_seconds=0.3)
    docs = soaklib.base_documents()
    endpoint = next(d for d in docs if d["kind"] == "ServingEndpoint")
    del endpoint["spec"]["permissions"]
    for i in (1, 2):
        twin = copy.deepcopy(endpoint)
        twin["metadata"]["name"] = f"{soaklib.ENDPOINT}-{i}"
        docs.append(twin)
    ws.log_responses = True
    apply_ok(ws, soaklib.write(tmp_path, docs), "--parallelism", "1")
    log = ws.requests()
    creates = [i for i, e in enumerate(log) if e["method"] == "POST" and e["path"] == "/api/2.0/serving-endpoints"]
    ours = {f"/api/2.0/serving-endpoints/{soaklib.ENDPOINT}{suffix}" for suffix in ("", "-1", "-2")}
    first_ready = next(i for i, e in enumerate(log) if e["method"] == "GET" and e["path"] in ours
                       and ((e["response"]["body"] or {}).get("state") or {}).get("config_update") == "NOT_UPDATING")
    assert len(creates) == 3 and creates[-1] < first_ready  # all three created before any finished


def test_a_lease_that_cannot_be_released_says_so(workspace, capsys):
    """Fault soak: a release that gave up under faults left the lease behind in silence, so the
    next run was refused ("held by") for up to two minutes with no hint why."""
    lock = ApplyLock(Workspace(workspace.client(retry_timeout_seconds=1)), "prod", timeout_seconds=0)
    lock.acquire()
    workspace.set_faults(1.0, kinds=["503"])
    lock.release()
    workspace.set_faults(0.0)
    err = capsys.readouterr().err
    assert err.startswith("warning: apply lock /Shared/.reconciler/locks/prod.json not released (") and \
        "expires within 120s" in err and len(err.splitlines()) == 1


def test_a_lease_taken_by_a_create_whose_answer_was_lost_is_given_back_when_acquire_fails(workspace, capsys):
    """Fault soak, run 41 of `make soak`: the lease's create landed, its answer was dropped, and the
    retry budget ran out; acquire failed, so the run never released a lease it held, and said
    nothing ("left the apply lock held without saying so")."""
    import pytest

    from reconciler.errors import ReconcilerError

    # A budget shorter than the first retry after a dropped connection (0.15 s at least,
    # workspace.network_backoff): the create's retry never comes, so acquire fails.
    lock = ApplyLock(Workspace(workspace.client(), retry_seconds=0.1), "prod", timeout_seconds=0)
    workspace.set_faults(1.0, kinds=["drop_after"], max_faults=1, only=("POST", "/api/2.0/workspace/import"))
    with pytest.raises(ReconcilerError, match="import"):
        lock.acquire()
    workspace.set_faults(0.0)
    assert [r["fault"] for r in workspace.requests() if r["path"] == "/api/2.0/workspace/import"] == ["drop_after"]
    assert Workspace(workspace.client()).read_file(lock.path) is None  # given back
    assert capsys.readouterr().err == ""


def test_a_release_waits_for_a_renewal_in_flight(workspace):
    """Fault soak: a renewal still in flight when the release deleted the lease landed after it and
    wrote the lease again (a RAW overwrite creates a missing file), which nobody then released."""
    lock = ApplyLock(Workspace(workspace.client()), "prod", timeout_seconds=0, lease_seconds=30,
                     renew_every_seconds=0.05, margin_seconds=1)
    lock.acquire()
    hold = workspace.hold_answer("POST", "/api/2.0/workspace/import")  # the next renewal's write
    assert hold.reached.wait(30)
    releasing = threading.Thread(target=lock.release)
    releasing.start()
    time.sleep(0.3)
    assert releasing.is_alive()  # the release waits for the renewal...
    hold.release()
    releasing.join(30)
    log = [(r["method"], r["path"], (r["body"] or {}).get("format")) for r in workspace.requests()
           if r["method"] == "POST" and r["path"].startswith("/api/2.0/workspace/")]
    assert log[-2:] == [("POST", "/api/2.0/workspace/import", "RAW"), ("POST", "/api/2.0/workspace/delete", None)]
    time.sleep(0.2)  # ...and no renewal comes after it
    assert Workspace(workspace.client()).read_file(lock.path) is None
