"""Contract tests of the server itself: auth, routing, bad input, faults and the SDK's retries,
test controls over HTTP, seeds, `run()`, concurrency, and the MLflow deployments client."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from databricks.sdk.errors import (
    NotFound,
    PermissionDenied,
    ResourceAlreadyExists,
    TooManyRequests,
    Unauthenticated,
)
from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput
from databricks.sdk.service.workspace import ImportFormat

from reconciler.localworkspace.server import LocalWorkspace

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
MODEL = "main.agents.support_agent"
ROOT = Path(__file__).resolve().parents[2]


def one_entity(version: int = 3) -> EndpointCoreConfigInput:
    return EndpointCoreConfigInput(name="x", served_entities=[ServedEntityInput(
        entity_name=MODEL, entity_version=str(version), workload_size="Small")])


# -- auth ----------------------------------------------------------------------------------------

def test_requests_need_a_valid_bearer_token(seeded_workspace: LocalWorkspace) -> None:
    url = f"{seeded_workspace.url}/api/2.0/serving-endpoints"
    missing = requests.get(url, timeout=5)
    assert missing.status_code == 401
    assert missing.json()["message"] == "Credential was not sent or was of an unsupported type for this API."
    with pytest.raises(Unauthenticated):
        seeded_workspace.client(token=None, auth_type="basic", username="u", password="p").serving_endpoints.list()
    with pytest.raises(PermissionDenied, match="Invalid access token"):
        seeded_workspace.client(token="wrong").serving_endpoints.list()
    # Discovery needs no token: Config() probes it before it has credentials.
    discovery = requests.get(f"{seeded_workspace.url}/.well-known/databricks-config", timeout=5)
    assert discovery.status_code == 200 and discovery.json()["workspace_id"]


def test_a_read_only_token_reads_but_cannot_write(seeded_workspace: LocalWorkspace) -> None:
    seeded_workspace.add_token("viewer-token", read_only=True)
    viewer = seeded_workspace.client(token="viewer-token")
    assert viewer.registered_models.get(MODEL).name == "support_agent"
    assert viewer.files.download(f"/Models/{MODEL.replace('.', '/')}/3/MLmodel").contents.read()
    with pytest.raises(PermissionDenied):
        viewer.registered_models.set_alias(MODEL, "champion", 4)
    with pytest.raises(PermissionDenied):
        viewer.serving_endpoints.create(name="x", config=one_entity())
    assert seeded_workspace.client().model_versions.get_by_alias(MODEL, "champion").version == 3


# -- routing and bad input -----------------------------------------------------------------------

def test_unknown_routes_and_bad_bodies_get_the_api_error_shape(workspace: LocalWorkspace) -> None:
    w = workspace.client()
    with pytest.raises(NotFound) as unknown:
        w.api_client.do("GET", "/api/2.0/no-such-api")
    assert unknown.value.error_code == "ENDPOINT_NOT_FOUND"
    with pytest.raises(NotFound):
        w.api_client.do("DELETE", "/api/2.0/serving-endpoints")  # known path, wrong method
    headers = {"Authorization": f"Bearer {workspace.token}", "Content-Type": "application/json"}
    for body in (b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe\x00", b'{"name": NaN}', b"[" * 100_000):
        answer = requests.post(f"{workspace.url}/api/2.0/serving-endpoints", data=body, headers=headers, timeout=5)
        assert answer.status_code == 400, body[:20]
        assert answer.json()["error_code"] == "MALFORMED_REQUEST"


def test_garbage_at_the_http_level_is_answered_not_crashed_on(workspace: LocalWorkspace) -> None:
    for garbage in (b"GARBAGE\r\n\r\n", b"\x00\x01\x02\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                    b"POST /api/2.0/serving-endpoints HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
                    b"BREW /api/2.0/serving-endpoints HTTP/1.1\r\nContent-Length: 0\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", workspace.port), timeout=5) as sock:
            sock.sendall(garbage)
            answer = sock.recv(65536)
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.split()[1][:1] in (b"4", b"5"), garbage
        assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["message"]
    assert list(workspace.client().serving_endpoints.list()) == []


def test_the_request_log_and_its_reset(seeded_workspace: LocalWorkspace) -> None:
    w = seeded_workspace.client()
    seeded_workspace.reset_requests()
    w.registered_models.set_alias(MODEL, "challenger", 4)
    w.registered_models.get(MODEL, include_aliases=True)
    log = seeded_workspace.requests()
    assert [{k: r[k] for k in ("method", "path", "query", "status", "body", "fault", "identity", "seq")}
            for r in log] == [
        {"method": "PUT", "path": f"/api/2.1/unity-catalog/models/{MODEL}/aliases/challenger", "query": {},
         "status": 200, "body": {"version_num": 4}, "fault": None, "identity": seeded_workspace.state.user, "seq": 1},
        {"method": "GET", "path": f"/api/2.1/unity-catalog/models/{MODEL}", "query": {"include_aliases": "true"},
         "status": 200, "body": None, "fault": None, "identity": seeded_workspace.state.user, "seq": 2},
    ]
    assert log[0]["segments"] == ["api", "2.1", "unity-catalog", "models", MODEL, "aliases", "challenger"]
    assert log[0]["raw_path"] == f"/api/2.1/unity-catalog/models/{MODEL}/aliases/challenger"
    assert log[0]["received_at"] <= log[0]["answered_at"] <= log[1]["received_at"] <= log[1]["answered_at"]
    assert seeded_workspace.token not in str(log)  # the log names the principal, never the token
    seeded_workspace.reset_requests()
    assert seeded_workspace.requests() == []


# -- faults and the SDK's own retries ------------------------------------------------------------

def test_the_sdk_retries_through_a_fault_rate_of_0_3(seeded_workspace: LocalWorkspace) -> None:
    w = seeded_workspace.client()
    seeded_workspace.set_faults(0.3, seed=11, kinds=["429", "503", "drop"])
    seeded_workspace.reset_requests()
    for version in range(1, 7):
        assert w.model_versions.get(MODEL, version).version == version
    created = w.serving_endpoints.create(name="through-faults", config=one_entity()).response
    assert created.name == "through-faults"
    log = seeded_workspace.requests()
    faults = [r["fault"] for r in log if r["fault"]]
    assert faults, "the seed must make some requests fail"
    assert all(r["status"] == 200 for r in log if not r["fault"])
    assert {r["status"] for r in log if r["fault"] in ("429", "503")} <= {429, 503}


def test_faults_are_reproducible_from_their_seed(workspace: LocalWorkspace) -> None:
    def faults_met(seed: int) -> list[str | None]:
        workspace.set_faults(0.5, seed=seed, kinds=["429", "503", "slow"], slow_ms=1)
        return [workspace.faults.draw() for _ in range(50)]
    assert faults_met(3) == faults_met(3)
    assert faults_met(3) != faults_met(4)


def test_a_response_lost_after_a_write_makes_the_retry_meet_its_first_attempt(seeded_workspace: Any) -> None:
    w = seeded_workspace.client()
    seeded_workspace.set_faults(1.0, kinds=["drop_after"], max_faults=1)
    with pytest.raises(ResourceAlreadyExists):
        w.serving_endpoints.create(name="twice", config=one_entity())
    assert [r["status"] for r in seeded_workspace.requests()] == [None, 409]
    assert w.serving_endpoints.get("twice").name == "twice"


def test_throttling_beyond_the_retry_budget_surfaces_as_a_timeout(seeded_workspace: Any) -> None:
    w = seeded_workspace.client(retry_timeout_seconds=1)
    seeded_workspace.set_faults(1.0, kinds=["429"])
    with pytest.raises(TimeoutError) as caught:
        w.registered_models.get(MODEL)
    assert isinstance(caught.value.__cause__, TooManyRequests)


# -- controls over HTTP, for a workspace in another process --------------------------------------

def test_controls_over_http(workspace: LocalWorkspace) -> None:
    sim = f"{workspace.url}/__sim"
    assert requests.get(f"{sim}/health", timeout=5).json()["ok"] is True
    seed = {"registered_models": [{"full_name": "main.a.m", "versions": [{"version": 1}]}]}
    assert requests.post(f"{sim}/seed", json=seed, timeout=5).status_code == 200
    assert requests.post(f"{sim}/tokens", json={"token": "ro", "read_only": True}, timeout=5).ok
    assert requests.post(f"{sim}/latency", json={"ms": 1}, timeout=5).ok
    assert requests.post(f"{sim}/update-seconds", json={"seconds": 0}, timeout=5).ok
    plan = requests.post(f"{sim}/faults", json={"rate": 0.0, "seed": 1}, timeout=5).json()
    assert plan["rate"] == 0.0 and plan["kinds"] == ["429", "503", "drop", "slow"]
    w = workspace.client(token="ro")
    assert w.model_versions.get("main.a.m", 1).version == 1
    log = requests.get(f"{sim}/requests", timeout=5).json()["requests"]
    assert [r["path"] for r in log] == ["/api/2.1/unity-catalog/models/main.a.m/versions/1"]
    assert requests.post(f"{sim}/requests/reset", timeout=5).ok
    assert requests.get(f"{sim}/requests", timeout=5).json() == {"requests": []}
    bad = requests.post(f"{sim}/seed", json={"bogus": []}, timeout=5)
    assert bad.status_code == 400 and "unknown seed key 'bogus'" in bad.json()["message"]
    assert requests.post(f"{sim}/faults", json={"rate": 2}, timeout=5).status_code == 400
    assert requests.get(f"{sim}/nope", timeout=5).status_code == 404


# -- seeds ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("models: []\n", "unknown seed key 'models'"),
    ("registered_models: [{full_name: a.b.c, versions: [{version: 1, deploy_fail: x}]}]\n",
     "registered_models[0] (a.b.c): versions[0]: unknown field 'deploy_fail'"),
    ("registered_models: [{full_name: a.b.c, aliases: [{alias_name: x, version_num: 2}]}]\n",
     "registered_models[0] (a.b.c): Model Version 'a.b.c' version '2' does not exist."),
    ("registered_models: [{full_name: abc}]\n", "registered_models[0] (abc): Invalid full name"),
    ("serving_endpoints: [{name: 'bad name!'}]\n", "serving_endpoints[0] (bad name!): Invalid endpoint name"),
    ("vector_search_indexes: [{endpoint_name: x}]\n", "vector_search_indexes[0]: each entry needs 'name'"),
    ("registered_models: [{full_name: a.b.c\n", "not valid YAML"),
    ("- just a list\n", "a seed must be a mapping"),
])
def test_bad_seed_files_raise_one_line_value_errors_naming_the_file(tmp_path: Path, text: str,
                                                                    message: str) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        LocalWorkspace(seed=path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_json_seeds(tmp_path: Path) -> None:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps({"secret_scopes": [{"name": "s", "keys": ["k"]}]}), encoding="utf-8")
    with LocalWorkspace(seed=path) as ws:
        assert [s.name for s in ws.client().secrets.list_scopes()] == ["s"]


def test_run_serves_until_sigterm(tmp_path: Path) -> None:
    script = ("from reconciler.localworkspace.server import run; "
              f"run(port=0, seed={str(SEEDS / 'support_agent.yaml')!r}, update_seconds=0, token='t0k')")
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("local workspace listening on http://127.0.0.1:") and "(token: t0k)" in line
        url = line.split()[4]
        from databricks.sdk import WorkspaceClient
        w = WorkspaceClient(host=url, token="t0k", auth_type="pat")
        assert w.model_versions.get_by_alias(MODEL, "champion").version == 3
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()


def test_run_refuses_a_bad_seed_before_listening(tmp_path: Path) -> None:
    from reconciler.localworkspace.server import run

    path = tmp_path / "seed.yaml"
    path.write_text("tables: [{}]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="tables\\[0\\]: each entry needs 'full_name'"):
        run(port=0, seed=str(path))


# -- concurrency ---------------------------------------------------------------------------------

def test_many_clients_at_once(seeded_workspace: LocalWorkspace) -> None:
    errors: list[BaseException] = []
    lease_holders: list[int] = []
    home = f"/Users/{seeded_workspace.state.user}"

    def client_work(i: int) -> None:
        try:
            w = seeded_workspace.client()
            w.registered_models.create(catalog_name="main", schema_name="load", name=f"m{i}")
            for _ in range(10):
                w.model_versions.get_by_alias(MODEL, "champion")
            try:
                w.workspace.import_(f"{home}/lease", content="", format=ImportFormat.RAW, overwrite=False)
                lease_holders.append(i)
            except ResourceAlreadyExists:
                pass
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=client_work, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(lease_holders) == 1  # the lease is a compare-and-set
    names = [m.name for m in seeded_workspace.client().registered_models.list(catalog_name="main", schema_name="load")]
    assert sorted(names) == sorted(f"m{i}" for i in range(16))


def test_stop_does_not_wait_for_idle_keep_alive_connections() -> None:
    ws = LocalWorkspace().start()
    w = ws.client()
    list(w.serving_endpoints.list())  # leaves a kept-alive connection open
    ws.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{ws.url}/__sim/health", timeout=2)


# -- a second, independent client ----------------------------------------------------------------

def test_mlflow_deployments_client_creates_updates_and_reads(seeded_workspace: LocalWorkspace,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.deployments import get_deploy_client

    for key in [k for k in os.environ if k.startswith("DATABRICKS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DATABRICKS_HOST", seeded_workspace.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", seeded_workspace.token)
    client = get_deploy_client("databricks")
    created = client.create_endpoint(config={"name": "via-mlflow", "config": {"served_entities": [
        {"entity_name": MODEL, "entity_version": "3", "workload_size": "Small", "scale_to_zero_enabled": True}]},
        "tags": [{"key": "team", "value": "support"}]})
    assert created["name"] == "via-mlflow"
    assert client.get_endpoint("via-mlflow")["state"]["config_update"] == "NOT_UPDATING"
    updated = client.update_endpoint_config("via-mlflow", config={"served_entities": [
        {"entity_name": MODEL, "entity_version": "4", "workload_size": "Small", "scale_to_zero_enabled": True}]})
    assert updated["pending_config"]["served_entities"][0]["entity_version"] == "4"
    client.update_endpoint_tags("via-mlflow", config={"add_tags": [{"key": "stage", "value": "prod"}]})
    client.update_endpoint_ai_gateway("via-mlflow", config={"usage_tracking_config": {"enabled": True}})
    endpoint = client.get_endpoint("via-mlflow")
    assert endpoint["config"]["served_entities"][0]["entity_version"] == "4"
    assert [t["key"] for t in endpoint["tags"]] == ["stage", "team"]
    assert "via-mlflow" in [e["name"] for e in client.list_endpoints()]
    with pytest.raises(requests.HTTPError):
        client.create_endpoint(config={"name": "via-mlflow", "config": {"served_entities": [
            {"entity_name": MODEL, "entity_version": "3", "workload_size": "Small"}]}})
    client.delete_endpoint("via-mlflow")
    assert [r["path"] for r in seeded_workspace.requests()][0] == "/api/2.0/serving-endpoints/"

