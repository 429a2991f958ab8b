"""Contract tests: Unity Catalog registered models, versions, aliases and MLmodel files, through the
real `databricks-sdk` over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from databricks.sdk.errors import (
    InvalidParameterValue,
    NotFound,
    ResourceAlreadyExists,
    ResourceConflict,
    ResourceDoesNotExist,
)
from databricks.sdk.service.catalog import ModelVersionInfoStatus

MODEL = "main.agents.support_agent"


@pytest.fixture
def w(seeded_workspace: Any) -> Any:
    return seeded_workspace.client()


def test_registered_model_lifecycle(workspace: Any) -> None:
    w = workspace.client()
    created = w.registered_models.create(catalog_name="main", schema_name="agents", name="triage",
                                         comment="Triage agent")
    assert created.full_name == "main.agents.triage"
    assert created.owner == created.created_by == w.current_user.me().user_name
    with pytest.raises(ResourceAlreadyExists):
        w.registered_models.create(catalog_name="main", schema_name="agents", name="triage")
    with pytest.raises(ResourceConflict):  # AlreadyExists is a conflict too
        w.registered_models.create(catalog_name="Main", schema_name="Agents", name="Triage")  # names fold case

    updated = w.registered_models.update("main.agents.triage", comment="Triage agent v2")
    assert updated.comment == "Triage agent v2"
    assert w.registered_models.get("MAIN.agents.triage").comment == "Triage agent v2"
    w.registered_models.delete("main.agents.triage")
    with pytest.raises(ResourceDoesNotExist, match="does not exist"):
        w.registered_models.get("main.agents.triage")


def test_create_needs_a_name(workspace: Any) -> None:
    with pytest.raises(InvalidParameterValue):
        workspace.client().registered_models.create(catalog_name="main", schema_name="agents")


def test_aliases_come_back_only_when_asked_for(w: Any) -> None:
    assert "aliases" not in w.api_client.do("GET", f"/api/2.1/unity-catalog/models/{MODEL}")
    aliases = w.registered_models.get(MODEL, include_aliases=True).aliases
    assert [(a.alias_name, a.version_num) for a in aliases] == [("champion", 3)]


def test_set_move_and_delete_aliases(w: Any) -> None:
    alias = w.registered_models.set_alias(MODEL, "challenger", 4)
    assert (alias.alias_name, alias.version_num) == ("challenger", 4)
    w.registered_models.set_alias(MODEL, "champion", 4)  # moves it
    by_alias = w.model_versions.get_by_alias(MODEL, "champion", include_aliases=True)
    assert by_alias.version == 4
    assert sorted(a.alias_name for a in by_alias.aliases) == ["challenger", "champion"]
    assert w.registered_models.update(MODEL, comment="new").comment == "new"  # does not touch aliases
    w.registered_models.delete_alias(MODEL, "challenger")
    w.registered_models.delete_alias(MODEL, "challenger")  # already gone: still fine
    with pytest.raises(ResourceDoesNotExist):
        w.model_versions.get_by_alias(MODEL, "challenger")
    with pytest.raises(ResourceDoesNotExist):
        w.registered_models.set_alias(MODEL, "champion", 99)
    assert [(a.alias_name, a.version_num) for a in w.registered_models.get(MODEL, include_aliases=True).aliases] == [
        ("champion", 4)]


def test_model_versions(w: Any) -> None:
    version = w.model_versions.get(MODEL, 3)
    assert (version.version, version.status, version.run_id) == (3, ModelVersionInfoStatus.READY, "c3")
    assert not version.aliases
    assert [a.alias_name for a in w.model_versions.get(MODEL, 3, include_aliases=True).aliases] == ["champion"]
    assert w.model_versions.get(MODEL, 5).status == ModelVersionInfoStatus.PENDING_REGISTRATION
    with pytest.raises(ResourceDoesNotExist):
        w.model_versions.get(MODEL, 42)
    with pytest.raises(ResourceDoesNotExist):
        w.model_versions.get("main.agents.ghost", 1)
    assert w.model_versions.update(MODEL, 3, comment="the champion").comment == "the champion"


def test_version_pagination_follows_next_page_token(seeded_workspace: Any, w: Any) -> None:
    seeded_workspace.reset_requests()
    versions = list(w.model_versions.list(MODEL, max_results=4))
    assert [v.version for v in versions] == [1, 2, 3, 4, 5, 6]
    assert not any(v.aliases for v in versions)  # list items never carry aliases
    pages = [r for r in seeded_workspace.requests() if r["path"].endswith("/versions")]
    assert len(pages) == 2 and "page_token" in pages[1]["query"]
    with pytest.raises(InvalidParameterValue):
        list(w.model_versions.list(MODEL, max_results=-1))


def test_registered_model_pagination_and_filters(workspace: Any) -> None:
    w = workspace.client()
    for i in range(7):
        w.registered_models.create(catalog_name="main", schema_name="agents", name=f"agent_{i}")
    w.registered_models.create(catalog_name="dev", schema_name="agents", name="agent_x")
    workspace.reset_requests()
    everything = [m.full_name for m in w.registered_models.list(max_results=3)]
    assert everything == ["dev.agents.agent_x", *[f"main.agents.agent_{i}" for i in range(7)]]
    assert len(workspace.requests()) == 3
    in_main = [m.full_name for m in w.registered_models.list(catalog_name="main", schema_name="agents")]
    assert len(in_main) == 7
    with pytest.raises(InvalidParameterValue):
        list(w.registered_models.list(catalog_name="main"))
    with pytest.raises(InvalidParameterValue):
        w.api_client.do("GET", "/api/2.1/unity-catalog/models", query={"page_token": "not-a-token"})


def test_versions_added_at_run_time(seeded_workspace: Any, w: Any) -> None:
    seeded_workspace.add_seed({"registered_models": [{"full_name": MODEL, "versions": [
        {"version": 5, "status": "READY"}, {"version": 7, "run_id": "g7"}]}]})
    assert w.model_versions.get(MODEL, 5).status == ModelVersionInfoStatus.READY
    assert w.model_versions.get(MODEL, 7).run_id == "g7"
    assert w.registered_models.get(MODEL).comment.startswith("Customer support agent")


@pytest.mark.parametrize("client_options", [{}, {"disable_experimental_files_api_client": True}])
def test_mlmodel_file_through_the_files_api(seeded_workspace: Any, client_options: dict[str, Any]) -> None:
    w = seeded_workspace.client(**client_options)
    downloaded = w.files.download("/Models/main/agents/support_agent/3/MLmodel")
    mlmodel = yaml.safe_load(downloaded.contents.read())
    assert mlmodel["resources"]["databricks"]["vector_search_index"] == [{"name": "main.agents.docs_index"}]
    metadata = w.files.get_metadata("/Models/main/agents/support_agent/3/MLmodel")
    assert metadata.content_length == downloaded.content_length > 0
    assert metadata.last_modified
    for missing in ("/Models/main/agents/support_agent/1/MLmodel",  # version without an MLmodel
                    "/Models/main/agents/support_agent/42/MLmodel", "/Volumes/main/agents/files/x"):
        with pytest.raises(NotFound):
            w.files.download(missing).contents.read()
