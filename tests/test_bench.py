"""`make bench` keeps working: its plan and apply cases, at a few agents and one run each.

Figures are not checked here (timing assertions have no place on a shared machine); the counts
the bench reports are, since they are exact: one GET per object, no writes on a no-change plan,
one config write per endpoint plus one alias move per model on a version bump.
"""

from __future__ import annotations

from bench import cases


def test_plan_case_counts_one_read_per_object_and_no_writes():
    wall, calls, writes = cases.plan_case(agents=4, runs=1)
    assert wall["unit"] == "s" and wall["ratio"] > 0
    # + the secret scope list and key list, the endpoint list (managed endpoints that left the
    # manifests), and SCIM Me (the deploying identity, by default the caller)
    assert calls["figure"] == 2 * 4 + 4 and calls["met"] is True
    assert writes["figure"] == 0 and writes["met"] is True


def test_apply_case_writes_one_config_per_endpoint_and_one_alias_per_model():
    wall, writes, polls = cases.apply_case(agents=3, update_seconds=0.2, runs=1)
    assert writes["figure"] == 6 and writes["met"] is True
    assert polls["figure"] >= 1 and wall["floor"] == 0.2


def test_rollout_case_makes_five_config_updates():
    """Add at 0%, three steps, the final config: the count `make bench` checks, at short pauses."""
    wall, updates = cases.rollout_case(pause_seconds=0.3, update_seconds=0.1, runs=1)
    assert updates["figure"] == 5 and updates["met"] is True
    assert wall["floor"] == 3 * 0.3 + 5 * 0.1 and wall["ratio"] > 0
