"""Smoke queries (reconciler/smoke.py): the JSON path subset, the request bodies, and how answers are
judged. The answers are the local workspace's own (localworkspace/answers.py), so the checks read
what a served agent sends."""

from __future__ import annotations

import pytest

from reconciler import smoke
from reconciler.localworkspace import answers
from reconciler.localworkspace.queries import parse_query

SERVED = answers.Served(endpoint="support-agent", entity="champion-v4", model="main.agents.support_agent",
                        version="4", resources={"vector_search_index": ["main.agents.docs_index"]})
ASK = {"messages": [{"role": "user", "content": "What is MLflow?"}], "databricks_options": {"return_trace": True}}


def expect(**changes):
    return {"status": 200, "max_latency_ms": None, "json": [], "no_span_errors": True, **changes}


def answer(reply="MLflow is an open source platform.", failure=None):
    query = parse_query("invocations", ASK)
    body = answers.success_body(query, SERVED, reply, request_id="r1", created=0, trace=None)
    trace = answers.trace(query, SERVED, request_id="r1", start_ns=0, end_ns=10, output=body, failure=failure)
    return answers.with_extras(body, query, trace)


@pytest.mark.parametrize("path, parts, reason", [
    ("$.choices[0].message.content", ["choices", 0, "message", "content"], "dots and an index"),
    ("$['databricks_output'][\"trace\"]", ["databricks_output", "trace"], "quoted names"),
    ("$.output[-1]", ["output", -1], "a negative index counts from the end"),
    ("$", [], "the whole answer"),
])
def test_parse_path(path, parts, reason):
    assert smoke.parse_path(path) == parts, reason


@pytest.mark.parametrize("path, reason", [
    ("choices[0]", "no leading $"),
    ("$.choices[*]", "wildcards are not in the subset"),
    ("$..content", "recursive descent is not in the subset"),
    ("$.a b", "a space"),
])
def test_parse_path_refuses(path, reason):
    with pytest.raises(ValueError):
        smoke.parse_path(path)


@pytest.mark.parametrize("request_, body, reason", [
    ({"messages": ASK["messages"], "custom_inputs": {"session_id": "s"}},
     {"messages": ASK["messages"], "custom_inputs": {"session_id": "s"}}, "chat, with custom_inputs"),
    ({"input": "hi", "databricks_options": {"return_trace": True}},
     {"input": "hi", "databricks_options": {"return_trace": True}}, "Responses input, with a trace asked"),
    ({"body": {"dataframe_records": [{"q": "a"}]}}, {"dataframe_records": [{"q": "a"}]}, "a raw /invocations body"),
])
def test_request_body(request_, body, reason):
    assert smoke.request_body(request_) == body, reason


def test_a_good_answer_passes_every_check():
    checks = [{"path": "$.choices[0].message.content", "op": "matches", "value": "(?i)mlflow"},
              {"path": "$.choices[0].message.role", "op": "equals", "value": "assistant"},
              {"path": "$.choices[0].message.content", "op": "contains", "value": "open source"},
              {"path": "$.databricks_output.trace", "op": "exists", "value": True},
              {"path": "$.error_code", "op": "exists", "value": False}]
    assert smoke.judge(expect(json=checks, max_latency_ms=1000), True, 200, answer(), 15) == []


@pytest.mark.parametrize("status, body, latency, expectation, found, reason", [
    (500, {"error_code": "INTERNAL_ERROR", "message": "boom"}, 5, expect(), "status 500, expected 200",
     "a failed query"),
    (200, "answer", 2500, expect(max_latency_ms=1000), "answered in 2500 ms, more than max_latency_ms 1000",
     "too slow"),
    (200, "answer", 5, expect(json=[{"path": "$.choices[0].message.content", "op": "matches", "value": "(?i)spark"}]),
     "$.choices[0].message.content is \"MLflow is an open source platform.\", which does not match '(?i)spark'",
     "content that does not match"),
    (200, "answer", 5, expect(json=[{"path": "$.choices[3]", "op": "exists", "value": True}]),
     "$.choices[3] is missing", "a path that is not there"),
    (200, "answer", 5, expect(json=[{"path": "$.object", "op": "equals", "value": "response"}]),
     "$.object is \"chat.completion\", expected \"response\"", "a wrong value"),
    (200, "degraded", 5, expect(), "span \"main.agents.docs_index\" in error: \"PERMISSION_DENIED",
     "a 200 whose trace shows a failed call"),
    (200, {"choices": []}, 5, expect(), "asked for a trace (databricks_options.return_trace), the answer has none",
     "a trace asked for and not given"),
])
def test_judge_names_what_is_wrong(status, body, latency, expectation, found, reason):
    if body == "answer":
        body = answer()
    elif body == "degraded":
        body = answer("Sorry.", answers.Failure(200, "", "PERMISSION_DENIED: no access", "main.agents.docs_index"))
    wrong = smoke.judge(expectation, True, status, body, latency)
    assert any(w.startswith(found) for w in wrong), (reason, wrong)


def test_span_errors_are_not_checked_when_told_not_to():
    degraded = answer("Sorry.", answers.Failure(200, "", "denied", "main.agents.docs_index"))
    assert smoke.judge(expect(no_span_errors=False), True, 200, degraded, 5) == []


@pytest.mark.parametrize("check, problem, reason", [
    ({"path": "content", "op": "exists", "value": True}, "path", "a path without $"),
    ({"path": "$.a", "op": "matches", "value": "(unclosed"}, "matches", "a regular expression that does not compile"),
    ({"path": "$.a", "op": "exists", "value": "yes"}, "exists", "exists takes a boolean"),
    ({"path": "$.a", "op": "equals", "value": None}, None, "equals null is a valid check"),
])
def test_check_problem(check, problem, reason):
    found = smoke.check_problem(check)
    assert (found[0] if found else None) == problem, reason
