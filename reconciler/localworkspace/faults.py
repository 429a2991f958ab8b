"""Injected faults: the transient failures a real workspace produces, on demand and reproducibly.

Off unless asked. With a rate r, each `/api/` request independently meets a fault with
probability r, drawn from a `random.Random(seed)` so a run with the same seed and the same
request order meets the same faults. The kinds, and what `databricks-sdk` does about them
(`_base_client.py`, `retries.py`, `errors/customizer.py`):
- "429": Too Many Requests with `Retry-After`; retried after Retry-After + 0-1 s.
- "503": Service Unavailable with `Retry-After`; retried the same way.
- "drop": the connection is closed before the request is handled, with no response; the SDK
  retries it as a connection error (after 1-2 s, growing; the reconciler from 0.2 s,
  `workspace.network_backoff`).
- "slow": the response is delayed by `slow_ms`, then answered normally.
- "drop_after" (only when asked for): the request IS handled, then the connection is closed with
  no response, so a retried write meets its own first attempt (a create then answers
  RESOURCE_ALREADY_EXISTS). This is how a real network blip looks to a writer.
`Retry-After` defaults to 0 seconds (the SDK parses it as an integer, `_parse_retry_after`) so
tests stay fast; pass `retry_after=1` for the value a real workspace typically sends.
`only=(method, path)` limits faults to the requests with that method and (decoded) path, so a test
can make one write meet a fault whatever else the client does meanwhile (a renewal, a poll).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

FAULT_KINDS = ("429", "503", "drop", "slow", "drop_after")
DEFAULT_KINDS = ("429", "503", "drop", "slow")


@dataclass(frozen=True)
class FaultPlan:
    rate: float = 0.0
    seed: int | None = None
    kinds: tuple[str, ...] = DEFAULT_KINDS
    retry_after: int = 0  # seconds, sent as Retry-After on 429/503
    slow_ms: int = 200
    max_faults: int | None = None  # stop injecting after this many ("fail the next request once")
    only: tuple[str, str] | None = None  # (method, path): only these requests meet faults


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.plan = FaultPlan()
        self._random = random.Random()
        self.injected = 0

    def configure(self, rate: float, seed: int | None = None, *, kinds: tuple[str, ...] | list[str] | None = None,
                  retry_after: int = 0, slow_ms: int = 200, max_faults: int | None = None,
                  only: tuple[str, str] | None = None) -> FaultPlan:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, got {rate}")
        chosen = tuple(kinds) if kinds else DEFAULT_KINDS
        unknown = [kind for kind in chosen if kind not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kind '{unknown[0]}'; expected one of {', '.join(FAULT_KINDS)}")
        if retry_after < 0 or slow_ms < 0:
            raise ValueError("retry_after and slow_ms must not be negative")
        with self._lock:
            self.plan = FaultPlan(rate=rate, seed=seed, kinds=chosen, retry_after=retry_after, slow_ms=slow_ms,
                                  max_faults=max_faults, only=(only[0], only[1]) if only else None)
            self._random = random.Random(seed)
            self.injected = 0
        return self.plan

    def draw(self, method: str = "", path: str = "") -> str | None:
        """The fault the request `method path` meets, or None."""
        with self._lock:
            if self.plan.rate <= 0.0 or self.injected == self.plan.max_faults:
                return None
            if self.plan.only is not None and self.plan.only != (method, path):
                return None
            if self._random.random() >= self.plan.rate:
                return None
            self.injected += 1
            return self._random.choice(self.plan.kinds)
