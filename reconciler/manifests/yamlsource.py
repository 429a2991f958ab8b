"""Turns manifest files into plain Python values that remember where every value came from.

PyYAML's `safe_load` throws positions away, so this module composes the node graph itself and
builds dicts, lists and scalars while recording the line and column of every mapping key and
value. Later stages (model validation, cross-checks, plan preflight) turn a field path such as
`("spec", "served_entities", 0, "alias")` back into `file:line:col`.

It also owns the defences a loader reading untrusted files needs: only the YAML core tags that
`safe_load` accepts, duplicate keys are errors (PyYAML silently keeps the last), aliases may not
expand past a node budget ("billion laughs"), nesting is bounded, and files must be UTF-8 text of
sane size. `${var.NAME}` placeholders are substituted in scalar values here, where the position
of an undefined variable is still known.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.errors import Problem

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 32
MAX_NODES_PER_DOCUMENT = 50_000

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
_VAR = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_VAR_NAME = re.compile(r"var\.([A-Za-z_][A-Za-z0-9_-]*)")

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    col: int  # 1-based


@dataclass
class SourceDocument:
    """One YAML document: its values and the position of every key and value in it."""

    path: str
    index: int  # 0-based document number within the file
    data: Any
    start: Position
    values: dict[Loc, Position] = field(default_factory=dict)
    keys: dict[Loc, Position] = field(default_factory=dict)

    def position(self, loc: Loc, *, key: bool = False) -> Position:
        """Position of the value (or key) at `loc`, else of its nearest recorded parent."""
        loc = tuple(loc)
        if key and loc in self.keys:
            return self.keys[loc]
        while loc:
            if loc in self.values:
                return self.values[loc]
            loc = loc[:-1]
        return self.start

    def problem(self, loc: Loc, message: str, *, key: bool = False) -> Problem:
        pos = self.position(loc, key=key)
        return Problem(message, path=self.path, line=pos.line, col=pos.col)


def _pos(node: Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


class _DocumentBuilder:
    """Builds one document's values from its node graph, collecting problems instead of raising."""

    def __init__(self, path: str, index: int, variables: Mapping[str, str], problems: list[Problem]):
        self.path = path
        self.variables = variables
        self.problems = problems
        self.nodes = 0
        self.constructor = yaml.SafeLoader("")
        self.doc: SourceDocument | None = None
        self.index = index

    def build(self, root: Node) -> SourceDocument | None:
        self.doc = SourceDocument(self.path, self.index, None, _pos(root))
        self.doc.data = self._value(root, (), 0)
        if self.nodes > MAX_NODES_PER_DOCUMENT:
            return None
        return self.doc

    def _fail(self, node: Node, message: str) -> None:
        pos = _pos(node)
        self.problems.append(Problem(message, path=self.path, line=pos.line, col=pos.col))

    def _value(self, node: Node, loc: Loc, depth: int) -> Any:
        assert self.doc is not None
        self.nodes += 1
        if self.nodes == MAX_NODES_PER_DOCUMENT + 1:
            self._fail(node, f"document expands to more than {MAX_NODES_PER_DOCUMENT} values "
                             "(YAML aliases repeating each other?); write the values out")
        if self.nodes > MAX_NODES_PER_DOCUMENT:
            return None
        if depth > MAX_DEPTH:
            self._fail(node, f"nesting deeper than {MAX_DEPTH} levels; manifests are never this deep")
            return None
        self.doc.values.setdefault(loc, _pos(node))
        if isinstance(node, MappingNode):
            return self._mapping(node, loc, depth)
        if isinstance(node, SequenceNode):
            if node.tag != _CORE + "seq":
                return self._bad_tag(node)
            return [self._value(item, loc + (i,), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node, loc)

    def _mapping(self, node: MappingNode, loc: Loc, depth: int) -> dict[str, Any] | None:
        assert self.doc is not None
        if node.tag != _CORE + "map":
            return self._bad_tag(node)
        result: dict[str, Any] = {}
        first_seen: dict[str, Position] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _CORE + "merge":
                self._fail(key_node, "YAML merge keys ('<<') are not supported; write the fields out")
                continue
            if not isinstance(key_node, ScalarNode):
                self._fail(key_node, "mapping keys must be plain strings")
                continue
            # Keys are always strings in this format: use the text as written, so `on:` or `1:`
            # stay "on" and "1" instead of YAML 1.1's True and 1.
            key = key_node.value
            if key in first_seen:
                self._fail(key_node, f"duplicate key '{key}' (first set at line {first_seen[key].line}); "
                                     "remove one of them")
                continue
            first_seen[key] = _pos(key_node)
            self.doc.keys[loc + (key,)] = _pos(key_node)
            self.doc.values[loc + (key,)] = _pos(value_node)
            result[key] = self._value(value_node, loc + (key,), depth + 1)
        return result

    def _bad_tag(self, node: Node) -> None:
        self._fail(node, f"YAML tag '{node.tag}' is not allowed; manifests use plain YAML values only")
        return None

    def _scalar(self, node: Node, loc: Loc) -> Any:
        assert isinstance(node, ScalarNode)
        if node.tag not in _SCALAR_TAGS:
            return self._bad_tag(node)
        if node.tag == _CORE + "timestamp":
            return node.value  # a date-looking value is a string to us, as JSON would see it
        if node.tag != _CORE + "str" or "$" not in node.value:
            return self.constructor.construct_object(node)
        text = self._substitute(node)
        if node.style is None and _VAR.fullmatch(node.value):
            # An unquoted `${var.x}` takes the type of what it stands for, as if written there.
            tag = self.constructor.resolve(ScalarNode, text, (True, False))
            if tag in _SCALAR_TAGS and tag != _CORE + "timestamp":
                return self.constructor.construct_object(ScalarNode(tag, text))
        return text

    def _substitute(self, node: ScalarNode) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            inner = match.group(1)
            name = _VAR_NAME.fullmatch(inner)
            if not name:
                self._fail(node, f"'${{{inner}}}' is not a variable reference; write ${{var.NAME}}, "
                                 "or $${ for a literal '${'")
                return match.group(0)
            if name.group(1) not in self.variables:
                self._fail(node, f"variable '{name.group(1)}' is not defined; pass --var {name.group(1)}=VALUE, "
                                 f"add it to a --var-file, or set RECONCILER_VAR_{name.group(1)}")
                return match.group(0)
            return self.variables[name.group(1)]

        return _VAR.sub(replace, node.value)


def _decode(path: str, raw: bytes, problems: list[Problem]) -> str | None:
    if len(raw) > MAX_FILE_BYTES:
        problems.append(Problem(f"file is {len(raw) / 1048576:.1f} MiB; manifest files over "
                                f"{MAX_FILE_BYTES // 1048576} MiB are refused (split it)", path=path, line=1, col=1))
        return None
    if b"\0" in raw:
        problems.append(Problem("binary file (contains NUL bytes); manifests must be UTF-8 YAML text",
                                path=path, line=1, col=1))
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        problems.append(Problem(f"file is not UTF-8 text (byte 0x{raw[exc.start]:02x}); save it as UTF-8",
                                path=path, line=line, col=col))
        return None


def _yaml_error_problem(path: str, exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    if "'\\t'" in problem:
        message = "tab character where YAML expects indentation or a value; indent with spaces only"
    else:
        message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    return Problem(message, path=path, line=line, col=col)


def read_documents(path: str, raw: bytes, variables: Mapping[str, str],
                   problems: list[Problem]) -> list[SourceDocument]:
    """All non-empty documents of one file; problems are appended, never raised."""
    text = _decode(path, raw, problems)
    if text is None:
        return []
    documents: list[SourceDocument] = []
    seen_any = False
    try:
        for index, root in enumerate(yaml.compose_all(text, Loader=yaml.SafeLoader)):
            seen_any = True
            if root is None or (isinstance(root, ScalarNode) and root.tag == _CORE + "null"):
                continue  # an empty document (e.g. a trailing `---`) is nothing, as in kubectl
            document = _DocumentBuilder(path, index, variables, problems).build(root)
            if document is not None:
                documents.append(document)
    except yaml.YAMLError as exc:
        problems.append(_yaml_error_problem(path, exc))
        return documents
    except RecursionError:
        problems.append(Problem(f"nesting deeper than {MAX_DEPTH} levels; manifests are never this deep",
                                path=path, line=1, col=1))
        return documents
    if not documents and not seen_any and not any(p.path == path for p in problems):
        problems.append(Problem("file holds no YAML documents; write a manifest or remove the file",
                                path=path, line=1, col=1))
    return documents
