"""The traffic generator (`traffic.py`, `reconciler sim traffic`) and the seed's `serving` key."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from reconciler.cli import main
from reconciler.localworkspace.queries import Behaviour, parse_behaviour
from reconciler.localworkspace.server import LocalWorkspace
from reconciler.localworkspace.traffic import Traffic, send_queries

SEED = Path(__file__).resolve().parents[1] / "seeds" / "queries.yaml"


@pytest.fixture
def ws(make_workspace: Any) -> LocalWorkspace:
    return make_workspace(SEED)


def served(ws: LocalWorkspace, endpoint: str) -> Counter[str]:
    with ws.state.lock:
        return Counter(entry["served_entity"] for entry in ws.state.queries.log if entry["endpoint"] == endpoint)


def test_send_queries_reports_statuses_and_entities_the_server_also_saw(ws: LocalWorkspace) -> None:
    report = send_queries(ws.url, ws.token, "support-agent", count=40, workers=3)
    assert report.sent == 40 and report.statuses == Counter({200: 40}) and report.errors == 0
    assert report.served_entities == served(ws, "support-agent")
    assert len(report.latencies_ms) == 40
    assert report.summary().startswith("sent 40 queries in ")


def test_a_rate_spaces_the_queries(ws: LocalWorkspace) -> None:
    report = send_queries(ws.url, ws.token, "healthy", count=10, rate=20)
    assert report.statuses == Counter({200: 10})
    assert report.seconds >= 9 / 20  # the 10th query is due 0.45 s after the first


def test_one_served_entity_and_a_custom_body(ws: LocalWorkspace) -> None:
    report = send_queries(ws.url, ws.token, "support-agent", count=5, served_entity="feedback",
                          body={"input": [{"role": "user", "content": "hi"}]})
    assert report.served_entities == Counter({"feedback": 5})


def test_background_traffic_runs_until_stopped(ws: LocalWorkspace) -> None:
    with Traffic(ws.url, ws.token, "flaky", rate=200, workers=2) as traffic:
        deadline = time.monotonic() + 30
        while traffic.report.sent < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
    report = traffic.report
    assert report.sent >= 20 and set(report.statuses) <= {200, 500}
    assert report.first_error is not None and "langgraph" in report.first_error
    assert report.served_entities == served(ws, "flaky")  # nothing in flight is lost at the stop


def test_no_server_means_no_answer() -> None:
    report = send_queries("http://127.0.0.1:9", "token", "any", count=2)
    assert report.statuses == Counter({0: 2}) and report.first_error == "no answer (ConnectionError)"


def test_the_cli_summarises_in_one_line(ws: LocalWorkspace, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "traffic", "support-agent", "--url", ws.url, "--token", ws.token, "--count", "8", "--rate", "0"])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0 and err == ""
    assert out.startswith("support-agent: sent 8 queries in ") and "200 x8" in out and out.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "traffic", "support-agent", "--url", "http://127.0.0.1:9", "--count", "1"])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 1 and out == ""
    assert err == "traffic: support-agent: no answer (ConnectionError) (http://127.0.0.1:9)\n"


def test_the_control_route_reseeds_and_switches_the_metrics_mode(ws: LocalWorkspace) -> None:
    answer = requests.post(f"{ws.url}/__sim/queries", json={"seed": 11, "metrics_window_seconds": 60}, timeout=5)
    assert answer.status_code == 200
    assert ws.state.queries.seed == 11 and ws.state.queries.metrics.window_seconds == 60
    refused = requests.post(f"{ws.url}/__sim/queries", json={"metrics_window_seconds": -1}, timeout=5)
    assert refused.status_code == 400


@pytest.mark.parametrize("raw, expected, reason", [
    ({}, Behaviour(), "nothing: an echo"),
    ({"reply": "hi", "latency_ms": 40}, Behaviour(reply="hi", latency_ms=40.0), "design.md's version 4"),
    ({"error_rate": 1.0, "status": 500, "message": "boom"}, Behaviour(error_rate=1.0, status=500, message="boom"),
     "design.md's version 5"),
    ({"status": 503}, Behaviour(error_rate=1.0, status=503), "a failure described: it always fails"),
    ({"error_rate": 0.3}, Behaviour(error_rate=0.3), "a rate alone: 500 with the default message"),
    ({"permission_denied": "main.a.idx"}, Behaviour(error_rate=1.0, status=403, permission_denied="main.a.idx"),
     "permission denied: 403"),
])
def test_serving_keys(raw: dict[str, Any], expected: Behaviour, reason: str) -> None:
    assert parse_behaviour(raw) == expected, reason


@pytest.mark.parametrize("raw, message, reason", [
    ([], "serving must be a mapping", "not a mapping"),
    ({"replies": "x"}, "unknown key 'replies'", "a typo"),
    ({"error_rate": 2}, "serving.error_rate must be a number from 0 to 1", "a rate above 1"),
    ({"latency_ms": True}, "serving.latency_ms must be a number", "a boolean"),
    ({"status": 302}, "serving.status must be 200", "a redirect is no failure"),
    ({"reply": 3}, "serving.reply must be a string", "a number"),
    ({"permission_denied": ""}, "serving.permission_denied must be a non-empty string", "no resource"),
])
def test_bad_serving_keys_are_refused_with_the_seed_object_named(make_workspace: Any, raw: Any, message: str,
                                                                  reason: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_behaviour(raw)
    seed = {"registered_models": [{"full_name": "main.a.b", "versions": [{"version": 1, "serving": raw}]}]}
    with pytest.raises(ValueError) as error:
        make_workspace(seed)
    assert str(error.value).startswith("seed: registered_models[0] (main.a.b): versions[0]: "), reason


def test_the_serving_key_is_not_an_api_field(ws: LocalWorkspace) -> None:
    version = ws.client().model_versions.get("main.agents.support_agent", 1).as_dict()
    assert "serving" not in version
