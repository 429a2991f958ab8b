"""Canary analysis (reconciler/analysis.py) on exports rendered by the local workspace's own
metrics code (the producer the rollout reads over HTTP), in both of its shapes: cumulative
counters and last-window gauges."""

from __future__ import annotations

import pytest

from reconciler import analysis
from reconciler.localworkspace.metrics import EntityView, Metrics

NEW = EntityView("champion-v4", ("e1", "champion-v4", 1), 4)
OLD = EntityView("champion", ("e1", "champion", 1), 4)
RULES = {"max_error_rate": 0.05, "max_p99_latency_ms": 300, "min_requests": 10}


def export(metrics: Metrics, *, now: float, wall_ms: int = 1_700_000_000_000) -> analysis.Scrape:
    return analysis.parse(metrics.render([OLD, NEW], now=now, wall_ms=wall_ms, openmetrics=False))


def serve(metrics: Metrics, entity: EntityView, count: int, *, status: int = 200, latency_ms: float = 20,
          at: float = 0.0) -> None:
    for _ in range(count):
        metrics.record(entity.key, status, latency_ms, at)


def test_counters_the_pause_counts_what_happened_between_its_first_and_last_read():
    metrics = Metrics()
    serve(metrics, NEW, 30, status=500)  # before the pause (smoke queries, the last step): not counted
    window = analysis.Window(export(metrics, now=1))
    serve(metrics, NEW, 40)
    serve(metrics, NEW, 2, status=503)
    serve(metrics, OLD, 50, status=404)
    window.add(export(metrics, now=2))
    tally = window.tally("champion-v4")
    assert (tally.requests, tally.errors_4xx, tally.errors_5xx) == (42, 0, 2)
    assert window.tally("champion").errors_4xx == 50
    assert window.first.counters is True


def test_counters_a_reset_redeployed_entity_counts_from_zero():
    before = Metrics()
    serve(before, NEW, 100)
    window = analysis.Window(export(before, now=1))
    after = Metrics()  # the entity was redeployed: its counters start again
    serve(after, NEW, 7, status=500)
    window.add(export(after, now=2))
    assert window.tally("champion-v4").requests == 7 and window.tally("champion-v4").errors_5xx == 7


def test_gauges_each_new_window_adds_and_a_timestamp_seen_before_does_not():
    metrics = Metrics(window_seconds=10)
    serve(metrics, NEW, 5, at=0.5)
    window = analysis.Window(export(metrics, now=1, wall_ms=1000))  # marks its window as seen
    assert window.first.counters is False
    serve(metrics, NEW, 8, at=11)
    window.add(export(metrics, now=12, wall_ms=12000))
    window.add(export(metrics, now=12, wall_ms=12000))  # the same window read twice counts once
    serve(metrics, NEW, 3, status=500, at=20)
    window.add(export(metrics, now=22, wall_ms=22000))
    tally = window.tally("champion-v4")
    assert (tally.requests, tally.errors_5xx) == (11, 3)


@pytest.mark.parametrize("latencies, expected, reason", [
    ([20] * 100, 24.85, "all in the (10, 25] bucket: interpolated inside it, as histogram_quantile does"),
    ([20] * 98 + [700] * 2, 750.0, "the 99th request is in (500, 1000]: halfway through it"),
    ([1_000_000] * 10, 600000.0, "all above the highest bound: the +Inf bucket gives the highest finite bound"),
    ([], None, "no requests: no p99"),
])
def test_p99_is_prometheus_histogram_quantile(latencies, expected, reason):
    metrics = Metrics()
    for latency in latencies:
        metrics.record(NEW.key, 200, latency, 0)
    tally = analysis.Window(export(Metrics(), now=1))
    tally.add(export(metrics, now=1))
    p99 = analysis.p99(tally.tally("champion-v4"))
    assert p99 == (pytest.approx(expected) if expected is not None else None), reason


@pytest.mark.parametrize("ok, errors, latency, passed, finding, reason", [
    (95, 5, 20, True, None, "5% errors is at the limit, not over it"),
    (94, 6, 20, False, "error rate 0.060 > max_error_rate 0.05", "6% errors is over it"),
    (100, 0, 700, False, "p99 latency 995 ms > max_p99_latency_ms 300", "slow answers break the latency bound"),
    (5, 4, 20, None, None, "9 requests, fewer than min_requests 10: no verdict, whatever the errors"),
])
def test_verdict(ok, errors, latency, passed, finding, reason):
    metrics = Metrics()
    serve(metrics, NEW, ok, latency_ms=latency)
    serve(metrics, NEW, errors, status=500, latency_ms=latency)
    window = analysis.Window(export(Metrics(), now=1))
    window.add(export(metrics, now=1))
    verdict = analysis.verdict("champion-v4", window.tally("champion-v4"), RULES)
    assert verdict.passed is passed, reason
    assert (finding in verdict.findings) if finding else not verdict.findings
    assert verdict.figures.startswith(f"champion-v4: {ok + errors} requests, {errors} errors")


def test_an_export_that_is_not_prometheus_text_is_a_value_error():
    with pytest.raises(ValueError):
        analysis.parse("request_count_total{served_entity_name=\"a\"} not-a-number\n")
