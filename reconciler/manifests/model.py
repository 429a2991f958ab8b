"""The manifest format, as pydantic models: the single source of the JSON Schema and of validation.

Field names are the Databricks API's (snake_case, same names) wherever a field maps one to one,
so the API reference applies to manifests. The few conveniences: `tags` is a map, `aliases` is a
map, a served entity may name its version through `alias:`, a version may be written as the logged
agent it is registered from (`models:/m-<id>`, `runs:/<run_id>/<path>`), and `resources` lists what
the agent needs at query time by MLflow resource type.

`None` means "left out". Left out of a served entity, a field means the API's default (a served
entity is complete: normalize.py rule 3, `FIELD_RULES`); left out of the endpoint, a block
(`ai_gateway`, `tags`, `permissions`, `description`) is not managed and stays as it is live.
All models are strict (no "yes" → True or 3.0 → 3 coercion) and forbid unknown fields.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from reconciler.manifests.policy_model import Policy
from reconciler.terms import PRINCIPAL_KEYS, SOURCE, SOURCE_FORMS, is_source

API_VERSION = "reconciler/v1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _entity_version(value: Any) -> str:
    # The API types entity_version as a string, but `entity_version: 3` is what people write.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return str(value)
    if isinstance(value, str) and (re.fullmatch(r"[1-9][0-9]*", value) or is_source(value)):
        return value
    raise PydanticCustomError("version_reference", 'should be a model version number such as "3", or the '
                              f"logged agent to register: {SOURCE_FORMS}")


def _alias_version(value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise PydanticCustomError("greater_than_equal", "Input should be greater than or equal to {ge}", {"ge": 1})
        return value
    if isinstance(value, str) and is_source(value):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        raise PydanticCustomError("int_type", "Input should be a valid integer")  # "4": the number, unquoted
    raise PydanticCustomError("version_reference", "should be a version number such as 3, or the logged agent "
                              f"to register: {SOURCE_FORMS}")


# A version is its number, or the logged agent it is registered from (`terms.SOURCE`): registered
# once, at apply, and the same version from then on (kinds/model_version.py).
# (Without Python's named groups: the schema's patterns are ECMA-262 regular expressions.)
_SOURCE_SCHEMA = {"type": "string", "pattern": "^(?:" + re.sub(r"\?P<\w+>", "", SOURCE.pattern) + ")$",
                  "description": "The logged agent, as MLflow printed it: models:/m-<id> or runs:/<run_id>/<path>; "
                                 "registered as a new version on apply unless a version from it exists."}
EntityVersion = Annotated[
    str, PlainValidator(_entity_version),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": r"^[1-9][0-9]*$"}, {"type": "integer", "minimum": 1},
                              _SOURCE_SCHEMA],
                    "description": 'A model version: its number, "3" (or 3), or the logged agent it is registered '
                                   "from."}),
]
AliasVersion = Annotated[
    int | str, PlainValidator(_alias_version),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1}, _SOURCE_SCHEMA],
                    "description": "A model version: its number, or the logged agent it is registered from."}),
]
# Enum values the server knows can be newer than this release: the real server knows newer workload
# types than any SDK (SDK 0.156's `_enum()` turns unknown ones into None), and "additional custom
# workload sizes can also be used when available in the workspace" (ServedEntityInput.workload_size
# docstring). So these fields take any name: the schema suggests the known ones, checks.py refuses
# a known one in the wrong case and warns about the others (the server decides).
KNOWN_WORKLOAD_TYPES = ("CPU", "CPU_MEDIUM", "CPU_LARGE", "GPU_SMALL", "GPU_MEDIUM", "GPU_LARGE", "GPU_XLARGE",
                        "GPU_XLARGE_8", "MULTIGPU_MEDIUM")  # SDK 0.156 ServingModelWorkloadType
KNOWN_WORKLOAD_SIZES = ("Small", "Medium", "Large")  # ServedEntityInput.workload_size docstring
WORKLOAD_TYPE_NAME = r"^[A-Z][A-Z0-9_]*$"  # every workload type the API lists is an upper-case name
WORKLOAD_SIZE_NAME = r"^\S+$"  # custom sizes are the workspace's names: at least not empty, no spaces


def _open_enum(known: tuple[str, ...], pattern: str | None, description: str) -> WithJsonSchema:
    other: dict[str, Any] = {"type": "string", **({"pattern": pattern} if pattern else {})}
    return WithJsonSchema({"anyOf": [{"enum": list(known)}, other], "description": description})


WorkloadType = Annotated[str, _open_enum(KNOWN_WORKLOAD_TYPES, WORKLOAD_TYPE_NAME,
                                         "CPU (the default), GPU_SMALL, ...; a type newer than this release is "
                                         "sent as written.")]
WorkloadSize = Annotated[str, _open_enum(KNOWN_WORKLOAD_SIZES, WORKLOAD_SIZE_NAME,
                                         "Small, Medium or Large, or a custom size the workspace offers.")]
PermissionLevel = Literal["CAN_MANAGE", "CAN_QUERY", "CAN_VIEW"]


class Metadata(_Strict):
    name: str = Field(description="Model: catalog.schema.model. Endpoint: letters, digits, '-', '_' (max 63).")


class RegisteredModelSpec(_Strict):
    comment: str | None = None
    owner: str | None = None
    aliases: dict[str, AliasVersion] | None = Field(
        default=None,
        description="The complete set of aliases (alias → version number, or the logged agent to register: "
                    "models:/m-<id> or runs:/<run_id>/<path>). Leave out to leave aliases unmanaged; endpoints "
                    "may then use the workspace's aliases.")


class RegisteredModel(_Strict):
    api_version: Literal["reconciler/v1"] = Field(alias="apiVersion")
    kind: Literal["RegisteredModel"]
    metadata: Metadata
    spec: RegisteredModelSpec = RegisteredModelSpec()


class ServedEntity(_Strict):
    name: str | None = Field(default=None, description="Defaults to <model>-<version>, as the server does.")
    entity_name: str = Field(description="Unity Catalog model, catalog.schema.model")
    entity_version: EntityVersion | None = None
    alias: str | None = Field(default=None, description="Serve the version this alias points at (resolved at plan time).")
    workload_size: WorkloadSize | None = None
    workload_type: WorkloadType | None = None
    scale_to_zero_enabled: bool | None = Field(
        default=None, description="Required unless the entity is provisioned throughput (the API has no default).")
    min_provisioned_throughput: Annotated[int, Field(ge=0)] | None = None
    max_provisioned_throughput: Annotated[int, Field(ge=0)] | None = None
    min_provisioned_concurrency: Annotated[int, Field(ge=0)] | None = None
    max_provisioned_concurrency: Annotated[int, Field(ge=0)] | None = None
    provisioned_model_units: Annotated[int, Field(ge=0)] | None = None
    burst_scaling_enabled: bool | None = None
    environment_vars: dict[str, str] | None = Field(
        default=None, description="Values that are credentials must be {{secrets/scope/key}} references.")
    instance_profile_arn: str | None = None


class Route(_Strict):
    served_entity_name: str
    traffic_percentage: Annotated[int, Field(ge=0, le=100)]


class TrafficConfig(_Strict):
    routes: list[Route]


class InferenceTableConfig(_Strict):
    catalog_name: str | None = None
    schema_name: str | None = None
    table_name_prefix: str | None = None
    enabled: bool | None = None


class UsageTrackingConfig(_Strict):
    enabled: bool


class RateLimit(_Strict):
    calls: Annotated[int, Field(ge=0)] | None = None
    tokens: Annotated[int, Field(ge=0)] | None = None
    renewal_period: Literal["minute"] = "minute"
    key: Literal["endpoint", "user", "user_group", "service_principal"] | None = None
    principal: str | None = None


class PiiBehavior(_Strict):
    behavior: Literal["BLOCK", "MASK", "NONE"]


class GuardrailParameters(_Strict):
    pii: PiiBehavior | None = None
    safety: bool | None = None
    invalid_keywords: list[str] | None = None
    valid_topics: list[str] | None = None


class Guardrails(_Strict):
    input: GuardrailParameters | None = None
    output: GuardrailParameters | None = None


class FallbackConfig(_Strict):
    enabled: bool


class AiGateway(_Strict):
    inference_table_config: InferenceTableConfig | None = None
    usage_tracking_config: UsageTrackingConfig | None = None
    rate_limits: list[RateLimit] | None = None
    guardrails: Guardrails | None = None
    fallback_config: FallbackConfig | None = None


class AutoCaptureConfig(InferenceTableConfig):
    """Legacy inference tables: refused by validate (they can no longer be enabled); kept in the
    format so that the refusal can point at the block and say what to write instead."""


class Permission(_Strict):
    """One principal (exactly one of the three name fields) and its level."""

    user_name: str | None = None
    group_name: str | None = None
    service_principal_name: str | None = None
    permission_level: PermissionLevel


class Resources(_Strict):
    """What the agent uses at query time, by MLflow resource type (`mlflow.models.resources`)."""

    serving_endpoint: list[str] | None = None
    vector_search_index: list[str] | None = None
    sql_warehouse: list[str] | None = Field(default=None, description="warehouse ids")
    function: list[str] | None = None
    genie_space: list[str] | None = Field(default=None, description="space ids")
    table: list[str] | None = None
    uc_connection: list[str] | None = None
    app: list[str] | None = None
    lakebase: list[str] | None = None


# ---- rollouts (health-gated promotion; reconciler/rollout.py runs them) ---------------------------

DURATION_PATTERN = r"^[0-9]+(\.[0-9]+)?(s|m|h)$"
Duration = Annotated[str, Field(pattern=DURATION_PATTERN, description="A duration: 90s, 5m, 1h.")]


class DatabricksOptions(_Strict):
    return_trace: bool | None = Field(default=None, description="Ask for the MLflow trace in the answer.")


class SmokeRequest(_Strict):
    """What a smoke query sends: exactly one of `messages` (chat), `input` (Responses API) or `body`
    (a raw /invocations body), plus `custom_inputs` and `databricks_options`."""

    messages: list[dict[str, Any]] | None = None
    input: str | list[dict[str, Any]] | None = None
    body: dict[str, Any] | None = None
    custom_inputs: dict[str, Any] | None = None
    databricks_options: DatabricksOptions | None = None


class JsonCheck(_Strict):
    """One check of the answer's JSON at `path` ($.a.b[0]['c']): exactly one of exists, equals,
    contains (a substring, or an item of a list) or matches (a Python regular expression)."""

    path: str
    exists: bool | None = None
    equals: Any = None
    contains: Any = None
    matches: str | None = None


class SmokeExpect(_Strict):
    status: Annotated[int, Field(ge=100, le=599)] = 200
    max_latency_ms: Annotated[int, Field(ge=1)] | None = None
    json_checks: list[JsonCheck] | None = Field(default=None, alias="json")
    no_span_errors: bool = Field(default=True, description="With a trace in the answer, no span may be in error.")


class SmokeQuery(_Strict):
    name: str
    request: SmokeRequest
    expect: SmokeExpect = SmokeExpect()


class Analysis(_Strict):
    """Read from the metrics export, for the new served entity, during each pause."""

    max_error_rate: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="(4xx + 5xx) / requests during the pause.")
    max_p99_latency_ms: Annotated[float, Field(gt=0)] | None = None
    min_requests: Annotated[int, Field(ge=1)] = Field(default=50, description="Fewer: no verdict yet.")
    no_traffic: Literal["wait", "pass", "fail"] = Field(
        default="wait", description="Without min_requests by the end of a pause: wait for them up to "
                                    "no_traffic_timeout, then fail (wait, fail) or go on (pass).")
    no_traffic_timeout: Duration | None = Field(
        default=None, description="Default 30m with no_traffic: wait, 0s with pass or fail.")
    interval: Duration = Field(default="1m", description="How often the metrics are read during a pause "
                                                         "(real exports count the last minute).")


class Rollout(_Strict):
    smoke: list[SmokeQuery] | None = None
    steps: list[Annotated[int, Field(ge=1, le=100)]] | None = Field(
        default=None, description="Traffic percentages of the entity's share for the new version, in order, "
                                  "ending at 100. Without steps: smoke queries, then the final config.")
    pause: Duration = Field(default="5m", description="After each step, before the next.")
    analysis: Analysis | None = None
    on_failure: Literal["rollback", "keep"] = "rollback"


class ServingEndpointSpec(_Strict):
    served_entities: Annotated[list[ServedEntity], Field(min_length=1)]
    traffic_config: TrafficConfig | None = None
    auto_capture_config: AutoCaptureConfig | None = Field(
        default=None, json_schema_extra={"deprecated": True},
        description="Deprecated: legacy inference tables can no longer be enabled; use ai_gateway.inference_table_config.")
    ai_gateway: AiGateway | None = None
    tags: dict[str, str] | None = None
    permissions: list[Permission] | None = Field(
        default=None, description="The complete set of direct (not inherited) grants on the endpoint.")
    resources: Resources | None = None
    description: str | None = Field(default=None, description="Fixed at creation: a change replaces the endpoint.")
    route_optimized: bool | None = Field(default=None, description="Fixed at creation: a change replaces the endpoint.")
    rollout: Rollout | None = Field(
        default=None, description="Health-gated promotion when a served entity's version changes: smoke "
                                  "queries, traffic steps with metric analysis, automatic rollback.")


class ServingEndpoint(_Strict):
    api_version: Literal["reconciler/v1"] = Field(alias="apiVersion")
    kind: Literal["ServingEndpoint"]
    metadata: Metadata
    spec: ServingEndpointSpec


KINDS: dict[str, type[RegisteredModel] | type[ServingEndpoint] | type[Policy]] = {
    "RegisteredModel": RegisteredModel,
    "ServingEndpoint": ServingEndpoint,
    "Policy": Policy,  # rules the others must satisfy: policy_model.py
}

ManifestDocument = Annotated[RegisteredModel | ServingEndpoint | Policy, Field(discriminator="kind")]


def principal_of(permission: Permission) -> str:
    """`group_name:support-team`: the identity a permission is compared by."""
    for key in PRINCIPAL_KEYS:
        value = getattr(permission, key)
        if value is not None:
            return f"{key}:{value}"
    raise ValueError("permission names no principal")  # prevented by checks.py
