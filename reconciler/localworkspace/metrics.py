"""The metrics export of serving endpoints: `GET /api/2.0/serving-endpoints/{name}/metrics`.

`queries.py` records every answer a served entity gives (status and measured latency); this module
keeps the counts and renders them as Prometheus text (`Accept: text/plain`, what
`w.serving_endpoints.export_metrics` sends) or OpenMetrics text (`Accept:
application/openmetrics-text`). Both parse with `prometheus_client.parser.text_string_to_metric_families`
(resp. `prometheus_client.openmetrics.parser`).

What is documented, and where:
- the route and "either Prometheus or OpenMetrics exposition format" (SDK `export_metrics`
  docstring; Databricks docs "Track and export serving endpoint health metrics to Prometheus and
  Datadog");
- the series names `request_count_total`, `request_4xx_count_total`, `request_5xx_count_total`,
  `request_latency_ms` (histogram), `cpu_usage_percentage`, `mem_usage_percentage`,
  `provisioned_concurrent_requests_total` (the Datadog configuration in those docs, which declares
  the counts as gauges);
- their meaning: "Number of requests during the last minute", "Number of 4xx errors during the last
  minute"... with a 60 s interval (DataDog/integrations-core `databricks/metadata.csv`); a public
  capture of a real export saw the counts declared as gauges, every sample carrying an epoch-ms
  timestamp on a minute boundary, and latency buckets from 5 ms to 600000 ms and +Inf;
- per served entity: Datadog's dashboards filter on `served_model_name`
  (`databricks/assets/dashboards/model_serving_overview.json`); the label name of the export itself
  is not published, so every sample carries both `served_entity_name` and `served_model_name`.

Our choices:
- Two modes. `window_seconds=0` (the default): cumulative counters (`# TYPE ... counter`) and a
  cumulative histogram since the served entity was deployed, so a consumer takes the difference
  between two scrapes over any interval. `window_seconds=N`: what real workspaces document, gauges
  counting the last N seconds (60 on a real workspace) and a histogram of that window, every sample
  stamped with the scrape time. We slide the window up to the scrape rather than align it on minute
  boundaries, so a query shows at once. A consumer tells the two apart by the declared TYPE; the
  sample names are the same in both.
- The counters start from zero when an entity is (re)deployed, as a new container's would.
- The intermediate latency buckets (the capture shows only the ends).
- `cpu_usage_percentage`: the share of the entity's provisioned concurrency busy answering during
  the last 60 s; `provisioned_concurrent_requests_total`: the entity's provisioned concurrency
  (`max_provisioned_concurrency`, else its workload size: Small 4, Medium 16, Large 64, the upper
  bounds in the SDK's `ServedEntityInput.workload_size` docstring).
- Not emitted: `mem_usage_percentage` (no memory model), `model_queue_time_ms` (no queue), the GPU
  series (no GPUs), and no endpoint-wide total (summing the entities is the consumer's choice).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# (endpoint id, served entity name, the entity's creation_timestamp): a redeployed entity starts afresh.
EntityKey = tuple[str, str, int]

LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000, 600000)
CPU_WINDOW_SECONDS = 60.0
CONCURRENCY_BY_WORKLOAD_SIZE = {"Small": 4, "Medium": 16, "Large": 64}
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@dataclass
class Counts:
    """Requests, errors and a latency histogram: since deployment, or within a window."""

    requests: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    latency_sum_ms: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_MS))  # not cumulative

    def add(self, status: int, latency_ms: float) -> None:
        self.requests += 1
        self.errors_4xx += 400 <= status < 500
        self.errors_5xx += status >= 500
        self.latency_sum_ms += latency_ms
        for i, bound in enumerate(LATENCY_BUCKETS_MS):
            if latency_ms <= bound:
                self.buckets[i] += 1
                break


@dataclass
class Series:
    total: Counts = field(default_factory=Counts)
    recent: deque[tuple[float, int, float]] = field(default_factory=deque)  # (monotonic time, status, latency ms)


@dataclass(frozen=True)
class EntityView:
    """A served entity as the export shows it."""

    name: str
    key: EntityKey
    concurrency: int


class Metrics:
    """Counts per served entity. The caller holds the workspace lock."""

    def __init__(self, window_seconds: float = 0.0) -> None:
        self.window_seconds = window_seconds
        self.series: dict[EntityKey, Series] = {}

    def record(self, key: EntityKey, status: int, latency_ms: float, now: float) -> None:
        series = self.series.setdefault(key, Series())
        series.total.add(status, latency_ms)
        series.recent.append((now, status, latency_ms))
        self._prune(series, now)

    def _prune(self, series: Series, now: float) -> None:
        keep = max(self.window_seconds, CPU_WINDOW_SECONDS)
        while series.recent and series.recent[0][0] <= now - keep:
            series.recent.popleft()

    def counts(self, key: EntityKey, now: float) -> Counts:
        """What the export reports for one entity: its totals, or the counts of the last window."""
        series = self.series.get(key)
        if series is None:
            return Counts()
        self._prune(series, now)
        if not self.window_seconds:
            return series.total
        window = Counts()
        for at, status, latency_ms in series.recent:
            if at > now - self.window_seconds:
                window.add(status, latency_ms)
        return window

    def busy_percent(self, entity: EntityView, now: float) -> float:
        series = self.series.get(entity.key)
        if series is None:
            return 0.0
        busy_ms = sum(latency for at, _, latency in series.recent if at > now - CPU_WINDOW_SECONDS)
        return min(100.0, 100.0 * busy_ms / (CPU_WINDOW_SECONDS * 1000 * max(1, entity.concurrency)))

    def render(self, entities: list[EntityView], *, now: float, wall_ms: int, openmetrics: bool) -> str:
        """The exposition text for these entities (the endpoint's serving config, in order)."""
        windowed = bool(self.window_seconds)
        count_type = "gauge" if windowed else "counter"
        stamp = (f" {wall_ms / 1000:.3f}" if openmetrics else f" {wall_ms}") if windowed else ""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            # OpenMetrics names a counter family without `_total`; the Prometheus text format with it.
            declared = name[:-len("_total")] if openmetrics and kind == "counter" else name
            out.append(f"# HELP {declared} {help_text}")
            out.append(f"# TYPE {declared} {kind}")

        def sample(name: str, entity: EntityView, value: float, extra: str = "", *, stamped: bool = True) -> None:
            labels = f'served_entity_name="{escape(entity.name)}",served_model_name="{escape(entity.name)}"{extra}'
            out.append(f"{name}{{{labels}}} {number(value)}{stamp if stamped else ''}")

        scope = f"during the last {number(self.window_seconds)} seconds" if windowed else "since the entity was deployed"
        counts = {entity.key: self.counts(entity.key, now) for entity in entities}
        for name, attribute, what in (("request_count_total", "requests", "Number of requests"),
                                      ("request_4xx_count_total", "errors_4xx", "Number of 4xx errors"),
                                      ("request_5xx_count_total", "errors_5xx", "Number of 5xx errors")):
            family(name, count_type, f"{what} {scope}.")
            for entity in entities:
                sample(name, entity, getattr(counts[entity.key], attribute))
        family("request_latency_ms", "histogram", f"Request latency in milliseconds {scope}.")
        for entity in entities:
            entity_counts, cumulative = counts[entity.key], 0
            for bound, in_bucket in zip(LATENCY_BUCKETS_MS, entity_counts.buckets, strict=True):
                cumulative += in_bucket
                sample("request_latency_ms_bucket", entity, cumulative, f',le="{number(float(bound))}"')
            sample("request_latency_ms_bucket", entity, entity_counts.requests, ',le="+Inf"')
            sample("request_latency_ms_count", entity, entity_counts.requests)
            sample("request_latency_ms_sum", entity, entity_counts.latency_sum_ms)
        family("cpu_usage_percentage", "gauge", "Share of the provisioned concurrency busy during the last minute.")
        for entity in entities:
            sample("cpu_usage_percentage", entity, self.busy_percent(entity, now))
        family("provisioned_concurrent_requests_total", "gauge", "Provisioned concurrency of the served entity.")
        for entity in entities:
            sample("provisioned_concurrent_requests_total", entity, entity.concurrency)
        if openmetrics:
            out.append("# EOF")
        return "\n".join(out) + "\n"


def concurrency(entity: dict[str, Any]) -> int:
    """The provisioned concurrency of a served entity (see the module docstring)."""
    if isinstance(entity.get("max_provisioned_concurrency"), int):
        return int(entity["max_provisioned_concurrency"])
    return CONCURRENCY_BY_WORKLOAD_SIZE.get(str(entity.get("workload_size", "Small")), 4)


def wants_openmetrics(accept: str) -> bool:
    return "application/openmetrics-text" in accept.lower()


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def number(value: float) -> str:
    """A sample value: integers without a fraction, others in full precision."""
    if isinstance(value, float) and not math.isfinite(value):
        return "+Inf" if value > 0 else "NaN"
    if float(value).is_integer():
        return f"{float(value):.1f}"
    return repr(float(value))
