"""Pagination the way Unity Catalog list calls do it: `max_results` and an opaque `page_token`,
`next_page_token` present only while more items remain (the SDK's generators stop when it is
absent: `databricks/sdk/service/catalog.py`, `RegisteredModelsAPI.list`)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any, TypeVar

from reconciler.localworkspace.errors import invalid

T = TypeVar("T")


def query_int(query: dict[str, str], key: str) -> int | None:
    raw = query.get(key)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise invalid(f"Invalid value for {key}: '{raw}' is not an integer") from None


def query_bool(query: dict[str, str], key: str) -> bool:
    return query.get(key, "").lower() == "true"


def page_size(max_results: int | None, *, default: int, limit: int) -> int:
    """The documented rule (`RegisteredModelsAPI.list` docstring): absent or 0 means the server
    default, a positive value is capped at the server limit, a negative one is an error."""
    if max_results is None or max_results == 0:
        return default
    if max_results < 0:
        raise invalid("max_results must be greater than or equal to 0")
    return min(max_results, limit)


def paginate(items: Sequence[tuple[str, T]], query: dict[str, str], *, default: int, limit: int
             ) -> tuple[list[T], str | None]:
    """One page of `items` (sorted (key, item) pairs) after the key named by `page_token`.

    The token names the last key returned rather than an offset, so items added or removed
    between two pages never make a client skip or repeat one.
    """
    size = page_size(query_int(query, "max_results"), default=default, limit=limit)
    after = _decode(query.get("page_token"))
    remaining = [(key, item) for key, item in items if after is None or key > after]
    page = remaining[:size]
    next_token = _encode(page[-1][0]) if len(remaining) > size else None
    return [item for _, item in page], next_token


def _encode(key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": key}).encode()).decode()


def _decode(token: str | None) -> str | None:
    if not token:
        return None
    try:
        decoded: Any = json.loads(base64.urlsafe_b64decode(token.encode()))
        after = decoded["after"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise invalid(f"Invalid page_token: '{token}'") from None
    if not isinstance(after, str):
        raise invalid(f"Invalid page_token: '{token}'")
    return after
