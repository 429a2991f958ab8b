"""Loads manifest files and directories into validated documents that remember their source.

Called by every command that reads manifests (validate, plan, apply). Reports every problem in
all files at once, each as `path:line:col: message; fix`, and raises only at the end.
"""

from __future__ import annotations

import difflib
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from reconciler.errors import Problem, ReconcilerError
from reconciler.manifests.model import API_VERSION, KINDS, RegisteredModel, ServingEndpoint
from reconciler.manifests.yamlsource import Loc, SourceDocument, read_documents

T = TypeVar("T", RegisteredModel, ServingEndpoint)
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
    files: list[str] = field(default_factory=list)

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


def load_manifests(paths: Sequence[str], variables: Mapping[str, str]) -> Manifests:
    from reconciler.manifests.checks import check_manifests

    problems: list[Problem] = []
    manifests = Manifests(files=collect_files(paths, problems))
    for path in manifests.files:
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            problems.append(Problem(f"cannot read file: {exc.strerror}", path=path, line=1, col=1))
            continue
        for source in read_documents(path, raw, variables, problems):
            loaded = _validate(source, problems)
            if loaded is None:
                continue
            table: dict[str, Any] = manifests.models if loaded.manifest.kind == "RegisteredModel" else manifests.endpoints
            first = table.get(loaded.name)
            if first is not None:
                where = first.source.position(("metadata", "name"))
                problems.append(loaded.problem(
                    ("metadata", "name"),
                    f"duplicate {loaded.manifest.kind} '{loaded.name}' (also defined at {first.source.path}:"
                    f"{where.line}:{where.col}); keep one"))
                continue
            table[loaded.name] = loaded
    problems += check_manifests(manifests)
    if problems:
        raise ReconcilerError(problems)
    return manifests


def _validate(source: SourceDocument, problems: list[Problem]) -> Loaded[Any] | None:
    data = source.data
    kinds = ", ".join(KINDS)
    if not isinstance(data, dict):
        problems.append(source.problem((), "a manifest must be a mapping with apiVersion, kind, metadata and spec"))
        return None
    kind = data.get("kind")
    if kind is None:
        problems.append(source.problem((), f"missing 'kind'; set it to one of: {kinds}"))
        return None
    if kind not in KINDS:
        problems.append(source.problem(("kind",), f"unknown kind '{kind}'; expected one of: {kinds}"))
        return None
    if data.get("apiVersion") != API_VERSION:
        where = ("apiVersion",) if "apiVersion" in data else ()
        problems.append(source.problem(where, f"apiVersion must be '{API_VERSION}'"))
        return None
    try:
        return Loaded(KINDS[kind].model_validate(data), source)
    except ValidationError as exc:
        for error in exc.errors():
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
    "dict_type": "write a mapping (key: value lines)",
    "list_type": "write a list (lines starting with '- ')",
    "model_type": "write a mapping of fields",
}


def _problem_from_pydantic(source: SourceDocument, model: type[BaseModel], error: Any) -> Problem:
    loc: Loc = tuple(p for p in error["loc"] if p != "[key]")
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        allowed = [f.alias or n for n, f in parent.model_fields.items()] if parent else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        fix = f"did you mean '{close[0]}'?" if close else f"allowed here: {', '.join(allowed)}"
        where = _dotted(loc[:-1]) or "document"
        return source.problem(loc, f"unknown field '{loc[-1]}' in {where}; {fix}", key=True)
    if kind == "missing":
        where = _dotted(loc[:-1]) or "document"
        return source.problem(loc[:-1], f"missing required field '{loc[-1]}' in {where}")
    message = error["msg"].replace("Input should be", "should be")
    # Never echo an environment variable's value back: it may be a credential.
    shown = "" if "environment_vars" in loc or isinstance(error.get("input"), (dict, list)) \
        else f" (got {error.get('input')!r:.60})"
    hint = _HINTS.get(kind)
    return source.problem(loc, f"{_dotted(loc)}: {message}{shown}" + (f"; {hint}" if hint else ""))
