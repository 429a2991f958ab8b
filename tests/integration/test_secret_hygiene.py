"""Secret hygiene: recognisable credentials in the workspace and in the environment never appear in
any output of any command: stdout, stderr, plan files, exported manifests, error messages.

The workspace holds an endpoint made out of band with plain credentials in its environment
variables (an OpenAI key, a database password), next to secret references; the token is a
`dapi...` personal access token; a wrong token of the same shape is tried too. Every command runs
against it, with faults, failures and refusals, and everything it printed or wrote is searched.
"""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import yaml
from harness import ROOT, base_documents, endpoint, model, run, write

from reconciler.localworkspace.server import LocalWorkspace

OPENAI_KEY = "sk-live-4f9c2a7e1b3d5f7a9c1e3b5d7f9a2c4e6b8d"
DB_PASSWORD = "Hunter2-Prod-7c1e3b5d"
TOKEN = "dapi" + "0123456789abcdef0123456789abcdef"
WRONG_TOKEN = "dapi" + "fedcba9876543210fedcba9876543210"
SECRETS = (OPENAI_KEY, DB_PASSWORD, TOKEN, WRONG_TOKEN)


def leaks(*texts: str) -> list[str]:
    found = []
    for text in texts:
        for secret in SECRETS:
            for fragment in (secret, secret[8:24]):  # also a part of it (a truncated echo)
                if fragment in text:
                    found.append(f"{fragment!r} in: ...{text[max(0, text.index(fragment) - 200):][:400]}...")
    return found


def seed() -> dict:
    """The example's workspace, plus its endpoint as someone made it by hand: plain credentials."""
    data = yaml.safe_load((ROOT / "tests" / "seeds" / "support_agent.yaml").read_text(encoding="utf-8"))
    entities = []
    for name, version in (("champion", "3"), ("challenger", "4")):
        entities.append({"name": name, "entity_name": "main.agents.support_agent", "entity_version": version,
                         "workload_size": "Small", "scale_to_zero_enabled": True,
                         "environment_vars": {"OPENAI_API_KEY": OPENAI_KEY, "DB_PASSWORD": DB_PASSWORD,
                                              "ENABLE_MLFLOW_TRACING": "true",
                                              # credentials under names that do not say so
                                              "LLM_AUTH_HEADER": f"Bearer {OPENAI_KEY}",
                                              "ORDERS_DB_URL": f"postgresql://agent:{DB_PASSWORD}@db:5432/orders"}})
    data["serving_endpoints"].append({
        "name": "support-agent", "config": {"served_entities": entities, "traffic_config": {"routes": [
            {"served_entity_name": "champion", "traffic_percentage": 90},
            {"served_entity_name": "challenger", "traffic_percentage": 10}]}},
        "tags": [{"key": "team", "value": "support"}, {"key": "managed-by", "value": "reconciler"}]})
    data["secret_scopes"] = [{"name": "support", "keys": ["openai", "db_password"]}]
    return data


@pytest.fixture
def ws():
    workspace = LocalWorkspace(seed=seed(), update_seconds=0.0, token=TOKEN).start()
    yield workspace
    workspace.stop()


class Outputs:
    """Everything the commands printed or wrote, for one search at the end."""

    def __init__(self, ws, tmp_path: Path) -> None:
        self.ws, self.tmp, self.texts = ws, tmp_path, []

    def run(self, *args: str, env: dict[str, str] | None = None):
        result = run(self.ws, *args, env=env)
        self.texts.append(f"$ reconciler {' '.join(args)}\n{result.out}{result.err}")
        return result

    def file(self, path: str | Path) -> None:
        for found in [Path(path)] if Path(path).is_file() else sorted(Path(path).rglob("*")):
            if found.is_file():
                self.texts.append(f"{found}:\n{found.read_text(encoding='utf-8', errors='replace')}")


def test_no_command_ever_prints_a_credential(ws, tmp_path):
    out = Outputs(ws, tmp_path)
    docs = base_documents()
    path = write(tmp_path, docs)

    # validate: good manifests, and one where someone pasted the key in plain
    assert out.run("validate", path).code == 0
    pasted = copy.deepcopy(docs)
    endpoint(pasted)["spec"]["served_entities"][0]["environment_vars"]["OPENAI_API_KEY"] = OPENAI_KEY
    endpoint(pasted)["spec"]["served_entities"][1]["environment_vars"]["DB_PASSWORD"] = DB_PASSWORD
    endpoint(pasted)["spec"]["served_entities"][1]["environment_vars"]["ORDERS_DB_URL"] = \
        f"postgresql://agent:{DB_PASSWORD}@db:5432/orders"
    bad = write(tmp_path, pasted, "pasted.yaml")
    for command in ("validate", "plan", "apply"):
        result = out.run(command, bad, *(["--auto-approve"] if command == "apply" else []))
        assert result.code == 1 and result.err.count("plain value") == 3, result.err

    # plan in every format, and a saved plan: the live endpoint holds the plain credentials
    for fmt in ("text", "json", "markdown"):
        result = out.run("plan", path, "--format", fmt)
        assert result.code == 0, result.err
    saved = tmp_path / "plan.json"
    assert out.run("plan", path, "--out", str(saved)).code == 0
    out.file(saved)
    assert "OPENAI_API_KEY" in saved.read_text()  # the change is there, its old value is not

    # export of the hand-made endpoint, before it is brought under the manifests
    result = out.run("export", "--endpoint", "support-agent", "--model", "main.agents.support_agent",
                     "--out", str(tmp_path / "exported"))
    out.file(tmp_path / "exported")

    # a wrong token
    assert out.run("plan", path, env={"DATABRICKS_TOKEN": WRONG_TOKEN}).code == 1
    assert out.run("apply", path, "--auto-approve", env={"DATABRICKS_TOKEN": WRONG_TOKEN}).code == 1

    # apply under faults (with a short retry budget so some calls give up), then for real
    ws.set_faults(0.3, seed=3, kinds=["429", "503", "drop", "drop_after"])
    for _ in range(2):
        out.run("apply", path, "--auto-approve", env={"RECONCILER_RETRY_SECONDS": "1"})
    ws.set_faults(0.0)
    assert out.run("apply", path, "--auto-approve").code == 0

    # a failed deployment (version 6 fails to build), a stale saved plan, a refused replace
    failing = copy.deepcopy(docs)
    model(failing)["spec"]["aliases"]["champion"] = 6
    assert out.run("apply", write(tmp_path, failing, "failing.yaml"), "--auto-approve").code == 1
    assert out.run("apply", "--plan", str(saved)).code == 1
    replaced = copy.deepcopy(docs)
    endpoint(replaced)["spec"]["description"] = "new"
    assert out.run("apply", write(tmp_path, replaced, "replace.yaml"), "--auto-approve").code == 1

    if os.environ.get("SHOW_OUTPUTS"):
        print("\n\n".join(out.texts))
    assert leaks(*out.texts) == []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _first_line_of_sim_serve(*extra: str) -> str:
    server = subprocess.Popen([str(ROOT / ".venv" / "bin" / "reconciler"), "sim", "serve", "--port", str(_free_port()),
                               *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "DATABRICKS_TOKEN": TOKEN})
    try:
        return server.stdout.readline()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)


def test_sim_serve_prints_its_own_token_and_never_the_environments():
    """Documented (`--token` help: "Bearer token to accept (default: printed at start)"): the local
    workspace prints the one token it accepts, so a user can connect to it; that token opens
    nothing but this local process. It never reads or prints the DATABRICKS_TOKEN around it."""
    assert "(token: local-token)" in _first_line_of_sim_serve()
    line = _first_line_of_sim_serve("--token", "sim-only")
    assert "listening on" in line and "(token: sim-only)" in line and leaks(line) == []


@pytest.mark.parametrize("name, value, secret, reason", [
    ("OPENAI_API_KEY", "sk-abc", True, "the name says so, whatever the value"),
    ("OPENAI_API_KEY", "{{secrets/support/openai}}", False, "a reference is never a credential"),
    ("LLM_AUTH_HEADER", f"Bearer {OPENAI_KEY}", True, "an OpenAI-style key inside the value"),
    ("WORKSPACE_PAT", TOKEN, True, "a Databricks personal access token"),
    ("ORDERS_DB_URL", "postgresql://agent:pw@db:5432/orders", True, "a URL carrying a password"),
    ("ORDERS_DB_URL", "postgresql://db:5432/orders", False, "a URL with a port and no user"),
    ("DOCS_URL", "https://agent@docs.example.com/x", False, "a user name alone is no secret"),
    ("VECTOR_SEARCH_INDEX", "main.agents.docs_index", False, "an ordinary setting"),
    ("TASK", "sk-short", False, "too short to be a key"),
])
def test_what_counts_as_a_plain_credential(name, value, secret, reason):
    from reconciler.terms import plain_credential

    assert plain_credential(name, value) is secret, reason
