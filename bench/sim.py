"""A local workspace in its own process, driven through its `/__sim/` controls.

The benchmarks run the workspace in a separate process (as `reconciler sim serve` does) so that
the reconciler under measurement does not share its interpreter lock with the server: on a
2-core machine that is the difference between measuring the reconciler and measuring the GIL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"


class SimProcess:
    """`with SimProcess(update_seconds=5) as sim:` a started local workspace at `sim.url`."""

    def __init__(self, *, update_seconds: float = 0.0, latency_ms: int = 0) -> None:
        self.update_seconds = update_seconds
        self.latency_ms = latency_ms
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.token = TOKEN

    def __enter__(self) -> SimProcess:
        code = ("from reconciler.localworkspace.server import run; "
                f"run(port=0, update_seconds={self.update_seconds!r}, latency_ms={self.latency_ms!r}, "
                f"token={TOKEN!r})")
        self.process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "local workspace listening on URL (token: ...)"
        if "listening on" not in line:
            self.__exit__()
            raise RuntimeError(f"the local workspace did not start: {line!r}")
        self.url = line.split("listening on ", 1)[1].split()[0]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def env(self) -> dict[str, str]:
        return {"DATABRICKS_HOST": self.url, "DATABRICKS_TOKEN": self.token}

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/__sim{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"{}")

    def seed(self, seed: dict[str, Any]) -> None:
        self._call("POST", "/seed", seed)

    def set_latency(self, ms: int) -> None:
        self._call("POST", "/latency", {"ms": ms})

    def set_update_seconds(self, seconds: float) -> None:
        self._call("POST", "/update-seconds", {"seconds": seconds})

    def requests(self) -> list[dict[str, Any]]:
        return self._call("GET", "/requests")["requests"]

    def reset_requests(self) -> None:
        self._call("POST", "/requests/reset", {})
