"""Queries to served models: how the local workspace answers an agent being asked something.

The routes (registered in `routes.py`, which calls `invoke` and `export_metrics`):
- `POST /serving-endpoints/{name}/invocations`: the whole endpoint; each query goes to one served
  entity drawn by the traffic percentages of the config being served (SDK `query()`, the MLflow
  deployments client's `predict()`).
- `POST /serving-endpoints/{name}/served-models/{served_entity}/invocations`: one served entity,
  whatever its traffic share, 0% included (databricks-agents `deployments.py` and the app templates
  query a `feedback` entity at 0% this way).
- `POST /serving-endpoints/chat/completions` and `POST /serving-endpoints/responses`: the
  OpenAI-compatible routes, `model` naming the endpoint. They are where the `openai` client posts
  with `base_url=<host>/serving-endpoints` (its `resources/chat/completions/completions.py` posts
  "/chat/completions", `resources/responses/responses.py` "/responses"; seed 002).
- `GET /api/2.0/serving-endpoints/{name}/metrics`: the metrics export (`metrics.py`).

What an answer depends on:
- Request formats (seed 002, MLflow's scoring server `mlflow/pyfunc/scoring_server/__init__.py`):
  chat `messages`, Responses `input`, `prompt`, or exactly one of `dataframe_records`,
  `dataframe_split`, `instances`, `inputs`; plus `custom_inputs`, `databricks_options:
  {return_trace: true}` and `stream`. Anything else is 400 BAD_REQUEST with the scoring server's
  message. Shapes of the answers: `answers.py`.
- Only the config being served answers: an endpoint whose update is in progress keeps serving its
  current config ("the previous config keeps serving", shared/reference/databricks-api.md), and a
  served entity answers once its deployment is READY.
- Each model version answers as its seed `serving` key says (`Behaviour`; shared/design.md
  "Rollouts"); without one, a short echo naming who answered, with 200.
- Every answer from a served entity carries the `served-model-name` header (the header the SDK's
  `query()` reads into `QueryEndpointResponse.served_model_name`).

Errors before a served entity is reached:
- no such endpoint: 404 RESOURCE_DOES_NOT_EXIST "Endpoint with name '...' does not exist." (a real
  answer to a query is quoted in databricks-demos/dbdemos#220);
- no such served entity on the per-entity route: 404 RESOURCE_DOES_NOT_EXIST (our wording);
- an endpoint or entity whose deployment is still in progress: 503 TEMPORARILY_UNAVAILABLE (our
  choice: the real code is not published; "temporarily unavailable" is what it is, and clients
  retry it).

Determinism and time: the traffic split and the error-rate draws come from one `random.Random(seed)`
(seed 0 unless `configure` says otherwise), so a run with the same seed and the same query order
draws the same. The latency is slept for real, outside the workspace lock, so other requests go on
meanwhile; metrics record the measured time.
"""

from __future__ import annotations

import json
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reconciler.localworkspace import answers, fields
from reconciler.localworkspace.answers import Failure, Query, Served
from reconciler.localworkspace.catalog import Catalog
from reconciler.localworkspace.clock import hex_id
from reconciler.localworkspace.errors import ApiError, not_found
from reconciler.localworkspace.metrics import (
    OPENMETRICS_CONTENT_TYPE,
    PROMETHEUS_CONTENT_TYPE,
    EntityKey,
    EntityView,
    Metrics,
    concurrency,
    wants_openmetrics,
)
from reconciler.localworkspace.serving import Endpoint, Serving, find_entity, is_uc_model

if TYPE_CHECKING:
    from reconciler.localworkspace.state import WorkspaceState

BEHAVIOUR_KEYS = ("reply", "latency_ms", "error_rate", "status", "message", "permission_denied")
# MLflow's scoring server: `SUPPORTED_FORMATS` (one of them, exactly) and the unified LLM keys
# (`mlflow/pyfunc/utils/serving_data_parser.py`, any of them).
TABLE_FORMATS = ("dataframe_records", "dataframe_split", "instances", "inputs")
LLM_FORMATS = ("messages", "input", "prompt")
REQUIRED_INPUT_FORMAT = ("The input must be a JSON dictionary with exactly one of the input fields "
                         "{'dataframe_records', 'dataframe_split', 'instances', 'inputs'}")
# The error code a failed query carries for its status (the codes `databricks-sdk` maps,
# `errors/platform.py`); other 4xx are BAD_REQUEST and other 5xx INTERNAL_ERROR.
ERROR_CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
               409: "RESOURCE_CONFLICT", 429: "REQUEST_LIMIT_EXCEEDED", 500: "INTERNAL_ERROR",
               501: "NOT_IMPLEMENTED", 503: "TEMPORARILY_UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
LOG_SIZE = 10000


@dataclass(frozen=True)
class Behaviour:
    """How a model version answers queries: the seed's `serving` key (shared/design.md).

    `reply` is the answer's text (default: an echo); every answer takes `latency_ms`; a share
    `error_rate` of the queries fail with `status` and `message`. `permission_denied: <resource>`
    is the failure of an agent calling a resource it may not use: 403 PERMISSION_DENIED naming the
    resource, whose span is the one in error. `error_rate` defaults to 1 when a failure is described
    (status, message or permission_denied) and to 0 otherwise. A failure `status` of 200 is a
    degraded answer: `message` is the reply while a span of the trace is in error.
    """

    reply: str | None = None
    latency_ms: float = 0.0
    error_rate: float = 0.0
    status: int = 500
    message: str | None = None
    permission_denied: str | None = None

    def failure(self) -> Failure:
        message = self.message
        if message is None:
            message = (f"PERMISSION_DENIED: the served entity may not use resource '{self.permission_denied}'."
                       if self.permission_denied else "Internal error while evaluating the model.")
        code = ERROR_CODES.get(self.status, "BAD_REQUEST" if self.status < 500 else "INTERNAL_ERROR")
        return Failure(status=self.status, error_code=code if self.status >= 400 else "", message=message,
                       resource=self.permission_denied)


ECHO = Behaviour()


def parse_behaviour(raw: Any) -> Behaviour:
    """A model version's `serving` key, checked; ValueError says what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError(f"serving must be a mapping of {', '.join(BEHAVIOUR_KEYS)}")
    unknown = sorted(set(raw) - set(BEHAVIOUR_KEYS))
    if unknown:
        raise ValueError(f"serving: unknown key '{unknown[0]}'; expected {', '.join(BEHAVIOUR_KEYS)}")
    for key in ("reply", "message", "permission_denied"):
        if key in raw and (not isinstance(raw[key], str) or (key == "permission_denied" and not raw[key])):
            raise ValueError(f"serving.{key} must be a {'non-empty ' if key == 'permission_denied' else ''}string")
    for key, low, high in (("latency_ms", 0, 600000), ("error_rate", 0, 1)):
        value = raw.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"serving.{key} must be a number from {low} to {high}")
    status = raw.get("status", 403 if raw.get("permission_denied") else 500)
    if isinstance(status, bool) or not isinstance(status, int) or not (status == 200 or 400 <= status <= 599):
        raise ValueError("serving.status must be 200 (a degraded answer) or an HTTP error status from 400 to 599")
    fails = any(key in raw for key in ("status", "message", "permission_denied"))
    return Behaviour(reply=raw.get("reply"), latency_ms=float(raw.get("latency_ms", 0)),
                     error_rate=float(raw.get("error_rate", 1.0 if fails else 0.0)), status=status,
                     message=raw.get("message"), permission_denied=raw.get("permission_denied"))


@dataclass(frozen=True)
class Target:
    """The served entity a query reached, and how its model version answers."""

    served: Served
    behaviour: Behaviour
    key: EntityKey


@dataclass
class Queries:
    """The state behind queries: the draws, the metrics and a log of the last queries answered.
    Methods are called with the workspace lock held."""

    seed: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    metrics: Metrics = field(default_factory=Metrics)
    log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=LOG_SIZE))
    in_flight: int = 0  # queries that reached a served entity and are not answered yet

    def configure(self, *, seed: int | None = None, metrics_window_seconds: float | None = None) -> None:
        """Re-seed the draws; switch the metrics export between cumulative counters (window 0) and
        last-N-seconds gauges (see `metrics.py`)."""
        if seed is not None:
            self.seed, self.rng = seed, random.Random(seed)
        if metrics_window_seconds is not None:
            if metrics_window_seconds < 0:
                raise ValueError("metrics_window_seconds must be 0 (cumulative) or a positive number of seconds")
            self.metrics.window_seconds = float(metrics_window_seconds)

    def target(self, serving: Serving, catalog: Catalog, endpoint_name: str, entity_name: str | None,
               caller: Any = None) -> Target:
        """The served entity a query reaches (the named one, or one drawn by the traffic split) and
        how its model version answers. Querying needs CAN_QUERY on the endpoint (Model Serving
        permissions: "CAN_QUERY: query the endpoint"; serving.py enforces the levels)."""
        endpoint = serving.get(endpoint_name, caller, "CAN_QUERY")
        entity = self._entity(endpoint, entity_name)
        version, behaviour, resources = None, ECHO, {}
        if is_uc_model(entity):
            try:
                version = catalog.version(entity["entity_name"], entity["entity_version"])
            except ApiError:
                version = None  # deleted from the registry after it was deployed: the container still answers
        if version is not None:
            behaviour = version.serving or ECHO
            resources = declared_resources(version.mlmodel)
        model = entity.get("entity_name") or entity.get("external_model", {}).get("name", entity["name"])
        served = Served(endpoint=endpoint.name, entity=entity["name"], model=model,
                        version=str(entity.get("entity_version", "")), resources=resources,
                        experiment_id=entity.get("environment_vars", {}).get("MLFLOW_EXPERIMENT_ID"))
        return Target(served, behaviour, (endpoint.id, entity["name"], int(entity.get("creation_timestamp", 0))))

    def _entity(self, endpoint: Endpoint, entity_name: str | None) -> dict[str, Any]:
        """The served entity that answers: the named one, or one drawn by the traffic split."""
        config = endpoint.config
        if entity_name is not None:
            entity = find_entity(config, entity_name)
            if entity is not None:
                return entity
            if endpoint.pending is not None and find_entity(endpoint.pending.config, entity_name) is not None:
                raise unavailable(f"Served entity '{entity_name}' of endpoint '{endpoint.name}' is not ready yet: "
                                  "its deployment is in progress.")
            raise not_found(f"Served entity '{entity_name}' does not exist in endpoint '{endpoint.name}'.")
        if not config or not config.get("served_entities"):
            if endpoint.pending is not None:
                raise unavailable(f"Endpoint '{endpoint.name}' is not ready yet: its first config is being deployed.")
            why = " (its config update failed)" if endpoint.failed is not None else ""
            raise not_found(f"Endpoint '{endpoint.name}' has no served entities to query{why}.")
        routes = config.get("traffic_config", {}).get("routes", [])
        draw, cumulative = self.rng.random() * 100, 0
        for route in routes:
            cumulative += route["traffic_percentage"]
            if draw < cumulative:
                name = route.get("served_entity_name") or route.get("served_model_name")
                entity = find_entity(config, name)
                if entity is not None:
                    return entity
        return config["served_entities"][0]  # unreachable for a valid config (routes add up to 100)

    def draw_failure(self, behaviour: Behaviour) -> Failure | None:
        if behaviour.error_rate and self.rng.random() < behaviour.error_rate:
            return behaviour.failure()
        return None

    def record(self, target: Target, api: str, status: int, latency_ms: float, *, stream: bool = False) -> None:
        """Count an answer in the metrics and the log."""
        self.metrics.record(target.key, status, latency_ms, time.monotonic())
        self.log.append({"endpoint": target.served.endpoint, "served_entity": target.served.entity,
                         "api": api, "status": status, "latency_ms": round(latency_ms, 3), "stream": stream})


def declared_resources(mlmodel: dict[str, Any] | None) -> dict[str, list[str]]:
    """MLmodel `resources.databricks`: kind -> resource names (the calls an agent's trace shows)."""
    databricks = ((mlmodel or {}).get("resources") or {}).get("databricks") or {}
    if not isinstance(databricks, dict):
        return {}
    return {kind: [str(item["name"]) for item in items if isinstance(item, dict) and item.get("name")]
            for kind, items in databricks.items() if isinstance(items, list)}


def unavailable(message: str) -> ApiError:
    return ApiError(503, "TEMPORARILY_UNAVAILABLE", message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BAD_REQUEST", message)


# -- handling one query --------------------------------------------------------------------------

def invoke(state: WorkspaceState, body: dict[str, Any], *, api: str, endpoint_name: str | None = None,
           entity_name: str | None = None, caller: Any = None) -> tuple[int, Any, dict[str, str]]:
    """Answer one query: (status, JSON body or SSE bytes, headers). Called WITHOUT the workspace
    lock: it takes the lock to choose the served entity and draw
    the outcome, sleeps the latency without it, and takes it again to record the answer."""
    if endpoint_name is None:  # the OpenAI-compatible routes name the endpoint in `model`
        endpoint_name = str(fields.text(body, "model", required=True))
    with state.lock:
        state.settle()
        target = state.queries.target(state.serving, state.catalog, endpoint_name, entity_name, caller)
        try:
            query = parse_query(api, body)
        except ApiError as exc:  # the model's server rejects the input: the entity's 4xx
            state.queries.record(target, api, exc.status, 0.0)
            exc.headers["served-model-name"] = target.served.entity
            raise
        failure = state.queries.draw_failure(target.behaviour)
        state.queries.in_flight += 1
    started, start_ns = time.monotonic(), time.time_ns()
    status = 500
    try:
        if target.behaviour.latency_ms:
            time.sleep(target.behaviour.latency_ms / 1000)
        request_id = hex_id()
        status, payload, content_type = answer(query, target, failure, request_id, start_ns, time.time_ns())
    finally:
        with state.lock:
            state.queries.in_flight -= 1
            state.queries.record(target, api, status, (time.monotonic() - started) * 1000, stream=query.stream)
    headers = {"Content-Type": content_type, "served-model-name": target.served.entity, "x-request-id": request_id}
    return status, payload, headers


def answer(query: Query, target: Target, failure: Failure | None, request_id: str, start_ns: int,
           end_ns: int) -> tuple[int, Any, str]:
    """(status, body, content type) of a query whose outcome is drawn."""
    served, behaviour = target.served, target.behaviour
    failed = failure is not None and failure.status >= 400
    reply = failure.message if failure is not None and not failed else behaviour.reply or answers.echo(query, served)
    created = start_ns // 1_000_000_000
    if failed:
        assert failure is not None
        trace = answers.trace(query, served, request_id=request_id, start_ns=start_ns, end_ns=end_ns, output=None,
                              failure=failure) if query.return_trace else None
        return failure.status, answers.error_body(failure, request_id, trace), "application/json"
    body = answers.success_body(query, served, reply, request_id=request_id, created=created, trace=None)
    trace = answers.trace(query, served, request_id=request_id, start_ns=start_ns, end_ns=end_ns, output=body,
                          failure=failure) if query.return_trace else None
    if query.stream:
        stream = answers.stream_body(query, served, reply, request_id=request_id, created=created, trace=trace)
        return 200, stream, "text/event-stream; charset=utf-8"
    return 200, answers.with_extras(body, query, trace) if trace is not None else body, "application/json"


def parse_query(api: str, body: dict[str, Any]) -> Query:
    """The query a request body asks; 400 for anything a model server would refuse."""
    stream = bool(fields.boolean(body, "stream"))
    custom_inputs = fields.obj(body, "custom_inputs")
    options = fields.obj(body, "databricks_options") or {}
    return_trace = bool(fields.boolean(options, "return_trace", parent="databricks_options"))
    if api == "chat":
        fmt = "messages"
    elif api == "responses":
        fmt = "input"
    else:
        present = [key for key in LLM_FORMATS if key in body]
        tables = [key for key in TABLE_FORMATS if key in body]
        if present:
            fmt = present[0]
        elif len(tables) == 1:
            fmt = tables[0]
        else:
            raise bad_request(f"{REQUIRED_INPUT_FORMAT}. Received dictionary with input fields: {sorted(body)}.")
    if body.get(fmt) is None:
        raise bad_request(f"Missing required field: {fmt}")
    if stream and fmt not in ("messages", "input"):
        raise bad_request(f"Streaming is supported for chat `messages` and Responses `input` queries, not `{fmt}`.")
    text, rows = read_input(fmt, body[fmt])
    return Query(api=api, format=fmt, text=text, rows=rows, stream=stream, custom_inputs=custom_inputs,
                 return_trace=return_trace, body=body)


def read_input(fmt: str, value: Any) -> tuple[str, int]:
    """(the last user text, the number of rows) of an input; 400 when its shape is wrong."""
    if fmt == "messages":
        if not isinstance(value, list) or not value or not all(isinstance(m, dict) for m in value):
            raise bad_request("`messages` must be a non-empty list of {role, content} objects.")
        for i, message in enumerate(value):
            if not isinstance(message.get("role"), str):
                raise bad_request(f"messages[{i}].role must be a string.")
        users = [m for m in value if m["role"] == "user"] or value
        return content_text(users[-1].get("content")), 1
    if fmt == "input":
        if isinstance(value, str):
            return value, 1
        if not isinstance(value, list) or not value or not all(isinstance(item, dict) for item in value):
            raise bad_request("`input` must be a string or a non-empty list of input items.")
        users = [item for item in value if item.get("role") == "user"] or value
        return content_text(users[-1].get("content", users[-1].get("output", ""))), 1
    if fmt == "prompt":
        if isinstance(value, str):
            return value, 1
        if isinstance(value, list) and value and all(isinstance(p, str) for p in value):
            return value[-1], len(value)
        raise bad_request("`prompt` must be a string or a list of strings.")
    rows = value.get("data") if fmt == "dataframe_split" and isinstance(value, dict) else value
    if fmt in ("dataframe_records", "instances", "dataframe_split") and not isinstance(rows, list):
        raise bad_request(f"`{fmt}` must be {'an object with a `data` list' if fmt == 'dataframe_split' else 'a list'}.")
    if isinstance(rows, dict):  # `inputs` in columnar form: {column: [values]}
        first: Any = next(iter(rows.values()), [])
        return preview(rows), len(first) if isinstance(first, list) else 1
    return preview(rows[0] if isinstance(rows, list) and rows else rows), len(rows) if isinstance(rows, list) else 1


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or a list of parts with `text`."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict)).strip()
    return ""


def preview(value: Any) -> str:
    return json.dumps(value)[:200]


# -- the metrics export --------------------------------------------------------------------------

def export_metrics(state: WorkspaceState, endpoint_name: str, accept: str, caller: Any = None) -> tuple[bytes, str]:
    """(text, content type) of the metrics export; called with the workspace lock held. Reading
    metrics needs CAN_VIEW, like reading the endpoint."""
    endpoint = state.serving.get(endpoint_name, caller, "CAN_VIEW")
    entities = [EntityView(name=e["name"], key=(endpoint.id, e["name"], int(e.get("creation_timestamp", 0))),
                           concurrency=concurrency(e))
                for e in (endpoint.config or {}).get("served_entities", [])]
    openmetrics = wants_openmetrics(accept)
    text = state.queries.metrics.render(entities, now=time.monotonic(), wall_ms=int(time.time() * 1000),
                                        openmetrics=openmetrics)
    return text.encode(), OPENMETRICS_CONTENT_TYPE if openmetrics else PROMETHEUS_CONTENT_TYPE
