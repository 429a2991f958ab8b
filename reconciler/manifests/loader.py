"""Loads manifest files and directories into validated documents that remember their source.

Called by every command that reads manifests (validate, plan, apply). Reports every problem in
all files at once, each as `path:line:col: message; fix`, and raises only at the end.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from reconciler.errors import Problem, ReconcilerError
from reconciler.files import Unreadable, read_regular
from reconciler.manifests.checks import check_manifests, check_warnings
from reconciler.manifests.model import API_VERSION, DURATION_PATTERN, KINDS, RegisteredModel, ServingEndpoint
from reconciler.manifests.policy_model import Policy
from reconciler.manifests.yamlsource import MAX_FILE_BYTES, Loc, Position, SourceDocument, read_documents
from reconciler.terms import SETTING_VALUE

T = TypeVar("T", RegisteredModel, ServingEndpoint, Policy)
SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """A validated manifest and the YAML document it came from (for error positions)."""

    manifest: T
    source: SourceDocument

    @property
    def name(self) -> str:
        return self.manifest.metadata.name

    def problem(self, loc: Loc, message: str, *, key: bool = False) -> Problem:
        return self.source.problem(loc, message, key=key)


@dataclass
class Manifests:
    models: dict[str, Loaded[RegisteredModel]] = field(default_factory=dict)
    endpoints: dict[str, Loaded[ServingEndpoint]] = field(default_factory=dict)
    policies: dict[str, Loaded[Policy]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)  # file -> sha256 of the bytes loaded from it
    # Printed, never fatal: enum values this release does not know (checks.check_warnings) and
    # broken warning-severity policy rules (reconciler/policy.py).
    warnings: list[Problem] = field(default_factory=list)
    # Names of RegisteredModel documents that failed validation: cross-checks must not then claim
    # that nothing defines them (the real problem is already reported).
    invalid_models: set[str] = field(default_factory=set)

    @property
    def count(self) -> int:
        return len(self.models) + len(self.endpoints)


def collect_files(paths: Sequence[str], problems: list[Problem]) -> list[str]:
    """YAML files named directly, or found (sorted, hidden entries skipped) under directories."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = []
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [os.path.join(root, n) for n in sorted(names)
                          if n.endswith(SUFFIXES) and not n.startswith(".")]
            if not found:
                problems.append(Problem("no manifest files (*.yaml, *.yml) under this directory", path=path))
            files += found
        elif os.path.exists(path):
            files.append(path)
        else:
            problems.append(Problem("no such file or directory", path=path))
    return list(dict.fromkeys(files))


def load_manifests(paths: Sequence[str], variables: Mapping[str, str], *, stack: str | None = None,
                   texts: Mapping[str, str] | None = None) -> Manifests:
    """`stack` (--stack) is what policies that match on stacks compare with. `texts` are manifests
    given as YAML strings (the Python API), by the name their problems are reported at."""
    problems: list[Problem] = []
    manifests = Manifests(files=collect_files(paths, problems) if paths else [])
    given = {name: text.encode("utf-8") for name, text in (texts or {}).items()}
    for path in [*manifests.files, *given]:
        try:
            raw = given[path] if path in given else read_regular(path, limit=MAX_FILE_BYTES)
        except Unreadable as exc:
            message = f"file is {exc.size / 1048576:.1f} MiB; manifest files over {MAX_FILE_BYTES // 1048576} MiB " \
                      "are refused (split it)" if exc.size else f"{exc}; name manifest files (*.yaml, *.yml)"
            problems.append(Problem(message, path=path, line=1, col=1))
            continue
        except OSError as exc:
            problems.append(Problem(f"cannot read file: {exc.strerror}", path=path, line=1, col=1))
            continue
        if path not in given:
            manifests.digests[path] = hashlib.sha256(raw).hexdigest()
        for source in read_documents(path, raw, variables, problems):
            loaded = _validate(source, problems)
            if loaded is None:
                data = source.data
                if isinstance(data, dict) and data.get("kind") == "RegisteredModel" \
                        and isinstance(data.get("metadata"), dict) and isinstance(data["metadata"].get("name"), str):
                    manifests.invalid_models.add(data["metadata"]["name"])
                continue
            tables: dict[str, dict[str, Any]] = {"RegisteredModel": manifests.models,
                                                 "ServingEndpoint": manifests.endpoints, "Policy": manifests.policies}
            table = tables[loaded.manifest.kind]
            first = table.get(loaded.name)
            if first is not None:
                where = first.source.position(("metadata", "name"))
                problems.append(loaded.problem(
                    ("metadata", "name"),
                    f"duplicate {loaded.manifest.kind} '{loaded.name}' (also defined at {first.source.path}:"
                    f"{where.line}:{where.col}); keep one"))
                continue
            table[loaded.name] = loaded
    # A value already reported while reading the YAML (an undefined variable, a disallowed tag) is a
    # stand-in: a cross-check tripping over it would only say the same thing again.
    stand_ins = {(loaded.source.path, pos) for table in (manifests.models, manifests.endpoints, manifests.policies)
                 for loaded in table.values() for pos in loaded.source.flagged_positions()}
    found = check_manifests(manifests)
    manifests.warnings += check_warnings(manifests)
    if manifests.policies:  # the CEL engine is imported only here: no policies, no cost
        from reconciler.policy import check_desired, compile_policies

        compiled, compile_problems = compile_policies(manifests.policies.values())
        violations, policy_warnings = check_desired(compiled, manifests, stack=stack)
        manifests.warnings += policy_warnings
        found += compile_problems + violations
    problems += [p for p in found if (p.path, Position(p.line or 1, p.col or 1)) not in stand_ins]
    if problems:
        raise ReconcilerError(_unquoted(problems, variables))
    return manifests


def _unquoted(problems: list[Problem], variables: Mapping[str, str]) -> list[Problem]:
    """Problems that quote a value a variable supplied (a cross-check quoting a name) read
    `${var.NAME}` there instead: a variable from RECONCILER_VAR_x or --var may be a credential.
    Short values and plain numbers or booleans are left alone: they hide nothing, and replacing
    "1" would garble "at least 1 item"."""
    values = sorted(((v, n) for n, v in variables.items() if len(v) >= 4 and not SETTING_VALUE.fullmatch(v)),
                    key=lambda pair: -len(pair[0]))
    if not values:
        return problems
    names = dict(values)
    pattern = re.compile("|".join(rf"(?<![A-Za-z0-9]){re.escape(v)}(?![A-Za-z0-9])" for v, _ in values))
    return [dataclasses.replace(p, message=pattern.sub(lambda m: f"${{var.{names[m.group(0)]}}}", p.message))
            for p in problems]


def _validate(source: SourceDocument, problems: list[Problem]) -> Loaded[Any] | None:
    data = source.data
    kinds = ", ".join(KINDS)
    if not isinstance(data, dict):
        what = "a list" if isinstance(data, list) else "a plain value"
        problems.append(source.problem((), f"this document is {what}, not a manifest; write a mapping with "
                                           "apiVersion, kind, metadata and spec (separate manifests with ---)"))
        return None
    envelope: list[Problem] = []
    version = data.get("apiVersion")
    if "apiVersion" not in data:
        envelope.append(source.problem((), f"missing 'apiVersion'; add apiVersion: {API_VERSION}"))
    elif version != API_VERSION and not source.already_reported(("apiVersion",)):
        envelope.append(source.problem(("apiVersion",), f"apiVersion {_show(version)} is not supported; write "
                                                        f"apiVersion: {API_VERSION}"))
    kind = data.get("kind")
    if "kind" not in data:
        envelope.append(source.problem((), f"missing 'kind'; add kind: {' or kind: '.join(KINDS)}"))
    elif not isinstance(kind, str):
        if not source.already_reported(("kind",)):
            what = "a list" if isinstance(kind, list) else "a mapping" if isinstance(kind, dict) else _show(kind)
            envelope.append(source.problem(("kind",), f"kind is {what}; write kind: {' or kind: '.join(KINDS)}"))
    elif kind not in KINDS:
        if not source.already_reported(("kind",)):
            close = difflib.get_close_matches(str(kind), list(KINDS), n=1, cutoff=0.7)
            fix = f"did you mean '{close[0]}'?" if close else f"expected one of: {kinds}"
            envelope.append(source.problem(("kind",), f"unknown kind {_show(kind)}; {fix}"))
    if envelope or not isinstance(kind, str) or kind not in KINDS:
        problems += envelope
        return None
    try:
        return Loaded(KINDS[kind].model_validate(data), source)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if p != "[key]")
            if not source.already_reported(loc, missing=error["type"] == "missing"):
                problems.append(_problem_from_pydantic(source, KINDS[kind], error))
        return None


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model class that describes the mapping at `loc` (to list its valid fields)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            current = _unwrap(current)
            if isinstance(part, int):
                continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
            if info is None:
                return None
            current = _unwrap(info.annotation)
        else:
            current = _unwrap(current)
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Strip Optional / Annotated / list[...] / dict[str, ...] down to the element type."""
    while True:
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin is None or not args:
            return annotation
        if origin is typing.Literal:
            return annotation
        annotation = args[-1] if origin is dict else args[0]


_HINTS = {
    "string_type": "quote the value if it is meant as text",
    "bool_type": "use true or false",
    "int_type": "use a whole number without quotes",
    "dict_type": "write key: value lines, indented below it",
    "model_type": "write its fields on the lines below, indented",
    "list_type": "write one item per line, each starting with '- '",
}

# What to write when a required field is missing, by field name.
_REQUIRED_EXAMPLES = {
    "metadata": "metadata: with the object's name",
    "spec": "spec: with the object's settings",
    "served_entities": "served_entities: with at least one entity (entity_name, and alias or entity_version)",
    "entity_name": "entity_name: catalog.schema.model",
    "routes": "routes: with one served_entity_name and traffic_percentage per served entity",
    "served_entity_name": "served_entity_name: naming one of the endpoint's served entities",
    "traffic_percentage": "traffic_percentage: a whole number from 0 to 100",
    "permission_level": "permission_level: CAN_QUERY, CAN_VIEW or CAN_MANAGE",
    "enabled": "enabled: true or false",
    "behavior": "behavior: BLOCK, MASK or NONE",
    # Policy (policy_model.py)
    "match": "match: with kinds: [ServingEndpoint] (and names, stacks or tags to narrow it)",
    "kinds": "kinds: [ServingEndpoint] or [RegisteredModel]",
    "rules": "rules: with at least one rule (name, expression, message)",
    "expression": "expression: a CEL condition that holds when the document complies",
}


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML, shortened."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return str(value)[:60]


def _deprecated(model: type[BaseModel], loc: Loc) -> str | None:
    """An endpoint field the API deprecated (normalize.FIELD_RULES), with its migration."""
    from reconciler.normalize import Semantics, rules

    if model is not ServingEndpoint or len(loc) != 2 or loc[0] != "spec":
        return None
    rule = next((r for r in rules(Semantics.DEPRECATED) if r.field == loc[1]), None)
    return f"'{loc[1]}' is deprecated and not in the manifest format: {rule.fix}" if rule else None


def _problem_from_pydantic(source: SourceDocument, model: type[BaseModel], error: Any) -> Problem:
    loc: Loc = tuple(p for p in error["loc"] if p != "[key]")
    kind = error["type"]
    if kind == "extra_forbidden":
        deprecated = _deprecated(model, loc)
        if deprecated:
            return source.problem(loc, deprecated, key=True)
        parent = _model_at(model, loc[:-1])
        allowed = [f.alias or n for n, f in parent.model_fields.items()] if parent else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        fix = f"did you mean '{close[0]}'?" if close else f"allowed here: {', '.join(allowed)}"
        where = _dotted(loc[:-1]) or "document"
        return source.problem(loc, f"unknown field '{loc[-1]}' in {where}; {fix}", key=True)
    if kind == "missing":
        where = _dotted(loc[:-1]) or "document"
        name = str(loc[-1])
        if name == "name" and loc[:-1] == ("metadata",):
            example = {RegisteredModel: "name: catalog.schema.model", Policy: "name: the policy's name"}.get(
                model, "name: the endpoint's name")
        else:
            example = _REQUIRED_EXAMPLES.get(name, f"{name}:")
        return source.problem(loc[:-1], f"missing required field '{name}' in {where}; add {example}")
    value = error.get("input")
    ctx = error.get("ctx") or {}
    hint = _HINTS.get(kind)
    message = error["msg"].replace("Input should be", "should be")
    if kind in ("model_type", "dict_type"):
        message = "should be a mapping of fields" if kind == "model_type" else "should be a mapping"
    elif kind == "list_type":
        message = "should be a list"
    elif kind == "too_short":
        least = ctx.get("min_length", 1)
        message = f"should have at least {least} item{'s' if least != 1 else ''}"
        hint = "add one"
    elif kind == "string_pattern_mismatch" and ctx.get("pattern") == DURATION_PATTERN:
        message = "should be a duration such as 90s, 5m or 1h"
        hint = "write a number and s, m or h"
    elif kind == "version_reference":  # manifests/model.py: a number, or the logged agent to register
        message = error["msg"]
        hint = "to serve the version an alias points at, write alias: <name> instead" if loc[-1] == "entity_version" \
            else "copy the URI MLflow printed when it logged the agent"
    elif kind in ("greater_than_equal", "less_than_equal"):
        hint = f"use {ctx['ge']} or more" if "ge" in ctx else f"use {ctx.get('le')} or less"
    elif kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        text = str(value).lower()
        same = [c for c in choices if c.lower() == text]
        prefixed = [c for c in choices if c.lower().startswith(text)]
        close = same or (prefixed if len(prefixed) == 1 else []) or \
            ([] if prefixed else difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6))
        hint = f"did you mean '{close[0]}'?" if close else "use one of those"
    # Never echo an environment variable's value back, nor one that came from a variable: either
    # may be a credential.
    if "environment_vars" in loc or source.substituted & {loc[:i] for i in range(len(loc) + 1)} \
            or isinstance(value, (dict, list)):
        shown = " (the value of a variable, not shown: it may be a credential)" if loc in source.substituted else ""
    elif value is None:
        shown = " (got an empty value)"
        hint = hint if kind in ("model_type", "dict_type", "list_type") else "write a value after the colon"
    else:
        shown = f" (got {_show(value)})"
    return source.problem(loc, f"{_dotted(loc)}: {message}{shown}" + (f"; {hint}" if hint else ""))
