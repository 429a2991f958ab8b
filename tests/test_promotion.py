"""Promotion checks the right entity: an alias moves only when every served entity that follows it
serves the new version, READY and not updating (`registered_model.not_serving`, a pure function of
the endpoint as read). Table tests, one reason per case."""

from __future__ import annotations

import pytest

from reconciler.kinds.registered_model import not_serving

MODEL = "main.agents.support_agent"


def endpoint(champion: str, challenger: str, *, ready: str = "READY", update: str = "NOT_UPDATING"):
    return {"state": {"ready": ready, "config_update": update},
            "config": {"served_entities": [{"name": "champion", "entity_name": MODEL, "entity_version": champion},
                                           {"name": "challenger", "entity_name": MODEL, "entity_version": challenger}]}}


CASES = [
    ("the follower serves it", endpoint("4", "4"), ["champion"], ""),
    ("only the challenger serves it (the issue's run: champion was put back on 3 meanwhile)",
     endpoint("3", "4"), ["champion"], "does not serve version 4 through served entity champion, which follows the "
                                       "alias (it serves main.agents.support_agent version 3)"),
    ("two followers, one behind", endpoint("4", "3"), ["champion", "challenger"],
     "does not serve version 4 through served entity challenger"),
    ("the follower is gone from the config", endpoint("4", "4"), ["canary"],
     "does not serve version 4 through served entity canary"),
    ("still updating", endpoint("4", "4", update="IN_PROGRESS"), ["champion"],
     "does not serve version 4 healthily (ready READY, config_update IN_PROGRESS)"),
    ("not ready", endpoint("4", "4", ready="NOT_READY"), ["champion"], "does not serve version 4 healthily"),
    ("no followers recorded (an older plan): some entity must serve it", endpoint("3", "3"), [],
     "does not serve version 4"),
]


@pytest.mark.parametrize("reason, api, followers, expected", CASES, ids=[c[0] for c in CASES])
def test_not_serving(reason, api, followers, expected):
    got = not_serving(api, MODEL, 4, followers)
    assert got.startswith(expected) if expected else got == "", (reason, got)
