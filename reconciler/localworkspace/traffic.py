"""Traffic for tests, the bench and the demo: queries sent to a serving endpoint over real HTTP.

A rollout's analysis reads the metrics export, which only moves when the endpoint is queried; on
the local workspace nobody queries it unless something does. This module is that something:

    report = send_queries(ws.url, ws.token, "support-agent", count=200, rate=100)
    report.statuses           # Counter({200: 190, 500: 10}); 0 counts queries that got no answer
    report.served_entities    # Counter({"champion": 180, "challenger": 20}), from `served-model-name`

    with Traffic(ws.url, ws.token, "support-agent", rate=20) as traffic:   # until the block ends
        ...                                                                # e.g. a rollout step and its pause
    traffic.report

`reconciler sim traffic ENDPOINT --count N --rate R` is the command-line form. Queries are sent
open-loop at `rate` per second (0: as fast as the workers go), with at most `workers` in flight: a
slower server lowers the achieved rate rather than piling up requests. Each worker keeps its own
HTTP session (keep-alive). Names are URL-encoded into the path.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

DEFAULT_BODY: dict[str, Any] = {"messages": [{"role": "user", "content": "What is MLflow?"}]}


@dataclass
class TrafficReport:
    """What the queries got back."""

    statuses: Counter[int] = field(default_factory=Counter)  # HTTP status -> queries; 0: no answer
    served_entities: Counter[str] = field(default_factory=Counter)  # the `served-model-name` header -> queries
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    first_error: str | None = None  # the first error answer or connection failure, one line

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status == 0 or status >= 400)

    def summary(self) -> str:
        statuses = ", ".join(f"{status or 'no answer'} x{count}" for status, count in sorted(self.statuses.items()))
        entities = ", ".join(f"{name} {count}" for name, count in sorted(self.served_entities.items()))
        line = f"sent {self.sent} queries in {self.seconds:.1f} s: {statuses or 'none'}"
        return line + (f"; by served entity: {entities}" if entities else "")


class Traffic:
    """Queries to one endpoint (or one served entity of it), in the background."""

    def __init__(self, url: str, token: str, endpoint: str, *, rate: float = 10.0, count: int | None = None,
                 body: dict[str, Any] | None = None, served_entity: str | None = None, workers: int = 4,
                 timeout: float = 30.0) -> None:
        if rate < 0 or workers < 1 or (count is not None and count < 0):
            raise ValueError("traffic: rate must be >= 0, workers >= 1 and count >= 0")
        path = f"/serving-endpoints/{quote(endpoint, safe='')}"
        if served_entity is not None:
            path += f"/served-models/{quote(served_entity, safe='')}"
        self.url = url.rstrip("/") + path + "/invocations"
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.rate, self.count, self.workers, self.timeout = rate, count, workers, timeout
        self.body = body if body is not None else DEFAULT_BODY
        self.report = TrafficReport()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._local = threading.local()
        self._thread: threading.Thread | None = None

    def start(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._thread.start()
        return self

    def wait(self) -> TrafficReport:
        """Until every query is answered (`count` given) or `stop` is called."""
        if self._thread is not None:
            self._thread.join()
        return self.report

    def stop(self) -> TrafficReport:
        """Send no more queries; wait for those in flight."""
        self._stop.set()
        return self.wait()

    def __enter__(self) -> Traffic:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        started = time.monotonic()
        in_flight = threading.Semaphore(self.workers)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="traffic") as pool:
            sent = 0
            while self.count is None or sent < self.count:
                if self.rate and self._stop.wait(max(0.0, started + sent / self.rate - time.monotonic())):
                    break
                while not in_flight.acquire(timeout=0.1):
                    if self._stop.is_set():
                        break
                if self._stop.is_set():
                    break
                pool.submit(self._query, in_flight)
                sent += 1
        self.report.seconds = time.monotonic() - started

    def _query(self, in_flight: threading.Semaphore) -> None:
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        began = time.monotonic()
        try:
            response = session.post(self.url, json=self.body, headers=self.headers, timeout=self.timeout)
            status, entity = response.status_code, response.headers.get("served-model-name")
            error = f"{status} {response.text[:200]}" if status >= 400 else None
        except requests.RequestException as exc:
            status, entity, error = 0, None, f"no answer ({type(exc).__name__})"
        finally:
            in_flight.release()
        with self._lock:
            self.report.statuses[status] += 1
            if entity:
                self.report.served_entities[entity] += 1
            self.report.latencies_ms.append((time.monotonic() - began) * 1000)
            if error and self.report.first_error is None:
                self.report.first_error = " ".join(error.split())


def send_queries(url: str, token: str, endpoint: str, *, count: int, rate: float = 0.0, **options: Any) -> TrafficReport:
    """Send `count` queries at `rate` per second (0: as fast as possible) and report what came back."""
    return Traffic(url, token, endpoint, rate=rate, count=count, **options).start().wait()
