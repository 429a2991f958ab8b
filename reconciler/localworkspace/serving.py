"""Model Serving endpoints as the local workspace keeps them: validation, server-filled defaults,
asynchronous config updates, failures, tags, AI Gateway, permissions and the JSON views.

Called by the route handlers (`routes.py`) under the workspace lock. Behaviour and where it
comes from (the SDK docstrings are the generated Databricks REST reference):
- endpoint names: letters, digits, '-' and '_', 1 to 63 characters (REST reference, "Get":
  name "Constraints: [ 1 .. 63 ] characters"; `ServingEndpointsAPI.create` docstring);
- at most ten served entities (`ServingEndpointsAPI` docstring); entity names unique in an
  endpoint, defaulting to `entity_name-entity_version`, or for an external model to its name with
  '.' and ':' replaced by '-' (`ServedEntityInput.name` docstring). For Unity Catalog models real
  responses use the short model name (`main.default.llama2-7b` v1 -> `llama2-7b-1`, see
  shared/reference/databricks-api.md) and keep the name when a later update only changes the
  version of that entity;
- `workload_type` defaults to CPU (`ServedEntityInput.workload_type` docstring);
  `scale_to_zero_enabled` is stored as sent, absent when not sent (no documented default);
- one served entity and no `traffic_config`: one route at 100%, carrying both
  `served_model_name` and `served_entity_name` as real responses do; with several entities a
  traffic config is required (databricks/cli `libs/testserver/serving_endpoints.go`,
  `defaultTrafficConfig`, which mirrors the backend);
- `description` and `route_optimized` are always echoed (as "" and false when never set), and
  `burst_scaling_enabled` and external-model `*_plaintext` secrets never are (same file);
- tags are returned sorted by key;
- a create or config update is IN_PROGRESS for `update_seconds`: `pending_config` holds the new
  config, `config` the old one (absent for a new endpoint, which is NOT_READY until its first
  config is up); config and AI Gateway writes meanwhile answer 409 RESOURCE_CONFLICT ("an
  endpoint that already has an update in progress can not be updated until the current update
  completes or fails", `update_config` docstring);
- a version seeded with `deploy_failure` makes the update end UPDATE_FAILED: `config` (and
  `state.ready`) stay as they were, so the previous config keeps serving, and `pending_config`
  keeps the failed update ("the last issued update", `EndpointPendingConfig` docstring) with the
  failing entity DEPLOYMENT_FAILED plus its `deployment_state_message`, the other new entities
  DEPLOYMENT_ABORTED (the Java SDK's `ServedModelState` docstring); build logs say why;
- inference table location cannot change while enabled (`AiGatewayInferenceTableConfig` and
  `AutoCaptureConfigInput` docstrings);
- permissions live at `/permissions/serving-endpoints/{id}` under object id
  `/serving-endpoints/{id}`, type `serving-endpoint`; the creator gets CAN_MANAGE and the
  `admins` group an inherited CAN_MANAGE; PUT replaces the direct grants (the creator's too:
  Terraform re-adds the current user on every set for this reason), PATCH merges them.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from reconciler.localworkspace import fields
from reconciler.localworkspace.catalog import Catalog
from reconciler.localworkspace.clock import hex_id, monotonic, now_ms
from reconciler.localworkspace.errors import already_exists, conflict, invalid, not_found

ENDPOINT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
ENTITY_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
MAX_SERVED_ENTITIES = 10
WORKLOAD_TYPES = ("CPU", "CPU_LARGE", "CPU_MEDIUM", "GPU_SMALL", "GPU_MEDIUM", "GPU_LARGE", "GPU_XLARGE",
                  "GPU_XLARGE_8", "MULTIGPU_MEDIUM")
PERMISSION_LEVELS = {
    "CAN_MANAGE": "Can manage the endpoint: edit its configuration, permissions and delete it",
    "CAN_QUERY": "Can query the endpoint",
    "CAN_VIEW": "Can view the endpoint and its configuration",
}
PRINCIPAL_KINDS = ("user_name", "group_name", "service_principal_name")
RATE_LIMIT_KEYS = ("endpoint", "user", "user_group", "service_principal")
INFERENCE_TABLE_LOCATION = ("catalog_name", "schema_name", "table_name_prefix")


@dataclass
class Update:
    """One issued config update: IN_PROGRESS until `due`, then applied or failed."""

    config: dict[str, Any]  # EndpointCoreConfigOutput shape (entities without `state`)
    start_time: int
    due: float  # monotonic deadline
    changed: set[str]  # entities (re)deployed by this update; the others were already serving
    failures: dict[str, str]  # entity name -> deployment failure message


@dataclass
class Endpoint:
    name: str
    id: str
    creator: str
    creation_timestamp: int
    last_updated_timestamp: int
    description: str = ""
    route_optimized: bool = False
    budget_policy_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    ai_gateway: dict[str, Any] | None = None
    rate_limits: list[dict[str, Any]] | None = None  # deprecated API; not part of the GET shape
    email_notifications: dict[str, Any] | None = None
    telemetry_config: dict[str, Any] | None = None
    config: dict[str, Any] | None = None  # the config being served
    ready: bool = False
    pending: Update | None = None  # the update in progress
    failed: Update | None = None  # the last update, when it failed
    configs_issued: int = 0
    acl: dict[tuple[str, str], str] = field(default_factory=dict)  # (principal kind, name) -> level


class Serving:
    """Serving endpoints by name; reads `catalog` to check and deploy model versions."""

    def __init__(self, catalog: Catalog, user: str, update_seconds: float) -> None:
        self.catalog = catalog
        self.user = user
        self.update_seconds = update_seconds
        self.endpoints: dict[str, Endpoint] = {}

    # -- time ----------------------------------------------------------------------------------

    def settle(self) -> None:
        """Finish every update whose time is up. Called before each request is handled, so the
        clock, not a background thread, moves endpoints along."""
        now = monotonic()
        for endpoint in self.endpoints.values():
            if endpoint.pending is not None and endpoint.pending.due <= now:
                self._finish(endpoint, endpoint.pending)

    def _finish(self, endpoint: Endpoint, update: Update) -> None:
        endpoint.pending = None
        if update.failures:
            endpoint.failed = update
            return
        endpoint.config = update.config
        endpoint.ready = True
        endpoint.failed = None

    # -- lookups -------------------------------------------------------------------------------

    def get(self, name: str) -> Endpoint:
        found = self.endpoints.get(name)
        if found is None:
            # The message a real workspace gives (captured in public code, see the module docstring).
            raise not_found(f"Endpoint with name '{name}' does not exist.")
        return found

    def by_id(self, endpoint_id: str) -> Endpoint:
        for endpoint in self.endpoints.values():
            if endpoint.id == endpoint_id:
                return endpoint
        raise not_found(f"Serving endpoint with id '{endpoint_id}' does not exist.")

    # -- create, update, delete ----------------------------------------------------------------

    def create(self, body: dict[str, Any], *, seeded: bool = False) -> Endpoint:
        """POST /serving-endpoints. A seeded endpoint is created already READY and its versions are
        not checked (a seed describes a world that already exists)."""
        name = fields.text(body, "name", required=True)
        assert name is not None
        if not ENDPOINT_NAME.match(name):
            raise invalid(f"Invalid endpoint name '{name}'. An endpoint name can consist of alphanumeric characters, "
                          "dashes, and underscores, and must be at most 63 characters long.")
        if name in self.endpoints:
            raise already_exists(f"Endpoint with name '{name}' already exists.")
        raw_config = fields.obj(body, "config", required=not seeded)
        now = now_ms()
        endpoint = Endpoint(name=name, id=hex_id(), creator=self.user, creation_timestamp=now,
                            last_updated_timestamp=now)
        endpoint.description = fields.text(body, "description") or ""
        endpoint.route_optimized = bool(fields.boolean(body, "route_optimized"))
        endpoint.budget_policy_id = fields.text(body, "budget_policy_id")
        endpoint.tags = parse_tags(fields.objects(body, "tags") or [], "tags")
        if fields.obj(body, "ai_gateway") is not None:
            endpoint.ai_gateway = parse_ai_gateway(body["ai_gateway"], None, "ai_gateway")
        if fields.objects(body, "rate_limits") is not None:
            endpoint.rate_limits = parse_rate_limits(body, "")
        endpoint.email_notifications = parse_notifications(body)
        endpoint.telemetry_config = fields.obj(body, "telemetry_config")
        endpoint.acl[("user_name", self.user)] = "CAN_MANAGE"
        if raw_config is not None:
            config = self._build_config(raw_config, None, parent="config", check_versions=not seeded)
            if seeded:
                self._stamp(config["served_entities"], {})
                endpoint.configs_issued = 1
                endpoint.config = {**config, "config_version": 1}
            else:
                self._issue(endpoint, config)
        if seeded:
            endpoint.ready = True
        self.endpoints[name] = endpoint
        return endpoint

    def update_config(self, name: str, body: dict[str, Any]) -> Endpoint:
        """PUT /serving-endpoints/{name}/config: replaces the served entities and traffic as a whole."""
        endpoint = self.get(name)
        self._refuse_while_updating(endpoint)
        config = self._build_config(body, endpoint.config, parent="")
        self._issue(endpoint, config)
        endpoint.last_updated_timestamp = now_ms()
        return endpoint

    def delete(self, name: str) -> None:
        del self.endpoints[self.get(name).name]

    def _refuse_while_updating(self, endpoint: Endpoint) -> None:
        if endpoint.pending is not None:
            raise conflict(f"Endpoint '{endpoint.name}' has a config update in progress; it cannot be updated until "
                           "the current update completes or fails.")

    def _issue(self, endpoint: Endpoint, config: dict[str, Any]) -> None:
        endpoint.configs_issued += 1
        serving_now = {e["name"]: e for e in (endpoint.config or {}).get("served_entities", [])}
        changed = self._stamp(config["served_entities"], serving_now)
        failures = {}
        for entity in config["served_entities"]:
            if entity["name"] in changed and is_uc_model(entity):
                version = self.catalog.version(entity["entity_name"], entity["entity_version"])
                if version.deploy_failure:
                    failures[entity["name"]] = version.deploy_failure
        endpoint.pending = Update(config={**config, "config_version": endpoint.configs_issued},
                                  start_time=now_ms(), due=monotonic() + self.update_seconds,
                                  changed=changed, failures=failures)
        endpoint.failed = None

    def _stamp(self, entities: list[dict[str, Any]], serving_now: dict[str, dict[str, Any]]) -> set[str]:
        """Give each entity its `creator` and `creation_timestamp`: kept from the entity already
        serving under its name when nothing else changed, new otherwise. Returns the new ones."""
        changed, now = set(), now_ms()
        for entity in entities:
            serving = serving_now.get(entity["name"])
            if serving is not None and same_deployment(entity, serving):
                entity["creator"], entity["creation_timestamp"] = serving["creator"], serving["creation_timestamp"]
            else:
                entity["creator"], entity["creation_timestamp"] = self.user, now
                changed.add(entity["name"])
        return changed

    def _build_config(self, raw: dict[str, Any], current: dict[str, Any] | None, *, parent: str,
                      check_versions: bool = True) -> dict[str, Any]:
        """A validated EndpointCoreConfigOutput (without states) from a config request body."""
        if raw.get("served_models") is not None:
            raise invalid(f"{fields.path_of(parent, 'served_models')} is deprecated and not supported by this "
                          "workspace; use served_entities")
        raw_entities = fields.objects(raw, "served_entities", parent=parent)
        raw_traffic = fields.obj(raw, "traffic_config", parent=parent)
        raw_capture = fields.obj(raw, "auto_capture_config", parent=parent)
        previous = (current or {}).get("served_entities", [])
        if raw_entities is None:
            if not previous:
                raise invalid(f"Missing required field: {fields.path_of(parent, 'served_entities')}")
            entities = copy.deepcopy(previous)
        else:
            where = fields.path_of(parent, "served_entities")
            if not raw_entities:
                raise invalid(f"{where} must contain at least one served entity")
            if len(raw_entities) > MAX_SERVED_ENTITIES:
                raise invalid(f"A serving endpoint can have at most {MAX_SERVED_ENTITIES} served entities; "
                              f"{where} has {len(raw_entities)}")
            entities = [parse_entity(e, previous, fields.path_of(where, i)) for i, e in enumerate(raw_entities)]
        names = [e["name"] for e in entities]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise invalid(f"Served entity names must be unique across an endpoint: '{duplicates[0]}' is used twice")
        if check_versions:
            for entity in entities:
                if "external_model" not in entity:
                    self._check_servable(entity)
        config: dict[str, Any] = {"served_entities": entities}
        if raw_traffic is not None:
            config["traffic_config"] = parse_traffic(raw_traffic, names, fields.path_of(parent, "traffic_config"))
        elif raw_entities is None and current and "traffic_config" in current:
            config["traffic_config"] = copy.deepcopy(current["traffic_config"])
        elif len(entities) == 1:
            config["traffic_config"] = {"routes": [route(names[0], 100)]}
        else:
            raise invalid(f"{fields.path_of(parent, 'traffic_config')} is required when a config has more than one "
                          "served entity")
        old_capture = (current or {}).get("auto_capture_config")
        if raw_capture is not None:
            capture = parse_inference_table(raw_capture, fields.path_of(parent, "auto_capture_config"))
            check_inference_table_change(old_capture, capture, fields.path_of(parent, "auto_capture_config"))
            config["auto_capture_config"] = capture
        elif old_capture is not None:
            config["auto_capture_config"] = copy.deepcopy(old_capture)
        return config

    def _check_servable(self, entity: dict[str, Any]) -> None:
        """Only an existing, READY model version can be served."""
        entity_name, entity_version = entity["entity_name"], entity.get("entity_version")
        if not is_uc_model(entity):
            raise not_found(f"Registered model '{entity_name}' does not exist.")
        version = self.catalog.version(entity_name, entity_version)
        if version.status != "READY":
            raise invalid(f"Model version '{entity_version}' of '{entity_name}' is not ready to be served: its "
                          f"status is {version.status}.")

    # -- other parts of an endpoint ------------------------------------------------------------

    def patch_tags(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.get(name)
        add = parse_tags(fields.objects(body, "add_tags") or [], "add_tags")
        for key in fields.texts(body, "delete_tags") or []:
            endpoint.tags.pop(key, None)
        endpoint.tags.update(add)
        return {"tags": tag_list(endpoint.tags)}

    def put_ai_gateway(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.get(name)
        self._refuse_while_updating(endpoint)
        endpoint.ai_gateway = parse_ai_gateway(body, endpoint.ai_gateway, "")
        endpoint.last_updated_timestamp = now_ms()
        return copy.deepcopy(endpoint.ai_gateway)

    def put_rate_limits(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.get(name)
        endpoint.rate_limits = parse_rate_limits(body, "")
        return {"rate_limits": copy.deepcopy(endpoint.rate_limits)}

    def update_notifications(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.get(name)
        endpoint.email_notifications = parse_notifications(body)
        result: dict[str, Any] = {"name": endpoint.name}
        if endpoint.email_notifications is not None:
            result["email_notifications"] = copy.deepcopy(endpoint.email_notifications)
        return result

    def build_logs(self, name: str, served_model_name: str) -> dict[str, Any]:
        endpoint = self.get(name)
        for update, outcome in ((endpoint.pending, "building"), (endpoint.failed, "failed")):
            if update is not None:
                entity = find_entity(update.config, served_model_name)
                if entity is not None and served_model_name in update.changed:
                    return {"logs": build_log(entity, outcome, update)}
        entity = find_entity(endpoint.config, served_model_name)
        if entity is None:
            raise not_found(f"Served model '{served_model_name}' does not exist in endpoint '{endpoint.name}'.")
        return {"logs": build_log(entity, "ready", None)}

    # -- permissions ---------------------------------------------------------------------------

    def permissions(self, endpoint_id: str) -> dict[str, Any]:
        endpoint = self.by_id(endpoint_id)
        acl = [principal_entry(kind, principal, {"permission_level": level, "inherited": False})
               for (kind, principal), level in endpoint.acl.items()]
        acl.append(principal_entry("group_name", "admins", {
            "permission_level": "CAN_MANAGE", "inherited": True, "inherited_from_object": ["/serving-endpoints/"]}))
        return {"object_id": f"/serving-endpoints/{endpoint.id}", "object_type": "serving-endpoint",
                "access_control_list": acl}

    def set_permissions(self, endpoint_id: str, body: dict[str, Any], *, replace: bool) -> dict[str, Any]:
        endpoint = self.by_id(endpoint_id)
        grants = parse_acl(body)
        if replace:
            endpoint.acl = grants
        else:
            endpoint.acl.update(grants)
        return self.permissions(endpoint_id)

    def permission_levels(self, endpoint_id: str) -> dict[str, Any]:
        self.by_id(endpoint_id)
        return {"permission_levels": [{"permission_level": level, "description": description}
                                      for level, description in PERMISSION_LEVELS.items()]}

    # -- views ---------------------------------------------------------------------------------

    def detailed(self, endpoint: Endpoint) -> dict[str, Any]:
        """ServingEndpointDetailed: what GET, create and update_config answer."""
        view: dict[str, Any] = {
            "name": endpoint.name, "id": endpoint.id, "creator": endpoint.creator,
            "creation_timestamp": endpoint.creation_timestamp,
            "last_updated_timestamp": endpoint.last_updated_timestamp,
            "description": endpoint.description, "route_optimized": endpoint.route_optimized,
            "state": state_view(endpoint), "permission_level": "CAN_MANAGE",
        }
        if endpoint.config is not None:
            view["config"] = config_view(endpoint.config, None)
        shown = endpoint.pending or endpoint.failed
        if shown is not None:
            view["pending_config"] = {**config_view(shown.config, shown), "start_time": shown.start_time}
        if endpoint.tags:
            view["tags"] = tag_list(endpoint.tags)
        optional = (("ai_gateway", endpoint.ai_gateway), ("budget_policy_id", endpoint.budget_policy_id),
                    ("email_notifications", endpoint.email_notifications),
                    ("telemetry_config", endpoint.telemetry_config))
        view.update({key: copy.deepcopy(value) for key, value in optional if value})
        return view

    def summary(self, endpoint: Endpoint) -> dict[str, Any]:
        """ServingEndpoint: a list item, with only a summary of the served entities."""
        view: dict[str, Any] = {
            "name": endpoint.name, "id": endpoint.id, "creator": endpoint.creator,
            "creation_timestamp": endpoint.creation_timestamp,
            "last_updated_timestamp": endpoint.last_updated_timestamp,
            "state": state_view(endpoint), "description": endpoint.description,
        }
        if endpoint.config is not None:
            keys = ("name", "entity_name", "entity_version", "external_model")
            view["config"] = {"served_entities": [{k: copy.deepcopy(e[k]) for k in keys if k in e}
                                                  for e in endpoint.config["served_entities"]]}
        if endpoint.tags:
            view["tags"] = tag_list(endpoint.tags)
        if endpoint.ai_gateway:
            view["ai_gateway"] = copy.deepcopy(endpoint.ai_gateway)
        if endpoint.budget_policy_id:
            view["budget_policy_id"] = endpoint.budget_policy_id
        return view


# -- request parsing -----------------------------------------------------------------------------

ENTITY_TEXT_FIELDS = ("name", "entity_name", "entity_version", "workload_size", "workload_type", "instance_profile_arn")
ENTITY_INT_FIELDS = ("min_provisioned_throughput", "max_provisioned_throughput", "min_provisioned_concurrency",
                     "max_provisioned_concurrency", "provisioned_model_units")


def parse_entity(raw: dict[str, Any], previous: list[dict[str, Any]], where: str) -> dict[str, Any]:
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
    external = fields.obj(raw, "external_model", parent=where)
    fields.one_of(entity.get("workload_type"), WORKLOAD_TYPES, fields.path_of(where, "workload_type"))

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
        if "entity_version" not in entity and entity_name.count(".") == 2:
            raise invalid(f"Missing required field: {fields.path_of(where, 'entity_version')} (required for "
                          "Unity Catalog models)")
        if "workload_size" in entity and ({"min_provisioned_concurrency", "max_provisioned_concurrency"} & entity.keys()):
            raise invalid(f"{where}: workload_size cannot be used together with min/max_provisioned_concurrency")
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
        grants[given[0]] = level  # type: ignore[index]
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
    return scrub(copy.deepcopy(external))  # type: ignore[no-any-return]


# -- views and small helpers ---------------------------------------------------------------------

def is_uc_model(entity: dict[str, Any]) -> bool:
    return "external_model" not in entity and entity.get("entity_name", "").count(".") == 2


ENTITY_STAMPS = ("creator", "creation_timestamp")


def same_deployment(entity: dict[str, Any], serving: dict[str, Any]) -> bool:
    """An entity identical to one already serving under its name is not redeployed."""
    def settings(e: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in e.items() if k not in ENTITY_STAMPS}
    return settings(entity) == settings(serving)


def find_entity(config: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    for entity in (config or {}).get("served_entities", []):
        if entity["name"] == name:
            return entity  # type: ignore[no-any-return]
    return None


def state_view(endpoint: Endpoint) -> dict[str, str]:
    if endpoint.pending is not None:
        config_update = "IN_PROGRESS"
    elif endpoint.failed is not None:
        config_update = "UPDATE_FAILED"
    else:
        config_update = "NOT_UPDATING"
    return {"ready": "READY" if endpoint.ready else "NOT_READY", "config_update": config_update}


def config_view(config: dict[str, Any], update: Update | None) -> dict[str, Any]:
    """The config with each served entity's deployment state; `update` is the pending or failed
    update that `config` belongs to, None for the config being served."""
    view = copy.deepcopy(config)
    for entity in view["served_entities"]:
        entity["state"] = entity_state(entity["name"], update)
    return view


def entity_state(name: str, update: Update | None) -> dict[str, str]:
    if update is None or name not in update.changed:
        return {"deployment": "DEPLOYMENT_READY", "deployment_state_message": ""}
    if not update.failures:
        return {"deployment": "DEPLOYMENT_CREATING",
                "deployment_state_message": "Creating the served entity: building the model environment."}
    if name in update.failures:
        return {"deployment": "DEPLOYMENT_FAILED",
                "deployment_state_message": f"Served entity '{name}' failed to deploy: {update.failures[name]}"}
    failed = sorted(update.failures)[0]
    return {"deployment": "DEPLOYMENT_ABORTED",
            "deployment_state_message": f"Deployment aborted because served entity '{failed}' failed to deploy."}


def build_log(entity: dict[str, Any], outcome: str, update: Update | None) -> str:
    what = entity.get("entity_name") or entity.get("external_model", {}).get("name", "")
    lines = [f"Building the environment of served entity '{entity['name']}' ({what} version "
             f"{entity.get('entity_version', '-')}).",
             "Downloading model artifacts...", "Installing model dependencies from requirements.txt..."]
    if outcome == "building":
        lines.append("Build in progress.")
    elif outcome == "failed" and update is not None:
        if entity["name"] in update.failures:
            lines += [f"ERROR: {update.failures[entity['name']]}", "Build failed: the served entity could not be deployed."]
        else:
            lines.append("Build aborted: another served entity of this update failed to deploy.")
    else:
        lines.append("Build succeeded. The container image is ready.")
    return "\n".join(lines) + "\n"


def principal_entry(kind: str, principal: str, permission: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {kind: principal, "all_permissions": [permission]}
    if kind != "group_name":
        entry["display_name"] = principal
    return entry

