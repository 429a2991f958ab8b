"""The only module that talks to Databricks: one call layer over `databricks-sdk`'s API client.

Reads return the API's JSON exactly as the server sent it (plain dicts, every field and enum
value kept: the SDK's dataclasses turn enum values they do not know into None, `_enum` in
`databricks/sdk/service/_internal.py`, and drop fields they do not know) or None when the object
does not exist. Writes send plain JSON payloads, so unknown live values are resent unchanged.

Every call goes through `_call`, which owns what the SDK would otherwise decide alone:
- names: each path segment is checked against its grammar (`terms.GRAMMAR`) and URL-encoded, so
  no name from a manifest, a plan file, a variable or a server answer can change the route (`.`
  and `..` are refused whatever the grammar: no encoding of them survives `requests`); workspace
  file paths, sent in bodies and queries, are checked too;
- auth, the request and error parsing stay the SDK's (`ApiClient.do`, its unified auth and
  `databricks.sdk.errors`), and so does the decision of what is worth retrying (429, 503,
  connection errors, its transient messages). The SDK's own retry sleep is replaced (the Config's
  clock raises instead of sleeping) so that retries are ours: bounded by the run's `deadline`, by
  the apply lease for writes (`fence`: every write attempt and its retries end before the lease
  does, and a write gives up with `LeaseLost` once the lease is gone), interruptible (`cancel`),
  and a `Retry-After` longer than the time left ends the call at once, quoting the server;
- every attempt runs on a worker thread and the caller waits at most `response_seconds` for it
  (and, for a write, no longer than the lease lasts), so a server that trickles its answer cannot
  hold a call; a write in flight is allowed to return even after an interrupt (its attempt is
  bounded), reads are abandoned at once. The request itself is gated at the last moment before it
  leaves (the `auth` hook `requests` calls as it prepares it): an attempt given up is never sent
  late, and a write is sent only while `fence` allows;
- answers are checked before use: not JSON, the wrong JSON type, missing or mistyped fields we
  rely on, or absurd nesting become one `UnexpectedAnswer` line, never a crash further on;
- failures become typed errors (`errors.NotFound`, `Conflict`, `AlreadyExists`,
  `PermissionDenied`, `Unauthenticated`, `Unreachable`, `UnexpectedAnswer`) whose one line names
  the object, the operation and the cause, with a hint where one helps. Tokens never appear in
  them: we never format request headers, every credential the SDK's config holds (and a password
  in the host URL) is registered with the redaction layer (redact.py) before the first call, so a
  server that echoes the Authorization header is scrubbed on the way out, and a token holding a
  line break is refused up front (the HTTP client's error would quote it); the host is shown
  without any credential it carries.

Contract for callers: reads are side-effect free and safe to repeat. Writes are the narrowest
API call for one change; alias, tag, AI gateway, permission and config writes are idempotent when
repeated with the same payload; creates meet `AlreadyExists` when a retried attempt finds its
first one landed, and callers answer that by reading back (see apply.py).
"""

from __future__ import annotations

import base64
import logging
import os
import queue
import random
import re
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeGuard, cast

import yaml

from reconciler import redact
from reconciler.errors import (
    AlreadyExists,
    Conflict,
    Interrupted,
    NotFound,
    PermissionDenied,
    Problem,
    ReconcilerError,
    Unauthenticated,
    UnexpectedAnswer,
    Unreachable,
    WorkspaceError,
)
from reconciler.terms import name_problem

# Dependent resources an agent may declare, by MLflow resource type key, and the GET that proves
# each exists (the SDK's own routes: service/vectorsearch.py get_index, sql.py WarehousesAPI.get,
# catalog.py FunctionsAPI/TablesAPI/ConnectionsAPI.get, dashboards.py GenieAPI.get_space,
# apps.py AppsAPI.get, database.py get_database_instance).
RESOURCE_ROUTES = {
    "serving_endpoint": ("/api/2.0/serving-endpoints/{}", "endpoint"),
    "vector_search_index": ("/api/2.0/vector-search/indexes/{}", None),
    "sql_warehouse": ("/api/2.0/sql/warehouses/{}", None),
    "function": ("/api/2.1/unity-catalog/functions/{}", None),
    "genie_space": ("/api/2.0/genie/spaces/{}", None),
    "table": ("/api/2.1/unity-catalog/tables/{}", None),
    "uc_connection": ("/api/2.1/unity-catalog/connections/{}", None),
    "app": ("/api/2.0/apps/{}", None),
    "lakebase": ("/api/2.0/database/instances/{}", None),
}
RESOURCE_TYPES = tuple(RESOURCE_ROUTES)

RETRY_SECONDS = 300.0  # the SDK's default retry budget (Config.retry_timeout_seconds)
RESPONSE_SECONDS = 60.0  # the SDK's default HTTP timeout; here a bound on a whole answer
AGAIN_PAUSE = 1.0  # seconds between an operation giving up on the workspace and its next try (try_again_in)
MAX_AGAIN = 3  # times one operation (an apply step, a planning read) is tried again in one run
SHARED_STRING_CHARS = 40  # answers' strings up to this long are interned (_shared_strings)
MAX_NESTING = 64  # deeper JSON than any documented answer is refused before we walk it
MAX_FILE_BYTES = 16 * 1024 * 1024  # an MLmodel file or a lease file; anything larger is not one


# ---- the SDK's retry sleep, made ours --------------------------------------------------------------

class _RetryWanted(Exception):
    """Raised in place of the SDK's retry sleep: its `__context__` is the error it would retry."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry in {seconds:.1f}s")
        self.seconds = seconds


def _no_sleep_clock() -> Any:
    from databricks.sdk.clock import Clock

    class NoSleepClock(Clock):
        """`retried` in `databricks/sdk/retries.py` sleeps on its Config's clock inside the `except`
        block of the failed attempt; raising there hands the decision (and the error) to `_call`."""

        def time(self) -> float:
            return time.time()

        def sleep(self, seconds: float) -> None:
            raise _RetryWanted(seconds)

    return NoSleepClock()


# ---- bounded waits ------------------------------------------------------------------------------

class _Runner:
    """Daemon worker threads for HTTP attempts, so a caller can stop waiting at a deadline (an
    abandoned attempt finishes or fails on its own; being a daemon, it never delays exit)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                threading.Thread(target=self._serve, name="workspace-call", daemon=True).start()
        self._queue.put((fn, future))
        return future

    def _serve(self) -> None:
        while True:
            fn, future = self._queue.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # handed to the caller, whatever it is
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1


_RUNNER = _Runner()


# The shapes of the answers the reconciler reads: only the fields it uses, with the JSON types the
# API documents for them (SDK 0.156 `service/serving.py`, `catalog.py`, `iam.py`, `workspace.py`).
# A key ending in "!" is required; `[shape]` is a list of such items; `{str: str}` a map of strings.
# Other fields are kept as they are, unchecked: they are only ever resent or shown.
_ENTITY = {"name": str, "entity_name": str, "entity_version": str, "environment_vars": {str: str},
           "scale_to_zero_enabled": bool, "state": {"deployment": str, "deployment_state_message": str}}
_CONFIG = {"served_entities": [_ENTITY], "auto_capture_config": dict,
           "traffic_config": {"routes": [{"served_entity_name": str, "served_model_name": str,
                                          "traffic_percentage": int}]}}
_TAGS = [{"key!": str, "value": str}]
ENDPOINT = {"name!": str, "id": str, "creator": str, "description": str, "route_optimized": bool,
            "permission_level": str,  # the caller's own level (ServingEndpointDetailed.permission_level)
            "state": {"ready": str, "config_update": str}, "config": _CONFIG, "pending_config": _CONFIG,
            "tags": _TAGS, "ai_gateway": dict}
ENDPOINT_LIST = {"endpoints": [{"name!": str, "tags": _TAGS, "permission_level": str}]}
ACL = {"access_control_list": [{"user_name": str, "group_name": str, "service_principal_name": str,
                                "all_permissions": [{"permission_level": str, "inherited": bool}]}]}
MODEL = {"comment": str, "owner": str, "aliases": [{"alias_name": str, "version_num": int}]}
VERSION = {"version": int, "status": str, "source": str, "run_id": str}
SCOPES = {"scopes": [{"name": str}]}
SECRETS = {"secrets": [{"key": str}]}
USER = {"userName": str, "groups": [{"display": str}]}
EFFECTIVE = {"privilege_assignments": [{"principal": str, "privileges": [{"privilege": str}]}]}
# MLflow's own routes (`mlflow/protos/service.proto`, `databricks_uc_registry_messages.proto`), for
# what the Unity Catalog REST shapes lack: a run's and a logged model's artifact roots, version tags
# (the reconciler's marker) and a failed registration's status_message.
_LOGGED_MODEL = {"info!": {"model_id!": str, "experiment_id!": str, "name": str, "artifact_uri": str,
                           "source_run_id": str}}
RUN = {"run!": {"info!": {"run_id!": str, "experiment_id!": str, "artifact_uri": str},
                "outputs": {"model_outputs": [{"model_id": str}]}}}
LOGGED_MODEL = {"model!": _LOGGED_MODEL}
LOGGED_MODELS = {"models": [_LOGGED_MODEL], "next_page_token": str}
_UC_VERSION = {"name!": str, "version!": str, "status": str, "status_message": str, "source": str, "run_id": str,
               "model_id": str, "tags": [{"key!": str, "value": str}]}
UC_VERSIONS = {"model_versions": [_UC_VERSION], "next_page_token": str}
UC_VERSION = {"model_version!": _UC_VERSION}
ANY: dict[str, Any] = {}




def _segment(kind: str | None, value: str) -> str:
    """One URL path segment: grammar-checked (when `kind` names one) and percent-encoded.

    `.` and `..` are refused whatever the grammar says: no encoding of them survives the trip
    (`requests` decodes `%2E` back to `.`, being unreserved: `requote_uri` in requests/utils.py, and
    urllib3 then removes dot segments), so they would resolve against the route."""
    if kind is not None:
        problem = name_problem(kind, value)
        if problem:
            raise ReconcilerError(problem)
    if str(value) in (".", ".."):
        raise ReconcilerError(f"{str(value)!r} cannot be sent as a name: a '.' or '..' path segment would be resolved, "
                              "not sent")
    return urllib.parse.quote(str(value), safe="")


def _workspace_path(path: str) -> str:
    """A workspace file path (sent in bodies and queries, not in the URL path), checked."""
    problem = name_problem("workspace path", path)
    if problem:
        raise ReconcilerError(problem)
    return path


class _Abandoned(Exception):
    """Raised in place of sending an attempt its caller stopped waiting for (see `_call`)."""


def _shown_host(host: str) -> str:
    """scheme://host[:port] without user:password@ or a path: what may be printed and saved."""
    url = urllib.parse.urlsplit(host)
    netloc = url.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if url.port:
        netloc += f":{url.port}"
    return f"{url.scheme}://{netloc}"


class Workspace:
    """A connected workspace: API JSON in and out, every call bounded, checked and typed.

    `cancel` (set by the CLI's signal handler) stops new calls and abandons waits; `deadline`
    (monotonic seconds) bounds the whole run; `fence`, set while the apply lock is held, returns
    until when writes are safe (or raises `LeaseLost`); `on_retry(subject, message)` hears about
    each retry, for progress lines."""

    def __init__(self, client: Any, *, retry_seconds: float | None = None,
                 response_seconds: float | None = None) -> None:
        from databricks.sdk.core import ApiClient

        config = client.config.copy()
        # The one private touch: `Config.clock` has no setter, and `ApiClient` reads the clock from
        # its Config. A client we built ourselves (`connect`) already has this clock.
        config._clock = _no_sleep_clock()
        self.config = config
        _register_credentials(config)
        self._api = ApiClient(config)
        self.host = _shown_host(config.host or "")
        self.retry_seconds = retry_seconds if retry_seconds is not None else _env_seconds(
            "RECONCILER_RETRY_SECONDS", RETRY_SECONDS)
        self.response_seconds = response_seconds if response_seconds is not None else _env_seconds(
            "RECONCILER_RESPONSE_SECONDS", RESPONSE_SECONDS)
        self.cancel = threading.Event()
        self.cancel_signal = 2
        self.deadline: float | None = None
        self.fence: Callable[[], float] | None = None
        self.on_retry: Callable[[str, str], None] | None = None
        self._down: str | None = None  # why the host stopped answering, once a call gave up on it
        self._me: dict[str, Any] | None = None  # the calling identity, read once (current_user)
        # Answers that cannot change once seen, read once per workspace (an apply plans twice): a
        # READY model version (get_model_version) and a version's MLmodel file (read_mlmodel).
        self._final: dict[tuple[str, str, str], Any] = {}

    @classmethod
    def connect(cls, *, profile: str | None = None, parallelism: int = 16,
                retry_seconds: float | None = None, response_seconds: float | None = None) -> Workspace:
        """Unified auth (DATABRICKS_HOST/TOKEN, profile, OAuth M2M), failing fast on a bad host."""
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.config import Config

        logging.getLogger("databricks.sdk").setLevel(logging.ERROR)  # its warnings are ours to word
        for attribute in Config.attributes():  # before anything can fail quoting one of them
            if attribute.sensitive and attribute.env:
                redact.register(os.environ.get(attribute.env))
        redact.register_url(os.environ.get("DATABRICKS_HOST"))
        if profile is None and os.environ.get("DATABRICKS_HOST"):
            _check_host(os.environ["DATABRICKS_HOST"])  # before the SDK's start-up probe retries it

        def configure() -> Any:
            # A short budget for the start-up probe of /.well-known/databricks-config: an unreachable
            # host would otherwise block construction for the whole retry budget.
            return Config(profile=profile, retry_timeout_seconds=5, http_timeout_seconds=10,
                          max_connection_pools=max(20, parallelism), max_connections_per_pool=max(20, parallelism),
                          clock=_no_sleep_clock())

        # Config() probes the host and may fetch OAuth tokens, with the SDK's own retries: bounded here.
        future = _RUNNER.submit(configure)
        try:
            config = future.result(timeout=60)
        except FutureTimeout:
            raise Unreachable(Problem("Databricks authentication did not finish within 60s (the host's "
                                      "/.well-known/databricks-config or token endpoint does not answer)")) from None
        except ValueError as exc:
            raise ReconcilerError(f"Databricks authentication is not configured: {_first_line(exc)} "
                                  "(set DATABRICKS_HOST and DATABRICKS_TOKEN, or pass --profile)") from None
        _register_credentials(config)
        _check_host(config.host)
        _check_token(config.token)
        config.http_timeout_seconds = int(response_seconds or _env_seconds("RECONCILER_RESPONSE_SECONDS",
                                                                             RESPONSE_SECONDS))
        return cls(WorkspaceClient(config=config), retry_seconds=retry_seconds, response_seconds=response_seconds)

    @property
    def down(self) -> bool:
        """A call found the host not answering for a whole retry budget; later calls fail at once."""
        return self._down is not None

    def try_again_in(self, exc: Unreachable, first_failure: float, times: int) -> float | None:
        """In how many seconds an operation that gave up on the workspace (`Unreachable`: its
        retries spent, or a write whose fate is unknown) at `first_failure` (monotonic), and was
        tried again `times` times since, may be tried once more; None: it may not. AGAIN_PAUSE, or
        the server's Retry-After when it asked for longer (`exc.retry_after`); at most MAX_AGAIN
        times (a cause that fails a call at once must not make a loop), within one retry budget of
        that first failure (RECONCILER_RETRY_SECONDS), before the run's --deadline, and while the
        host has not been found down (calls would fail at once). An apply step tried again
        re-reads its object and re-derives its writes (apply.py); a read is read again
        (`persevering`)."""
        pause = max(AGAIN_PAUSE, exc.retry_after or 0.0)
        then = time.monotonic() + pause
        if (times < MAX_AGAIN and then - first_failure < self.retry_seconds and not self.down
                and (self.deadline is None or then < self.deadline)):
            return pause
        return None

    def persevering(self, read: Callable[[], Any]) -> Callable[[], Any]:
        """`read`, tried again while `try_again_in` allows when it gives up on the workspace: a
        plan whose one read met faults for a whole retry budget is not lost for it."""
        def again() -> Any:
            first_failure: float | None = None
            times = 0
            while True:
                try:
                    return read()
                except Unreachable as exc:
                    first_failure = time.monotonic() if first_failure is None else first_failure
                    pause = self.try_again_in(exc, first_failure, times)
                    if pause is None:
                        raise
                    times += 1
                    if self.cancel.wait(pause):
                        raise Interrupted(self.cancel_signal) from None
        return again

    # ---- the call layer --------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, subject: str, operation: str, query: dict[str, Any] | None = None,
              body: dict[str, Any] | None = None, write: bool = False, missing_ok: bool = False,
              raw: bool = False, shape: Any = ANY, budget: float | None = None, accept: str = "application/json",
              errors_answer: bool = False) -> Any:
        """One API call with our retries and bounds; returns the answer's JSON (or bytes when
        `raw`, e.g. with `accept="text/plain"`), None for a missing object when `missing_ok`. With
        `errors_answer`, an HTTP error answer is returned as an `ErrorAnswer`, neither raised nor
        retried: for a query, the status and message are the evidence. See the module docstring."""
        headers = {"Accept": accept}
        if self.config.workspace_id:
            headers["X-Databricks-Workspace-Id"] = self.config.workspace_id

        def attempt(abandoned: threading.Event, answered: list[tuple[int, str, str]]) -> Any:
            def heard(response: Any, *args: Any, **kwargs: Any) -> Any:
                # What answered, for the error's words: the SDK's error parser reads an HTML error
                # page as a Databricks error (`_HtmlErrorDeserializer`: FILE_NOT_FOUND: Error response).
                answered.append((response.status_code, response.reason or "", response.headers.get("Content-Type", "")))
                return response

            def gate(request: Any) -> Any:
                # The last moment before the request leaves (requests applies `auth` as it prepares
                # the request): an attempt its caller stopped waiting for is not sent late, and a
                # write is sent only while the apply lease is held with margin (`fence` raises).
                if abandoned.is_set():
                    raise _Abandoned
                if write and self.fence is not None:
                    self.fence()
                request.headers.update(self.config.authenticate())  # what the SDK's own `auth` adds
                request.register_hook("response", heard)
                return request

            answer = self._api.do(method, path, query=query, body=body, headers=headers, raw=raw, auth=gate)
            if raw:  # `ApiClient.do(raw=True)` answers {"contents": the streamed body, ...headers}
                return _read_capped(cast("dict[str, Any]", answer)["contents"], MAX_FILE_BYTES)
            return answer

        started = time.monotonic()
        tries = 0
        while True:
            if self.cancel.is_set():
                raise Interrupted(self.cancel_signal)
            if self._down is not None and budget is None:
                raise Unreachable(Problem(f"{operation}: {self._down}", subject=subject))
            limit, bound = self._limit(started, write, budget)
            now = time.monotonic()
            if limit - now <= 0:
                raise Unreachable(Problem(f"{operation}: no time left {bound}", subject=subject))
            tries += 1
            abandoned = threading.Event()
            answered: list[tuple[int, str, str]] = []
            future = _RUNNER.submit(partial(attempt, abandoned, answered))
            wait = min(self.response_seconds, limit - now)
            try:
                # Every attempt is bounded by the time left: for a write under the apply lock, by the
                # lease (`_limit`), so no write attempt outlives it.
                answer = self._await(future, wait, write=write)
            except (FutureTimeout, Interrupted):
                abandoned.set()
                if self.cancel.is_set():
                    raise Interrupted(self.cancel_signal) from None
                late = f"no complete answer within {wait:.0f}s" + (f" {bound}" if wait < self.response_seconds else "")
                if write:
                    self._fenced()  # the lease ran out meanwhile: that, not the timeout, is what stops the run
                    raise Unreachable(Problem(f"{operation}: {late}; the write may or may not have landed: run apply "
                                              "again, it re-reads and finishes the job", subject=subject)) from None
                self._retry_or_give_up(subject, operation, late, None, 1.0, started, limit, bound, tries, network=True)
                continue
            except _RetryWanted as wanted:
                cause = wanted.__context__
                if errors_answer and _is_answer(cause):
                    return _error_answer(cause)
                retry_after = getattr(cause, "retry_after_secs", None)
                reason = _describe(cause, self.host)
                if _is_tls(cause):  # retrying a TLS mismatch cannot help
                    raise Unreachable(Problem(f"{operation}: {reason}", subject=subject)) from None
                try:
                    self._retry_or_give_up(subject, operation, reason, retry_after, wanted.seconds, started, limit,
                                           bound, tries, network=not hasattr(cause, "error_code"))
                except Unreachable:
                    if write:
                        self._fenced()
                    raise
                continue
            except (ValueError, RecursionError, UnicodeDecodeError) as exc:  # the body was not JSON
                if _html(answered):
                    raise self._not_a_workspace(answered, subject, operation) from None
                what = "a JSON answer nested too deeply" if isinstance(exc, RecursionError) else \
                    f"not JSON ({_first_line(exc)[:80]}); is DATABRICKS_HOST the URL of a Databricks workspace?"
                raise UnexpectedAnswer(Problem(f"unexpected answer from {self.host} to {operation}: {what}",
                                               subject=subject)) from None
            except Exception as exc:
                if errors_answer and _is_answer(exc):
                    return _error_answer(exc)
                error = self._not_a_workspace(answered, subject, operation) if _html(answered, error_only=True) \
                    else self._typed(exc, subject, operation)
                if isinstance(error, NotFound) and missing_ok:
                    return None
                raise error from None
            if not raw and not errors_answer:
                problem = _shape_problem(answer, shape)
                if problem:
                    raise UnexpectedAnswer(Problem(f"unexpected answer from {self.host} to {operation}: {problem}",
                                                   subject=subject))
                answer = _shared_strings(answer)
            return answer

    def _fenced(self) -> None:
        """Raise LeaseLost if the apply lock's lease is lost (a write gave up: the lease may be why)."""
        if self.fence is not None:
            self.fence()

    def _limit(self, started: float, write: bool, budget: float | None) -> tuple[float, str]:
        """Until when this call may go on, and what sets that bound (for the message). A call with
        a budget of its own (the lock's) is bounded by that budget alone, not by --deadline: a run
        that ran out of time must still release its lease."""
        own = budget is not None
        budget = self.retry_seconds if budget is None else budget
        limits = [(started + budget, f"within the retry budget of {budget:.0f}s (RECONCILER_RETRY_SECONDS)")]
        if self.deadline is not None and not own:
            limits.append((self.deadline, "before the run's --deadline"))
        if write and self.fence is not None:
            limits.append((self.fence(), "before the apply lock's lease ends"))
        return min(limits)

    def _await(self, future: Future[Any], seconds: float, *, write: bool) -> Any:
        """The attempt's answer. A read is abandoned as soon as the run is interrupted; a write in
        flight is let return (it is bounded by `seconds`), so none lands unseen later."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise FutureTimeout
            try:
                return future.result(timeout=min(0.25, left))
            except FutureTimeout:
                if self.cancel.is_set() and not write:
                    raise Interrupted(self.cancel_signal) from None

    def _retry_or_give_up(self, subject: str, operation: str, reason: str, retry_after: float | None, delay: float,
                          started: float, limit: float, bound: str, tries: int, *, network: bool) -> None:
        left = limit - time.monotonic()
        if retry_after is not None and retry_after > left:
            raise Unreachable(Problem(f"{operation}: {reason}; the server asks to retry after {retry_after:.0f}s "
                                      f"(Retry-After), more than the {max(0.0, left):.0f}s left {bound}",
                                      subject=subject), retry_after=retry_after)
        if retry_after is None:
            delay = network_backoff(tries) if network else sdk_backoff(tries)
        # A host known to be down (see below) gets one try, not another budget: the lock's release,
        # which has a budget of its own, still tries once, and the run ends within one budget.
        if delay >= left or (network and self._down is not None):
            spent = time.monotonic() - started
            message = f"gave up after {tries} attempt(s) in {spent:.0f}s: {reason}"
            if network and tries > 1 and bound.startswith("within the retry budget"):
                # It stopped answering for a whole retry budget (not cut short by the deadline or
                # the lease): later calls say so at once instead of each waiting out a budget of
                # their own.
                self._down = f"{self.host} stopped answering: {reason}"
            raise Unreachable(Problem(f"{operation}: {message}", subject=subject))
        if self.on_retry is not None:
            self.on_retry(subject, f"{operation}: {reason}; retrying in {delay:.1f}s (attempt {tries + 1})")
        if self.cancel.wait(delay):
            raise Interrupted(self.cancel_signal)

    def _not_a_workspace(self, answered: list[tuple[int, str, str]], subject: str, operation: str) -> UnexpectedAnswer:
        """An HTML page where the REST API answers JSON: a web server, a proxy or a login page at
        DATABRICKS_HOST, not a workspace (whose errors are JSON bodies, `databricks-api.md`)."""
        status, reason, _ = answered[-1]
        return UnexpectedAnswer(Problem(
            f"{operation}: {self.host} does not look like a Databricks workspace: it answered with an HTML page "
            f"(HTTP {status}{' ' + reason if reason else ''}), not the REST API's JSON; check DATABRICKS_HOST (or "
            "the host of --profile)", subject=subject))

    def _typed(self, exc: BaseException, subject: str, operation: str) -> ReconcilerError:
        from databricks.sdk import errors

        if isinstance(exc, ReconcilerError):
            return exc
        if not isinstance(exc, errors.DatabricksError):
            import requests

            if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
                short = re.search(r"IncompleteRead\((\d+) bytes read, (\d+) more expected", str(exc))
                what = "the answer was cut short" + (f" after {short[1]} bytes ({short[2]} more were promised)"
                                                     if short else f" ({_first_line(exc)[:120]})")
            else:  # the SDK choked on it (a JSON string where an object belongs, and the like)
                what = f"{type(exc).__name__}: {_first_line(exc)[:200]}"
            return UnexpectedAnswer(Problem(f"unexpected answer from {self.host} to {operation}: {what}",
                                            subject=subject))
        code = exc.error_code if exc.error_code and not str(exc.error_code).isdigit() else None
        problem = Problem(f"{operation}: {_describe(exc, self.host)}", subject=subject)
        # `{"detail": ...}` without a scimType (another JSON API's 404, FastAPI's) is read by the SDK
        # as a SCIM error (`_StandardErrorDeserializer`): error_code "SCIM_None".
        if str(exc).startswith("unable to parse response") or (
                isinstance(exc, errors.NotFound) and code in (None, "SCIM_None")):
            # An HTTP error without a Databricks error body: a proxy, a login page, another server.
            status = _status_name(exc)
            doubt = f"{self.host} does not look like a Databricks workspace (check DATABRICKS_HOST)" \
                if status.startswith("4") else "is DATABRICKS_HOST the URL of a Databricks workspace?"
            return UnexpectedAnswer(Problem(
                f"unexpected answer from {self.host} to {operation}: HTTP {status} without a Databricks error body; "
                f"{doubt}", subject=subject))
        if isinstance(exc, errors.NotFound) and _means_missing(code):
            return NotFound(problem, status=404, error_code=code)
        if isinstance(exc, (errors.ResourceAlreadyExists, errors.AlreadyExists)) or code in (
                "RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            return AlreadyExists(problem, error_code=code)
        if isinstance(exc, errors.ResourceConflict):
            return Conflict(problem, status=409, error_code=code)
        if isinstance(exc, errors.Unauthenticated):
            return Unauthenticated(problem, status=401, error_code=code)
        if isinstance(exc, errors.PermissionDenied):
            return PermissionDenied(problem, status=403, error_code=code)
        return WorkspaceError(problem, error_code=code)

    # ---- reads -------------------------------------------------------------------------------

    def get_endpoint(self, name: str) -> dict[str, Any] | None:
        return self._call("GET", f"/api/2.0/serving-endpoints/{_segment('endpoint', name)}", missing_ok=True,
                          shape=ENDPOINT, subject=f"serving_endpoint.{name}", operation="get")

    def list_endpoints(self) -> list[dict[str, Any]]:
        """Every endpoint, summarised (the list is not paginated: ServingEndpointsAPI.list)."""
        answer = self._call("GET", "/api/2.0/serving-endpoints", shape=ENDPOINT_LIST, subject="serving_endpoints",
                            operation="list")
        return list(answer.get("endpoints") or [])

    def get_endpoint_permissions(self, name: str, endpoint_id: str) -> dict[str, Any]:
        """The endpoint's ACL; the Permissions API takes the endpoint's id, not its name."""
        return self._call("GET", f"/api/2.0/permissions/serving-endpoints/{_segment('endpoint id', endpoint_id)}",
                          shape=ACL, subject=f"serving_endpoint.{name}", operation="get_permissions")

    def get_model(self, full_name: str) -> dict[str, Any] | None:
        # Aliases come back only with include_aliases=true (RegisteredModelsAPI.get docstring).
        return self._call("GET", f"/api/2.1/unity-catalog/models/{_segment('model', full_name)}",
                          query={"include_aliases": "true"}, missing_ok=True, shape=MODEL,
                          subject=f"registered_model.{full_name}", operation="get")

    def get_model_version(self, full_name: str, version: str) -> dict[str, Any] | None:
        """The version, or None. A READY answer is kept for the workspace's life: READY is the last
        status a version reaches ("the version has been finalized": ModelVersionStatus in the Unity
        Catalog REST reference and unitycatalog's model_versions.proto; PENDING_REGISTRATION and
        FAILED_REGISTRATION are the others), and its status is all this tool reads of it. A version
        deleted since is found by the write that names it."""
        key = ("version", full_name, str(version))
        if key in self._final:
            return self._final[key]
        answer = self._call("GET", f"/api/2.1/unity-catalog/models/{_segment('model', full_name)}/versions/"
                                   f"{_segment('version', str(version))}", missing_ok=True, shape=VERSION,
                            subject=f"registered_model.{full_name}", operation=f"get version {version}")
        if answer is not None and answer.get("status") == "READY":
            self._final[key] = answer
        return answer

    # ---- what MLflow logged, and the versions registered from it (kinds/model_version.py) -----------

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """An MLflow run (`info` with its `artifact_uri`; `outputs.model_outputs`: the logged models
        it produced, MLflow 3), or None."""
        _segment("run", run_id)
        answer = self._call("GET", "/api/2.0/mlflow/runs/get", query={"run_id": run_id}, missing_ok=True,
                            shape=RUN, subject=f"run.{run_id}", operation="get")
        return None if answer is None else answer["run"]

    def get_logged_model(self, model_id: str) -> dict[str, Any] | None:
        """An MLflow 3 logged model (`info`: experiment, name, source run, artifact_uri), or None."""
        answer = self._call("GET", f"/api/2.0/mlflow/logged-models/{_segment('logged model', model_id)}",
                            missing_ok=True, shape=LOGGED_MODEL, subject=f"logged_model.{model_id}", operation="get")
        return None if answer is None else answer["model"]

    def search_logged_models(self, experiment_id: str, name: str) -> list[dict[str, Any]]:
        """The logged models of an experiment with this name, every page. A read sent as POST, as
        MLflow's client sends it (`RestStore.search_logged_models`); the filter is by name only,
        which is what Databricks supports (`_model_registry/fluent.py`: "TODO: Filter by
        'source_run_id' once Databricks backend supports it")."""
        _segment("experiment", experiment_id)
        _segment("artifact path", name)  # a name MLflow logged under: no quote can end the filter early
        found: list[dict[str, Any]] = []
        token = ""
        while True:
            body = {"experiment_ids": [experiment_id], "filter": f"name = '{name}'", "max_results": 100,
                    **({"page_token": token} if token else {})}
            answer = self._call("POST", "/api/2.0/mlflow/logged-models/search", body=body, shape=LOGGED_MODELS,
                                subject=f"experiment.{experiment_id}", operation="search_logged_models")
            found += answer.get("models") or []
            token = answer.get("next_page_token") or ""
            if not token:
                return found

    def read_tracking_file(self, artifact_uri: str, relative: str) -> bytes | None:
        """A file under a run's or logged model's artifact root, read through the Files API where
        MLflow's Databricks repositories look first (`DatabricksRunArtifactRepository` and
        `DatabricksLoggedModelArtifactRepository._build_root_path`), or None if it is not there.
        Raises when the root is not in the workspace's MLflow artifact store."""
        root = tracking_files_root(artifact_uri)
        if root is None:
            raise ReconcilerError(Problem(f"artifact location {artifact_uri[:200]} is not in this workspace's MLflow "
                                          "artifact store; the reconciler cannot read it", subject=artifact_uri[:200]))
        _segment("artifact path", relative)
        path = "/api/2.0/fs/files" + "/".join(_segment(None, part) for part in ("", *root, *relative.split("/")))
        return self._call("GET", path, raw=True, missing_ok=True, subject=artifact_uri[:200],
                          operation=f"read {relative}")

    def search_model_versions(self, *, full_name: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        """Versions through MLflow's Unity Catalog route, which carries their tags, model_id and
        status_message (the UC REST shape has none of them), every page. One condition, as MLflow
        documents for Unity Catalog: `name = '<full name>'` or `run_id = '<run id>'`."""
        if run_id is not None:
            condition, subject = f"run_id = '{run_id}'", f"run.{run_id}"
            _segment("run", run_id)
        else:
            condition, subject = f"name = '{full_name}'", f"registered_model.{full_name}"
            _segment("model", str(full_name))  # None is refused by the grammar
        found: list[dict[str, Any]] = []
        token = ""
        while True:
            answer = self._call("GET", "/api/2.0/mlflow/unity-catalog/model-versions/search",
                                query={"filter": condition, "max_results": 1000, **({"page_token": token} if token else {})},
                                shape=UC_VERSIONS, subject=subject, operation="search_model_versions")
            found += answer.get("model_versions") or []
            token = answer.get("next_page_token") or ""
            if not token:
                return found

    def get_version_status(self, full_name: str, version: str) -> dict[str, Any] | None:
        """A version as MLflow's Unity Catalog route shows it: with `status_message`, which says why a
        registration ended FAILED_REGISTRATION (Unity Catalog's `ModelVersionInfo` has no such field)."""
        _segment("model", full_name)
        _segment("version", str(version))
        answer = self._call("GET", "/api/2.0/mlflow/unity-catalog/model-versions/get",
                            query={"name": full_name, "version": str(version)}, missing_ok=True, shape=UC_VERSION,
                            subject=f"registered_model.{full_name}", operation=f"get version {version}")
        return None if answer is None else answer["model_version"]

    def list_secret_scopes(self) -> set[str]:
        answer = self._call("GET", "/api/2.0/secrets/scopes/list", shape=SCOPES, subject="secrets",
                            operation="list_scopes")
        return {s["name"] for s in answer.get("scopes") or [] if s.get("name")}

    def list_secret_keys(self, scope: str) -> set[str] | None:
        _segment("secret scope", scope)
        answer = self._call("GET", "/api/2.0/secrets/list", query={"scope": scope}, missing_ok=True, shape=SECRETS,
                            subject=f"secret_scope.{scope}", operation="list_secrets")
        return None if answer is None else {s["key"] for s in answer.get("secrets") or [] if s.get("key")}

    def resource_exists(self, kind: str, name: str) -> bool:
        template, grammar = RESOURCE_ROUTES[kind]
        answer = self._call("GET", template.format(_segment(grammar, name)), missing_ok=True,
                            subject=f"{kind}.{name}", operation="get")
        return answer is not None

    def read_mlmodel(self, full_name: str, version: str) -> dict[str, Any] | None:
        """The version's MLmodel file (resources, auth_policy), or None if it has none. Read
        through the Files API at /Models/{catalog}/{schema}/{model}/{version}/MLmodel. Once the
        version is seen READY the answer (None too) is kept for the workspace's life: a version's
        files are written while it registers and are final once it is READY ("the client successfully wrote all model artifacts to external
        storage and the version has been finalized": unitycatalog's model_versions.proto)."""
        key = ("mlmodel", full_name, str(version))
        if key in self._final and ("version", full_name, str(version)) in self._final:
            return self._final[key]
        found = self._read_mlmodel(full_name, version)
        self._final[key] = found  # kept; given back once the version is seen READY
        return found

    def _read_mlmodel(self, full_name: str, version: str) -> dict[str, Any] | None:
        _segment("model", full_name)
        parts = [*full_name.split("."), str(version), "MLmodel"]
        path = "/api/2.0/fs/files/Models/" + "/".join(_segment(None, p) for p in parts)
        subject = f"registered_model.{full_name}"
        content = self._call("GET", path, raw=True, missing_ok=True, subject=subject,
                             operation=f"read MLmodel of version {version}")
        if content is None:
            return None
        try:
            data = yaml.safe_load(content)
        except (yaml.YAMLError, RecursionError):
            raise ReconcilerError(Problem(f"MLmodel of version {version} is not valid YAML", subject=subject)) from None
        return data if isinstance(data, dict) else None

    def build_logs_tail(self, name: str, served_name: str, lines: int = 5) -> str:
        """Last lines of a served entity's build logs, best effort (for failure messages)."""
        try:
            answer = self._call("GET", f"/api/2.0/serving-endpoints/{_segment('endpoint', name)}/served-models/"
                                       f"{_segment('served entity', served_name)}/build-logs",
                                shape={"logs": str}, subject=f"serving_endpoint.{name}", operation="build_logs")
        except ReconcilerError:  # logs only decorate an error we are already reporting
            return ""
        logs = answer.get("logs") or ""
        return " | ".join(line.strip() for line in logs.strip().splitlines()[-lines:] if line.strip())

    def query_entity(self, endpoint: str, entity: str, body: dict[str, Any]) -> QueryAnswer:
        """Query one served entity, whatever its traffic share, as databricks-agents'
        `deployments.py` does: POST /serving-endpoints/{endpoint}/served-models/{entity}/invocations.
        An error answer is an answer (its status and message are what a smoke check judges), and it
        is not retried: the SDK would retry a 503 or 429 for its whole budget, hiding it."""
        path = (f"/serving-endpoints/{_segment('endpoint', endpoint)}/served-models/"
                f"{_segment('served entity', entity)}/invocations")
        started = time.monotonic()
        answer = self._call("POST", path, body=body, errors_answer=True, subject=f"serving_endpoint.{endpoint}",
                            operation=f"query served entity {entity}")
        seconds = time.monotonic() - started
        if isinstance(answer, ErrorAnswer):
            return QueryAnswer(answer.status, {"error_code": answer.error_code, "message": answer.message}, seconds)
        return QueryAnswer(200, answer, seconds)

    def metrics(self, endpoint: str) -> str:
        """The endpoint's metrics export, Prometheus text (SDK `export_metrics` sends `Accept:
        text/plain` and reads the body raw): for `reconciler.analysis` to parse."""
        content = self._call("GET", f"/api/2.0/serving-endpoints/{_segment('endpoint', endpoint)}/metrics", raw=True,
                             accept="text/plain", subject=f"serving_endpoint.{endpoint}", operation="export_metrics")
        return bytes(content).decode("utf-8", errors="replace")

    def current_user(self) -> dict[str, Any]:
        """The calling identity (SCIM Me): `userName` is the user's e-mail or, for a service
        principal, its application id (databricks/cli libs/iamutil). Read once per workspace: the
        credentials, and so the identity, are fixed for its life (an apply plans twice and records
        who applied)."""
        if self._me is None:
            self._me = self._call("GET", "/api/2.0/preview/scim/v2/Me", shape=USER, subject="current_user",
                                  operation="get")
        return self._me

    def model_privileges(self, full_name: str) -> dict[str, set[str]]:
        """Who holds which Unity Catalog privileges on a registered model, its own and those it
        inherits from its schema and catalog (`GET effective-permissions/function/{name}`,
        `w.grants.get_effective` in SDK `service/catalog.py`: registered models are FUNCTION
        securables; without `max_results` the answer holds every assignment, unpaginated).
        Principal -> privileges."""
        answer = self._call("GET", f"/api/2.1/unity-catalog/effective-permissions/function/{_segment('model', full_name)}",
                            shape=EFFECTIVE, subject=f"registered_model.{full_name}", operation="get effective permissions")
        held: dict[str, set[str]] = {}
        for assignment in answer.get("privilege_assignments") or []:
            privileges = {p.get("privilege") for p in assignment.get("privileges") or [] if p.get("privilege")}
            held.setdefault(assignment.get("principal") or "", set()).update(privileges)
        return held

    # ---- writes ------------------------------------------------------------------------------

    def create_model(self, full_name: str, *, comment: str | None) -> None:
        _segment("model", full_name)
        catalog, schema, name = full_name.split(".")
        body = {"catalog_name": catalog, "schema_name": schema, "name": name,
                **({"comment": comment} if comment is not None else {})}
        self._call("POST", "/api/2.1/unity-catalog/models", body=body, write=True,
                   subject=f"registered_model.{full_name}", operation="create")

    def update_model(self, full_name: str, fields: dict[str, Any]) -> None:
        self._call("PATCH", f"/api/2.1/unity-catalog/models/{_segment('model', full_name)}", body=dict(fields),
                   write=True, subject=f"registered_model.{full_name}", operation="update")

    def set_alias(self, full_name: str, alias: str, version: int) -> None:
        self._call("PUT", f"/api/2.1/unity-catalog/models/{_segment('model', full_name)}/aliases/"
                          f"{_segment('alias', alias)}", body={"version_num": int(version)}, write=True,
                   subject=f"registered_model.{full_name}", operation=f"set_alias({alias} → {version})")

    def delete_alias(self, full_name: str, alias: str) -> None:
        # Already gone is the goal of the write holding: missing_ok.
        self._call("DELETE", f"/api/2.1/unity-catalog/models/{_segment('model', full_name)}/aliases/"
                             f"{_segment('alias', alias)}", write=True, missing_ok=True,
                   subject=f"registered_model.{full_name}", operation=f"delete_alias({alias})")

    def delete_model_version(self, full_name: str, version: str) -> None:
        # Already gone is the goal: missing_ok (ModelVersionsAPI.delete).
        self._call("DELETE", f"/api/2.1/unity-catalog/models/{_segment('model', full_name)}/versions/"
                             f"{_segment('version', str(version))}", write=True, missing_ok=True,
                   subject=f"registered_model.{full_name}", operation=f"delete version {version}")

    def register_version(self, full_name: str, source: str, *, tags: dict[str, str], timeout: float) -> dict[str, Any]:
        """Register the logged agent `source` (`runs:/...` or `models:/m-...`) as a new version of
        `full_name`, through MLflow's own Unity Catalog client: `mlflow.register_model` resolves the
        URI (a run's files, or the logged model it names), creates the version PENDING_REGISTRATION
        with `tags` (the reconciler's marker), copies the files by the path the workspace tells it
        (`UcModelRegistryStore._get_artifact_repo`) and finalizes it. Returns what MLflow returned:
        {"version": "8", "status": ..., "source": ..., "run_id": ...}.

        Not through `_call`: the protocol is MLflow's, with its own retries (MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        each call bounded by MLFLOW_DATABRICKS_ENDPOINT_HTTP_RETRY_TIMEOUT; the upload by the SDK's
        Files API and its retry budget). What is ours, and its limits:
        - it runs in a child process (`_register_in_child`) of this interpreter, with this process's
          auth (the SDK's unified auth: environment, or `databricks://<profile>`); the child refuses
          to send anything when MLflow's credentials resolve to another host than this workspace;
        - the wait is bounded by `timeout`, the run's deadline and the apply lease's end, and the
          first interrupt ends it: the child is killed then, and dies by itself if this process
          dies (it watches its stdin). A registration cut short leaves the version
          PENDING_REGISTRATION with our marker, and a request already sent may still land; the next
          plan finds such a version and replaces it (kinds/model_version.py);
        - MLflow's answer is one line: its message, typed like our own calls' errors;
        - MLflow loads the logged MLmodel to check its signature (`_validate_model_signature`), which
          imports numpy and pandas: without them nothing is started (`pip install 'reconciler[mlflow]'`).
        """
        import json
        import subprocess
        import sys
        import tempfile

        _segment("model", full_name)
        subject = f"registered_model.{full_name}"
        if not registration_installed():
            raise ReconcilerError(Problem(REGISTRATION_EXTRA, subject=subject))
        if self.cancel.is_set():
            raise Interrupted(self.cancel_signal)
        started = time.monotonic()
        limit, bound = self._limit(started, True, timeout)
        request = {"model": full_name, "source": source, "tags": tags, "host": self.host,
                   "profile": self.config.profile}
        with tempfile.TemporaryFile("w+") as errors:  # a file, not a pipe: MLflow's chatter cannot fill it up
            child = subprocess.Popen([sys.executable, "-c", "from reconciler.workspace import _register_in_child; "
                                                            "_register_in_child()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True)
            stdin, stdout = child.stdin, child.stdout
            assert stdin is not None and stdout is not None
            try:
                stdin.write(json.dumps(request) + "\n")
                stdin.flush()  # stdin stays open: the child lives only as long as this process does
                future = _RUNNER.submit(lambda: (stdout.read(), child.wait()))
                try:
                    out, code = self._await(future, max(0.0, limit - time.monotonic()), write=False)
                except FutureTimeout:
                    raise Unreachable(Problem(f"register {source}: not finished {bound}; the version may be left "
                                              "PENDING_REGISTRATION: run apply again, it replaces it",
                                              subject=subject)) from None
            finally:
                if child.poll() is None:
                    child.kill()
                child.wait()
                stdin.close()
            errors.seek(0)
            err = errors.read()
        answer = _last_json(out)
        if answer is None:
            last = (err.strip().splitlines() or [f"exit code {code}"])[-1]
            raise UnexpectedAnswer(Problem(f"register {source}: MLflow's client ended without an answer: {last[:300]}",
                                           subject=subject))
        if "error" in answer:
            error = Problem(f"register {source}: {answer['error']}", subject=subject)
            code_name = answer.get("error_code")
            if code_name == "PERMISSION_DENIED":
                raise PermissionDenied(error, status=403, error_code=code_name)
            raise WorkspaceError(error, error_code=code_name)
        return answer

    def create_endpoint(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST /serving-endpoints; `payload` is the API's body (tags as a map, made a list here)."""
        name = payload["name"]
        _segment("endpoint", name)
        body = {k: v for k, v in payload.items() if k != "tags" and v is not None}
        if payload.get("tags"):
            body["tags"] = [{"key": k, "value": v} for k, v in payload["tags"].items()]
        return self._call("POST", "/api/2.0/serving-endpoints", body=body, write=True,
                          subject=f"serving_endpoint.{name}", operation="create")

    def update_config(self, name: str, payload: dict[str, Any]) -> None:
        self._call("PUT", f"/api/2.0/serving-endpoints/{_segment('endpoint', name)}/config", body=payload,
                   write=True, subject=f"serving_endpoint.{name}", operation="update_config")

    def patch_tags(self, name: str, *, add: dict[str, str], delete: list[str]) -> None:
        body: dict[str, Any] = {}
        if add:
            body["add_tags"] = [{"key": k, "value": v} for k, v in add.items()]
        if delete:
            body["delete_tags"] = list(delete)
        self._call("PATCH", f"/api/2.0/serving-endpoints/{_segment('endpoint', name)}/tags", body=body,
                   write=True, subject=f"serving_endpoint.{name}", operation="patch_tags")

    def put_ai_gateway(self, name: str, payload: dict[str, Any]) -> None:
        self._call("PUT", f"/api/2.0/serving-endpoints/{_segment('endpoint', name)}/ai-gateway",
                   body={k: v for k, v in payload.items() if v is not None}, write=True,
                   subject=f"serving_endpoint.{name}", operation="put_ai_gateway")

    def update_permissions(self, name: str, endpoint_id: str, acl: list[dict[str, str]], *, replace: bool) -> None:
        """PATCH (merge) the given grants, or PUT (replace) the direct grants when `replace`."""
        self._call("PUT" if replace else "PATCH",
                   f"/api/2.0/permissions/serving-endpoints/{_segment('endpoint id', endpoint_id)}",
                   body={"access_control_list": acl}, write=True, subject=f"serving_endpoint.{name}",
                   operation="set_permissions" if replace else "update_permissions")

    def delete_endpoint(self, name: str) -> None:
        self._call("DELETE", f"/api/2.0/serving-endpoints/{_segment('endpoint', name)}", write=True,
                   missing_ok=True, subject=f"serving_endpoint.{name}", operation="delete")

    # ---- workspace files (the apply lock's lease) --------------------------------------------------

    # The lock's own calls take a `budget` of their own: releasing a lease must not give up as soon
    # as a run that is short of retry budget would.

    def create_file(self, path: str, content: bytes, *, overwrite: bool, budget: float | None = None) -> bool:
        """Write a workspace file; with overwrite=False, False if the path already exists (atomic)."""
        subject = f"workspace_file.{_workspace_path(path)}"
        self._call("POST", "/api/2.0/workspace/mkdirs", body={"path": path.rsplit("/", 1)[0]}, write=True,
                   subject=subject, operation="mkdirs", budget=budget)
        try:
            self._call("POST", "/api/2.0/workspace/import", write=True, subject=subject, operation="import",
                       budget=budget,
                       body={"path": path, "content": base64.b64encode(content).decode(), "format": "AUTO",
                             "overwrite": overwrite})
        except AlreadyExists:
            return False
        return True

    def replace_file(self, path: str, content: bytes, *, budget: float | None = None) -> None:
        """Replace an existing workspace file's bytes. `format: AUTO` with `overwrite: true` has been
        answered 400 RESOURCE_ALREADY_EXISTS for workspace files (databricks/cli#3386); `RAW` with
        `overwrite: true` replaces them, as Terraform's databricks_workspace_file does
        (localworkspace/workspace_files.py cites both). Unconditional: callers check ownership first."""
        _workspace_path(path)
        self._call("POST", "/api/2.0/workspace/import", write=True, subject=f"workspace_file.{path}",
                   operation="import", budget=budget,
                   body={"path": path, "content": base64.b64encode(content).decode(), "format": "RAW",
                         "overwrite": True})

    def read_file(self, path: str, *, budget: float | None = None) -> bytes | None:
        _workspace_path(path)
        answer = self._call("GET", "/api/2.0/workspace/export", query={"path": path, "format": "AUTO"}, budget=budget,
                            missing_ok=True, shape={"content": str}, subject=f"workspace_file.{path}",
                            operation="export")
        if answer is None:
            return None
        content = answer.get("content") or ""
        try:
            return base64.b64decode(content, validate=True)
        except ValueError:
            raise UnexpectedAnswer(Problem(f"unexpected answer from {self.host} to export: content is not base64",
                                           subject=f"workspace_file.{path}")) from None

    def delete_file(self, path: str, *, budget: float | None = None) -> None:
        _workspace_path(path)
        self._call("POST", "/api/2.0/workspace/delete", body={"path": path}, write=True, missing_ok=True, budget=budget,
                   subject=f"workspace_file.{path}", operation="delete")


# ---- answers to queries --------------------------------------------------------------------------

@dataclass(frozen=True)
class ErrorAnswer:
    """An HTTP error answer, as `_call(errors_answer=True)` returns it."""

    status: int | None  # None when the SDK maps the status to no class of its own (e.g. 502)
    error_code: str | None
    message: str


@dataclass(frozen=True)
class QueryAnswer:
    """What a served entity answered: the HTTP status, the JSON body (for an error, its error_code
    and message) and how long the call took, network included."""

    status: int | None
    body: Any
    seconds: float


def sdk_backoff(tries: int) -> float:
    """After an HTTP error answer without Retry-After (a 429 or 503 asks us to slow down): the SDK's
    backoff (`retries.py`: min(10, attempt) + up to 1 s), counted over our attempts."""
    return min(10, tries) + random.random()


def network_backoff(tries: int) -> float:
    """After no answer at all (a dropped connection, a timeout): nothing asked us to slow down, so
    the first retry comes soon and the wait grows x1.6 from 0.2 s, with +-25% jitter, up to 10 s.
    Within a short retry budget that is several attempts, not the SDK's two (1-2 s, then 2-3 s):
    with 16% of calls failing at random, a 4 s budget gives up on 1 call in 10,000, not 1 in 170."""
    return min(10.0, 0.2 * 1.6 ** (tries - 1)) * (0.75 + random.random() / 2)


def _is_answer(exc: BaseException | None) -> TypeGuard[BaseException]:
    """An HTTP error the server answered (not a dropped connection or a timeout)."""
    from databricks.sdk import errors

    return isinstance(exc, errors.DatabricksError)


def _error_answer(exc: BaseException) -> ErrorAnswer:
    """The status an SDK error stands for: the class the SDK's `errors/mapper.py` chose from the
    status (`platform.STATUS_CODE_MAPPING`), or the status class its error code's class derives from."""
    from databricks.sdk.errors import platform

    statuses = {cls: status for status, cls in platform.STATUS_CODE_MAPPING.items()}
    status = next((statuses[cls] for cls in type(exc).__mro__ if cls in statuses), None)
    code = getattr(exc, "error_code", None)
    return ErrorAnswer(status, str(code) if code else None, _first_line(exc))


# ---- registration: MLflow's client, in a child process -----------------------------------------

REGISTRATION_EXTRA = ("registering a version needs MLflow's model loading, which needs numpy and pandas: "
                      "pip install 'reconciler[mlflow]'")
# `DatabricksRunArtifactRepository._URI_REGEX` and `DatabricksLoggedModelArtifactRepository._URI_REGEX`.
_RUN_ROOT = re.compile(r"databricks/mlflow-tracking/(?P<experiment_id>[^/]+)/(?P<run_id>(?!tr-|logged_models)[^/]+)"
                       r"(?P<relative_path>/.*)?$")
_LOGGED_MODEL_ROOT = re.compile(r"databricks/mlflow-tracking/(?P<experiment_id>[^/]+)/logged_models/"
                                r"(?P<model_id>[^/]+)(?P<relative_path>/.*)?$")


def registration_installed() -> bool:
    """numpy and pandas are importable: MLflow's registration loads the MLmodel with them."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("numpy", "pandas"))


def tracking_files_root(artifact_uri: str) -> list[str] | None:
    """The Files API path (as parts) of a run's or logged model's artifact location, as MLflow's
    Databricks repositories build it (`_build_root_path`), or None when it is elsewhere."""
    found = _LOGGED_MODEL_ROOT.search(artifact_uri)
    kind, key = ("LoggedModels", "model_id") if found else ("Runs", "run_id")
    found = found or _RUN_ROOT.search(artifact_uri)
    if found is None:
        return None
    relative = [part for part in (found.group("relative_path") or "").split("/") if part]
    parts = ["WorkspaceInternal", "Mlflow", "Artifacts", found.group("experiment_id"), kind, found.group(key), *relative]
    if any(part in (".", "..") for part in parts):
        return None
    return parts


def _last_json(text: str) -> dict[str, Any] | None:
    import json

    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        return value if isinstance(value, dict) else None
    return None


def _register_in_child() -> None:
    """The child process of `Workspace.register_version`: reads one JSON request on stdin, registers
    with `mlflow.register_model`, prints one JSON line (the version, or {"error", "error_code"}).
    It exits when its stdin closes, so it never outlives the process that started it."""
    import json
    import sys

    request = json.loads(sys.stdin.readline())

    def watch_parent() -> None:
        sys.stdin.read()  # returns at EOF: the parent closed the pipe or died
        os._exit(3)

    threading.Thread(target=watch_parent, daemon=True).start()
    profile = request.get("profile")
    os.environ["MLFLOW_TRACKING_URI"] = "databricks" + (f"://{profile}" if profile else "")
    os.environ["MLFLOW_REGISTRY_URI"] = "databricks-uc" + (f"://{profile}" if profile else "")
    from mlflow.exceptions import MlflowException

    try:
        answer = _register_with_mlflow(request)
    except MlflowException as exc:  # its message says what is wrong ("... did not contain any signature")
        answer = {"error": _first_line(exc), "error_code": exc.error_code}
    except Exception as exc:  # whatever else MLflow or the SDK raise: one line for the parent
        answer = {"error": f"{type(exc).__name__}: {_first_line(exc)}", "error_code": getattr(exc, "error_code", None)}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
    os._exit(0)  # not waiting for MLflow's background threads


def _register_with_mlflow(request: dict[str, Any]) -> dict[str, Any]:
    import mlflow
    from mlflow.utils.databricks_utils import get_databricks_host_creds
    from mlflow.utils.logging_utils import disable_logging

    disable_logging()  # MLflow's progress lines are not ours to print; the answer is one line
    host = _shown_host(get_databricks_host_creds(os.environ["MLFLOW_TRACKING_URI"]).host or "")
    if host != request["host"]:
        return {"error": f"MLflow's credentials point at {host}, not {request['host']}; set DATABRICKS_HOST (or "
                         "the profile) so both agree"}
    version = mlflow.register_model(request["source"], request["model"], await_registration_for=0,
                                    tags=request["tags"])
    return {"version": str(version.version), "status": version.status, "source": version.source,
            "run_id": version.run_id}


# ---- helpers -----------------------------------------------------------------------------------

def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ReconcilerError(f"{name}={raw!r}: expected a number of seconds") from None
    if value <= 0:
        raise ReconcilerError(f"{name}={raw!r}: expected a positive number of seconds")
    return value


def _read_capped(stream: Any, cap: int) -> bytes:
    data = stream.read(cap + 1)
    if len(data) > cap:
        raise ValueError(f"larger than {cap} bytes")
    return bytes(data)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    # The SDK appends its whole resolved config ("... Config: host=..., token=***, ..."): noise.
    return line.split(" Config: ", 1)[0].rstrip(". ")[:300]


def _html(answered: list[tuple[int, str, str]], *, error_only: bool = False) -> bool:
    """Whether the last answer was an HTML page; with `error_only`, an HTML error other than a
    gateway's 502/503/504 (which a real workspace's load balancer sends too, and which are retried)."""
    if not answered or "html" not in answered[-1][2].lower():
        return False
    return not error_only or answered[-1][0] >= 400 and answered[-1][0] not in (502, 503, 504)


def _status_name(exc: BaseException) -> str:
    """The HTTP status class an SDK error stands for (`databricks/sdk/errors/mapping.py`)."""
    names = {"BadRequest": "400", "Unauthenticated": "401", "PermissionDenied": "403", "NotFound": "404",
             "ResourceConflict": "409", "TooManyRequests": "429", "InternalError": "500",
             "NotImplemented": "501", "TemporarilyUnavailable": "503", "DeadlineExceeded": "504"}
    for cls in type(exc).__mro__:
        if cls.__name__ in names:
            return names[cls.__name__]
    return "error"


def _means_missing(code: str | None) -> bool:
    """A 404 that says the object is not there (not 'no such API' nor a stranger's 404 page)."""
    return code is not None and (code in ("NOT_FOUND", "RESOURCE_DOES_NOT_EXIST") or code.endswith("_DOES_NOT_EXIST"))


def _is_tls(exc: BaseException | None) -> bool:
    import requests

    return isinstance(exc, requests.exceptions.SSLError)


def _describe(exc: BaseException | None, host: str) -> str:
    """The cause of a failed attempt, in words a user can act on."""
    import requests
    from databricks.sdk import errors

    if exc is None:
        return "no answer"
    if isinstance(exc, errors.DatabricksError):
        message = _first_line(exc)
        code = exc.error_code if exc.error_code and not str(exc.error_code).isdigit() else None
        # Real bodies: 401 {"error_code": 401, "message": "Credential was not sent or was of an
        # unsupported type for this API. [ReqId: ...]"} (PipedreamHQ/pipedream#20701); a wrong or
        # expired token is 403 {"error_code": 403, "message": "Invalid access token."}
        # (databricks/databricks-sdk-go#873, #917); a missing grant is 403 PERMISSION_DENIED naming
        # the permission and the object ("User u does not have View permissions on serving endpoint
        # 'e'. ...", localworkspace/serving.py's wording).
        if isinstance(exc, errors.Unauthenticated):
            return (f"authentication failed (401 {code or 'UNAUTHENTICATED'}): {message}; check DATABRICKS_TOKEN "
                    "(or --profile and ~/.databrickscfg)")
        if isinstance(exc, errors.PermissionDenied):
            hint = "; check DATABRICKS_TOKEN (or --profile): the token is not valid for this workspace" \
                if "token" in message.lower() else "; the credentials are valid but lack this grant: ask the " \
                "object's owner or a workspace admin for the permission named above"
            return f"permission denied (403 {code or 'PERMISSION_DENIED'}): {message}{hint}"
        if isinstance(exc, errors.TooManyRequests):
            return f"rate limited (429{' ' + code if code else ''}): {message}"
        if isinstance(exc, errors.TemporarilyUnavailable):
            return f"temporarily unavailable (503{' ' + code if code else ''}): {message}"
        return f"{code}: {message}" if code else message
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS handshake with {host} failed (is the scheme right? http:// for a local workspace)"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"timed out waiting for {host}"
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc)
        if "Connection refused" in text or "ECONNREFUSED" in text:
            return f"connection refused by {host}"
        if "NameResolution" in text or "Name or service not known" in text or "nodename nor servname" in text \
                or "getaddrinfo" in text:
            return f"host name of {host} not resolved"
        if "reset" in text.lower():
            return f"connection reset by {host}"
        return f"connection to {host} closed without an answer"
    return _first_line(exc)


def _shape_problem(answer: Any, shape: Any) -> str | None:
    """What is wrong with an answer's shape, or None."""
    depth = _too_deep(answer)
    if depth:
        return depth
    return _mismatch(answer, shape, "")


def _shared_strings(value: Any) -> Any:
    """The answer with its keys and short strings interned: a plan of 5,000 endpoints holds 5,000
    answers whose keys ("served_entities", "entity_version", ...) and enum values ("READY") would
    otherwise each be a string of their own (tens of MiB). Called once `_too_deep` passed."""
    if isinstance(value, dict):
        return {sys.intern(k) if isinstance(k, str) else k: _shared_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shared_strings(v) for v in value]
    if isinstance(value, str) and len(value) <= SHARED_STRING_CHARS:
        return sys.intern(value)
    return value


def _too_deep(answer: Any) -> str | None:
    """Iterative, so a hostile nesting cannot exhaust the stack while we look at it."""
    stack: list[tuple[Any, int]] = [(answer, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_NESTING:
            return f"nested more than {MAX_NESTING} levels deep"
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((item, depth + 1) for item in items if isinstance(item, (dict, list)))
    return None


def _mismatch(value: Any, shape: Any, where: str) -> str | None:
    if isinstance(shape, type):
        return None if _is_type(value, shape) else f"{where or 'the answer'} is {_json_type(value)}, expected " \
                                                    f"{_json_name(shape)}"
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{where} is {_json_type(value)}, expected an array"
        for i, item in enumerate(value):
            problem = _mismatch(item, shape[0], f"{where}[{i}]")
            if problem:
                return problem
        return None
    if not isinstance(value, dict):
        return f"{where or 'the answer'} is {_json_type(value)}, expected an object"
    if str in shape:  # a map: every value of one type
        bad = next((k for k, v in value.items() if not _is_type(v, shape[str])), None)
        return None if bad is None else f"{where}.{bad} is {_json_type(value[bad])}, expected " \
                                        f"{_json_name(shape[str])}"
    for key, item_shape in shape.items():
        name = key.rstrip("!")
        path = f"{where}.{name}" if where else name
        if value.get(name) is None:
            if key.endswith("!"):
                return f"{path} is missing"
            continue
        problem = _mismatch(value[name], item_shape, path)
        if problem:
            return problem
    return None


def _is_type(value: Any, expected: type) -> bool:
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _json_name(expected: type) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer"}[expected]


def _register_credentials(config: Any) -> None:
    """Every value the SDK's config marks sensitive (the token, passwords, client secrets), and
    a password in the host URL, wherever they came from (environment, profile): never printed."""
    for attribute in type(config).attributes():
        if attribute.sensitive:
            value = getattr(config, attribute.name, None)
            redact.register(value if isinstance(value, str) else None)
    redact.register_url(config.host)


def _check_token(token: str | None) -> None:
    """A token with a line break or a space (pasted from a file) would fail inside the HTTP client
    with an error that quotes the header, token and all; say what is wrong instead."""
    if token and (token != token.strip() or any(not c.isprintable() or c.isspace() for c in token)):
        raise ReconcilerError("the Databricks token (DATABRICKS_TOKEN, or the profile's token) holds a line break, "
                              "a space or another control character; remove it (a trailing newline from a file?)")


def _check_host(host: str | None) -> None:
    """Refuse a host the SDK would mangle or hang on, and fail fast (one line) when nobody listens."""
    if not host:
        raise ReconcilerError("no Databricks host configured; set DATABRICKS_HOST (and DATABRICKS_TOKEN) or pass "
                              "--profile")
    if "://" not in host:
        raise ReconcilerError(f"Databricks host '{_shown_host('https://' + host)[8:]}' has no scheme; write "
                              "https://<workspace host> (or http://127.0.0.1:<port> for a local workspace)")
    url = urllib.parse.urlsplit(host)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ReconcilerError(f"Databricks host '{_shown_host(host)}' is not an http(s) URL; write "
                              "https://<workspace host>")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=10).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        if isinstance(exc, socket.gaierror):
            reason = "host name not resolved"
        elif isinstance(exc, TimeoutError):
            reason = "timed out"
        raise Unreachable(Problem(f"cannot reach Databricks host {_shown_host(host)}: {reason.lower()}")) from None
