"""The domain's shared terms: names and their grammar, ownership tags, secret references and
credentials, the server's default entity name, "update in progress", principal keys, and the URIs
that name a model version by the logged agent it is registered from.

Pure and import-light (only `re`; detect-secrets is imported by `plain_credential` only for the values
its own rules leave open), so every layer may use it: the manifest checks, the
normaliser, the planner, the executor, export, and `workspace.py`, which checks every name
against its grammar before it reaches a request path (a name from a manifest, a plan file, a
variable or a server answer is never trusted to be what it claims).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# ---- ownership -------------------------------------------------------------------------------

MANAGED_BY_TAG = "managed-by"
MANAGED_BY_VALUE = "reconciler"
STACK_TAG = "reconciler-stack"
# An unfinished rollout's marker (reconciler/rollout.py): the reconciler's own, never a diff.
ROLLOUT_TAG = "reconciler-rollout"
OWN_TAGS = (MANAGED_BY_TAG, STACK_TAG, ROLLOUT_TAG)


def own_tags(stack: str | None) -> dict[str, str]:
    """The tags that mark an endpoint as the reconciler's (ownership without a state file)."""
    return {MANAGED_BY_TAG: MANAGED_BY_VALUE, **({STACK_TAG: stack} if stack else {})}


def tag_map(api: Mapping[str, Any]) -> dict[str, str]:
    """An endpoint's tags (the API's `[{key, value}]`) as a map."""
    return {t["key"]: t.get("value") or "" for t in api.get("tags") or [] if isinstance(t, dict) and "key" in t}


def managed(api: Mapping[str, Any]) -> bool:
    return tag_map(api).get(MANAGED_BY_TAG) == MANAGED_BY_VALUE


def owned_by_stack(api: Mapping[str, Any], stack: str | None) -> bool:
    """Managed by the reconciler and by this stack: the only endpoints --prune may delete."""
    tags = tag_map(api)
    return tags.get(MANAGED_BY_TAG) == MANAGED_BY_VALUE and tags.get(STACK_TAG) == (stack or None)


# ---- endpoint state ----------------------------------------------------------------------------

def updating(api: Mapping[str, Any] | None) -> bool:
    """A config update is in flight: the API refuses another one until it ends (409)."""
    return ((api or {}).get("state") or {}).get("config_update") == "IN_PROGRESS"


def update_failed(api: Mapping[str, Any] | None) -> bool:
    """The last config update failed: the endpoint serves its previous config (`config`)."""
    return ((api or {}).get("state") or {}).get("config_update") == "UPDATE_FAILED"


# What an agent is: MLflow writes the MLmodel `metadata.task` `agent/v1/chat` (ChatModel),
# `agent/v2/chat` (ChatAgent) or `agent/v1/responses` (ResponsesAgent) (`mlflow/pyfunc/__init__.py`);
# databricks-agents 1.13 treats a model whose task starts with `agent/` as an agent
# (`utils/mlflow_utils.py`, `_check_model_is_agent`) and an endpoint whose `task` matches
# `agent/v\d+/chat` as an agent endpoint (`rag_eval/evaluation/models.py`); the server sets the
# endpoint's `task` (create has no such parameter).
AGENT_TASK = re.compile(r"agent/v\d+/(chat|responses)")


def agent_task(mlmodel: Mapping[str, Any] | None) -> str | None:
    """The agent task an MLmodel was logged with (its `metadata.task`), or None."""
    metadata = (mlmodel or {}).get("metadata")
    task = metadata.get("task") if isinstance(metadata, Mapping) else None
    return task if isinstance(task, str) and AGENT_TASK.match(task) else None


# ---- principals ---------------------------------------------------------------------------------

PRINCIPAL_KEYS = ("user_name", "group_name", "service_principal_name")
# The keys an identity (who creates or deploys: a user or a service principal, never a group) holds grants by.
IDENTITY_KEYS = ("user_name", "service_principal_name")


def principal_key(entry: Mapping[str, Any]) -> str | None:
    """`group_name:support-team`: the identity a grant is compared by (first principal field set)."""
    key = next((k for k in PRINCIPAL_KEYS if entry.get(k)), None)
    return f"{key}:{entry[key]}" if key else None


def identity_principal(name: str) -> str:
    """The ACL key (`principal_key`) of an identity named as SCIM `userName` gives it."""
    return f"service_principal_name:{name}" if UUID.fullmatch(name) else f"user_name:{name}"


# ---- names and their grammar --------------------------------------------------------------------

# Serving endpoint names: "alphanumeric characters, dashes, and underscores", at most 63 characters
# (REST reference, serving endpoint "name": Constraints [ 1 .. 63 ] characters).
ENDPOINT_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")
# Served entity names: "alphanumeric characters, dashes, and underscores" (ServedEntityInput.name).
ENTITY_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")
# Unity Catalog stores identifiers in lower case; a mixed-case name would never match what the
# workspace returns and would show a change on every plan. (Manifests are held to this.)
UC_PART = r"[a-z0-9_][a-z0-9_-]*"
UC_THREE_PART = re.compile(rf"{UC_PART}\.{UC_PART}\.{UC_PART}")
# What Unity Catalog itself refuses in any identifier: periods (they separate the parts), spaces,
# forward slashes and control characters ("Names ... cannot contain a period, space, forward slash
# or control characters", Unity Catalog naming rules); 255 characters at most. Server answers are
# held to this looser rule: a workspace may hold names our manifests would not write.
UC_API_PART = r"[^.\s/\x00-\x1f\x7f]{1,255}"
UC_API_THREE_PART = re.compile(rf"{UC_API_PART}\.{UC_API_PART}\.{UC_API_PART}")
# Model alias names: letters, digits and underscores; MLflow reserves `latest` and `v<number>`.
ALIAS_NAME = re.compile(r"[A-Za-z0-9_]{1,255}")
RESERVED_ALIAS = re.compile(r"latest|[vV][0-9]+", re.IGNORECASE)
VERSION_NUMBER = re.compile(r"[1-9][0-9]{0,17}")
# Secret scopes: "alphanumeric characters, dashes, underscores, @, and periods", at most 128
# characters (Secrets API, create scope); keys the same without @.
SCOPE_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,128}")
SECRET_KEY = re.compile(r"[A-Za-z0-9_.-]{1,128}")
# Stacks name a lease file and a tag value: ours to define, kept to a safe file-name alphabet.
STACK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
# Endpoint ids (the Permissions API key) are hex in every real answer; any other id is refused.
ENDPOINT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Workspace paths (the apply lock's lease file): absolute, '/'-separated, each segment non-empty and
# free of control characters. `.` and `..` segments are refused by `name_problem`'s own rule below
# (real workspaces refuse them, localworkspace/workspace_files.py `check_path`): never resolved.
WORKSPACE_PATH = re.compile(r"(/[^/\x00-\x1f\x7f]{1,255}){1,32}")
# A service principal is named by its application id, a UUID; a user by its e-mail. The Databricks
# CLI tells them apart the same way (databricks/cli libs/iamutil/service_principal.go,
# `IsServicePrincipalName`: "if the user name is a UUID, then we assume it's a service principal").
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# User names are e-mail addresses; held to a conservative alphabet, since they become ACL entries.
USER_NAME = re.compile(r"[A-Za-z0-9._%+'-]{1,128}@[A-Za-z0-9.-]{1,253}")

# ---- model versions named by what MLflow logged ------------------------------------------------------

# A version may be written as the logged agent it is registered from, in the URIs MLflow prints:
# `models:/m-<id>` (MLflow 3 logged models: "m-" and a uuid4's 32 hex digits, `mlflow/store/
# tracking/sqlalchemy_store.py` create_logged_model) or `runs:/<run_id>/<artifact path>` (run ids are
# uuid4 hex, `sqlalchemy_store.py` create_run; the form `RunsArtifactRepository.parse_runs_uri`
# reads). `models:/<name>/<version>` names a registered version, which manifests write as its number.
RUN_ID = re.compile(r"[0-9a-f]{32}")
LOGGED_MODEL_ID = re.compile(r"m-[0-9a-f]{32}")
EXPERIMENT_ID = re.compile(r"[0-9]{1,19}")
ARTIFACT_PATH = re.compile(r"(?!\.{1,2}(/|$))[A-Za-z0-9_.-]+(/(?!\.{1,2}(/|$))[A-Za-z0-9_.-]+)*")
SOURCE = re.compile(rf"models:/(?P<model_id>{LOGGED_MODEL_ID.pattern})"
                    rf"|runs:/(?P<run_id>{RUN_ID.pattern})/(?P<path>{ARTIFACT_PATH.pattern})")
SOURCE_FORMS = "models:/m-<id> or runs:/<run_id>/<artifact path>"


def is_source(version: object) -> bool:
    """True when `version` names a version by the logged agent it is registered from."""
    return isinstance(version, str) and SOURCE.fullmatch(version) is not None


def version_label(version: object) -> str:
    """How an operation names a version: `v3`, or the logged agent a new one is registered from."""
    return str(version) if is_source(version) else f"v{version}"


GRAMMAR: dict[str, tuple[re.Pattern[str], str]] = {
    "endpoint": (ENDPOINT_NAME, "letters, digits, '-' and '_', at most 63 characters"),
    "served entity": (ENTITY_NAME, "letters, digits, '-' and '_', at most 63 characters"),
    "model": (UC_API_THREE_PART, "catalog.schema.model, without spaces, slashes or control characters"),
    "alias": (ALIAS_NAME, "letters, digits and '_'"),
    "version": (VERSION_NUMBER, "a version number"),
    "secret scope": (SCOPE_NAME, "letters, digits, '-', '_', '.' and '@', at most 128 characters"),
    "secret key": (SECRET_KEY, "letters, digits, '-', '_' and '.', at most 128 characters"),
    "stack": (STACK_NAME, "letters, digits, '-', '_' and '.', not starting with '.', at most 64 characters"),
    "endpoint id": (ENDPOINT_ID, "an endpoint id"),
    "run": (RUN_ID, "an MLflow run id, 32 hex digits"),
    "logged model": (LOGGED_MODEL_ID, "an MLflow logged model id, m- and 32 hex digits"),
    "experiment": (EXPERIMENT_ID, "an MLflow experiment id, digits"),
    "artifact path": (ARTIFACT_PATH, "a relative path of letters, digits, '-', '_' and '.'"),
    "workspace path": (WORKSPACE_PATH, "an absolute workspace path without '.' or '..' segments"),
    "identity": (re.compile(f"{UUID.pattern}|{USER_NAME.pattern}"),
                 "a user's e-mail or a service principal's application id"),
    # A model version named by the logged agent it is registered from (kinds/model_version.py).
    "model version": (re.compile(f"{UC_API_THREE_PART.pattern}@(?:{SOURCE.pattern})"),
                      "catalog.schema.model@ the URI MLflow printed (models:/m-... or runs:/<run id>/<path>)"),
}


def name_problem(kind: str, value: object) -> str | None:
    """Why `value` is not a valid `kind` name, or None. `..` and `.` are never names."""
    pattern, rule = GRAMMAR[kind]
    dots = isinstance(value, str) and (value in (".", "..") or (kind == "workspace path" and any(
        part in (".", "..") for part in value.split("/"))))
    if not isinstance(value, str) or dots or not pattern.fullmatch(value):
        shown = repr(value)[:80]
        noun = kind if kind in ("workspace path", "identity") else f"{kind} name"
        return f"{shown} is not a valid {noun} ({rule})"
    return None


# ---- secrets and credentials --------------------------------------------------------------------

# Databricks only substitutes a secret when the whole value is exactly one reference. A scope or key
# of `.` or `..` is no name (it would be a path segment elsewhere): not a reference.
SECRET_REF = re.compile(r"\{\{secrets/(?!\.\.?/)([A-Za-z0-9_.@-]{1,128})/(?!\.\.?\}\})([A-Za-z0-9_.-]{1,128})\}\}")
SECRET_LOOKING_NAME = re.compile(r".*_KEY|.*TOKEN.*|.*SECRET.*|.*PASSWORD.*", re.IGNORECASE)
SETTING_VALUE = re.compile(r"-?[0-9]+(\.[0-9]+)?|true|false|yes|no|on|off", re.IGNORECASE)
# Values shaped like well-known credentials, whatever their variable is called: OpenAI-style keys
# (sk-...), Databricks personal access tokens (dapi + 32 hex, Azure's with a -N suffix) and OAuth
# secrets (dose + letters and digits; google/osv-scalibr#1720, #1721 describe both; detect-secrets
# has no Databricks detector), GitHub and Slack tokens, AWS access key ids, Google API keys, JWTs,
# and URLs carrying a password (scheme://user:password@host). `redact.detected` adds the maintained
# detectors of detect-secrets on top of these.
CREDENTIAL_VALUE = re.compile(
    r"\bsk-[A-Za-z0-9_-]{16,}|\bdapi[0-9a-f]{32}(-[0-9]+)?|\bdose[A-Za-z0-9]{28,}|\bgh[pousr]_[A-Za-z0-9]{30,}"
    r"|\bgithub_pat_\w{20,}|\bxox[abprs]-[A-Za-z0-9-]{10,}|\bAKIA[0-9A-Z]{16}\b|\bAIza[0-9A-Za-z_-]{35}"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.|\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@")
# Something meant as a secret reference: `{{secrets/`, `{{ secrets/`, `{secrets/`...
SECRET_REF_ATTEMPT = re.compile(r"\{+\s*secrets\s*/", re.IGNORECASE)


def plain_credential(name: str, value: str) -> bool:
    """A value that is a credential, by its variable's name or by its own shape, and is not a
    `{{secrets/...}}` reference: refused in manifests, never printed nor exported. The name and
    shape rules here decide most values cheaply; the rest go to detect-secrets (`redact.detected`)."""
    if SECRET_REF.fullmatch(value):
        return False
    if SETTING_VALUE.fullmatch(value):
        return False  # MAX_TOKENS: "1024" is a setting: a number or a boolean is never a credential
    if SECRET_LOOKING_NAME.fullmatch(name) is not None or CREDENTIAL_VALUE.search(value) is not None:
        return True
    from reconciler.redact import detected  # detect-secrets, imported only for values these rules left open

    return detected(name, value)


# ---- server defaults ------------------------------------------------------------------------------

def default_entity_name(entity_name: str, version: str) -> str:
    """The name the server gives a served entity that has none: `<short model name>-<version>`
    (Model Serving API: "defaults to entity_name-entity_version"; for Unity Catalog models real
    answers use the part after the last dot: shared/reference/real-api/DEFAULTS.md B1)."""
    return f"{entity_name.rsplit('.', 1)[-1]}-{version}"
