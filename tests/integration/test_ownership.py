"""Deletes re-check ownership at delete time, and models are shared across stacks: moving an alias
another endpoint may follow is a warning that names it."""

from __future__ import annotations

import io

import pytest
from databricks.sdk.service.serving import EndpointCoreConfigInput, EndpointTag
from harness import MODEL, base_documents, endpoint, model, run, write, writes

from reconciler.apply import ApplyOptions, apply_plan
from reconciler.plan import Action, Change, Operation, Plan
from reconciler.render import Progress
from reconciler.workspace import Workspace

CONFIG = EndpointCoreConfigInput.from_dict({"served_entities": [
    {"entity_name": MODEL, "entity_version": "3", "workload_size": "Small", "scale_to_zero_enabled": True}]})


def tags(**pairs):
    return [EndpointTag(key=k.replace("_", "-"), value=v) for k, v in pairs.items()]


@pytest.fixture
def others(seeded_workspace):
    """Endpoints made elsewhere: unmanaged, another stack's, this (default) stack's, and stack prod's."""
    client = seeded_workspace.client()
    client.serving_endpoints.create("unmanaged", config=CONFIG)
    client.serving_endpoints.create("theirs", config=CONFIG, tags=tags(managed_by="reconciler",
                                                                      reconciler_stack="other"))
    client.serving_endpoints.create("ours", config=CONFIG, tags=tags(managed_by="reconciler"))
    client.serving_endpoints.create("prods", config=CONFIG, tags=tags(managed_by="reconciler",
                                                                     reconciler_stack="prod"))
    seeded_workspace.reset_requests()
    return seeded_workspace


def deleting(*names):
    return Plan(changes=[Change(f"serving_endpoint.{n}", "serving_endpoint", n, Action.DELETE,
                                operations=[Operation("delete_endpoint", f"delete_endpoint({n})")]) for n in names])


@pytest.mark.parametrize("stack, deleted", [(None, ["ours"]), ("prod", ["prods"])])
def test_a_delete_is_made_only_of_what_is_still_this_stacks(others, stack, deleted):
    """What the executor is handed (a plan made a while ago, an endpoint re-tagged since) does not
    decide: the endpoint as read just before its delete does."""
    the_plan = deleting("unmanaged", "theirs", "ours", "prods")
    the_plan.stack = stack
    outcomes, _, _ = apply_plan(Workspace(others.client()), the_plan, ApplyOptions(), Progress(io.StringIO()))
    status = {o.address.split(".", 1)[1]: (o.status, o.detail) for o in outcomes}
    assert [p.rsplit("/", 1)[1] for m, p in writes(others) if m == "DELETE"] == deleted
    assert status["unmanaged"] == ("skipped", "delete_endpoint(unmanaged) not done: it is not tagged managed-by: "
                                              "reconciler (any more); delete it by hand if it must go")
    this = f"stack '{stack}'" if stack else "no stack"
    assert status["theirs"][1].endswith(f"it belongs to stack 'other', and this apply is for {this}")


def test_a_replace_of_an_endpoint_not_ours_is_refused(others, tmp_path):
    docs = base_documents()
    endpoint(docs)["metadata"]["name"] = "unmanaged"
    del endpoint(docs)["spec"]["permissions"]
    endpoint(docs)["spec"]["description"] = "replaced"
    result = run(others, "apply", write(tmp_path, docs), "--auto-approve", "--allow-replace")
    assert result.code == 1
    assert "delete_endpoint(unmanaged) for replacement not done: it is not tagged managed-by: reconciler" in result.out
    assert not [p for m, p in writes(others) if m == "DELETE"]


def test_moving_an_alias_another_endpoint_serves_warns_and_names_it(others, tmp_path):
    docs = base_documents()
    assert run(others, "apply", write(tmp_path, docs), "--auto-approve").code == 0
    model(docs)["spec"]["aliases"]["champion"] = 4
    result = run(others, "plan", write(tmp_path, docs))
    assert result.code == 0, result.err
    for name in ("ours", "prods", "theirs", "unmanaged"):
        assert f"Warning: registered_model.{MODEL}: alias champion moves from version 3 to 4, and " \
               f"serving_endpoint.{name}, which these manifests do not manage, serves version 3; if it follows the " \
               "alias, its next apply moves it too" in result.out
    del model(docs)["spec"]["aliases"]["challenger"]  # version 4: served by no endpoint outside these manifests
    endpoint(docs)["spec"]["served_entities"][1]["alias"] = "champion"
    result = run(others, "plan", write(tmp_path, docs))
    assert "alias challenger" not in result.out and result.out.count("Warning: ") == 4
