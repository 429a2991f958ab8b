"""`plan --prune` over a workspace of 5,000 managed endpoints lists them with one call.

The serving-endpoints list is not paginated (`ServingEndpointsAPI.list` in databricks-sdk's
service/serving.py makes one GET and yields `endpoints`; the REST reference's
GET /api/2.0/serving-endpoints has no page token), so the endpoints a plan prunes are found with
that one GET, and none of them is read on its own: the plan's calls are one GET per declared
object, the listing and a constant. Counted in the request log, not timed.
"""

from __future__ import annotations

from integration.harness import run

from bench import fleet

ENDPOINTS = 5000
KEPT = 3


def test_plan_prune_of_5000_endpoints_lists_them_once(make_workspace, tmp_path):
    ws = make_workspace(fleet.seed(ENDPOINTS, versions=1))
    manifests = fleet.write_manifests(tmp_path / "manifests", KEPT)  # the first KEPT agents stay declared
    ws.reset_requests()
    result = run(ws, "plan", str(manifests), "--prune", "--format", "json")
    assert result.code == 0, result.err
    deletes = [c["name"] for c in result.json["changes"] if c["action"] == "delete"]
    assert len(deletes) == ENDPOINTS - KEPT
    log = ws.requests()
    listings = [e for e in log if e["method"] == "GET" and e["path"] == "/api/2.0/serving-endpoints"]
    assert len(listings) == 1
    endpoint_reads = {e["path"] for e in log if e["method"] == "GET" and e["path"].startswith("/api/2.0/serving-endpoints/")}
    assert endpoint_reads == {f"/api/2.0/serving-endpoints/{fleet.endpoint_name(i)}" for i in range(KEPT)}
    assert len(log) <= 2 * KEPT + 1 + 5  # one GET per declared object, the listing, a constant
    assert not [e for e in log if e["method"] != "GET"]
