"""The manifest format, as pydantic models: the single source of the JSON Schema and of validation.

Field names are the Databricks API's (snake_case, same names) wherever a field maps one to one,
so the API reference applies to manifests. The few conveniences: `tags` is a map, `aliases` is a
map, a served entity may name its version through `alias:`, a version may be written as the logged
agent it is registered from (`models:/m-<id>`, `runs:/<run_id>/<path>`), and `resources` lists what
the agent needs at query time by MLflow resource type.

`None` always means "not managed here": a field left out of a manifest is left as it is live.
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
WorkloadType = Literal["CPU", "CPU_MEDIUM", "CPU_LARGE", "GPU_SMALL", "GPU_MEDIUM", "GPU_LARGE",
                       "GPU_XLARGE", "GPU_XLARGE_8", "MULTIGPU_MEDIUM"]
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
    workload_size: Literal["Small", "Medium", "Large"] | None = None
    workload_type: WorkloadType | None = None
    scale_to_zero_enabled: bool | None = None
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
    """Legacy inference tables (prefer ai_gateway.inference_table_config): the same four fields."""


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


class ServingEndpointSpec(_Strict):
    served_entities: Annotated[list[ServedEntity], Field(min_length=1)]
    traffic_config: TrafficConfig | None = None
    auto_capture_config: AutoCaptureConfig | None = None
    ai_gateway: AiGateway | None = None
    tags: dict[str, str] | None = None
    permissions: list[Permission] | None = Field(
        default=None, description="The complete set of direct (not inherited) grants on the endpoint.")
    resources: Resources | None = None
    description: str | None = Field(default=None, description="Fixed at creation: a change replaces the endpoint.")
    route_optimized: bool | None = Field(default=None, description="Fixed at creation: a change replaces the endpoint.")


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
