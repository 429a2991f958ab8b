"""Typed reads of JSON request bodies, failing the way the Databricks API fails.

A field of the wrong JSON type is a deserialisation error (400 MALFORMED_REQUEST); a required
field that is absent is 400 INVALID_PARAMETER_VALUE. Every message names the field by its path in
the body (`config.served_entities[1].entity_version`) so a client's error says what to fix.
"""

from __future__ import annotations

from typing import Any

from reconciler.localworkspace.errors import invalid, malformed

JSON_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", list: "an array", dict: "an object",
                   float: "a number"}


def _check(value: Any, expected: type, where: str) -> Any:
    # bool is an int in Python but not in JSON; a float with no fraction is accepted as an integer
    # because JSON has one number type.
    if expected is int and isinstance(value, float) and value.is_integer():
        return int(value)
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise malformed(f"Could not parse request object: field '{where}' must be {JSON_TYPE_NAMES[expected]}, "
                        f"got {json_type(value)}")
    return value


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    for python_type, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
                              (list, "an array"), (dict, "an object")):
        if isinstance(value, python_type):
            return name
    return type(value).__name__


def path_of(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def field(body: dict[str, Any], key: str, expected: type, *, parent: str = "", required: bool = False) -> Any:
    """`body[key]` checked against `expected`; None when absent (or JSON null) and not required."""
    where = path_of(parent, key)
    value = body.get(key)
    if value is None:
        if required:
            raise invalid(f"Missing required field: {where}")
        return None
    return _check(value, expected, where)


def text(body: dict[str, Any], key: str, *, parent: str = "", required: bool = False) -> str | None:
    value = field(body, key, str, parent=parent, required=required)
    if required and value == "":
        raise invalid(f"Missing required field: {path_of(parent, key)}")
    return value


def integer(body: dict[str, Any], key: str, *, parent: str = "", required: bool = False) -> int | None:
    return field(body, key, int, parent=parent, required=required)


def boolean(body: dict[str, Any], key: str, *, parent: str = "") -> bool | None:
    return field(body, key, bool, parent=parent)


def obj(body: dict[str, Any], key: str, *, parent: str = "", required: bool = False) -> dict[str, Any] | None:
    return field(body, key, dict, parent=parent, required=required)


def objects(body: dict[str, Any], key: str, *, parent: str = "", required: bool = False) -> list[dict[str, Any]] | None:
    """A list whose every item is an object."""
    items = field(body, key, list, parent=parent, required=required)
    if items is None:
        return None
    where = path_of(parent, key)
    return [_check(item, dict, path_of(where, i)) for i, item in enumerate(items)]


def texts(body: dict[str, Any], key: str, *, parent: str = "") -> list[str] | None:
    items = field(body, key, list, parent=parent)
    if items is None:
        return None
    where = path_of(parent, key)
    return [_check(item, str, path_of(where, i)) for i, item in enumerate(items)]


def text_map(body: dict[str, Any], key: str, *, parent: str = "") -> dict[str, str] | None:
    mapping = obj(body, key, parent=parent)
    if mapping is None:
        return None
    where = path_of(parent, key)
    return {name: _check(value, str, path_of(where, name)) for name, value in mapping.items()}


def one_of(value: str | None, allowed: tuple[str, ...], where: str) -> str | None:
    if value is not None and value not in allowed:
        raise invalid(f"Invalid value for {where}: '{value}'. Allowed values: {', '.join(allowed)}")
    return value
