"""`${var.NAME}` variables: where values come from, their precedence, their types, and bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.errors import ReconcilerError
from reconciler.manifests.loader import load_manifests
from reconciler.manifests.variables import collect_variables

MODEL = """\
apiVersion: reconciler/v1
kind: RegisteredModel
metadata:
  name: ${var.catalog}.agents.support_agent
spec:
  comment: {comment}
"""

ENDPOINT = """\
apiVersion: reconciler/v1
kind: ServingEndpoint
metadata:
  name: support-agent-${var.env}
spec:
  served_entities:
    - name: current
      entity_name: main.agents.support_agent
      entity_version: ${var.version}
      workload_size: Small
      scale_to_zero_enabled: ${var.scale_to_zero}
      environment_vars:
        OPENAI_API_KEY: ${var.openai_key}
        TIMEOUT_SECONDS: "${var.timeout}"
  traffic_config:
    routes:
      - served_entity_name: current
        traffic_percentage: ${var.pct}
"""

ENDPOINT_VARS = ["env=prod", "version=3", "scale_to_zero=true", "openai_key={{secrets/support/openai}}",
                 "timeout=30", "pct=100"]


@pytest.fixture(autouse=True)
def no_reconciler_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("RECONCILER_"):
            monkeypatch.delenv(key)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def model_comment(tmp_path: Path, comment: str, variables: dict[str, str]) -> object:
    path = write(tmp_path, "model.yaml", MODEL.replace("{comment}", comment))
    manifests = load_manifests([path], {"catalog": "main", **variables})
    return manifests.models["main.agents.support_agent"].manifest.spec.comment


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err  # type: ignore[return-value]


# --- where values come from -------------------------------------------------------------------------


@pytest.mark.parametrize(("environ", "files", "assignments", "expected", "reason"), [
    ({"RECONCILER_VAR_catalog": "env"}, [], [], "env", "the environment alone"),
    ({"RECONCILER_VAR_catalog": "env"}, ["catalog: file"], [], "file", "a --var-file beats the environment"),
    ({"RECONCILER_VAR_catalog": "env"}, ["catalog: file"], ["catalog=cli"], "cli", "--var beats both"),
    ({}, ["catalog: first", "catalog: second"], [], "second", "a later --var-file beats an earlier one"),
    ({}, [], ["catalog=one", "catalog=two"], "two", "a later --var beats an earlier one"),
    ({}, ["other: x"], [], None, "a file without the name leaves it undefined"),
    ({"RECONCILER_VAR_catalog": "env", "RECONCILER_VARcatalog": "no", "catalog": "no"}, [], [], "env",
     "only the exact RECONCILER_VAR_ prefix counts"),
])
def test_precedence(tmp_path: Path, environ: dict[str, str], files: list[str], assignments: list[str],
                    expected: str | None, reason: str) -> None:
    paths = [write(tmp_path, f"vars{i}.yaml", text) for i, text in enumerate(files)]
    variables = collect_variables(assignments, paths, environ=environ)
    assert variables.get("catalog") == expected, reason


def test_var_value_may_contain_equals_signs_and_be_empty() -> None:
    assert collect_variables(["url=https://x.example/?a=b", "empty="], [], environ={}) == {
        "url": "https://x.example/?a=b", "empty": ""}


def test_cli_passes_var_var_file_and_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = write(tmp_path, "endpoint.yaml", ENDPOINT)
    var_file = write(tmp_path, "prod.yaml", "version: 3\nscale_to_zero: true\ntimeout: 30\npct: 100\n"
                                            "openai_key: '{{secrets/support/openai}}'\n")
    monkeypatch.setenv("RECONCILER_VAR_env", "prod")
    code, out, err = run(["validate", manifest, "--var-file", var_file], capsys)
    assert (code, err) == (0, "")
    assert out == "valid: 0 registered model(s), 1 serving endpoint(s) in 1 file(s)\n"


# --- types ------------------------------------------------------------------------------------------


def test_unquoted_placeholders_take_the_type_of_their_value(tmp_path: Path) -> None:
    path = write(tmp_path, "endpoint.yaml", ENDPOINT)
    variables = dict(a.split("=", 1) for a in ENDPOINT_VARS)
    endpoint = load_manifests([path], variables).endpoints["support-agent-prod"].manifest
    entity = endpoint.spec.served_entities[0]
    assert endpoint.spec.traffic_config.routes[0].traffic_percentage == 100  # int, as if written there
    assert entity.scale_to_zero_enabled is True  # bool
    assert entity.entity_version == "3"  # an int, which entity_version accepts as its text
    assert entity.environment_vars == {"OPENAI_API_KEY": "{{secrets/support/openai}}",
                                       "TIMEOUT_SECONDS": "30"}  # quoted: stays a string


def test_values_from_a_var_file_keep_their_yaml_type(tmp_path: Path) -> None:
    path = write(tmp_path, "endpoint.yaml", ENDPOINT)
    var_file = write(tmp_path, "vars.yaml", "env: prod\nversion: 3\nscale_to_zero: false\ntimeout: 30\n"
                                            "pct: 100\nopenai_key: '{{secrets/support/openai}}'\n")
    endpoint = load_manifests([path], collect_variables([], [var_file], environ={})).endpoints["support-agent-prod"]
    assert endpoint.manifest.spec.served_entities[0].scale_to_zero_enabled is False
    assert endpoint.manifest.spec.traffic_config.routes[0].traffic_percentage == 100


@pytest.mark.parametrize(("comment", "variables", "expected", "reason"), [
    ("${var.text}", {"text": "Support agent"}, "Support agent", "a plain string"),
    ('"${var.text}"', {"text": "Support agent"}, "Support agent", "double-quoted"),
    ("'${var.text}'", {"text": "Support agent"}, "Support agent", "single-quoted"),
    ("Agent for ${var.team} (${var.env})", {"team": "cx", "env": "prod"}, "Agent for cx (prod)",
     "several placeholders inside text"),
    ("v${var.n}", {"n": "3"}, "v3", "text around a number stays text"),
    ("'${var.n}'", {"n": "3"}, "3", "a quoted number stays text"),
    ("costs $${var.x} and $$5 and $HOME", {}, "costs ${var.x} and $$5 and $HOME",
     "$${ is a literal ${; other dollars are left alone"),
    ("${var.a}", {"a": "${var.b}", "b": "no"}, "${var.b}", "a value is inserted as is, never expanded again"),
    ("${var.empty}", {"empty": ""}, "", "an empty value is an empty string, not null"),
    ("${var.hash}", {"hash": "a # not a comment"}, "a # not a comment", "a value is never re-parsed as YAML"),
])
def test_substitution(tmp_path: Path, comment: str, variables: dict[str, str], expected: str, reason: str) -> None:
    assert model_comment(tmp_path, comment, variables) == expected, reason


# --- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("comment", "variables", "message", "reason"), [
    ("${var.owner}", {}, "variable 'owner' is not defined; pass --var owner=VALUE, add it to a --var-file, or set "
                         "RECONCILER_VAR_owner", "undefined"),
    ("${owner}", {}, "'${owner}' is not a variable reference; write ${var.NAME}, or $${ for a literal '${'",
     "no var. prefix"),
    ("${var.owner", {"owner": "x"}, "'${var.owner' opens '${' but never closes it; write ${var.NAME}, or $${ for a "
                                    "literal '${'", "never closed"),
    ("${var.1x}", {}, "'${var.1x}' is not a variable reference; write ${var.NAME}, or $${ for a literal '${'",
     "a name cannot start with a digit"),
])
def test_bad_placeholders(tmp_path: Path, comment: str, variables: dict[str, str], message: str, reason: str) -> None:
    path = write(tmp_path, "model.yaml", MODEL.replace("{comment}", comment))
    with pytest.raises(ReconcilerError) as raised:
        load_manifests([path], {"catalog": "main", **variables})
    assert [str(p) for p in raised.value.problems] == [f"{path}:6:12: {message}"], reason


def test_a_typed_value_of_the_wrong_type_is_reported_at_the_placeholder(tmp_path: Path) -> None:
    path = write(tmp_path, "endpoint.yaml", ENDPOINT)
    variables = dict(a.split("=", 1) for a in ENDPOINT_VARS) | {"pct": "ninety"}
    with pytest.raises(ReconcilerError) as raised:
        load_manifests([path], variables)
    assert [str(p) for p in raised.value.problems] == [
        f"{path}:18:29: spec.traffic_config.routes[0].traffic_percentage: should be a valid integer (the value of a "
            "variable, not shown: it may be a credential); "
        "use a whole number without quotes"]


FLOW_ROUTES = """\
  traffic_config:
    routes:
      - {served_entity_name: current, traffic_percentage: ${var.pct}}
      - {served_entity_name: spare, traffic_percentage: ${var.rest}}
"""


def flow_style(text: str) -> str:
    """ENDPOINT with its routes in flow style (the README's own style), a second entity to route to."""
    head = text.split("  traffic_config:")[0]
    spare = head[head.index("    - name: current"):].replace("name: current", "name: spare")
    return head + spare + FLOW_ROUTES


def test_placeholders_work_inside_flow_mappings(tmp_path: Path) -> None:
    path = write(tmp_path, "endpoint.yaml", flow_style(ENDPOINT))
    variables = dict(a.split("=", 1) for a in ENDPOINT_VARS) | {"pct": "90", "rest": "10"}
    routes = load_manifests([path], variables).endpoints["support-agent-prod"].manifest.spec.traffic_config.routes
    assert [(r.served_entity_name, r.traffic_percentage) for r in routes] == [("current", 90), ("spare", 10)]


def test_a_problem_inside_a_flow_mapping_keeps_its_line_and_column(tmp_path: Path) -> None:
    text = flow_style(ENDPOINT)
    path = write(tmp_path, "endpoint.yaml", text)
    variables = dict(a.split("=", 1) for a in ENDPOINT_VARS) | {"pct": "ninety"}
    with pytest.raises(ReconcilerError) as raised:
        load_manifests([path], variables)
    lines = text.splitlines()
    pct = next(i for i, line in enumerate(lines) if "${var.pct}" in line)
    rest = next(i for i, line in enumerate(lines) if "${var.rest}" in line)
    assert [str(p) for p in raised.value.problems] == [
        f"{path}:{pct + 1}:{lines[pct].index('${var.pct}') + 1}: spec.traffic_config.routes[0].traffic_percentage: "
        "should be a valid integer (the value of a variable, not shown: it may be a credential); use a whole number "
        "without quotes",
        f"{path}:{rest + 1}:{lines[rest].index('${var.rest}') + 1}: variable 'rest' is not defined; pass --var "
        "rest=VALUE, add it to a --var-file, or set RECONCILER_VAR_rest"]


def test_flow_style_keeps_literals_quotes_and_text_around_placeholders() -> None:
    from reconciler.manifests.yamlsource import read_documents

    problems: list = []
    text = "a: {b: $${x}, c: '${var.v}', d: [x${var.v}y, ${var.n}], e: \"{}\"}\n"
    [document] = read_documents("f.yaml", text.encode(), {"v": "V", "n": "3"}, problems)
    assert problems == []
    assert document.data == {"a": {"b": "${x}", "c": "V", "d": ["xVy", 3], "e": "{}"}}
    # A file that holds the private-use characters the flow-style fix borrows is read as written.
    [document] = read_documents("g.yaml", "f: \ue000${var.v}\ue001\n".encode(), {"v": "V"}, problems)
    assert problems == [] and document.data == {"f": "\ue000V\ue001"}


def test_a_credential_passed_as_a_variable_is_refused_and_never_printed(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "endpoint.yaml", ENDPOINT)
    args = ["validate", path] + [a for v in ENDPOINT_VARS if not v.startswith("openai_key=") for a in ("--var", v)]
    code, _, err = run(args + ["--var", "openai_key=sk-live-Zq81hJ3kXy"], capsys)
    assert code == 1
    assert "sk-live-Zq81hJ3kXy" not in err
    assert err.splitlines() == [f"{path}:13:25: environment variable 'OPENAI_API_KEY' looks like a credential but "
                                "holds a plain value; store it in a secret scope and write {{secrets/<scope>/<key>}}"]


@pytest.mark.parametrize(("text", "expected", "reason"), [
    ("catalog: prod\ncatalog: dev\n", ["2:1: duplicate key 'catalog' (first set at line 1); remove one of them"],
     "duplicate keys are errors, as in manifests"),
    ("tags: [a, b]\nowner:\n", ["1:7: variable 'tags' must be a plain value (text, number or true/false), not a "
                                "list, mapping or null",
                                "2:7: variable 'owner' must be a plain value (text, number or true/false), not a "
                                "list, mapping or null"], "lists and nulls are not values"),
    ("'my var': x\n", ["1:1: variable name 'my var' is invalid; use letters, digits, '_' and '-', starting with a "
                       "letter or '_'"], "names follow ${var.NAME}"),
    ("- catalog=prod\n", ["1:1: a variable file must be a mapping of NAME: value"], "a list"),
    ("catalog: prod\n---\nenv: dev\n", ["3:1: a variable file holds one mapping of NAME: value; remove the extra "
                                        "documents"], "several documents"),
    ("catalog: [prod\n", ["1:10: this '[' is never closed; add the matching ']'"], "YAML syntax"),
    ("catalog: !!python/name:os.system x\n", ["1:10: YAML tag '!!python/name:os.system' is not allowed; manifests "
                                              "use plain YAML values only: remove the tag"], "unsafe tags"),
    ("secret: !!binary c2VjcmV0\n", ["1:9: YAML tag '!!binary' is not allowed; manifests use plain YAML values "
                                     "only: remove the tag"], "binary values"),
])
def test_bad_var_files(tmp_path: Path, text: str, expected: list[str], reason: str) -> None:
    path = write(tmp_path, "vars.yaml", text)
    with pytest.raises(ReconcilerError) as raised:
        collect_variables([], [path], environ={})
    assert [str(p) for p in raised.value.problems] == [f"{path}:{line}" for line in expected], reason


@pytest.mark.parametrize(("text", "reason"), [("", "empty"), ("# only a comment\n", "comments only"),
                                              ("---\n", "an empty document")])
def test_an_empty_var_file_defines_nothing(tmp_path: Path, text: str, reason: str) -> None:
    assert collect_variables([], [write(tmp_path, "vars.yaml", text)], environ={}) == {}, reason


def test_var_file_values_are_not_substituted(tmp_path: Path) -> None:
    path = write(tmp_path, "vars.yaml", "a: ${var.b}\nprice: $$5\n")
    assert collect_variables([], [path], environ={}) == {"a": "${var.b}", "price": "$$5"}


def test_missing_var_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ReconcilerError) as raised:
        collect_variables([], [path], environ={})
    assert [str(p) for p in raised.value.problems] == [f"{path}:1:1: cannot read variable file: No such file or "
                                                       "directory"]


@pytest.mark.parametrize(("assignment", "expected", "reason"), [
    ("catalog", "--var 'catalog': expected NAME=VALUE, e.g. --var catalog=prod", "no ="),
    ("=prod", "--var: variable name '' is invalid; use letters, digits, '_' and '-', starting with a letter or '_'",
     "no name"),
    ("my key=sk-123", "--var: variable name 'my key' is invalid; use letters, digits, '_' and '-', starting with a "
                      "letter or '_'", "a bad name; the value is not echoed"),
])
def test_bad_var_assignments(assignment: str, expected: str, reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["validate", "--var", assignment], capsys)
    assert (code, err.splitlines()) == (1, [expected]), reason
    assert "sk-123" not in err
