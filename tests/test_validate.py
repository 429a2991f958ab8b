"""`reconciler validate`: the good examples pass, and every bad manifest gets exactly its expected lines.

The bad corpus lives in tests/bad_manifests/, one case per file (or folder), with the exact stderr of
`reconciler validate <case>` (run from that folder) in tests/bad_manifests/expected.txt. Each case
runs in-process through `reconciler.cli.main`; the whole corpus also runs once through the real
console script in a subprocess, where every file's problems must come out in one run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.errors import ReconcilerError
from reconciler.manifests.loader import load_manifests

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "bad_manifests"
EXPECTED = CORPUS / "expected.txt"
RECONCILER = Path(sys.executable).parent / "reconciler"
LINE = re.compile(r"^(?P<path>[^:\n]+):(?P<line>\d+):(?P<col>\d+): (?P<message>.+)$")


@dataclass
class Case:
    name: str
    reason: str = ""
    schema: str = ""
    never: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def load_cases() -> list[Case]:
    """Parses expected.txt (its header says the format)."""
    cases: list[Case] = []
    for raw in EXPECTED.read_text(encoding="utf-8").splitlines():
        if raw.startswith("== "):
            cases.append(Case(raw[3:].strip()))
        elif not raw.strip() or raw.startswith("#"):
            continue
        elif raw.startswith("reason: "):
            cases[-1].reason = raw[len("reason: "):]
        elif raw.startswith("schema: "):
            cases[-1].schema = raw[len("schema: "):]
        elif raw.startswith("never: "):
            cases[-1].never.append(raw[len("never: "):])
        else:
            cases[-1].lines.append(raw)
    return cases


CASES = load_cases()


def clean_env() -> dict[str, str]:
    """The test process's environment without variables that would change what validate sees."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}


def run_in_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err  # type: ignore[return-value]


@pytest.fixture
def no_reconciler_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("RECONCILER_"):
            monkeypatch.delenv(key)


# --- the corpus itself ------------------------------------------------------------------------------


def test_corpus_is_big_enough_and_fully_described() -> None:
    on_disk = {p.name for p in CORPUS.iterdir() if p.name != "expected.txt" and not p.name.startswith(".")}
    described = [c.name for c in CASES]
    assert len(described) == len(set(described)), "a case is described twice"
    assert on_disk == set(described), "every file in tests/bad_manifests/ needs a block in expected.txt"
    assert len(CASES) >= 45
    for case in CASES:
        assert case.reason, f"{case.name}: give a reason"
        assert case.schema in ("reject", "accept", "skip"), f"{case.name}: schema must be reject/accept/skip"
        assert case.lines, f"{case.name}: a bad manifest must produce at least one problem"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_expected_lines_are_well_formed(case: Case) -> None:
    for line in case.lines:
        match = LINE.match(line)
        assert match, f"not path:line:col: message: {line!r}"
        assert match["path"] == case.name or match["path"].startswith(case.name + "/"), line
        # What is wrong, then how to fix it.
        assert "; " in match["message"], f"no fix in: {line!r}"
    assert case.lines == sorted(case.lines, key=lambda x: _sort_key(x)), "lines are printed in position order"


def _sort_key(line: str) -> tuple[str, int, int, str]:
    match = LINE.match(line)
    assert match
    return match["path"], int(match["line"]), int(match["col"]), match["message"]


# --- every case, in-process ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_manifest(case: Case, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                      no_reconciler_env: None) -> None:
    monkeypatch.chdir(CORPUS)
    code, out, err = run_in_process(["validate", case.name], capsys)
    assert code == 1, case.reason
    assert out == ""
    assert "Traceback" not in err and "internal error" not in err
    assert err.splitlines() == case.lines, case.reason
    for secret in case.never:
        assert secret not in err, f"{case.name}: printed {secret!r}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_loader_reports_the_same_problems(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API the other commands use (load_manifests) raises what the CLI prints, with positions."""
    monkeypatch.chdir(CORPUS)
    with pytest.raises(ReconcilerError) as raised:
        load_manifests([case.name], {})
    assert [str(p) for p in raised.value.problems] == case.lines
    assert all(p.path and p.line and p.col for p in raised.value.problems)


# --- the real console script, once for the whole corpus -----------------------------------------------


def test_whole_corpus_in_one_subprocess_run() -> None:
    """Every problem of every file in one run, exactly: the union of all cases, in position order."""
    proc = subprocess.run([str(RECONCILER), "validate", *[c.name for c in CASES]], cwd=CORPUS,
                          capture_output=True, text=True, env=clean_env(), timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    expected = sorted((line for c in CASES for line in c.lines), key=_sort_key)
    assert proc.stderr.splitlines() == expected
    for case in CASES:
        for secret in case.never:
            assert secret not in proc.stderr


@pytest.mark.parametrize("name", ["yaml-binary-file.yaml", "yaml-billion-laughs.yaml", "check-secret-plain-values.yaml",
                                  "check-duplicate-across-files"])
def test_console_script_per_case(name: str) -> None:
    case = next(c for c in CASES if c.name == name)
    proc = subprocess.run([str(RECONCILER), "validate", name], cwd=CORPUS, capture_output=True, text=True,
                          env=clean_env(), timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr.splitlines()) == (1, "", case.lines)


# --- hostile inputs generated at test time ------------------------------------------------------------


def test_huge_file_is_refused_without_parsing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch, no_reconciler_env: None) -> None:
    header = "apiVersion: reconciler/v1\nkind: RegisteredModel\nmetadata:\n  name: main.agents.huge\nspec:\n"
    (tmp_path / "huge.yaml").write_text(header + '  comment: "' + "x" * (4_600_000) + '"\n')
    monkeypatch.chdir(tmp_path)
    code, out, err = run_in_process(["validate", "huge.yaml"], capsys)
    assert code == 1
    assert err.splitlines() == ["huge.yaml:1:1: file is 4.4 MiB; manifest files over 4 MiB are refused (split it)"]


@pytest.mark.parametrize(("body", "expected"), [
    pytest.param("a: " + "[" * 1_500_000 + "]" * 1_500_000 + "\n",
                 "big.yaml:1:36: nesting deeper than 32 levels; manifests are never this deep: flatten it",
                 id="million-brackets"),
    pytest.param("a: [" + "x, " * 1_300_000 + "x]\n",
                 "big.yaml:1:149996: document holds more than 50000 values; a manifest is far smaller: split it "
                 "or remove the data",
                 id="flat-list-of-a-million"),
    pytest.param("".join(f"- k{i}: {i}\n" for i in range(60_000)),
                 "big.yaml:16667:3: document holds more than 50000 values; a manifest is far smaller: split it "
                 "or remove the data",
                 id="long-block-list"),
], )
def test_just_under_the_size_limit_stops_early(body: str, expected: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A file under 4 MiB can still hold a million values: composing stops at the limit (this used
    to build every node first: 40 s and 1.2 GB for the flat list)."""
    assert len(body) < 4 * 1024 * 1024
    (tmp_path / "big.yaml").write_text(body)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_in_process(["validate", "big.yaml"], capsys)
    assert (code, err.splitlines()) == (1, [expected])


def test_a_file_of_many_tiny_documents_stops_at_the_document_limit(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """400,000 documents of two problems each took 24 s and printed 800,000 lines."""
    (tmp_path / "tiny.yaml").write_text("a: 1\n---\n" * 400_000)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_in_process(["validate", "tiny.yaml"], capsys)
    lines = err.splitlines()
    assert code == 1
    assert lines[:2] == ["tiny.yaml:1:1: missing 'apiVersion'; add apiVersion: reconciler/v1",
                         "tiny.yaml:1:1: missing 'kind'; add kind: RegisteredModel or kind: ServingEndpoint "
                         "or kind: Policy"]
    assert len(lines) == 2 * 10_000 + 1
    assert lines[-1] == "tiny.yaml:20001:1: file holds more than 10000 documents; split it into several files"


def test_problems_in_every_file_and_document_in_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.yaml").write_text("kind: RegisteredModel\n---\n- x\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yml").write_text("a: [\n")
    (tmp_path / "sub" / ".hidden.yaml").write_text("a: [\n")  # hidden files are skipped
    (tmp_path / "notes.txt").write_text("a: [\n")  # and so are other suffixes
    monkeypatch.chdir(tmp_path)
    code, _, err = run_in_process(["validate", "."], capsys)
    assert code == 1
    assert err.splitlines() == [
        "./a.yaml:1:1: missing 'apiVersion'; add apiVersion: reconciler/v1",
        "./a.yaml:3:1: this document is a list, not a manifest; write a mapping with apiVersion, kind, metadata "
        "and spec (separate manifests with ---)",
        "./sub/b.yml:2:1: the file ends where a value is still expected; close every '[' and '{', or finish the value",
    ]


@pytest.mark.parametrize(("args", "expected"), [
    pytest.param(["validate", "nowhere"], ["nowhere:1:1: no such file or directory"], id="missing-path"),
    pytest.param(["validate", "empty-dir"], ["empty-dir:1:1: no manifest files (*.yaml, *.yml) under this directory"],
                 id="empty-directory"),
])
def test_bad_paths(args: list[str], expected: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty-dir").mkdir()
    monkeypatch.chdir(tmp_path)
    code, _, err = run_in_process(args, capsys)
    assert (code, err.splitlines()) == (1, expected)


# --- good input -------------------------------------------------------------------------------------


def test_examples_are_valid_through_the_console_script() -> None:
    proc = subprocess.run([str(RECONCILER), "validate"], cwd=REPO, capture_output=True, text=True,
                          env=clean_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout == "valid: 1 registered model(s), 1 serving endpoint(s) in 1 file(s)\n"


def test_examples_load_into_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    manifests = load_manifests(["manifests"], {})
    model = manifests.models["main.agents.support_agent"].manifest
    # A version by its number, and one by the logged agent it is registered from (kinds/model_version.py).
    assert model.spec.aliases == {"champion": 3, "challenger": "models:/m-6a1f2b3c4d5e4f60718293a4b5c6d7e8"}
    endpoint = manifests.endpoints["support-agent"]
    routes = {r.served_entity_name: r.traffic_percentage for r in endpoint.manifest.spec.traffic_config.routes}
    assert routes == {"champion": 90, "challenger": 10}
    # Positions survive for later stages (plan preflight errors point into the file too).
    pos = endpoint.source.position(("spec", "served_entities", 1, "alias"))
    line = (REPO / "manifests" / "support-agent.yaml").read_text().splitlines()[pos.line - 1]
    assert line[pos.col - 1:].startswith("challenger")


def test_valid_yaml_features_are_accepted(tmp_path: Path) -> None:
    """Anchors and aliases, flow style, a BOM, CRLF, comments, empty documents, explicit core tags."""
    text = ("\ufeff# leading comment\r\n---\r\n"
            "apiVersion: reconciler/v1\r\nkind: ServingEndpoint\r\nmetadata: {name: feature-bot}\r\nspec:\r\n"
            "  served_entities:\r\n"
            "    - name: a\r\n      entity_name: main.agents.feature_bot\r\n      entity_version: !!str 1\r\n"
            "      environment_vars: &env {MODE: fast, OPENAI_API_KEY: '{{secrets/s/k}}'}\r\n"
            "      workload_size: &size Small\r\n      scale_to_zero_enabled: !!bool true\r\n"
            "    - {name: b, entity_name: main.agents.feature_bot, entity_version: 2, environment_vars: *env,\r\n"
            "       workload_size: *size, scale_to_zero_enabled: false}\r\n"
            "  traffic_config: {routes: [{served_entity_name: a, traffic_percentage: 50},\r\n"
            "                            {served_entity_name: b, traffic_percentage: 50}]}\r\n"
            "  tags: {on: 'yes', 1: one}\r\n"
            "---\r\n---\r\n")
    (tmp_path / "f.yaml").write_bytes(text.encode("utf-8"))
    manifests = load_manifests([str(tmp_path)], {})
    spec = manifests.endpoints["feature-bot"].manifest.spec
    assert spec.served_entities[1].environment_vars == {"MODE": "fast", "OPENAI_API_KEY": "{{secrets/s/k}}"}
    assert [e.entity_version for e in spec.served_entities] == ["1", "2"]
    assert spec.tags == {"on": "yes", "1": "one"}  # keys are text as written, never YAML 1.1 booleans


def test_loading_makes_no_reference_cycles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line pauses the cyclic collector while it loads manifests and then freezes them
    (cli._kept: 10,000 documents are millions of objects it would walk again and again). That frees
    everything it should only if loading leaves no reference cycles behind. Variables, flow style
    and aliases included."""
    import gc

    monkeypatch.chdir(REPO)
    (tmp_path / "a.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: ServingEndpoint\nmetadata: {name: cycle-bot}\nspec:\n"
        "  served_entities:\n    - name: a\n      entity_name: main.agents.cycle_bot\n      entity_version: ${var.v}\n"
        "      environment_vars: &env {MODE: fast}\n      workload_size: Small\n      scale_to_zero_enabled: true\n"
        "    - {name: b, entity_name: main.agents.cycle_bot, entity_version: 2, environment_vars: *env,\n"
        "       workload_size: Small, scale_to_zero_enabled: false}\n"
        "  traffic_config: {routes: [{served_entity_name: a, traffic_percentage: 50},\n"
        "                            {served_entity_name: b, traffic_percentage: 50}]}\n", encoding="utf-8")
    paths = ["manifests", str(tmp_path)]
    load_manifests(paths, {"v": "1"})  # first use: imports and one-time caches
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        manifests = load_manifests(paths, {"v": "1"})
        found = gc.collect()
    finally:
        if collecting:
            gc.enable()
    assert manifests.count == 3
    assert found == 0


# --- the command line itself ------------------------------------------------------------------------


def test_help_works_through_the_console_script() -> None:
    proc = subprocess.run([str(RECONCILER), "--help"], capture_output=True, text=True, env=clean_env(), timeout=60)
    assert proc.returncode == 0
    assert "Usage: reconciler" in proc.stdout
    for command in ("validate", "schema"):
        assert command in proc.stdout


def test_validate_does_not_import_heavy_dependencies() -> None:
    """databricks-sdk, mlflow and deepdiff cost seconds to import; validate never needs them."""
    snippet = (
        "import sys\n"
        "from reconciler.cli import main\n"
        "try:\n"
        "    main(['validate', 'manifests'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('databricks', 'mlflow', 'deepdiff'))\n"
        "print('HEAVY:' + ','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=REPO, capture_output=True, text=True,
                          env=clean_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("HEAVY:"), proc.stdout


def test_help_does_not_import_pydantic_or_yaml() -> None:
    snippet = (
        "import sys\n"
        "from reconciler.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('LOADED:' + ','.join(sorted(m for m in ('pydantic', 'yaml', 'databricks', 'mlflow', 'deepdiff')\n"
        "                                 if m in sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=REPO, capture_output=True, text=True,
                          env=clean_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("LOADED:"), proc.stdout


def test_the_bench_tree_is_valid(tmp_path: Path) -> None:
    """bench/validate_bench.py times validate on this tree: it must measure the success path."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from bench.validate_bench import generate_tree

    assert generate_tree(tmp_path) == 1000
    manifests = load_manifests([str(tmp_path)], {})
    assert (len(manifests.models), len(manifests.endpoints), len(manifests.files)) == (500, 500, 100)
