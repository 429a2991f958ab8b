"""Policies as code: compiles the CEL rules of `Policy` documents and checks documents against them.

Called by the loader (`compile_policies`, then `check_desired`: validate, plan and apply refuse
manifests that break an error rule, each violation at the offending document's `path:line:col`)
and by plan (`check_live`: what only the workspace shows, such as drift or the resources a served
model version was logged with). Pure: no I/O. The CEL engine is imported only when a Policy
document exists, so `--help` and `validate` without policies never pay for it.

What a rule sees (the same shape everywhere, so one rule serves validate and plan):
  object  the document (apiVersion, kind, metadata, spec) as written, after variables; at plan
          time also as it will be after apply (fields the manifest leaves out keep their live
          value), and as it is live now (to tell drift)
  live    the live object in the same shape (normalised: see normalize.py), null at validate
          time and for objects that do not exist yet
  stack   the --stack name, or null
  served  served entity name → the served model version's MLmodel facts, for the versions plan
          reads (those newly served, and every one when the manifest declares `resources`):
          {entity_name, entity_version, logged_resources: {type: [names]}, resources,
          auth_policy}; empty at validate time
Plain credentials in environment variables reach no rule (they are hidden, as in plan output).

The CEL engine is cel-python (`import celpy`), chosen from the maintained Python implementations,
measured on one shared 2-core machine (Python 3.11; a typical rule, tracing on and no broad
CAN_MANAGE, over the example endpoint; 1,000 times):

  implementation                        compile+evaluate  evaluate  import  new install size     Python
  cel-python 0.5.0 (pure Python)        8-13 s            4-7 s     0.16 s  1.6 MB wheels, 9 MB  >= 3.10
  common-expression-language 0.10 (Rust) 0.44 s           0.16 s    0.31 s  3.4 MB, 21 MB (CLI)  >= 3.11
  cel-expr-python 0.1.3 (Google C++)    0.61 s            0.04 s    0.005 s 16 MB, 51 MB         >= 3.11

The two compiled ones are 20-100 times faster but install on Python 3.11 and later only (this
package supports 3.10, as Databricks Runtime 13.3 and 14.3 LTS ship it), and the Rust one pulls in
a command line's dependencies (typer, rich, prompt-toolkit) that its import loads every time.
python-cel 0.1.1 (Rust) fails `exists()` over lists whose elements lack a field, and has been
left since 2025. cel-python gives syntax errors a line and column. Its cost, paid only when a
Policy exists: about 0.45 s once per process (0.15 s import, 0.3 s to build its parser), then
about 5 ms to compile a rule and 4 ms to evaluate one on a document; `validate` of the examples
with the four example policies (8 rules) spends about 15 ms past that first cost. Only
`_compile`, `_environment`, `_evaluate`, `_cel` and `_syntax_problem` know the engine.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reconciler.errors import Problem

if TYPE_CHECKING:
    from reconciler.manifests.loader import Loaded, Manifests
    from reconciler.manifests.policy_model import Match, Policy
    from reconciler.manifests.yamlsource import Loc

VARIABLES = ("object", "live", "stack", "served")
# Names CEL itself gives meaning to: type names (`type(x) == string`).
_CEL_NAMES = frozenset({"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type",
                        "dyn", "google"})
# Macros whose first argument names a variable bound in the rest (`list.all(e, e.x)`).
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_FIELD_PART = re.compile(r"\[([0-9]+)\]|\.?([A-Za-z_][A-Za-z0-9_]*)")
FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[0-9]+\]|\.[A-Za-z_][A-Za-z0-9_]*)*")
DEFAULT_FIELD_PATH: Loc = ("metadata", "name")
DRIFT = "drift: the live object breaks this now; this plan corrects it"
UNMANAGED = "after apply: the manifest leaves a field out, so it keeps its live value, which breaks this; set it " \
            "in the manifest"


@dataclass(frozen=True)
class CompiledRule:
    policy: str
    name: str
    severity: str  # "error" | "warning"
    message: str
    program: Any
    message_program: Any | None
    field_path: Loc

    def label(self) -> str:
        return f"policy '{self.policy}' rule '{self.name}'"


@dataclass(frozen=True)
class CompiledPolicy:
    name: str
    match: Match
    rules: tuple[CompiledRule, ...]

    def matches(self, loaded: Loaded[Any], *, stack: str | None) -> bool:
        match, manifest = self.match, loaded.manifest
        if manifest.kind not in match.kinds:
            return False
        if match.names is not None and not any(fnmatch.fnmatchcase(loaded.name, p) for p in match.names):
            return False
        if match.stacks is not None and stack not in match.stacks:
            return False
        if match.tags is not None:
            tags = getattr(manifest.spec, "tags", None) or {}
            return all(tags.get(key) == value for key, value in match.tags.items())
        return True


@dataclass(frozen=True)
class LiveView:
    """What plan knows of one manifest's object: its normalised live state (normalize.py shapes;
    None when it does not exist yet) and, for endpoints, the `served` facts rules see."""

    live: dict[str, Any] | None
    served: dict[str, dict[str, Any]] = field(default_factory=dict)


# ---- compiling -------------------------------------------------------------------------------------


class _CompileError(Exception):
    """A rule's CEL that does not compile; the message says where in the expression and why."""


def compile_policies(policies: Iterable[Loaded[Policy]]) -> tuple[list[CompiledPolicy], list[Problem]]:
    """Every rule compiled; each one that does not compile is a problem at its place in the policy file."""
    compiled: list[CompiledPolicy] = []
    problems: list[Problem] = []
    for loaded in policies:
        rules: list[CompiledRule] = []
        seen: dict[str, int] = {}
        for i, rule in enumerate(loaded.manifest.spec.rules):
            if rule.name in seen:
                first = loaded.source.position(("spec", "rules", seen[rule.name], "name"))
                problems.append(loaded.problem(("spec", "rules", i, "name"),
                                               f"rule name '{rule.name}' is used twice in this policy (first at line "
                                               f"{first.line}); give each rule its own"))
                continue
            seen[rule.name] = i
            one, found = _compile_rule(loaded, i)
            problems += found
            if one is not None:
                rules.append(one)
        compiled.append(CompiledPolicy(loaded.name, loaded.manifest.spec.match, tuple(rules)))
    return compiled, problems


def _compile_rule(loaded: Loaded[Policy], i: int) -> tuple[CompiledRule | None, list[Problem]]:
    rule = loaded.manifest.spec.rules[i]
    loc = ("spec", "rules", i)
    if rule.field_path is not None and not FIELD_PATH.fullmatch(rule.field_path):
        return None, [loaded.problem(loc + ("field_path",), f"field_path '{rule.field_path}' is not a field path; "
                                                            "write one such as spec.ai_gateway or "
                                                            "spec.served_entities[0]")]
    programs: dict[str, Any] = {}
    problems: list[Problem] = []
    for key in ("expression", "message_expression"):
        text = getattr(rule, key)
        if text is None:
            continue
        try:
            programs[key] = _compile(text)
        except _CompileError as exc:
            problems.append(loaded.problem(loc + (key,), f"policy '{loaded.name}' rule '{rule.name}': {key} {exc}"))
    if problems:
        return None, problems
    return CompiledRule(
        policy=loaded.name, name=rule.name, severity=rule.severity,
        message=rule.message or f"fails {one_line_expression(rule.expression)}",
        program=programs["expression"], message_program=programs.get("message_expression"),
        field_path=field_path(rule.field_path) if rule.field_path else DEFAULT_FIELD_PATH), []


def field_path(text: str) -> Loc:
    """`spec.served_entities[0].name` → ("spec", "served_entities", 0, "name")."""
    return tuple(int(index) if index else name for index, name in _FIELD_PART.findall(text))


def one_line_expression(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."


@functools.lru_cache(maxsize=1024)
def _compile(text: str) -> Any:
    """A runnable program for one CEL expression (cached: plan compiles what the loader compiled)."""
    import celpy

    environment = _environment()
    try:
        tree = environment.compile(text)
    except celpy.CELParseError as exc:
        line, column = exc.line or 1, exc.column or 1
        raise _CompileError(f"does not compile: {_syntax_problem(exc)} at line {line}, column {column} of the "
                            f"expression (near {_near(text, line, column)!r}); fix the CEL syntax") from None
    except Exception as exc:  # the engine's own failure on odd input: a problem with this rule, not a traceback
        raise _CompileError(f"does not compile ({type(exc).__name__}: {exc}); simplify the expression") from None
    for token in _free_identifiers(tree):
        close = difflib.get_close_matches(str(token), VARIABLES, n=1)
        fix = f"did you mean '{close[0]}'?" if close else f"the variables are {', '.join(VARIABLES)}"
        raise _CompileError(f"uses unknown variable '{token}' at line {token.line}, column {token.column} of the "
                            f"expression; {fix}")
    return environment.program(tree)


@functools.cache
def _environment() -> Any:
    import celpy

    return celpy.Environment()


def _syntax_problem(exc: Exception) -> str:
    """What the parser tripped on, said plainly (celpy keeps lark's exception as the context)."""
    from lark.exceptions import UnexpectedCharacters, UnexpectedToken

    cause = exc.__context__
    if isinstance(cause, UnexpectedToken):
        return "the expression ends too early" if cause.token.type == "$END" else f"unexpected '{cause.token}'"
    if isinstance(cause, UnexpectedCharacters):
        return "a string is never closed" if cause.char in "\"'" else f"unexpected character '{cause.char}'"
    return "syntax error"


def _near(text: str, line: int, column: int) -> str:
    lines = text.splitlines() or [""]
    source = lines[min(line, len(lines)) - 1]
    return source[max(0, column - 17):column + 3].strip() or source.strip()[:20]


def _free_identifiers(tree: Any) -> list[Any]:
    """Identifier tokens that name neither a rule variable, a macro's own variable, nor a CEL type."""
    bound = set()
    for node in tree.iter_subtrees():
        if node.data == "member_dot_arg" and str(node.children[1]) in _MACROS and node.children[2] is not None:
            first = next(node.children[2].children[0].find_data("ident"), None)
            if first is not None:
                bound.add(str(first.children[0]))
    known = bound | set(VARIABLES) | _CEL_NAMES
    return [node.children[0] for node in tree.iter_subtrees_topdown()
            if node.data == "ident" and str(node.children[0]) not in known]


# ---- evaluating ------------------------------------------------------------------------------------


def _evaluate(program: Any, activation: Mapping[str, Any]) -> tuple[Any, str | None]:
    """(result, None), or (None, why it could not be evaluated) in one short line."""
    import celpy

    try:
        result = program.evaluate(dict(activation))
    except celpy.CELEvalError as exc:
        return None, _eval_error_text(exc)
    except Exception as exc:  # the engine's own failure: a finding about this rule, never a traceback
        return None, f"{type(exc).__name__}: {exc}"
    if isinstance(result, celpy.CELEvalError):
        return None, _eval_error_text(result)
    return result, None


def _eval_error_text(exc: Exception) -> str:
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    text = text.split(" (in activation", 1)[0]  # celpy appends the whole activation: noise, and long
    return text if len(text) <= 200 else text[:197] + "..."


def _verdict(rule: CompiledRule, activation: Mapping[str, Any]) -> str | None:
    """None when the document complies; else the message to report."""
    import celpy

    result, error = _evaluate(rule.program, activation)
    if error is not None:
        return f"cannot be evaluated here: {error}; guard fields a document may leave out with has(), e.g. " \
               "has(object.spec.tags)"
    if not isinstance(result, celpy.celtypes.BoolType):
        return f"returned {type(result).__name__.removesuffix('Type').lower()}, not true or false; make the " \
               "expression a condition"
    if result:
        return None
    if rule.message_program is not None:
        text, error = _evaluate(rule.message_program, activation)
        if error is None and isinstance(text, str) and text.strip():
            return str(text)  # a message_expression that fails falls back to `message`, as in Kubernetes
    return rule.message


def _activation(*, obj: dict[str, Any], live: dict[str, Any] | None, stack: str | None,
                served: Mapping[str, Any]) -> dict[str, Any]:
    return {"object": _cel(obj), "live": _cel(live), "stack": _cel(stack), "served": _cel(dict(served))}


def _cel(value: Any) -> Any:
    """Plain JSON-shaped data as CEL values (converted once per document, shared by its rules)."""
    import celpy

    return celpy.json_to_cel(value)


# ---- documents as rules see them -----------------------------------------------------------------


def _hidden(document: dict[str, Any]) -> dict[str, Any]:
    """The document with plain credentials in environment variables replaced, as plan output shows them."""
    from reconciler.manifests.checks import plain_credential
    from reconciler.redact import hidden

    spec = document.get("spec") or {}  # a RegisteredModel may leave spec out: rules still read object.spec
    entities = spec.get("served_entities")
    if not isinstance(entities, list):
        return {**document, "spec": spec}
    clean = []
    for entity in entities:
        env = entity.get("environment_vars") if isinstance(entity, dict) else None
        if isinstance(env, dict):
            entity = {**entity, "environment_vars": {
                k: hidden(v) if isinstance(v, str) and plain_credential(str(k), v) else v for k, v in env.items()}}
        clean.append(entity)
    return {**document, "spec": {**spec, "served_entities": clean}}


def live_document(kind: str, name: str, live: dict[str, Any]) -> dict[str, Any]:
    """A normalised live object (normalize.py) in the manifest's shape, so rules read both alike."""
    from reconciler.manifests.model import API_VERSION
    from reconciler.normalize import acl_payload, config_lists

    if kind == "ServingEndpoint":
        spec = config_lists(live)  # served_entities and traffic_config as lists, as manifests write them
        spec.update({k: live[k] for k in ("ai_gateway", "tags", "description", "route_optimized") if k in live})
        if "permissions" in live:
            spec["permissions"] = acl_payload(live["permissions"])
    else:
        spec = dict(live)  # a model's normalised shape is its manifest spec: comment, owner, aliases
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


# Maps a manifest gives whole (normalize.py rule 6): a key it leaves out is removed, not kept.
_COMPLETE = frozenset({"tags", "environment_vars", "aliases"})


def merged(primary: Any, secondary: Any, *, entity: bool = False) -> Any:
    """`primary` with the fields it leaves out taken from `secondary` (normalize.py rule 3 on
    manifest-shaped documents): merged(desired, live) is the object after apply; merged(live,
    desired) the live object plus what only manifests say (resources, aliases). Served entities
    pair by name, and are complete: of their fields, only those manifests do not manage (`alias`,
    `name`, fields this release does not know) come from the other side. Other lists are whole
    values."""
    from reconciler.normalize import MANAGED_ENTITY_FIELDS

    if isinstance(primary, dict) and isinstance(secondary, dict):
        out = dict(primary)
        for key, value in secondary.items():
            if key not in out:
                if entity and key in MANAGED_ENTITY_FIELDS:
                    continue  # left out of a served entity: the API's default, not the other side's value
                out[key] = value
            elif key not in _COMPLETE:
                out[key] = merged(out[key], value)
        return out
    if isinstance(primary, list) and isinstance(secondary, list):
        named = {e["name"]: e for e in secondary if isinstance(e, dict) and isinstance(e.get("name"), str)}
        return [merged(e, named[e["name"]], entity=True) if isinstance(e, dict) and e.get("name") in named else e
                for e in primary]
    return primary


# ---- checking --------------------------------------------------------------------------------------


def _documents(manifests: Manifests) -> Iterator[Loaded[Any]]:
    yield from manifests.models.values()
    yield from manifests.endpoints.values()


def check_desired(compiled: list[CompiledPolicy], manifests: Manifests, *,
                  stack: str | None = None) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings): each rule on each document it matches, as written (`live` null, `served` empty)."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    for loaded in _documents(manifests):
        rules = [r for p in compiled if p.matches(loaded, stack=stack) for r in p.rules]
        if not rules:
            continue
        activation = _activation(obj=_hidden(loaded.source.data), live=None, stack=stack, served={})
        for rule in rules:
            message = _verdict(rule, activation)
            if message is not None:
                found = errors if rule.severity == "error" else warnings
                found.append(loaded.problem(rule.field_path, f"{rule.label()}: {message}"))
    return errors, warnings


def check_live(compiled: list[CompiledPolicy], manifests: Manifests, views: Mapping[tuple[str, str], LiveView], *,
               stack: str | None = None) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) for plan. Each rule on each document it matches, with `live` and `served`
    known: on the object as apply will leave it (a violation here is the rule's own severity: the
    manifest leaves a field to the workspace whose value breaks the rule, or what the served model
    was logged with does not fit), then on the object as it is live (a violation only there is
    drift that this plan corrects: a warning). `views` is keyed by (kind, name)."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    for loaded in _documents(manifests):
        view = views.get((loaded.manifest.kind, loaded.name))
        rules = [r for p in compiled if p.matches(loaded, stack=stack) for r in p.rules]
        if view is None or not rules:
            continue
        desired = _hidden(loaded.source.data)
        now = None if view.live is None else _hidden(live_document(loaded.manifest.kind, loaded.name, view.live))
        after = desired if now is None else merged(desired, now)
        activation = _activation(obj=after, live=now, stack=stack, served=view.served)
        live_activation = None if now is None else {**activation, "object": _cel(merged(now, desired))}
        for rule in rules:
            message = _verdict(rule, activation)
            if message is not None:
                if now is not None and _verdict(rule, {**activation, "object": _cel(desired)}) is None:
                    message += f" ({UNMANAGED})"
                found = errors if rule.severity == "error" else warnings
                found.append(loaded.problem(rule.field_path, f"{rule.label()}: {message}"))
                continue
            message = None if live_activation is None else _verdict(rule, live_activation)
            if message is not None:
                warnings.append(loaded.problem(rule.field_path, f"{rule.label()}: {message} ({DRIFT})"))
    return errors, warnings


def plan_views(manifests: Manifests, live: Any, resolved: Mapping[str, list[str]]) -> dict[tuple[str, str], LiveView]:
    """The LiveViews of today's plan pipeline: `live` is a live.LiveState, `resolved` the entity
    versions per endpoint (plan.resolve_versions). The one function here that knows those shapes."""
    from reconciler.live import mlmodel_resources
    from reconciler.manifests.checks import default_entity_name
    from reconciler.normalize import live_endpoint, live_model

    views: dict[tuple[str, str], LiveView] = {}
    for name in manifests.models:
        api = live.models.get(name)
        views[("RegisteredModel", name)] = LiveView(live_model(api) if api is not None else None)
    for name, loaded in manifests.endpoints.items():
        api = live.endpoints.get(name)
        served: dict[str, dict[str, Any]] = {}
        for entity, version in zip(loaded.manifest.spec.served_entities, resolved[name], strict=True):
            mlmodel = live.mlmodels.get((entity.entity_name, version))
            if not mlmodel:
                continue  # not read (already served, no resources declared) or unreadable
            logged: dict[str, list[str]] = {}
            for kind, resource in sorted(mlmodel_resources(mlmodel)):
                logged.setdefault(kind, []).append(resource)
            served[entity.name or default_entity_name(entity.entity_name, version)] = {
                "entity_name": entity.entity_name, "entity_version": version, "logged_resources": logged,
                **{key: mlmodel[key] for key in ("resources", "auth_policy") if mlmodel.get(key) is not None}}
        views[("ServingEndpoint", name)] = LiveView(
            live_endpoint(api, live.permissions.get(name)) if api is not None else None, served)
    return views
