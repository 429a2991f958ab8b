"""Reading Model Serving request bodies: served entities, traffic, tags, AI Gateway, rate limits,
notifications and access control lists, each into the shape the endpoint store keeps.

Called by `serving.py`. A field of the wrong JSON type is MALFORMED_REQUEST and a value the API
does not accept is INVALID_PARAMETER_VALUE (`fields.py`). Where each rule comes from:
- served entity names: letters, digits, '-' and '_' (`ServedEntityInput.name` docstring), defaulting
  to `entity_name-entity_version` with the short Unity Catalog model name (real captures,
  shared/reference/real-api/DEFAULTS.md B1) and kept when an update only changes the version;
- `workload_type` defaults to CPU (`ServedEntityInput.workload_type` docstring). Values the SDK
  does not know are accepted and echoed byte for byte: the real server knows newer workload types
  than any SDK (SDK 0.156's `_enum()` turns unknown values into None; issue 13), so any value of
  the server's families (CPU..., GPU..., MULTIGPU...) is taken as sent (`GPU_H200_8` included);
- `workload_size` must not be sent with min/max_provisioned_concurrency ("Do not use if
  min_provisioned_concurrency and max_provisioned_concurrency are specified", SDK docstring of
  `workload_size`; the message is ours);
- provisioned-throughput entities (min/max_provisioned_throughput, or provisioned_model_units) come
  back with `workload_size: Small`, a GPU `workload_type` and `min_dbus`/`max_dbus` the request
  never sent, and without `scale_to_zero_enabled` (shared/reference/real-api/endpoint_create_resp_02
  and _03, DEFAULTS.md B3/B4). The DBU figures follow capture 02's ratio (24 DBU for 970 tokens/s);
  real pricing varies by model;
- `burst_scaling_enabled` is accepted and never returned (databricks/cli
  `bundle/direct/dresources/resources.yml`: "Accepted on write but not returned by GET"), and so are
  external models' `*_plaintext` secrets (same file, `input_only`);
- read-only keys a client echoes back from GET (`state`, `creator`, `creation_timestamp`, `type`,
  `foundation_model`, `dbus`/`min_dbus`/`max_dbus`) are ignored: `databricks-agents` 1.13
  (`deployments.py`, `_update_served_models`) redeploys by passing the live `ServedEntityOutput`s
  back to `update_config`, and it runs against real workspaces;
- `served_models` (deprecated) is read as served entities (`model_name`/`model_version`), as the
  docs' examples send it (real-api/endpoint_config_put_req_02.json); sent next to
  `served_entities`, it must be the mirror GET returns (databricks/cli#3880: "The GET API response
  ... returns with both `served_models` and `served_entities`").
"""

from __future__ import annotations

import copy
import re
from typing import Any

from reconciler.localworkspace import fields
from reconciler.localworkspace.errors import invalid

ENTITY_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
WORKLOAD_TYPE_FAMILY = re.compile(r"^(CPU|GPU|MULTIGPU)(_[A-Z0-9]+)*$")
PERMISSION_LEVELS = {
    "CAN_MANAGE": "Can manage the endpoint: edit its configuration, permissions and delete it",
    "CAN_QUERY": "Can query the endpoint",
    "CAN_VIEW": "Can view the endpoint and its configuration",
}
PRINCIPAL_KINDS = ("user_name", "group_name", "service_principal_name")
RATE_LIMIT_KEYS = ("endpoint", "user", "user_group", "service_principal")
INFERENCE_TABLE_LOCATION = ("catalog_name", "schema_name", "table_name_prefix")
ENTITY_TEXT_FIELDS = ("name", "entity_name", "entity_version", "workload_size", "workload_type", "instance_profile_arn")
ENTITY_INT_FIELDS = ("min_provisioned_throughput", "max_provisioned_throughput", "min_provisioned_concurrency",
                     "max_provisioned_concurrency", "provisioned_model_units")
THROUGHPUT_FIELDS = ("min_provisioned_throughput", "max_provisioned_throughput", "provisioned_model_units")
DBUS_PER_TOKEN_PER_SECOND = 24.0 / 970  # real-api/endpoint_create_resp_02.json: 970 tokens/s, 24 DBU
GPU_DEFAULT = "GPU_MEDIUM"  # real-api/endpoint_create_resp_02.json
# Agent endpoints accept only inference tables in their AI Gateway: "agent endpoints currently only
# support inference tables" (SDK docstring of `put_ai_gateway`).
AGENT_GATEWAY_ONLY = "agent endpoints currently only support inference tables"


def is_uc_model(entity: dict[str, Any]) -> bool:
    return "external_model" not in entity and entity.get("entity_name", "").count(".") == 2


def is_provisioned_throughput(entity: dict[str, Any]) -> bool:
    return any(entity.get(key) is not None for key in THROUGHPUT_FIELDS)


def scales(raw: dict[str, Any]) -> bool:
    """An entity whose compute scales with load: not an external or pay-per-token foundation model,
    not provisioned throughput."""
    return raw.get("external_model") is None and raw.get("foundation_model") is None and not is_provisioned_throughput(raw)


def parse_entity(raw: dict[str, Any], previous: list[dict[str, Any]], where: str, *,
                 seeded: bool = False) -> dict[str, Any]:
    """A ServedEntityOutput (without state) from a ServedEntityInput, with the server's defaults."""
    entity: dict[str, Any] = {}
    for key in ENTITY_TEXT_FIELDS:
        if fields.text(raw, key, parent=where) is not None:
            entity[key] = raw[key]
    for key in ENTITY_INT_FIELDS:
        if fields.integer(raw, key, parent=where) is not None:
            entity[key] = int(raw[key])
    if fields.boolean(raw, "scale_to_zero_enabled", parent=where) is not None:
        entity["scale_to_zero_enabled"] = raw["scale_to_zero_enabled"]
    fields.boolean(raw, "burst_scaling_enabled", parent=where)  # accepted, never echoed
    env = fields.text_map(raw, "environment_vars", parent=where)
    if env is not None:
        entity["environment_vars"] = env  # secret references come back unchanged, never resolved
    if seeded:  # what only the server sets: pay-per-token foundation models in a seed
        for key in ("type", "foundation_model"):
            if raw.get(key) is not None:
                entity[key] = copy.deepcopy(raw[key])
    external = fields.obj(raw, "external_model", parent=where)
    workload_type = entity.get("workload_type")
    if workload_type is not None and not WORKLOAD_TYPE_FAMILY.match(workload_type):
        raise invalid(f"Invalid value for {fields.path_of(where, 'workload_type')}: '{workload_type}'. "
                      "Workload types are CPU, GPU or MULTIGPU types, e.g. CPU, GPU_SMALL, GPU_XLARGE_8.")

    if external is not None:
        if "entity_name" in entity:
            raise invalid(f"{where}: only one of external_model and entity_name can be specified")
        external_name = fields.text(external, "name", parent=fields.path_of(where, "external_model"), required=True)
        fields.text(external, "provider", parent=fields.path_of(where, "external_model"), required=True)
        entity["external_model"] = without_plaintext_secrets(external)
        default_name = re.sub(r"[.:]", "-", external_name or "")
    else:
        entity_name = entity.get("entity_name")
        if not entity_name:
            raise invalid(f"Missing required field: {fields.path_of(where, 'entity_name')}")
        if "entity_version" not in entity and entity_name.count(".") == 2 and "foundation_model" not in entity:
            raise invalid(f"Missing required field: {fields.path_of(where, 'entity_version')} (required for "
                          "Unity Catalog models)")
        if "workload_size" in entity and ({"min_provisioned_concurrency", "max_provisioned_concurrency"} & entity.keys()):
            raise invalid(f"{where}: workload_size cannot be used together with min/max_provisioned_concurrency")
        if is_provisioned_throughput(entity):
            fill_provisioned_throughput(entity)
        if "foundation_model" not in entity:
            entity.setdefault("workload_type", "CPU")
        same_model = [e["name"] for e in previous if e.get("entity_name", "").lower() == entity_name.lower()]
        if len(same_model) == 1:
            default_name = same_model[0]  # an update that only changes the version keeps the name
        else:
            default_name = f"{entity_name.rsplit('.', 1)[-1]}-{entity.get('entity_version', '')}".rstrip("-")
    entity.setdefault("name", default_name)
    if not ENTITY_NAME.match(entity["name"]):
        raise invalid(f"Invalid served entity name '{entity['name']}' at {where}. A served entity name can consist "
                      "of alphanumeric characters, dashes, and underscores.")
    return entity


def fill_provisioned_throughput(entity: dict[str, Any]) -> None:
    """What real servers add to a provisioned-throughput entity (see the module docstring)."""
    entity.setdefault("workload_size", "Small")
    entity.setdefault("workload_type", GPU_DEFAULT)
    low = entity.get("min_provisioned_throughput", entity.get("max_provisioned_throughput", 0))
    high = entity.get("max_provisioned_throughput", low)
    entity["min_dbus"] = round(low * DBUS_PER_TOKEN_PER_SECOND, 1)
    entity["max_dbus"] = round(high * DBUS_PER_TOKEN_PER_SECOND, 1)


def served_models_as_entities(raw_models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Deprecated `served_models` items as `served_entities` items (model_* keys renamed)."""
    renamed = {"model_name": "entity_name", "model_version": "entity_version"}
    return [{renamed.get(key, key): value for key, value in item.items()} for item in raw_models]


def mirrors(models: list[dict[str, Any]], entities: list[dict[str, Any]]) -> bool:
    """Whether a `served_models` list is the mirror of `served_entities` that GET returns."""
    def identity(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(i.get("name"), i.get("entity_name"), i.get("entity_version")) for i in items]
    return identity(served_models_as_entities(models)) == identity(entities)


def served_model_view(entity: dict[str, Any]) -> dict[str, Any]:
    """One item of the `served_models` mirror GET returns next to `served_entities`
    (real-api/endpoint_create_resp_02.json, _03; DEFAULTS.md B5)."""
    view: dict[str, Any] = {"name": entity["name"], "model_name": entity["entity_name"]}
    if "entity_version" in entity:
        view["model_version"] = entity["entity_version"]
    view.update({k: copy.deepcopy(v) for k, v in entity.items()
                 if k not in ("name", "entity_name", "entity_version", "foundation_model")})
    return view


def enables_legacy_table(capture: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """Whether an `auto_capture_config` turns a legacy inference table on. `enabled` defaults to
    true (DEFAULTS.md A6, "デフォルトは`true`です"), so a location without `enabled: false` enables;
    the live config sent back unchanged (databricks-agents 1.13 resends
    `config.auto_capture_config` on every redeploy) turns nothing on."""
    if capture.get("enabled") is False:
        return False
    if capture.get("enabled") is not True and not any(capture.get(key) for key in INFERENCE_TABLE_LOCATION):
        return False
    if live and live.get("enabled") is not False:
        return any(capture.get(key) not in (None, live.get(key)) for key in INFERENCE_TABLE_LOCATION)
    return True


def agent_gateway_features(gateway: dict[str, Any]) -> list[str]:
    """The AI Gateway features turned on in `gateway` that agent endpoints do not support."""
    used = []
    if (gateway.get("usage_tracking_config") or {}).get("enabled"):
        used.append("usage_tracking_config")
    if gateway.get("rate_limits"):
        used.append("rate_limits")
    if any((gateway.get("guardrails") or {}).values()):
        used.append("guardrails")
    if (gateway.get("fallback_config") or {}).get("enabled"):
        used.append("fallback_config")
    return used


def parse_traffic(raw: dict[str, Any], entity_names: list[str], where: str) -> dict[str, Any]:
    raw_routes = fields.objects(raw, "routes", parent=where, required=True) or []
    routes, seen, total = [], set(), 0
    for i, raw_route in enumerate(raw_routes):
        at = fields.path_of(fields.path_of(where, "routes"), i)
        entity_name = fields.text(raw_route, "served_entity_name", parent=at)
        model_name = fields.text(raw_route, "served_model_name", parent=at)
        percentage = fields.integer(raw_route, "traffic_percentage", parent=at, required=True)
        assert percentage is not None
        if entity_name and model_name and entity_name != model_name:
            raise invalid(f"{at}: served_entity_name '{entity_name}' and served_model_name '{model_name}' differ")
        name = entity_name or model_name
        if not name:
            raise invalid(f"Missing required field: {at}.served_entity_name")
        if name not in entity_names:
            raise invalid(f"Traffic config route {at} refers to served entity '{name}', which is not in the config's "
                          f"served entities ({', '.join(entity_names)}).")
        if name in seen:
            raise invalid(f"Traffic config has more than one route for served entity '{name}'.")
        if not 0 <= percentage <= 100:
            raise invalid(f"{at}.traffic_percentage must be between 0 and 100, got {percentage}")
        seen.add(name)
        total += percentage
        routes.append(route(name, percentage))
    if total != 100:
        raise invalid(f"Traffic config routes must add up to 100 percent; they add up to {total}.")
    return {"routes": routes}


def route(name: str, percentage: int) -> dict[str, Any]:
    return {"served_model_name": name, "served_entity_name": name, "traffic_percentage": percentage}


def parse_tags(raw_tags: list[dict[str, Any]], where: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for i, tag in enumerate(raw_tags):
        key = fields.text(tag, "key", parent=fields.path_of(where, i), required=True)
        value = fields.text(tag, "value", parent=fields.path_of(where, i))
        assert key is not None
        tags[key] = value if value is not None else ""
    return tags


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": key, "value": tags[key]} for key in sorted(tags)]


def parse_inference_table(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """The location and `enabled`; a `state` echoed from GET is ignored."""
    table: dict[str, Any] = {}
    for key in INFERENCE_TABLE_LOCATION:
        if fields.text(raw, key, parent=where) is not None:
            table[key] = raw[key]
    if fields.boolean(raw, "enabled", parent=where) is not None:
        table["enabled"] = raw["enabled"]
    return table


def check_inference_table_change(old: dict[str, Any] | None, new: dict[str, Any], where: str) -> None:
    """"On update, you have to disable inference table first in order to change the catalog name"
    (and the schema name and the prefix)."""
    if not old or not old.get("enabled") or new.get("enabled") is False:
        return
    for key in INFERENCE_TABLE_LOCATION:
        if new.get(key) is not None and new.get(key) != old.get(key):
            raise invalid(f"{where}.{key} cannot be changed while the inference table is enabled; disable it first.")


def parse_ai_gateway(raw: dict[str, Any], old: dict[str, Any] | None, where: str) -> dict[str, Any]:
    gateway: dict[str, Any] = {}
    table = fields.obj(raw, "inference_table_config", parent=where)
    if table is not None:
        at = fields.path_of(where, "inference_table_config")
        parsed = parse_inference_table(table, at)
        if parsed.get("enabled") and not (parsed.get("catalog_name") and parsed.get("schema_name")):
            raise invalid(f"{at}: catalog_name and schema_name are required when enabling inference tables")
        check_inference_table_change((old or {}).get("inference_table_config"), parsed, at)
        gateway["inference_table_config"] = parsed
    usage = fields.obj(raw, "usage_tracking_config", parent=where)
    if usage is not None:
        enabled = fields.boolean(usage, "enabled", parent=fields.path_of(where, "usage_tracking_config"))
        gateway["usage_tracking_config"] = {} if enabled is None else {"enabled": enabled}
    if fields.objects(raw, "rate_limits", parent=where) is not None:
        gateway["rate_limits"] = parse_rate_limits(raw, where, gateway_limits=True)
    guardrails = fields.obj(raw, "guardrails", parent=where)
    if guardrails is not None:
        for side in ("input", "output"):
            fields.obj(guardrails, side, parent=fields.path_of(where, "guardrails"))
        gateway["guardrails"] = copy.deepcopy(guardrails)
    fallback = fields.obj(raw, "fallback_config", parent=where)
    if fallback is not None:
        enabled = fields.boolean(fallback, "enabled", parent=fields.path_of(where, "fallback_config"))
        if enabled is None:
            raise invalid(f"Missing required field: {fields.path_of(where, 'fallback_config.enabled')}")
        gateway["fallback_config"] = {"enabled": enabled}
    return gateway


def parse_rate_limits(raw: dict[str, Any], where: str, *, gateway_limits: bool = False) -> list[dict[str, Any]]:
    limits = []
    allowed_keys = RATE_LIMIT_KEYS if gateway_limits else ("endpoint", "user")
    for i, limit in enumerate(fields.objects(raw, "rate_limits", parent=where) or []):
        at = fields.path_of(fields.path_of(where, "rate_limits"), i)
        calls = fields.integer(limit, "calls", parent=at, required=not gateway_limits)
        tokens = fields.integer(limit, "tokens", parent=at) if gateway_limits else None
        period = fields.text(limit, "renewal_period", parent=at, required=True)
        fields.one_of(period, ("minute",), f"{at}.renewal_period")
        key = fields.one_of(fields.text(limit, "key", parent=at), allowed_keys, f"{at}.key")
        principal = fields.text(limit, "principal", parent=at) if gateway_limits else None
        if gateway_limits and calls is None and tokens is None:
            raise invalid(f"{at}: one of calls or tokens is required")
        parsed = {"calls": calls, "tokens": tokens, "renewal_period": period, "key": key, "principal": principal}
        limits.append({k: v for k, v in parsed.items() if v is not None})
    return limits


def parse_notifications(body: dict[str, Any]) -> dict[str, Any] | None:
    raw = fields.obj(body, "email_notifications")
    if raw is None:
        return None
    result = {}
    for key in ("on_update_failure", "on_update_success"):
        emails = fields.texts(raw, key, parent="email_notifications")
        if emails is not None:
            result[key] = emails
    return result


def parse_acl(body: dict[str, Any]) -> dict[tuple[str, str], str]:
    grants: dict[tuple[str, str], str] = {}
    for i, entry in enumerate(fields.objects(body, "access_control_list") or []):
        at = f"access_control_list[{i}]"
        principals = [(kind, fields.text(entry, kind, parent=at)) for kind in PRINCIPAL_KINDS]
        given = [(kind, name) for kind, name in principals if name]
        if len(given) != 1:
            raise invalid(f"{at}: exactly one of user_name, group_name or service_principal_name is required")
        level = fields.text(entry, "permission_level", parent=at, required=True)
        if level not in PERMISSION_LEVELS:
            raise invalid(f"{at}: permission level '{level}' is not supported for serving endpoints; use one of "
                          f"{', '.join(PERMISSION_LEVELS)}")
        grants[given[0]] = level
    return grants


def without_plaintext_secrets(external: dict[str, Any]) -> dict[str, Any]:
    """External model provider configs lose their `*_plaintext` keys: the API stores them as
    secrets and never returns them."""
    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items() if not k.endswith("_plaintext")}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value
    return scrub(copy.deepcopy(external))
