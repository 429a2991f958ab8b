"""Desired and live state in one shape, so the diff sees real differences and nothing else.

Pure functions; no I/O. Called by plan.py (to diff) and apply.py (to build write payloads from a
fresh read, so what is sent is what was diffed); checks.py, preflight.py and export/endpoints.py read the
field-semantics table (`FIELD_RULES`).

The normalised shape of an endpoint:
    {"served_entities": {name: {field: value}}, "traffic": {entity name: percent},
     "ai_gateway": {...}, "tags": {key: value}, "permissions": {"group_name:x": level},
     "description": str, "route_optimized": bool, "creator": str}
and of a registered model: {"comment": str, "owner": str, "aliases": {alias: version}}.

THE RULES (each with its reason):
 1. Lists with identity are maps: served entities by name, routes by entity name, tags by key,
    permissions by principal, aliases by alias. The API re-orders them; position-based diffs
    show changes that are not there (Terraform #5119, #5188; Asset Bundles compares by position).
 2. A route may carry `served_model_name` or `served_entity_name`; they are the same thing
    (real responses carry both on the default route).
 3. Git is the truth for served entities: a served entity in a manifest is complete. A field it
    leaves out means the API's default (`FIELD_RULES`: `workload_type` CPU; for fields without
    one, none: no environment variables, no provisioned concurrency...), so reverting a commit
    reverts production, and the plan shows the reset. Two kinds of live values are taken as they
    are (`overlay`): what the server fills in itself where the manifest leaves it out
    (SERVER_FILLED rows: no change, and never resent, `config_payload`), and fields this release
    does not know (a newer API's; resent as the server sent them, which it accepts: databricks-agents
    echoes whole live entities on every redeploy). Endpoint-level blocks a manifest leaves out
    entirely (`ai_gateway`, `tags`, `permissions`, `description`) are not managed: their live
    values are kept, both in the diff and in writes.
 4. A served entity without `name` gets the server's default, `<model short name>-<version>`
    (Model Serving API reference: "defaults to <entity-name>-<entity-version>"; for UC models the
    part after the last dot).
 5. No `traffic_config` with one served entity means the server's single 100% route (documented
    default; Terraform #3789 re-applies routes on every run because it does not know this).
 6. Maps the manifest gives are the complete set (aliases, tags, environment variables,
    permissions, served entities, routes): live keys not in the manifest are removed. Exceptions:
    tags when the manifest gives none (only the reconciler's own tags are ensured; other tags
    are left alone), and the endpoint creator's own grant (Databricks gives the creator
    CAN_MANAGE; removing it would lock the deployer out, as Terraform's permissions resource
    also refuses to). The deploying identity (`deployer`, an input of the plan) keeps CAN_MANAGE
    wherever it holds it or the manifest names it, even at a lower level: it must be able to
    manage what it deploys (Terraform's databricks_permissions re-adds the current user's
    CAN_MANAGE on every write for the same reason).
 7. Inherited permissions (workspace admins) are not the endpoint's to manage and are dropped.
 8. Lists without identity that are sets in meaning (guardrail keywords and topics) are
    compared sorted; rate limits by (key, principal, renewal period).
 9. Unset optional values (`None`) are dropped on both sides; `route_optimized` absent live
    means false (its documented default).
10. Secret references `{{secrets/s/k}}` are compared as text; values are never read.
11. Write-only fields (`burst_scaling_enabled`) are sent when a manifest states them and never
    diffed: GET never returns them, so a diff would be a change on every plan and a new config
    version on every apply (databricks/cli marks them input_only).
12. Legacy inference tables (`auto_capture_config`) are not part of the normalised shape: they
    can no longer be enabled (validate refuses them), config writes leave them out (the API then
    keeps the previous configuration's), and preflight warns about live ones.
13. Agent endpoints (their `task` is an agent task) support only inference tables in the AI
    gateway (SDK docstring of `put_ai_gateway`): only `inference_table_config` of their gateway is
    compared and written, so an echoed unsupported block can never cause a write the API refuses.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from reconciler.manifests.model import RegisteredModel, ServedEntity, ServingEndpoint, principal_of
from reconciler.terms import AGENT_TASK, IDENTITY_KEYS, default_entity_name, own_tags, principal_key, updating

# Maps are complete when given (rule 6): the overlay never fills keys into them.
MAPS = frozenset({"served_entities", "traffic", "tags", "permissions", "environment_vars", "aliases"})
PERMISSION_RANK = {"CAN_VIEW": 1, "CAN_QUERY": 2, "CAN_MANAGE": 3}

# ---- the field semantics table -------------------------------------------------------------------


class Semantics(str, Enum):
    DEFAULT = "default"  # left out of a manifest means `value`, the API's documented default
    REQUIRED = "required"  # no documented default: a manifest must state it (a validate error with the fix)
    WRITE_ONLY = "write-only"  # accepted on write, never returned: never diffed, sent when stated
    SERVER_FILLED = "server-filled"  # left out, the server picks it: its live value is no change and never resent
    READ_ONLY = "read-only"  # only the server sets it: not part of the normalised shape, never sent
    IMMUTABLE = "immutable"  # fixed at creation: a change replaces the endpoint
    DEPRECATED = "deprecated"  # refused by validate, with the migration
    EXCLUSIVE = "exclusive"  # not together with `others`: a validate error with the fix


THROUGHPUT = ("min_provisioned_throughput", "max_provisioned_throughput", "provisioned_model_units")
CONCURRENCY = ("min_provisioned_concurrency", "max_provisioned_concurrency")


def provisioned_throughput(entity: Mapping[str, Any]) -> bool:
    """Provisioned throughput: tokens per second or model units (`PtServedModel`)."""
    return any(entity.get(key) is not None for key in THROUGHPUT)


def provisioned_concurrency(entity: Mapping[str, Any]) -> bool:
    return any(entity.get(key) is not None for key in CONCURRENCY)


# Conditions a row may hold under, on a served entity's fields (as a manifest or the API gives them).
CONDITIONS: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "always": lambda entity: True,
    # Compute that scales with load: a Unity Catalog model that is not provisioned throughput (the
    # only other served entities, external and foundation models, are not in the manifest format).
    "scaling": lambda entity: not provisioned_throughput(entity),
    "sized": lambda entity: not provisioned_throughput(entity) and not provisioned_concurrency(entity),
    "provisioned throughput": provisioned_throughput,
    "provisioned concurrency": provisioned_concurrency,
}


@dataclass(frozen=True)
class FieldRule:
    """One row: what a field means to the reconciler, when, and the evidence for it.

    `field` is an endpoint field (`description`) or a served entity field (`served_entities.workload_type`);
    `when` names a CONDITIONS entry (served entity rows); `value` is a DEFAULT's value, and for a
    REQUIRED one what export writes (marked TODO) when the workspace does not report it: what
    databricks-agents deploys with (`deployments.py`: workload_size "Small", scale_to_zero False);
    `others` are the fields an EXCLUSIVE one cannot go with; `fix` is what validate tells the user
    to do."""

    field: str
    semantics: Semantics
    source: str
    when: str = "always"
    value: Any = None
    others: tuple[str, ...] = ()
    fix: str = ""

    @property
    def entity_field(self) -> str | None:
        prefix = "served_entities."
        return self.field[len(prefix):] if self.field.startswith(prefix) else None

    def holds(self, entity: Mapping[str, Any]) -> bool:
        return CONDITIONS[self.when](entity)


_PT_SOURCE = ("real-api/endpoint_create_resp_02.json and _03 (DEFAULTS.md B3): entities created with only "
              "min/max_provisioned_throughput come back with workload_size Small and a GPU workload_type; "
              "`PtServedModel` (SDK 0.156) has neither")
FIELD_RULES: tuple[FieldRule, ...] = (
    # -- served entities
    FieldRule("served_entities.workload_type", Semantics.DEFAULT, value="CPU", when="scaling",
              source='SDK 0.156 ServedEntityInput.workload_type: "The default value for this parameter is CPU"; '
                     "Terraform model_serving docs (DEFAULTS.md A3)"),
    FieldRule("served_entities.scale_to_zero_enabled", Semantics.REQUIRED, when="scaling", value=False,
              fix="add scale_to_zero_enabled: false (or true to let it scale to zero when idle)",
              source='no documented default (DEFAULTS.md A4); a real update without it failed with '
                     '"scaleToZeroEnabled is undefined" (terraform-provider-databricks #4064, #3946)'),
    FieldRule("served_entities.workload_size", Semantics.REQUIRED, when="sized", value="Small",
              fix="add workload_size: Small (or Medium, Large), or min/max_provisioned_concurrency",
              source="no documented default (ServedEntityInput.workload_size docstring); the deprecated "
                     "served_models block required it (databricks/cli bundle/internal/tf/schema "
                     "resource_model_serving.go); real servers fill Small where none was sent (DEFAULTS.md B3)"),
    FieldRule("served_entities.burst_scaling_enabled", Semantics.WRITE_ONLY,
              source="databricks/cli bundle/direct/dresources/configs/model_serving_endpoints.generated.yml: "
                     "config.served_entities[*].burst_scaling_enabled, spec:input_only (never returned by GET)"),
    FieldRule("served_entities.workload_size", Semantics.SERVER_FILLED, when="provisioned throughput",
              source=_PT_SOURCE),
    FieldRule("served_entities.workload_type", Semantics.SERVER_FILLED, when="provisioned throughput",
              source=_PT_SOURCE),
    FieldRule("served_entities.workload_size", Semantics.SERVER_FILLED, when="provisioned concurrency",
              source='SDK 0.156 ServedEntityInput.workload_size: "Do not use if min_provisioned_concurrency and '
                     'max_provisioned_concurrency are specified" (what the server reports there is not sent back)'),
    FieldRule("served_entities.workload_size", Semantics.EXCLUSIVE, others=CONCURRENCY,
              fix="keep one: workload_size (a preset range) or min/max_provisioned_concurrency",
              source="SDK 0.156 docstrings of workload_size and min/max_provisioned_concurrency: "
                     '"Do not use if ... specified", each of the other'),
    FieldRule("served_entities.min_provisioned_concurrency", Semantics.EXCLUSIVE, others=THROUGHPUT,
              fix="keep one: provisioned concurrency (requests) or provisioned throughput (tokens per second)",
              source="PtServedModel (SDK 0.156), the provisioned-throughput entity, has no concurrency fields"),
    FieldRule("served_entities.max_provisioned_concurrency", Semantics.EXCLUSIVE, others=THROUGHPUT,
              fix="keep one: provisioned concurrency (requests) or provisioned throughput (tokens per second)",
              source="PtServedModel (SDK 0.156), the provisioned-throughput entity, has no concurrency fields"),
    *(FieldRule(f"served_entities.{key}", Semantics.READ_ONLY,
                source="ServedEntityOutput only (SDK 0.156: ServedEntityInput has no such field)")
      for key in ("state", "creator", "creation_timestamp", "foundation_model")),
    *(FieldRule(f"served_entities.{key}", Semantics.READ_ONLY,
                source="server-computed DBU figures of provisioned throughput (DEFAULTS.md B3)")
      for key in ("dbus", "min_dbus", "max_dbus")),
    FieldRule("served_entities.type", Semantics.READ_ONLY, source="list answers only (DEFAULTS.md B5)"),
    # -- endpoints
    FieldRule("description", Semantics.IMMUTABLE,
              source="databricks/cli configs/model_serving_endpoints.yml: description [immutable]"),
    FieldRule("route_optimized", Semantics.IMMUTABLE,
              source='Databricks docs, route optimization: "you can not update existing endpoints to be route '
                     'optimized"; databricks/cli model_serving_endpoints.yml [immutable]'),
    FieldRule("auto_capture_config", Semantics.DEPRECATED,
              fix="legacy inference tables can not be enabled since February 20, 2026 and are unsupported since "
                  "March 20, 2026; use ai_gateway.inference_table_config (catalog_name, schema_name, "
                  "table_name_prefix, enabled) instead",
              source='Databricks docs, "Enable inference tables on model serving endpoints": legacy inference '
                     "tables can not be enabled from 2026-02-20 and are unsupported from 2026-03-20"),
    FieldRule("rate_limits", Semantics.DEPRECATED,
              fix="endpoint rate limits are deprecated and never returned by GET; use ai_gateway.rate_limits",
              source='SDK 0.156 ServingEndpointsAPI.put: "Deprecated: Please use AI Gateway to manage rate limits"; '
                     "databricks/cli model_serving_endpoints.yml ignores them (not_implemented)"),
    FieldRule("served_models", Semantics.DEPRECATED,
              fix="served_models is the deprecated form; write served_entities (entity_name, entity_version)",
              source='databricks/cli#3880: "served_models was deprecated and the fields in it were moved"'),
    FieldRule("budget_policy_id", Semantics.WRITE_ONLY,
              source="databricks/cli configs/model_serving_endpoints.yml: GET never populates budget_policy_id "
                     "(it returns effective_budget_policy_id); a replace carries that one over"),
)


_ROWS = {semantics: tuple(r for r in FIELD_RULES if r.semantics is semantics) for semantics in Semantics}


def rules(semantics: Semantics, entity: Mapping[str, Any] | None = None) -> list[FieldRule]:
    """The rows of one kind; for served entity rows with `entity` given, those whose condition holds."""
    return [r for r in _ROWS[semantics] if entity is None or r.entity_field is None or r.holds(entity)]


def _entity_keys(semantics: Semantics, entity: Mapping[str, Any] | None = None) -> set[str]:
    return {r.entity_field for r in rules(semantics, entity) if r.entity_field}


# The served entity fields manifests manage (the format's), and those only the server sets.
MANAGED_ENTITY_FIELDS = frozenset(set(ServedEntity.model_fields) - {"name", "alias"})
READ_ONLY_ENTITY_FIELDS = frozenset(_entity_keys(Semantics.READ_ONLY))
WRITE_ONLY_ENTITY_FIELDS = frozenset(_entity_keys(Semantics.WRITE_ONLY))
IMMUTABLE_FIELDS = {r.field: f"{r.field} cannot change after creation" for r in rules(Semantics.IMMUTABLE)}


def server_filled(entity: Mapping[str, Any]) -> set[str]:
    """Fields the server picks for this entity (SERVER_FILLED rows whose condition holds)."""
    return _entity_keys(Semantics.SERVER_FILLED, entity)


def entity_defaults(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The API's defaults for the fields this entity leaves out (DEFAULT rows whose condition holds)."""
    return {r.entity_field: copied(r.value) for r in rules(Semantics.DEFAULT, entity)
            if r.entity_field and r.entity_field not in entity}


def is_agent(api: Mapping[str, Any] | None) -> bool:
    """An agent endpoint: the server set an agent `task` (rule 13; terms.AGENT_TASK cites it)."""
    task = (api or {}).get("task")
    return isinstance(task, str) and AGENT_TASK.match(task) is not None


def _clean(value: Any) -> Any:
    """Drop None values recursively (rule 9)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _ai_gateway(gateway: dict[str, Any]) -> dict[str, Any]:
    gateway = _clean(gateway)
    for side in ("input", "output"):
        params = gateway.get("guardrails", {}).get(side)
        for key in ("invalid_keywords", "valid_topics"):
            if params and key in params:
                params[key] = sorted(params[key])  # rule 8
    if "rate_limits" in gateway:
        for limit in gateway["rate_limits"]:
            limit.setdefault("renewal_period", "minute")
        gateway["rate_limits"] = sorted(gateway["rate_limits"], key=lambda r: (
            r.get("key") or "", r.get("principal") or "", r.get("renewal_period") or ""))
    return gateway


# ---- desired (from manifests) --------------------------------------------------------------

def desired_entity(entity: ServedEntity, version: str) -> dict[str, Any]:
    """A served entity as the manifest states it, complete: the API's default for each field it
    leaves out (rule 3), server-filled fields left to the overlay."""
    fields = {k: v for k, v in entity.model_dump(exclude_none=True, exclude={"name", "alias"}).items() if v != {}}
    fields["entity_version"] = version  # an empty map is no map, as GET shows it
    return {**fields, **entity_defaults(fields)}


def desired_endpoint(manifest: ServingEndpoint, versions: list[str], *, stack: str | None,
                     deployer: str | None = None) -> dict[str, Any]:
    """The managed part of an endpoint: what the manifest says (plus our ownership tags), served
    entities complete (rule 3). `versions` are the entity versions with aliases already resolved,
    one per served entity. Endpoint-level keys the manifest leaves out are absent; `overlay` fills
    them from live. `deployer` keeps CAN_MANAGE where the manifest writes permissions (rule 6)."""
    spec = manifest.spec
    entities: dict[str, dict[str, Any]] = {}
    for entity, version in zip(spec.served_entities, versions, strict=True):
        entities[entity.name or default_entity_name(entity.entity_name, version)] = desired_entity(entity, version)  # rule 4
    desired: dict[str, Any] = {"served_entities": entities}
    if spec.traffic_config is not None:
        desired["traffic"] = {r.served_entity_name: r.traffic_percentage for r in spec.traffic_config.routes}
    else:
        desired["traffic"] = {next(iter(entities)): 100}  # rule 5
    if spec.ai_gateway is not None:
        desired["ai_gateway"] = _ai_gateway(spec.ai_gateway.model_dump(exclude_none=True))
    if spec.tags is not None:
        desired["tags"] = {**spec.tags, **own_tags(stack)}
    else:
        desired["tags_present"] = own_tags(stack)  # rule 6 exception: only ours are ensured
    if spec.permissions is not None:
        desired["permissions"] = {principal_of(p): p.permission_level for p in spec.permissions}
        if deployer is not None:
            desired["deployer"] = deployer  # rule 6 exception: popped by `overlay`
    if spec.description is not None:
        desired["description"] = spec.description
    if spec.route_optimized is not None:
        desired["route_optimized"] = spec.route_optimized
    return desired


def desired_model(manifest: RegisteredModel) -> dict[str, Any]:
    spec = manifest.spec
    desired: dict[str, Any] = {}
    if spec.comment is not None:
        desired["comment"] = spec.comment
    if spec.owner is not None:
        desired["owner"] = spec.owner
    if spec.aliases is not None:
        desired["aliases"] = dict(spec.aliases)
    return desired


# ---- live (from the API's JSON) -------------------------------------------------------------

def live_entity(entity: Mapping[str, Any]) -> dict[str, Any]:
    """A served entity as GET returns it, less what only the server sets: every other field and
    enum value exactly as sent, known to this release or not (rule 3)."""
    return {k: copied(v) for k, v in entity.items()
            if k != "name" and k not in READ_ONLY_ENTITY_FIELDS and v is not None and v != {}}


def live_endpoint(api: dict[str, Any], acl: dict[str, Any] | None = None) -> dict[str, Any]:
    """Normalise GET /serving-endpoints/{name} (and its ACL). An update in flight is judged by
    its pending config: that is what the endpoint will serve, and what a re-run must not resend.
    A failed update stays in `pending_config` too, but it serves nothing: then `config` counts."""
    in_flight = updating(api)
    config = (api.get("pending_config") if in_flight else api.get("config")) or {}
    entities = {entity.get("name") or "": live_entity(entity) for entity in config.get("served_entities") or []}
    traffic: dict[str, int] = {}
    for route in (config.get("traffic_config") or {}).get("routes") or []:
        name = route.get("served_entity_name") or route.get("served_model_name") or ""  # rule 2
        traffic[name] = traffic.get(name, 0) + int(route.get("traffic_percentage") or 0)
    live: dict[str, Any] = {
        "served_entities": entities,
        "traffic": traffic,
        "tags": {t["key"]: t.get("value") or "" for t in api.get("tags") or []},
        "route_optimized": bool(api.get("route_optimized", False)),  # rule 9
    }
    gateway = api.get("ai_gateway")
    if gateway and is_agent(api):  # rule 13
        gateway = {k: v for k, v in gateway.items() if k == "inference_table_config"}
    if gateway:
        live["ai_gateway"] = _ai_gateway(gateway)
    if api.get("description") is not None:
        live["description"] = api["description"]
    if api.get("creator"):
        live["creator"] = api["creator"]
    if acl is not None:
        live["permissions"] = live_permissions(acl)
    return live


def live_permissions(acl: dict[str, Any]) -> dict[str, str]:
    grants: dict[str, str] = {}
    for entry in acl.get("access_control_list") or []:
        principal = principal_key(entry)
        if principal is None:
            continue
        for permission in entry.get("all_permissions") or []:
            level = permission.get("permission_level")
            if permission.get("inherited") or level not in PERMISSION_RANK:  # rule 7
                continue
            if PERMISSION_RANK[level] > PERMISSION_RANK.get(grants.get(principal, ""), 0):
                grants[principal] = level
    return grants


def live_model(api: dict[str, Any]) -> dict[str, Any]:
    live: dict[str, Any] = {"aliases": {a["alias_name"]: int(a["version_num"])
                                        for a in api.get("aliases") or [] if a.get("alias_name")}}
    for key in ("comment", "owner"):
        if api.get(key) is not None:
            live[key] = api[key]
    return live


def legacy_inference_table(api: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The live legacy inference table (`auto_capture_config`) while it is enabled, else None (rule 12).
    `enabled` defaults to true (DEFAULTS.md A6) and real answers fill it in (B7)."""
    for key in ("pending_config", "config"):
        capture = ((api or {}).get(key) or {}).get("auto_capture_config")
        if capture:
            return capture if capture.get("enabled") is not False else None
    return None


# ---- effective desired = desired overlaid on live (rule 3) -------------------------------------

def copied(value: Any) -> Any:
    """A copy of a JSON value (what the API answers and manifests hold): what `copy.deepcopy` gives
    for dicts, lists and plain values, at a fifth of its cost (a plan of 5,000 endpoints copies
    hundreds of thousands of them); anything else goes to `copy.deepcopy`."""
    kind = type(value)
    if kind is dict:
        return {k: copied(v) for k, v in value.items()}
    if kind is list:
        return [copied(v) for v in value]
    if kind is str or kind is int or kind is bool or kind is float or value is None:
        return value
    return copy.deepcopy(value)


def _fill(desired: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = copied(desired)
    for key, live_value in live.items():
        if key not in out:
            out[key] = copied(live_value)
        elif key not in MAPS and isinstance(out[key], dict) and isinstance(live_value, dict):
            out[key] = _fill(out[key], live_value)
    return out


def effective_entity(desired: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """A served entity after apply: the manifest's complete entity, plus from live what manifests
    cannot manage (rule 3): server-filled fields and fields this release does not know."""
    out: dict[str, Any] = copied(dict(desired))
    kept = server_filled(desired)
    for key, value in live.items():
        if key not in out and (key not in MANAGED_ENTITY_FIELDS or key in kept):
            out[key] = copied(value)
    return out


def overlay(desired: dict[str, Any], live: dict[str, Any] | None) -> dict[str, Any]:
    """What the object must look like after apply: the manifest's values; live's for what it does
    not manage (rules 3 and 6)."""
    desired = copied(desired)
    present = desired.pop("tags_present", None)
    deployer = desired.pop("deployer", None)
    held = (live or {}).get("permissions", {})
    if deployer is not None and (deployer in desired["permissions"] or held.get(deployer) == "CAN_MANAGE"):
        desired["permissions"][deployer] = "CAN_MANAGE"  # rule 6 exception: the deployer keeps control
    if live is None:
        if present is not None:
            desired["tags"] = present
        return desired
    if "served_entities" in desired:
        live_entities = live.get("served_entities", {})
        desired["served_entities"] = {name: effective_entity(fields, live_entities.get(name, {}))
                                      for name, fields in desired["served_entities"].items()}
    if present is not None:
        desired["tags"] = {**live.get("tags", {}), **present}
    if "permissions" in desired:
        for principal, level in creator_grants(live).items():  # rule 6 exception: the creator's grant
            desired["permissions"].setdefault(principal, level)
    return _fill(desired, live)


def creator_grants(live: Mapping[str, Any]) -> dict[str, str]:
    """The grants a normalised live endpoint holds for its creator (rule 6: they are kept)."""
    creator, grants = live.get("creator"), live.get("permissions") or {}
    return {f"{key}:{creator}": grants[f"{key}:{creator}"] for key in IDENTITY_KEYS
            if creator and f"{key}:{creator}" in grants}


def comparable(state: dict[str, Any]) -> dict[str, Any]:
    """`state` as the diff sees it: without write-only fields (rule 11)."""
    if not any(WRITE_ONLY_ENTITY_FIELDS & set(fields) for fields in state.get("served_entities", {}).values()):
        return state
    out = dict(state)
    out["served_entities"] = {name: {k: v for k, v in fields.items() if k not in WRITE_ONLY_ENTITY_FIELDS}
                              for name, fields in state["served_entities"].items()}
    return out


# ---- payloads for writes (API shapes) --------------------------------------------------------

def config_lists(state: dict[str, Any]) -> dict[str, Any]:
    """Served entities and routes as the API's lists again (for writes and for policy documents)."""
    return {
        "served_entities": [{"name": name, **fields} for name, fields in state["served_entities"].items()],
        "traffic_config": {"routes": [{"served_entity_name": name, "traffic_percentage": pct}
                                      for name, pct in state["traffic"].items()]},
    }


def config_payload(effective: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """PUT /serving-endpoints/{name}/config body (and a create's `config`): every entity whole,
    write-only fields included, less what the server filled in where the manifest (`desired`)
    leaves it out (never resent: rule 3); no `auto_capture_config` (rule 12)."""
    payload = config_lists(effective)
    stated = desired.get("served_entities", {})
    payload["served_entities"] = [
        {k: v for k, v in entity.items() if k not in server_filled(entity) or k in stated.get(entity["name"], {})}
        for entity in payload["served_entities"]]
    return payload


def acl_payload(grants: dict[str, str]) -> list[dict[str, str]]:
    acl = []
    for principal, level in sorted(grants.items()):
        key, _, name = principal.partition(":")
        acl.append({key: name, "permission_level": level})
    return acl
