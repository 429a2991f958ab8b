"""Writes the JSON Schema of the manifest format, generated from the pydantic model, and checks
the hand-written schemas of what the tool writes (a plan, an apply record) against the code.

Editors use the manifest schema for completion (`# yaml-language-server: $schema=...`); CI runs
`reconciler schema --check` so no committed schema can drift: the manifest schema must be what the
model generates, and `plan.schema.json` and `apply.schema.json` must name exactly the members that
`Plan.to_json()`, `Change.to_json()` and `ApplyResult.to_json()` write (their types and
descriptions are written by hand; tests validate real plans and records against them).
"""

from __future__ import annotations

import json
import os

from reconciler.files import write_atomically

SCHEMA_FILE = "manifest.schema.json"
PLAN_SCHEMA_FILE = "plan.schema.json"
APPLY_SCHEMA_FILE = "apply.schema.json"


def manifest_schema() -> dict[str, object]:
    from pydantic import TypeAdapter

    from reconciler.manifests.model import ManifestDocument

    schema = TypeAdapter(ManifestDocument).json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "reconciler manifest (apiVersion reconciler/v1)", **schema}


def schema_text() -> str:
    return json.dumps(manifest_schema(), indent=2, sort_keys=False) + "\n"


def write_schema(out_dir: str) -> str:
    path = os.path.join(out_dir, SCHEMA_FILE)
    write_atomically(path, schema_text())  # never leave a half-written schema behind
    return path


def schema_is_current(out_dir: str) -> bool:
    try:
        with open(os.path.join(out_dir, SCHEMA_FILE), encoding="utf-8") as handle:
            return handle.read() == schema_text()
    except OSError:
        return False


def output_schema_problems(out_dir: str) -> tuple[list[str], list[str]]:
    """Where `plan.schema.json` or `apply.schema.json` in `out_dir` does not name exactly the
    members the code writes (missing, unknown, or not required); and the files checked (these two
    are written by hand, so a directory `schema --out` wrote has neither)."""
    from reconciler.api import ApplyResult
    from reconciler.apply import Outcome
    from reconciler.plan import Action, Change, Plan, Source

    change = Change("serving_endpoint.x", "serving_endpoint", "x", Action.UPDATE)
    plan = Plan([change], source=Source([], [], "sha256:"))
    record = ApplyResult(plan, [Outcome(change.address, "applied")], "", "", None, "").to_json()
    written = {PLAN_SCHEMA_FILE: [("", plan.to_json()), ("$defs.change", change.to_json())],
               APPLY_SCHEMA_FILE: [("", record), ("$defs.object", record["objects"][0])]}
    optional = {"$defs.change": {"rollout"}}  # only endpoints with a rollout carry it
    problems, checked = [], []
    for name, parts in written.items():
        path = os.path.join(out_dir, name)
        if not os.path.exists(path):
            continue
        checked.append(path)
        try:
            with open(path, encoding="utf-8") as handle:
                schema = json.load(handle)
        except (OSError, ValueError) as exc:
            problems.append(f"{path}: cannot read it as JSON ({exc})")
            continue
        for where, value in parts:
            node = schema
            for key in filter(None, where.split(".")):
                node = node.get(key, {})
            named, required = set(node.get("properties", {})), set(node.get("required", []))
            said = f"{path}: {where or 'top level'}"
            problems += [f"{said}: the code writes '{k}', which the schema does not name" for k in sorted(set(value) - named)]
            problems += [f"{said}: names '{k}', which the code does not write" for k in sorted(named - set(value) -
                                                                                                optional.get(where, set()))]
            problems += [f"{said}: '{k}' is always written but not required" for k in sorted(set(value) & named - required -
                                                                                          optional.get(where, set()))]
    return problems, checked
