"""The Python API driven as a notebook drives it: load, plan, inspect, apply, plan again, against
the local workspace over real HTTP with the unmodified SDK, never through the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import jsonschema
import pytest
from harness import MODEL, ROOT, base_documents, endpoint, write, writes

import reconciler
from reconciler import api
from reconciler.errors import ReconcilerError
from reconciler.plan import Action

PLAN_SCHEMA = json.loads((ROOT / "schemas" / "plan.schema.json").read_text(encoding="utf-8"))
APPLY_SCHEMA = json.loads((ROOT / "schemas" / "apply.schema.json").read_text(encoding="utf-8"))
ENDPOINT = "serving_endpoint.support-agent"
REGISTERED = f"registered_model.{MODEL}"


def test_a_notebook_loads_plans_inspects_applies_and_plans_again(seeded_workspace, tmp_path, capsys):
    client = seeded_workspace.client()  # what a notebook has: a WorkspaceClient
    manifests = reconciler.load(write(tmp_path, base_documents()))
    plan = reconciler.api.plan(manifests, client=client)

    changed = {c.address: c for c in plan.changes if c.action is not Action.NOOP}
    assert {a: c.action for a, c in changed.items()} == {ENDPOINT: Action.CREATE, REGISTERED: Action.UPDATE}
    assert [op.name for op in changed[ENDPOINT].operations] == ["create_endpoint", "update_permissions"]
    assert [op.name for op in changed[REGISTERED].operations] == ["set_alias"]
    assert changed[REGISTERED].operations[0].after == [ENDPOINT]  # the alias moves once the endpoint serves
    assert plan.has_changes and plan.summary()["create"] == 1
    # The value in each format, as `reconciler plan --format` prints it.
    assert plan.render().endswith("Plan: 1 to create, 1 to update; 1 unchanged.\n")
    assert plan.render("markdown").startswith("### reconciler plan\n\n**Plan: 1 to create, 1 to update")
    assert json.loads(plan.render("json")) == json.loads(json.dumps(plan.to_json()))
    jsonschema.validate(plan.to_json(), PLAN_SCHEMA)
    with pytest.raises(ReconcilerError, match="expected one of text, markdown, json"):
        plan.render("yaml")

    result = api.apply(plan, manifests, client=client)
    assert result.ok and not result.failed
    assert {o.address: o.status for o in result.outcomes} == {ENDPOINT: "applied", REGISTERED: "applied"}
    assert result.identity == "local.user@example.com" and result.workspace_host == seeded_workspace.url
    record = result.to_json()
    jsonschema.validate(record, APPLY_SCHEMA)
    assert record["result"] == "complete" and record["manifests"]["digest"] == manifests.source.digest
    assert [o["outcome"] for o in record["objects"]] == ["applied", "applied"]
    assert client.serving_endpoints.get("support-agent").state.ready.value == "READY"

    again = api.plan(manifests, client=client)
    assert not again.has_changes
    assert again.render() == "No changes. The workspace matches the manifests.\n"
    assert capsys.readouterr() == ("", ""), "the API prints nothing unless asked"


def test_manifests_as_strings_with_variables_and_the_notebooks_own_auth(seeded_workspace, monkeypatch):
    """A notebook's default SDK config (here DATABRICKS_HOST/TOKEN) when no client is given; YAML
    given as text, with variables from a mapping (typed like --var)."""
    documents = base_documents()
    endpoint(documents)["spec"]["traffic_config"]["routes"][0]["traffic_percentage"] = "${var.pct}"
    endpoint(documents)["spec"]["traffic_config"]["routes"][1]["traffic_percentage"] = "${var.rest}"
    import yaml

    text = yaml.safe_dump_all(documents, sort_keys=False).replace("'${var.pct}'", "${var.pct}") \
        .replace("'${var.rest}'", "${var.rest}")
    for key in ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DATABRICKS_HOST", seeded_workspace.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", seeded_workspace.token)
    manifests = api.load(texts=text, variables={"pct": 70, "rest": 30})
    assert manifests.source.variables == ["pct", "rest"] and manifests.source.paths == []
    plan = api.plan(manifests)
    created = next(c for c in plan.changes if c.address == ENDPOINT)
    assert created.desired["traffic"] == {"champion": 70, "challenger": 30}

    with pytest.raises(ReconcilerError) as raised:
        api.load(texts={"agent.yaml": text.replace("entity_name:", "entity_nam:", 1)}, variables={"pct": 1, "rest": 99})
    assert str(raised.value.problems[0]).startswith("agent.yaml:")
    assert "unknown field 'entity_nam'" in str(raised.value)


def test_a_failing_apply_returns_its_outcomes_and_never_exits(seeded_workspace, tmp_path):
    """A token that may only read: each write fails, and apply returns that per object."""
    seeded_workspace.add_token("reader", read_only=True)
    reader = seeded_workspace.client(token="reader")
    manifests = api.load(write(tmp_path, base_documents()))
    plan = api.plan(manifests, client=reader)
    try:
        result = api.apply(plan, manifests, client=reader, lock=False)
    except SystemExit:  # pragma: no cover - the point of the test
        pytest.fail("apply called sys.exit")
    assert not result.ok
    by_address = {o.address: o for o in result.outcomes}
    assert by_address[ENDPOINT].status == "failed" and "permission denied" in by_address[ENDPOINT].detail.lower()
    assert result.to_json()["result"] == "failed"
    assert writes(seeded_workspace) == []


def test_a_plan_the_workspace_moved_away_from_is_refused_with_a_typed_error(seeded_workspace, tmp_path):
    """apply takes the lock, plans again and applies only the plan given: one that went stale
    raises ReconcilerError (no SystemExit), before any managed write."""
    client = seeded_workspace.client()
    manifests = api.load(write(tmp_path, base_documents()))
    plan = api.plan(manifests, client=client)
    client.registered_models.set_alias(MODEL, "challenger", 3)  # someone moves an alias meanwhile
    seeded_workspace.reset_requests()
    with pytest.raises(ReconcilerError, match="the saved plan is stale"):
        api.apply(plan, manifests, client=client)
    assert writes(seeded_workspace) == []
    # exact=False: apply what the manifests ask now, under the lock.
    result = api.apply(plan, manifests, client=client, exact=False)
    assert result.ok and any(o.address == ENDPOINT and o.status == "applied" for o in result.outcomes)


def test_importing_the_api_runs_no_cli(seeded_workspace, tmp_path):
    """A fresh interpreter, as a notebook is: the package's names lead to the API, not to cli.py."""
    path = write(tmp_path, base_documents())
    script = textwrap.dedent(f"""
        import sys
        import reconciler
        plan = reconciler.api.plan(reconciler.load({path!r}), client=None)
        print(plan.has_changes, "reconciler.cli" in sys.modules)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")}
    env.update(DATABRICKS_HOST=seeded_workspace.url, DATABRICKS_TOKEN=seeded_workspace.token)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "True False\n", "")


def test_the_readmes_notebook_example_runs_as_written(seeded_workspace, tmp_path, monkeypatch, capsys):
    """The README's "Python API" example, with its manifest path pointed at the example manifests
    and the notebook's auth given by the environment."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert '"/Workspace/Repos/me/agents/manifests"' in code
    code = code.replace('"/Workspace/Repos/me/agents/manifests"', repr(write(tmp_path, base_documents())))
    for key in ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DATABRICKS_HOST", seeded_workspace.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", seeded_workspace.token)
    exec(compile(code, "README.md", "exec"), {"__name__": "notebook"})  # its asserts: applied, then no changes
    printed = capsys.readouterr().out
    assert "serving_endpoint.support-agent create ['create_endpoint(champion=support_agent v3" in printed
    assert "'result': 'complete'" in printed


def test_the_digest_is_of_what_was_loaded_whether_a_file_or_a_string(tmp_path):
    """A plan's `source.digest` is of the bytes the loader read (manifests.digests), not of the file
    read again afterwards: the same manifests given as a file or as a string are one source, and a
    file edited after loading does not change what the loaded manifests claim to be."""
    path = write(tmp_path, base_documents())
    text = open(path, encoding="utf-8").read()
    from_file = api.load(path)
    assert from_file.source.digest == api.load(texts=text).source.digest
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("# edited after loading\n")
    assert from_file.source.digest != api.load(path).source.digest  # a new load sees the edit...
    assert from_file.manifests.digests[path] == hashlib.sha256(text.encode("utf-8")).hexdigest()  # ...the old one kept its bytes
