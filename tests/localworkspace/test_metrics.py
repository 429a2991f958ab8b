"""The metrics export (`GET /api/2.0/serving-endpoints/{name}/metrics`): Prometheus and OpenMetrics
text that `prometheus_client` parses, per served entity, growing with the queries served."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from reconciler.localworkspace.metrics import LATENCY_BUCKETS_MS, EntityView, Metrics
from reconciler.localworkspace.server import LocalWorkspace
from reconciler.localworkspace.traffic import send_queries

SEED = Path(__file__).resolve().parents[1] / "seeds" / "queries.yaml"


@pytest.fixture
def ws(make_workspace: Any) -> LocalWorkspace:
    return make_workspace(SEED)


def scrape(ws: LocalWorkspace, endpoint: str, *, openmetrics: bool = False) -> dict[str, Any]:
    """name -> {entity: value} for plain samples; latency buckets under (entity, le); and the declared types."""
    accept = "application/openmetrics-text" if openmetrics else "text/plain"
    answer = requests.get(f"{ws.url}/api/2.0/serving-endpoints/{endpoint}/metrics", timeout=10,
                          headers={"Authorization": f"Bearer {ws.token}", "Accept": accept})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/openmetrics-text" if openmetrics else "text/plain")
    parse = parse_openmetrics if openmetrics else text_string_to_metric_families
    result: dict[str, Any] = {"types": {}, "timestamps": set()}
    for family in parse(answer.text):
        for sample in family.samples:
            result["types"][sample.name] = family.type
            assert sample.labels["served_entity_name"] == sample.labels["served_model_name"]
            entity = sample.labels["served_entity_name"]
            key = (entity, sample.labels["le"]) if "le" in sample.labels else entity
            result.setdefault(sample.name, {})[key] = sample.value
            result["timestamps"].add(None if sample.timestamp is None else float(sample.timestamp))
    return result


def p99(metrics: dict[str, Any], entity: str) -> float:
    """The upper bound of the bucket holding the 99th percentile (what a rollout analysis computes)."""
    total = metrics["request_latency_ms_count"][entity]
    for bound in (*LATENCY_BUCKETS_MS, float("inf")):
        le = "+Inf" if bound == float("inf") else f"{float(bound)}"
        if metrics["request_latency_ms_bucket"][(entity, le)] >= 0.99 * total:
            return float(bound)
    raise AssertionError("no bucket holds the 99th percentile")


def test_every_served_entity_starts_at_zero_with_both_labels(ws: LocalWorkspace) -> None:
    metrics = scrape(ws, "support-agent")
    assert metrics["request_count_total"] == {"champion": 0, "challenger": 0, "feedback": 0}
    assert metrics["types"]["request_count_total"] == "counter"
    assert metrics["types"]["request_latency_ms_bucket"] == "histogram"
    assert metrics["provisioned_concurrent_requests_total"] == {"champion": 4, "challenger": 4, "feedback": 4}
    assert metrics["timestamps"] == {None}


def test_counts_grow_with_the_queries_served_per_entity(ws: LocalWorkspace) -> None:
    first = send_queries(ws.url, ws.token, "support-agent", count=60, workers=2)
    metrics = scrape(ws, "support-agent")
    assert metrics["request_count_total"] == {"champion": first.served_entities["champion"],
                                              "challenger": first.served_entities["challenger"], "feedback": 0}
    send_queries(ws.url, ws.token, "support-agent", count=5, served_entity="feedback")
    grown = scrape(ws, "support-agent")
    assert grown["request_count_total"]["feedback"] == 5
    assert grown["request_count_total"]["champion"] == metrics["request_count_total"]["champion"]
    for entity in ("champion", "feedback"):
        buckets = [grown["request_latency_ms_bucket"][(entity, f"{float(b)}")] for b in LATENCY_BUCKETS_MS]
        assert buckets == sorted(buckets)  # cumulative
        assert grown["request_latency_ms_bucket"][(entity, "+Inf")] == grown["request_latency_ms_count"][entity]
        assert grown["request_latency_ms_count"][entity] == grown["request_count_total"][entity]
    # The champion sleeps 5 ms per query: the measured latency is at least that, and the p99 bucket says so.
    assert grown["request_latency_ms_sum"]["champion"] >= 5 * grown["request_count_total"]["champion"]
    assert p99(grown, "champion") >= 5


def test_errors_are_counted_by_class(ws: LocalWorkspace) -> None:
    flaky = send_queries(ws.url, ws.token, "flaky", count=100, workers=2)
    denied = send_queries(ws.url, ws.token, "denied", count=10)
    send_queries(ws.url, ws.token, "degraded", count=10)
    assert scrape(ws, "flaky")["request_5xx_count_total"] == {"flaky-entity": flaky.statuses[500]}
    assert scrape(ws, "flaky")["request_count_total"] == {"flaky-entity": 100}
    assert denied.statuses == Counter({403: 10})
    assert scrape(ws, "denied")["request_4xx_count_total"] == {"denied-entity": 10}
    degraded = scrape(ws, "degraded")  # a degraded answer is a 200: only its trace shows the failure
    assert (degraded["request_count_total"], degraded["request_4xx_count_total"],
            degraded["request_5xx_count_total"]) == ({"degraded-entity": 10}, {"degraded-entity": 0},
                                                     {"degraded-entity": 0})


def test_a_bad_body_is_the_entity_s_4xx(ws: LocalWorkspace) -> None:
    answer = requests.post(f"{ws.url}/serving-endpoints/healthy/invocations", json={"foo": 1}, timeout=10,
                           headers={"Authorization": f"Bearer {ws.token}"})
    assert answer.status_code == 400 and answer.headers["served-model-name"] == "healthy-entity"
    assert scrape(ws, "healthy")["request_4xx_count_total"] == {"healthy-entity": 1}


def test_openmetrics_when_asked_and_through_the_sdk(ws: LocalWorkspace) -> None:
    send_queries(ws.url, ws.token, "healthy", count=3)
    metrics = scrape(ws, "healthy", openmetrics=True)
    assert metrics["request_count_total"] == {"healthy-entity": 3}
    text = ws.client().serving_endpoints.export_metrics("healthy").contents.read().decode()
    assert 'request_count_total{served_entity_name="healthy-entity",served_model_name="healthy-entity"} 3.0' in text


def test_last_window_gauges_as_real_workspaces_document(ws: LocalWorkspace) -> None:
    with ws.state.lock:
        ws.state.queries.configure(metrics_window_seconds=3600)
    send_queries(ws.url, ws.token, "healthy", count=4)
    for openmetrics in (False, True):
        metrics = scrape(ws, "healthy", openmetrics=openmetrics)
        assert metrics["types"]["request_count_total"] == "gauge"
        assert metrics["request_count_total"] == {"healthy-entity": 4}
        assert None not in metrics["timestamps"]  # every sample is stamped, as real exports are


def test_a_window_forgets_what_is_older_and_totals_do_not() -> None:
    entity = EntityView(name="a", key=("endpoint-id", "a", 1), concurrency=4)
    metrics = Metrics(window_seconds=60)
    metrics.record(entity.key, 200, 10.0, now=1000.0)
    metrics.record(entity.key, 503, 20.0, now=1050.0)
    assert (metrics.counts(entity.key, now=1055.0).requests, metrics.counts(entity.key, now=1055.0).errors_5xx) == (2, 1)
    assert metrics.counts(entity.key, now=1100.0).requests == 1  # the first left the window
    assert metrics.counts(entity.key, now=1200.0).requests == 0
    metrics.window_seconds = 0  # cumulative: everything since deployment
    assert (metrics.counts(entity.key, now=1200.0).requests, metrics.counts(entity.key, now=1200.0).latency_sum_ms) \
        == (2, 30.0)


def test_a_redeployed_entity_starts_afresh(make_workspace: Any) -> None:
    ws = make_workspace(SEED)
    send_queries(ws.url, ws.token, "healthy", count=3)
    w = ws.client()
    w.api_client.do("PUT", "/api/2.0/serving-endpoints/healthy/config", body={"served_entities": [
        {"name": "healthy-entity", "entity_name": "main.agents.support_agent", "entity_version": "4",
         "scale_to_zero_enabled": False}]})
    w.serving_endpoints.wait_get_serving_endpoint_not_updating("healthy")
    assert scrape(ws, "healthy")["request_count_total"] == {"healthy-entity": 0}


def test_metrics_of_a_missing_endpoint_are_404(ws: LocalWorkspace) -> None:
    answer = requests.get(f"{ws.url}/api/2.0/serving-endpoints/nope/metrics", timeout=10,
                          headers={"Authorization": f"Bearer {ws.token}"})
    assert answer.status_code == 404 and answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

