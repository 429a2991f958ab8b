"""Fuzz smoke (a few hundred inputs, part of `make test`): whatever a manifest file holds, the loader
either returns or raises ReconcilerError whose every problem has a path, line and column and fits on
one line. Never any other exception.

Inputs: the example deployment with structural mutations (keys dropped, added, renamed; values
swapped for other types), with text mutations (characters YAML cares about inserted, slices cut,
the file truncated), random YAML values, and random bytes. Derandomized so CI sees the same inputs
every run; the long random run is tests/soak/test_bad_input_fuzz.py (`make soak`).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.errors import ReconcilerError
from reconciler.manifests import yamlsource
from reconciler.manifests.loader import load_manifests

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_TEXT = (REPO / "manifests" / "support-agent.yaml").read_text(encoding="utf-8")
EXAMPLE = [d for d in yaml.safe_load_all(EXAMPLE_TEXT) if d is not None]
CANARY = "sk-live-CANARY0fuzz9"
VARIABLES = {"catalog": "main", "pct": "90", "flag": "true"}

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                    st.text(max_size=30),
                    st.sampled_from(["", "${var.catalog}", "${var.pct}", "${var.nope}", "${oops", "$${x}",
                                     "{{secrets/a/b}}", "{{secrets/a}}", "champion", "latest", "Small", "CPU",
                                     "CAN_QUERY", "main.agents.support_agent", "x" * 70, "\t", "\x1b[0m",
                                     "\u2028", "💥"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                      max_leaves=12)
key_names = st.one_of(st.text(max_size=20),
                      st.sampled_from(["name", "spec", "kind", "apiVersion", "metadata", "alias", "entity_version",
                                       "served_entities", "traffic_config", "routes", "tags", "permissions",
                                       "environment_vars", "aliases", "<<", "OPENAI_API_KEY", "1", "on", "null"]))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside a document."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, prefix + (i,))
    return found


def _parent(root: Any, path: tuple) -> Any:
    for part in path[:-1]:
        root = root[part]
    return root


@st.composite
def mutated_example(draw: st.DrawFn) -> list[Any]:
    docs = copy.deepcopy(EXAMPLE)
    docs[1]["spec"]["served_entities"][0]["environment_vars"]["OPENAI_API_KEY"] = CANARY
    for _ in range(draw(st.integers(1, 4))):
        doc_index = draw(st.integers(0, len(docs) - 1))
        paths = [p for p in _paths(docs[doc_index]) if p]
        if not paths:
            docs[doc_index] = draw(values)
            continue
        path = draw(st.sampled_from(paths))
        parent = _parent(docs[doc_index], path)
        action = draw(st.sampled_from(["drop", "add", "rename", "replace", "duplicate-doc"]))
        if action == "duplicate-doc":
            docs.append(copy.deepcopy(docs[doc_index]))
        elif isinstance(parent, dict):
            key = path[-1]
            if action == "drop":
                del parent[key]
            elif action == "add":
                parent[draw(key_names)] = draw(values)
            elif action == "rename":
                parent[draw(key_names)] = parent.pop(key)
            else:
                parent[key] = draw(values)
        elif isinstance(parent, list):
            index = path[-1]
            if action == "drop":
                del parent[index]
            elif action == "add":
                parent.append(draw(values))
            else:
                parent[index] = draw(values)
    return docs


def _dump(docs: list[Any]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True)


@st.composite
def mutated_text(draw: st.DrawFn) -> bytes:
    text = EXAMPLE_TEXT
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "cut", "truncate", "indent"]))
        if action == "insert":
            piece = draw(st.one_of(
                st.sampled_from(["\t", ":", ": ", "- ", "[", "]", "{", "}", "'", '"', "&a ", "*a", "*b ", "!!", "!x ",
                                 "<<: ", "---\n", "...\n", "%YAML 1.1\n", "#", "|", ">", "?", "@", "`", "\\", "\n",
                                 "\r", "\x00", "\x85", "\ufeff", "${", "${var.", "}", "$${", "&a [*a, *a]"]),
                st.text(max_size=8)))
            text = text[:at] + piece + text[at:]
        elif action == "cut":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        elif action == "truncate":
            text = text[:at]
        else:
            line_start = text.rfind("\n", 0, at) + 1
            text = text[:line_start] + " " * draw(st.integers(1, 3)) + text[line_start:]
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "latin-1", "utf-16"]))
    return text.encode(encoding, errors="replace")


@pytest.fixture(scope="module")
def workdir() -> Path:
    with tempfile.TemporaryDirectory(prefix="reconciler-fuzz-") as name:
        yield Path(name)


def check(workdir: Path, raw: bytes) -> str:
    """Loads one file; returns the printed problems (empty when valid)."""
    path = workdir / "fuzz.yaml"
    path.write_bytes(raw)
    try:
        load_manifests([str(path)], VARIABLES)
    except ReconcilerError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.path == str(path)
            assert isinstance(problem.line, int) and problem.line >= 1, problem
            assert isinstance(problem.col, int) and problem.col >= 1, problem
            assert problem.message
            assert len(str(problem).splitlines()) == 1, str(problem)
        return "\n".join(str(p) for p in error.problems)
    return ""


@FUZZ
@given(docs=mutated_example())
def test_structural_mutations(workdir: Path, docs: list[Any]) -> None:
    printed = check(workdir, _dump(docs).encode("utf-8"))
    assert CANARY not in printed  # an environment value is never echoed, whatever else is wrong


@FUZZ
@given(raw=mutated_text())
def test_text_mutations(workdir: Path, raw: bytes) -> None:
    check(workdir, raw)


@pytest.mark.skipif(yamlsource._FAST_LOADER is None, reason="PyYAML is built without libyaml here")
@FUZZ
@given(raw=mutated_text())
def test_libyaml_and_pure_python_parsers_agree(workdir: Path, raw: bytes) -> None:
    """The same file gives the same verdict and messages whichever parser PyYAML offers."""
    fast = check(workdir, raw)
    saved, yamlsource._FAST_LOADER = yamlsource._FAST_LOADER, None
    try:
        pure = check(workdir, raw)
    finally:
        yamlsource._FAST_LOADER = saved
    assert fast == pure


@settings(FUZZ, max_examples=60)
@given(docs=st.lists(values, min_size=1, max_size=3))
def test_random_yaml(workdir: Path, docs: list[Any]) -> None:
    check(workdir, _dump(docs).encode("utf-8"))


@settings(FUZZ, max_examples=60)
@given(raw=st.binary(max_size=300))
def test_random_bytes(workdir: Path, raw: bytes) -> None:
    check(workdir, raw)


def test_the_unmutated_example_is_valid(workdir: Path) -> None:
    assert check(workdir, EXAMPLE_TEXT.encode("utf-8")) == ""
    assert check(workdir, _dump(EXAMPLE).encode("utf-8")) == ""
