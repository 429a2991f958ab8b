"""Offline cross-checks: what the schema alone cannot see, found before anything is read or written.

Each check returns problems positioned at the offending field, with the fix in the message.
Called by `load_manifests`; pure (no I/O).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from reconciler.errors import Problem
from reconciler.manifests.model import (
    KNOWN_WORKLOAD_SIZES,
    KNOWN_WORKLOAD_TYPES,
    WORKLOAD_SIZE_NAME,
    WORKLOAD_TYPE_NAME,
    RegisteredModel,
    ServingEndpoint,
    principal_of,
)
from reconciler.normalize import Semantics, rules
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

# Open enums (model.py): the values this release knows, by served entity field.
KNOWN_VALUES = {"workload_type": KNOWN_WORKLOAD_TYPES, "workload_size": KNOWN_WORKLOAD_SIZES}


def check_manifests(manifests: Manifests) -> list[Problem]:
    problems: list[Problem] = []
    for model in manifests.models.values():
        problems += _check_model(model)
    for endpoint in manifests.endpoints.values():
        problems += _check_endpoint(endpoint, manifests)
    return problems


def check_warnings(manifests: Manifests) -> list[Problem]:
    """What validate (and plan) print as warnings: enum values this release does not know. The
    server decides; they are sent as written."""
    warnings = []
    for loaded in manifests.endpoints.values():
        for i, entity in enumerate(loaded.manifest.spec.served_entities):
            for key, known in KNOWN_VALUES.items():
                value = getattr(entity, key)
                if value is not None and _enum_problem(key, value) is None and value not in known:
                    warnings.append(loaded.problem(
                        ("spec", "served_entities", i, key),
                        f"{key} '{value}' is not one this release knows ({', '.join(known)}); it is sent as "
                        "written and the workspace decides: check the spelling, or ignore this if the workspace "
                        "offers it"))
    return warnings


def _enum_problem(key: str, value: str) -> str | None:
    """An open enum's value that is wrong whatever the server knows: a known one in the wrong case,
    or (workload types) not an upper-case name at all."""
    known = KNOWN_VALUES[key]
    if value in known:
        return None
    same = [k for k in known if k.lower() == value.lower()]
    if same:
        return f"{key} '{value}' is written in the wrong case; did you mean '{same[0]}'?"
    if key == "workload_type" and not re.fullmatch(WORKLOAD_TYPE_NAME, value):
        return (f"{key} '{value}' is not a workload type name (upper-case letters, digits and '_'); use one of "
                f"{', '.join(known)}")
    if key == "workload_size" and not re.fullmatch(WORKLOAD_SIZE_NAME, value):
        return (f"{key} '{value}' is not a size name (empty, or with spaces); use one of {', '.join(known)}, or a "
                "custom size the workspace offers")
    return None


def _field_rule_problems(loaded: Loaded[ServingEndpoint], i: int) -> list[Problem]:
    """The field-semantics table's rows for one served entity (normalize.FIELD_RULES): fields it
    must state, fields it cannot state together, and the open enums' values. One problem per
    field: the first row that fails it."""
    entity = loaded.manifest.spec.served_entities[i]
    fields = entity.model_dump(exclude_none=True)
    label = f"served entity '{entity.name}'" if entity.name else f"served_entities[{i}]"
    loc = ("spec", "served_entities", i)
    found: dict[str, Problem] = {}
    for rule in rules(Semantics.EXCLUSIVE, fields):
        key = rule.entity_field or ""
        others = [other for other in rule.others if other in fields]
        if key in fields and others:
            found.setdefault(key, loaded.problem(loc + (key,), f"{label} sets both {key} and {others[0]}; {rule.fix}"))
    for rule in rules(Semantics.REQUIRED, fields):
        key = rule.entity_field or ""
        if key not in fields:
            found.setdefault(key, loaded.problem(loc, f"{label} leaves out {key}, which has no default in the API; "
                                                      f"{rule.fix}"))
    for key in KNOWN_VALUES:
        message = _enum_problem(key, fields[key]) if key in fields else None
        if message:
            found.setdefault(key, loaded.problem(loc + (key,), message))
    return sorted(found.values(), key=lambda p: (p.line or 0, p.col or 0))


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
        problems += _field_rule_problems(loaded, i)
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
    if spec.rollout is not None:
        problems += _check_rollout(loaded)
    for rule in rules(Semantics.DEPRECATED):
        if rule.field in spec.model_fields_set and getattr(spec, rule.field, None) is not None:
            problems.append(loaded.problem(("spec", rule.field), f"{rule.field} is deprecated: {rule.fix}", key=True))
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


def _check_rollout(loaded: Loaded[ServingEndpoint]) -> list[Problem]:
    """`spec.rollout` (reconciler/rollout.py runs it): steps that climb to 100, smoke queries that
    can be sent and checked, an analysis that judges something."""
    from reconciler import smoke

    rollout = loaded.manifest.spec.rollout
    assert rollout is not None
    loc = ("spec", "rollout")
    problems = []
    steps = rollout.steps or []
    if not steps and not rollout.smoke:
        problems.append(loaded.problem(loc, "rollout has neither smoke queries nor steps; add smoke: or steps: "
                                            "(e.g. steps: [10, 50, 100]), or remove rollout"))
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        problems.append(loaded.problem(loc + ("steps",), "rollout steps do not increase; list them in order, e.g. [10, 50, 100]"))
    elif steps and steps[-1] != 100:
        problems.append(loaded.problem(loc + ("steps",), f"the last rollout step is {steps[-1]}; end the steps "
                                                         "at 100 (the new version's whole share)"))
    if rollout.analysis is not None and rollout.analysis.max_error_rate is None and \
            rollout.analysis.max_p99_latency_ms is None:
        problems.append(loaded.problem(loc + ("analysis",), "analysis has no threshold; set max_error_rate and/or "
                                                            "max_p99_latency_ms"))
    if rollout.analysis is not None and not steps:
        problems.append(loaded.problem(loc + ("analysis",), "analysis runs between traffic steps, and this "
                                                            "rollout has none; add steps: (e.g. [10, 50, 100])"))
    seen: set[str] = set()
    for i, query in enumerate(rollout.smoke or []):
        at = loc + ("smoke", i)
        if query.name in seen:
            problems.append(loaded.problem(at + ("name",), f"smoke query name '{query.name}' is used twice; give each its own name"))
        seen.add(query.name)
        request = query.request
        given = [k for k in ("messages", "input", "body") if getattr(request, k) is not None]
        if len(given) != 1:
            problems.append(loaded.problem(at + ("request",), "a smoke request needs exactly one of messages "
                                                              f"(chat), input (Responses) or body (raw /invocations); "
                                                              f"it has {', '.join(given) or 'none'}"))
        if request.body is not None and request.body.get("stream"):
            problems.append(loaded.problem(at + ("request", "body", "stream"), "smoke queries are not streamed; "
                                                                               "remove stream"))
        for j, check in enumerate(query.expect.json_checks or []):
            check_loc = at + ("expect", "json", j)
            ops = [op for op in smoke.OPERATORS if op in check.model_fields_set]
            if len(ops) != 1:
                problems.append(loaded.problem(check_loc, "a JSON check needs exactly one of exists, equals, contains "
                                                          f"or matches; it has {', '.join(ops) or 'none'}"))
                continue
            problem = smoke.check_problem({"path": check.path, "op": ops[0], "value": getattr(check, ops[0])})
            if problem:
                problems.append(loaded.problem(check_loc + (problem[0],), problem[1]))
    return problems
