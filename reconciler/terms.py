"""The domain's shared terms: names and their grammar, ownership tags, secret references and
credentials, the server's default entity name, "update in progress" and principal keys.

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
OWN_TAGS = (MANAGED_BY_TAG, STACK_TAG)


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


# ---- principals ---------------------------------------------------------------------------------

PRINCIPAL_KEYS = ("user_name", "group_name", "service_principal_name")


def principal_key(entry: Mapping[str, Any]) -> str | None:
    """`group_name:support-team`: the identity a grant is compared by (first principal field set)."""
    key = next((k for k in PRINCIPAL_KEYS if entry.get(k)), None)
    return f"{key}:{entry[key]}" if key else None


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
}


def name_problem(kind: str, value: object) -> str | None:
    """Why `value` is not a valid `kind` name, or None. `..` and `.` are never names."""
    pattern, rule = GRAMMAR[kind]
    if not isinstance(value, str) or value in (".", "..") or not pattern.fullmatch(value):
        shown = repr(value)[:80]
        return f"{shown} is not a valid {kind} name ({rule})"
    return None


# ---- secrets and credentials --------------------------------------------------------------------

# Databricks only substitutes a secret when the whole value is exactly one reference.
SECRET_REF = re.compile(r"\{\{secrets/([A-Za-z0-9_.@-]{1,128})/([A-Za-z0-9_.-]{1,128})\}\}")
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
