"""The JSON Schema: generated from the model, kept current by `reconciler schema --check`, and
agreeing with the loader wherever JSON Schema can tell (tests/bad_manifests/expected.txt says where)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from test_validate import CASES, CORPUS, Case, clean_env

from reconciler.cli import main
from reconciler.schema import SCHEMA_FILE, schema_text

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "schemas" / SCHEMA_FILE
RECONCILER = Path(sys.executable).parent / "reconciler"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err  # type: ignore[return-value]


# --- staleness --------------------------------------------------------------------------------------


def test_committed_schema_is_current_through_the_console_script() -> None:
    proc = subprocess.run([str(RECONCILER), "schema", "--check"], cwd=REPO, capture_output=True, text=True,
                          env=clean_env(), timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "schemas/manifest.schema.json is up to date\n"
                                                           "schemas/plan.schema.json names what the code writes\n"
                                                           "schemas/apply.schema.json names what the code writes\n", "")
    assert COMMITTED.read_text(encoding="utf-8") == schema_text()


def test_schema_writes_then_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = str(tmp_path / "out")
    assert run(["schema", "--out", out_dir], capsys) == (0, f"wrote {out_dir}/{SCHEMA_FILE}\n", "")
    assert (tmp_path / "out" / SCHEMA_FILE).read_text(encoding="utf-8") == schema_text()
    assert not list((tmp_path / "out").glob("*.tmp")), "no temporary file left behind"
    assert run(["schema", "--out", out_dir, "--check"], capsys)[0] == 0


@pytest.mark.parametrize(("edit", "reason"), [
    (lambda text: text.replace('"entity_name"', '"entity"', 1), "a field renamed in the model"),
    (lambda text: text + "\n", "a trailing newline added by an editor"),
    (lambda text: json.dumps(json.loads(text)), "the same content, formatted differently"),
    (lambda text: "", "an empty file"),
])
def test_check_fails_when_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str], edit, reason: str) -> None:
    (tmp_path / SCHEMA_FILE).write_text(edit(schema_text()), encoding="utf-8")
    code, out, err = run(["schema", "--out", str(tmp_path), "--check"], capsys)
    assert code == 1, reason
    assert out == ""
    assert err == (f"{tmp_path}/{SCHEMA_FILE} is stale or missing; run `reconciler schema` (or `make schema`) and "
                   "commit the result\n")


@pytest.mark.parametrize("name", ["plan.schema.json", "apply.schema.json"])
def test_check_fails_when_an_output_schema_misses_a_member_the_code_writes(tmp_path: Path, name: str,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The plan and apply record schemas are written by hand: --check holds them to what the code writes."""
    (tmp_path / SCHEMA_FILE).write_text(schema_text(), encoding="utf-8")
    for each in ("plan.schema.json", "apply.schema.json"):
        (tmp_path / each).write_text((REPO / "schemas" / each).read_text(encoding="utf-8"), encoding="utf-8")
    assert run(["schema", "--out", str(tmp_path), "--check"], capsys)[0] == 0
    schema = json.loads((tmp_path / name).read_text(encoding="utf-8"))
    del schema["properties"]["targets"]
    schema["required"].remove("targets")
    (tmp_path / name).write_text(json.dumps(schema), encoding="utf-8")
    code, out, err = run(["schema", "--out", str(tmp_path), "--check"], capsys)
    assert code == 1 and out == ""
    assert err == f"{tmp_path}/{name}: top level: the code writes 'targets', which the schema does not name\n"


def test_check_fails_when_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["schema", "--out", str(tmp_path / "nowhere"), "--check"], capsys)
    assert code == 1
    assert "is stale or missing" in err
    assert not (tmp_path / "nowhere").exists(), "--check never writes"


# --- agreement with the loader ------------------------------------------------------------------------


def example_documents() -> list[tuple[str, int, object]]:
    found = []
    for path in sorted(glob.glob(str(REPO / "manifests" / "**" / "*.y*ml"), recursive=True) +
                       glob.glob(str(REPO / "examples" / "policies" / "*.y*ml"))):
        with open(path, "rb") as handle:
            for i, document in enumerate(yaml.safe_load_all(handle)):
                if document is not None:
                    found.append((os.path.relpath(path, REPO), i, document))
    return found


EXAMPLES = example_documents()


def test_there_are_examples() -> None:
    kinds = {doc["kind"] for _, _, doc in EXAMPLES}  # type: ignore[index]
    assert kinds == {"RegisteredModel", "ServingEndpoint", "Policy"}


@pytest.mark.parametrize(("path", "index", "document"), EXAMPLES, ids=[f"{p}#{i}" for p, i, _ in EXAMPLES])
def test_schema_accepts_the_examples(validator: jsonschema.Draft202012Validator, path: str, index: int,
                                     document: object) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []


def corpus_documents(case: Case) -> list[object]:
    path = CORPUS / case.name
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
    documents = []
    for file in files:
        with open(file, "rb") as handle:
            documents += [d for d in yaml.safe_load_all(handle) if d is not None]
    return documents


JUDGED = [c for c in CASES if c.schema != "skip"]


def test_schema_judges_enough_of_the_corpus() -> None:
    assert sum(c.schema == "reject" for c in CASES) >= 30


@pytest.mark.parametrize("case", JUDGED, ids=[c.name for c in JUDGED])
def test_schema_agrees_with_the_corpus(validator: jsonschema.Draft202012Validator, case: Case) -> None:
    """`reject`: JSON Schema catches the mistake too (unknown fields, types, enums, kinds, ranges).
    `accept`: only the loader's cross-checks can (names, traffic, aliases, duplicates, secrets)."""
    rejected = [d for d in corpus_documents(case) if any(True for _ in validator.iter_errors(d))]
    if case.schema == "reject":
        assert rejected, f"{case.name}: the schema should reject it ({case.reason})"
    else:
        assert not rejected, f"{case.name}: the schema rejects it; mark it 'reject' ({case.reason})"


def test_the_plan_schema_lists_every_kind_and_operation_of_the_registry():
    """The plan schema's enums follow `kinds.KINDS`: a new kind (or operation) that the schema does
    not list would make every saved plan that contains it invalid for CI's schema check."""
    from reconciler.kinds import KINDS

    change = json.loads((REPO / "schemas" / "plan.schema.json").read_text())["$defs"]["change"]["properties"]
    assert sorted(change["kind"]["enum"]) == sorted(kind.key for kind in KINDS)
    assert change["address"]["pattern"] == "^(" + "|".join(sorted(kind.key for kind in KINDS)) + ")\\..+$"
    operations = change["operations"]["items"]["properties"]["name"]["enum"]
    assert sorted(operations) == sorted(op for kind in KINDS for op in kind.module.OPERATIONS)
