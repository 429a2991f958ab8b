"""Turns manifest files into plain Python values that remember where every value came from.

PyYAML's `safe_load` throws positions away, so this module composes the node graph itself (from
the parser's events) and builds dicts, lists and scalars while recording the line and column of
every mapping key and value. Later stages (model validation, cross-checks, plan preflight) turn a
field path such as `("spec", "served_entities", 0, "alias")` back into `file:line:col`.

It also owns the defences a loader reading untrusted files needs: only the YAML core tags that
`safe_load` accepts, duplicate keys are errors (PyYAML silently keeps the last), nesting is
bounded while parsing (so a file of a million `[` neither recurses nor runs for minutes), every
document has a value budget (counted while composing, and again while aliases are expanded:
"billion laughs"), a file holds at most 10,000 documents, and files must be UTF-8 text of sane
size. `${var.NAME}` placeholders are substituted in scalar values here, where the position of an
undefined variable is still known, in block and flow style alike (`_BRACED`).

Parsing uses libyaml's C parser when PyYAML has it (several times faster) and PyYAML's pure-Python
parser otherwise. Both produce the same events and marks; a file with a syntax error is parsed
again with the pure-Python parser, and a file with a tab goes to it directly (libyaml accepts tabs
where PyYAML does not), so what a user sees does not depend on how PyYAML was built.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.errors import Problem

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 32
MAX_NODES_PER_DOCUMENT = 50_000
MAX_DOCUMENTS_PER_FILE = 10_000
SHARED_STRING_CHARS = 40  # keys and string values up to this long are interned: they repeat across documents

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
# `$${` is a literal `${`; `${...}` a placeholder; a lone `${` one that is never closed.
_VAR = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VAR_NAME = re.compile(r"var\.([A-Za-z_][A-Za-z0-9_-]*)")
# In a flow collection (`{served_entity_name: a, traffic_percentage: ${var.pct}}`) YAML reads the
# braces of `${...}` as flow indicators. Before parsing, each placeholder's braces become two
# private-use characters (one character each: every line and column stays where it was), which the
# composer turns back into braces in every scalar; a file that already holds them is left as it is.
_BRACED = re.compile(r"\$\{([^}\n]*)\}")
_OPEN, _CLOSE = "\ue000", "\ue001"
_RESTORE = str.maketrans({_OPEN: "{", _CLOSE: "}"})

_PURE_LOADER: type = yaml.SafeLoader
_FAST_LOADER: type | None = getattr(yaml, "CSafeLoader", None)
# Tag resolution and scalar construction are stateless for the core tags: one of each serves every
# document (a SafeLoader per document would build a reader, scanner and parser for nothing, and
# leave reference cycles for the garbage collector). Scalars are built by their tag's constructor
# directly, not `construct_object`, which would remember every node it built.
_RESOLVER = yaml.resolver.Resolver()
_SCALARS = yaml.constructor.SafeConstructor()

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)  # one per key and value of every document: 10,000 documents hold 500,000
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
    # Positions packed as line << 16 | col (`_packed`): half a million Position objects at 10,000
    # documents would cost about 25 MiB; the location tuples are shared between documents (`_loc`).
    values: dict[Loc, int] = field(default_factory=dict)
    keys: dict[Loc, int] = field(default_factory=dict)
    # The three sets below are empty in almost every document: frozen, they share the one empty
    # frozenset instead of three empty sets each (6 MiB at 10,000 documents); `_DocumentBuilder`
    # replaces them when it adds to them.
    # Where a problem was already reported while reading (a disallowed tag, an undefined variable):
    # the value there is a stand-in, so validation does not report it a second time.
    flagged: frozenset[Loc] = frozenset()
    # Mappings that lost entries while reading (a merge key, a non-string key): a field missing
    # from them is a consequence of the problem already reported, not a new one.
    incomplete: frozenset[Loc] = frozenset()
    # Values a `${var.NAME}` was substituted into: never quoted back in a problem (a variable from
    # RECONCILER_VAR_x or --var may hold a credential).
    substituted: frozenset[Loc] = frozenset()

    def position(self, loc: Loc, *, key: bool = False) -> Position:
        """Position of the value (or key) at `loc`, else of its nearest recorded parent."""
        loc = tuple(loc)
        if key and loc in self.keys:
            return _unpacked(self.keys[loc])
        while loc:
            if loc in self.values:
                return _unpacked(self.values[loc])
            loc = loc[:-1]
        return self.start

    def problem(self, loc: Loc, message: str, *, key: bool = False) -> Problem:
        pos = self.position(loc, key=key)
        return Problem(message, path=self.path, line=pos.line, col=pos.col)

    def already_reported(self, loc: Loc, *, missing: bool = False) -> bool:
        """True when a problem at `loc` follows from one reported while reading the YAML."""
        loc = tuple(loc)
        if any(loc[:i] in self.flagged for i in range(len(loc) + 1)):
            return True
        return missing and loc[:-1] in self.incomplete

    def flagged_positions(self) -> set[Position]:
        return {_unpacked(self.values[loc]) for loc in self.flagged if loc in self.values}


def _pos(node: Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def _packed(node: Node) -> int:
    """A node's 1-based line and column in one int (columns of more than 65,535 are clipped). Files
    of one layout put their fields at the same places: each such int is one object, shared
    (`_PACKED`), not one per key and value of every document (8 MiB at 10,000 documents)."""
    return _shared(_PACKED, (node.start_mark.line + 1) << 16 | min(node.start_mark.column + 1, 0xFFFF))


def _unpacked(packed: int) -> Position:
    return Position(packed >> 16, packed & 0xFFFF)


_PACKED: dict[int, int] = {}
_LOCS: dict[Loc, Loc] = {}  # every document's ("spec", "served_entities", 0, "name") is one tuple
_MAX_LOCS = 100_000  # beyond this (unusual keys by the thousand), locations are simply not shared


def _loc(loc: Loc) -> Loc:
    return _shared(_LOCS, loc)


def _shared(table: dict[Any, Any], value: Any) -> Any:
    """The one object `table` keeps equal to `value` (kept from now on, while the table is not full)."""
    found = table.get(value)
    if found is not None:
        return found
    if len(table) < _MAX_LOCS:
        table[value] = value
    return value


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


class _Refused(yaml.MarkedYAMLError):
    """Found while composing (too deep, too big, a bad alias); `problem` is the whole user message."""


class _Composer:
    """Builds yaml.nodes from parser events without recursion, bounding depth and size.

    The same job as PyYAML's Composer (tags resolved the same way, aliases share nodes), but
    iterative: the events are pulled lazily, so composing stops at the first node past a limit and
    the rest of a hostile file is never even parsed.
    """

    def __init__(self, *, braced: bool = False) -> None:
        self.resolver = _RESOLVER
        self.braced = braced  # the text's placeholders were protected (`_BRACED`): put their braces back

    def documents(self, events: Iterable[yaml.Event]) -> Iterator[Node]:
        stream = iter(events)
        next(stream)  # StreamStartEvent
        for event in stream:
            if isinstance(event, StreamEndEvent):
                return
            # DocumentStartEvent, then one node, then DocumentEndEvent
            yield self._document(stream)
            next(stream)

    def _document(self, stream: Iterator[Any]) -> Node:
        # `stream` holds PyYAML's events, dispatched below on their exact class (`kind is ...`),
        # which a type checker does not narrow on: they are `Any` here.
        anchors: dict[str, Node] = {}
        stack: list[list[Any]] = []  # [collection node, pending mapping key or None]
        count = 0
        for event in stream:
            kind = type(event)
            if kind is SequenceEndEvent or kind is MappingEndEvent:
                node = stack.pop()[0]
                node.end_mark = event.end_mark
                if not stack:
                    return node
                continue  # attached to its parent when it started
            elif kind is AliasEvent:
                aliased = anchors.get(event.anchor)
                if aliased is None:
                    raise _Refused(problem=f"alias '*{event.anchor}' names no anchor defined before it; define "
                                           f"'&{event.anchor}' first, or write the value out",
                                   problem_mark=event.start_mark)
                node = aliased
            else:
                count += 1
                if len(stack) > MAX_DEPTH:
                    raise _Refused(problem=f"nesting deeper than {MAX_DEPTH} levels; manifests are never this "
                                         "deep: flatten it", problem_mark=event.start_mark)
                if count > MAX_NODES_PER_DOCUMENT:
                    raise _Refused(problem=f"document holds more than {MAX_NODES_PER_DOCUMENT} values; a manifest "
                                         "is far smaller: split it or remove the data",
                                 problem_mark=event.start_mark)
                anchor = event.anchor
                if anchor is not None and anchor in anchors:
                    first = anchors[anchor].start_mark
                    raise _Refused(problem=f"anchor '&{anchor}' is defined twice (first at line {first.line + 1}); "
                                           "rename one", problem_mark=event.start_mark)
                tag = event.tag
                if kind is ScalarEvent:
                    if tag is None or tag == "!":
                        tag = self.resolver.resolve(ScalarNode, event.value, event.implicit)
                    value = event.value.translate(_RESTORE) if self.braced else event.value
                    node = ScalarNode(tag, value, event.start_mark, event.end_mark, style=event.style or None)
                else:
                    node_class = SequenceNode if kind is SequenceStartEvent else MappingNode
                    assert kind is SequenceStartEvent or kind is MappingStartEvent
                    if tag is None or tag == "!":
                        tag = self.resolver.resolve(node_class, None, event.implicit)
                    node = node_class(tag, [], event.start_mark, None, flow_style=event.flow_style)
                if anchor is not None:
                    anchors[anchor] = node
                if kind is not ScalarEvent:
                    self._attach(stack, node)
                    stack.append([node, None])
                    continue
            if not stack:
                return node
            self._attach(stack, node)
        raise AssertionError("event stream ended inside a document")  # the parser never does this

    @staticmethod
    def _attach(stack: list[list[Any]], node: Node) -> None:
        if not stack:
            return
        top = stack[-1]
        parent = top[0]
        if isinstance(parent, SequenceNode):
            parent.value.append(node)
        elif top[1] is None:
            top[1] = node
        else:
            parent.value.append((top[1], node))
            top[1] = None


class _TooDeep(Exception):
    pass


class _DocumentBuilder:
    """Builds one document's values from its node graph, collecting problems instead of raising."""

    def __init__(self, path: str, index: int, variables: Mapping[str, str] | None, problems: list[Problem]):
        self.path = path
        self.variables = variables  # None: no `${...}` substitution at all (variable files)
        self.problems = problems
        self.nodes = 0
        self.doc: SourceDocument | None = None
        self.index = index

    def build(self, root: Node) -> SourceDocument | None:
        self.doc = SourceDocument(self.path, self.index, None, _pos(root))
        try:
            self.doc.data = self._value(root, (), 0)
        except _TooDeep:
            return None
        if self.nodes > MAX_NODES_PER_DOCUMENT:
            return None
        return self.doc

    def _fail(self, node: Node, message: str, loc: Loc | None = None) -> None:
        pos = _pos(node)
        self.problems.append(Problem(message, path=self.path, line=pos.line, col=pos.col))
        if loc is not None and self.doc is not None:
            self.doc.flagged |= {loc}

    def _value(self, node: Node, loc: Loc, depth: int) -> Any:
        assert self.doc is not None
        self.nodes += 1
        if self.nodes == MAX_NODES_PER_DOCUMENT + 1:
            self._fail(node, f"YAML aliases expand this document to more than {MAX_NODES_PER_DOCUMENT} values; "
                             "write the values out instead of repeating aliases")
        if self.nodes > MAX_NODES_PER_DOCUMENT:
            return None
        if depth > MAX_DEPTH:  # only reachable through aliases: the composer bounds plain nesting
            self._fail(node, f"YAML aliases nest this document deeper than {MAX_DEPTH} levels; write the "
                             "values out")
            raise _TooDeep
        if loc not in self.doc.values:  # a mapping's values are recorded by `_mapping`
            self.doc.values[loc] = _packed(node)
        if isinstance(node, MappingNode):
            return self._mapping(node, loc, depth)
        if isinstance(node, SequenceNode):
            if node.tag != _CORE + "seq":
                return self._bad_tag(node, loc)
            return [self._value(item, _loc(loc + (i,)), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node, loc)

    def _mapping(self, node: MappingNode, loc: Loc, depth: int) -> dict[str, Any] | None:
        assert self.doc is not None
        if node.tag != _CORE + "map":
            self._bad_tag(node, loc)
            return None
        result: dict[str, Any] = {}
        first_seen: dict[str, Position] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _CORE + "merge":
                self._fail(key_node, "YAML merge keys ('<<') are not supported; write the fields out")
                self.doc.incomplete |= {loc}
                continue
            if not isinstance(key_node, ScalarNode):
                self._fail(key_node, "mapping keys must be plain text; a list or mapping cannot be a key")
                self.doc.incomplete |= {loc}
                continue
            # Keys are always strings in this format: use the text as written, so `on:` or `1:`
            # stay "on" and "1" instead of YAML 1.1's True and 1.
            key = sys.intern(key_node.value) if len(key_node.value) <= SHARED_STRING_CHARS else key_node.value
            child = _loc(loc + (key,))
            if key in first_seen:
                self._fail(key_node, f"duplicate key '{key}' (first set at line {first_seen[key].line}); "
                                     "remove one of them")
                continue
            first_seen[key] = _pos(key_node)
            self.doc.keys[child] = _packed(key_node)
            self.doc.values[child] = _packed(value_node)
            result[key] = self._value(value_node, child, depth + 1)
        return result

    def _bad_tag(self, node: Node, loc: Loc) -> None:
        self._fail(node, f"YAML tag '{_show_tag(node.tag)}' is not allowed; manifests use plain YAML values "
                         "only: remove the tag", loc)
        return None

    def _scalar(self, node: Node, loc: Loc) -> Any:
        assert isinstance(node, ScalarNode)
        if node.tag not in _SCALAR_TAGS:
            return self._bad_tag(node, loc)
        if node.tag == _CORE + "timestamp":
            return node.value  # a date-looking value is a string to us, as JSON would see it
        if node.tag == _CORE + "str" and ("$" not in node.value or self.variables is None):
            # Short values repeat across documents ("Small", "champion", "reconciler/v1"): one string each.
            return sys.intern(node.value) if len(node.value) <= SHARED_STRING_CHARS else node.value
        if node.tag != _CORE + "str":
            return _scalar_value(node)
        text, ok = self._substitute(node, loc)
        if ok and text and node.style is None and _VAR.fullmatch(node.value):
            # An unquoted `${var.x}` takes the type of what it stands for, as if written there
            # (`--var pct=90` gives 90, `--var on=true` gives true); an empty value stays "".
            tag = _RESOLVER.resolve(ScalarNode, text, (True, False))
            if tag in _SCALAR_TAGS and tag != _CORE + "timestamp":
                return _scalar_value(ScalarNode(tag, text))
        return text

    def _substitute(self, node: ScalarNode, loc: Loc) -> tuple[str, bool]:
        ok = True
        # An environment value may be a credential (a password with a '$' in it): never quote it.
        hidden = "environment_vars" in loc

        def replace(match: re.Match[str]) -> str:
            nonlocal ok
            text = match.group(0)
            if text == "$${":
                return "${"
            if text == "${":
                ok = False
                rest = "this value" if hidden else f"'{node.value[match.start():][:40]}'"
                self._fail(node, f"{rest} opens '${{' but never closes it; write ${{var.NAME}}, or $${{ for a "
                                 "literal '${'", loc)
                return text
            inner = match.group(1)
            name = _VAR_NAME.fullmatch(inner)
            if not name:
                ok = False
                what = "this value has a '${...}' that" if hidden else f"'${{{inner}}}'"
                self._fail(node, f"{what} is not a variable reference; write ${{var.NAME}}, "
                                 "or $${ for a literal '${'", loc)
                return text
            assert self.variables is not None and self.doc is not None
            self.doc.substituted |= {loc}
            if name.group(1) not in self.variables:
                ok = False
                self._fail(node, f"variable '{name.group(1)}' is not defined; pass --var {name.group(1)}=VALUE, "
                                 f"add it to a --var-file, or set RECONCILER_VAR_{name.group(1)}", loc)
                return text
            return self.variables[name.group(1)]

        return _VAR.sub(replace, node.value), ok


def _scalar_value(node: ScalarNode) -> Any:
    """A null, bool, int or float scalar's value, as `safe_load` constructs it."""
    return _SCALARS.yaml_constructors[node.tag](_SCALARS, node)


def _decode(path: str, raw: bytes, problems: list[Problem]) -> str | None:
    if len(raw) > MAX_FILE_BYTES:
        problems.append(Problem(f"file is {len(raw) / 1048576:.1f} MiB; manifest files over "
                                f"{MAX_FILE_BYTES // 1048576} MiB are refused (split it)", path=path, line=1, col=1))
        return None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        problems.append(Problem("file is UTF-16 text; save it as UTF-8", path=path, line=1, col=1))
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
        col = len(before[before.rfind(b"\n") + 1:].decode("utf-8", "replace")) + 1
        problems.append(Problem(f"file is not UTF-8 text (byte 0x{raw[exc.start]:02x}); save it as UTF-8",
                                path=path, line=line, col=col))
        return None


# PyYAML's wording for the mistakes people make most, said in terms of the fix.
_SYNTAX_HINTS = (
    ("expected <block end>, but found", "this line is indented differently from the lines around it; "
                                        "align it with its sibling keys"),
    ("mapping values are not allowed here", "unexpected ':'; quote a value that contains ': ', or fix the "
                                            "indentation"),
    ("could not find expected ':'", "expected 'key: value' here; add the missing ':' or fix the indentation"),
)


def _yaml_error_problem(path: str, text: str, exc: yaml.YAMLError) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        line, col = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        if isinstance(exc.character, int):
            message = (f"control character U+{exc.character:04X} is not allowed in YAML text; remove it "
                       "(a pasted terminal colour code?)")
        else:
            message = f"unreadable character ({exc.reason}); save the file as UTF-8 text"
        return Problem(message, path=path, line=line, col=col)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = (getattr(exc, "problem", None) or str(exc).splitlines()[0]).translate(_RESTORE)
    if isinstance(exc, _Refused):
        return Problem(problem, path=path, line=line, col=col)
    context = getattr(exc, "context", None) or ""
    context_mark = getattr(exc, "context_mark", None)
    if "'\\t'" in problem:
        message = "tab character where YAML expects indentation or a value; indent with spaces only"
    elif "end of stream" in problem and context_mark is not None and "quoted scalar" in context:
        line, col = context_mark.line + 1, context_mark.column + 1
        message = "this quoted string is never closed; add the closing quote"
    elif "<stream end>" in problem and context_mark is not None and \
            context in ("while parsing a flow sequence", "while parsing a flow mapping"):
        line, col = context_mark.line + 1, context_mark.column + 1
        opening, closing = ("{", "}") if "mapping" in context else ("[", "]")
        message = f"this '{opening}' is never closed; add the matching '{closing}'"
    elif "<stream end>" in problem:
        message = "the file ends where a value is still expected; close every '[' and '{', or finish the value"
    else:
        hint = next((h for p, h in _SYNTAX_HINTS if p in problem), None)
        message = f"YAML syntax error: {hint}" if hint else \
            f"YAML syntax error: {problem}" + (f" ({context})" if context else "") + \
            "; check the quoting and indentation here"
    return Problem(message, path=path, line=line, col=col)


def _read(path: str, text: str, loader: type, variables: Mapping[str, str] | None,
          problems: list[Problem]) -> tuple[list[SourceDocument], yaml.YAMLError | None]:
    documents: list[SourceDocument] = []
    braced = "${" in text and _OPEN not in text and _CLOSE not in text
    if braced:
        text = _BRACED.sub(lambda m: f"${_OPEN}{m[1]}{_CLOSE}", text)
    try:
        for index, root in enumerate(_Composer(braced=braced).documents(yaml.parse(text, Loader=loader))):
            if index == MAX_DOCUMENTS_PER_FILE:
                raise _Refused(problem=f"file holds more than {MAX_DOCUMENTS_PER_FILE} documents; split it into "
                                       "several files", problem_mark=root.start_mark)
            if isinstance(root, ScalarNode) and root.tag == _CORE + "null":
                continue  # an empty document (e.g. a trailing `---`) is nothing, as in kubectl
            document = _DocumentBuilder(path, index, variables, problems).build(root)
            if document is not None:
                documents.append(document)
    except yaml.YAMLError as exc:
        return documents, exc
    return documents, None


def read_documents(path: str, raw: bytes, variables: Mapping[str, str] | None,
                   problems: list[Problem], *, allow_empty: bool = False) -> list[SourceDocument]:
    """All non-empty documents of one file; problems are appended, never raised.

    `variables` fill `${var.NAME}` placeholders; None leaves every value as written.
    """
    text = _decode(path, raw, problems)
    if text is None:
        return []
    local: list[Problem] = []
    # libyaml accepts a tab after ':' or inside a plain value, where PyYAML's own parser refuses it;
    # a file with a tab goes to the pure-Python parser so the verdict never depends on the build.
    fast = _FAST_LOADER if _FAST_LOADER is not None and "\t" not in text else None
    documents, error = _read(path, text, fast or _PURE_LOADER, variables, local)
    if error is not None and fast is not None and not isinstance(error, _Refused):
        local = []  # say it the way the pure-Python parser does, whichever parser found it
        documents, error = _read(path, text, _PURE_LOADER, variables, local)
    problems += local
    if error is not None:
        problems.append(_yaml_error_problem(path, text, error))
    elif not documents and not local and not allow_empty:
        problems.append(Problem("file holds no YAML documents; write a manifest or remove the file",
                                path=path, line=1, col=1))
    return documents
