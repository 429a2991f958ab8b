"""Canary analysis: error rate and p99 latency per served entity, from the metrics export.

Pure: `parse` reads one scrape of `GET /api/2.0/serving-endpoints/{name}/metrics` (Prometheus
text, parsed by `prometheus_client`'s own parser); `Window` adds up the scrapes of one pause;
`verdict` compares one entity's tally with the manifest's thresholds. rollout.py scrapes (through
`Workspace.metrics`) and waits.

What the export holds (localworkspace/metrics.py cites the sources): per served entity
(`served_entity_name`, else `served_model_name`), `request_count_total`, `request_4xx_count_total`,
`request_5xx_count_total` and the histogram `request_latency_ms`. Two shapes, told apart by the
declared TYPE of the counts, as the helper who built the export advised:
- counters (cumulative since the entity was deployed): the pause's tally is the last scrape minus
  the first; a counter that went down was reset (a redeployed entity starts at zero), and then
  the last value is the tally, as Prometheus' `rate()` reads a reset;
- gauges (what real workspaces document: the counts "during the last minute", each sample stamped):
  read at least once per window; each scrape whose timestamp was not seen before adds its window;
  the first scrape of a pause only marks its timestamp as seen (its window is before the pause).
`prometheus_client` drops `_total` from a counter family's name, so samples are looked up by
their own names.

The p99 is Prometheus' `histogram_quantile(0.99, ...)` over the tally's buckets (promql
`quantile.go`, `bucketQuantile`): linear interpolation inside the bucket that holds the rank,
the lower bound of the first bucket taken as 0, and the highest finite bound when the rank falls
in the +Inf bucket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

REQUESTS, ERRORS_4XX, ERRORS_5XX = "request_count_total", "request_4xx_count_total", "request_5xx_count_total"
BUCKET = "request_latency_ms_bucket"
QUANTILE = 0.99


@dataclass
class Tally:
    """Requests, errors and cumulative latency buckets (upper bound in ms -> count) of one entity."""

    requests: float = 0.0
    errors_4xx: float = 0.0
    errors_5xx: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)

    @property
    def errors(self) -> float:
        return self.errors_4xx + self.errors_5xx

    def plus(self, other: Tally) -> Tally:
        return Tally(self.requests + other.requests, self.errors_4xx + other.errors_4xx,
                     self.errors_5xx + other.errors_5xx,
                     {le: self.buckets.get(le, 0.0) + other.buckets.get(le, 0.0)
                      for le in set(self.buckets) | set(other.buckets)})

    def since(self, earlier: Tally) -> Tally:
        """The counts between two scrapes of counters; a reset starts again from zero."""
        if self.requests < earlier.requests:
            return self
        return Tally(self.requests - earlier.requests, self.errors_4xx - earlier.errors_4xx,
                     self.errors_5xx - earlier.errors_5xx,
                     {le: count - earlier.buckets.get(le, 0.0) for le, count in self.buckets.items()})


@dataclass(frozen=True)
class Scrape:
    counters: bool  # True: cumulative counters; False: gauges of the last window
    tallies: dict[str, Tally]  # served entity name -> its counts
    stamps: dict[str, float | None]  # served entity name -> its samples' timestamp (gauges)


def parse(text: str) -> Scrape:
    """One scrape of the export. ValueError when it is not Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    tallies: dict[str, Tally] = {}
    stamps: dict[str, float | None] = {}
    counters = True
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            entity = sample.labels.get("served_entity_name") or sample.labels.get("served_model_name")
            if not entity:
                continue
            tally = tallies.setdefault(entity, Tally())
            if sample.name == REQUESTS:
                counters = family.type == "counter"
                tally.requests = float(sample.value)
                stamps[entity] = None if sample.timestamp is None else float(sample.timestamp)
            elif sample.name == ERRORS_4XX:
                tally.errors_4xx = float(sample.value)
            elif sample.name == ERRORS_5XX:
                tally.errors_5xx = float(sample.value)
            elif sample.name == BUCKET and "le" in sample.labels:
                tally.buckets[float(sample.labels["le"])] = float(sample.value)
    return Scrape(counters, tallies, stamps)


class Window:
    """The counts of one pause, from its scrapes (the first taken when the pause begins)."""

    def __init__(self, first: Scrape) -> None:
        self.first = first
        self.last = first
        self.seen = {(entity, stamp) for entity, stamp in first.stamps.items()}
        self.gauged: dict[str, Tally] = {}

    def add(self, scrape: Scrape) -> None:
        self.last = scrape
        if scrape.counters:
            return
        for entity, tally in scrape.tallies.items():
            key = (entity, scrape.stamps.get(entity))
            if key not in self.seen:  # a window not counted yet
                self.seen.add(key)
                self.gauged[entity] = self.gauged.get(entity, Tally()).plus(tally)

    def tally(self, entity: str) -> Tally:
        if not self.last.counters:
            return self.gauged.get(entity, Tally())
        return self.last.tallies.get(entity, Tally()).since(self.first.tallies.get(entity, Tally()))


def p99(tally: Tally) -> float | None:
    """histogram_quantile(0.99) of the tally's buckets; None without requests in them."""
    bounds = sorted(tally.buckets)
    if not bounds or tally.buckets[bounds[-1]] <= 0:
        return None
    total = tally.buckets[bounds[-1]]
    rank = QUANTILE * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = tally.buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                finite = [b for b in bounds if not math.isinf(b)]
                return finite[-1] if finite else None
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return None


@dataclass(frozen=True)
class Verdict:
    passed: bool | None  # None: no verdict yet (fewer requests than min_requests)
    findings: list[str]  # the thresholds broken (empty when passed)
    figures: str  # the values measured, for the evidence


def verdict(entity: str, tally: Tally, analysis: dict[str, Any]) -> Verdict:
    """The new entity's counts against the thresholds (`analysis` as in rollout.spec_json)."""
    requests = int(tally.requests)
    rate = tally.errors / tally.requests if tally.requests else 0.0
    latency = p99(tally)
    figures = (f"{entity}: {requests} requests, {int(tally.errors)} errors ({int(tally.errors_4xx)} 4xx, "
               f"{int(tally.errors_5xx)} 5xx), error rate {rate:.3f}"
               + (f", p99 {latency:.0f} ms" if latency is not None else ""))
    if requests < analysis["min_requests"]:
        return Verdict(None, [], figures)
    findings = []
    if analysis.get("max_error_rate") is not None and rate > analysis["max_error_rate"]:
        findings.append(f"error rate {rate:.3f} > max_error_rate {analysis['max_error_rate']}")
    if analysis.get("max_p99_latency_ms") is not None and latency is not None and \
            latency > analysis["max_p99_latency_ms"]:
        findings.append(f"p99 latency {latency:.0f} ms > max_p99_latency_ms {analysis['max_p99_latency_ms']:g}")
    return Verdict(not findings, findings, figures)


def describe(entity: str, tally: Tally) -> str:
    """Another entity's figures, for comparison in the evidence."""
    return verdict(entity, tally, {"min_requests": 0}).figures
