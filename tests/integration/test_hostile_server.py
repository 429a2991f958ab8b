"""A hostile workspace (tests/integration/hostile.py) against the real CLI and the unmodified SDK:
every malformed answer, a slow trickle, a huge Retry-After and reset connections end in one clear
line (`object: operation: cause`, or `unexpected answer from HOST to CALL: what was wrong`), exit
1, within the bound, never a traceback or an internal error; names from its answers never leave
`--out`, and its echo of the token is never printed.

Ceilings on time are generous (shared 2-core machines): they prove "bounded", not "fast".
"""

from __future__ import annotations

import json
import re
import time

import pytest
from harness import base_documents, model, run, write
from hostile import json_answer, nested, raw_answer, reset, truncated

ENDPOINT = "/api/2.0/serving-endpoints/support-agent"
BUDGET = {"RECONCILER_RETRY_SECONDS": "4", "RECONCILER_RESPONSE_SECONDS": "3"}
CEILING = 60.0  # seconds: the bound above is ~4 s; this only catches a hang


def documents() -> list[dict]:
    """The example deployment with its challenger pinned to a registered version: the hostile
    server knows no logged agents, so the example's `models:/m-...` challenger would add a second,
    unrelated line (its registration read) to every answer checked here."""
    found = base_documents()
    model(found)["spec"]["aliases"]["challenger"] = 2
    return found


def one_line(result, started: float) -> str:
    elapsed = time.monotonic() - started
    lines = [line for line in result.err.splitlines() if not line.startswith("[")]  # progress lines start "[ 1.0s]"
    assert result.code == 1, result.out + result.err
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err + result.out and "internal error" not in result.err
    assert elapsed < CEILING, f"took {elapsed:.0f}s"
    return lines[0]


@pytest.mark.parametrize("answer, expected", [
    (json_answer([1, 2]), "the answer is an array, expected an object"),
    (json_answer({"name": "support-agent", "state": "READY"}), "state is a string, expected an object"),
    (json_answer({"name": "support-agent", "config": {"served_entities": {"a": 1}}}),
     "config.served_entities is an object, expected an array"),
    (json_answer({"id": "abc"}), "name is missing"),
    (json_answer({"name": 7}), "name is a number, expected a string"),
    (raw_answer(b'"hello"'), "TypeError"),
    (raw_answer(nested(100)), "nested more than 64 levels deep"),
    (raw_answer(nested(100_000)), "nested too deeply"),
    (raw_answer(b"<html><body>Sign in</body></html>", content_type="text/html"),
     "does not look like a Databricks workspace: it answered with an HTML page (HTTP 200 OK)"),
    (raw_answer(b"\xff\xfe\x00 binary"), "not JSON"),
    (raw_answer(b"<html>gateway</html>", status=502, content_type="text/html"), "without a Databricks error body"),
    (truncated, "the answer was cut short after 20 bytes (980 more were promised)"),
], ids=["array", "wrong-type", "list-as-object", "missing-key", "number-as-name", "json-string", "deep",
        "absurdly-deep", "html", "binary", "html-502", "truncated"])
def test_a_malformed_answer_is_one_line(hostile, tmp_path, answer, expected):
    hostile.answer("GET", ENDPOINT, answer)
    started = time.monotonic()
    line = one_line(run(hostile, "plan", write(tmp_path, documents()), env=BUDGET), started)
    assert line.startswith("serving_endpoint.support-agent: ") and expected in line, line
    if "TypeError" not in expected and "without" not in expected and "look like" not in expected:
        assert f"unexpected answer from {hostile.url} to get: " in line, line


def test_a_trickling_server_cannot_hold_a_call(hostile, tmp_path):
    """One byte every second, never finishing: each attempt ends at the response bound (3 s here),
    and a retry after the dropped answer (from 0.2 s) gets what is left of the 4 s budget."""
    hostile.answer("GET", ENDPOINT, hostile.trickle(every=1.0))
    started = time.monotonic()
    line = one_line(run(hostile, "plan", write(tmp_path, documents()), env=BUDGET), started)
    assert "no complete answer within 3s" in line or \
        re.search(r"gave up after \d attempt\(s\) in 4s: no complete answer within [0-3]s", line), line


def test_the_deadline_bounds_a_call_whatever_its_budgets(hostile, tmp_path):
    hostile.answer("GET", ENDPOINT, hostile.trickle(every=1.0))
    started = time.monotonic()
    line = one_line(run(hostile, "plan", write(tmp_path, documents()), "--deadline", "4s",
                        env={"RECONCILER_RETRY_SECONDS": "300", "RECONCILER_RESPONSE_SECONDS": "60"}), started)
    assert "before the run's --deadline" in line, line


def test_a_huge_retry_after_ends_the_call_at_once_quoting_the_server(hostile, tmp_path):
    hostile.answer("GET", ENDPOINT, json_answer({"error_code": "TOO_MANY_REQUESTS", "message": "slow down"}, 429,
                                                **{"Retry-After": "86400"}))
    started = time.monotonic()
    line = one_line(run(hostile, "plan", write(tmp_path, documents()),
                        env={"RECONCILER_RETRY_SECONDS": "300"}), started)
    assert "the server asks to retry after 86400s (Retry-After), more than the 300s left" in line, line
    assert len([r for r in hostile.requests if r[1] == ENDPOINT]) == 1  # no waiting, no second try


def test_a_retry_after_longer_than_the_deadline_ends_the_call_too(hostile, tmp_path):
    hostile.answer("GET", ENDPOINT, json_answer({"error_code": "TOO_MANY_REQUESTS", "message": "slow down"}, 429,
                                                **{"Retry-After": "600"}))
    started = time.monotonic()
    line = one_line(run(hostile, "plan", write(tmp_path, documents()), "--deadline", "2m",
                        env={"RECONCILER_RETRY_SECONDS": "3600"}), started)
    assert "retry after 600s (Retry-After)" in line and "before the run's --deadline" in line, line


def test_reset_connections_are_retried_within_the_budget_then_named(hostile, tmp_path):
    hostile.answer("GET", ENDPOINT, reset)
    started = time.monotonic()
    result = run(hostile, "plan", write(tmp_path, documents()), env=BUDGET)
    line = one_line(result, started)
    assert "gave up after" in line and f"connection reset by {hostile.url}" in line, line
    retries = [r for r in result.err.splitlines() if "retrying in" in r]  # each retry says so (CI logs)
    assert retries and all("connection reset" in r for r in retries)
    assert len([r for r in hostile.requests if r[1] == ENDPOINT]) == len(retries) + 1


def test_a_workspace_that_stopped_answering_fails_later_calls_at_once(hostile):
    """After one call waited out a whole budget on a dead host, the next fails without waiting."""
    from databricks.sdk import WorkspaceClient

    from reconciler.errors import Unreachable
    from reconciler.workspace import Workspace

    hostile.answer("GET", ENDPOINT, reset)
    hostile.answer("GET", "/api/2.0/serving-endpoints/other", reset)
    ws = Workspace(WorkspaceClient(host=hostile.url, token=hostile.token), retry_seconds=4, response_seconds=3)
    with pytest.raises(Unreachable):
        ws.get_endpoint("support-agent")
    before = len(hostile.requests)
    with pytest.raises(Unreachable) as raised:
        ws.get_endpoint("other")
    assert len(hostile.requests) == before and "stopped answering: connection reset" in str(raised.value)


def test_a_write_that_gets_no_answer_says_it_may_have_landed(hostile):
    from databricks.sdk import WorkspaceClient

    from reconciler.errors import Unreachable
    from reconciler.workspace import Workspace

    hostile.answer("PUT", ENDPOINT + "/config", hostile.trickle(every=1.0))
    ws = Workspace(WorkspaceClient(host=hostile.url, token=hostile.token), retry_seconds=30, response_seconds=2)
    started = time.monotonic()
    with pytest.raises(Unreachable) as raised:
        ws.update_config("support-agent", {"served_entities": []})
    assert time.monotonic() - started < CEILING
    assert "no complete answer within 2s" in str(raised.value) and "may or may not have landed" in str(raised.value)
    assert len([r for r in hostile.requests if r[0] == "PUT"]) == 1  # a write is never sent twice blindly


def test_an_answer_echoing_the_token_is_not_printed(hostile, tmp_path):
    hostile.answer("GET", ENDPOINT, json_answer({"error_code": "UNAUTHENTICATED", "message":
                                                 f"bad header Authorization: Bearer {hostile.token}"}, 401))
    started = time.monotonic()
    line = one_line(run(hostile, "plan", write(tmp_path, documents()), env=BUDGET), started)
    assert "authentication failed (401 UNAUTHENTICATED)" in line and hostile.token[4:20] not in line, line


def test_a_host_without_a_scheme_is_refused_at_once(hostile, tmp_path):
    started = time.monotonic()
    line = one_line(run(hostile, "plan", write(tmp_path, documents()),
                        env={"DATABRICKS_HOST": hostile.url.removeprefix("http://")}), started)
    assert "has no scheme; write https://" in line, line
    assert hostile.requests == []


def test_a_token_with_a_line_break_is_refused_without_printing_it(hostile, tmp_path):
    started = time.monotonic()
    result = run(hostile, "plan", write(tmp_path, documents()), env={"DATABRICKS_TOKEN": hostile.token + "\n"})
    line = one_line(result, started)
    assert "token" in line and "line break" in line and hostile.token[4:20] not in result.err + result.out, line


def test_a_password_in_the_host_is_never_printed_nor_saved(hostile, seeded_workspace, tmp_path):
    """`user:password@` in DATABRICKS_HOST reaches neither the output nor the plan's workspace_host."""
    hostile.answer("GET", ENDPOINT, json_answer([1]))  # a failure, so the host is quoted in the message
    result = run(hostile, "plan", write(tmp_path, documents()),
                 env={"DATABRICKS_HOST": hostile.url.replace("http://", "http://deployer:Pa55-w0rd-Secret@")})
    assert result.code == 1 and "Pa55-w0rd-Secret" not in result.out + result.err
    assert hostile.url in result.err  # the host is shown, without its credentials
    saved = tmp_path / "plan.json"
    host = seeded_workspace.url.replace("http://", "http://deployer:Pa55-w0rd-Secret@")
    result = run(seeded_workspace, "plan", write(tmp_path, base_documents()), "--out", str(saved), "--format", "json",
                 env={"DATABRICKS_HOST": host})
    assert result.code == 0, result.err
    assert "Pa55-w0rd-Secret" not in result.out + result.err + saved.read_text()
    assert json.loads(saved.read_text())["workspace_host"] == seeded_workspace.url


# ---- export: names from answers never leave --out ------------------------------------------------

def served_endpoint(name: str, model: str = "main.agents.support_agent") -> dict:
    return {"name": name, "id": "e1", "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
            "config": {"served_entities": [{"name": "champion", "entity_name": model, "entity_version": "3"}],
                       "traffic_config": {"routes": [{"served_entity_name": "champion", "traffic_percentage": 100}]}}}


def outside(tmp_path) -> list[str]:
    """Files written anywhere in tmp_path but under out/."""
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                  if p.is_file() and not p.relative_to(tmp_path).parts[0] == "out")


def test_export_refuses_a_model_answered_under_another_name(hostile, tmp_path):
    hostile.answer("GET", "/api/2.1/unity-catalog/models/main.agents.support_agent",
                   json_answer({"full_name": "../../../../x", "aliases": []}))
    hostile.answer("GET", ENDPOINT, json_answer(served_endpoint("support-agent")))
    hostile.answer("GET", "/api/2.0/permissions/serving-endpoints/e1", json_answer({"access_control_list": []}))
    out = tmp_path / "out"
    result = run(hostile, "export", "--model", "main.agents.support_agent", "--endpoint", "support-agent",
                 "--out", str(out), env=BUDGET)
    assert result.code == 1 and "Traceback" not in result.err
    assert "registered_model.main.agents.support_agent: the workspace answered for another name" in result.err
    assert outside(tmp_path) == [] and not (tmp_path.parent / "x.yaml").exists()
    assert (out / "endpoints" / "support-agent.yaml").is_file()  # what could be exported still is


def test_export_refuses_an_endpoint_answered_under_another_name(hostile, tmp_path):
    hostile.answer("GET", ENDPOINT, json_answer(served_endpoint("../../../../x")))
    result = run(hostile, "export", "--endpoint", "support-agent", "--out", str(tmp_path / "out"), env=BUDGET)
    assert result.code == 1 and "serving_endpoint.support-agent: the workspace answered for another name" in result.err
    assert outside(tmp_path) == [] and not list((tmp_path / "out").rglob("*.yaml")) if (tmp_path / "out").exists() \
        else outside(tmp_path) == []


def test_export_refuses_listed_names_outside_the_grammar(hostile, tmp_path):
    hostile.answer("GET", "/api/2.0/serving-endpoints", json_answer({"endpoints": [
        {"name": "../../../../x"}, {"name": "support-agent"}]}))
    hostile.answer("GET", ENDPOINT, json_answer({**served_endpoint("support-agent"), "config": {
        "served_entities": [{"name": "ext", "external_model": {"provider": "openai", "name": "gpt"}}]}}))
    result = run(hostile, "export", "--all-endpoints", "--out", str(tmp_path / "out"), env=BUDGET)
    assert "serving_endpoints: the workspace lists an endpoint whose name '../../../../x' is not a valid endpoint " \
           "name" in result.err, result.err
    assert [r for r in hostile.requests if "x" in r[1].rsplit("/", 1)[-1] and ".." in r[1]] == []  # never asked for
    assert outside(tmp_path) == []
    assert (tmp_path / "out" / "endpoints" / "support-agent.unsupported.txt").is_file()


@pytest.mark.parametrize("signum, code", [(2, 130), (15, 143)])
def test_an_interrupt_abandons_a_slow_read_at_once(hostile, tmp_path, signum, code):
    """Ctrl-C while a read trickles in: no waiting out the response bound (60 s by default)."""
    import os
    import subprocess

    from harness import ROOT

    hostile.answer("GET", ENDPOINT, hostile.trickle(every=1.0))
    victim = subprocess.Popen([str(ROOT / ".venv" / "bin" / "reconciler"), "plan", write(tmp_path, documents())],
                              env={**os.environ, "DATABRICKS_HOST": hostile.url, "DATABRICKS_TOKEN": hostile.token},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(1200):  # until the read is in flight (a generous ceiling: 60 s)
        if ("GET", ENDPOINT) in hostile.requests or victim.poll() is not None:
            break
        time.sleep(0.05)
    sent = time.monotonic()
    victim.send_signal(signum)
    out, err = victim.communicate(timeout=CEILING)
    assert (victim.returncode, err.strip().splitlines()[-1:]) == (code, ["interrupted"]), err
    assert time.monotonic() - sent < 20 and "Traceback" not in err


def test_a_lease_whose_create_landed_unanswered_is_released_when_acquiring_fails(hostile, tmp_path):
    """Fault soak: the lease's create landed but every answer was lost until the budget ran out;
    the run failed to acquire, and left a lease behind in silence that blocked the next run."""
    from hostile import send

    stored: dict[str, str] = {}

    def create_then_hang_up(handler):
        stored["content"] = json.loads(handler.body)["content"]  # it landed...
        reset(handler)  # ...and the answer is lost

    def export(handler):
        if "content" not in stored:
            return send(handler, 404, b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such file"}')
        send(handler, 200, json.dumps({"content": stored["content"]}).encode())

    def delete(handler):
        stored.pop("content", None)
        send(handler, 200, b"{}")

    hostile.answer("POST", "/api/2.0/workspace/mkdirs", json_answer({}))
    hostile.answer("POST", "/api/2.0/workspace/import", create_then_hang_up)
    hostile.answer("GET", "/api/2.0/workspace/export", export)
    hostile.answer("POST", "/api/2.0/workspace/delete", delete)
    # The lock as apply takes it (api.apply), once its plan has something to apply: the hostile
    # server cannot answer a plan, so the lock is taken directly.
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    from reconciler.errors import ReconcilerError
    from reconciler.lock import ApplyLock
    from reconciler.workspace import Workspace

    workspace = Workspace(WorkspaceClient(config=Config(host=hostile.url, token=hostile.token, auth_type="pat")),
                          retry_seconds=3)
    with pytest.raises(ReconcilerError) as raised:
        ApplyLock(workspace, None, timeout_seconds=0).acquire()
    assert "workspace_file./Shared/.reconciler/locks/default.json: import: gave up" in str(raised.value)
    assert "content" not in stored, "the lease this run created was left behind"
