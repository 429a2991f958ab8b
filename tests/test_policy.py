"""Policies as code: the example policies on the examples, matching, compiling, and checks with live state.

Validate-level tests run the CLI in-process; `check_live` is tested on normalised live objects built
by normalize.py from API-shaped JSON (tests/integration/test_policy_plan.py runs it through `plan`
against the local workspace). The bad-document cases (unknown fields, wrong types, rules that do not
compile) are in tests/bad_manifests/ with the other kinds'.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.cli import main
from reconciler.errors import ReconcilerError
from reconciler.manifests.loader import Manifests, load_manifests
from reconciler.normalize import live_endpoint
from reconciler.policy import (
    DRIFT,
    UNMANAGED,
    LiveView,
    check_live,
    compile_policies,
    field_path,
    merged,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "manifests" / "support-agent.yaml"
POLICIES = REPO / "examples" / "policies"
Docs = list[dict[str, Any]]


def example() -> Docs:
    return [d for d in yaml.safe_load_all(EXAMPLE.read_text(encoding="utf-8")) if d]


def endpoint_spec(docs: Docs) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "ServingEndpoint")["spec"]


def production_ready(docs: Docs) -> Docs:
    """The example as production wants it: the only change is scale_to_zero_enabled: false."""
    docs = copy.deepcopy(docs)
    for entity in endpoint_spec(docs)["served_entities"]:
        entity["scale_to_zero_enabled"] = False
    return docs


def write(path: Path, docs: Docs) -> str:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    return str(path)


def validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", *args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err  # type: ignore[return-value]


@pytest.fixture(autouse=True)
def no_stack_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECONCILER_STACK", raising=False)


def policy(name: str, rules: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    return {"apiVersion": "reconciler/v1", "kind": "Policy", "metadata": {"name": name},
            "spec": {"match": {"kinds": ["ServingEndpoint"], **match}, "rules": rules}}


def endpoint(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "reconciler/v1", "kind": "ServingEndpoint", "metadata": {"name": name},
            "spec": {"served_entities": [{"name": "a", "entity_name": "main.agents.bot", "entity_version": 1,
                                          "workload_size": "Small", "scale_to_zero_enabled": False}],
                     **spec}}


# --- the example policies -------------------------------------------------------------------------------


def test_example_policies_pass_on_the_examples(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = validate(capsys, str(REPO / "manifests"), str(POLICIES))
    assert (code, err) == (0, "")
    assert out == "valid: 1 registered model(s), 1 serving endpoint(s), 4 policy(ies) in 5 file(s)\n"


def test_example_policies_pass_on_the_production_ready_example(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "prod.yaml", production_ready(example()))
    assert validate(capsys, path, str(POLICIES), "--stack", "prod")[:3:2] == (0, "")


def test_the_examples_as_they_are_break_production_scale_to_zero_only(capsys: pytest.CaptureFixture[str]) -> None:
    """The example endpoint scales to zero: fine for a demo, refused for the prod stack."""
    code, out, err = validate(capsys, str(EXAMPLE), str(POLICIES), "--stack", "prod")
    assert (code, out) == (1, "")
    line = next(n for n, text in enumerate(EXAMPLE.read_text().splitlines(), 1) if text == "    - name: champion")
    assert err.splitlines() == [
        f"{EXAMPLE}:{line}:5: policy 'production-serving' rule 'no-scale-to-zero': production endpoint support-agent "
        "may scale to zero (cold starts); set scale_to_zero_enabled: false on every served entity"]


def _drop_tracing(spec: dict[str, Any]) -> None:
    del spec["served_entities"][1]["environment_vars"]["ENABLE_MLFLOW_TRACING"]


def _tracing_false(spec: dict[str, Any]) -> None:
    spec["served_entities"][0]["environment_vars"]["ENABLE_MLFLOW_TRACING"] = "false"


def _inference_table_off(spec: dict[str, Any]) -> None:
    spec["ai_gateway"]["inference_table_config"]["enabled"] = False


def _no_ai_gateway(spec: dict[str, Any]) -> None:
    del spec["ai_gateway"]


def _scale_to_zero(spec: dict[str, Any]) -> None:
    spec["served_entities"][1]["scale_to_zero_enabled"] = True


def _users_manage(spec: dict[str, Any]) -> None:
    spec["permissions"].append({"group_name": "users", "permission_level": "CAN_MANAGE"})


def _account_users_manage(spec: dict[str, Any]) -> None:
    spec["permissions"][0] = {"group_name": "account users", "permission_level": "CAN_MANAGE"}


def _no_resources(spec: dict[str, Any]) -> None:
    del spec["resources"]


VIOLATIONS = [
    # (id, policy file, edit, where the line must point, the message after "path:line:col: ")
    ("tracing-left-out", "tracing.yaml", _drop_tracing, "- name: champion",
     "policy 'tracing' rule 'tracing-on': a served entity does not trace its requests; add ENABLE_MLFLOW_TRACING: "
     "\"true\" to the environment_vars of every served entity"),
    ("tracing-false", "tracing.yaml", _tracing_false, "- name: champion",
     "policy 'tracing' rule 'tracing-on': a served entity does not trace its requests; add ENABLE_MLFLOW_TRACING: "
     "\"true\" to the environment_vars of every served entity"),
    ("inference-table-disabled", "production.yaml", _inference_table_off, "inference_table_config:",
     "policy 'production-serving' rule 'inference-table': production endpoint without an inference table; add "
     "ai_gateway.inference_table_config with catalog_name, schema_name, table_name_prefix and enabled: true"),
    ("no-ai-gateway", "production.yaml", _no_ai_gateway, "served_entities:",
     "policy 'production-serving' rule 'inference-table': production endpoint without an inference table; add "
     "ai_gateway.inference_table_config with catalog_name, schema_name, table_name_prefix and enabled: true"),
    ("scale-to-zero", "production.yaml", _scale_to_zero, "- name: champion",
     "policy 'production-serving' rule 'no-scale-to-zero': production endpoint support-agent may scale to zero "
     "(cold starts); set scale_to_zero_enabled: false on every served entity"),
    ("users-can-manage", "permissions.yaml", _users_manage, "- group_name: support-team",
     "policy 'no-broad-manage' rule 'no-can-manage-for-everyone': group users holds every user and must not have "
     "CAN_MANAGE; grant it CAN_QUERY, and CAN_MANAGE to the deploying service principal or the owning team"),
    ("account-users-can-manage", "permissions.yaml", _account_users_manage, "- group_name: account users",
     "policy 'no-broad-manage' rule 'no-can-manage-for-everyone': group account users holds every user and must "
     "not have CAN_MANAGE; grant it CAN_QUERY, and CAN_MANAGE to the deploying service principal or the owning "
     "team"),
    ("no-resources", "resources.yaml", _no_resources, "served_entities:",
     "policy 'declared-resources' rule 'declares-resources': production endpoint does not declare the resources "
     "its agent uses; add spec.resources listing what the agent was logged with (log_model resources=[...]), by "
     "type"),
]


@pytest.mark.parametrize(("policy_file", "edit", "at", "message"), [v[1:] for v in VIOLATIONS],
                         ids=[v[0] for v in VIOLATIONS])
def test_each_example_policy_fails_on_a_violating_manifest(policy_file: str, edit: Callable[[dict[str, Any]], None],
                                                            at: str, message: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    docs = production_ready(example())
    edit(endpoint_spec(docs))
    path = write(tmp_path / "agent.yaml", docs)
    code, out, err = validate(capsys, path, str(POLICIES / policy_file), "--stack", "prod")
    assert (code, out) == (1, "")
    [line] = err.splitlines()
    where, _, said = line.partition(": ")
    file, row, col = where.rsplit(":", 2)
    assert (file, said) == (path, message)
    text = Path(path).read_text(encoding="utf-8").splitlines()[int(row) - 1]
    assert text[int(col) - 1:].startswith(at), (text, at)
    # The same manifest passes every other example policy: each rule tests one thing.
    others = [str(p) for p in sorted(POLICIES.glob("*.yaml")) if p.name != policy_file]
    assert validate(capsys, path, *others, "--stack", "prod")[:3:2] == (0, "")


def test_production_policies_leave_other_stacks_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = example()
    _no_resources(endpoint_spec(docs))
    _no_ai_gateway(endpoint_spec(docs))
    path = write(tmp_path / "dev.yaml", docs)
    assert validate(capsys, path, str(POLICIES), "--stack", "dev")[0] == 0
    assert validate(capsys, path, str(POLICIES))[0] == 0
    code, _, err = validate(capsys, path, str(POLICIES), "--stack", "prod")
    assert code == 1
    assert [line.split(": ", 1)[1].split(":")[0] for line in err.splitlines()] == [
        "policy 'declared-resources' rule 'declares-resources'", "policy 'production-serving' rule 'inference-table'",
        "policy 'production-serving' rule 'no-scale-to-zero'"]


def test_the_stack_comes_from_the_environment_as_for_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_STACK", "prod")
    assert validate(capsys, str(EXAMPLE), str(POLICIES))[0] == 1


# --- matching ---------------------------------------------------------------------------------------------


MATCHING = [
    # (reason, match, stack, names of the documents that must be matched)
    ("kinds alone: every endpoint", {}, None, ["dev-bot", "prod-agent", "prod-bot"]),
    ("a name pattern", {"names": ["prod-*"]}, None, ["prod-agent", "prod-bot"]),
    ("several patterns: any may match; ? is one character", {"names": ["dev-b?t", "*-agent"]}, None,
     ["dev-bot", "prod-agent"]),
    ("patterns are case-sensitive, as endpoint names", {"names": ["PROD-*"]}, None, []),
    ("a stack list and the run's stack", {"stacks": ["prod", "staging"]}, "prod", ["dev-bot", "prod-agent", "prod-bot"]),
    ("another stack", {"stacks": ["prod"]}, "dev", []),
    ("no stack given: stack-bound policies stay out", {"stacks": ["prod"]}, None, []),
    ("tags: every one must be set to its value", {"tags": {"env": "prod", "team": "support"}}, None, ["prod-bot"]),
    ("one tag", {"tags": {"env": "prod"}}, None, ["prod-agent", "prod-bot"]),
    ("criteria combine: name and tag and stack", {"names": ["*-bot"], "tags": {"env": "prod"}, "stacks": ["prod"]},
     "prod", ["prod-bot"]),
    ("models by kind and name pattern", {"kinds": ["RegisteredModel"], "names": ["main.agents.*"]}, None,
     ["main.agents.bot"]),
    ("tags never match a model (models have none)", {"kinds": ["RegisteredModel", "ServingEndpoint"],
                                                     "tags": {"env": "prod"}}, None, ["prod-agent", "prod-bot"]),
]


@pytest.mark.parametrize(("reason", "match", "stack", "matched"), MATCHING, ids=[m[0] for m in MATCHING])
def test_matching(reason: str, match: dict[str, Any], stack: str | None, matched: list[str], tmp_path: Path) -> None:
    docs = [
        {"apiVersion": "reconciler/v1", "kind": "RegisteredModel", "metadata": {"name": "main.agents.bot"}},
        endpoint("prod-bot", tags={"env": "prod", "team": "support"}),
        endpoint("prod-agent", tags={"env": "prod"}),
        endpoint("dev-bot", tags={"env": "dev", "team": "support"}),
        policy("everything", [{"name": "matched", "expression": "false", "message": "matched; ok"}], **match),
    ]
    path = write(tmp_path / "all.yaml", docs)
    try:
        load_manifests([path], {}, stack=stack)
        found: list[str] = []
    except ReconcilerError as exc:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        found = sorted(lines[p.line - 1].split("name: ")[-1] for p in exc.problems)  # each points at metadata.name
        assert {p.message for p in exc.problems} == {"policy 'everything' rule 'matched': matched; ok"}
    assert found == matched, reason


# --- compiling and evaluating -----------------------------------------------------------------------------


def test_a_rule_with_a_syntax_error_is_a_validate_error_at_its_expression(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("apiVersion: reconciler/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n"
                    "  match: {kinds: [ServingEndpoint]}\n  rules:\n"
                    "    - name: broken\n      expression: object.spec.tags.size() >\n", encoding="utf-8")
    code, out, err = validate(capsys, str(EXAMPLE), str(path))
    assert (code, out) == (1, "")
    assert err == (f"{path}:8:19: policy 'p' rule 'broken': expression does not compile: the expression ends too "
                   "early at line 1, column 25 of the expression (near 'pec.tags.size() >'); fix the CEL syntax\n")
    assert path.read_text().splitlines()[7][18:].startswith("object.spec.tags")


@pytest.mark.parametrize(("rule", "message"), [
    ({"expression": "object.spec.tags.team == 'x'"},
     "policy 'p' rule 'r': cannot be evaluated here: no such member in mapping: 'tags'; guard fields a document may "
     "leave out with has(), e.g. has(object.spec.tags)"),
    ({"expression": "size(object.spec.served_entities)"},
     "policy 'p' rule 'r': returned int, not true or false; make the expression a condition"),
    ({"expression": "false", "message_expression": "object.spec.nothing", "message": "the fallback; fix it"},
     "policy 'p' rule 'r': the fallback; fix it"),
    ({"expression": "false", "message_expression": "'endpoint ' + object.metadata.name + ' in ' + stack"},
     "policy 'p' rule 'r': endpoint bot in prod"),
    ({"expression": "object.spec.served_entities.size() > 1"},
     "policy 'p' rule 'r': fails object.spec.served_entities.size() > 1"),
], ids=["evaluation-error", "not-a-condition", "message-expression-fails", "message-expression", "default-message"])
def test_what_a_failing_rule_says(rule: dict[str, Any], message: str, tmp_path: Path) -> None:
    path = write(tmp_path / "m.yaml", [endpoint("bot"), policy("p", [{"name": "r", **rule}])])
    with pytest.raises(ReconcilerError) as raised:
        load_manifests([path], {}, stack="prod")
    assert [p.message for p in raised.value.problems] == [message]


def test_field_path_places_the_violation_and_falls_back_to_the_nearest_parent(tmp_path: Path) -> None:
    rules = [{"name": "at-tags", "expression": "false", "message": "m; f", "field_path": "spec.tags.team"},
             {"name": "at-entity", "expression": "false", "message": "m; f", "field_path": "spec.served_entities[0].name"},
             {"name": "missing", "expression": "false", "message": "m; f", "field_path": "spec.ai_gateway.enabled"}]
    path = write(tmp_path / "m.yaml", [endpoint("bot", tags={"team": "x"}), policy("p", rules)])
    with pytest.raises(ReconcilerError) as raised:
        load_manifests([path], {})
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    where = {p.message.split("'")[3]: lines[p.line - 1][p.col - 1:] for p in raised.value.problems}
    assert where == {"at-tags": "x", "at-entity": "a", "missing": "served_entities:"}
    assert field_path("spec.served_entities[0].name") == ("spec", "served_entities", 0, "name")


def test_compile_problems_name_the_rule_and_its_place(tmp_path: Path) -> None:
    rules = [{"name": "bad-path", "expression": "true", "field_path": "spec..tags"},
             {"name": "unknown", "expression": "served.all(e, e != '') && stak == 'prod'"},
             {"name": "fine", "expression": "[1].exists(x, x == 1) && type(stack) == string || stack == null"}]
    path = write(tmp_path / "p.yaml", [policy("p", rules)])
    with pytest.raises(ReconcilerError) as raised:
        load_manifests([path], {})
    assert [str(p) for p in raised.value.problems] == [
        f"{path}:12:17: field_path 'spec..tags' is not a field path; write one such as spec.ai_gateway or "
        "spec.served_entities[0]",
        f"{path}:14:17: policy 'p' rule 'unknown': expression uses unknown variable 'stak' at line 1, column 27 of the "
        "expression; did you mean 'stack'?"]


def test_a_warning_rule_is_printed_and_validate_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rule = {"name": "team", "expression": "has(object.spec.tags) && 'team' in object.spec.tags",
            "message": "no team tag; add tags.team", "severity": "warning"}
    path = write(tmp_path / "m.yaml", [endpoint("bot"), policy("p", [rule])])
    code, out, err = validate(capsys, path)
    assert (code, out) == (0, "valid: 0 registered model(s), 1 serving endpoint(s), 1 policy(ies) in 1 file(s)\n")
    assert err == f"{path}:4:9: warning: policy 'p' rule 'team': no team tag; add tags.team\n"


def test_rules_never_see_a_plain_credential(tmp_path: Path) -> None:
    """A manifest with a plain credential is refused anyway; the policy's message must not print it either."""
    doc = endpoint("bot")
    doc["spec"]["served_entities"][0]["environment_vars"] = {"OPENAI_API_KEY": "sk-abcdefghijklmnopqrstuvwx"}
    rule = {"name": "leak", "expression": "false",
            "message_expression": "'key: ' + object.spec.served_entities[0].environment_vars.OPENAI_API_KEY"}
    path = write(tmp_path / "m.yaml", [doc, policy("p", [rule])])
    with pytest.raises(ReconcilerError) as raised:
        load_manifests([path], {})
    text = "\n".join(str(p) for p in raised.value.problems)
    assert "policy 'p' rule 'leak': key: (plain value hidden)" in text
    assert "sk-abc" not in text


def test_without_policies_the_cel_engine_is_never_imported() -> None:
    snippet = (
        "import sys\n"
        "from reconciler.cli import main\n"
        "for args in (['--help'], ['validate', 'manifests'], ['validate', 'manifests', 'examples/policies']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
        "    print(args[-1], 'celpy' in sys.modules, 'lark' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stdout.splitlines() if line.endswith(("True", "False"))] == [
        "--help False False", "manifests False False", "examples/policies True True"]


# --- with live state (what plan adds) ---------------------------------------------------------------------


def api_endpoint(*, scale_to_zero: bool, env: dict[str, str] | None = None) -> dict[str, Any]:
    """GET /serving-endpoints/{name} as the API answers it."""
    return {"name": "bot", "id": "e1", "creator": "someone@example.com",
            "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
            "config": {"served_entities": [{"name": "a", "entity_name": "main.agents.bot", "entity_version": "1",
                                            "workload_size": "Small", "workload_type": "CPU",
                                            "scale_to_zero_enabled": scale_to_zero,
                                            "environment_vars": env or {}}],
                       "traffic_config": {"routes": [{"served_entity_name": "a", "traffic_percentage": 100}]}},
            "tags": [{"key": "managed-by", "value": "reconciler"}]}


def live_check(tmp_path: Path, docs: Docs, views: dict[tuple[str, str], LiveView], *,
               stack: str | None = None) -> tuple[list[str], list[str]]:
    path = write(tmp_path / "m.yaml", docs)
    manifests: Manifests = load_manifests([path], {}, stack=stack)
    compiled, problems = compile_policies(manifests.policies.values())
    assert problems == []
    errors, warnings = check_live(compiled, manifests, views, stack=stack)
    return [p.message for p in errors], [p.message for p in warnings]


STRICT = {"name": "no-scale-to-zero", "expression": "object.spec.served_entities.all(e, has(e.scale_to_zero_enabled)"
          " && !e.scale_to_zero_enabled)", "message": "scales to zero; set scale_to_zero_enabled: false"}
# Tags a manifest leaves out entirely are not managed (normalize.py rule 6): the live ones stay.
LENIENT = {"name": "no-temporary-tag", "expression": "!has(object.spec.tags) || !('temporary' in object.spec.tags)",
           "message": "is tagged temporary; remove the tag"}


def test_drift_the_plan_corrects_is_a_warning(tmp_path: Path) -> None:
    doc = endpoint("bot")
    doc["spec"]["served_entities"][0]["scale_to_zero_enabled"] = False
    views = {("ServingEndpoint", "bot"): LiveView(live_endpoint(api_endpoint(scale_to_zero=True)))}
    assert live_check(tmp_path, [doc, policy("p", [STRICT])], views) == (
        [], [f"policy 'p' rule 'no-scale-to-zero': scales to zero; set scale_to_zero_enabled: false ({DRIFT})"])


def test_a_live_value_the_manifest_leaves_unmanaged_fails_the_plan(tmp_path: Path) -> None:
    """Validate cannot see it (the manifest leaves `tags` out, so they are not managed); after apply
    the live tag would still be there. (Served entity fields can no longer be unmanaged: a field
    left out of one means the API's default, normalize.py rule 3.)"""
    api = api_endpoint(scale_to_zero=False)
    api["tags"].append({"key": "temporary", "value": "yes"})
    views = {("ServingEndpoint", "bot"): LiveView(live_endpoint(api))}
    docs = [endpoint("bot"), policy("p", [LENIENT])]
    assert live_check(tmp_path, docs, views) == (
        [f"policy 'p' rule 'no-temporary-tag': is tagged temporary; remove the tag ({UNMANAGED})"], [])
    complying = {("ServingEndpoint", "bot"): LiveView(live_endpoint(api_endpoint(scale_to_zero=False)))}
    assert live_check(tmp_path, docs, complying) == ([], [])


def test_an_object_that_does_not_exist_yet_is_checked_as_written(tmp_path: Path) -> None:
    views = {("ServingEndpoint", "bot"): LiveView(None)}
    assert live_check(tmp_path, [endpoint("bot"), policy("p", [LENIENT])], views) == ([], [])
    rule = {"name": "exists", "expression": "live != null", "message": "not created yet; fine", "severity": "warning"}
    assert live_check(tmp_path, [endpoint("bot"), policy("p", [rule])], views) == (
        [], ["policy 'p' rule 'exists': not created yet; fine"])


def test_resources_logged_but_not_declared(tmp_path: Path) -> None:
    served = {"a": {"entity_name": "main.agents.bot", "entity_version": "1",
                    "logged_resources": {"vector_search_index": ["main.agents.docs_index"],
                                         "serving_endpoint": ["databricks-meta-llama-3-3-70b-instruct"]}}}
    policy_docs = yaml.safe_load((POLICIES / "resources.yaml").read_text(encoding="utf-8"))
    declared = endpoint("bot", resources={"vector_search_index": ["main.agents.docs_index"]})
    views = {("ServingEndpoint", "bot"): LiveView(None, served)}
    errors, warnings = live_check(tmp_path, [declared, policy_docs], views, stack="prod")
    assert errors == ["policy 'declared-resources' rule 'logged-resources-declared': a served model version was logged "
                      "with Databricks resources that spec.resources does not declare; list there every resource its "
                      "MLmodel names (the resources or auth_policy it was logged with)"]
    declared["spec"]["resources"]["serving_endpoint"] = ["databricks-meta-llama-3-3-70b-instruct"]
    assert live_check(tmp_path, [declared, policy_docs], views, stack="prod") == ([], [])


def test_a_grant_added_live_is_drift(tmp_path: Path) -> None:
    policy_doc = yaml.safe_load((POLICIES / "permissions.yaml").read_text(encoding="utf-8"))
    doc = endpoint("bot", permissions=[{"group_name": "support", "permission_level": "CAN_QUERY"}])
    acl = {"access_control_list": [
        {"group_name": "support", "all_permissions": [{"permission_level": "CAN_QUERY", "inherited": False}]},
        {"group_name": "users", "all_permissions": [{"permission_level": "CAN_MANAGE", "inherited": False}]}]}
    views = {("ServingEndpoint", "bot"): LiveView(live_endpoint(api_endpoint(scale_to_zero=False), acl))}
    assert live_check(tmp_path, [doc, policy_doc], views) == ([], [
        "policy 'no-broad-manage' rule 'no-can-manage-for-everyone': group users holds every user and must not have "
        "CAN_MANAGE; grant it CAN_QUERY, and CAN_MANAGE to the deploying service principal or the owning team "
        f"({DRIFT})"])


def test_live_plain_credentials_are_hidden_from_rules(tmp_path: Path) -> None:
    rule = {"name": "leak", "expression": "false", "severity": "warning",
            "message_expression": "'live key: ' + live.spec.served_entities[0].environment_vars.OPENAI_API_KEY"}
    api = api_endpoint(scale_to_zero=False, env={"OPENAI_API_KEY": "sk-abcdefghijklmnopqrstuvwx"})
    views = {("ServingEndpoint", "bot"): LiveView(live_endpoint(api))}
    assert live_check(tmp_path, [endpoint("bot"), policy("p", [rule])], views) == (
        [], ["policy 'p' rule 'leak': live key: (plain value hidden)"])


MERGES = [
    ("a field left out takes the other side's value", {"a": 1}, {"a": 2, "b": 3}, {"a": 1, "b": 3}),
    ("nested records merge", {"g": {"x": 1}}, {"g": {"x": 2, "y": 3}}, {"g": {"x": 1, "y": 3}}),
    ("maps given are complete (tags, environment_vars, aliases)", {"tags": {"a": "1"}}, {"tags": {"b": "2"}},
     {"tags": {"a": "1"}}),
    ("served entities pair by name", {"e": [{"name": "a"}, {"name": "b", "w": 1}]},
     {"e": [{"name": "b", "w": 2, "z": 3}, {"name": "c"}]}, {"e": [{"name": "a"}, {"name": "b", "w": 1, "z": 3}]}),
    ("other lists are whole values", {"p": [{"x": 1}]}, {"p": [{"x": 2, "y": 1}]}, {"p": [{"x": 1}]}),
    ("a served entity is complete: the fields it leaves out are not taken, except those the format does not "
     "know", {"e": [{"name": "a", "alias": "champion"}]},
     {"e": [{"name": "a", "entity_version": "3", "workload_size": "Small", "newer_field": 1}]},
     {"e": [{"name": "a", "alias": "champion", "newer_field": 1}]}),
]


@pytest.mark.parametrize(("reason", "primary", "secondary", "expected"), MERGES, ids=[m[0] for m in MERGES])
def test_merged(reason: str, primary: Any, secondary: Any, expected: Any) -> None:
    assert merged(primary, secondary) == expected, reason


def test_the_readme_policy_is_valid_and_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("```yaml\napiVersion: reconciler/v1\nkind: Policy") + len("```yaml\n")
    text = readme[start:readme.index("```", start)]
    (tmp_path / "readme.yaml").write_text(text, encoding="utf-8")
    assert validate(capsys, str(EXAMPLE), str(tmp_path / "readme.yaml"), "--stack", "prod")[0] == 0  # no match
    matching = text.replace('["*-agent"]', '["support-*"]').replace("{tier: critical}", "{team: support}")
    (tmp_path / "readme.yaml").write_text(matching, encoding="utf-8")
    code, _, err = validate(capsys, str(EXAMPLE), str(tmp_path / "readme.yaml"), "--stack", "prod")
    assert (code, err.count("rule 'no-scale-to-zero'")) == (1, 1)
