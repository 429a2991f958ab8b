"""The pure half of reconciler/rollout.py: traffic splits, targets, the marker, the endpoint as it
was before an unfinished rollout, and what the plan says about it. Table tests, each with its reason."""

from __future__ import annotations

import pytest

from reconciler import rollout
from reconciler.errors import ReconcilerError
from reconciler.kinds import serving_endpoint
from reconciler.manifests.model import Rollout
from reconciler.terms import ROLLOUT_TAG

MODEL = "main.agents.support_agent"


def entity(version, **fields):
    return {"entity_name": MODEL, "entity_version": str(version), "environment_vars": {}, **fields}


def endpoint(entities, traffic, tags=None):
    return {"served_entities": entities, "traffic": traffic, "tags": tags or {}, "route_optimized": False}


def target(share, new="champion-v4"):
    return rollout.Target("champion", "champion", new, "3", "4", share, entity(4))


@pytest.mark.parametrize("traffic, share, percent, expected, reason", [
    ({"champion": 90, "challenger": 10}, 90, 50, {"champion": 45, "challenger": 10, "champion-v4": 45},
     "the issue's example: step 50 of a new champion on a 90/10 endpoint gives 45/45/10"),
    ({"champion": 90, "challenger": 10}, 90, 10, {"champion": 81, "challenger": 10, "champion-v4": 9},
     "10% of 90"),
    ({"champion": 90, "challenger": 10}, 90, 100, {"champion": 0, "challenger": 10, "champion-v4": 90},
     "the last step: the old entity at 0%, still there until the final config"),
    ({"champion": 5, "other": 95}, 5, 50, {"champion": 2, "other": 95, "champion-v4": 3},
     "2.5 rounds half up, and the shares still add up to 100"),
    ({"champion": 90, "challenger": 10, "champion-v4": 45}, 90, 10, {"champion": 81, "challenger": 10, "champion-v4": 9},
     "an earlier split of the new entity is replaced, not added to"),
    ({"champion": 0, "main": 100}, 0, 50, {"champion": 0, "main": 100, "champion-v4": 0},
     "an entity without traffic gives none"),
])
def test_split(traffic, share, percent, expected, reason):
    routes = rollout.split(traffic, target(share), percent)
    assert routes == expected, reason
    assert sum(routes.values()) == sum(v for k, v in traffic.items() if k != "champion-v4"), reason


def test_targets_by_name_and_the_default_names_paired_by_model():
    view = endpoint({"champion": entity(3), "challenger": entity(4), "support_agent-1": entity(1, entity_name="m.s.x")},
                    {"champion": 80, "challenger": 10, "support_agent-1": 10})
    wanted = endpoint({"champion": entity(4), "challenger": entity(4), "support_agent-2": entity(2, entity_name="m.s.x")},
                      {"champion": 80, "challenger": 10, "support_agent-2": 10})
    found = rollout.targets(view, wanted)
    assert [(t.entity, t.name, t.new, t.version_from, t.version_to, t.share) for t in found] == [
        ("champion", "champion", "champion-v4", "3", "4", 80),  # same name: a temporary name during the steps
        ("support_agent-1", "support_agent-2", "support_agent-2", "1", "2", 10),  # the default name is new already
    ]
    assert rollout.targets(view, view) == []


@pytest.mark.parametrize("entity_name, version, taken, expected, reason", [
    ("champion", "4", set(), "champion-v4", "the entity and its new version"),
    ("champion", "4", {"champion-v4"}, "champion-v4-2", "numbered when a served entity has the name"),
    ("c" * 63, "12", set(), "c" * 59 + "-v12", "cut to the 63 characters a served entity name may have"),
    ("champion", "models:/m-8c3f4d5e6f7a4b80912304c5d6e7f809", set(), "champion-vN",
     "a version still to be registered has no number yet (apply derives the name again after registering)"),
])
def test_temporary_name(entity_name, version, taken, expected, reason):
    assert rollout.temporary_name(entity_name, version, taken) == expected, reason


def test_the_marker_is_read_back_and_a_foreign_one_is_refused():
    marker = rollout.Marker("champion", "champion-v4", "4", 50)
    api = {"tags": [{"key": ROLLOUT_TAG, "value": marker.value()}]}
    assert rollout.read_marker(api) == marker
    failed = rollout.Marker("champion", "champion-v4", "4", 0, failed=True)
    assert rollout.read_marker({"tags": [{"key": ROLLOUT_TAG, "value": failed.value()}]}) == failed
    assert rollout.read_marker({"tags": []}) is None
    for value in ("entity=champion new=../x version=4 percent=50", "entity=champion new=c version=4 percent=150",
                  "step 2 of 3", "entity=champion new=c version=4 percent=5 done"):
        with pytest.raises(ReconcilerError, match="not a rollout marker"):
            rollout.read_marker({"tags": [{"key": ROLLOUT_TAG, "value": value}]}, "serving_endpoint.x")


def test_before_folds_the_new_entity_back_and_drops_the_marker():
    marker = rollout.Marker("champion", "champion-v4", "4", 50)
    live = endpoint({"champion": entity(3), "challenger": entity(4), "champion-v4": entity(4)},
                    {"champion": 45, "challenger": 10, "champion-v4": 45},
                    {"team": "support", ROLLOUT_TAG: marker.value()})
    view = rollout.before(live, marker)
    assert view["served_entities"].keys() == {"champion", "challenger"}
    assert view["traffic"] == {"champion": 90, "challenger": 10}
    assert view["tags"] == {"team": "support"}
    assert live["traffic"]["champion-v4"] == 45  # the live value itself is left alone
    final = endpoint({"champion": entity(4), "challenger": entity(4)}, {"champion": 90, "challenger": 10},
                     {ROLLOUT_TAG: marker.value()})
    assert rollout.before(final, marker)["served_entities"] == final["served_entities"]  # the final config landed


def spec(**changes):
    return rollout.spec_json(Rollout.model_validate({
        "smoke": [{"name": "answers", "request": {"messages": [{"role": "user", "content": "hi"}]}}],
        "steps": [10, 50, 100], "pause": "5m",
        "analysis": {"max_error_rate": 0.01, "min_requests": 20}, **changes}))


def api_of(live, marker=None):
    """The API JSON of a normalised endpoint (what GET returns), for `serving_endpoint.plan`."""
    tags = dict(live["tags"], **({ROLLOUT_TAG: marker.value()} if marker else {}))
    return {"name": "support-agent", "id": "e1", "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
            "config": {"served_entities": [{"name": n, **f} for n, f in live["served_entities"].items()],
                       "traffic_config": {"routes": [{"served_entity_name": n, "traffic_percentage": p}
                                                     for n, p in live["traffic"].items()]}},
            "tags": [{"key": k, "value": v} for k, v in tags.items()]}


DESIRED = {"served_entities": {"champion": {"entity_name": MODEL, "entity_version": "4"},
                               "challenger": {"entity_name": MODEL, "entity_version": "4"}},
           "traffic": {"champion": 90, "challenger": 10}, "tags_present": {}}
BEFORE = endpoint({"champion": entity(3), "challenger": entity(4)}, {"champion": 90, "challenger": 10})


def test_a_version_change_under_a_rollout_is_planned_as_one_rollout_operation():
    change = serving_endpoint.plan("support-agent", DESIRED, api_of(BEFORE), None,
                                   rollout=Rollout.model_validate({"steps": [10, 50, 100], "pause": "5m"}))
    assert [op.name for op in change.operations] == ["rollout"]
    assert [d.path for d in change.diff] == ["served_entities[champion].entity_version"]
    assert change.rollout["expected"] == {"pause_seconds": 900.0, "config_updates": 5}
    assert [s["traffic"] for s in change.rollout["targets"][0]["steps"]][1] == \
        {"champion": 45, "challenger": 10, "champion-v4": 45}
    unchanged = serving_endpoint.plan("support-agent", {**DESIRED, "served_entities": {
        "champion": {"entity_name": MODEL, "entity_version": "3"}, "challenger": DESIRED["served_entities"]["challenger"]}},
        api_of(BEFORE), None, rollout=Rollout.model_validate({"steps": [100]}))
    assert unchanged.operations == [] and unchanged.rollout is None  # a rollout only where a version changes


@pytest.mark.parametrize("percent, wanted_version, ops, note, reason", [
    (50, "4", ["rollout"], "rollout in progress: step 2 of 3 (champion → version 4 as champion-v4); apply resumes it",
     "the manifests still ask for version 4: resumed from its recorded step"),
    (0, "4", ["rollout"], "rollout in progress: smoke queries (champion → version 4 as champion-v4); apply resumes it",
     "stopped before its smoke queries passed: resumed from them"),
    (50, "3", ["rollback_rollout"], "the manifests no longer ask for it: apply rolls it back first",
     "the manifests went back to version 3: the rollout is rolled back, nothing else is needed"),
    (50, "5", ["rollback_rollout", "rollout"], "the manifests no longer ask for it: apply rolls it back first",
     "another version is asked for: the old rollout is rolled back, then the new one rolls out"),
])
def test_an_unfinished_rollout_is_resumed_or_rolled_back(percent, wanted_version, ops, note, reason):
    marker = rollout.Marker("champion", "champion-v4", "4", percent)
    live = endpoint({"champion": entity(3), "challenger": entity(4), "champion-v4": entity(4)},
                    rollout.split(BEFORE["traffic"], target(90), percent))
    desired = {**DESIRED, "served_entities": {**DESIRED["served_entities"],
                                              "champion": {"entity_name": MODEL, "entity_version": wanted_version}}}
    change = serving_endpoint.plan("support-agent", desired, api_of(live, marker), None,
                                   rollout=Rollout.model_validate({"steps": [10, 50, 100], "pause": "5m"}))
    assert [op.name for op in change.operations] == ops, reason
    assert any(note in n for n in change.notes), (reason, change.notes)
    assert all(not d.path.startswith(("tags", "traffic[champion-v4]", "served_entities[champion-v4]"))
               for d in change.diff), "the marker and the new entity are never a diff"
    assert change.rollout["in_progress"]["step"] == (2 if percent == 50 else 0)


def test_a_finished_rollout_whose_marker_is_left_only_removes_it():
    marker = rollout.Marker("champion", "champion-v4", "4", 100)
    live = endpoint({"champion": entity(4), "challenger": entity(4)}, {"champion": 90, "challenger": 10})
    change = serving_endpoint.plan("support-agent", DESIRED, api_of(live, marker), None,
                                   rollout=Rollout.model_validate({"steps": [10, 50, 100]}))
    assert [op.name for op in change.operations] == ["finish_rollout"] and change.diff == []


def test_spec_json_makes_every_default_explicit():
    assert spec() == {
        "smoke": [{"name": "answers", "request": {"messages": [{"role": "user", "content": "hi"}]},
                   "expect": {"status": 200, "max_latency_ms": None, "json": [], "no_span_errors": True}}],
        "steps": [10, 50, 100], "pause_seconds": 300.0, "on_failure": "rollback",
        "analysis": {"max_error_rate": 0.01, "max_p99_latency_ms": None, "min_requests": 20, "no_traffic": "wait",
                     "no_traffic_timeout_seconds": 1800.0, "interval_seconds": 60.0}}
    assert spec(analysis={"max_error_rate": 0.1, "no_traffic": "pass"})["analysis"]["no_traffic_timeout_seconds"] == 0
