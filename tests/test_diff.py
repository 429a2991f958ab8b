"""diff.py, table-driven: two normalised objects in, the field changes a reviewer reads out.

`before` is a real answer (tests/fixtures/real_api/endpoint_create_req_01.json, two served entities
90/10, as GET shows it once READY) normalised; each case edits a copy into `after`."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from fixtures.real_api import capture

from reconciler.diff import diff
from reconciler.normalize import live_endpoint
from reconciler.redact import HIDDEN


def before() -> dict[str, Any]:
    body = capture("endpoint_create_req_01")
    return live_endpoint({"name": body["name"], "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
                          "config": body["config"], "tags": [{"key": "team", "value": "ads"}]})


def edited(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    after = copy.deepcopy(before())
    edit(after)
    return after


def set_version(state: dict[str, Any]) -> None:
    state["served_entities"]["challenger"]["entity_version"] = "2"


def shift_traffic(state: dict[str, Any]) -> None:
    state["traffic"] = {"current": 50, "challenger": 50}


def add_entity(state: dict[str, Any]) -> None:
    state["served_entities"]["canary"] = {"entity_name": "catalog.schema.model-C", "entity_version": "1"}


def remove_entity(state: dict[str, Any]) -> None:
    del state["served_entities"]["challenger"]


def add_gateway(state: dict[str, Any]) -> None:
    state["ai_gateway"] = {"rate_limits": [{"calls": 10, "key": "user", "renewal_period": "minute"}]}


def add_env_vars(state: dict[str, Any]) -> None:
    state["served_entities"]["current"]["environment_vars"] = {"MODE": "fast", "OPENAI_API_KEY": "sk-live-abcdefghijklmnop"}


def retag(state: dict[str, Any]) -> None:
    state["tags"] = {"owner": "x", "cost": "1"}  # every key changed: still one line per key


def number_as_text(state: dict[str, Any]) -> None:
    state["served_entities"]["current"]["scale_to_zero_enabled"] = "true"


CASES: list[tuple[str, Callable[[dict[str, Any]], None], list[tuple[str, Any, Any]]]] = [
    ("a version moves: keyed collections in brackets, records with dots", set_version,
     [("served_entities[challenger].entity_version", "1", "2")]),
    ("a traffic shift: one line per route", shift_traffic,
     [("traffic[challenger]", 10, 50), ("traffic[current]", 90, 50)]),
    ("a new entity reads as its fields, one per line", add_entity,
     [("served_entities[canary].entity_name", None, "catalog.schema.model-C"),
      ("served_entities[canary].entity_version", None, "1")]),
    ("a removed entity reads as its fields", remove_entity,
     [("served_entities[challenger].entity_name", "catalog.schema.model-B", None),
      ("served_entities[challenger].entity_version", "1", None),
      ("served_entities[challenger].scale_to_zero_enabled", True, None),
      ("served_entities[challenger].workload_size", "Small", None)]),
    ("a list without identity (rate limits) is compared whole", add_gateway,
     [("ai_gateway.rate_limits", None, [{"calls": 10, "key": "user", "renewal_period": "minute"}])]),
    ("a plain credential in an environment variable is never shown", add_env_vars,
     [("served_entities[current].environment_vars[MODE]", None, "fast"),
      ("served_entities[current].environment_vars[OPENAI_API_KEY]", None, HIDDEN)]),
    ("a map whose keys all changed still reads key by key", retag,
     [("tags[cost]", None, "1"), ("tags[owner]", None, "x"), ("tags[team]", "ads", None)]),
    ("a type change is a change", number_as_text,
     [("served_entities[current].scale_to_zero_enabled", True, "true")]),
]


@pytest.mark.parametrize(("reason", "edit", "expected"), CASES, ids=[c[0] for c in CASES])
def test_diff(reason: str, edit: Callable[[dict[str, Any]], None], expected: list[tuple[str, Any, Any]]) -> None:
    changes = diff(before(), edited(edit))
    assert [(c.path, c.before, c.after) for c in changes] == expected
    assert [c.path for c in changes] == sorted(c.path for c in changes)


def test_equal_objects_have_no_changes() -> None:
    assert diff(before(), before()) == []


def test_reordered_answers_normalise_to_no_changes() -> None:
    """Rule 1 seen from the diff: the same endpoint with its lists the other way round."""
    body = capture("endpoint_create_req_01")
    config = copy.deepcopy(body["config"])
    config["served_entities"].reverse()
    config["traffic_config"]["routes"].reverse()
    reordered = live_endpoint({"name": body["name"], "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
                               "config": config, "tags": [{"key": "team", "value": "ads"}]})
    assert diff(before(), reordered) == []


def test_changes_serialise_for_the_plan_file() -> None:
    change = diff(before(), edited(set_version))[0]
    assert change.to_json() == {"path": "served_entities[challenger].entity_version", "before": "1", "after": "2"}
