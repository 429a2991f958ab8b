"""Offline cross-checks: what the schema alone cannot see, found before anything is read or written.

Each check returns problems positioned at the offending field, with the fix in the message.
Called by `load_manifests`; pure (no I/O).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from reconciler.errors import Problem
from reconciler.manifests.model import RegisteredModel, ServingEndpoint, principal_of
from reconciler.terms import (
    ALIAS_NAME,
    ENDPOINT_NAME,
    ENV_NAME,
    OWN_TAGS,
    PRINCIPAL_KEYS,
    RESERVED_ALIAS,
    SECRET_REF,
    SECRET_REF_ATTEMPT,
    UC_THREE_PART,
    default_entity_name,
    is_source,
    plain_credential,
)

if TYPE_CHECKING:  # the loader calls these checks; its types are only annotations here
    from reconciler.manifests.loader import Loaded, Manifests




def check_manifests(manifests: Manifests) -> list[Problem]:
    problems: list[Problem] = []
    for model in manifests.models.values():
        problems += _check_model(model)
    for endpoint in manifests.endpoints.values():
        problems += _check_endpoint(endpoint, manifests)
    return problems


def _check_model(loaded: Loaded[RegisteredModel]) -> list[Problem]:
    problems = []
    if not UC_THREE_PART.fullmatch(loaded.name):
        problems.append(loaded.problem(("metadata", "name"), _uc_name_message(loaded.name)))
    for alias in loaded.manifest.spec.aliases or {}:
        loc = ("spec", "aliases", alias)
        if not ALIAS_NAME.fullmatch(alias):
            suggestion = re.sub(r"[^A-Za-z0-9_]", "_", alias)
            problems.append(loaded.problem(loc, f"alias '{alias}' is invalid; use letters, digits and underscores "
                                                f"only (e.g. '{suggestion}')", key=True))
        elif RESERVED_ALIAS.fullmatch(alias):
            problems.append(loaded.problem(loc, f"alias '{alias}' is reserved by MLflow; choose another name", key=True))
    return problems


def _uc_name_message(name: str) -> str:
    if name.lower() != name and UC_THREE_PART.fullmatch(name.lower()):
        return f"'{name}': Unity Catalog stores names in lower case; write '{name.lower()}'"
    return f"'{name}' is not a Unity Catalog model name; write catalog.schema.model"



def _check_endpoint(loaded: Loaded[ServingEndpoint], manifests: Manifests) -> list[Problem]:
    spec = loaded.manifest.spec
    problems: list[Problem] = []
    if len(loaded.name) > 63:
        problems.append(loaded.problem(
            ("metadata", "name"),
            f"endpoint name '{loaded.name}' is {len(loaded.name)} characters long; shorten it to at most 63"))
    elif not ENDPOINT_NAME.fullmatch(loaded.name):
        problems.append(loaded.problem(
            ("metadata", "name"),
            f"endpoint name '{loaded.name}' is invalid; use letters, digits, '-' and '_' only"))
    names: dict[str, int] = {}
    for i, entity in enumerate(spec.served_entities):
        loc = ("spec", "served_entities", i)
        problems += _check_entity(loaded, i, manifests)
        if entity.name is None and is_source(entity.entity_version):
            problems.append(loaded.problem(loc, "served entity serves a version by the logged agent it is registered "
                                                "from, so its default name (<model>-<version>) is not known until "
                                                "apply; give it a name (e.g. name: challenger)"))
            continue
        name = entity.name or (default_entity_name(entity.entity_name, entity.entity_version)
                               if entity.entity_version else None)
        if name is None:
            continue
        if name in names:
            default = "" if entity.name else " (the default name, <model>-<version>)"
            problems.append(loaded.problem(loc + (("name",) if entity.name else ()),
                                           f"served entity name '{name}'{default} is used twice; give each "
                                           "entity its own name"))
        names[name] = i
    problems += _check_traffic(loaded, names)
    for key in spec.tags or {}:
        if key in OWN_TAGS:
            problems.append(loaded.problem(("spec", "tags", key),
                                           f"tag '{key}' is set by the reconciler itself; remove it", key=True))
    seen: dict[str, int] = {}
    for i, permission in enumerate(spec.permissions or []):
        loc = ("spec", "permissions", i)
        given = [k for k in PRINCIPAL_KEYS if getattr(permission, k) is not None]
        if not given:
            problems.append(loaded.problem(loc, "permission names no principal; add one of user_name, group_name "
                                                "or service_principal_name"))
            continue
        if len(given) > 1:
            problems.append(loaded.problem(loc + (given[1],), f"permission names both {given[0]} and {given[1]}; "
                                                              "write one entry per principal"))
            continue
        principal = principal_of(permission)
        if principal in seen:
            first = loaded.source.position(("spec", "permissions", seen[principal]))
            problems.append(loaded.problem(loc, f"{principal.replace(':', ' ')} is listed twice (first at line "
                                                f"{first.line}); give each principal one permission_level"))
            continue
        seen[principal] = i
    return problems


def _check_entity(loaded: Loaded[ServingEndpoint], i: int, manifests: Manifests) -> list[Problem]:
    entity = loaded.manifest.spec.served_entities[i]
    loc = ("spec", "served_entities", i)
    problems = []
    if not UC_THREE_PART.fullmatch(entity.entity_name):
        problems.append(loaded.problem(loc + ("entity_name",), _uc_name_message(entity.entity_name)))
    if entity.alias is not None and entity.entity_version is not None:
        problems.append(loaded.problem(loc + ("alias",), "served entity sets both alias and entity_version; keep "
                                                         "one (alias follows the alias, entity_version pins a "
                                                         "version)"))
    elif entity.alias is None and entity.entity_version is None:
        problems.append(loaded.problem(loc, "served entity names no model version; add alias: <name> (e.g. alias: champion) "
                                            'or entity_version: "<number>"'))
    elif entity.alias is not None:
        model = manifests.models.get(entity.entity_name)
        if model is None and entity.entity_name in manifests.invalid_models:
            pass  # its manifest has problems of its own, already reported
        elif model is None:
            problems.append(loaded.problem(
                loc + ("alias",),
                f"alias '{entity.alias}' of model '{entity.entity_name}' is not defined by any manifest; add a "
                "RegisteredModel manifest for it with this alias, or one without `aliases` to use the "
                "workspace's aliases"))
        elif model.manifest.spec.aliases is not None and entity.alias not in model.manifest.spec.aliases:
            defined = ", ".join(model.manifest.spec.aliases) or "none"
            problems.append(loaded.problem(
                loc + ("alias",),
                f"model '{entity.entity_name}' has no alias '{entity.alias}' (its manifest defines: {defined}); "
                f"add it to that model's aliases or use another"))
    for key, value in (entity.environment_vars or {}).items():
        env_loc = loc + ("environment_vars", key)
        if not ENV_NAME.fullmatch(key):
            problems.append(loaded.problem(env_loc, f"environment variable name '{key}' is invalid; use letters, "
                                                    "digits and '_' and do not start with a digit", key=True))
        if SECRET_REF_ATTEMPT.search(value) and not SECRET_REF.fullmatch(value):
            problems.append(loaded.problem(env_loc, f"environment variable '{key}': malformed secret reference; "
                                                    "the whole value must be {{secrets/<scope>/<key>}}"))
        elif plain_credential(key, value):
            problems.append(loaded.problem(env_loc, f"environment variable '{key}' looks like a credential but "
                                                    "holds a plain value; store it in a secret scope and write "
                                                    "{{secrets/<scope>/<key>}}"))
    return problems


def _check_traffic(loaded: Loaded[ServingEndpoint], names: dict[str, int]) -> list[Problem]:
    spec = loaded.manifest.spec
    if spec.traffic_config is None:
        if len(spec.served_entities) > 1:
            return [loaded.problem(("spec", "served_entities"),
                                   "traffic_config is required when an endpoint serves more than one entity; add "
                                   "traffic_config.routes with each served entity's traffic_percentage")]
        return []
    problems = []
    routes = spec.traffic_config.routes
    loc = ("spec", "traffic_config", "routes")
    if not routes:
        return [loaded.problem(loc, "traffic_config.routes is empty; route 100% of traffic to the served entities")]
    total = sum(r.traffic_percentage for r in routes)
    if total != 100:
        problems.append(loaded.problem(loc, f"traffic percentages add up to {total}, not 100; change them so "
                                            "they add up to 100"))
    routed: set[str] = set()
    for i, route in enumerate(routes):
        if route.served_entity_name in routed:
            problems.append(loaded.problem(loc + (i, "served_entity_name"),
                                           f"served entity '{route.served_entity_name}' has two routes; merge them"))
        routed.add(route.served_entity_name)
        if route.served_entity_name not in names:
            known = ", ".join(names) or "none (give the served entities a `name`)"
            problems.append(loaded.problem(loc + (i, "served_entity_name"),
                                           f"route names served entity '{route.served_entity_name}', which this "
                                           f"endpoint does not have; known: {known}"))
    return problems
