"""A serving endpoint → its manifest document (`ServingEndpoint`), or why it cannot have one.

The export step of the `ServingEndpoint` kind (kinds/serving_endpoint.py), called by
`convert.export_objects`. Pure. Built from `normalize.live_endpoint` (and `live_permissions`), the
shape plan compares, leaving out only what the normaliser fills back in (rules 2-8 of
`export/__init__.py`): served entities with their aliases, compute fields and environment
variables (credentials never written), traffic, the AI gateway, tags and permissions.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from reconciler.errors import ReconcilerError
from reconciler.export.commented_yaml import scalar
from reconciler.export.documents import (
    Document,
    ExportOptions,
    Loc,
    escape,
    header,
    template_location,
    template_name,
    template_value,
)
from reconciler.manifests.model import API_VERSION, AiGateway, ServedEntity
from reconciler.normalize import (
    MANAGED_ENTITY_FIELDS,
    WRITE_ONLY_ENTITY_FIELDS,
    Semantics,
    creator_grants,
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
    plain_credential,
    update_failed,
    updating,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

ENTITY_OPTIONAL = ("workload_size", "workload_type", "scale_to_zero_enabled", "min_provisioned_throughput",
                   "max_provisioned_throughput", "min_provisioned_concurrency", "max_provisioned_concurrency",
                   "provisioned_model_units")
PREFERRED_ALIAS = "champion"


def _as_served_now(api: dict[str, Any]) -> dict[str, Any]:
    """The endpoint as it serves now (rule 7): its active config, whatever update is pending."""
    state = {**(api.get("state") or {}), "config_update": "NOT_UPDATING"}
    return {**api, "pending_config": None, "state": state}


def serving_entities(api: dict[str, Any]) -> list[dict[str, Any]]:
    return list((api.get("config") or {}).get("served_entities") or [])


def unsupported_reasons(api: dict[str, Any]) -> list[str]:
    """Why manifests cannot describe this endpoint yet (rule 5); empty when they can."""
    if api.get("config") == {}:
        kind = ((api.get("tile_endpoint_metadata") or {}).get("problem_type") or "").replace("_", " ").lower()
        return [f"it is READY with an empty config, as Agent Bricks endpoints{' (' + kind + ')' if kind else ''} are: "
                "its served entities are not visible through the API"]
    if not serving_entities(api):
        return ["its config lists no served_entities (an endpoint from the served_models era?)"]
    why = []
    for entity in serving_entities(api):
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


def export_endpoint(api: dict[str, Any], acl: dict[str, Any] | None,
                    models: Mapping[str, Any], options: ExportOptions,
                    warnings: list[str]) -> tuple[Document, list[str]]:
    """The manifest of one endpoint that has a config serving and no unsupported entity, and the
    models whose aliases it serves through."""
    name = api["name"]
    subject = f"serving_endpoint.{name}"
    if updating(api):
        warnings.append(f"{subject}: an update is in progress; exported the config it serves now, not the pending "
                        "one (plan will show the pending change as one to undo: export again when it is done)")
    elif update_failed(api):
        warnings.append(f"{subject}: its last config update failed; exported the config it still serves")
    live = live_endpoint(_as_served_now(api), acl)
    from reconciler import rollout  # an unfinished rollout's marker and new entity are the reconciler's

    marker = rollout.read_marker(api, subject)
    if marker is not None:
        warnings.append(f"{subject}: a rollout is unfinished ({marker.entity} → version {marker.version}); exported "
                        "the endpoint as it was before it")
        live = rollout.before(live, marker)
    doc = Document("ServingEndpoint", template_name(name, options.variables, uc=False), {})
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
    doc.header = header(f"serving endpoint {name}")
    doc.data = escape(doc.data)
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
        gateway["inference_table_config"] = template_location(gateway["inference_table_config"], options.variables)
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
    entity["entity_name"] = template_name(model_name, options.variables, uc=True)
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
        return template_value(value, options.variables, uc=True)
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
    return {key: template_value(tags[key], options.variables, uc=False) for key in sorted(tags)}


def _permissions(doc: Document, live: dict[str, Any], acl: dict[str, Any]) -> list[dict[str, str]]:
    grants = dict(live.get("permissions") or {})
    for principal, level in creator_grants(live).items():  # normalize.py rule 6: the creator's grant stays
        del grants[principal]
        doc.note(("spec",), f"permission of the creator ({principal.replace(':', ' ', 1)}, {level}): the "
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


def _fitted(model: type[BaseModel], value: dict[str, Any], where: str, doc: Document, subject: str,
            warnings: list[str]) -> dict[str, Any] | None:
    """`value` as the manifest model accepts it: fields it does not know are dropped (left
    unmanaged: the normaliser keeps their live values); None if it cannot be expressed at all."""
    from pydantic import ValidationError

    value = copy.deepcopy(value)
    for _ in range(5):
        try:
            return model.model_validate(value).model_dump(exclude_unset=True)
        except ValidationError as exc:
            errors = exc.errors()
            if any(e["type"] != "extra_forbidden" for e in errors):
                break
            for error in errors:
                loc = [p for p in error["loc"]]
                parent: Any = value
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

