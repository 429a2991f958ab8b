"""Model Serving endpoints as the local workspace keeps them: validation, server-filled defaults,
asynchronous config updates, failures, tags, AI Gateway, permissions (enforced on every call) and
the JSON views.

Called by the route handlers (`routes.py`) under the workspace lock; request bodies are read by
`serving_input.py`. Behaviour and where it comes from (the SDK docstrings are the generated
Databricks REST reference; captures are in shared/reference/real-api/):
- endpoint names: letters, digits, '-' and '_', 1 to 63 characters (REST reference, "Get":
  name "Constraints: [ 1 .. 63 ] characters"); a name that breaks this grammar is refused with 400
  INVALID_PARAMETER_VALUE wherever it appears, also in a path (`get`), never looked up;
- at most 15 served entities: the backend answers more with INVALID_PARAMETER_VALUE "served_models
  cannot contain more than 15 elements" (databricks-agents 1.13 `deployments.py` catches exactly
  that; DEFAULTS.md A8: databricks-sdk-py#1496, the documented ten is out of date). Two entities
  with one name ("It must be unique across an endpoint", `ServedEntityInput.name` docstring):
  "Cannot create 2+ served entities" as a plain 400, which the same client catches as
  `BadRequest`, not `InvalidParameterValue`. It meets it when a redeploy of the same version adds
  an entity whose name (derived from model and version) is already served, and reads it as "already
  serves model X, version Y"; whether the backend also refuses one version under two names is not
  known, so that is accepted. The rest of the message is ours;
- one served entity and no `traffic_config`: one route at 100%, carrying both
  `served_model_name` and `served_entity_name` as real responses do; with several entities a
  traffic config is required (databricks/cli `libs/testserver/serving_endpoints.go`);
- a config update whose scaling entity leaves out `scale_to_zero_enabled` is refused with the
  message a real workspace gave ("scaleToZeroEnabled is undefined. Please set it to either true or
  false.", terraform-provider-databricks #4064 and #3946, where updates failed once the provider
  stopped sending `false`; the error code is ours). Creates without it are accepted and the field
  stays absent (no documented default, DEFAULTS.md A4);
- legacy inference tables: "Starting February 20, 2026, legacy inference tables can not be enabled
  on new or existing model serving endpoints" (Databricks docs, "Enable inference tables on model
  serving endpoints using the API"). A create or config update that would enable
  `auto_capture_config` is refused (INVALID_PARAMETER_VALUE; no real error text was found, so
  the message is ours); disabling it, or sending the live one back unchanged, is accepted, and an
  endpoint seeded with one keeps returning it;
- GET carries what real answers carry: the `served_models` mirror of `served_entities` in
  `config` and `pending_config` (databricks/cli#3880; captures 02/03), `state.suspend:
  NOT_SUSPENDED` and `state.system_update_failure: false` on custom model endpoints (capture 03,
  endpoint_list_01), `creator_display_name`, `creator_kind`, `description: ""`,
  `effective_budget_policy_id` and never `budget_policy_id` (databricks/cli
  `bundle/direct/dresources/resources.yml`: "GET never populates it (the API returns
  effective_budget_policy_id instead)"), `email_notifications`, and `task` / `endpoint_type` where
  the server sets them. The endpoint's top-level `rate_limits` are accepted and never returned
  (`ServingEndpointDetailed` has no such field; resources.yml ignored remote changes to them from
  databricks/cli#4638 and still ignores local ones, "not_implemented");
- `task`: set by the server for agent endpoints (create has no `task` parameter). An endpoint is
  an agent endpoint when a version it serves was logged as one: MLflow writes the MLmodel
  `metadata.task` `agent/v1/chat` (ChatModel), `agent/v2/chat` (ChatAgent) or
  `agent/v1/responses` (ResponsesAgent) (`mlflow/pyfunc/__init__.py`), and clients treat a `task`
  matching `agent/v\\d+/(chat|responses)` as an agent (shared/reference/databricks-api.md,
  "Agent endpoints");
- AI Gateway on agent endpoints: "agent endpoints currently only support inference tables" (SDK
  docstring of `put_ai_gateway`), so other features are refused; enabling inference tables
  again where they already are answers "Inference tables is already enabled", the error
  databricks-agents 1.13 (`deployments.py`, "using the put_ai_gateway throws an error") avoids by
  never resending `ai_gateway` on redeploy. We apply that rule to agent endpoints only, where the
  evidence is; Terraform resends the whole gateway on other endpoints without such reports;
- Agent Bricks endpoints may be seeded READY with `config: {}` (real-api/endpoint_list_01.json);
- tags are returned sorted by key;
- a create or config update is IN_PROGRESS for `update_seconds`: `pending_config` holds the new
  config, `config` the old one (absent for a new endpoint, which is NOT_READY until its first
  config is up); config and AI Gateway writes meanwhile answer 409 RESOURCE_CONFLICT ("an
  endpoint that already has an update in progress can not be updated until the current update
  completes or fails", `update_config` docstring);
- a version seeded with `deploy_failure` makes the update end UPDATE_FAILED: `config` (and
  `state.ready`) stay as they were, and `pending_config` keeps the failed update ("the last issued
  update", `EndpointPendingConfig` docstring) with the failing entity DEPLOYMENT_FAILED plus its
  `deployment_state_message`, the other new entities DEPLOYMENT_ABORTED; build logs say why;
- inference table location cannot change while enabled (`AiGatewayInferenceTableConfig` and
  `AutoCaptureConfigInput` docstrings);
- permissions live at `/permissions/serving-endpoints/{id}` under object id
  `/serving-endpoints/{id}`, type `serving-endpoint`; the creator gets CAN_MANAGE and the
  `admins` group an inherited CAN_MANAGE; PUT replaces the direct grants (the creator's too:
  Terraform re-adds the current user on every set for this reason), PATCH merges them;
- permissions are enforced: reading an endpoint (and its build logs) needs CAN_VIEW, querying
  CAN_QUERY (`authorize`, for the query routes), config, tags, AI Gateway, rate limits,
  notifications, permissions and delete CAN_MANAGE (levels as the Permissions API lists them);
  workspace admins hold CAN_MANAGE everywhere. The list shows only endpoints the caller can view,
  each with the caller's `permission_level`. A refusal is 403 PERMISSION_DENIED; its wording is
  ours, shaped like the Permissions API's real messages ("<user> does not have Manage permissions
  on Job ...", recorded against real workspaces in databricks/cli acceptance outputs);
- "Updates fail with PERMISSION_DENIED if the recorded creator is no longer a workspace member"
  (Databricks docs, "Create custom model serving endpoints"; DEFAULTS.md A7): a config update of
  an endpoint whose creator is a seeded principal with `active: false` is refused.
"""

from __future__ import annotations

import builtins
import copy
import re
from dataclasses import dataclass, field
from typing import Any

from reconciler.localworkspace import fields
from reconciler.localworkspace.catalog import Catalog
from reconciler.localworkspace.clock import hex_id, monotonic, now_ms
from reconciler.localworkspace.errors import (
    ApiError,
    already_exists,
    conflict,
    invalid,
    not_found,
    permission_denied,
)
from reconciler.localworkspace.identities import Identities, Principal
from reconciler.localworkspace.serving_input import (
    AGENT_GATEWAY_ONLY,
    PERMISSION_LEVELS,
    agent_gateway_features,
    check_inference_table_change,
    enables_legacy_table,
    is_uc_model,
    mirrors,
    parse_acl,
    parse_ai_gateway,
    parse_entity,
    parse_inference_table,
    parse_notifications,
    parse_rate_limits,
    parse_tags,
    parse_traffic,
    route,
    scales,
    served_model_view,
    served_models_as_entities,
    tag_list,
)

ENDPOINT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
MAX_SERVED_ENTITIES = 15
AGENT_TASK = re.compile(r"^agent/v\d+/(chat|responses)$")
LEVELS = ("CAN_VIEW", "CAN_QUERY", "CAN_MANAGE")  # each level includes the ones before it
LEVEL_WORDS = {"CAN_VIEW": "View", "CAN_QUERY": "Query", "CAN_MANAGE": "Manage"}
CUSTOM_STATE = {"suspend": "NOT_SUSPENDED", "system_update_failure": False}
# Top-level fields only the server sets; a seed may give them (real-api/endpoint_list_01.json).
SEEDED_SERVER_FIELDS = ("task", "endpoint_type", "tile_endpoint_metadata", "capabilities", "creator_display_name",
                        "creator_kind", "effective_budget_policy_id", "resource_credential_strategy")
LEGACY_INFERENCE_TABLES = (
    "Legacy inference tables (auto_capture_config) can not be enabled on new or existing model serving "
    "endpoints since February 20, 2026. Use AI Gateway inference tables (ai_gateway.inference_table_config) "
    "instead.")


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
    creator_display_name: str = ""
    creator_kind: str = "User"
    description: str = ""
    route_optimized: bool = False
    budget_policy_id: str | None = None  # accepted on create; GET shows it as effective_budget_policy_id
    tags: dict[str, str] = field(default_factory=dict)
    ai_gateway: dict[str, Any] | None = None
    rate_limits: list[dict[str, Any]] | None = None  # deprecated API; not part of the GET shape
    email_notifications: dict[str, Any] | None = None
    telemetry_config: dict[str, Any] | None = None
    config: dict[str, Any] | None = None  # the config being served; {} for a READY Agent Bricks endpoint
    ready: bool = False
    pending: Update | None = None  # the update in progress
    failed: Update | None = None  # the last update, when it failed
    configs_issued: int = 0
    acl: dict[tuple[str, str], str] = field(default_factory=dict)  # (principal kind, name) -> level
    task: str | None = None
    state_extras: dict[str, Any] = field(default_factory=lambda: dict(CUSTOM_STATE))
    server_fields: dict[str, Any] = field(default_factory=dict)  # seeded read-only fields, shown as given


class Serving:
    """Serving endpoints by name; reads `catalog` to check and deploy model versions."""

    def __init__(self, catalog: Catalog, identities: Identities, update_seconds: float) -> None:
        self.catalog = catalog
        self.identities = identities
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

    # -- lookups and permissions ---------------------------------------------------------------

    def caller_or_default(self, caller: Principal | None) -> Principal:
        return caller or self.identities.default_principal()

    def get(self, name: str, caller: Principal | None = None, level: str | None = None) -> Endpoint:
        """The endpoint named `name`; with `level`, only for a caller who holds it."""
        if not ENDPOINT_NAME.match(name):
            raise invalid(f"Invalid endpoint name '{name}'. An endpoint name can consist of alphanumeric characters, "
                          "dashes, and underscores, and must be at most 63 characters long.")
        found = self.endpoints.get(name)
        if found is None:
            # The message a real workspace gives (recorded in public issue threads, e.g.
            # databricks-demos/dbdemos#220).
            raise not_found(f"Endpoint with name '{name}' does not exist.")
        if level is not None:
            self.authorize(found, caller, level)
        return found

    def by_id(self, endpoint_id: str, caller: Principal | None = None, level: str | None = None) -> Endpoint:
        for endpoint in self.endpoints.values():
            if endpoint.id == endpoint_id:
                if level is not None:
                    self.authorize(endpoint, caller, level)
                return endpoint
        raise not_found(f"Serving endpoint with id '{endpoint_id}' does not exist.")

    def level_of(self, endpoint: Endpoint, caller: Principal | None) -> str | None:
        """The caller's effective permission: admins manage everything; otherwise the highest
        level granted to the caller or to a group it belongs to."""
        principal = self.caller_or_default(caller)
        if principal.admin:
            return "CAN_MANAGE"
        groups = principal.member_of()
        held = [level for (kind, name), level in endpoint.acl.items()
                if (kind, name) == principal.acl_key or (kind == "group_name" and name in groups)]
        return max(held, key=LEVELS.index, default=None)

    def authorize(self, endpoint: Endpoint, caller: Principal | None, needed: str) -> None:
        """403 PERMISSION_DENIED unless the caller holds `needed` (or more) on `endpoint`."""
        level = self.level_of(endpoint, caller)
        if level is None or LEVELS.index(level) < LEVELS.index(needed):
            principal = self.caller_or_default(caller)
            raise permission_denied(f"User {principal.name} does not have {LEVEL_WORDS[needed]} permissions on serving "
                                    f"endpoint '{endpoint.name}'. Please contact the owner or an administrator for "
                                    "access.")

    def list(self, caller: Principal | None) -> list[dict[str, Any]]:
        return [self.summary(e, caller) for _, e in sorted(self.endpoints.items())
                if self.level_of(e, caller) is not None]

    # -- create, update, delete ----------------------------------------------------------------

    def create(self, body: dict[str, Any], *, caller: Principal | None = None, seeded: bool = False) -> Endpoint:
        """POST /serving-endpoints. A seeded endpoint is created already READY, its versions are not
        checked and it may carry what only the server sets (a seed describes a world that exists)."""
        name = fields.text(body, "name", required=True)
        assert name is not None
        if not ENDPOINT_NAME.match(name):
            raise invalid(f"Invalid endpoint name '{name}'. An endpoint name can consist of alphanumeric characters, "
                          "dashes, and underscores, and must be at most 63 characters long.")
        if name in self.endpoints:
            raise already_exists(f"Endpoint with name '{name}' already exists.")
        raw_config = fields.obj(body, "config", required=not seeded)
        creator = self._creator(body, caller, seeded=seeded)
        now = now_ms()
        endpoint = Endpoint(name=name, id=hex_id(), creator=creator.name, creation_timestamp=now,
                            last_updated_timestamp=now, creator_display_name=creator.display_name,
                            creator_kind=creator.creator_kind)
        endpoint.description = fields.text(body, "description") or ""
        endpoint.route_optimized = bool(fields.boolean(body, "route_optimized"))
        endpoint.budget_policy_id = fields.text(body, "budget_policy_id")
        endpoint.tags = parse_tags(fields.objects(body, "tags") or [], "tags")
        if fields.objects(body, "rate_limits") is not None:
            endpoint.rate_limits = parse_rate_limits(body, "")
        endpoint.email_notifications = parse_notifications(body)
        endpoint.telemetry_config = fields.obj(body, "telemetry_config")
        endpoint.acl[creator.acl_key] = "CAN_MANAGE"
        if seeded:
            self._seed_extras(endpoint, body)
        config = None
        if raw_config == {} and seeded:
            endpoint.config = {}  # an Agent Bricks endpoint: READY with an empty config
            endpoint.state_extras = {}
        elif raw_config is not None:
            config = self._build_config(raw_config, None, parent="config", seeded=seeded)
            endpoint.task = endpoint.task or self.served_task(config)
        if fields.obj(body, "ai_gateway") is not None:
            endpoint.ai_gateway = parse_ai_gateway(body["ai_gateway"], None, "ai_gateway")
            if not seeded:
                self._check_agent_gateway(endpoint, endpoint.ai_gateway, None)
        if config is not None:
            if seeded:
                self._stamp(config["served_entities"], {}, creator.name)
                endpoint.configs_issued = 1
                endpoint.config = {**config, "config_version": 1}
            else:
                self._issue(endpoint, config, creator.name)
        if seeded:
            endpoint.ready = True
        self.endpoints[name] = endpoint
        return endpoint

    def _creator(self, body: dict[str, Any], caller: Principal | None, *, seeded: bool) -> Principal:
        """Who creates the endpoint: the caller, or for a seed its `creator` (known principal or not)."""
        if seeded and isinstance(body.get("creator"), str):
            known = self.identities.principals.get(body["creator"])
            return known or Principal("user", body["creator"], str(body.get("creator_display_name") or body["creator"]))
        return self.caller_or_default(caller)

    def _seed_extras(self, endpoint: Endpoint, body: dict[str, Any]) -> None:
        endpoint.server_fields = {k: copy.deepcopy(body[k]) for k in SEEDED_SERVER_FIELDS if body.get(k) is not None}
        endpoint.task = endpoint.server_fields.pop("task", None)
        endpoint.creator_display_name = endpoint.server_fields.pop("creator_display_name",
                                                                   endpoint.creator_display_name)
        endpoint.creator_kind = endpoint.server_fields.pop("creator_kind", endpoint.creator_kind)
        if "endpoint_type" in endpoint.server_fields:  # pay-per-token endpoints: no suspend fields (capture)
            endpoint.state_extras = {}
        if isinstance(body.get("state"), dict):
            endpoint.state_extras = {k: v for k, v in body["state"].items() if k not in ("ready", "config_update")}
        endpoint.acl.update(parse_acl(body))

    def update_config(self, name: str, body: dict[str, Any], caller: Principal | None = None) -> Endpoint:
        """PUT /serving-endpoints/{name}/config: replaces the served entities and traffic as a whole."""
        endpoint = self.get(name, caller, "CAN_MANAGE")
        self._refuse_while_updating(endpoint)
        creator = self.identities.principals.get(endpoint.creator)
        if creator is not None and not creator.active:
            raise permission_denied(f"The creator of endpoint '{endpoint.name}', {creator.name}, is no longer a member "
                                    "of this workspace; configuration updates are refused. Recreate the endpoint.")
        config = self._build_config(body, endpoint.config, parent="", updating=True)
        self._issue(endpoint, config, self.caller_or_default(caller).name)
        endpoint.last_updated_timestamp = now_ms()
        return endpoint

    def delete(self, name: str, caller: Principal | None = None) -> None:
        del self.endpoints[self.get(name, caller, "CAN_MANAGE").name]

    def _refuse_while_updating(self, endpoint: Endpoint) -> None:
        if endpoint.pending is not None:
            raise conflict(f"Endpoint '{endpoint.name}' has a config update in progress; it cannot be updated until "
                           "the current update completes or fails.")

    def _issue(self, endpoint: Endpoint, config: dict[str, Any], issuer: str) -> None:
        endpoint.configs_issued += 1
        serving_now = {e["name"]: e for e in (endpoint.config or {}).get("served_entities", [])}
        changed = self._stamp(config["served_entities"], serving_now, issuer)
        failures = {}
        for entity in config["served_entities"]:
            if entity["name"] in changed and is_uc_model(entity):
                version = self.catalog.version(entity["entity_name"], entity["entity_version"])
                if version.deploy_failure:
                    failures[entity["name"]] = version.deploy_failure
        endpoint.task = self.served_task(config) or endpoint.task
        endpoint.pending = Update(config={**config, "config_version": endpoint.configs_issued},
                                  start_time=now_ms(), due=monotonic() + self.update_seconds,
                                  changed=changed, failures=failures)
        endpoint.failed = None

    def _stamp(self, entities: builtins.list[dict[str, Any]], serving_now: dict[str, dict[str, Any]], issuer: str) -> set[str]:
        """Give each entity its `creator` and `creation_timestamp`: kept from the entity already
        serving under its name when nothing else changed, new otherwise. Returns the new ones."""
        changed, now = set(), now_ms()
        for entity in entities:
            serving = serving_now.get(entity["name"])
            if serving is not None and same_deployment(entity, serving):
                entity["creator"], entity["creation_timestamp"] = serving["creator"], serving["creation_timestamp"]
            else:
                entity["creator"], entity["creation_timestamp"] = issuer, now
                changed.add(entity["name"])
        return changed

    def served_task(self, config: dict[str, Any]) -> str | None:
        """The agent task of the first served version whose MLmodel says it is an agent."""
        for entity in config.get("served_entities", []):
            if not is_uc_model(entity):
                continue
            try:
                version = self.catalog.version(entity["entity_name"], entity.get("entity_version", ""))
            except ApiError:
                continue
            task = ((version.mlmodel or {}).get("metadata") or {}).get("task")
            if isinstance(task, str) and AGENT_TASK.match(task):
                return task
        return None

    def _build_config(self, raw: dict[str, Any], current: dict[str, Any] | None, *, parent: str,
                      seeded: bool = False, updating: bool = False) -> dict[str, Any]:
        """A validated EndpointCoreConfigOutput (without states) from a config request body."""
        raw_entities = fields.objects(raw, "served_entities", parent=parent)
        raw_models = fields.objects(raw, "served_models", parent=parent)
        if raw_models is not None:
            if raw_entities is None:
                raw_entities = served_models_as_entities(raw_models)
            elif not mirrors(raw_models, raw_entities):
                raise invalid(f"Only one of {fields.path_of(parent, 'served_entities')} and "
                              f"{fields.path_of(parent, 'served_models')} may be given (served_models is deprecated).")
        raw_traffic = fields.obj(raw, "traffic_config", parent=parent)
        raw_capture = fields.obj(raw, "auto_capture_config", parent=parent)
        previous = (current or {}).get("served_entities", [])
        if raw_entities is None:
            if not previous:
                raise invalid(f"Missing required field: {fields.path_of(parent, 'served_entities')}")
            entities = copy.deepcopy(previous)
        else:
            entities = self._parse_entities(raw_entities, previous, fields.path_of(parent, "served_entities"),
                                            seeded=seeded, updating=updating)
        names = [e["name"] for e in entities]
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
            where = fields.path_of(parent, "auto_capture_config")
            capture = parse_inference_table(raw_capture, where)
            if not seeded and enables_legacy_table(capture, old_capture):
                raise invalid(LEGACY_INFERENCE_TABLES)
            check_inference_table_change(old_capture, capture, where)
            if any(capture.get(key) for key in ("catalog_name", "schema_name")):
                capture.setdefault("enabled", True)  # the server's default (DEFAULTS.md A6, B7)
            config["auto_capture_config"] = capture
        elif old_capture is not None:
            config["auto_capture_config"] = copy.deepcopy(old_capture)
        return config

    def _parse_entities(self, raw_entities: builtins.list[dict[str, Any]], previous: builtins.list[dict[str, Any]], where: str, *,
                        seeded: bool, updating: bool) -> builtins.list[dict[str, Any]]:
        if not raw_entities:
            raise invalid(f"{where} must contain at least one served entity")
        if len(raw_entities) > MAX_SERVED_ENTITIES:
            raise invalid(f"served_models cannot contain more than {MAX_SERVED_ENTITIES} elements ({where} has "
                          f"{len(raw_entities)})")
        if updating:
            for i, raw_entity in enumerate(raw_entities):
                if scales(raw_entity) and raw_entity.get("scale_to_zero_enabled") is None:
                    raise invalid(f"scaleToZeroEnabled is undefined. Please set it to either true or false. "
                                  f"({fields.path_of(where, i)})")
        entities = [parse_entity(e, previous, fields.path_of(where, i), seeded=seeded)
                    for i, e in enumerate(raw_entities)]
        names = [e["name"] for e in entities]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ApiError(400, "BAD_REQUEST", f"Cannot create 2+ served entities named '{duplicates[0]}': a served "
                                               "entity name must be unique across an endpoint.")
        if not seeded:
            for entity in entities:
                if "external_model" not in entity:
                    self._check_servable(entity)
        return entities

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

    def patch_tags(self, name: str, body: dict[str, Any], caller: Principal | None = None) -> dict[str, Any]:
        endpoint = self.get(name, caller, "CAN_MANAGE")
        add = parse_tags(fields.objects(body, "add_tags") or [], "add_tags")
        for key in fields.texts(body, "delete_tags") or []:
            endpoint.tags.pop(key, None)
        endpoint.tags.update(add)
        return {"tags": tag_list(endpoint.tags)}

    def put_ai_gateway(self, name: str, body: dict[str, Any], caller: Principal | None = None) -> dict[str, Any]:
        endpoint = self.get(name, caller, "CAN_MANAGE")
        self._refuse_while_updating(endpoint)
        gateway = parse_ai_gateway(body, endpoint.ai_gateway, "")
        self._check_agent_gateway(endpoint, gateway, endpoint.ai_gateway)
        endpoint.ai_gateway = gateway
        endpoint.last_updated_timestamp = now_ms()
        return copy.deepcopy(endpoint.ai_gateway)

    def _check_agent_gateway(self, endpoint: Endpoint, gateway: dict[str, Any], old: dict[str, Any] | None) -> None:
        """The AI Gateway rules of agent endpoints (see the module docstring)."""
        if not is_agent(endpoint):
            return
        unsupported = agent_gateway_features(gateway)
        if unsupported:
            raise invalid(f"AI Gateway {', '.join(unsupported)} cannot be set on endpoint '{endpoint.name}': "
                          f"{AGENT_GATEWAY_ONLY}.")
        enabling = (gateway.get("inference_table_config") or {}).get("enabled")
        if enabling and ((old or {}).get("inference_table_config") or {}).get("enabled"):
            raise invalid("Inference tables is already enabled")

    def put_rate_limits(self, name: str, body: dict[str, Any], caller: Principal | None = None) -> dict[str, Any]:
        endpoint = self.get(name, caller, "CAN_MANAGE")
        endpoint.rate_limits = parse_rate_limits(body, "")
        return {"rate_limits": copy.deepcopy(endpoint.rate_limits)}

    def update_notifications(self, name: str, body: dict[str, Any], caller: Principal | None = None) -> dict[str, Any]:
        endpoint = self.get(name, caller, "CAN_MANAGE")
        endpoint.email_notifications = parse_notifications(body)
        result: dict[str, Any] = {"name": endpoint.name}
        if endpoint.email_notifications is not None:
            result["email_notifications"] = copy.deepcopy(endpoint.email_notifications)
        return result

    def build_logs(self, name: str, served_model_name: str, caller: Principal | None = None) -> dict[str, Any]:
        endpoint = self.get(name, caller, "CAN_VIEW")
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

    def permissions(self, endpoint_id: str, caller: Principal | None = None) -> dict[str, Any]:
        return acl_view(self.by_id(endpoint_id, caller, "CAN_MANAGE"))

    def set_permissions(self, endpoint_id: str, body: dict[str, Any], caller: Principal | None = None, *,
                        replace: bool) -> dict[str, Any]:
        endpoint = self.by_id(endpoint_id, caller, "CAN_MANAGE")
        grants = parse_acl(body)
        if replace:
            endpoint.acl = grants
        else:
            endpoint.acl.update(grants)
        return acl_view(endpoint)

    def permission_levels(self, endpoint_id: str, caller: Principal | None = None) -> dict[str, Any]:
        self.by_id(endpoint_id, caller, "CAN_VIEW")
        return {"permission_levels": [{"permission_level": level, "description": description}
                                      for level, description in PERMISSION_LEVELS.items()]}

    # -- views ---------------------------------------------------------------------------------

    def detailed(self, endpoint: Endpoint, caller: Principal | None = None) -> dict[str, Any]:
        """ServingEndpointDetailed: what GET, create and update_config answer."""
        view: dict[str, Any] = {
            "name": endpoint.name, "id": endpoint.id, "creator": endpoint.creator,
            "creator_display_name": endpoint.creator_display_name, "creator_kind": endpoint.creator_kind,
            "creation_timestamp": endpoint.creation_timestamp,
            "last_updated_timestamp": endpoint.last_updated_timestamp,
            "description": endpoint.description, "route_optimized": endpoint.route_optimized,
            "state": state_view(endpoint), "permission_level": self.level_of(endpoint, caller) or "CAN_VIEW",
        }
        if endpoint.config is not None:
            view["config"] = config_view(endpoint.config, None)
        shown = endpoint.pending or endpoint.failed
        if shown is not None:
            view["pending_config"] = {**config_view(shown.config, shown), "start_time": shown.start_time}
        if endpoint.tags:
            view["tags"] = tag_list(endpoint.tags)
        optional = (("ai_gateway", endpoint.ai_gateway), ("effective_budget_policy_id", endpoint.budget_policy_id),
                    ("email_notifications", endpoint.email_notifications),
                    ("telemetry_config", endpoint.telemetry_config), ("task", endpoint.task))
        view.update({key: copy.deepcopy(value) for key, value in optional if value})
        view.update(copy.deepcopy(endpoint.server_fields))
        return view

    def summary(self, endpoint: Endpoint, caller: Principal | None = None) -> dict[str, Any]:
        """ServingEndpoint: a list item, with only a summary of the served entities
        (real-api/endpoint_list_01.json: each item says its `type`, custom ones add the mirror)."""
        view: dict[str, Any] = {
            "name": endpoint.name, "id": endpoint.id, "creator": endpoint.creator,
            "creator_display_name": endpoint.creator_display_name, "creator_kind": endpoint.creator_kind,
            "creation_timestamp": endpoint.creation_timestamp,
            "last_updated_timestamp": endpoint.last_updated_timestamp,
            "state": state_view(endpoint), "description": endpoint.description,
            "route_optimized": endpoint.route_optimized,
            "permission_level": self.level_of(endpoint, caller) or "CAN_VIEW",
        }
        if endpoint.config is not None:
            view["config"] = summary_config(endpoint.config)
        if endpoint.tags:
            view["tags"] = tag_list(endpoint.tags)
        if endpoint.ai_gateway:
            view["ai_gateway"] = copy.deepcopy(endpoint.ai_gateway)
        if endpoint.task:
            view["task"] = endpoint.task
        view.update(copy.deepcopy(endpoint.server_fields))
        return view


# -- views and small helpers ---------------------------------------------------------------------

def is_agent(endpoint: Endpoint) -> bool:
    return bool(endpoint.task and AGENT_TASK.match(endpoint.task))


ENTITY_STAMPS = ("creator", "creation_timestamp")


def same_deployment(entity: dict[str, Any], serving: dict[str, Any]) -> bool:
    """An entity identical to one already serving under its name is not redeployed."""
    def settings(e: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in e.items() if k not in ENTITY_STAMPS}
    return settings(entity) == settings(serving)


def find_entity(config: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    for entity in (config or {}).get("served_entities", []):
        if entity["name"] == name:
            return entity
    return None


def state_view(endpoint: Endpoint) -> dict[str, Any]:
    if endpoint.pending is not None:
        config_update = "IN_PROGRESS"
    elif endpoint.failed is not None:
        config_update = "UPDATE_FAILED"
    else:
        config_update = "NOT_UPDATING"
    return {"ready": "READY" if endpoint.ready else "NOT_READY", "config_update": config_update,
            **copy.deepcopy(endpoint.state_extras)}


def config_view(config: dict[str, Any], update: Update | None) -> dict[str, Any]:
    """The config with each served entity's deployment state, and the `served_models` mirror;
    `update` is the pending or failed update that `config` belongs to, None for the config being
    served."""
    view = copy.deepcopy(config)
    if "served_entities" not in view:  # an Agent Bricks endpoint's `config: {}`
        return view
    for entity in view["served_entities"]:
        entity["state"] = entity_state(entity["name"], update)
    mirror = [served_model_view(e) for e in view["served_entities"] if "entity_name" in e and "foundation_model" not in e]
    if mirror:
        view["served_models"] = mirror
    capture = view.get("auto_capture_config")
    if capture and capture.get("enabled") and capture.get("table_name_prefix"):
        # real-api/endpoint_create_resp_01.json: the payload table the server writes to.
        capture["state"] = {"payload_table": {"name": f"{capture['table_name_prefix']}_payload"}}
    return view


def summary_config(config: dict[str, Any]) -> dict[str, Any]:
    if "served_entities" not in config:
        return {}
    keys = ("name", "entity_name", "entity_version", "external_model", "foundation_model")
    entities = []
    for entity in config["served_entities"]:
        item = {k: copy.deepcopy(entity[k]) for k in keys if k in entity}
        if "type" in entity or "entity_name" in entity:
            item["type"] = entity.get("type", "UC_MODEL")
        entities.append(item)
    summary: dict[str, Any] = {"served_entities": entities}
    mirror = [served_model_view({k: v for k, v in item.items() if k != "external_model"})
              for item in entities if item.get("type") == "UC_MODEL"]
    if mirror:
        summary["served_models"] = mirror
    return summary


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


def acl_view(endpoint: Endpoint) -> dict[str, Any]:
    """The Permissions API's answer for an endpoint: its direct grants and the admins' inherited one."""
    acl = [principal_entry(kind, principal, {"permission_level": level, "inherited": False})
           for (kind, principal), level in endpoint.acl.items()]
    acl.append(principal_entry("group_name", "admins", {
        "permission_level": "CAN_MANAGE", "inherited": True, "inherited_from_object": ["/serving-endpoints/"]}))
    return {"object_id": f"/serving-endpoints/{endpoint.id}", "object_type": "serving-endpoint",
            "access_control_list": acl}


def principal_entry(kind: str, principal: str, permission: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {kind: principal, "all_permissions": [permission]}
    if kind != "group_name":
        entry["display_name"] = principal
    return entry
