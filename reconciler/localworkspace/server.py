"""The local workspace's HTTP server: a Databricks REST API look-alike for demos, tests and benchmarks.

The unmodified `databricks-sdk` talks to it exactly as to a real workspace:

    with LocalWorkspace(seed="tests/seeds/support_agent.yaml") as ws:
        w = ws.client()                       # WorkspaceClient(host=ws.url, token=ws.token, ...)
        w.serving_endpoints.create_and_wait(...)
        ws.requests()                         # what the server saw, to count calls

`run()` serves one until SIGINT/SIGTERM (`reconciler sim serve`); `LocalWorkspace` serves one on a
background thread for tests. The routes are listed in `routes.py` and, for MLflow's own client
(tracking URI `databricks`, registry URI `databricks-uc`), in `mlflow_routes.py`; the rules behind
them live in `serving.py`, `catalog.py`, `resources.py`, `workspace_files.py`, `mlflow_tracking.py`,
`registration.py` and `files_api.py`, and, for queries to served models and the metrics export,
`queries.py`.

Requests
- Every request needs `Authorization: Bearer <token>`. Without one the answer is 401 "Credential
  was not sent or was of an unsupported type for this API."; with an unknown token it is 403
  "Invalid access token.", as real workspaces answer (both captured in public issue reports).
  Each token belongs to a user or service principal (`identities.py`; the default token to the
  default user, a workspace admin) and the handlers enforce what that principal may do (endpoint
  permissions in `serving.py`). A read-only token (`add_token(..., read_only=True)`) may read; its
  writes get 403 PERMISSION_DENIED. `/.well-known/databricks-config` (probed by the SDK's
  `Config()` before it has credentials) and `/__sim/...` need no token.
- The path is split into segments and each is percent-decoded exactly once (`split_path`): an
  encoded slash stays inside its segment (`a%2Fb` is one name, which the handler refuses as a bad
  name), and `.`/`..` segments never route (`DOT_SEGMENTS`): nothing is resolved.
- Errors are `{"error_code", "message"}` JSON with the status the real API uses; a path with no API
  is 404 ENDPOINT_NOT_FOUND; a body that is not a JSON object, or a field of the wrong type, is 400
  MALFORMED_REQUEST. No request can crash the server or get a traceback back.
- Requests are handled one at a time under the workspace lock (atomic), on a thread per connection
  (HTTP/1.1 keep-alive, Content-Length always set). A query to a served model sleeps its latency
  outside the lock, so slow agents do not hold up other requests.

Test controls (off unless asked), as methods and under `/__sim/` (a prefix the real API never uses)
for a server in another process:
    GET  /__sim/health                   {"ok": true}
    GET  /__sim/requests                 {"requests": [{method, path, query, status, body, fault}]}
    POST /__sim/requests/reset
    POST /__sim/faults                   {"rate": 0.3, "seed": 7, "kinds": ["429", "503", "drop", "slow"],
                                          "retry_after": 0, "slow_ms": 200, "max_faults": null,
                                          "only": null}   # or ["PATCH", "/api/2.0/..."]: only that request
    POST /__sim/latency                  {"ms": 50}
    POST /__sim/update-seconds           {"seconds": 2.0}
    POST /__sim/registration             {"seconds": 2.0, "failure": null}   # see "Registration" below
    POST /__sim/seed                     a seed document (below)
    POST /__sim/tokens                   {"token": "viewer-token", "read_only": true, "principal": null}
    POST /__sim/log-responses            {"on": true}
    POST /__sim/queries                  {"seed": 7, "metrics_window_seconds": 0}   (see queries.py, metrics.py)
`hold_answer(method, path)` (in-process only) handles the next such request, then keeps its answer
until the returned `Hold` is released: the client is then known to wait between a write that
landed and its answer (a test stops it there, e.g. with SIGSTOP).
The request log holds `/api/` calls only (not `/.well-known`, `/__sim` nor queries to served
models, which `state.queries.log` keeps), in completion order.
Each entry: `method`; `path` (percent-decoded); `raw_path` (as sent); `segments` (each decoded
once: "exactly one encoded segment" is `len(segments)` and `raw_path`); `query`; `body` (the
parsed JSON or form); `identity` (the principal's name: a user's e-mail or a service principal's
application id; None for a missing or unknown token; never the token); `status` (None for a dropped
connection); `fault` (the injected fault, if any); `received_at` and `answered_at` (Unix seconds,
`answered_at` None when no answer left: "no write from X after T" compares these with T); and
`seq` (1, 2, ... in completion order). With
`log_responses` on, each handled request also has `response: {status, body}`, what the handler
answered, even when a `drop_after` fault then kept it from the client: that is how a test tells a
write that landed from one that did not, and sees what a read showed at that moment.

Seed format (YAML or JSON; every key optional, no other top-level key allowed):

    registered_models:
      - full_name: main.agents.support_agent
        comment: Customer support agent
        owner: someone@example.com                # default: the workspace user
        aliases: [{alias_name: champion, version_num: 3}]
        versions:
          - version: 3
            status: READY                         # or PENDING_REGISTRATION | FAILED_REGISTRATION
            source: dbfs:/...                     # optional, like run_id, comment, model_id (the logged
            run_id: 0a1b2c                        #   model it came from) and tags (MLflow version tags)
            mlmodel: {flavors: {...}, resources: {...}}   # the MLmodel file, served as YAML by the Files API
            deploy_failure: "ImportError: ..."    # deploying this version ends UPDATE_FAILED with this message
            serving: {reply: "...", latency_ms: 40}  # how it answers queries (queries.py: reply, latency_ms,
                                                  # error_rate, status, message, permission_denied)
    serving_endpoints:                            # create-request shape; created READY, versions not checked
      - {name: databricks-meta-llama-3-3-70b-instruct, config: {served_entities: [...]}, tags: [{key, value}]}
      # may also carry what only the server sets: task, endpoint_type, tile_endpoint_metadata, creator,
      # creator_display_name, effective_budget_policy_id, state: {suspend: ...}, access_control_list;
      # `config: {}` seeds a READY Agent Bricks endpoint
    users: [{user_name: viewer@example.com, groups: [support-team], admin: false, tokens: [viewer-token]}]
    service_principals: [{application_id: <uuid>, display_name: deployer, tokens: [deployer-token]}]
    grants: [{securable_type: function, full_name: main.agents.support_agent, principal: ..., privileges: [EXECUTE]}]
    secret_scopes: [{name: support, keys: [openai]}]   # key names only; values are never stored
    vector_search_indexes: [{name: main.agents.docs_index}]   # each may add API fields, e.g. status: {ready: false}
    sql_warehouses: [{id: abc123, name: Shared}]
    functions: [{full_name: main.agents.lookup}]
    tables: [{full_name: main.agents.docs}]
    connections: [{name: slack}]
    genie_spaces: [{space_id: 01ef..., title: Sales}]
    apps: [{name: support-ui}]

    mlflow_runs:                                  # MLflow runs, readable by MLflow's client
      - run_id: 0123456789abcdef0123456789abcdef  # 32 lower-case hex digits
        experiment_id: "1234567890"               # decimal digits
        run_name: log-agent                       # optional, like status (FINISHED), user_id,
        tags: {mlflow.user: someone@example.com}  #   start_time/end_time (Unix ms), tags, params
        params: {llm: databricks-meta-llama-3-3-70b-instruct}   # and metrics ({name: number})
        artifacts:                                # relative path -> content, under the run's artifact root
          agent/MLmodel:                          # a mapping is written as YAML (JSON for a .json path)
            flavors: {python_function: {loader_module: mlflow.pyfunc.model, python_version: 3.11.7}}
            signature:                            # inputs/outputs as lists or as the JSON text MLflow writes
              inputs: [{type: string, name: input, required: true}]
              outputs: [{type: string, required: true}]
            resources: {api_version: "1", databricks: {serving_endpoint: [{name: databricks-meta-llama-3-3-70b-instruct}]}}
            # or, instead of resources (log_model refuses both): auth_policy: {system_auth_policy:
            #   {resources: {...}}, user_auth_policy: {api_scopes: [serving.serving-endpoints]}}
            metadata: {task: agent/v1/responses}
          agent/requirements.txt: "mlflow==3.17.2\n" # a string is written as UTF-8 text; !!binary as bytes
        registration: {seconds: 2, failure: "..."}   # optional: how registering from this run behaves
    logged_models:                                # MLflow 3 logged models (`models:/m-<id>`), after their runs
      - model_id: m-0123456789abcdef0123456789abcdef  # 'm-' and 32 lower-case hex digits
        experiment_id: "1234567890"
        name: agent                               # the name it was logged under
        source_run_id: 0123456789abcdef0123456789abcdef   # optional; a run of this seed, same experiment
        artifacts: {MLmodel: {...}, python_model.pkl: "..."}   # like a run's, under the model's root
        registration: {seconds: 0, failure: "Model signature is missing"}   # optional
        # also optional: model_type, tags, params, creation_timestamp_ms

Seeding a model that already exists (e.g. `add_seed` at run time) adds or replaces the versions
and aliases given, the way a new MLflow registration would; seeding a run or logged model that
exists replaces it. Versions may also say `status_message` (why a FAILED_REGISTRATION failed).

Registration (`registration.py`): MLflow's client creates a version (PENDING_REGISTRATION), uploads
its files through the Files API (`PUT /api/2.0/fs/files/Models/...`) and finalizes it. A finalized
version stays PENDING_REGISTRATION for `seconds`, then becomes READY, or FAILED_REGISTRATION with
`failure` as its `status_message` (MLflow's `get_model_version`; the Unity Catalog REST shape has
no such field). The plan is the seeded `registration` of the logged model or run the version comes
from, else the workspace default: `LocalWorkspace(registration_seconds=...)`, `set_registration()`
or `POST /__sim/registration` (default: READY at once). A version never finalized stays
PENDING_REGISTRATION, as a registration whose client died leaves it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from reconciler.localworkspace import routes
from reconciler.localworkspace.bodies import BodyError, parse_body, read_body
from reconciler.localworkspace.clock import WORKSPACE_ID
from reconciler.localworkspace.errors import ApiError
from reconciler.localworkspace.faults import Faults
from reconciler.localworkspace.identities import Principal
from reconciler.localworkspace.mlflow_tracking import registration_plan
from reconciler.localworkspace.state import WorkspaceState

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

DEFAULT_TOKEN = "local-token"
CONTROL_PREFIX = "/__sim"
# Dot segments never route. Clients remove them before sending (RFC 3986 section 5.2.4; urllib3's
# `parse_url`, which the SDK's `requests` uses, does), so one that arrives was sent on purpose; no
# API path has one, so the answer is the one for a path with no API (404 ENDPOINT_NOT_FOUND), and
# it is never resolved against its neighbours. Encoded ones (%2E%2E) are the same segment.
DOT_SEGMENTS = {".", ".."}


@dataclasses.dataclass
class Hold:
    """An answer kept back (`LocalWorkspace.hold_answer`): `reached` is set once the request was
    handled and its answer is waiting; `release()` sends it."""

    method: str
    path: str
    reached: threading.Event = dataclasses.field(default_factory=threading.Event)
    released: threading.Event = dataclasses.field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


class LocalWorkspace:
    """A local workspace serving on a background thread (a free port unless `port` is given)."""

    def __init__(self, *, seed: dict[str, Any] | str | Path | None = None, latency_ms: int = 0,
                 update_seconds: float = 0.05, fault_rate: float = 0.0, fault_seed: int | None = None,
                 token: str = DEFAULT_TOKEN, host: str = "127.0.0.1", port: int = 0,
                 registration_seconds: float = 0.0) -> None:
        self.state = WorkspaceState(update_seconds=update_seconds, registration_seconds=registration_seconds)
        if seed is not None:
            self.state.add_seed(seed)
        self.token = token
        self.state.identities.add_token(token)  # the default user's, a workspace admin
        self.latency_ms = latency_ms
        self.log_responses = False  # see the module docstring: for reliability tests
        self.faults = Faults()
        self.faults.configure(fault_rate, fault_seed)
        self._log: list[dict[str, Any]] = []
        self._holds: list[Hold] = []
        self._sequence = 0
        self._log_lock = threading.Lock()
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> LocalWorkspace:
        if self._server is not None:
            return self
        self._server = _Server(self._address, _Handler, self)
        self._address = (self._address[0], self._server.server_address[1])  # the free port it got, kept for a restart
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name=f"local-workspace-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection, without waiting for idle keep-alives."""
        server, self._server = self._server, None
        if server is None:
            return
        stopper = threading.Thread(target=server.shutdown, daemon=True)
        stopper.start()
        with contextlib.suppress(OSError):  # wake the accept loop at once rather than at its next poll
            socket.create_connection(cast("tuple[str, int]", server.server_address[:2]), timeout=0.5).close()
        stopper.join()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalWorkspace:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._address[1]

    @property
    def url(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    def client(self, **config_kwargs: Any) -> WorkspaceClient:
        """A `WorkspaceClient` for this workspace, with a 30 s retry budget unless overridden."""
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.config import Config

        settings = {"host": self.url, "token": self.token, "auth_type": "pat", "retry_timeout_seconds": 30,
                    **config_kwargs}
        return WorkspaceClient(config=Config(**settings))

    # -- test controls -------------------------------------------------------------------------

    def requests(self) -> list[dict[str, Any]]:
        with self._log_lock:
            return [dict(entry) for entry in self._log]

    def reset_requests(self) -> None:
        with self._log_lock:
            self._log.clear()

    def set_faults(self, rate: float, seed: int | None = None, *, kinds: list[str] | tuple[str, ...] | None = None,
                   retry_after: int = 0, slow_ms: int = 200, max_faults: int | None = None,
                   only: tuple[str, str] | None = None) -> None:
        """Inject faults into `/api/` requests (see `faults.py`); rate 0 turns them off."""
        self.faults.configure(rate, seed, kinds=kinds, retry_after=retry_after, slow_ms=slow_ms, max_faults=max_faults,
                              only=only)

    def hold_answer(self, method: str, path: str) -> Hold:
        """The next `method path` request is handled, then its answer waits until `release()`."""
        hold = Hold(method, path)
        with self._log_lock:
            self._holds.append(hold)
        return hold

    def _held(self, method: str, path: str) -> Hold | None:
        with self._log_lock:
            hold = next((h for h in self._holds if (h.method, h.path) == (method, path)), None)
            if hold is not None:
                self._holds.remove(hold)
        return hold

    def set_latency(self, ms: int) -> None:
        self.latency_ms = ms

    def set_update_seconds(self, seconds: float) -> None:
        with self.state.lock:
            self.state.update_seconds = seconds

    def set_registration(self, *, seconds: float = 0.0, failure: str | None = None) -> None:
        """How registrations finalized from now on behave, unless their source's seed says otherwise
        (`registration.py`): PENDING_REGISTRATION for `seconds`, then READY, or FAILED_REGISTRATION
        with `failure` as the status message."""
        plan = registration_plan({"seconds": seconds, "failure": failure})
        with self.state.lock:
            self.state.registration.default = plan

    def add_seed(self, seed: dict[str, Any] | str | Path) -> None:
        self.state.add_seed(seed)

    def add_token(self, token: str, *, read_only: bool = False, principal: str | None = None) -> None:
        """Another token: the default user's unless `principal` names a seeded user (e-mail) or
        service principal (application id)."""
        with self.state.lock:
            self.state.identities.add_token(token, principal, read_only=read_only)

    def identity(self, headers: dict[str, str]) -> str | None:
        """The name of the principal a request's token belongs to, for the request log."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        with self.state.lock:
            found = self.state.identities.for_token(token.strip()) if scheme.lower() == "bearer" else None
        return found[0].name if found else None

    def _record(self, entry: dict[str, Any]) -> None:
        with self._log_lock:
            self._sequence += 1
            entry["seq"] = self._sequence
            self._log.append(entry)

    # -- answering -----------------------------------------------------------------------------

    def answer(self, method: str, path: str, query: dict[str, str], raw: bytes,
               headers: dict[str, str], segments: list[str] | None = None) -> routes.Response:
        """The response to one `/api/` request: auth, routing, parsing and the handler, under the lock.
        `segments` are the path's segments, each percent-decoded once (`split_path`)."""
        segments = routes.segments_of(path) if segments is None else segments
        try:
            caller = self._authenticate(headers.get("authorization", ""), method, path, segments)
            found = None if DOT_SEGMENTS & set(segments) else routes.match(method, segments)
            if found is None:
                raise routes.unknown_route(method, path)
            route, params = found
            body = {} if route.raw_body else parse_body(method, raw, headers.get("content-type", ""))
            request = routes.Request(method=method, path=path, query=query, body=body, params=params,
                                     headers=headers, raw=raw, caller=caller)
            if not route.locked:  # a query: it takes the lock itself and sleeps its latency outside it
                result = route.handler(self.state, request)
            else:
                with self.state.lock:
                    self.state.settle()
                    result = route.handler(self.state, request)
            return result if isinstance(result, routes.Response) else routes.Response(result)
        except ApiError as exc:
            if exc.text is not None:  # a front-end refusal that is not JSON (see errors.py)
                return routes.Response(exc.text.encode(), status=exc.status,
                                       headers={**exc.headers, "Content-Type": "text/plain; charset=utf-8"})
            return routes.Response(exc.body(), status=exc.status, headers=exc.headers)
        except Exception as exc:  # a bug here must still answer in the API's shape, never crash
            print(f"local workspace: internal error on {method} {path}: {exc!r}", file=sys.stderr)
            return routes.Response({"error_code": "INTERNAL_ERROR", "message": f"Internal error: {exc!r}"}, status=500)

    def _authenticate(self, header: str, method: str, path: str, segments: list[str]) -> Principal:
        """The principal the bearer token belongs to; 401 without a token, 403 for an unknown one,
        403 for a write with a read-only token."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, 401, "Credential was not sent or was of an unsupported type for this API.")
        with self.state.lock:
            found = self.state.identities.for_token(token.strip())
        if found is None:
            raise ApiError(403, 403, "Invalid access token.")
        principal, read_only = found
        if read_only and routes.match(method, segments) is not None:
            refusal = routes.refuse_write(method, path)
            if refusal is not None:
                raise refusal
        return principal

    def control(self, method: str, path: str, raw: bytes) -> routes.Response:
        """The `/__sim/...` routes."""
        try:
            body = parse_body("POST", raw, "application/json") if method == "POST" else {}
            action = path[len(CONTROL_PREFIX):]
            if (method, action) == ("GET", "/health"):
                return routes.Response({"ok": True, "url": self.url})
            if (method, action) == ("GET", "/requests"):
                return routes.Response({"requests": self.requests()})
            if (method, action) == ("POST", "/requests/reset"):
                self.reset_requests()
            elif (method, action) == ("POST", "/faults"):
                max_faults = body.get("max_faults")
                only = body.get("only")
                plan = self.faults.configure(float(body.get("rate", 0.0)), body.get("seed"), kinds=body.get("kinds"),
                                             retry_after=int(body.get("retry_after", 0)),
                                             slow_ms=int(body.get("slow_ms", 200)),
                                             max_faults=None if max_faults is None else int(max_faults),
                                             only=(str(only[0]), str(only[1])) if only else None)
                return routes.Response(dataclasses.asdict(plan))
            elif (method, action) == ("POST", "/latency"):
                self.set_latency(int(body.get("ms", 0)))
            elif (method, action) == ("POST", "/update-seconds"):
                self.set_update_seconds(float(body.get("seconds", 0.0)))
            elif (method, action) == ("POST", "/registration"):
                registration = registration_plan(body)
                self.set_registration(seconds=registration.seconds, failure=registration.failure)
            elif (method, action) == ("POST", "/seed"):
                self.add_seed(body)
            elif (method, action) == ("POST", "/log-responses"):
                self.log_responses = bool(body.get("on", True))
            elif (method, action) == ("POST", "/queries"):
                with self.state.lock:
                    self.state.queries.configure(seed=body.get("seed"),
                                                 metrics_window_seconds=body.get("metrics_window_seconds"))
            elif (method, action) == ("POST", "/tokens"):
                principal = body.get("principal")
                self.add_token(str(body["token"]), read_only=bool(body.get("read_only", False)),
                               principal=None if principal is None else str(principal))
            else:
                raise routes.unknown_route(method, path)
            return routes.Response({})
        except ApiError as exc:
            return routes.Response(exc.body(), status=exc.status)
        except (ValueError, TypeError, KeyError) as exc:
            return routes.Response({"error_code": "INVALID_PARAMETER_VALUE", "message": str(exc)}, status=400)


# -- HTTP plumbing -------------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 workspace: LocalWorkspace) -> None:
        self.workspace = workspace
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away before its answer (a killed registration, an abandoned read) is
        # not the server's error; socketserver would print a traceback for it.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self.connections_lock:
            for connection in list(self.connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK reuses its connections
    server: _Server
    timeout = 120  # an idle keep-alive connection is closed after this many seconds
    # Headers and body leave in one segment (http.server flushes after each request): written
    # separately, Nagle's algorithm meets the client's delayed ACK and every response waits 40 ms.
    wbufsize = 64 * 1024

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:  # noqa: N802 (the names http.server dispatches to)
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

    def _handle(self) -> None:
        workspace = self.server.workspace
        url = urlsplit(self.path)
        segments = split_path(url.path)
        path = unquote(url.path)
        query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        headers = {key.lower(): value for key, value in self.headers.items()}
        try:
            raw = read_body(self.rfile, headers)
        except BodyError as exc:
            self.close_connection = True
            self._send(routes.Response(exc.error.body(), status=exc.error.status))
            return
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            self._send(workspace.control(self.command, path, raw))
            return
        if path == "/.well-known/databricks-config":
            # Answered at once: `Config()` probes it before every client is usable.
            self._send(routes.Response({"oidc_endpoint": f"{workspace.url}/oidc", "workspace_id": WORKSPACE_ID}))
            return
        if workspace.latency_ms:
            time.sleep(workspace.latency_ms / 1000)
        fault = workspace.faults.draw(self.command, path) if path.startswith("/api/") else None
        entry: dict[str, Any] = {"method": self.command, "path": path, "raw_path": url.path, "segments": segments,
                                 "query": query, "status": None, "body": _logged_body(raw, headers),
                                 "identity": workspace.identity(headers), "fault": fault,
                                 "received_at": time.time(), "answered_at": None}
        try:
            if fault == "drop":
                self._drop()
                return
            if fault == "slow":
                time.sleep(workspace.faults.plan.slow_ms / 1000)
            if fault in ("429", "503"):
                response = _fault_response(fault, workspace.faults.plan.retry_after)
            else:
                response = workspace.answer(self.command, path, query, raw, headers, segments)
                if workspace.log_responses:
                    entry["response"] = {"status": response.status,
                                         "body": response.body if isinstance(response.body, dict) else None}
            if fault == "drop_after":
                self._drop()
                return
            hold = workspace._held(self.command, path) if path.startswith("/api/") else None
            if hold is not None:
                hold.reached.set()
                hold.released.wait(timeout=600)
            entry["status"] = response.status
            self._send(response)
            entry["answered_at"] = time.time()
        finally:
            if path.startswith("/api/"):
                workspace._record(entry)

    def _send(self, response: routes.Response) -> None:
        self.request_version = "HTTP/1.1"  # always a status line and headers, even for an HTTP/0.9 request line
        if isinstance(response.body, bytes):
            payload, content_type = response.body, "application/octet-stream"
        else:
            payload, content_type = json.dumps(response.body).encode(), "application/json"
        self.send_response(response.status)
        headers = {"Content-Type": content_type, **response.headers, "Content-Length": str(len(payload)),
                   "X-Databricks-Org-Id": WORKSPACE_ID}
        for key, value in headers.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _drop(self) -> None:
        """Close the connection without a response, as a network failure would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, unsupported method...) in the API's shape."""
        self.close_connection = True
        self.request_version = "HTTP/1.1"  # garbage parses as HTTP/0.9, which would drop the status line
        error_code = {400: "MALFORMED_REQUEST", 501: "NOT_IMPLEMENTED"}.get(code, str(code))
        body = json.dumps({"error_code": error_code, "message": message or explain or "Bad request"}).encode()
        with contextlib.suppress(OSError):
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        """Quiet: the request log is the record."""


def split_path(raw_path: str) -> list[str]:
    """The path's segments, each percent-decoded exactly once: `a%2Fb` stays one segment "a/b"
    (a name with a slash in it, which the route's handler judges), `%252F` becomes "%2F"."""
    return [unquote(segment) for segment in raw_path.split("/")[1:]] if raw_path.startswith("/") else [unquote(raw_path)]


def _fault_response(kind: str, retry_after: int) -> routes.Response:
    if kind == "429":
        error = ApiError(429, "REQUEST_LIMIT_EXCEEDED", "The request rate limit has been exceeded; retry later.")
    else:
        error = ApiError(503, "TEMPORARILY_UNAVAILABLE", "The service is temporarily unavailable; retry later.")
    return routes.Response(error.body(), status=error.status, headers={"Retry-After": str(retry_after)})


def _logged_body(raw: bytes, headers: dict[str, str]) -> Any:
    if not raw.strip():
        return None
    try:
        return parse_body("POST", raw, headers.get("content-type", ""), for_log=True)
    except Exception:
        return None


def run(*, host: str = "127.0.0.1", port: int = 8765, seed: str | Path | None = None, latency_ms: int = 0,
        update_seconds: float = 1.0, fault_rate: float = 0.0, fault_seed: int | None = None,
        token: str | None = None, registration_seconds: float = 0.0) -> None:
    """Serve a local workspace until SIGINT or SIGTERM (`reconciler sim serve`).

    A bad seed file raises ValueError with a one-line message naming the file and the object;
    a port already taken raises OSError. Prints one line when listening."""
    workspace = LocalWorkspace(seed=seed, latency_ms=latency_ms, update_seconds=update_seconds,
                               fault_rate=fault_rate, fault_seed=fault_seed, token=token or DEFAULT_TOKEN,
                               host=host, port=port, registration_seconds=registration_seconds)
    stop = threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        workspace.start()
        print(f"local workspace listening on {workspace.url} (token: {workspace.token})", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        workspace.stop()
        for number, handler in previous.items():
            signal.signal(number, handler)
