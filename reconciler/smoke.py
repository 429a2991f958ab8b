"""Smoke queries: what a rollout sends to a new served entity before it takes any traffic, and how
the answer is judged.

Pure: `request_body` builds the request a manifest's smoke query describes, `parse_path` and
`lookup` read a JSON path, `judge` lists what is wrong with an answer. The call itself is
`Workspace.query_entity` (the per-entity route), made by rollout.py, which also turns the failures
into the evidence a failed rollout prints. Manifest checks (checks.py) use `parse_path` and
`check_problem` so that a path or regular expression that cannot work is refused offline.

The request formats are the ones the seed documents query agents with and MLflow's scoring server
accepts: chat `messages`, Responses API `input`, or a raw /invocations `body`; plus
`custom_inputs` and `databricks_options: {return_trace: true}` (localworkspace/queries.py cites
them). With a trace asked for, the answer carries it at `databricks_output.trace` (the keys MLflow
reads back, `mlflow/tracing/constant.py`), and each span's `status.code` is OpenTelemetry's
`STATUS_CODE_ERROR` when the span failed (`mlflow/entities/span_status.py`; MLflow 2 traces wrote
`ERROR`).
"""

from __future__ import annotations

import json
import re
from typing import Any

OPERATORS = ("exists", "equals", "contains", "matches")
ERROR_SPAN_CODES = ("STATUS_CODE_ERROR", "ERROR")
EXCERPT_CHARS = 300
_MISSING = object()
# A JSONPath subset: `$` then `.name`, `[3]`, `[-1]` or `['name']` / `["name"]`, as many as needed.
_SEGMENT = re.compile(r"""\.([A-Za-z_][A-Za-z0-9_-]*)|\[(-?[0-9]+)\]|\['([^']*)'\]|\["([^"]*)"\]""")


def parse_path(text: str) -> list[str | int]:
    """The keys and indexes of a JSON path; ValueError says what is wrong."""
    if not text.startswith("$"):
        raise ValueError(f"JSON path {text!r} does not start with $; write it like $.choices[0].message.content")
    parts: list[str | int] = []
    at = 1
    while at < len(text):
        match = _SEGMENT.match(text, at)
        if match is None:
            raise ValueError(f"JSON path {text!r}: cannot read {text[at:at + 20]!r}; use .name, [index] or ['name']")
        name, index, single, double = match.groups()
        parts.append(int(index) if index is not None else next(p for p in (name, single, double) if p is not None))
        at = match.end()
    return parts


def lookup(value: Any, parts: list[str | int]) -> Any:
    """The value at the path, or `_MISSING`."""
    for part in parts:
        if isinstance(part, int) and isinstance(value, list) and -len(value) <= part < len(value):
            value = value[part]
        elif isinstance(part, str) and isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return _MISSING
    return value


def check_problem(check: dict[str, Any]) -> tuple[str, str] | None:
    """(the field, what is wrong) with a normalised JSON check ({path, op, value}), offline."""
    try:
        parse_path(check["path"])
    except ValueError as exc:
        return "path", str(exc)
    if check["op"] == "matches":
        if not isinstance(check["value"], str):
            return "matches", "matches is not a string; write a regular expression in quotes"
        try:
            re.compile(check["value"])
        except re.error as exc:
            return "matches", f"matches: {check['value']!r} is not a regular expression ({exc}); fix the pattern"
    if check["op"] == "exists" and not isinstance(check["value"], bool):
        return "exists", "exists is neither true nor false; write exists: true or exists: false"
    return None


def request_body(request: dict[str, Any]) -> dict[str, Any]:
    """The /invocations body of a smoke request: its messages, input or body, with custom_inputs
    and databricks_options added."""
    if request.get("body") is not None:
        body = dict(request["body"])
    elif request.get("messages") is not None:
        body = {"messages": request["messages"]}
    else:
        body = {"input": request.get("input")}
    for key in ("custom_inputs", "databricks_options"):
        if request.get(key) is not None:
            body[key] = request[key]
    return body


def judge(expect: dict[str, Any], asked_trace: bool, status: int | None, body: Any, latency_ms: float) -> list[str]:
    """What is wrong with an answer, one phrase each; empty when it passes. `expect` is normalised
    (rollout.spec_json): status, max_latency_ms, json [{path, op, value}], no_span_errors."""
    wrong = []
    if status != expect["status"]:
        wrong.append(f"status {status if status is not None else 'unknown'}, expected {expect['status']}")
    if expect.get("max_latency_ms") is not None and latency_ms > expect["max_latency_ms"]:
        wrong.append(f"answered in {latency_ms:.0f} ms, more than max_latency_ms {expect['max_latency_ms']}")
    for check in expect.get("json") or []:
        problem = _check_json(check, body)
        if problem:
            wrong.append(problem)
    if expect.get("no_span_errors", True) and asked_trace:
        wrong += _span_errors(body, status)
    return wrong


def _check_json(check: dict[str, Any], body: Any) -> str | None:
    path, op, expected = check["path"], check["op"], check["value"]
    found = lookup(body, parse_path(path))
    if op == "exists":
        if (found is not _MISSING) != expected:
            return f"{path} {'is missing' if expected else 'is present'}"
        return None
    if found is _MISSING:
        return f"{path} is missing"
    if op == "equals" and found != expected:
        return f"{path} is {excerpt(found, 80)}, expected {excerpt(expected, 80)}"
    if op == "contains":
        holds = expected in found if isinstance(found, list) else \
            isinstance(found, str) and isinstance(expected, str) and expected in found
        if not holds:
            return f"{path} is {excerpt(found, 80)}, which does not contain {excerpt(expected, 80)}"
    if op == "matches" and not (isinstance(found, str) and re.search(expected, found)):
        return f"{path} is {excerpt(found, 80)}, which does not match {expected!r}"
    return None


def _span_errors(body: Any, status: int | None) -> list[str]:
    trace = lookup(body, ["databricks_output", "trace"])
    if trace is _MISSING:
        # An error answer may carry no trace; its status is the finding then.
        return [] if status != 200 else ["asked for a trace (databricks_options.return_trace), the answer has none"]
    spans = lookup(trace, ["data", "spans"])
    failed = [span for span in spans if isinstance(span, dict) and
              (span.get("status") or {}).get("code") in ERROR_SPAN_CODES] if isinstance(spans, list) else []
    return [f"span {excerpt(span.get('name'), 60)} in error: {excerpt((span.get('status') or {}).get('message'), 120)}"
            for span in failed]


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """A value as compact JSON, cut at `limit` characters."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"
