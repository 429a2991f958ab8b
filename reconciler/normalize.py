"""Desired and live state in one shape, so the diff sees real differences and nothing else.

Pure functions; no I/O. Called by plan.py (to diff) and apply.py (to build write payloads from a
fresh read, so what is sent is what was diffed).

The normalised shape of an endpoint:
    {"served_entities": {name: {field: value}}, "traffic": {entity name: percent},
     "auto_capture_config": {...}, "ai_gateway": {...}, "tags": {key: value},
     "permissions": {"group_name:x": level}, "description": str, "route_optimized": bool,
     "creator": str}
and of a registered model: {"comment": str, "owner": str, "aliases": {alias: version}}.

THE RULES (each with its reason):
 1. Lists with identity are maps: served entities by name, routes by entity name, tags by key,
    permissions by principal, aliases by alias. The API re-orders them; position-based diffs
    show changes that are not there (Terraform #5119, #5188; Asset Bundles compares by position).
 2. A route may carry `served_model_name` or `served_entity_name`; they are the same thing
    (real responses carry both on the default route).
 3. A field the manifest leaves out is not managed: the effective desired state takes the live
    value (`overlay`). This covers server-filled values (served entity `workload_type` CPU,
    `auto_capture_config.enabled` / `table_name_prefix`) and fields with no documented default
    (`scale_to_zero_enabled`: Terraform #5467 shows false → true forever on pay-per-token
    endpoints). The same overlay builds the payload of any write that must resend the whole
    served-entity list, so unmanaged fields are resent as they are live, never reset.
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
"""

from __future__ import annotations

import copy
from typing import Any

from reconciler.manifests.model import RegisteredModel, ServingEndpoint, principal_of
from reconciler.terms import default_entity_name, own_tags, principal_key, updating

ENTITY_FIELDS = ("entity_name", "entity_version", "workload_size", "workload_type", "scale_to_zero_enabled",
                 "min_provisioned_throughput", "max_provisioned_throughput", "min_provisioned_concurrency",
                 "max_provisioned_concurrency", "provisioned_model_units", "burst_scaling_enabled",
                 "environment_vars", "instance_profile_arn")
# Maps are complete when given (rule 6): the overlay never fills keys into them.
MAPS = frozenset({"served_entities", "traffic", "tags", "permissions", "environment_vars", "aliases"})
PERMISSION_RANK = {"CAN_VIEW": 1, "CAN_QUERY": 2, "CAN_MANAGE": 3}


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

def desired_endpoint(manifest: ServingEndpoint, versions: list[str], *, stack: str | None,
                     deployer: str | None = None) -> dict[str, Any]:
    """The managed part of an endpoint: only what the manifest says (plus our ownership tags).

    `versions` are the entity versions with aliases already resolved, one per served entity.
    Keys the manifest leaves out are absent (rule 3); `overlay` fills them from live.
    """
    spec = manifest.spec
    entities: dict[str, dict[str, Any]] = {}
    for entity, version in zip(spec.served_entities, versions, strict=True):
        fields = entity.model_dump(exclude_none=True, exclude={"name", "alias"})
        fields["entity_version"] = version
        entities[entity.name or default_entity_name(entity.entity_name, version)] = fields  # rule 4
    desired: dict[str, Any] = {"served_entities": entities}
    if spec.traffic_config is not None:
        desired["traffic"] = {r.served_entity_name: r.traffic_percentage for r in spec.traffic_config.routes}
    else:
        desired["traffic"] = {next(iter(entities)): 100}  # rule 5
    if spec.auto_capture_config is not None:
        desired["auto_capture_config"] = spec.auto_capture_config.model_dump(exclude_none=True)
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

def live_endpoint(api: dict[str, Any], acl: dict[str, Any] | None = None) -> dict[str, Any]:
    """Normalise GET /serving-endpoints/{name} (and its ACL). An update in flight is judged by
    its pending config: that is what the endpoint will serve, and what a re-run must not resend.
    A failed update stays in `pending_config` too, but it serves nothing: then `config` counts."""
    in_flight = updating(api)
    config = (api.get("pending_config") if in_flight else api.get("config")) or {}
    entities: dict[str, dict[str, Any]] = {}
    for entity in config.get("served_entities") or []:
        fields = {k: entity[k] for k in ENTITY_FIELDS if entity.get(k) is not None}
        fields.setdefault("environment_vars", {})
        entities[entity.get("name") or ""] = fields
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
    capture = config.get("auto_capture_config")
    if capture:
        live["auto_capture_config"] = _clean({k: v for k, v in capture.items() if k != "state"})
    gateway = api.get("ai_gateway")
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


# ---- effective desired = desired overlaid on live (rule 3) -------------------------------------

def _fill(desired: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(desired)
    for key, live_value in live.items():
        if key not in out:
            out[key] = copy.deepcopy(live_value)
        elif key not in MAPS and isinstance(out[key], dict) and isinstance(live_value, dict):
            out[key] = _fill(out[key], live_value)
    return out


def overlay(desired: dict[str, Any], live: dict[str, Any] | None) -> dict[str, Any]:
    """What the object must look like after apply: the manifest's values, live's for the rest."""
    desired = copy.deepcopy(desired)
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
        desired["served_entities"] = {name: _fill(fields, live_entities.get(name, {}))
                                      for name, fields in desired["served_entities"].items()}
    if present is not None:
        desired["tags"] = {**live.get("tags", {}), **present}
    if "permissions" in desired and live.get("creator"):
        for key in ("user_name", "service_principal_name"):  # rule 6 exception: the creator's grant
            principal = f"{key}:{live['creator']}"
            if principal in live.get("permissions", {}):
                desired["permissions"].setdefault(principal, live["permissions"][principal])
    return _fill(desired, live)


# ---- payloads for writes (API shapes) --------------------------------------------------------

def config_payload(effective: dict[str, Any]) -> dict[str, Any]:
    """PUT /serving-endpoints/{name}/config body: served entities and routes as lists again."""
    payload: dict[str, Any] = {
        "served_entities": [{"name": name, **fields} for name, fields in effective["served_entities"].items()],
        "traffic_config": {"routes": [{"served_entity_name": name, "traffic_percentage": pct}
                                      for name, pct in effective["traffic"].items()]},
    }
    if "auto_capture_config" in effective:
        payload["auto_capture_config"] = effective["auto_capture_config"]
    return payload


def acl_payload(grants: dict[str, str]) -> list[dict[str, str]]:
    acl = []
    for principal, level in sorted(grants.items()):
        key, _, name = principal.partition(":")
        acl.append({key: name, "permission_level": level})
    return acl
