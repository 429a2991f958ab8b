"""Contract tests: names and paths are refused, never resolved, and workspace files are overwritten
the way real workspaces allow. The SDK cannot send a `..` segment (urllib3 removes dot segments
before sending, RFC 3986 section 5.2.4), so those requests go out through `http.client`."""

from __future__ import annotations

import base64
import http.client
import io
import json
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk.errors import BadRequest, InvalidParameterValue, ResourceAlreadyExists
from databricks.sdk.service.workspace import ImportFormat, Language

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
MODEL = "main.agents.support_agent"


def raw_request(ws: Any, method: str, path: str) -> tuple[int, str, bytes]:
    """Send `path` byte for byte, as no SDK would."""
    connection = http.client.HTTPConnection("127.0.0.1", ws.port, timeout=10)
    try:
        connection.request(method, path, headers={"Authorization": f"Bearer {ws.token}"})
        answer = connection.getresponse()
        return answer.status, answer.getheader("Content-Type") or "", answer.read()
    finally:
        connection.close()


@pytest.mark.parametrize("path", [
    f"/api/2.0/serving-endpoints/../../2.1/unity-catalog/models/{MODEL}",
    f"/api/2.0/serving-endpoints/%2E%2E/%2e%2e/2.1/unity-catalog/models/{MODEL}",
    f"/api/2.1/unity-catalog/models/{MODEL}/./versions/3",
])
def test_dot_segments_never_route(seeded_workspace: Any, path: str) -> None:
    """A path with `.` or `..` segments (sent raw or percent-encoded) does not route: 404
    ENDPOINT_NOT_FOUND, the answer for a path with no API; it is never resolved, so the registered
    model the resolved path would name is untouched (issue 11: a change named
    `../../2.1/unity-catalog/models/...` deleted a model)."""
    status, _, body = raw_request(seeded_workspace, "DELETE", path)
    assert status == 404 and json.loads(body)["error_code"] == "ENDPOINT_NOT_FOUND"
    assert seeded_workspace.client().registered_models.get(MODEL).name == "support_agent"
    logged = next(r for r in seeded_workspace.requests() if r["method"] == "DELETE")
    assert logged["raw_path"] == path and {".", ".."} & set(logged["segments"])


def test_an_encoded_slash_stays_inside_one_name(seeded_workspace: Any) -> None:
    """Each segment is decoded exactly once: `a%2Fb` is the single name "a/b", which breaks the
    endpoint name grammar (letters, digits, '-', '_'; REST reference) and is refused with 400
    INVALID_PARAMETER_VALUE; `%252F` decodes once, to the name "%2F", never to a slash."""
    w = seeded_workspace.client()
    seeded_workspace.reset_requests()
    for name in ("a%2Fb", "%252F", "support%20agent"):
        with pytest.raises(InvalidParameterValue, match="Invalid endpoint name"):
            w.api_client.do("DELETE", f"/api/2.0/serving-endpoints/{name}")
    log = seeded_workspace.requests()
    assert [r["segments"][-1] for r in log] == ["a/b", "%2F", "support agent"]
    assert [len(r["segments"]) for r in log] == [4, 4, 4]  # exactly one segment for the name
    assert log[0]["raw_path"] == "/api/2.0/serving-endpoints/a%2Fb"


@pytest.mark.parametrize("full_name", ["main.agents%2Fx", "main.agents", "main.agents.support%20agent"])
def test_bad_model_names_are_refused_not_looked_up(seeded_workspace: Any, full_name: str) -> None:
    """Unity Catalog names may not contain a period, space or slash; a full name has three parts:
    400 INVALID_PARAMETER_VALUE on every route, reads and deletes alike."""
    w = seeded_workspace.client()
    with pytest.raises(InvalidParameterValue, match="Invalid full name"):
        w.api_client.do("GET", f"/api/2.1/unity-catalog/models/{full_name}")
    with pytest.raises(InvalidParameterValue):
        w.api_client.do("DELETE", f"/api/2.1/unity-catalog/models/{full_name}/aliases/champion")


def test_bad_alias_names_are_refused_on_every_route(seeded_workspace: Any) -> None:
    w = seeded_workspace.client()
    for method in ("GET", "DELETE"):
        with pytest.raises(InvalidParameterValue, match="Invalid alias name"):
            w.api_client.do(method, f"/api/2.1/unity-catalog/models/{MODEL}/aliases/champion%2F..")
    assert w.model_versions.get_by_alias(MODEL, "champion").version == 3


# -- workspace file paths --------------------------------------------------------------------------

def test_workspace_paths_with_dot_segments_are_refused(workspace: Any) -> None:
    """databrickslabs/ucx#2882: a real workspace answered `get-status?path=.../Notebooks/../common/...`
    with 400 and the plain text body "Invalid request path". Import, delete and get-status alike;
    the file the resolved path names is untouched."""
    w = workspace.client()
    home = f"/Users/{w.current_user.me().user_name}"
    w.workspace.import_(f"{home}/team-config", content=base64.b64encode(b"mine").decode(), format=ImportFormat.RAW)
    sneaky = f"{home}/.reconciler/locks/../../team-config"
    for call in (lambda: w.workspace.delete(sneaky),
                 lambda: w.workspace.import_(sneaky, content="", format=ImportFormat.RAW, overwrite=True),
                 lambda: w.workspace.get_status(sneaky)):
        with pytest.raises(BadRequest, match="Invalid request path"):
            call()
    assert w.workspace.download(f"{home}/team-config").read() == b"mine"
    status, content_type, body = raw_request(workspace, "GET", f"/api/2.0/workspace/get-status?path={sneaky}")
    assert (status, content_type.split(";")[0], body) == (400, "text/plain", b"Invalid request path")


# -- replacing a workspace file --------------------------------------------------------------------

@pytest.fixture
def lease(workspace: Any) -> tuple[Any, str]:
    w = workspace.client()
    path = f"/Users/{w.current_user.me().user_name}/lease.json"
    w.workspace.upload(path, io.BytesIO(b'{"holder": "run-1"}'), format=ImportFormat.AUTO)
    return w, path


def test_auto_overwrite_of_an_existing_file_is_refused(lease: tuple[Any, str]) -> None:
    """databricks/cli#3386: `workspace import --format AUTO --overwrite` on an existing workspace
    file answered 400 RESOURCE_ALREADY_EXISTS "Node named 'file.txt' already exists" on a real
    workspace. Without overwrite: 400 RESOURCE_ALREADY_EXISTS "... Please pass overwrite=true"."""
    w, path = lease
    with pytest.raises(ResourceAlreadyExists, match="^Node named 'lease.json' already exists$"):
        w.workspace.import_(path, content=base64.b64encode(b"x").decode(), format=ImportFormat.AUTO, overwrite=True)
    with pytest.raises(ResourceAlreadyExists, match="Please pass overwrite=true"):
        w.workspace.upload(path, io.BytesIO(b"x"), format=ImportFormat.RAW)
    assert w.workspace.download(path).read() == b'{"holder": "run-1"}'


def test_raw_overwrite_replaces_a_file_in_place(lease: tuple[Any, str]) -> None:
    """terraform-provider-databricks `workspace/resource_workspace_file.go`: `databricks_workspace_file`
    updates a file with Format RAW and Overwrite true (#4200), against real workspaces."""
    w, path = lease
    before = w.workspace.get_status(path)
    w.workspace.import_(path, content=base64.b64encode(b'{"holder": "run-1", "renewed": 1}').decode(),
                        format=ImportFormat.RAW, overwrite=True)
    w.workspace.upload(path, io.BytesIO(b'{"holder": "run-1", "renewed": 2}'), format=ImportFormat.RAW, overwrite=True)
    assert w.workspace.download(path).read() == b'{"holder": "run-1", "renewed": 2}'
    assert w.workspace.get_status(path).created_at == before.created_at


def test_delete_then_create_replaces_a_file_and_detects_a_competitor(lease: tuple[Any, str]) -> None:
    """The documented calls (`WorkspaceAPI.delete`, `import_` with overwrite false, which is a
    compare-and-set): a competitor that creates the file between our delete and our import makes our
    import fail, so the loss is seen."""
    w, path = lease
    w.workspace.delete(path)
    w.workspace.upload(path, io.BytesIO(b'{"holder": "run-1", "renewed": 1}'), format=ImportFormat.RAW)
    assert w.workspace.download(path).read() == b'{"holder": "run-1", "renewed": 1}'
    w.workspace.delete(path)
    w.workspace.upload(path, io.BytesIO(b'{"holder": "run-2"}'), format=ImportFormat.RAW)  # the competitor
    with pytest.raises(ResourceAlreadyExists):
        w.workspace.upload(path, io.BytesIO(b'{"holder": "run-1"}'), format=ImportFormat.RAW)


def test_an_overwrite_may_not_change_the_objects_type(workspace: Any) -> None:
    """databricks/cli `libs/filer/workspace_files_client.go` (workspace-import-migration branch),
    observed against a real workspace: "Cannot overwrite the asset at /Users/me/foo due to type
    mismatch (asked: FILE, actual: NOTEBOOK)", INVALID_PARAMETER_VALUE."""
    w = workspace.client()
    notebook = f"/Users/{w.current_user.me().user_name}/notebook"
    w.workspace.import_(notebook, content=base64.b64encode(b"print(1)").decode(), language=Language.PYTHON)
    with pytest.raises(InvalidParameterValue, match=r"type mismatch \(asked: FILE, actual: NOTEBOOK\)"):
        w.workspace.import_(notebook, content=base64.b64encode(b"x").decode(), format=ImportFormat.RAW, overwrite=True)
    w.workspace.import_(notebook, content=base64.b64encode(b"print(2)").decode(), language=Language.PYTHON,
                        overwrite=True)
