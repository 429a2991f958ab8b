"""Runs the real `reconciler` CLI in-process against a local workspace (real HTTP, real SDK).

In-process rather than a subprocess per call keeps hundreds of scenario runs fast; the CLI's
own `main()` is what runs, error handling and exit codes included. End-to-end tests that need a
separate process (SIGKILL mid-apply) use subprocesses explicitly.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reconciler.cli import main

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "tests" / "seeds" / "support_agent.yaml"
MODEL = "main.agents.support_agent"
# The example's challenger, named by the logged agent it was registered from (version 4 in the seed).
LOGGED_AGENT = f"model_version.{MODEL}@models:/m-6a1f2b3c4d5e4f60718293a4b5c6d7e8"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


def run(ws: Any, *args: str, env: dict[str, str] | None = None) -> Result:
    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    for key in ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        os.environ.pop(key, None)
    os.environ.update({"DATABRICKS_HOST": ws.url, "DATABRICKS_TOKEN": ws.token, **(env or {})})
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return Result(code, out.getvalue(), err.getvalue())


def base_documents() -> list[dict[str, Any]]:
    """The example deployment (manifests/support-agent.yaml) as data, for tests to vary."""
    with open(ROOT / "manifests" / "support-agent.yaml", encoding="utf-8") as handle:
        return [d for d in yaml.safe_load_all(handle) if d]


def write(tmp: Path, documents: list[dict[str, Any]], name: str = "manifests.yaml") -> str:
    path = tmp / name
    path.write_text(yaml.safe_dump_all(copy.deepcopy(documents), sort_keys=False), encoding="utf-8")
    return str(path)


def writes(ws: Any) -> list[tuple[str, str]]:
    """Every write the workspace accepted (its request log), in order."""
    return [(r["method"], r["path"]) for r in ws.requests() if r["method"] != "GET" and (r["status"] or 999) < 300 and
            not r["path"].startswith(LOCK_ROUTES)]


# The apply lock's lease file lives in the workspace tree; its traffic is not a managed write.
LOCK_ROUTES = ("/api/2.0/workspace/",)


def endpoint(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in documents if d["kind"] == "ServingEndpoint")


def model(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in documents if d["kind"] == "RegisteredModel")


def plan_json(ws: Any, path: str, *extra: str) -> dict[str, Any]:
    result = run(ws, "plan", path, "--format", "json", *extra)
    assert result.code == 0, result.err
    return result.json


def change(plan: dict[str, Any], address: str) -> dict[str, Any]:
    return next(c for c in plan["changes"] if c["address"] == address)


def summary(plan: dict[str, Any]) -> dict[str, tuple[str, list[str], list[str]]]:
    """address → (action, diff paths, operation names): what a scenario asserts exactly."""
    return {c["address"]: (c["action"], [d["path"] for d in c["diff"]], [o["name"] for o in c["operations"]])
            for c in plan["changes"]}
