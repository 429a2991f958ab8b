"""Live objects → manifest documents for everything asked for (pure, no I/O).

Called by the `export` command in cli.py with what `read.read_live` found. It decides which objects
are exported and which are not, and why (rules 5 and 7 of `export/__init__.py`: what does not
exist, what has no config serving yet, what manifests cannot describe), and which models are
exported with the endpoints that serve through their aliases (rule 3). Each document is made by
its kind's conversion: `endpoints.export_endpoint`, `models.export_model`.
"""

from __future__ import annotations

from reconciler.errors import Problem, ReconcilerError
from reconciler.export.documents import ENDPOINTS_DIR, Document, Export, ExportOptions
from reconciler.export.endpoints import (
    export_endpoint,
    serving_entities,
    unsupported_note,
    unsupported_reasons,
)
from reconciler.export.models import export_model
from reconciler.export.read import LiveObjects


def export_objects(live: LiveObjects, options: ExportOptions) -> Export:
    result = Export(problems=list(live.refused.values()))
    models: dict[str, Document] = {}
    for name in live.requested_models:
        api = live.models.get(name)
        if f"registered_model.{name}" in live.refused:
            continue
        if not isinstance(api, dict):
            result.problems.append(Problem("does not exist in the workspace; nothing exported for it",
                                           subject=f"registered_model.{name}"))
            continue
        models[api.get("full_name") or name] = export_model(api, options)
    foundation_only: list[str] = []
    agent_bricks: list[str] = []
    for name, api in live.endpoints.items():
        subject = f"serving_endpoint.{name}"
        if api is None:
            result.problems.append(Problem("does not exist in the workspace; nothing exported for it", subject=subject))
            continue
        if api.get("config") is None:
            result.problems.append(Problem("has no config serving yet (it is being created); wait for it to be "
                                           "READY and export again", subject=subject))
            continue
        acl = live.acls.get(name)
        if isinstance(acl, ReconcilerError):
            result.warnings.append(f"{subject}: permissions not exported (cannot read them: "
                                   f"{acl.problems[0].message}); they stay unmanaged")
        reasons = unsupported_reasons(api)
        if reasons:
            asked = name in live.requested_endpoints
            if not asked and api.get("config") == {}:
                agent_bricks.append(name)
                continue
            if not asked and all(e.get("foundation_model") for e in serving_entities(api)):
                foundation_only.append(name)
                continue
            path = f"{ENDPOINTS_DIR}/{name}.unsupported.txt"
            result.notes[path] = unsupported_note(name, reasons)
            message = f"not exported: {reasons[0]}, which manifests cannot describe yet (see {path})"
            if asked:
                result.problems.append(Problem(message, subject=subject))
            else:
                result.warnings.append(f"{subject}: {message}")
            continue
        document, needs = export_endpoint(api, acl if isinstance(acl, dict) else None, live.models, options,
                                          result.warnings)
        result.documents.append(document)
        for model in needs:
            result.implied.setdefault(model, []).append(name)
    if foundation_only:
        result.warnings.append(f"skipped {len(foundation_only)} Databricks foundation model endpoint(s) "
                               f"(pay-per-token, not described by manifests): {', '.join(foundation_only)}")
    if agent_bricks:
        result.warnings.append(f"skipped {len(agent_bricks)} Agent Bricks endpoint(s) (READY with an empty config: "
                               f"their served entities are not visible through the API): {', '.join(agent_bricks)}")
    for model, users in result.implied.items():
        api = live.models[model]  # read: an entity is written `alias:` only when its model's aliases were
        if model not in models and isinstance(api, dict):
            models[model] = export_model(api, options, served_by=users)
    result.documents = [models[m] for m in sorted(models)] + sorted(result.documents, key=lambda d: d.name)
    return result

