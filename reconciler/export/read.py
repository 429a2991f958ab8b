"""Export's reads: the endpoints and models asked for, through `Workspace`, each object once.

Called by the `export` command in cli.py, before `convert.export_objects`. Every name that comes
back from the workspace becomes a file name, so it is held to its grammar and must be the name
asked for (or listed); an answer that is not is refused with a problem, never written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from reconciler.errors import Problem, ReconcilerError
from reconciler.export.endpoints import serving_entities
from reconciler.terms import UC_THREE_PART, name_problem


@dataclass
class LiveObjects:
    """What `read_live` found. None: does not exist; a ReconcilerError: could not be read."""

    endpoints: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    acls: dict[str, dict[str, Any] | ReconcilerError] = field(default_factory=dict)
    models: dict[str, dict[str, Any] | None | ReconcilerError] = field(default_factory=dict)
    requested_endpoints: list[str] = field(default_factory=list)
    requested_models: list[str] = field(default_factory=list)
    all_endpoints: bool = False
    refused: dict[str, Problem] = field(default_factory=dict)  # subject -> why its answer was not used


def read_live(workspace: Any, *, endpoints: Sequence[str], models: Sequence[str], all_endpoints: bool,
              pin_versions: bool, parallelism: int) -> LiveObjects:
    """Two parallel rounds: the endpoints and models asked for; then each endpoint's permissions
    (they need its id) and the models its entities serve, for their aliases. A missing object is
    None. A permission or implied-model read that fails only costs that part (warned about)."""
    from reconciler.live import run_parallel

    live = LiveObjects(requested_endpoints=list(dict.fromkeys(endpoints)),
                       requested_models=list(dict.fromkeys(models)), all_endpoints=all_endpoints)
    bad = [m for m in live.requested_models if not UC_THREE_PART.fullmatch(m.lower())]
    if bad:
        raise ReconcilerError([Problem(f"--model '{m}' is not a Unity Catalog model name; write catalog.schema.model")
                               for m in bad])
    names = list(live.requested_endpoints)
    if all_endpoints:
        for listed in sorted({e["name"] for e in workspace.list_endpoints()} - set(names)):
            problem = name_problem("endpoint", listed)  # it becomes a file name: never trusted
            if problem:
                live.refused[f"serving_endpoints {len(live.refused)}"] = Problem(
                    f"the workspace lists an endpoint whose name {problem}; not exported", subject="serving_endpoints")
            else:
                names.append(listed)
    calls: list[tuple[Any, Callable[[], Any]]] = [(("endpoint", n), partial(workspace.get_endpoint, n))
                                                  for n in names]
    calls += [(("model", m), partial(workspace.get_model, m)) for m in live.requested_models]
    for (kind, name), value in run_parallel(calls, parallelism, workspace).items():
        (live.endpoints if kind == "endpoint" else live.models)[name] = _as_asked(kind, name, value, live.refused)
    # Keep the order asked for; an answer for another name is left out (its problem says why).
    live.endpoints = {n: live.endpoints[n] for n in names if f"serving_endpoint.{n}" not in live.refused}

    calls = []
    for name, api in live.endpoints.items():
        if api is not None and api.get("id"):
            calls.append((("acl", name), _tolerant(partial(workspace.get_endpoint_permissions, name, api["id"]))))
    if not pin_versions:
        served = {e["entity_name"] for api in live.endpoints.values() if api
                  for e in serving_entities(api) if UC_THREE_PART.fullmatch(e.get("entity_name") or "")}
        known = {(api or {}).get("full_name") for api in live.models.values() if isinstance(api, dict)}
        calls += [(("model", m), _tolerant(partial(workspace.get_model, m)))
                  for m in sorted(served - known - set(live.models))]
    for (kind, name), value in run_parallel(calls, parallelism, workspace).items():
        if kind == "acl":
            live.acls[name] = value
        elif value is not None:
            live.models[name] = _as_asked(kind, name, value, live.refused)
    return live


def _as_asked(kind: str, name: str, api: Any, refused: dict[str, Problem]) -> Any:
    """`api` if it describes the object asked for, else None and a problem: a name from a server
    answer becomes a file name, so it must be the name asked for (or listed), in the API's grammar."""
    if not isinstance(api, dict):
        return api
    endpoint = kind == "endpoint"
    answered = api.get("name" if endpoint else "full_name", name)
    problem = name_problem("endpoint" if endpoint else "model", answered)
    if problem is None and (answered == name if endpoint else str(answered).lower() == name.lower()):
        return api
    subject = f"{'serving_endpoint' if endpoint else 'registered_model'}.{name}"
    refused[subject] = Problem(f"the workspace answered for another name ({problem or repr(answered)[:80]}); not "
                               "exported", subject=subject)
    return None


def _tolerant(read: Callable[[], Any]) -> Callable[[], Any]:
    def call() -> Any:
        try:
            return read()
        except ReconcilerError as exc:
            return exc
    return call

