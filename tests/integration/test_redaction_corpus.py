"""The redaction corpus (tests/integration/redaction_corpus.py) pushed through every way out: plan
as text, markdown and JSON (printed and saved), apply's output, export's files and messages, and
the error paths (validate of pasted values, values from RECONCILER_VAR_x in invalid fields).

Two figures, both printed: credential shapes leaked (must be 0), and harmless values hidden (at
most 5%). A harmless value counts as hidden if any output shows `(plain value hidden)` for it,
validate refuses it, or export writes it as a TODO secret reference (which breaks `plan` until
someone stores a secret that is not one).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from harness import ROOT, base_documents, endpoint, run, write
from redaction_corpus import CREDENTIALS, HARMLESS

from reconciler.localworkspace.server import LocalWorkspace
from reconciler.redact import HIDDEN

NAME = "corpus-agent"
TOKEN = "dapi" + "c0ffee00c0ffee00c0ffee00c0ffee00"


def corpus_env() -> dict[str, str]:
    env = {name: value for name, value, _, _ in CREDENTIALS}
    env.update({name: value for name, value, _ in HARMLESS})
    assert len(env) == len(CREDENTIALS) + len(HARMLESS)  # no name used twice
    return env


def seed() -> dict:
    data = yaml.safe_load((ROOT / "tests" / "seeds" / "support_agent.yaml").read_text(encoding="utf-8"))
    data["serving_endpoints"].append({
        "name": NAME, "config": {"served_entities": [{
            "name": "champion", "entity_name": "main.agents.support_agent", "entity_version": "3",
            "workload_size": "Small", "scale_to_zero_enabled": True, "environment_vars": corpus_env()}]},
        "tags": [{"key": "managed-by", "value": "reconciler"}]})
    return data


def corpus_documents() -> list[dict]:
    """The example deployment plus the corpus endpoint, whose manifest manages its environment:
    every live value shows in the plan as one to remove."""
    docs = base_documents()
    corpus = copy.deepcopy(endpoint(docs))
    corpus["metadata"]["name"] = NAME
    corpus["spec"] = {"served_entities": [{"name": "champion", "entity_name": "main.agents.support_agent",
                                           "entity_version": "3", "workload_size": "Small",
                                           "scale_to_zero_enabled": True,
                                           "environment_vars": {"ENABLE_MLFLOW_TRACING": "false"}}]}
    return docs + [corpus]


def forms(text: str) -> set[str]:
    """How a value may appear: as is, JSON-escaped, YAML double-quoted (export)."""
    return {text, json.dumps(text)[1:-1]}


def leaked(outputs: dict[str, str]) -> list[str]:
    found = []
    for name, _, core, _ in CREDENTIALS:
        for where, text in outputs.items():
            if any(form in text for form in forms(core)):
                found.append(f"{name} ({core[:12]}...) in {where}")
    return found


def plan_shows(output: str, value: str) -> bool:
    return any(form in output for form in forms(json.dumps(value)))


@pytest.fixture
def ws():
    workspace = LocalWorkspace(seed=seed(), update_seconds=0.0, token=TOKEN).start()
    yield workspace
    workspace.stop()


def test_no_credential_leaks_and_few_harmless_values_are_hidden(ws, tmp_path, capsys):
    outputs: dict[str, str] = {}
    hidden: dict[str, set[str]] = {name: set() for name, _, _ in HARMLESS}
    path = write(tmp_path, corpus_documents())

    # plan: text, markdown, JSON on stdout, and the saved JSON plan
    for fmt in ("text", "markdown", "json"):
        result = run(ws, "plan", path, "--format", fmt)
        assert result.code == 0, result.err
        outputs[f"plan --format {fmt}"] = result.out + result.err
        for name, value, _ in HARMLESS:
            if value != "false" and not plan_shows(result.out, value):
                hidden[name].add(f"plan {fmt}")
    saved = tmp_path / "plan.json"
    assert run(ws, "plan", path, "--out", str(saved)).code == 0
    outputs["plan.json"] = saved.read_text(encoding="utf-8")
    before = {c["path"]: c["before"] for change in json.loads(outputs["plan.json"])["changes"]
              if change["address"] == f"serving_endpoint.{NAME}" for c in change["diff"]}
    for name, value, _ in HARMLESS:
        if value != "false" and before.get(f"served_entities[champion].environment_vars[{name}]") != value:
            hidden[name].add("plan.json")
    credentials_shown = [name for name, _, _, _ in CREDENTIALS
                         if before.get(f"served_entities[champion].environment_vars[{name}]") != HIDDEN]
    assert credentials_shown == []  # each one is there, as (plain value hidden)

    # export: files and messages
    out = tmp_path / "exported"
    result = run(ws, "export", "--endpoint", NAME, "--out", str(out))
    assert result.code == 0, result.err
    outputs["export output"] = result.out + result.err
    exported = (out / "endpoints" / f"{NAME}.yaml").read_text(encoding="utf-8")
    outputs["exported manifest"] = exported
    env = yaml.safe_load(exported)["spec"]["served_entities"][0]["environment_vars"]
    for name, value, _ in HARMLESS:
        if env.get(name) != value:
            hidden[name].add("export (a TODO secret reference)")
    assert all(env[name].startswith("{{secrets/") for name, _, _, _ in CREDENTIALS)

    # error paths: validate a manifest with every value pasted in plain; variables in invalid fields
    pasted = corpus_documents()
    pasted[-1]["spec"]["served_entities"][0]["environment_vars"] = {  # `$${` is how a manifest writes `${`
        name: value.replace("${", "$${") for name, value in corpus_env().items()}
    result = run(ws, "validate", write(tmp_path, pasted, "pasted.yaml"))
    outputs["validate pasted values"] = result.out + result.err
    assert result.code == 1 and result.err.count("looks like a credential") == len(CREDENTIALS), result.err
    for name, _, _ in HARMLESS:
        if f"'{name}' looks like a credential" in result.err:
            hidden[name].add("validate")
    from_vars = corpus_documents()
    from_vars[-1]["spec"]["served_entities"] = [
        {"name": f"e{i}", "entity_name": "main.agents.support_agent", "entity_version": "3",
         "workload_size": "Small", "scale_to_zero_enabled": f"${{var.c{i}}}",  # a boolean field: a type error
         "environment_vars": {"NOTE": f"${{var.c{i}}}"}}
        for i in range(len(CREDENTIALS))]
    variables = {f"RECONCILER_VAR_c{i}": value for i, (_, value, _, _) in enumerate(CREDENTIALS)}
    result = run(ws, "validate", write(tmp_path, from_vars, "vars.yaml"), env=variables)
    outputs["validate with variables"] = result.out + result.err
    assert result.code == 1 and "the value of a variable, not shown" in result.err
    result = run(ws, "plan", write(tmp_path, from_vars, "vars.yaml"), "--var", f"c0={CREDENTIALS[0][1]}")
    outputs["plan with --var"] = result.out + result.err

    # apply, which prints the plan and its progress, and removes the values
    result = run(ws, "apply", path, "--auto-approve")
    assert result.code == 0, result.out + result.err
    outputs["apply"] = result.out + result.err

    leaks = leaked(outputs)
    shown_hidden = {name: places for name, places in hidden.items() if places}
    share = len(shown_hidden) / len(HARMLESS)
    with capsys.disabled():
        print(f"\nredaction corpus: {len(CREDENTIALS)} credential shapes, {len(leaks)} leaked; "
              f"{len(HARMLESS)} harmless values, {len(shown_hidden)} hidden ({share:.1%}; at most 5%)"
              + "".join(f"\n  hidden: {name} in {', '.join(sorted(places))}" for name, places in shown_hidden.items()))
    assert leaks == []
    assert share <= 0.05, shown_hidden


def test_the_corpus_has_what_the_issue_asks_for():
    assert len(CREDENTIALS) >= 60 and len(HARMLESS) >= 30
    assert all(core in value for _, value, core, _ in CREDENTIALS)


def test_outputs_of_a_run_never_hold_the_token_even_when_the_server_quotes_it(tmp_path):
    """The 401 body that echoes the Authorization header, from a workspace that rejects the token."""
    from hostile import HostileServer, json_answer

    server = HostileServer().start()
    try:
        server.answer("GET", "/api/2.0/serving-endpoints/support-agent", json_answer(
            {"error_code": "UNAUTHENTICATED", "message": f"header was: Authorization: Bearer {server.token}; "
                                                         f"token {server.token} unknown"}, 401))
        result = run(server, "plan", write(Path(tmp_path), base_documents()))
    finally:
        server.stop()
    assert result.code == 1 and server.token[4:] not in result.out + result.err, result.err
