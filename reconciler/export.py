"""Live objects → manifests: `reconciler export`, to adopt endpoints and models made elsewhere.

Called by the `export` command in cli.py, in three steps: `read_live` reads what was asked for
through `Workspace` (in parallel, each object once); `export_objects` turns those API-shaped
dicts into manifest documents (pure, no I/O); `write_export` renders each document as commented
YAML (`render`) and writes every file, all of them or none.

An exported manifest must normalise back to exactly the live state, so `export` then `plan` shows
no changes: it is built from the same normalised shape the planner compares against
(`normalize.live_endpoint`, `live_model`, `live_permissions`), and only leaves out what the
normaliser fills back in. The rules (also in README, "Adopting existing endpoints"):

 1. One file per object: `endpoints/<name>.yaml`, `models/<catalog.schema.model>.yaml`; a
    `${var.NAME}` in a name is spelt `{NAME}` in the file name. Keys in the manifest format's
    order, maps sorted by key, served entities by traffic share (largest first), then name.
    No timestamps or hosts: the same workspace always exports the same bytes.
 2. Left out because it is the API's default, the server fills it in or the reconciler owns it
    (normalize.py rules 3-7, FIELD_RULES), with a comment saying so: a served entity `name` equal
    to the server's default `<model>-<version>` (pinned entities only, see 3), `workload_type:
    CPU`, `workload_size` / `workload_type` of provisioned-throughput entities and `workload_size`
    of provisioned-concurrency ones (the server's), the single 100% route, the reconciler's own
    `managed-by` / `reconciler-stack` tags, inherited grants and the creator's own grant, a
    model's `owner`, an empty description, `route_optimized: false`. A served entity is complete
    (a field left out means the API's default), so everything else it has live is written:
    `scale_to_zero_enabled` always, on entities that scale (writes must send it; when the
    workspace does not report it, `false` is written with a TODO and a warning), and fields this
    release does not know are left out with a note (they are kept as they are live).
 3. Aliases: an entity that serves a version an alias of its model points at is written
    `alias:` (a comment names the version), and the model's manifest is exported with it, with
    all its aliases (checks.py needs a manifest to define any alias used). Several aliases on
    one version: the alias named like the served entity, else `champion`, else the first in
    alphabetical order. Such an entity keeps its `name` even when it is the default, so that
    moving the alias updates the entity in place instead of renaming it. `--pin-versions`
    writes `entity_version` instead (and exports models only when asked).
 4. Secrets: references stay references. A plain value that checks.py refuses (a credential-
    looking name, or a malformed reference) is never written nor printed: the manifest gets the
    reference `{{secrets/<endpoint>/<variable in lower case>}}` with a TODO, and stderr a
    warning. The file validates; `plan` fails on the missing secret until someone stores the
    value there or points at the secret that holds it, so the credential never reaches git and
    nobody can apply the manifest without deciding.
 5. What the format cannot describe: endpoints serving external models, foundation models or
    non-Unity-Catalog models are not exported (a manifest listing only their other entities
    would remove those on the next apply). A note `endpoints/<name>.unsupported.txt` and a
    warning say why; with --all-endpoints, Databricks' own pay-per-token foundation model
    endpoints are only counted in one warning. A single value the format cannot hold is left
    out (unmanaged: the normaliser keeps the live value) with a comment and a warning.
 6. `--var NAME=VALUE`: a name or value equal to VALUE, or one dot-separated part of a Unity
    Catalog name equal to it, is written `${var.NAME}` (model and entity names, inference table
    locations, tag values, environment variable values); never part of a word. A literal `${`
    in any other value is written `$${` so it loads back unchanged.
 7. An endpoint with an update in flight is exported from the config it serves (`config`), not
    from `pending_config`, with a warning; one still being created has nothing to export yet. An
    Agent Bricks endpoint is READY with `config: {}` (real-api/endpoint_list_01.json): its served
    entities are not visible through the API, so it is skipped as one manifests cannot describe
    (rule 5), saying so; with --all-endpoints they are counted in one warning.
 8. A legacy inference table (`auto_capture_config`) is not exported (validate refuses it: it can
    no longer be enabled); a note and a warning say to move to `ai_gateway.inference_table_config`.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import Problem, ReconcilerError
from reconciler.files import write_files
from reconciler.manifests.model import API_VERSION, AiGateway, ServedEntity
from reconciler.normalize import (
    MANAGED_ENTITY_FIELDS,
    WRITE_ONLY_ENTITY_FIELDS,
    Semantics,
    legacy_inference_table,
    live_endpoint,
    live_model,
    rules,
    server_filled,
)
from reconciler.redact import register
from reconciler.terms import (
    ALIAS_NAME,
    MANAGED_BY_TAG,
    PRINCIPAL_KEYS,
    RESERVED_ALIAS,
    SECRET_REF,
    STACK_TAG,
    UC_THREE_PART,
    default_entity_name,
    name_problem,
    plain_credential,
)

Loc = tuple[str | int, ...]
ENDPOINTS_DIR = "endpoints"
MODELS_DIR = "models"
SCHEMA_PATH = os.path.join("schemas", "manifest.schema.json")
ENTITY_OPTIONAL = ("workload_size", "workload_type", "scale_to_zero_enabled", "min_provisioned_throughput",
                   "max_provisioned_throughput", "min_provisioned_concurrency", "max_provisioned_concurrency",
                   "provisioned_model_units")
PREFERRED_ALIAS = "champion"
# Lower-case dot-separated names, as Unity Catalog stores them; parts start with a letter or '_'
# so that version numbers and the like ("1.2.3") are never taken for names.
_UC_LIKE = re.compile(r"[a-z_][a-z0-9_-]*(\.[a-z_][a-z0-9_-]*){2}")
_PLACEHOLDER = re.compile(r"\$\{var\.([A-Za-z0-9_-]+)\}")


# ---- the result --------------------------------------------------------------------------------

@dataclass
class Document:
    """One manifest file: its data, and comments that say what was left out and why."""

    kind: str  # "RegisteredModel" | "ServingEndpoint"
    name: str  # metadata.name as written (may hold ${var.NAME})
    data: dict[str, Any]
    header: list[str] = field(default_factory=list)
    eol: dict[Loc, str] = field(default_factory=dict)  # comment at the end of the line of the key at Loc
    after: dict[Loc, list[str]] = field(default_factory=dict)  # comment lines after a mapping's last key

    @property
    def path(self) -> str:
        """Relative path in the output directory."""
        folder = MODELS_DIR if self.kind == "RegisteredModel" else ENDPOINTS_DIR
        return f"{folder}/{_PLACEHOLDER.sub(lambda m: '{' + m.group(1) + '}', self.name)}.yaml"

    def note(self, loc: Loc, line: str) -> None:
        self.after.setdefault(loc, []).append(line)


@dataclass
class Export:
    documents: list[Document] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # relative path -> text, for endpoints not exported
    warnings: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # what was asked for and could not be exported
    implied: dict[str, list[str]] = field(default_factory=dict)  # model -> endpoints serving through its aliases


@dataclass(frozen=True)
class ExportOptions:
    pin_versions: bool = False
    variables: Mapping[str, str] = field(default_factory=dict)
    stack: str | None = None


@dataclass
class LiveObjects:
    """What `read_live` found. None: does not exist; a ReconcilerError: could not be read."""

    endpoints: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    acls: dict[str, dict[str, Any] | ReconcilerError] = field(default_factory=dict)
    models: dict[str, dict[str, Any] | None | ReconcilerError] = field(default_factory=dict)
    requested_endpoints: list[str] = field(default_factory=list)
    requested_models: list[str] = field(default_factory=list)
    all_endpoints: bool = False
    refused: dict[str, Problem] = field(default_factory=dict)  # subject -> why its answer was not used


# ---- reading -----------------------------------------------------------------------------------

def read_live(workspace: Any, *, endpoints: Sequence[str], models: Sequence[str], all_endpoints: bool,
              pin_versions: bool, parallelism: int) -> LiveObjects:
    """Two parallel rounds: the endpoints and models asked for; then each endpoint's permissions
    (they need its id) and the models its entities serve, for their aliases. A missing object is
    None. A permission or implied-model read that fails only costs that part (warned about)."""
    from reconciler.live import run_parallel

    live = LiveObjects(requested_endpoints=list(dict.fromkeys(endpoints)),
                       requested_models=list(dict.fromkeys(models)), all_endpoints=all_endpoints)
    bad = [m for m in live.requested_models if not UC_THREE_PART.fullmatch(m.lower())]
    if bad:
        raise ReconcilerError([Problem(f"--model '{m}' is not a Unity Catalog model name; write catalog.schema.model")
                               for m in bad])
    names = list(live.requested_endpoints)
    if all_endpoints:
        for listed in sorted({e["name"] for e in workspace.list_endpoints()} - set(names)):
            problem = name_problem("endpoint", listed)  # it becomes a file name: never trusted
            if problem:
                live.refused[f"serving_endpoints {len(live.refused)}"] = Problem(
                    f"the workspace lists an endpoint whose name {problem}; not exported", subject="serving_endpoints")
            else:
                names.append(listed)
    calls: list[tuple[Any, Callable[[], Any]]] = [(("endpoint", n), lambda n=n: workspace.get_endpoint(n))
                                                  for n in names]
    calls += [(("model", m), lambda m=m: workspace.get_model(m)) for m in live.requested_models]
    for (kind, name), value in run_parallel(calls, parallelism).items():
        (live.endpoints if kind == "endpoint" else live.models)[name] = _as_asked(kind, name, value, live.refused)
    # Keep the order asked for; an answer for another name is left out (its problem says why).
    live.endpoints = {n: live.endpoints[n] for n in names if f"serving_endpoint.{n}" not in live.refused}

    calls = []
    for name, api in live.endpoints.items():
        if api is not None and api.get("id"):
            calls.append((("acl", name), _tolerant(lambda n=name, i=api["id"]: workspace.get_endpoint_permissions(n, i))))
    if not pin_versions:
        served = {e["entity_name"] for api in live.endpoints.values() if api
                  for e in _serving_entities(api) if UC_THREE_PART.fullmatch(e.get("entity_name") or "")}
        known = {(api or {}).get("full_name") for api in live.models.values() if isinstance(api, dict)}
        calls += [(("model", m), _tolerant(lambda m=m: workspace.get_model(m)))
                  for m in sorted(served - known - set(live.models))]
    for (kind, name), value in run_parallel(calls, parallelism).items():
        if kind == "acl":
            live.acls[name] = value
        elif value is not None:
            live.models[name] = _as_asked(kind, name, value, live.refused)
    return live


def _as_asked(kind: str, name: str, api: Any, refused: dict[str, Problem]) -> Any:
    """`api` if it describes the object asked for, else None and a problem: a name from a server
    answer becomes a file name, so it must be the name asked for (or listed), in the API's grammar."""
    if not isinstance(api, dict):
        return api
    endpoint = kind == "endpoint"
    answered = api.get("name" if endpoint else "full_name", name)
    problem = name_problem("endpoint" if endpoint else "model", answered)
    if problem is None and (answered == name if endpoint else str(answered).lower() == name.lower()):
        return api
    subject = f"{'serving_endpoint' if endpoint else 'registered_model'}.{name}"
    refused[subject] = Problem(f"the workspace answered for another name ({problem or repr(answered)[:80]}); not "
                               "exported", subject=subject)
    return None


def _tolerant(read: Callable[[], Any]) -> Callable[[], Any]:
    def call() -> Any:
        try:
            return read()
        except ReconcilerError as exc:
            return exc
    return call


def _as_served_now(api: dict[str, Any]) -> dict[str, Any]:
    """The endpoint as it serves now (rule 7): its active config, whatever update is pending."""
    state = {**(api.get("state") or {}), "config_update": "NOT_UPDATING"}
    return {**api, "pending_config": None, "state": state}


def _serving_entities(api: dict[str, Any]) -> list[dict[str, Any]]:
    return list((api.get("config") or {}).get("served_entities") or [])


# ---- live → documents (pure) -------------------------------------------------------------------

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
            if not asked and all(e.get("foundation_model") for e in _serving_entities(api)):
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
        if model not in models:
            models[model] = export_model(live.models[model], options, served_by=users)  # type: ignore[arg-type]
    result.documents = [models[m] for m in sorted(models)] + sorted(result.documents, key=lambda d: d.name)
    return result


def unsupported_reasons(api: dict[str, Any]) -> list[str]:
    """Why manifests cannot describe this endpoint yet (rule 5); empty when they can."""
    if api.get("config") == {}:
        kind = ((api.get("tile_endpoint_metadata") or {}).get("problem_type") or "").replace("_", " ").lower()
        return [f"it is READY with an empty config, as Agent Bricks endpoints{' (' + kind + ')' if kind else ''} are: "
                "its served entities are not visible through the API"]
    if not _serving_entities(api):
        return ["its config lists no served_entities (an endpoint from the served_models era?)"]
    why = []
    for entity in _serving_entities(api):
        label = f"served entity '{entity.get('name')}'"
        external, foundation = entity.get("external_model"), entity.get("foundation_model")
        if external:
            why.append(f"{label} is an external model ({external.get('provider')} {external.get('name')})")
        elif foundation:
            why.append(f"{label} is a Databricks foundation model ({foundation.get('name')})")
        elif not UC_THREE_PART.fullmatch(entity.get("entity_name") or ""):
            why.append(f"{label} serves '{entity.get('entity_name')}', not a Unity Catalog model (catalog.schema.model)")
        elif not entity.get("entity_version"):
            why.append(f"{label} has no entity_version")
    return why


def unsupported_note(name: str, reasons: list[str]) -> str:
    """The text of `endpoints/<name>.unsupported.txt`."""
    return (f"Serving endpoint '{name}' was not exported: reconciler manifests cannot describe it yet.\n\n"
            + "".join(f"  - {line}\n" for line in reasons)
            + "\nA manifest listing only its other served entities would remove these on the next apply, so\n"
              "the whole endpoint was left out of the export: it stays as it is, unmanaged. This note is\n"
              "not a manifest (validate, plan and apply ignore it); delete it once read.\n")


# -- endpoints

def export_endpoint(api: dict[str, Any], acl: dict[str, Any] | None,
                    models: Mapping[str, Any], options: ExportOptions,
                    warnings: list[str]) -> tuple[Document, list[str]]:
    """The manifest of one endpoint that has a config serving and no unsupported entity, and the
    models whose aliases it serves through."""
    name = api["name"]
    subject = f"serving_endpoint.{name}"
    update = (api.get("state") or {}).get("config_update")
    if update == "IN_PROGRESS":
        warnings.append(f"{subject}: an update is in progress; exported the config it serves now, not the pending "
                        "one (plan will show the pending change as one to undo: export again when it is done)")
    elif update == "UPDATE_FAILED":
        warnings.append(f"{subject}: its last config update failed; exported the config it still serves")
    live = live_endpoint(_as_served_now(api), acl)
    from reconciler import rollout  # an unfinished rollout's marker and new entity are the reconciler's

    marker = rollout.read_marker(api, subject)
    if marker is not None:
        warnings.append(f"{subject}: a rollout is unfinished ({marker.entity} → version {marker.version}); exported "
                        "the endpoint as it was before it")
        live = rollout.before(live, marker)
    doc = Document("ServingEndpoint", _template_name(name, options.variables, uc=False), {})
    spec: dict[str, Any] = {}
    doc.data = {"apiVersion": API_VERSION, "kind": "ServingEndpoint", "metadata": {"name": doc.name}, "spec": spec}
    traffic = live["traffic"]
    order = sorted(live["served_entities"], key=lambda n: (-traffic.get(n, 0), n))
    needs: list[str] = []
    spec["served_entities"] = []
    for i, entity_name in enumerate(order):
        entity, model = _entity(doc, name, i, entity_name, live["served_entities"][entity_name], models, options,
                                warnings)
        spec["served_entities"].append(entity)
        if model is not None and model not in needs:
            needs.append(model)
    legacy = legacy_inference_table(_as_served_now(api))
    if legacy is not None:
        table = ".".join(str(legacy[k]) for k in ("catalog_name", "schema_name", "table_name_prefix") if legacy.get(k))
        doc.note(("spec",), f"auto_capture_config ({table}): a legacy inference table; manifests cannot enable them "
                            "any more, and apply leaves it as it is: move to ai_gateway.inference_table_config")
        warnings.append(f"{subject}: has a legacy inference table (auto_capture_config {table}), unsupported since "
                        "March 20, 2026; not exported: disable it and use ai_gateway.inference_table_config")
    if len(order) == 1 and traffic == {order[0]: 100}:
        doc.note(("spec",), f"traffic_config: the default single route, 100% to {order[0]}")
    else:
        spec["traffic_config"] = {"routes": [{"served_entity_name": n, "traffic_percentage": traffic[n]}
                                             for n in sorted(traffic, key=lambda n: (-traffic[n], n))]}
    spec.update(_inference_sections(doc, live, options, subject, warnings))
    tags = _tags(doc, live["tags"], options, subject, warnings)
    if tags:
        spec["tags"] = tags
    if acl is not None:
        permissions = _permissions(doc, live, acl)
        if permissions:
            spec["permissions"] = permissions
    else:
        doc.note(("spec",), "permissions: could not be read (left as they are)")
    if live.get("description"):
        spec["description"] = live["description"]
    if live.get("route_optimized"):
        spec["route_optimized"] = True
    doc.header = _header(f"serving endpoint {name}")
    doc.data = _escape(doc.data)
    return doc, needs


def _inference_sections(doc: Document, live: dict[str, Any], options: ExportOptions, subject: str,
                        warnings: list[str]) -> dict[str, Any]:
    """`ai_gateway`, each part as far as the manifest format holds it."""
    sections: dict[str, Any] = {}
    gateway: dict[str, Any] = {}
    live_gateway = live.get("ai_gateway", {})
    for key in sorted(live_gateway, key=lambda k: (list(AiGateway.model_fields) + [k]).index(k)):  # format's order
        gateway.update(_fitted(AiGateway, {key: live_gateway[key]}, "ai_gateway", doc, subject, warnings) or {})
    if "inference_table_config" in gateway:
        gateway["inference_table_config"] = _template_location(gateway["inference_table_config"], options.variables)
    if gateway:
        sections["ai_gateway"] = gateway
    return sections


def _entity(doc: Document, endpoint: str, i: int, name: str, live: dict[str, Any], models: Mapping[str, Any],
            options: ExportOptions, warnings: list[str]) -> tuple[dict[str, Any], str | None]:
    at: Loc = ("spec", "served_entities", i)
    subject = f"serving_endpoint.{endpoint}"
    model_name, version = live["entity_name"], str(live["entity_version"])
    model_api = models.get(model_name)
    alias = None if options.pin_versions else _alias_for(name, version, model_api if isinstance(model_api, dict) else None)
    if isinstance(model_api, ReconcilerError) and not options.pin_versions:
        warnings.append(f"{subject}: served entity '{name}' pinned to version "
                        f"{version}: cannot read the aliases of '{model_name}' ({model_api.problems[0].message})")
    entity: dict[str, Any] = {}
    default = default_entity_name(model_name, version)
    if alias is not None or name != default:
        entity["name"] = name
        if name == default:
            doc.eol[at + ("name",)] = "the server's default name, kept: moving the alias then updates this entity in place"
    else:
        doc.note(("spec",), f"served entity name {name}: the server's default for version {version}")
    entity["entity_name"] = _template_name(model_name, options.variables, uc=True)
    if alias is not None:
        entity["alias"] = alias
        doc.eol[at + ("alias",)] = f"version {version}"
    else:
        entity["entity_version"] = version
    entity.update(_compute(doc, at, subject, name, live, warnings))
    env = live.get("environment_vars") or {}
    if env:
        entity["environment_vars"] = {key: _env_value(doc, at + ("environment_vars", key), endpoint, name, key,
                                                      env[key], options, warnings)
                                      for key in sorted(env)}
    if live.get("instance_profile_arn"):
        entity["instance_profile_arn"] = live["instance_profile_arn"]
    return entity, (model_name if alias is not None else None)


def _compute(doc: Document, at: Loc, subject: str, name: str, live: dict[str, Any],
             warnings: list[str]) -> dict[str, Any]:
    """A served entity's compute and scaling fields as a manifest writes them (rule 2)."""
    written: dict[str, Any] = {}
    defaults = {r.entity_field: r.value for r in rules(Semantics.DEFAULT, live)}
    filled = server_filled(live)
    for key in ENTITY_OPTIONAL:
        if key not in live:
            continue
        if key in filled:
            doc.note(("spec",), f"served_entities[{name}].{key} {live[key]}: the server's, on this kind of entity")
        elif key in defaults and live[key] == defaults[key]:
            doc.note(("spec",), f"served_entities[{name}].{key}: {live[key]}, the API's default")
        elif _entity_field_fits(key, live[key]):
            written[key] = live[key]
        else:
            doc.note(("spec",), f"served_entities[{name}].{key} {live[key]!r}: the manifest format cannot hold it")
            warnings.append(f"{subject}: served entity '{name}': {key} {live[key]!r} is not expressible in a "
                            "manifest; left out, so plan shows it reset to the API's default")
    for rule in rules(Semantics.REQUIRED, live):
        key = rule.entity_field or ""
        if key in live:
            continue
        written[key] = rule.value
        doc.eol[at + (key,)] = (f"TODO: the workspace does not report it, and manifests must state it: "
                                f"{scalar(rule.value)} is what databricks-agents deploys with; check it")
        warnings.append(f"{subject}: served entity '{name}': the workspace does not report {key}, which manifests "
                        f"must state; written as {scalar(rule.value)} (TODO in the file): plan shows it as a change "
                        "until the endpoint has it")
    for key in sorted(set(live) - MANAGED_ENTITY_FIELDS - WRITE_ONLY_ENTITY_FIELDS):
        doc.note(("spec",), f"served_entities[{name}].{key}: not in the manifest format (kept as it is live)")
    return written


def _alias_for(entity: str, version: str, model_api: dict[str, Any] | None) -> str | None:
    """The alias to write for an entity serving `version` (rule 3), or None to pin the version."""
    if model_api is None:
        return None
    candidates = sorted(alias for alias, v in live_model(model_api)["aliases"].items()
                        if str(v) == version and ALIAS_NAME.fullmatch(alias) and not RESERVED_ALIAS.fullmatch(alias))
    for preferred in (entity, PREFERRED_ALIAS):
        if preferred in candidates:
            return preferred
    return candidates[0] if candidates else None


def _entity_field_fits(key: str, value: Any) -> bool:
    from pydantic import ValidationError

    try:
        ServedEntity.model_validate({"entity_name": "c.s.m", "entity_version": "1", key: value})
        return True
    except ValidationError:
        return False


def _env_value(doc: Document, loc: Loc, endpoint: str, entity: str, key: str, value: str, options: ExportOptions,
               warnings: list[str]) -> str:
    if SECRET_REF.fullmatch(value):
        return value
    looks_secret = plain_credential(key, value)
    malformed_ref = "{{" in value and "secrets" in value
    if not (looks_secret or malformed_ref):
        return _template_value(value, options.variables, uc=True)
    # Never written nor printed (rule 4): a reference the user must make real, or fix.
    register(value)
    scope = re.sub(r"[^A-Za-z0-9_.-]", "_", endpoint)[:128]
    secret = re.sub(r"[^A-Za-z0-9_.-]", "_", key.lower())[:128]
    reference = f"{{{{secrets/{scope}/{secret}}}}}"
    what = "a plain value that looks like a credential" if looks_secret else "a malformed secret reference"
    doc.eol[loc] = (f"TODO: the workspace holds {what} here, not exported; store it in this secret "
                    f"(databricks secrets put-secret {scope} {secret}) or reference the secret that holds it")
    warnings.append(f"serving_endpoint.{endpoint}: served entity '{entity}': environment variable {key} holds "
                    f"{what}: its value is NOT exported (nor shown). The manifest references {reference} instead "
                    f"(marked TODO), and plan fails until that secret exists: store the value there, or change the "
                    f"reference to the secret that holds it")
    return reference


def _tags(doc: Document, tags: dict[str, str], options: ExportOptions, subject: str,
          warnings: list[str]) -> dict[str, str]:
    tags = dict(tags)
    owner = tags.pop(MANAGED_BY_TAG, None)
    stack = tags.pop(STACK_TAG, None)
    if owner == "reconciler":
        doc.note(("spec",), f"tags {MANAGED_BY_TAG}{', ' + STACK_TAG if stack else ''}: the reconciler sets its "
                            "own tags")
    elif owner is not None:
        warnings.append(f"{subject}: tagged {MANAGED_BY_TAG}: {owner}; apply re-tags it {MANAGED_BY_TAG}: reconciler "
                        "(make sure the other tool lets go of it)")
    if stack is not None and stack != options.stack:
        warnings.append(f"{subject}: tagged {STACK_TAG}: {stack}; plan and apply it with --stack {stack}, or the tag "
                        "changes")
    return {key: _template_value(tags[key], options.variables, uc=False) for key in sorted(tags)}


def _permissions(doc: Document, live: dict[str, Any], acl: dict[str, Any]) -> list[dict[str, str]]:
    grants = dict(live.get("permissions") or {})
    creator = live.get("creator")
    for key in ("user_name", "service_principal_name"):  # normalize.py rule 6: the creator's grant stays
        principal = f"{key}:{creator}"
        if creator and principal in grants:
            doc.note(("spec",), f"permission of the creator ({key} {creator}, {grants.pop(principal)}): the "
                                "reconciler keeps it as it is")
    inherited = sorted({f"{k} {e[k]}" for e in acl.get("access_control_list") or [] for k in PRINCIPAL_KEYS
                        if e.get(k) and any(p.get("inherited") for p in e.get("all_permissions") or [])})
    if inherited:
        doc.note(("spec",), f"inherited permissions ({', '.join(inherited)}): not the endpoint's to manage")
    if not grants:
        doc.note(("spec",), "permissions: no other direct grants; add a list to manage who may query it")
    order = {key: i for i, key in enumerate(PRINCIPAL_KEYS)}
    entries = []
    for principal in sorted(grants, key=lambda p: (order[p.split(":", 1)[0]], p.split(":", 1)[1])):
        key, _, who = principal.partition(":")
        entries.append({key: who, "permission_level": grants[principal]})
    return entries


def _fitted(model: Any, value: dict[str, Any], where: str, doc: Document, subject: str,
            warnings: list[str]) -> dict[str, Any] | None:
    """`value` as the manifest model accepts it: fields it does not know are dropped (left
    unmanaged: the normaliser keeps their live values); None if it cannot be expressed at all."""
    from pydantic import ValidationError

    value = copy.deepcopy(value)
    for _ in range(5):
        try:
            return model.model_validate(value).model_dump(exclude_unset=True)  # type: ignore[no-any-return]
        except ValidationError as exc:
            errors = exc.errors()
            if any(e["type"] != "extra_forbidden" for e in errors):
                break
            for error in errors:
                loc = [p for p in error["loc"]]
                parent = value
                for part in loc[:-1]:
                    parent = parent[part]
                parent.pop(loc[-1], None)
                dotted = ".".join(str(p) for p in [where, *loc])
                doc.note(("spec",), f"{dotted}: not in the manifest format (left as it is)")
                warnings.append(f"{subject}: {dotted} is not in the manifest format; left out (unmanaged)")
    keys = ", ".join(sorted(value))
    doc.note(("spec",), f"{where}.{keys}: its live value does not fit the manifest format (left as it is)")
    warnings.append(f"{subject}: {where}.{keys} does not fit the manifest format; left out (unmanaged)")
    return None


# -- models

def export_model(api: dict[str, Any], options: ExportOptions, *, served_by: Sequence[str] = ()) -> Document:
    full_name = api.get("full_name") or ""
    live = live_model(api)
    doc = Document("RegisteredModel", _template_name(full_name, options.variables, uc=True), {})
    spec: dict[str, Any] = {}
    doc.data = {"apiVersion": API_VERSION, "kind": "RegisteredModel", "metadata": {"name": doc.name}, "spec": spec}
    if live.get("comment"):
        spec["comment"] = live["comment"]
    if live["aliases"]:
        spec["aliases"] = {alias: live["aliases"][alias] for alias in sorted(live["aliases"])}
        doc.eol[("spec", "aliases")] = "the complete set: an alias not listed here is removed on apply"
    else:
        doc.note(("spec",), "aliases: it has none; leave out to leave them unmanaged")
    if live.get("owner"):
        doc.note(("spec",), f"owner ({live['owner']}): unmanaged; add `owner:` to manage it")
    doc.header = _header(f"registered model {full_name}")
    if served_by:
        doc.header.append(f"Exported with serving endpoint(s) {', '.join(served_by)}, which serve it through its "
                          "aliases.")
    doc.data = _escape(doc.data)
    return doc


def _header(what: str) -> list[str]:
    return [f"{what[0].upper()}{what[1:]}: exported by `reconciler export`.",
            "Comments mark what was left out on purpose: what a manifest leaves out is not managed."]


# -- variables and escaping (rule 6)

class _Templated(str):
    """A value that holds ${var.NAME} placeholders on purpose (not escaped)."""


def _var_for(text: str, variables: Mapping[str, str]) -> str | None:
    for name in sorted(variables):
        if variables[name] and text == variables[name]:
            return f"${{var.{name}}}"
    return None


def _template_name(text: str, variables: Mapping[str, str], *, uc: bool) -> str:
    whole = _var_for(text, variables)
    if whole is not None:
        return _Templated(whole)
    if uc and UC_THREE_PART.fullmatch(text):
        parts = [_var_for(part, variables) or part for part in text.split(".")]
        return _Templated(".".join(parts)) if any("${" in p for p in parts) else text
    return text


def _template_value(text: str, variables: Mapping[str, str], *, uc: bool) -> str:
    if uc and not _UC_LIKE.fullmatch(text):
        uc = False
    return _template_name(text, variables, uc=uc)


def _template_location(config: dict[str, Any], variables: Mapping[str, str]) -> dict[str, Any]:
    return {k: (_template_name(v, variables, uc=False) if k in ("catalog_name", "schema_name", "table_name_prefix")
                and isinstance(v, str) else v) for k, v in config.items()}


def _escape(value: Any) -> Any:
    """`${` in a live value is written `$${` so the loader does not take it for a variable."""
    if isinstance(value, _Templated):
        return str(value)
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value


# ---- rendering: commented YAML -------------------------------------------------------------------

# Plain scalars start with a letter, digit or one of `_/.(`, and hold nothing YAML could read as
# a comment, a key, a quote, a flow collection or an escape; `_loads_as_itself` has the last word.
_PLAIN = re.compile(r"[A-Za-z0-9_/.(][^#:'\"`{}\[\]\\\t\n\r]*")


def scalar(value: Any) -> str:
    """One YAML scalar that loads back as exactly `value` (plain when that is safe, else quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text == text.strip() and _loads_as_itself(text):
        return text
    return _double_quoted(text)


def _double_quoted(text: str) -> str:
    """A YAML double-quoted scalar; characters YAML may not carry raw are escaped (as \\x, \\u or
    \\U: JSON's surrogate pairs for characters beyond the BMP would not load back)."""
    out = []
    for char in text:
        if char in '\\"':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _loads_as_itself(text: str) -> bool:
    import yaml

    try:
        return yaml.safe_load(f"k: {text}\n") == {"k": text}
    except yaml.YAMLError:
        return False


def render(doc: Document, *, schema_ref: str | None = None) -> str:
    lines = []
    if schema_ref:
        lines += [f"# yaml-language-server: $schema={schema_ref}", "#"]
    lines += [f"# {_one_line(line)}" for line in doc.header]
    _mapping(lines, doc.data, (), 0, doc)
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _line(text: str, comment: str | None) -> str:
    return f"{text}  # {_one_line(comment)}" if comment else text


def _mapping(lines: list[str], mapping: dict[str, Any], loc: Loc, depth: int, doc: Document) -> None:
    pad = "  " * depth
    for key, value in mapping.items():
        at = loc + (key,)
        head = f"{pad}{scalar(key)}:"
        if isinstance(value, dict) and value:
            lines.append(_line(head, doc.eol.get(at)))
            _mapping(lines, value, at, depth + 1, doc)
        elif isinstance(value, list) and value:
            lines.append(_line(head, doc.eol.get(at)))
            _sequence(lines, value, at, depth + 1, doc)
        else:
            empty = "{}" if isinstance(value, dict) else "[]" if isinstance(value, list) else scalar(value)
            lines.append(_line(f"{head} {empty}", doc.eol.get(at)))
            lines += _notes(doc, at, depth + 1)
    lines += _notes(doc, loc, depth)


def _notes(doc: Document, loc: Loc, depth: int) -> list[str]:
    """The comment lines after a mapping; under `spec`, the list of what was left out."""
    notes = doc.after.get(loc, [])
    if loc == ("spec",) and notes:
        notes = ["Left out on purpose:"] + [f"- {line}" for line in notes]
    return [f"{'  ' * depth}# {_one_line(line)}" for line in notes]


def _sequence(lines: list[str], items: list[Any], loc: Loc, depth: int, doc: Document) -> None:
    pad = "  " * depth
    for i, item in enumerate(items):
        at = loc + (i,)
        if isinstance(item, dict) and item:
            start = len(lines)
            _mapping(lines, item, at, depth + 1, doc)
            lines[start] = f"{pad}- {lines[start][len(pad) + 2:]}"
        elif isinstance(item, list) and item:
            raise ValueError("nested lists do not occur in manifests")
        else:
            empty = "{}" if isinstance(item, dict) else "[]" if isinstance(item, list) else scalar(item)
            lines.append(_line(f"{pad}- {empty}", doc.eol.get(at)))


# ---- writing -----------------------------------------------------------------------------------

def schema_ref(out_dir: str, folder: str) -> str | None:
    """The modeline's relative path to schemas/manifest.schema.json of the repository holding
    `out_dir` (the nearest parent that has one), or None outside such a repository."""
    target = os.path.abspath(os.path.join(out_dir, folder))
    current = os.path.abspath(out_dir)
    while True:
        if os.path.isfile(os.path.join(current, SCHEMA_PATH)):
            return os.path.relpath(os.path.join(current, SCHEMA_PATH), target).replace(os.sep, "/")
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def write_export(out_dir: str, result: Export) -> list[str]:
    """Write every document and note under `out_dir`, all of them or none. Returns the paths
    written. Raises ReconcilerError naming the path that cannot be written."""
    files = {os.path.join(out_dir, doc.path): render(doc, schema_ref=schema_ref(out_dir, os.path.dirname(doc.path)))
             for doc in result.documents}
    files.update({os.path.join(out_dir, relative): text for relative, text in result.notes.items()})
    return write_files(files, inside=out_dir, failed="nothing was exported")


def summary(result: Export, written: Sequence[str], out_dir: str, options: ExportOptions) -> list[str]:
    """The lines `reconciler export` prints on stdout."""
    lines = [f"wrote {path}" for path in written]
    endpoints = sum(1 for d in result.documents if d.kind == "ServingEndpoint")
    models = len(result.documents) - endpoints
    for model, users in sorted(result.implied.items()):
        lines.append(f"  (registered model {model} is exported too: {', '.join(users)} serve(s) through its aliases)")
    if result.documents:
        flags = (" --stack " + options.stack if options.stack else "") + \
            (" (with the same --var values)" if options.variables else "")
        lines.append(f"Exported {endpoints} serving endpoint(s) and {models} registered model(s) to {out_dir}. "
                     f"Check: reconciler plan {out_dir}{flags}")
    return lines
