"""Start-up and `validate` timings, each as a ratio to the floor of starting Python at all.

    python -m bench.validate_bench          # prints the rows
    python -m bench --cases startup,validate

Every figure is the median wall time of fresh processes (what a user or CI pays), after one
uncounted warm-up run:
  - `reconciler --help`                         median of 5
  - `reconciler validate manifests/`            median of 5
  - `reconciler validate` on 1,000 documents    median of 3 (500 models + 500 endpoints, 100 files,
                                                generated in a temporary folder)
  - and on 10,000 documents (1,000 files)       median of 3, as a ratio to the 1,000 documents' time
The floor is `python -c pass` measured the same way (median of 5): no command line written in
Python can start faster, so figure / floor is the number to quote on a shared, noisy machine.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MODELS = 500
ENDPOINTS = 500
FILES = 100


def _command() -> list[str]:
    script = Path(sys.executable).parent / "reconciler"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from reconciler.cli import main; main()"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}


def _timed(argv: list[str], runs: int, *, cwd: Path = REPO, expect: int = 0) -> list[float]:
    """Wall times of `runs` fresh processes, after one uncounted warm-up."""
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
        if proc.returncode != expect:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[:500]}")
        if i:
            times.append(elapsed)
    return times


def _model(n: int) -> str:
    return f"""\
apiVersion: reconciler/v1
kind: RegisteredModel
metadata:
  name: main.agents_{n % 7}.agent_{n:04d}
spec:
  comment: Agent {n} (LangGraph, logged with MLflow)
  owner: team-{n % 13}@example.com
  aliases:
    champion: {n % 9 + 1}
    challenger: {n % 9 + 2}
"""


def _endpoint(n: int) -> str:
    model = f"main.agents_{n % 7}.agent_{n:04d}"
    return f"""\
apiVersion: reconciler/v1
kind: ServingEndpoint
metadata:
  name: agent-{n:04d}
spec:
  served_entities:
    - name: champion
      entity_name: {model}
      alias: champion
      workload_size: Small
      scale_to_zero_enabled: true
      environment_vars:
        ENABLE_MLFLOW_TRACING: "true"
        VECTOR_SEARCH_INDEX: main.agents.docs_{n % 11}
        OPENAI_API_KEY: "{{{{secrets/agents/openai}}}}"
    - name: challenger
      entity_name: {model}
      alias: challenger
      workload_size: Small
      scale_to_zero_enabled: true
  traffic_config:
    routes:
      - served_entity_name: champion
        traffic_percentage: 90
      - served_entity_name: challenger
        traffic_percentage: 10
  ai_gateway:
    inference_table_config: {{catalog_name: main, schema_name: agents_{n % 7}, table_name_prefix: agent_{n:04d}, enabled: true}}
    usage_tracking_config: {{enabled: true}}
  tags: {{team: team-{n % 13}, cost-center: cc-{n % 17:03d}}}
  permissions:
    - {{group_name: team-{n % 13}, permission_level: CAN_QUERY}}
    - {{service_principal_name: deployer, permission_level: CAN_MANAGE}}
  resources:
    vector_search_index: [main.agents.docs_{n % 11}]
    serving_endpoint: [databricks-meta-llama-3-3-70b-instruct]
"""


def generate_tree(root: Path, models: int = MODELS, endpoints: int = ENDPOINTS, files: int = FILES) -> int:
    """Writes `models` models and `endpoints` endpoints (each model served by the endpoint of the same
    number) across `files` files in team sub-folders; returns the number of documents."""
    documents = [_model(n) for n in range(models)] + [_endpoint(n) for n in range(endpoints)]
    per_file = -(-len(documents) // files)
    for i in range(files):
        chunk = documents[i::files][:per_file]  # each file mixes models and endpoints
        if not chunk:
            continue
        folder = root / f"team-{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"agents-{i:03d}.yaml").write_text("---\n".join(chunk), encoding="utf-8")
    return len(documents)


def _row(case: str, times: list[float], floor: float, floor_times: list[float], notes: str = "") -> dict[str, Any]:
    figure = statistics.median(times)
    from bench.cases import spread

    return {"case": case, "figure": round(figure, 4), "unit": "s", "floor": round(floor, 4),
            "ratio": round(figure / floor, 2), "spread": spread(times), "runs": [round(t, 4) for t in times],
            "floor_basis": f"`python -c pass` in a fresh process, median of {len(floor_times)}", "notes": notes}


def measure(runs: int | None = None) -> list[dict[str, Any]]:
    """The five rows; `runs` overrides the number of counted runs of each (default 5, 5, 5 and 3)."""
    floor_times = _timed([sys.executable, "-c", "pass"], runs or 5)
    floor = statistics.median(floor_times)
    cli = _command()
    rows = [
        _row("reconciler --help (start-up)", _timed(cli + ["--help"], runs or 5), floor, floor_times),
        _row("reconciler validate manifests/ (the examples)", _timed(cli + ["validate", "manifests"], runs or 5),
             floor, floor_times),
        # The CEL engine's import and the rules' compile and evaluation (reconciler/policy.py).
        _row("validate the examples with examples/policies/ --stack prod",
             _timed(cli + ["validate", "examples/policies", "--stack", "prod", str(_production_example())],
                    runs or 5), floor, floor_times),
    ]
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
        count = generate_tree(Path(tmp))
        times = _timed(cli + ["validate", tmp], runs or 3)
        in_process = _in_process(tmp)
    rows.append(_row(f"reconciler validate, {count:,} generated documents in {FILES} files", times, floor,
                     floor_times, notes=f"of which loading in-process: {in_process:.3f} s "
                                        f"({in_process / count * 1000:.2f} ms per document)"))
    # Ten times the documents, ten times the files: the same process, so within 10x of the row above.
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
        big = generate_tree(Path(tmp), 10 * MODELS, 10 * ENDPOINTS, 10 * FILES)
        big_times = _timed(cli + ["validate", tmp], runs or 3)
    rows.append({**_row(f"reconciler validate, {big:,} generated documents in {10 * FILES} files", big_times,
                        statistics.median(times), times),
                 "floor_basis": f"validate of {count:,} documents (the row above), median of {len(times)}",
                 "target": "<= 10x", "met": statistics.median(big_times) <= 10 * statistics.median(times)})
    return rows


def _production_example() -> Path:
    """The example with scale_to_zero_enabled: false, so every example policy holds (kept once per run)."""
    path = Path(tempfile.gettempdir()) / "reconciler-bench-production-example.yaml"
    text = (REPO / "manifests" / "support-agent.yaml").read_text(encoding="utf-8")
    path.write_text(text.replace("scale_to_zero_enabled: true", "scale_to_zero_enabled: false"), encoding="utf-8")
    return path


def _in_process(tree: str) -> float:
    """Median time of load_manifests on the tree inside one process (imports excluded)."""
    code = ("import statistics, sys, time\n"
            "from reconciler.manifests.loader import load_manifests\n"
            "times = []\n"
            "for _ in range(3):\n"
            "    start = time.perf_counter(); load_manifests([sys.argv[1]], {}); "
            "times.append(time.perf_counter() - start)\n"
            "print(statistics.median(times))\n")
    proc = subprocess.run([sys.executable, "-c", code, tree], cwd=REPO, env=_env(), capture_output=True, text=True,
                          check=True)
    return float(proc.stdout.strip())


def main() -> None:
    for row in measure():
        print(f"{row['case']:<58} {row['figure']:>8.3f} s   floor {row['floor']:.3f} s   ratio {row['ratio']:>6.2f}"
              + (f"   ({row['notes']})" if row["notes"] else ""))


if __name__ == "__main__":
    main()
