"""The manifest documents export builds, and how a live value is written into one.

A `Document` is one manifest file as data, with the comments that say what was left out and why
(the YAML text is `commented_yaml.render`'s); an `Export` is all of them, with the notes, warnings
and problems of the run. Shared by the kinds' conversions (`export/models.py`,
`export/endpoints.py`): the header every file starts with, and rule 6 of `export/__init__.py`
(`--var` values written back as `${var.NAME}`, a literal `${` escaped as `$${`). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import Problem
from reconciler.terms import UC_THREE_PART

Loc = tuple[str | int, ...]
# The folder of each kind's files, by the manifests' `kind:` (rule 1).
FOLDERS = {"RegisteredModel": "models", "ServingEndpoint": "endpoints"}
ENDPOINTS_DIR = FOLDERS["ServingEndpoint"]
# Lower-case dot-separated names, as Unity Catalog stores them; parts start with a letter or '_'
# so that version numbers and the like ("1.2.3") are never taken for names.
_UC_LIKE = re.compile(r"[a-z_][a-z0-9_-]*(\.[a-z_][a-z0-9_-]*){2}")
_PLACEHOLDER = re.compile(r"\$\{var\.([A-Za-z0-9_-]+)\}")


@dataclass
class Document:
    """One manifest file: its data, and comments that say what was left out and why."""

    kind: str  # "RegisteredModel" | "ServingEndpoint"
    name: str  # metadata.name as written (may hold ${var.NAME})
    data: dict[str, Any]
    header: list[str] = field(default_factory=list)
    eol: dict[Loc, str] = field(default_factory=dict)  # comment at the end of the line of the key at Loc
    after: dict[Loc, list[str]] = field(default_factory=dict)  # comment lines after a mapping's last key

    @property
    def path(self) -> str:
        """Relative path in the output directory."""
        return f"{FOLDERS[self.kind]}/{_PLACEHOLDER.sub(lambda m: '{' + m.group(1) + '}', self.name)}.yaml"

    def note(self, loc: Loc, line: str) -> None:
        self.after.setdefault(loc, []).append(line)


@dataclass
class Export:
    documents: list[Document] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # relative path -> text, for endpoints not exported
    warnings: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # what was asked for and could not be exported
    implied: dict[str, list[str]] = field(default_factory=dict)  # model -> endpoints serving through its aliases


@dataclass(frozen=True)
class ExportOptions:
    pin_versions: bool = False
    variables: Mapping[str, str] = field(default_factory=dict)
    stack: str | None = None


def header(what: str) -> list[str]:
    return [f"{what[0].upper()}{what[1:]}: exported by `reconciler export`.",
            "Comments mark what was left out on purpose: what a manifest leaves out is not managed."]


# -- variables and escaping (rule 6)

class _Templated(str):
    """A value that holds ${var.NAME} placeholders on purpose (not escaped)."""


def _var_for(text: str, variables: Mapping[str, str]) -> str | None:
    for name in sorted(variables):
        if variables[name] and text == variables[name]:
            return f"${{var.{name}}}"
    return None


def template_name(text: str, variables: Mapping[str, str], *, uc: bool) -> str:
    whole = _var_for(text, variables)
    if whole is not None:
        return _Templated(whole)
    if uc and UC_THREE_PART.fullmatch(text):
        parts = [_var_for(part, variables) or part for part in text.split(".")]
        return _Templated(".".join(parts)) if any("${" in p for p in parts) else text
    return text


def template_value(text: str, variables: Mapping[str, str], *, uc: bool) -> str:
    if uc and not _UC_LIKE.fullmatch(text):
        uc = False
    return template_name(text, variables, uc=uc)


def template_location(config: dict[str, Any], variables: Mapping[str, str]) -> dict[str, Any]:
    return {k: (template_name(v, variables, uc=False) if k in ("catalog_name", "schema_name", "table_name_prefix")
                and isinstance(v, str) else v) for k, v in config.items()}


def escape(value: Any) -> Any:
    """`${` in a live value is written `$${` so the loader does not take it for a variable."""
    if isinstance(value, _Templated):
        return str(value)
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):
        return {k: escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escape(v) for v in value]
    return value

