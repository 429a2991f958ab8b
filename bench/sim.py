"""A local workspace in its own process (`reconciler sim serve`), driven through its `/__sim/` controls.

The benchmarks run the workspace in a separate process so that the reconciler under measurement
does not share its interpreter lock with the server: on a 2-core machine that is the difference
between measuring the reconciler and measuring the GIL. The crash and concurrency soaks use it
too (tests/soak), to kill and race real `reconciler apply` processes against it. `url` and `token`
make it usable wherever an in-process `LocalWorkspace` is (tests/integration/harness.run).
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


def reconciler_command() -> list[str]:
    """The installed `reconciler` console script next to this interpreter."""
    script = Path(sys.executable).parent / "reconciler"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from reconciler.cli import main; main()"]


class SimProcess:
    """`with SimProcess(update_seconds=5) as sim:` a started local workspace at `sim.url`."""

    def __init__(self, *, update_seconds: float = 0.0, latency_ms: int = 0, seed_file: Path | None = None,
                 log_responses: bool = False) -> None:
        self.command = reconciler_command()
        self.args = ["sim", "serve", "--port", "0", "--update-seconds", str(update_seconds),
                     "--latency-ms", str(latency_ms), "--token", TOKEN] + (["--seed", str(seed_file)] if seed_file else [])
        self.log_responses = log_responses
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.token = TOKEN

    def __enter__(self) -> SimProcess:
        self.process = subprocess.Popen(self.command + self.args, cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "local workspace listening on URL (token: ...)"
        if "listening on" not in line:
            self.__exit__()
            raise RuntimeError(f"the local workspace did not start: {line!r}")
        self.url = line.split("listening on ", 1)[1].split()[0]
        if self.log_responses:
            self._call("POST", "/log-responses", {"on": True})
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
