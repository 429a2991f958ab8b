"""Queries to served agents, through the clients the seed documents use, over real HTTP.

The OpenAI client with `base_url=<host>/serving-endpoints` (seed 002), the MLflow deployments
client, `databricks-sdk`'s `query()` and plain HTTP for the per-entity route and for garbage. Each
model version answers as its seed `serving` key says (queries.py).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from databricks.sdk.errors import InternalError, PermissionDenied, ResourceDoesNotExist
from databricks.sdk.service.serving import ChatMessage, ChatMessageRole, ServedEntityInput
from mlflow.entities import SpanStatusCode, Trace
from openai import NotFoundError, OpenAI

from reconciler.localworkspace.server import LocalWorkspace

SEED = Path(__file__).resolve().parents[1] / "seeds" / "queries.yaml"
MODEL = "main.agents.support_agent"
VERSIONS = {v["version"]: v.get("serving", {}) for v in yaml.safe_load(SEED.read_text())["registered_models"][0]["versions"]}
REPLY, BROKEN, DEGRADED = VERSIONS[1]["reply"], VERSIONS[2]["message"], VERSIONS[5]["message"]
USER = [{"role": "user", "content": "What is MLflow?"}]
EXTRA = {"custom_inputs": {"session_id": "smoke-test"}, "databricks_options": {"return_trace": True}}


@pytest.fixture
def ws(make_workspace: Any) -> LocalWorkspace:
    return make_workspace(SEED)


def openai_client(ws: LocalWorkspace) -> OpenAI:
    return OpenAI(base_url=f"{ws.url}/serving-endpoints", api_key=ws.token, max_retries=0)


def post(ws: LocalWorkspace, path: str, body: Any = None, *, raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(ws.url + path, json=body if raw is None else None, data=raw, timeout=30,
                         headers={"Authorization": f"Bearer {ws.token}", **(headers or {})})


def span_statuses(trace: dict[str, Any]) -> dict[str, SpanStatusCode]:
    """The trace as MLflow reads it: span name -> status code."""
    return {span.name: span.status.status_code for span in Trace.from_dict(trace).data.spans}


# -- the clients of seed 002 ---------------------------------------------------------------------

def test_openai_chat_completion_is_seed_shaped(ws: LocalWorkspace) -> None:
    ws.state.queries.configure(seed=3)
    client = openai_client(ws)
    raw = client.chat.completions.with_raw_response.create(model="support-agent", messages=USER, extra_body=EXTRA)
    completion = raw.parse()
    entity = raw.headers["served-model-name"]
    assert entity in ("champion", "challenger")
    assert completion.object == "chat.completion" and completion.choices[0].message.role == "assistant"
    expected = REPLY if entity == "champion" else f"Echo from challenger ({MODEL} version 4): What is MLflow?"
    assert completion.choices[0].message.content == expected
    assert completion.model_extra["custom_outputs"] == {"session_id": "smoke-test"}
    trace = completion.model_extra["databricks_output"]["trace"]
    assert Trace.from_dict(trace).info.state.value == "OK"
    assert set(span_statuses(trace).values()) == {SpanStatusCode.OK}


def test_openai_responses_is_seed_shaped_with_the_declared_resources_in_its_trace(ws: LocalWorkspace) -> None:
    single = openai_client(ws).responses.create(model="degraded", input=USER, extra_body=EXTRA)
    assert single.object == "response" and single.status == "completed"
    assert single.output_text == DEGRADED
    assert single.model_extra["custom_outputs"] == {"session_id": "smoke-test"}
    # A degraded answer: 200, but the agent's call to the index failed, and the trace says so.
    statuses = span_statuses(single.model_extra["databricks_output"]["trace"])
    assert statuses == {"predict": SpanStatusCode.OK, "databricks-meta-llama-3-3-70b-instruct": SpanStatusCode.OK,
                        "main.agents.docs_index": SpanStatusCode.ERROR}


def test_openai_responses_of_a_healthy_agent(ws: LocalWorkspace) -> None:
    response = openai_client(ws).responses.create(model="healthy", input=USER, extra_body=EXTRA)
    assert response.output_text == REPLY
    assert response.output[0].type == "message" and response.output[0].content[0].type == "output_text"
    trace = response.model_extra["databricks_output"]["trace"]
    assert span_statuses(trace) == {"predict": SpanStatusCode.OK, "main.agents.docs_index": SpanStatusCode.OK,
                                    "databricks-meta-llama-3-3-70b-instruct": SpanStatusCode.OK}
    assert Trace.from_dict(trace).info.trace_metadata["mlflow.databricks.modelServingEndpointName"] == "healthy"


def test_openai_streams_join_back_to_the_reply(ws: LocalWorkspace) -> None:
    client = openai_client(ws)
    chat = client.chat.completions.create(model="degraded", messages=USER, stream=True, extra_body=EXTRA)
    chunks = list(chat)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == DEGRADED
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "trace" in chunks[-1].model_extra["databricks_output"]
    events = list(client.responses.create(model="degraded", input=USER, stream=True))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == DEGRADED
    assert events[-1].type == "response.completed" and events[-1].response.output_text == DEGRADED


def test_mlflow_deployments_client_predict_and_predict_stream(ws: LocalWorkspace,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.deployments import get_deploy_client

    monkeypatch.setenv("DATABRICKS_HOST", ws.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", ws.token)
    client = get_deploy_client("databricks")
    answer = client.predict(endpoint="degraded", inputs={"messages": USER, **EXTRA})
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"] == DEGRADED
    assert span_statuses(answer["databricks_output"]["trace"])["main.agents.docs_index"] == SpanStatusCode.ERROR
    rows = client.predict(endpoint="degraded", inputs={"dataframe_records": [{"q": "a"}, {"q": "b"}]})
    assert rows == {"predictions": [DEGRADED, DEGRADED]}
    chunks = list(client.predict_stream(endpoint="degraded", inputs={"messages": USER}))
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == DEGRADED


def test_sdk_query_reads_which_served_entity_answered(ws: LocalWorkspace) -> None:
    w = ws.client()
    answer = w.serving_endpoints.query("degraded", messages=[ChatMessage(role=ChatMessageRole.USER, content="hi")])
    assert answer.served_model_name == "degraded-entity"
    assert answer.choices[0].message.content == DEGRADED


@pytest.mark.parametrize("body, predictions, reason", [
    ({"dataframe_records": [{"q": 1}, {"q": 2}, {"q": 3}]}, 3, "one prediction per record"),
    ({"dataframe_split": {"columns": ["q"], "data": [[1], [2]]}}, 2, "one per row of the split"),
    ({"instances": [[1], [2]]}, 2, "one per instance"),
    ({"inputs": {"q": [1, 2, 3, 4]}}, 4, "columnar inputs: one per value of a column"),
    ({"inputs": [1]}, 1, "row inputs"),
])
def test_table_inputs_get_one_prediction_per_row(ws: LocalWorkspace, body: dict[str, Any], predictions: int,
                                                 reason: str) -> None:
    answer = post(ws, "/serving-endpoints/degraded/invocations", body)
    assert answer.status_code == 200, reason
    assert answer.json() == {"predictions": [DEGRADED] * predictions}, reason


# -- routing -------------------------------------------------------------------------------------

def test_a_served_entity_at_zero_percent_answers_only_when_queried_directly(ws: LocalWorkspace) -> None:
    answer = post(ws, "/serving-endpoints/support-agent/served-models/feedback/invocations", {"messages": USER})
    assert answer.status_code == 200 and answer.headers["served-model-name"] == "feedback"
    assert answer.json()["choices"][0]["message"]["content"].startswith("Echo from feedback")
    entities = Counter(post(ws, "/serving-endpoints/support-agent/invocations", {"messages": USER})
                       .headers["served-model-name"] for _ in range(200))
    assert entities["feedback"] == 0


def test_the_traffic_split_follows_the_percentages_and_a_seed_repeats_it(make_workspace: Any) -> None:
    def entities(seed: int, count: int) -> list[str]:
        ws = make_workspace(SEED)
        ws.state.queries.configure(seed=seed)
        session = requests.Session()
        return [session.post(f"{ws.url}/serving-endpoints/support-agent/invocations", json={"messages": USER},
                             headers={"Authorization": f"Bearer {ws.token}"}).headers["served-model-name"]
                for _ in range(count)]

    first = entities(7, 400)
    share = Counter(first)["challenger"] / len(first)
    assert 0.05 <= share <= 0.16  # 10% +- 3 standard deviations of 400 draws
    assert set(first) == {"champion", "challenger"}
    assert entities(7, 400) == first
    assert entities(8, 400) != first


def test_an_updating_endpoint_keeps_serving_its_current_config(make_workspace: Any) -> None:
    ws = make_workspace(SEED, update_seconds=60)
    w = ws.client()
    w.serving_endpoints.update_config(name="degraded", served_entities=[
        ServedEntityInput(name="next", entity_name=MODEL, entity_version="1", scale_to_zero_enabled=False)])
    assert w.serving_endpoints.get("degraded").state.config_update.value == "IN_PROGRESS"
    answer = post(ws, "/serving-endpoints/degraded/invocations", {"messages": USER})
    assert answer.status_code == 200 and answer.headers["served-model-name"] == "degraded-entity"
    assert answer.json()["choices"][0]["message"]["content"] == DEGRADED
    pending = post(ws, "/serving-endpoints/degraded/served-models/next/invocations", {"messages": USER})
    assert pending.status_code == 503 and pending.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    w.api_client.do("POST", "/api/2.0/serving-endpoints", body={"name": "brand-new", "config": {
        "served_entities": [{"entity_name": MODEL, "entity_version": "1"}]}})
    creating = post(ws, "/serving-endpoints/brand-new/invocations", {"messages": USER})
    assert creating.status_code == 503 and "not ready" in creating.json()["message"]


def test_missing_endpoints_and_entities_answer_like_the_real_api(ws: LocalWorkspace) -> None:
    missing = post(ws, "/serving-endpoints/nope/invocations", {"messages": USER})
    assert (missing.status_code, missing.json()) == (404, {
        "error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Endpoint with name 'nope' does not exist."})
    entity = post(ws, "/serving-endpoints/support-agent/served-models/nope/invocations", {"messages": USER})
    assert entity.status_code == 404 and entity.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(ResourceDoesNotExist):
        ws.client().serving_endpoints.query("nope", messages=[ChatMessage(role=ChatMessageRole.USER, content="x")])
    with pytest.raises(NotFoundError, match="does not exist"):
        openai_client(ws).chat.completions.create(model="nope", messages=USER)


# -- how versions answer -------------------------------------------------------------------------

def test_error_rate_fails_that_share_of_queries_with_the_seeded_status_and_message(ws: LocalWorkspace) -> None:
    session = requests.Session()
    answers = [session.post(f"{ws.url}/serving-endpoints/flaky/invocations", json={"messages": USER},
                            headers={"Authorization": f"Bearer {ws.token}"}) for _ in range(300)]
    failed = [a for a in answers if a.status_code != 200]
    assert 0.2 <= len(failed) / len(answers) <= 0.4  # 30% +- 4 standard deviations of 300 draws
    assert {a.status_code for a in failed} == {500}
    assert {(a.json()["error_code"], a.json()["message"]) for a in failed} == {("INTERNAL_ERROR", BROKEN)}
    assert all(a.headers["served-model-name"] == "flaky-entity" for a in answers)
    with ws.state.lock:
        logged = [entry["status"] for entry in ws.state.queries.log if entry["endpoint"] == "flaky"]
    assert logged == [a.status_code for a in answers]


def test_a_failed_query_raises_the_sdk_error_of_its_status(ws: LocalWorkspace) -> None:
    w = ws.client()
    ws.state.queries.configure(seed=1)
    with pytest.raises(InternalError, match="langgraph"):
        for _ in range(50):  # 30% fail: one of 50 does, for this seed and for any other with near certainty
            w.serving_endpoints.query("flaky", messages=[ChatMessage(role=ChatMessageRole.USER, content="x")])


def test_permission_denied_names_the_resource_and_its_span_is_in_error(ws: LocalWorkspace) -> None:
    answer = post(ws, "/serving-endpoints/denied/invocations", {"messages": USER, **EXTRA})
    assert answer.status_code == 403
    body = answer.json()
    assert body["error_code"] == "PERMISSION_DENIED" and "main.agents.docs_index" in body["message"]
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.RequestInfo"
    statuses = span_statuses(body["databricks_output"]["trace"])
    assert statuses["main.agents.docs_index"] == SpanStatusCode.ERROR and statuses["predict"] == SpanStatusCode.ERROR
    with pytest.raises(PermissionDenied, match="main.agents.docs_index"):
        ws.client().serving_endpoints.query("denied", messages=[ChatMessage(role=ChatMessageRole.USER, content="x")])


def test_latency_is_slept_outside_the_lock(ws: LocalWorkspace) -> None:
    slow: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: slow.update(
        answer=post(ws, "/serving-endpoints/slow/invocations", {"messages": USER}), done=time.monotonic()))
    started = time.monotonic()
    thread.start()
    deadline = time.monotonic() + 20
    while ws.state.queries.in_flight == 0 and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.01)
    assert ws.state.queries.in_flight == 1  # the slow query is being answered (sleeping its 3 s)...
    other = post(ws, "/serving-endpoints/degraded/invocations", {"messages": USER})
    assert other.status_code == 200
    assert thread.is_alive()  # ...and another query was answered meanwhile: the sleep does not hold the lock
    thread.join(30)
    assert slow["answer"].status_code == 200 and slow["done"] - started >= 3.0  # the latency is real
    with ws.state.lock:
        latencies = {entry["endpoint"]: entry["latency_ms"] for entry in ws.state.queries.log}
    assert latencies["slow"] >= 3000


# -- garbage -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, raw, status, error_code, reason", [
    ("/serving-endpoints/degraded/invocations", b"{not json", 400, "MALFORMED_REQUEST", "not JSON"),
    ("/serving-endpoints/degraded/invocations", b"[1, 2]", 400, "MALFORMED_REQUEST", "not an object"),
    ("/serving-endpoints/degraded/invocations", b"{}", 400, "BAD_REQUEST", "no input field"),
    ("/serving-endpoints/degraded/invocations", b'{"inputs": [1], "instances": [1]}', 400, "BAD_REQUEST",
     "two table formats"),
    ("/serving-endpoints/degraded/invocations", b'{"messages": "hi"}', 400, "BAD_REQUEST", "messages not a list"),
    ("/serving-endpoints/degraded/invocations", b'{"messages": [{"content": "x"}]}', 400, "BAD_REQUEST",
     "a message without a role"),
    ("/serving-endpoints/degraded/invocations", b'{"dataframe_records": 3}', 400, "BAD_REQUEST",
     "records not a list"),
    ("/serving-endpoints/degraded/invocations", b'{"prompt": "x", "stream": true}', 400, "BAD_REQUEST",
     "streaming a completion"),
    ("/serving-endpoints/degraded/invocations", b'{"messages": [], "stream": "yes"}', 400, "MALFORMED_REQUEST",
     "stream not a boolean"),
    ("/serving-endpoints/degraded/invocations", b'{"messages": [], "databricks_options": 1}', 400,
     "MALFORMED_REQUEST", "options not an object"),
    ("/serving-endpoints/degraded/invocations", b'{"input": 7}', 400, "BAD_REQUEST", "input not a string or list"),
    ("/serving-endpoints/chat/completions", b'{"messages": []}', 400, "INVALID_PARAMETER_VALUE", "no model"),
    ("/serving-endpoints/chat/completions", b'{"model": 3, "messages": []}', 400, "MALFORMED_REQUEST",
     "model not a string"),
    ("/serving-endpoints/chat/completions", b'{"model": "degraded"}', 400, "BAD_REQUEST", "no messages"),
    ("/serving-endpoints/responses", b'{"model": "degraded", "input": []}', 400, "BAD_REQUEST", "empty input"),
])
def test_garbage_bodies_get_clean_400s(ws: LocalWorkspace, path: str, raw: bytes, status: int, error_code: str,
                                       reason: str) -> None:
    answer = post(ws, path, raw=raw, headers={"Content-Type": "application/json"})
    assert answer.status_code == status, reason
    assert answer.json()["error_code"] == error_code, reason
    assert isinstance(answer.json()["message"], str) and answer.json()["message"], reason


def test_queries_need_a_token(ws: LocalWorkspace) -> None:
    answer = requests.post(f"{ws.url}/serving-endpoints/degraded/invocations", json={"messages": USER}, timeout=10)
    assert answer.status_code == 401
