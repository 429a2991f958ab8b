"""Contract tests: secrets, dependent resources, the current user and the Workspace API (the lease
file), through the real `databricks-sdk` over real HTTP."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import pytest
from databricks.sdk.errors import BadRequest, NotFound, ResourceAlreadyExists, ResourceDoesNotExist
from databricks.sdk.service.workspace import ExportFormat, ImportFormat, ObjectType


@pytest.fixture
def w(seeded_workspace: Any) -> Any:
    return seeded_workspace.client()


def test_secret_scopes_and_keys_never_values(w: Any) -> None:
    assert [s.name for s in w.secrets.list_scopes()] == ["support"]
    keys = w.secrets.list_secrets("support")
    assert [k.key for k in keys] == ["openai"]
    assert keys[0].last_updated_timestamp
    with pytest.raises(ResourceDoesNotExist):
        w.secrets.list_secrets("nope")


# (how to fetch one by name, a name the seed has, what comes back when it exists)
RESOURCES: dict[str, tuple[Callable[[Any, str], Any], str]] = {
    "vector_search_index": (lambda w, n: w.vector_search_indexes.get_index(n), "main.agents.docs_index"),
    "sql_warehouse": (lambda w, n: w.warehouses.get(n), "5f1e3a9b2c7d4e60"),
    "function": (lambda w, n: w.functions.get(n), "main.agents.lookup_order"),
    "table": (lambda w, n: w.tables.get(n), "main.agents.docs"),
    "uc_connection": (lambda w, n: w.connections.get(n), "zendesk"),
    "genie_space": (lambda w, n: w.genie.get_space(n), "01f0a1b2c3d4e5f6"),
    "app": (lambda w, n: w.apps.get(n), "support-console"),
}


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_dependent_resources_exist_only_when_seeded(w: Any, kind: str) -> None:
    fetch, name = RESOURCES[kind]
    assert fetch(w, name) is not None
    with pytest.raises(NotFound):
        fetch(w, name + "_missing")


def test_resource_shapes(w: Any) -> None:
    index = w.vector_search_indexes.get_index("main.agents.docs_index")
    assert (index.endpoint_name, index.primary_key, index.status.ready) == ("agents-vs", "doc_id", True)
    assert w.tables.exists("main.agents.docs").table_exists is True
    assert w.tables.exists("main.agents.nope").table_exists is False
    with pytest.raises(ResourceDoesNotExist):
        w.functions.get("main.agents.nope")
    assert w.warehouses.get("5f1e3a9b2c7d4e60").name == "Agents warehouse"
    assert w.genie.get_space("01f0a1b2c3d4e5f6").title == "Support metrics"


def test_current_user(w: Any) -> None:
    me = w.current_user.me()
    assert me.user_name == "local.user@example.com" and me.active


def test_workspace_files_for_a_lease(workspace: Any) -> None:
    w = workspace.client()
    home = f"/Users/{w.current_user.me().user_name}"
    lease = f"{home}/.reconciler/lease.json"
    content = base64.b64encode(b'{"holder": "run-1"}').decode()
    with pytest.raises(ResourceDoesNotExist, match="parent folder"):
        w.workspace.import_(lease, content=content, format=ImportFormat.AUTO)
    w.workspace.mkdirs(f"{home}/.reconciler")
    w.workspace.import_(lease, content=content, format=ImportFormat.AUTO, overwrite=False)
    with pytest.raises(ResourceAlreadyExists):  # the compare-and-set a lease relies on
        w.workspace.import_(lease, content=content, format=ImportFormat.AUTO, overwrite=False)

    status = w.workspace.get_status(lease)
    assert (status.object_type, status.size) == (ObjectType.FILE, len(b'{"holder": "run-1"}'))
    exported = w.workspace.export(lease, format=ExportFormat.AUTO)
    assert base64.b64decode(exported.content) == b'{"holder": "run-1"}'
    assert w.workspace.download(lease).read() == b'{"holder": "run-1"}'
    w.workspace.upload(lease, io.BytesIO(b'{"holder": "run-2"}'), format=ImportFormat.RAW, overwrite=True)
    assert w.workspace.download(lease).read() == b'{"holder": "run-2"}'
    assert [o.path for o in w.workspace.list(f"{home}/.reconciler")] == [lease]

    with pytest.raises(BadRequest):  # a SOURCE import needs a language
        w.workspace.import_(f"{home}/notes", content=content)
    with pytest.raises(BadRequest):  # not empty
        w.workspace.delete(f"{home}/.reconciler")
    w.workspace.delete(lease)
    with pytest.raises(ResourceDoesNotExist):
        w.workspace.get_status(lease)
    with pytest.raises(ResourceDoesNotExist):
        w.workspace.delete(lease)
    w.workspace.delete(f"{home}/.reconciler", recursive=True)
    w.workspace.import_(f"{home}/file", content=content, format=ImportFormat.RAW)
    with pytest.raises(ResourceAlreadyExists):  # mkdirs over a file
        w.workspace.mkdirs(f"{home}/file/sub")
