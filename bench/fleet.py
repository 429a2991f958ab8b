"""A fleet of agents for the benchmarks: N registered models and N endpoints, as a seed and as
manifests that match it.

Model i (`main.bench.agent_NNN`) has versions 1..`versions`, alias `champion` on `version`.
Endpoint i (`bench-agent-NNN`) serves that model through `champion`, already READY and tagged
`managed-by: reconciler`, with the settings a real agent endpoint has (workload, scale to zero,
environment variables with a secret reference, tags). The manifests describe exactly that, so a
plan over the seeded fleet is a no-change plan; `manifests(..., version=v + 1)` is a version bump
of every agent (one config write per endpoint plus one alias move per model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CATALOG = "main.bench"
SCOPE = "bench"


def model_name(i: int) -> str:
    return f"{CATALOG}.agent_{i:03d}"


def endpoint_name(i: int) -> str:
    return f"bench-agent-{i:03d}"


def _env() -> dict[str, str]:
    return {"ENABLE_MLFLOW_TRACING": "true", "OPENAI_API_KEY": f"{{{{secrets/{SCOPE}/openai}}}}"}


def _entity(i: int, version: int) -> dict[str, Any]:
    return {"name": "champion", "entity_name": model_name(i), "entity_version": str(version),
            "workload_size": "Small", "scale_to_zero_enabled": True, "environment_vars": _env()}


def seed(count: int, *, version: int = 1, versions: int = 8, first: int = 0) -> dict[str, Any]:
    """API-shaped objects for `add_seed` / `POST /__sim/seed`."""
    models = [{"full_name": model_name(i), "comment": f"bench agent {i}",
               "versions": [{"version": v, "run_id": f"run{i}-{v}"} for v in range(1, versions + 1)],
               "aliases": [{"alias_name": "champion", "version_num": version}]}
              for i in range(first, first + count)]
    endpoints = [{"name": endpoint_name(i), "config": {"served_entities": [_entity(i, version)]},
                  "tags": [{"key": "managed-by", "value": "reconciler"}, {"key": "team", "value": "bench"}]}
                 for i in range(first, first + count)]
    return {"registered_models": models, "serving_endpoints": endpoints,
            "secret_scopes": [{"name": SCOPE, "keys": ["openai"]}]}


def documents(count: int, *, version: int = 1, first: int = 0) -> list[dict[str, Any]]:
    """The manifests of the fleet, champion on `version`."""
    docs: list[dict[str, Any]] = []
    for i in range(first, first + count):
        docs.append({"apiVersion": "reconciler/v1", "kind": "RegisteredModel", "metadata": {"name": model_name(i)},
                     "spec": {"comment": f"bench agent {i}", "aliases": {"champion": version}}})
        entity = {k: v for k, v in _entity(i, version).items() if k != "entity_version"}
        docs.append({"apiVersion": "reconciler/v1", "kind": "ServingEndpoint", "metadata": {"name": endpoint_name(i)},
                     "spec": {"served_entities": [{**entity, "alias": "champion"}], "tags": {"team": "bench"}}})
    return docs


def write_manifests(directory: Path, count: int, *, version: int = 1, first: int = 0) -> Path:
    """One file per agent (model and endpoint), as a repository of many agents would hold them."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.yaml"):
        stale.unlink()
    docs = documents(count, version=version, first=first)
    for j in range(0, len(docs), 2):
        (directory / f"{docs[j + 1]['metadata']['name']}.yaml").write_text(
            yaml.safe_dump_all(docs[j:j + 2], sort_keys=False), encoding="utf-8")
    return directory
