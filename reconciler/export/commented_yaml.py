"""A manifest document as YAML text, with its comments: what export writes.

Written by hand rather than by a YAML library's dumper, because comments belong at the end of a
key's line and after a mapping's last key (a `Document`'s `eol` and `after`), and every scalar must
load back as exactly the value it came from (`scalar`; `yaml.safe_load` has the last word). Keys
come in the order the document holds them. Pure; `render` is called by `write.write_export`.
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.export.documents import Document, Loc

# Plain scalars start with a letter, digit or one of `_/.(`, and hold nothing YAML could read as
# a comment, a key, a quote, a flow collection or an escape; `_loads_as_itself` has the last word.
_PLAIN = re.compile(r"[A-Za-z0-9_/.(][^#:'\"`{}\[\]\\\t\n\r]*")


def scalar(value: Any) -> str:
    """One YAML scalar that loads back as exactly `value` (plain when that is safe, else quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text == text.strip() and _loads_as_itself(text):
        return text
    return _double_quoted(text)


def _double_quoted(text: str) -> str:
    """A YAML double-quoted scalar; characters YAML may not carry raw are escaped (as \\x, \\u or
    \\U: JSON's surrogate pairs for characters beyond the BMP would not load back)."""
    out = []
    for char in text:
        if char in '\\"':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _loads_as_itself(text: str) -> bool:
    import yaml

    try:
        return yaml.safe_load(f"k: {text}\n") == {"k": text}
    except yaml.YAMLError:
        return False


def render(doc: Document, *, schema_ref: str | None = None) -> str:
    lines = []
    if schema_ref:
        lines += [f"# yaml-language-server: $schema={schema_ref}", "#"]
    lines += [f"# {_one_line(line)}" for line in doc.header]
    _mapping(lines, doc.data, (), 0, doc)
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _line(text: str, comment: str | None) -> str:
    return f"{text}  # {_one_line(comment)}" if comment else text


def _mapping(lines: list[str], mapping: dict[str, Any], loc: Loc, depth: int, doc: Document) -> None:
    pad = "  " * depth
    for key, value in mapping.items():
        at = loc + (key,)
        head = f"{pad}{scalar(key)}:"
        if isinstance(value, dict) and value:
            lines.append(_line(head, doc.eol.get(at)))
            _mapping(lines, value, at, depth + 1, doc)
        elif isinstance(value, list) and value:
            lines.append(_line(head, doc.eol.get(at)))
            _sequence(lines, value, at, depth + 1, doc)
        else:
            empty = "{}" if isinstance(value, dict) else "[]" if isinstance(value, list) else scalar(value)
            lines.append(_line(f"{head} {empty}", doc.eol.get(at)))
            lines += _notes(doc, at, depth + 1)
    lines += _notes(doc, loc, depth)


def _notes(doc: Document, loc: Loc, depth: int) -> list[str]:
    """The comment lines after a mapping; under `spec`, the list of what was left out."""
    notes = doc.after.get(loc, [])
    if loc == ("spec",) and notes:
        notes = ["Left out on purpose:"] + [f"- {line}" for line in notes]
    return [f"{'  ' * depth}# {_one_line(line)}" for line in notes]


def _sequence(lines: list[str], items: list[Any], loc: Loc, depth: int, doc: Document) -> None:
    pad = "  " * depth
    for i, item in enumerate(items):
        at = loc + (i,)
        if isinstance(item, dict) and item:
            start = len(lines)
            _mapping(lines, item, at, depth + 1, doc)
            lines[start] = f"{pad}- {lines[start][len(pad) + 2:]}"
        elif isinstance(item, list) and item:
            raise ValueError("nested lists do not occur in manifests")
        else:
            empty = "{}" if isinstance(item, dict) else "[]" if isinstance(item, list) else scalar(item)
            lines.append(_line(f"{pad}- {empty}", doc.eol.get(at)))

