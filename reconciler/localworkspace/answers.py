"""What a served agent answers: the JSON bodies, the streamed events and the MLflow trace.

Pure functions of a parsed request and an outcome, called by `queries.py` once it has chosen the
served entity and drawn the outcome. The shapes are the ones clients parse:
- `messages` (chat): an OpenAI chat completion, `object: chat.completion` (what the OpenAI client's
  `chat.completions.create` reads; the `QueryEndpointResponse` of `databricks-sdk`
  `service/serving.py`); streamed as `chat.completion.chunk` events.
- `input` (Responses API): an OpenAI Responses object, `object: response`, whose `output` is a list
  of `message` items with `output_text` parts (MLflow's `ResponsesAgentResponse`,
  `mlflow/types/responses.py`); streamed as `response.output_text.delta`,
  `response.output_item.done` and `response.completed` events.
- `prompt`: a `text_completion` (`QueryEndpointResponseObject` in the SDK).
- `dataframe_records`, `dataframe_split`, `instances`, `inputs`: `{"predictions": [...]}`, one per
  row (MLflow's scoring server, `mlflow/pyfunc/scoring_server/__init__.py`, `predictions_to_json`).
Agents echo `custom_inputs` back as `custom_outputs` (the field ResponsesAgent and ChatAgent answers
carry), so a caller can see its custom inputs reached the model. With
`databricks_options: {return_trace: true}` the answer carries `databricks_output: {trace: ...}` (the
keys MLflow reads back in `mlflow/genai/evaluation/base.py`, constants in
`mlflow/tracing/constant.py`); the trace has the shape MLflow's serving exporter produces
(`mlflow/tracing/export/inference_table.py`: `Trace.to_dict()`, schema version 3), so
`mlflow.entities.Trace.from_dict` reads it. Streams are server-sent events, `data: <json>` lines
ending with `data: [DONE]` ("Databricks endpoint streaming response ends with a line of
"data: [DONE]"", `mlflow/deployments/databricks/__init__.py`, `predict_stream`).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

# MLmodel `resources.databricks` kinds, and the span type an agent's call to one shows in its trace.
RESOURCE_SPAN_TYPES = {"serving_endpoint": "CHAT_MODEL", "vector_search_index": "RETRIEVER", "function": "TOOL",
                       "genie_space": "TOOL", "sql_warehouse": "TOOL", "table": "TOOL", "uc_connection": "TOOL",
                       "app": "TOOL", "lakebase": "TOOL"}
PREVIEW_CHARS = 1000  # MLflow's TRACE_REQUEST_RESPONSE_PREVIEW_MAX_LENGTH_OSS


@dataclass(frozen=True)
class Query:
    """A parsed query: which API it came through and what the model is asked."""

    api: str  # "chat", "responses" (the OpenAI-compatible routes) or "invocations"
    format: str  # the input key: messages | input | prompt | dataframe_records | dataframe_split | instances | inputs
    text: str  # the last user text (what an echo repeats and a trace previews)
    rows: int = 1  # predictions to return for a dataframe or tensor input
    stream: bool = False
    custom_inputs: dict[str, Any] | None = None
    return_trace: bool = False
    body: dict[str, Any] = field(default_factory=dict)  # the request as sent, for the trace


@dataclass(frozen=True)
class Served:
    """Who answered: the endpoint, the served entity and the model version behind it."""

    endpoint: str
    entity: str
    model: str  # the entity's `entity_name` (a Unity Catalog model, a foundation or external model)
    version: str
    resources: dict[str, list[str]] = field(default_factory=dict)  # MLmodel resource kind -> names
    experiment_id: str | None = None  # the entity's MLFLOW_EXPERIMENT_ID, where its traces go


@dataclass(frozen=True)
class Failure:
    """A failed query: the HTTP status, the API error code and message, and the resource whose call
    failed (its span is the one in error), if any. A status below 400 is a degraded answer: the
    agent answers `message` as its reply while a span of its trace is in error."""

    status: int
    error_code: str
    message: str
    resource: str | None = None


def echo(query: Query, served: Served) -> str:
    """The reply of a model version whose seed gives none: short, and naming who answered."""
    said = query.text if len(query.text) <= 200 else query.text[:200] + "..."
    return f"Echo from {served.entity} ({served.model} version {served.version}): {said}"


def success_body(query: Query, served: Served, reply: str, *, request_id: str, created: int,
                 trace: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON answer of a query that succeeded."""
    if query.format == "messages":
        body = chat_completion(reply, served, request_id, created, prompt=query.text)
    elif query.format == "input":
        body = response_object(reply, served, request_id, created, prompt=query.text)
    elif query.format == "prompt":
        body = {"id": f"cmpl-{request_id}", "object": "text_completion", "created": created, "model": served.model,
                "choices": [{"index": 0, "text": reply, "finish_reason": "stop"}], "usage": usage(query.text, reply)}
    else:
        body = {"predictions": [reply] * query.rows}
    return with_extras(body, query, trace)


def with_extras(body: dict[str, Any], query: Query, trace: dict[str, Any] | None) -> dict[str, Any]:
    if query.custom_inputs is not None and query.format in ("messages", "input"):
        body["custom_outputs"] = query.custom_inputs
    if trace is not None:
        body["databricks_output"] = {"trace": trace}
    return body


def error_body(failure: Failure, request_id: str, trace: dict[str, Any] | None) -> dict[str, Any]:
    """The error answer, in the API's shape, with the RequestInfo detail real answers carry
    (databricks-demos/dbdemos#220 quotes one). A trace asked for is attached too (our choice: it
    shows which call failed)."""
    body: dict[str, Any] = {"error_code": failure.error_code, "message": failure.message, "details": [
        {"@type": "type.googleapis.com/google.rpc.RequestInfo", "request_id": request_id, "serving_data": ""}]}
    if trace is not None:
        body["databricks_output"] = {"trace": trace}
    return body


def chat_completion(reply: str, served: Served, request_id: str, created: int, *, prompt: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-{request_id}", "object": "chat.completion", "created": created, "model": served.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
            "usage": usage(prompt, reply)}


def response_object(reply: str, served: Served, request_id: str, created: int, *, prompt: str) -> dict[str, Any]:
    return {"id": f"resp_{request_id}", "object": "response", "created_at": created, "status": "completed",
            "model": served.model, "output": [output_message(reply, request_id)], "error": None,
            "incomplete_details": None, "instructions": None, "metadata": {}, "parallel_tool_calls": False,
            "temperature": None, "tool_choice": "auto", "tools": [], "top_p": None,
            "usage": {"input_tokens": words(prompt), "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": words(reply), "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": words(prompt) + words(reply)}}


def output_message(reply: str, request_id: str) -> dict[str, Any]:
    return {"type": "message", "id": f"msg_{request_id}", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": reply, "annotations": []}]}


def usage(prompt: str, reply: str) -> dict[str, int]:
    """Token counts, approximated by words (the local workspace has no tokenizer)."""
    return {"prompt_tokens": words(prompt), "completion_tokens": words(reply),
            "total_tokens": words(prompt) + words(reply)}


def words(text: str) -> int:
    return len(text.split())


# -- streams -------------------------------------------------------------------------------------

def stream_body(query: Query, served: Served, reply: str, *, request_id: str, created: int,
                trace: dict[str, Any] | None) -> bytes:
    """The whole server-sent event stream of a successful streamed query."""
    if query.format == "input":
        events = response_events(reply, served, request_id, created, query, trace)
    else:
        events = chat_chunks(reply, served, request_id, created, query, trace)
    lines = [f"data: {json.dumps(event)}\n\n" for event in events]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


def pieces(reply: str) -> list[str]:
    """The reply in word-sized deltas that join back to it exactly."""
    parts = reply.split(" ")
    return [part if i == 0 else " " + part for i, part in enumerate(parts)] if reply else [""]


def chat_chunks(reply: str, served: Served, request_id: str, created: int, query: Query,
                trace: dict[str, Any] | None) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk", "created": created,
                "model": served.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    chunks = [chunk({"role": "assistant", "content": text} if i == 0 else {"content": text}, None)
              for i, text in enumerate(pieces(reply))]
    chunks.append(with_extras(chunk({}, "stop"), query, trace))
    return chunks


def response_events(reply: str, served: Served, request_id: str, created: int, query: Query,
                    trace: dict[str, Any] | None) -> list[dict[str, Any]]:
    item_id = f"msg_{request_id}"
    events: list[dict[str, Any]] = [{"type": "response.output_text.delta", "item_id": item_id, "output_index": 0,
                                     "content_index": 0, "delta": text} for text in pieces(reply)]
    events.append({"type": "response.output_item.done", "output_index": 0, "item": output_message(reply, request_id)})
    completed = with_extras(response_object(reply, served, request_id, created, prompt=query.text), query, trace)
    events.append({"type": "response.completed", "response": completed})
    return events


# -- traces --------------------------------------------------------------------------------------

def trace(query: Query, served: Served, *, request_id: str, start_ns: int, end_ns: int, output: Any,
          failure: Failure | None) -> dict[str, Any]:
    """An MLflow trace (schema v3, `Trace.to_dict()`) of the agent answering: a root AGENT span and
    one child span per resource its MLmodel declares, called in order. A failure puts its span in
    error: the resource's span when it names one (added if undeclared), else the root; the root is
    in error too when the query itself failed (status 400 and above)."""
    trace_bytes = os.urandom(16)
    trace_id = "tr-" + trace_bytes.hex()
    root_id = os.urandom(8)
    calls = [(kind, name) for kind, names in sorted(served.resources.items()) for name in names]
    if failure is not None and failure.resource and failure.resource not in [name for _, name in calls]:
        calls.append(("function", failure.resource))
    failed_call = failure is not None and failure.resource is not None
    root_error = failure is not None and (failure.status >= 400 or not failed_call)
    step = max(1, (end_ns - start_ns) // (len(calls) + 2))
    spans = [span(trace_id, trace_bytes, root_id, None, "predict", "AGENT", start_ns, end_ns, query.body,
                  output, failure.message if failure is not None and root_error else None)]
    for i, (kind, name) in enumerate(calls):
        failing = failed_call and failure is not None and name == failure.resource
        begin = start_ns + (i + 1) * step
        spans.append(span(trace_id, trace_bytes, os.urandom(8), root_id, name, RESOURCE_SPAN_TYPES.get(kind, "TOOL"),
                          begin, begin + step, {"query": query.text}, None if failing else {"ok": True},
                          failure.message if failing and failure is not None else None))
    location: dict[str, Any] = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {}}
    if served.experiment_id:
        location["mlflow_experiment"] = {"experiment_id": served.experiment_id}
    info = {"trace_id": trace_id, "client_request_id": request_id, "trace_location": location,
            "request_time": datetime.fromtimestamp(start_ns / 1e9, timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "state": "ERROR" if failure is not None and failure.status >= 400 else "OK",
            "trace_metadata": {"mlflow.databricks.modelServingEndpointName": served.endpoint,
                               "mlflow.trace_schema.version": "3"},
            "request_preview": json.dumps(query.body)[:PREVIEW_CHARS],
            "execution_duration_ms": (end_ns - start_ns) // 1_000_000}
    if output is not None:
        info["response_preview"] = json.dumps(output)[:PREVIEW_CHARS]
    return {"info": info, "data": {"spans": spans}}


def span(trace_id: str, trace_bytes: bytes, span_id: bytes, parent_id: bytes | None, name: str, span_type: str,
         start_ns: int, end_ns: int, inputs: Any, outputs: Any, error: str | None) -> dict[str, Any]:
    """One span as `mlflow.entities.Span.to_dict()` writes it: ids base64-encoded, attribute values
    JSON-encoded, an `exception` event and STATUS_CODE_ERROR when it failed."""
    attributes = {"mlflow.traceRequestId": json.dumps(trace_id), "mlflow.spanType": json.dumps(span_type),
                  "mlflow.spanInputs": json.dumps(inputs)}
    if outputs is not None:
        attributes["mlflow.spanOutputs"] = json.dumps(outputs)
    events = []
    if error is not None:
        events.append({"name": "exception", "time_unix_nano": end_ns,
                       "attributes": {"exception.message": error, "exception.type": "Exception"}})
    return {"trace_id": b64(trace_bytes), "span_id": b64(span_id), "parent_span_id": b64(parent_id) if parent_id else None,
            "name": name, "start_time_unix_nano": start_ns, "end_time_unix_nano": end_ns, "events": events,
            "status": {"code": "STATUS_CODE_ERROR" if error is not None else "STATUS_CODE_OK",
                       "message": error or ""},
            "attributes": attributes, "links": []}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
