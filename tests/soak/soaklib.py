"""What the reliability suite shares: a seeded generator of manifest changes, and the checks that
read a local workspace's request log (with responses logged) as evidence.

The checks return lists of human-readable violations (empty when all holds), so a failing soak
names every broken run, not only the first.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MODEL = "main.agents.support_agent"
ENDPOINT = "support-agent"
CANARY = "support-agent-canary"
VERSIONS = (3, 4, 7, 8)  # READY, logged with the resources the manifests declare
LOCK_PATHS = ("/api/2.0/workspace/",)
ALIAS_PATH = re.compile(r"/api/2\.1/unity-catalog/models/([^/]+)/aliases/([^/]+)")


def seed() -> dict[str, Any]:
    """tests/seeds/support_agent.yaml plus versions 7 and 8 (copies of 4), for more alias moves."""
    data = yaml.safe_load((ROOT / "tests" / "seeds" / "support_agent.yaml").read_text(encoding="utf-8"))
    model = data["registered_models"][0]
    four = next(v for v in model["versions"] if v["version"] == 4)
    model["versions"] += [{**copy.deepcopy(four), "version": n, "run_id": f"r{n}"} for n in (7, 8)]
    return data


def base_documents() -> list[dict[str, Any]]:
    with open(ROOT / "manifests" / "support-agent.yaml", encoding="utf-8") as handle:
        return [d for d in yaml.safe_load_all(handle) if d]


def write(directory: Path, documents: list[dict[str, Any]]) -> str:
    path = directory / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(copy.deepcopy(documents), sort_keys=False), encoding="utf-8")
    return str(path)


# ---- random manifest changes ---------------------------------------------------------------------

class Changes:
    """Seeded random edits of the example deployment: alias moves, traffic, environment variables,
    tags, AI gateway, permissions, and a canary endpoint that comes and goes (create / prune)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def apply(self, docs: list[dict[str, Any]]) -> list[str]:
        edits = [self.rng.choice(self.EDITS) for _ in range(self.rng.randint(1, 3))]
        return [edit(self, docs) for edit in edits]

    @staticmethod
    def _model(docs: list[dict[str, Any]]) -> dict[str, Any]:
        return next(d for d in docs if d["kind"] == "RegisteredModel")

    @staticmethod
    def _endpoint(docs: list[dict[str, Any]], name: str = ENDPOINT) -> dict[str, Any]:
        return next(d for d in docs if d["kind"] == "ServingEndpoint" and d["metadata"]["name"] == name)

    def alias_move(self, docs: list[dict[str, Any]]) -> str:
        alias = self.rng.choice(["champion", "challenger"])
        version = self.rng.choice(VERSIONS)
        self._model(docs)["spec"]["aliases"][alias] = version
        return f"alias {alias} -> {version}"

    def traffic(self, docs: list[dict[str, Any]]) -> str:
        share = self.rng.choice([0, 10, 25, 50, 75, 90, 100])
        routes = self._endpoint(docs)["spec"]["traffic_config"]["routes"]
        routes[0]["traffic_percentage"], routes[1]["traffic_percentage"] = share, 100 - share
        return f"traffic {share}/{100 - share}"

    def env(self, docs: list[dict[str, Any]]) -> str:
        entity = self.rng.choice(self._endpoint(docs)["spec"]["served_entities"])
        variables = entity["environment_vars"]
        if "FEATURE_FLAGS" in variables and self.rng.random() < 0.4:
            del variables["FEATURE_FLAGS"]
            return f"env {entity['name']}: -FEATURE_FLAGS"
        variables["FEATURE_FLAGS"] = self.rng.choice(["a", "a,b", "b,c", "none"])
        return f"env {entity['name']}: FEATURE_FLAGS={variables['FEATURE_FLAGS']}"

    def tags(self, docs: list[dict[str, Any]]) -> str:
        tags = self._endpoint(docs)["spec"]["tags"]
        if "release" in tags and self.rng.random() < 0.4:
            del tags["release"]
            return "tags: -release"
        tags["release"] = f"r{self.rng.randint(1, 99)}"
        tags["team"] = self.rng.choice(["support", "cx"])
        return f"tags: release={tags['release']} team={tags['team']}"

    def gateway(self, docs: list[dict[str, Any]]) -> str:
        gateway = self._endpoint(docs)["spec"]["ai_gateway"]
        if self.rng.random() < 0.5:
            tracking = gateway.setdefault("usage_tracking_config", {"enabled": False})
            tracking["enabled"] = not tracking["enabled"]
            return f"ai_gateway usage tracking {tracking['enabled']}"
        if gateway.get("rate_limits"):
            del gateway["rate_limits"]
            return "ai_gateway: no rate limits"
        gateway["rate_limits"] = [{"calls": self.rng.choice([10, 100, 1000]), "key": "endpoint",
                                   "renewal_period": "minute"}]
        return f"ai_gateway: rate limit {gateway['rate_limits'][0]['calls']}/minute"

    def permissions(self, docs: list[dict[str, Any]]) -> str:
        grants = self._endpoint(docs)["spec"]["permissions"]
        grants[0]["permission_level"] = self.rng.choice(["CAN_VIEW", "CAN_QUERY", "CAN_MANAGE"])
        analysts = [g for g in grants if g.get("group_name") == "analysts"]
        if analysts and self.rng.random() < 0.5:
            grants.remove(analysts[0])
            return f"permissions: support-team {grants[0]['permission_level']}, -analysts"
        if not analysts:
            grants.append({"group_name": "analysts", "permission_level": "CAN_VIEW"})
        return f"permissions: support-team {grants[0]['permission_level']}, analysts CAN_VIEW"

    def canary(self, docs: list[dict[str, Any]]) -> str:
        existing = [d for d in docs if d["kind"] == "ServingEndpoint" and d["metadata"]["name"] == CANARY]
        if existing:
            docs.remove(existing[0])
            return f"-{CANARY} (pruned)"
        docs.append({"apiVersion": "reconciler/v1", "kind": "ServingEndpoint", "metadata": {"name": CANARY},
                     "spec": {"served_entities": [{"name": "canary", "entity_name": MODEL, "alias": "champion",
                                                   "workload_size": "Small", "scale_to_zero_enabled": True}],
                              "tags": {"team": "support", "role": "canary"},
                              "permissions": [{"group_name": "support-team", "permission_level": "CAN_QUERY"}]}})
        return f"+{CANARY}"

    EDITS = (alias_move, alias_move, traffic, env, tags, gateway, permissions, canary)


# ---- reading the request log ---------------------------------------------------------------------

def landed(entry: dict[str, Any]) -> bool:
    """The server handled it successfully (even if a drop_after fault hid the answer from the client)."""
    response = entry.get("response")
    return response is not None and response["status"] < 300


def managed_writes(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in log if e["method"] != "GET" and not e["path"].startswith(LOCK_PATHS)]


def duplicate_creates(log: list[dict[str, Any]]) -> list[str]:
    """An endpoint created twice without a delete in between (the server refuses a second create
    of a live name, so this catches a create that landed after the reconciler deleted nothing)."""
    alive: Counter[str] = Counter()
    problems = []
    for entry in log:
        if not landed(entry):
            continue
        if entry["method"] == "POST" and entry["path"] == "/api/2.0/serving-endpoints":
            name = (entry.get("body") or {}).get("name")
            alive[name] += 1
            if alive[name] > 1:
                problems.append(f"endpoint {name} created again while it existed")
        elif entry["method"] == "DELETE" and entry["path"].startswith("/api/2.0/serving-endpoints/"):
            alive[entry["path"].rsplit("/", 1)[1]] = 0
    return problems


def serving_through(docs: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """(model, alias) -> the endpoints that serve it through that alias."""
    found: dict[tuple[str, str], list[str]] = {}
    for doc in docs:
        if doc["kind"] != "ServingEndpoint":
            continue
        for entity in doc["spec"]["served_entities"]:
            if entity.get("alias"):
                found.setdefault((entity["entity_name"], entity["alias"]), []).append(doc["metadata"]["name"])
    return found


def serves_healthily(body: dict[str, Any] | None, model: str, version: int) -> bool:
    state = (body or {}).get("state") or {}
    entities = ((body or {}).get("config") or {}).get("served_entities") or []
    return (state.get("ready") == "READY" and state.get("config_update") == "NOT_UPDATING"
            and any(e.get("entity_name") == model and e.get("entity_version") == str(version) for e in entities))


def unsafe_alias_moves(log: list[dict[str, Any]], docs: list[dict[str, Any]]) -> list[str]:
    """Every alias set that lands must follow, for each endpoint serving through that alias, a read
    of the endpoint showing it READY, NOT_UPDATING and serving the version, with no config write
    or create of that endpoint landing in between."""
    through = serving_through(docs)
    problems = []
    for i, entry in enumerate(log):
        match = ALIAS_PATH.fullmatch(entry["path"])
        if entry["method"] != "PUT" or not match or not landed(entry):
            continue
        model, alias = match.groups()
        version = int((entry.get("body") or {}).get("version_num"))
        for endpoint in through.get((model, alias), []):
            evidence = _last_read_before(log, i, endpoint)
            if evidence is None or not serves_healthily(evidence["response"]["body"], model, version):
                shown = "no read" if evidence is None else json.dumps(evidence["response"]["body"].get("state"))
                problems.append(f"alias {alias} -> {version} set while {endpoint} was not serving it healthily "
                                f"(last read: {shown})")
    return problems


def alias_sets(log: list[dict[str, Any]]) -> int:
    """How many alias sets landed (each one checked by `unsafe_alias_moves`)."""
    return sum(1 for e in log if e["method"] == "PUT" and ALIAS_PATH.fullmatch(e["path"]) and landed(e))


def _last_read_before(log: list[dict[str, Any]], index: int, endpoint: str) -> dict[str, Any] | None:
    path = f"/api/2.0/serving-endpoints/{endpoint}"
    for entry in reversed(log[:index]):
        if not landed(entry):
            continue
        if entry["method"] == "GET" and entry["path"] == path:
            return entry
        if entry["method"] == "PUT" and entry["path"] == f"{path}/config":
            return None  # a config write after the last read: nothing shows what it serves now
        if entry["method"] == "POST" and entry["path"] == "/api/2.0/serving-endpoints" and \
                (entry.get("body") or {}).get("name") == endpoint:
            return None
    return None


def written_objects(log: list[dict[str, Any]]) -> set[str]:
    """Names of the endpoints and models that landed writes went to (by path segment or body name)."""
    names = set()
    for entry in managed_writes(log):
        if landed(entry):
            names |= set(entry["path"].split("/"))
            names.add(str((entry.get("body") or {}).get("name")))
    return names


def next_apply_problems(label: str, clean: Any, check: Any, log: list[dict[str, Any]],
                        docs: list[dict[str, Any]]) -> list[str]:
    """What is wrong with the apply that followed a killed or interrupted one (`clean`, then the
    plan `check`, both CLI results; `log` holds both runs' requests): it must converge, land no
    write twice across the pair, and move no alias before its endpoints serve the version."""
    problems = [] if clean.code == 0 and check.code == 0 else [
        f"{label}: the next apply did not converge: {clean.out[-1500:]}{clean.err}{check.out}"]
    problems += [f"{label}: {p}" for p in repeated_writes(log)]
    return problems + [f"{label}: {p}" for p in unsafe_alias_moves(log, docs)]


def repeated_writes(log: list[dict[str, Any]]) -> list[str]:
    """Managed writes that landed more than once with the same method, path and body."""
    counts = Counter((e["method"], e["path"], json.dumps(e.get("body"), sort_keys=True))
                     for e in managed_writes(log) if landed(e))
    return [f"{method} {path} {body} landed {n} times" for (method, path, body), n in counts.items() if n > 1]


# ---- the apply lock in the log -------------------------------------------------------------------

def lock_windows(log: list[dict[str, Any]]) -> list[tuple[int, int, int | None]]:
    """(start index, end index, holder pid) of each time the lease was held: from the landed
    create-if-absent of the lease file to the landed delete of it (end = len(log) if never)."""
    windows: list[tuple[int, int, int | None]] = []
    start: int | None = None
    holder: int | None = None
    for i, entry in enumerate(log):
        body = entry.get("body") or {}
        if not landed(entry) or not str(body.get("path", "")).startswith("/Shared/.reconciler/locks/"):
            continue
        if entry["path"] == "/api/2.0/workspace/import" and body.get("overwrite") is False:
            if start is not None:
                windows.append((start, i, holder))  # taken while held: overlapping windows
            start = i
            try:
                holder = json.loads(base64.b64decode(body.get("content") or ""))["pid"]
            except (ValueError, KeyError, TypeError):
                holder = None
        elif entry["path"] == "/api/2.0/workspace/delete" and start is not None:
            windows.append((start, i, holder))
            start = None
    if start is not None:
        windows.append((start, len(log), holder))
    return windows
