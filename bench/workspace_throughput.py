"""How many requests per second the local workspace sustains from parallel SDK clients.

The workspace must never be the bottleneck of the reconciler's own benchmarks, so this measures
it the way the reconciler uses it: `clients` parallel `databricks-sdk` WorkspaceClients doing the
reads a plan does (endpoint, registered model with aliases, model version, version by alias)
against a seeded workspace for `seconds`. The workspace runs in its own process, as
`reconciler sim serve` does, so the clients' Python does not share its interpreter lock; the
clients run on threads of this process (each its own client and keep-alive connection), which
makes the figure a lower bound of what the server can take.

    python bench/workspace_throughput.py [--clients 16] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "tests" / "seeds" / "support_agent.yaml"
MODEL = "main.agents.support_agent"
TOKEN = "bench-token"


def measure(clients: int = 16, seconds: float = 3.0) -> dict[str, Any]:
    """Requests per second sustained by `clients` parallel SDK clients doing GETs for `seconds`."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    server = subprocess.Popen(
        [sys.executable, "-c", "from reconciler.localworkspace.server import run; "
         f"run(port=0, seed={str(SEED)!r}, update_seconds=0, token={TOKEN!r})"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[4]  # "local workspace listening on URL (token: ...)"
        workspaces = [WorkspaceClient(config=Config(host=url, token=TOKEN, auth_type="pat")) for _ in range(clients)]
        endpoint = "support-agent-bench"
        workspaces[0].serving_endpoints.create_and_wait(name=endpoint, config=_config())
        reads = [
            lambda w: w.serving_endpoints.get(endpoint),
            lambda w: w.registered_models.get(MODEL, include_aliases=True),
            lambda w: w.model_versions.get(MODEL, 3),
            lambda w: w.model_versions.get_by_alias(MODEL, "champion"),
        ]
        counts = [0] * clients
        errors: list[BaseException] = []
        start = threading.Barrier(clients + 1)
        deadline = 0.0

        def client_loop(i: int) -> None:
            w = workspaces[i]
            start.wait()
            try:
                while time.monotonic() < deadline:
                    reads[counts[i] % len(reads)](w)
                    counts[i] += 1
            except BaseException as exc:  # noqa: BLE001 (reported in the result)
                errors.append(exc)

        threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(clients)]
        for thread in threads:
            thread.start()
        server_cpu_before = _cpu_seconds(server.pid)
        began = time.monotonic()
        deadline = began + seconds
        start.wait()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        server_cpu = _cpu_seconds(server.pid) - server_cpu_before
        total = sum(counts)
        return {"clients": clients, "seconds": round(elapsed, 3), "requests": total,
                "requests_per_second": round(total / elapsed, 1), "errors": len(errors),
                "mean_latency_ms": round(1000 * elapsed * clients / total, 2) if total else None,
                # The share of one core the server used: well under 1 means the clients, not the
                # server, set the pace; requests per server CPU second is what it could take.
                "server_cpu_share": round(server_cpu / elapsed, 2),
                "requests_per_server_cpu_second": round(total / server_cpu, 1) if server_cpu > 0 else None}
    finally:
        server.terminate()
        server.wait(timeout=10)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc); 0 where that is not available."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _config() -> Any:
    from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput

    return EndpointCoreConfigInput(name="bench", served_entities=[ServedEntityInput(
        entity_name=MODEL, entity_version="3", workload_size="Small", scale_to_zero_enabled=True)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    result = measure(clients=args.clients, seconds=args.seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
