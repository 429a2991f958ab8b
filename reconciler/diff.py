"""Field-level differences between two normalised objects, as plain data.

Pure; deepdiff does the walking, this module names the paths the way a reviewer reads them:
records with dots, keyed collections with brackets (`served_entities[current].entity_version`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.normalize import MAPS
from reconciler.redact import hidden
from reconciler.terms import plain_credential


@dataclass(frozen=True)
class FieldChange:
    """One difference: `before` is None when added, `after` is None when removed."""

    path: str
    before: Any
    after: Any

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "before": self.before, "after": self.after}


def _render(parts: list[Any]) -> str:
    text = ""
    parent = None
    for part in parts:
        if parent in MAPS:
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
        parent = part if parent not in MAPS else None
    return text


def _mask(parts: list[Any], value: Any) -> Any:
    """Never show a plain credential that someone put in an environment variable live. `diff`
    hands over leaves only (it flattens whole added or removed subtrees first)."""
    if len(parts) >= 2 and parts[-2] == "environment_vars" and isinstance(value, str):
        if plain_credential(str(parts[-1]), value):
            return hidden(value)
    return value


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
    """All differences, sorted by path. Lists (e.g. rate limits) are compared whole."""
    if before == after:  # most objects of most plans: skip DeepDiff's set-up, ~1 ms an object
        return []
    from deepdiff import DeepDiff

    result = DeepDiff(before, after, view="tree", ignore_order=False, verbose_level=2)
    changes: dict[str, FieldChange] = {}

    def add(parts: list[Any], old: Any, new: Any) -> None:
        # A whole new (or removed) subtree reads better as its leaves, one per line.
        old = None if old == {} and new else old
        new = None if new == {} and old else new
        subtree = new if old is None else old if new is None else None
        if isinstance(subtree, dict) and subtree:
            for key, value in subtree.items():
                add(parts + [key], None if old is None else value, None if new is None else value)
            return
        if isinstance(old, dict) and isinstance(new, dict):
            # DeepDiff reports a mapping whose keys mostly changed as one change of the whole
            # (its threshold_to_diff_deeper): go on down to the leaves, so each key reads as its
            # own line and each value is masked on its own (an environment variable's value is
            # a leaf; `_mask` sees leaves only).
            for key in sorted(old.keys() | new.keys(), key=str):
                if old.get(key) != new.get(key):
                    add(parts + [key], old.get(key), new.get(key))
            return
        path = _render(parts)
        changes[path] = FieldChange(path, _mask(parts, old), _mask(parts, new))

    for kind in ("values_changed", "type_changes", "dictionary_item_added", "dictionary_item_removed",
                 "iterable_item_added", "iterable_item_removed"):
        for level in result.get(kind, []):
            parts = level.path(output_format="list")
            if kind.startswith("iterable"):
                # A list changed: report the whole list, as a person would read it.
                parts = parts[:-1]
                old, new = _lookup(before, parts), _lookup(after, parts)
            else:
                old = None if kind == "dictionary_item_added" else level.t1
                new = None if kind == "dictionary_item_removed" else level.t2
            add(parts, old, new)
    return [changes[k] for k in sorted(changes)]


def _lookup(value: Any, parts: list[Any]) -> Any:
    for part in parts:
        value = value[part]
    return value
