"""The field-semantics table (normalize.FIELD_RULES) and the normalisation it drives, table-driven.

Pure: desired and live dicts in, effective state, diff and PUT body out. Live answers are shaped
like shared/reference/real-api/ (the provisioned-throughput entity is capture 02's, cut down; tests
do not read shared/)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.diff import diff
from reconciler.normalize import (
    CONDITIONS,
    FIELD_RULES,
    MANAGED_ENTITY_FIELDS,
    Semantics,
    comparable,
    config_payload,
    live_entity,
    overlay,
)

# real-api/endpoint_create_resp_02.json, served entity (created with only the throughput band).
PT_LIVE = {"name": "llama2-7b-1", "entity_name": "takaakiyayoi_catalog.default.llama2-7b", "entity_version": "1",
           "min_provisioned_throughput": 0, "max_provisioned_throughput": 970, "workload_size": "Small",
           "workload_type": "GPU_MEDIUM", "dbus": 24.0, "min_dbus": 0.0, "max_dbus": 24.0,
           "state": {"deployment": "DEPLOYMENT_CREATING"}, "creator": "someone@example.com",
           "creation_timestamp": 1699420000000}


def test_every_row_names_its_source_and_a_known_condition() -> None:
    for rule in FIELD_RULES:
        assert len(rule.source) > 20, rule.field
        assert rule.when in CONDITIONS, rule.field
        if rule.semantics in (Semantics.DEPRECATED, Semantics.EXCLUSIVE, Semantics.REQUIRED):
            assert rule.fix, f"{rule.field}: validate needs the fix"
        if rule.entity_field and rule.semantics not in (Semantics.READ_ONLY,):
            assert rule.entity_field in MANAGED_ENTITY_FIELDS, f"{rule.field} is not in the manifest format"


def endpoint(**entity: Any) -> dict[str, Any]:
    return {"served_entities": {"current": entity}, "traffic": {"current": 100}}


CASES = [
    # (reason, desired entity, live entity as GET answers it, expected diff paths, expected PUT entity)
    ("a default left out is no change when live holds it (workload_type CPU)",
     {"entity_name": "m.s.a", "entity_version": "1", "workload_type": "CPU", "workload_size": "Small",
      "scale_to_zero_enabled": True},
     {"entity_name": "m.s.a", "entity_version": "1", "workload_type": "CPU", "workload_size": "Small",
      "scale_to_zero_enabled": True}, [],
     {"entity_name": "m.s.a", "entity_version": "1", "workload_type": "CPU", "workload_size": "Small",
      "scale_to_zero_enabled": True}),
    ("a managed field left out is reset (git is the truth)",
     {"entity_name": "m.s.a", "entity_version": "1", "workload_type": "CPU", "workload_size": "Small",
      "scale_to_zero_enabled": True},
     {"entity_name": "m.s.a", "entity_version": "1", "workload_type": "GPU_SMALL", "workload_size": "Small",
      "scale_to_zero_enabled": True, "max_provisioned_throughput": 100},
     ["served_entities[current].max_provisioned_throughput", "served_entities[current].workload_type"],
     {"entity_name": "m.s.a", "entity_version": "1", "workload_type": "CPU", "workload_size": "Small",
      "scale_to_zero_enabled": True}),
    ("server-filled values of provisioned throughput are no change and never resent (capture 02)",
     {"entity_name": PT_LIVE["entity_name"], "entity_version": "1", "min_provisioned_throughput": 0,
      "max_provisioned_throughput": 970},
     PT_LIVE, [],
     {"entity_name": PT_LIVE["entity_name"], "entity_version": "1", "min_provisioned_throughput": 0,
      "max_provisioned_throughput": 970}),
    ("a workload type the manifest states on provisioned throughput is managed and sent",
     {"entity_name": PT_LIVE["entity_name"], "entity_version": "1", "min_provisioned_throughput": 0,
      "max_provisioned_throughput": 970, "workload_type": "GPU_XLARGE_8"},
     PT_LIVE, ["served_entities[current].workload_type"],
     {"entity_name": PT_LIVE["entity_name"], "entity_version": "1", "min_provisioned_throughput": 0,
      "max_provisioned_throughput": 970, "workload_type": "GPU_XLARGE_8"}),
    ("a write-only field is sent and never diffed (databricks/cli input_only)",
     {"entity_name": "m.s.a", "entity_version": "1", "workload_type": "CPU", "workload_size": "Small",
      "scale_to_zero_enabled": False, "burst_scaling_enabled": False},
     {"entity_name": "m.s.a", "entity_version": "1", "workload_type": "CPU", "workload_size": "Small",
      "scale_to_zero_enabled": False}, [],
     {"entity_name": "m.s.a", "entity_version": "1", "workload_type": "CPU", "workload_size": "Small",
      "scale_to_zero_enabled": False, "burst_scaling_enabled": False}),
    ("a field this release does not know is kept and resent as the server sent it",
     {"entity_name": "m.s.a", "entity_version": "1", "workload_type": "CPU", "workload_size": "Small",
      "scale_to_zero_enabled": False},
     {"entity_name": "m.s.a", "entity_version": "1", "workload_type": "CPU", "workload_size": "Small",
      "scale_to_zero_enabled": False, "future_field": {"nested": [1, 2]}}, [],
     {"entity_name": "m.s.a", "entity_version": "1", "workload_type": "CPU", "workload_size": "Small",
      "scale_to_zero_enabled": False, "future_field": {"nested": [1, 2]}}),
    ("a size switched to provisioned concurrency: the live size is not sent (SDK docstring)",
     {"entity_name": "m.s.a", "entity_version": "1", "workload_type": "CPU", "min_provisioned_concurrency": 4,
      "max_provisioned_concurrency": 8, "scale_to_zero_enabled": False},
     {"entity_name": "m.s.a", "entity_version": "1", "workload_type": "CPU", "workload_size": "Small",
      "scale_to_zero_enabled": False},
     ["served_entities[current].max_provisioned_concurrency", "served_entities[current].min_provisioned_concurrency"],
     {"entity_name": "m.s.a", "entity_version": "1", "workload_type": "CPU", "min_provisioned_concurrency": 4,
      "max_provisioned_concurrency": 8, "scale_to_zero_enabled": False}),
]


@pytest.mark.parametrize(("reason", "desired", "live", "paths", "sent"), CASES, ids=[c[0] for c in CASES])
def test_normalisation(reason: str, desired: dict[str, Any], live: dict[str, Any], paths: list[str],
                       sent: dict[str, Any]) -> None:
    wanted = endpoint(**desired)
    now = endpoint(**live_entity(live))
    effective = overlay(wanted, now)
    assert [c.path for c in diff(now, comparable(effective))] == paths, reason
    assert config_payload(effective, wanted)["served_entities"] == [{"name": "current", **sent}], reason


def test_read_only_fields_are_not_part_of_the_normalised_shape() -> None:
    assert live_entity(PT_LIVE) == {k: v for k, v in PT_LIVE.items() if k in (
        "entity_name", "entity_version", "min_provisioned_throughput", "max_provisioned_throughput", "workload_size",
        "workload_type")}
