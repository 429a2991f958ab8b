"""MLflow tracking objects of the local workspace: runs and MLflow 3 logged models, with their files.

They exist because a seed says so (`mlflow_runs`, `logged_models`; the format is in `server.py`):
the local workspace reads them to MLflow's client, it does not log them. Who reads them:
- `mlflow_routes.py` answers `GET /api/2.0/mlflow/runs/get`, `GET /api/2.0/mlflow/logged-models/{id}`,
  `POST /api/2.0/mlflow/logged-models/search` and `PATCH .../logged-models/{id}/tags` in the
  proto-JSON shapes of `mlflow/protos/service.proto` (`Run`, `LoggedModel`);
- `files_api.py` serves their files where MLflow's Databricks artifact repositories look for them
  (`DatabricksRunArtifactRepository` / `DatabricksLoggedModelArtifactRepository._build_root_path`):
  `/WorkspaceInternal/Mlflow/Artifacts/{experiment_id}/Runs/{run_id}/artifacts/...` and
  `/WorkspaceInternal/Mlflow/Artifacts/{experiment_id}/LoggedModels/{model_id}/artifacts/...`;
- `registration.py` asks how registering a version from one of them behaves (`registration`).

Identifiers have the real grammar, so a client that parses them meets real-looking values: run
ids are 32 lower-case hex digits (uuid4 hex, as MLflow makes them), logged model ids are `m-` and
32 hex digits, Databricks experiment ids are decimal digits.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from reconciler.localworkspace.artifacts import FileSet, clean_relative, seed_content
from reconciler.localworkspace.clock import now_ms
from reconciler.localworkspace.errors import ApiError, invalid, not_found
from reconciler.localworkspace.pages import paginate

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
LOGGED_MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")
EXPERIMENT_ID = re.compile(r"^[0-9]{1,19}$")
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")  # service.proto RunStatus
# `mlflow/store/tracking/rest_store.py` and `fluent.py` search logged models by name only ("TODO:
# Filter by 'source_run_id' once Databricks backend supports it"); that is the subset answered here.
NAME_FILTER = re.compile(r"""^\s*name\s*=\s*(?:'([^']*)'|"([^"]*)")\s*$""")

RUN_KEYS = {"run_id", "experiment_id", "run_name", "status", "user_id", "start_time", "end_time", "tags", "params",
            "metrics", "artifacts", "registration", "serving"}
LOGGED_MODEL_KEYS = {"model_id", "experiment_id", "name", "source_run_id", "model_type", "tags", "params",
                     "artifacts", "registration", "creation_timestamp_ms", "serving"}
REGISTRATION_KEYS = {"seconds", "failure"}


@dataclass(frozen=True)
class RegistrationPlan:
    """How registering a model version behaves once MLflow's client finalizes it."""
    seconds: float = 0.0  # the version stays PENDING_REGISTRATION this long after finalize
    failure: str | None = None  # if set, it then ends FAILED_REGISTRATION with this status_message


@dataclass
class Run:
    run_id: str
    experiment_id: str
    run_name: str
    status: str
    user_id: str
    start_time: int
    end_time: int | None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    files: FileSet = field(default_factory=FileSet)
    registration: RegistrationPlan | None = None
    serving: Any = None  # a queries.Behaviour: how a version registered from it answers queries

    @property
    def artifact_uri(self) -> str:
        # The artifact root Databricks gives a run (seen in mlflow/mlflow#2958 and the URI grammar
        # of `DatabricksRunArtifactRepository._URI_REGEX`).
        return f"dbfs:/databricks/mlflow-tracking/{self.experiment_id}/{self.run_id}/artifacts"


@dataclass
class LoggedModel:
    model_id: str
    experiment_id: str
    name: str
    source_run_id: str | None
    model_type: str | None
    created_at: int
    updated_at: int
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    files: FileSet = field(default_factory=FileSet)
    registration: RegistrationPlan | None = None
    serving: Any = None  # a queries.Behaviour: how a version registered from it answers queries

    @property
    def artifact_uri(self) -> str:
        # `DatabricksLoggedModelArtifactRepository._URI_REGEX`; the trailing `/artifacts` is what
        # Databricks returns (public captures of `logged_models/m-<id>/artifacts` locations).
        return f"dbfs:/databricks/mlflow-tracking/{self.experiment_id}/logged_models/{self.model_id}/artifacts"


class Tracking:
    """Runs by run id and logged models by model id."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.runs: dict[str, Run] = {}
        self.logged_models: dict[str, LoggedModel] = {}

    # -- lookups -------------------------------------------------------------------------------

    def run(self, run_id: str) -> Run:
        found = self.runs.get(run_id)
        if found is None:
            # What Databricks answers (mlflow/mlflow#2958, tracking URI "databricks").
            raise not_found(f"Run '{run_id}' not found.")
        return found

    def logged_model(self, model_id: str) -> LoggedModel:
        found = self.logged_models.get(model_id)
        if found is None:
            # The live answer a public migration tool recorded (mlflow 3.16, 2026-09-29):
            # "NOT_FOUND: LoggedModel m-<id> not found". MLflow's UC store tolerates only
            # RESOURCE_DOES_NOT_EXIST here (`_get_logged_model_from_model_id`), so this code matters.
            raise ApiError(404, "NOT_FOUND", f"LoggedModel {model_id} not found")
        return found

    def search_logged_models(self, body: dict[str, Any]) -> dict[str, Any]:
        experiment_ids = body.get("experiment_ids")
        if not isinstance(experiment_ids, list) or not experiment_ids \
                or not all(isinstance(e, str) for e in experiment_ids):
            raise invalid("experiment_ids must be a non-empty list of experiment ids")
        name = _name_filter(body.get("filter"))
        found = [m for m in self.logged_models.values()
                 if m.experiment_id in experiment_ids and (name is None or m.name == name)]
        # Newest first, MLflow's default order for logged models; the key makes the page token stable.
        ordered = sorted(((f"{10**15 - m.created_at:016d}{m.model_id}", m) for m in found), key=lambda kv: kv[0])
        max_results = body.get("max_results")
        query = {"page_token": str(body.get("page_token") or "")}
        if isinstance(max_results, int) and not isinstance(max_results, bool):
            query["max_results"] = str(max_results)
        page, next_token = paginate(ordered, query, default=100, limit=1000)
        result: dict[str, Any] = {"models": [self.logged_model_view(m) for m in page]}
        if next_token:
            result["next_page_token"] = next_token
        return result

    def set_logged_model_tags(self, model_id: str, body: dict[str, Any]) -> LoggedModel:
        model = self.logged_model(model_id)
        tags = body.get("tags") or []
        if not isinstance(tags, list):
            raise invalid("tags must be a list of {key, value}")
        for tag in tags:
            if not isinstance(tag, dict) or not isinstance(tag.get("key"), str) or not tag["key"] \
                    or not isinstance(tag.get("value", ""), str):
                raise invalid("tags must be a list of {key, value} with string keys and values")
            model.tags[tag["key"]] = tag.get("value", "")
        model.updated_at = now_ms()
        return model

    def registration_plan(self, *, source: str | None, run_id: str | None, model_id: str | None
                          ) -> RegistrationPlan | None:
        """The seeded plan of the logged model or run a new version comes from, if any."""
        origin = self.origin(source=source, run_id=run_id, model_id=model_id)
        return origin.registration if origin is not None else None

    def origin(self, *, source: str | None, run_id: str | None, model_id: str | None) -> LoggedModel | Run | None:
        """The logged model or run a new version comes from, if seeded. The logged model wins:
        registering `models:/m-...` also sends its source run's id."""
        logged = self.logged_models.get(model_id or "")
        if logged is None and source and source.startswith("models:/"):
            logged = self.logged_models.get(source[len("models:/"):].split("/")[0])
        if logged is None and source:
            logged = next((m for m in self.logged_models.values() if _under(source, m.artifact_uri)), None)
        if logged is not None:
            return logged
        run = self.runs.get(run_id or "")
        if run is None and source:
            run = next((r for r in self.runs.values() if _under(source, r.artifact_uri)), None)
        return run

    # -- views (mlflow/protos/service.proto) -----------------------------------------------------

    def run_view(self, run: Run) -> dict[str, Any]:
        info: dict[str, Any] = {
            "run_id": run.run_id, "run_uuid": run.run_id, "run_name": run.run_name,
            "experiment_id": run.experiment_id, "user_id": run.user_id, "status": run.status,
            "start_time": run.start_time, "artifact_uri": run.artifact_uri, "lifecycle_stage": "active",
        }
        if run.end_time is not None:
            info["end_time"] = run.end_time
        data = {
            "metrics": [{"key": k, "value": v, "timestamp": run.start_time, "step": 0}
                        for k, v in sorted(run.metrics.items())],
            "params": [{"key": k, "value": v} for k, v in sorted(run.params.items())],
            "tags": [{"key": k, "value": v} for k, v in sorted(run.tags.items())],
        }
        # MLflow 3 records the models a run logged as its outputs; `register_model("runs:/...")`
        # reads them to pick one when several share a name (`_model_registry/fluent.py`).
        outputs = [{"model_id": m.model_id, "step": 0} for m in sorted(
            self.logged_models.values(), key=lambda m: m.created_at) if m.source_run_id == run.run_id]
        view: dict[str, Any] = {"info": info, "data": data, "inputs": {}}
        if outputs:
            view["outputs"] = {"model_outputs": outputs}
        return view

    def logged_model_view(self, model: LoggedModel) -> dict[str, Any]:
        info: dict[str, Any] = {
            "model_id": model.model_id, "experiment_id": model.experiment_id, "name": model.name,
            "creation_timestamp_ms": model.created_at, "last_updated_timestamp_ms": model.updated_at,
            "artifact_uri": model.artifact_uri, "status": "LOGGED_MODEL_READY",
            "tags": [{"key": k, "value": v} for k, v in sorted(model.tags.items())],
        }
        for key in ("source_run_id", "model_type"):
            if getattr(model, key) is not None:
                info[key] = getattr(model, key)
        return {"info": info, "data": {"params": [{"key": k, "value": v} for k, v in sorted(model.params.items())],
                                       "metrics": []}}

    # -- seeding -------------------------------------------------------------------------------

    def seed_run(self, entry: dict[str, Any]) -> None:
        """Add (or replace) a run from a seed entry; ValueError says what is wrong."""
        _known(entry, RUN_KEYS)
        run_id = _matching(entry, "run_id", RUN_ID, "32 lower-case hex digits")
        experiment_id = _experiment_id(entry)
        status = entry.get("status", "FINISHED")
        if status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {', '.join(RUN_STATUSES)}")
        start = _timestamp(entry, "start_time", None)
        start = now_ms() if start is None else start
        run = Run(run_id=run_id, experiment_id=experiment_id, run_name=_text(entry, "run_name") or run_id[:8],
                  status=status, user_id=_text(entry, "user_id") or self.user, start_time=start,
                  end_time=_timestamp(entry, "end_time", start if status in ("FINISHED", "FAILED", "KILLED") else None),
                  tags=_strings(entry, "tags"), params=_strings(entry, "params"), metrics=_numbers(entry, "metrics"),
                  files=_artifacts(entry, start), registration=_registration(entry), serving=_serving(entry))
        self.runs[run_id] = run

    def seed_logged_model(self, entry: dict[str, Any]) -> None:
        """Add (or replace) a logged model; its source run, if named, must be seeded before it."""
        _known(entry, LOGGED_MODEL_KEYS)
        model_id = _matching(entry, "model_id", LOGGED_MODEL_ID, "'m-' and 32 lower-case hex digits")
        experiment_id = _experiment_id(entry)
        name = _text(entry, "name")
        if not name:
            raise ValueError("needs 'name' (the name it was logged under, e.g. agent)")
        source_run_id = _text(entry, "source_run_id")
        if source_run_id is not None:
            run = self.runs.get(source_run_id)
            if run is None:
                raise ValueError(f"source_run_id '{source_run_id}' is not a run of this seed (list it under "
                                 "mlflow_runs)")
            if run.experiment_id != experiment_id:
                raise ValueError(f"source run '{source_run_id}' is in experiment {run.experiment_id}, "
                                 f"not {experiment_id}")
        created = _timestamp(entry, "creation_timestamp_ms", now_ms())
        assert created is not None
        self.logged_models[model_id] = LoggedModel(
            model_id=model_id, experiment_id=experiment_id, name=name, source_run_id=source_run_id,
            model_type=_text(entry, "model_type"), created_at=created, updated_at=created,
            tags=_strings(entry, "tags"), params=_strings(entry, "params"), files=_artifacts(entry, created),
            registration=_registration(entry), serving=_serving(entry))


def _serving(entry: dict[str, Any]) -> Any:
    """A seeded `serving` (shared/design.md): how versions registered from it answer queries."""
    from reconciler.localworkspace.queries import parse_behaviour

    return parse_behaviour(entry["serving"]) if entry.get("serving") is not None else None


def _under(source: str, root: str) -> bool:
    return source == root or source.startswith(root + "/")


def _name_filter(raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    found = NAME_FILTER.match(raw) if isinstance(raw, str) else None
    if found is None:
        raise invalid(f"Unsupported filter '{raw}': the local workspace searches logged models by name = '...' only")
    return found[1] if found[1] is not None else found[2]


# -- seed checks (one-line ValueErrors; seed.py adds the file and the entry's position) ----------

def _known(entry: dict[str, Any], keys: set[str]) -> None:
    unknown = sorted(set(entry) - keys)
    if unknown:
        raise ValueError(f"unknown field '{unknown[0]}'; expected {', '.join(sorted(keys))}")


def _text(entry: dict[str, Any], key: str) -> str | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"'{key}' must be a string")
    return value


def _matching(entry: dict[str, Any], key: str, grammar: re.Pattern[str], described: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not grammar.match(value):
        raise ValueError(f"needs '{key}': {described}")
    return value


def _experiment_id(entry: dict[str, Any]) -> str:
    value = entry.get("experiment_id")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # YAML reads an unquoted id as a number
    if not isinstance(value, str) or not EXPERIMENT_ID.match(value):
        raise ValueError("needs 'experiment_id': decimal digits, as Databricks experiment ids are")
    return value


def _timestamp(entry: dict[str, Any], key: str, default: int | None) -> int | None:
    value = entry.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"'{key}' must be Unix milliseconds")
    return value


def _strings(entry: dict[str, Any], key: str) -> dict[str, str]:
    value = entry.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
        raise ValueError(f"'{key}' must be a mapping of names to values")
    if not all(isinstance(v, (str, int, float, bool)) for v in value.values()):
        raise ValueError(f"'{key}' values must be text or numbers")
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _numbers(entry: dict[str, Any], key: str) -> dict[str, float]:
    value = entry.get(key) or {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in value.items()):
        raise ValueError(f"'{key}' must be a mapping of metric names to numbers")
    return {k: float(v) for k, v in value.items()}


def _artifacts(entry: dict[str, Any], modified_at: int) -> FileSet:
    value = entry.get("artifacts") or {}
    if not isinstance(value, dict):
        raise ValueError("'artifacts' must be a mapping of relative file paths to contents")
    files = FileSet()
    for path, content in value.items():
        if not isinstance(path, str):
            raise ValueError("'artifacts' keys must be relative file paths")
        relative = clean_relative(path)
        if relative.rsplit("/", 1)[-1] == "MLmodel":
            content = _mlmodel(relative, content)
        files.put(relative, seed_content(relative, content), modified_at=modified_at)
    return files


def _mlmodel(path: str, content: Any) -> Any:
    """An MLmodel given as a mapping, with one convenience: a signature's `inputs` / `outputs` may
    be written as YAML lists; the file stores them as JSON strings, as MLflow writes them
    (`ModelSignature.to_dict`) and reads them (`ModelSignature.from_dict`)."""
    if not isinstance(content, dict):
        return content
    signature = content.get("signature")
    if signature is None:
        return content
    if not isinstance(signature, dict):
        raise ValueError(f"{path}: 'signature' must be a mapping of inputs, outputs and params")
    converted = dict(signature)
    for key in ("inputs", "outputs", "params"):
        if isinstance(converted.get(key), list):
            converted[key] = json.dumps(converted[key])
        elif converted.get(key) is not None and not isinstance(converted[key], str):
            raise ValueError(f"{path}: signature {key} must be a list of column specs or their JSON text")
    return {**content, "signature": converted}


def _registration(entry: dict[str, Any]) -> RegistrationPlan | None:
    value = entry.get("registration")
    if value is None:
        return None
    return registration_plan(value)


def registration_plan(value: Any) -> RegistrationPlan:
    """A `{seconds, failure}` mapping (a seed's `registration`, or `/__sim/registration`) checked."""
    if not isinstance(value, dict):
        raise ValueError("'registration' must be a mapping of seconds and failure")
    _known(value, REGISTRATION_KEYS)
    seconds = value.get("seconds", 0.0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError("registration seconds must be a number of seconds >= 0")
    failure = value.get("failure")
    if failure is not None and (not isinstance(failure, str) or not failure):
        raise ValueError("registration failure must be the status message of the failed registration")
    return RegistrationPlan(seconds=float(seconds), failure=failure)
