"""The `Policy` document: rules in CEL that manifests (and, at plan time, live objects) must satisfy.

A platform team writes what production requires (tracing on, an inference table, no scale to
zero, no CAN_MANAGE for everyone) once, as data next to the manifests, and `validate` and `plan`
enforce it. The shape follows Kubernetes' ValidatingAdmissionPolicy, where CEL rules come from:
`match` is its `matchConstraints` (which objects), `rules` its `validations` (`expression`,
`message`, `messageExpression`, `fieldPath`), `severity` its Deny/Warn validation actions. Field
names are snake_case like the rest of the format.

Only the format lives here (pydantic, the same strict conventions as model.py, which lists this
kind among the others); reconciler/policy.py compiles and evaluates it. Kept apart from model.py
so that module never depends on this one's details, and this one stays importable on its own.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# The kinds a policy can match (a policy never applies to another policy).
PolicyTarget = Literal["RegisteredModel", "ServingEndpoint"]


class _Strict(BaseModel):
    # As model.py's _Strict: no coercion, no unknown fields, immutable.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PolicyMetadata(_Strict):
    name: str = Field(min_length=1, description="The policy's name, printed with each violation.")


class Match(_Strict):
    """Which documents the rules apply to: all criteria given must hold; within one, any entry."""

    kinds: Annotated[list[PolicyTarget], Field(min_length=1)] = Field(
        description="RegisteredModel and/or ServingEndpoint.")
    names: list[str] | None = Field(
        default=None, description="Patterns for metadata.name (* any text, ? one character, [abc]); any may match.")
    stacks: list[str] | None = Field(
        default=None, description="Stack names (--stack or RECONCILER_STACK); any may match. Left out: every "
                                  "stack, and runs without one.")
    tags: dict[str, str] | None = Field(
        default=None, description="Tags the manifest must set, every one to this value (models have no tags, "
                                  "so a policy with tags matches endpoints only).")


class Rule(_Strict):
    name: str = Field(min_length=1, description="Unique within the policy; printed with each violation.")
    expression: str = Field(
        min_length=1, description="CEL that is true when the document complies. Variables: object (the document), "
                                  "live (the live object in the same shape; null at validate time), stack (string "
                                  "or null), served (served entity name → its model version's MLmodel facts; "
                                  "empty at validate time).")
    message: str | None = Field(default=None, description="What is wrong and how to fix it.")
    message_expression: str | None = Field(
        default=None, description="CEL returning the message (a string), for messages that name values; if it "
                                  "fails, `message` is used.")
    severity: Literal["error", "warning"] = Field(
        default="error", description="error: validate and plan fail. warning: printed, nothing fails.")
    field_path: str | None = Field(
        default=None, description="Where violations point, e.g. spec.ai_gateway or spec.served_entities[0] (default: "
                                  "metadata.name); the nearest written parent when the field is left out.")


class PolicySpec(_Strict):
    description: str | None = None
    match: Match
    rules: Annotated[list[Rule], Field(min_length=1)]


class Policy(_Strict):
    api_version: Literal["reconciler/v1"] = Field(alias="apiVersion")
    kind: Literal["Policy"]
    metadata: PolicyMetadata
    spec: PolicySpec
