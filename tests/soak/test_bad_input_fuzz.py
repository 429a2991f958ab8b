"""Bad input fuzz: generated malformed and adversarial manifests through the real CLI entry point.

Every generated file is invalid by construction: the example deployment with one to three edits
that each break it (an unknown field, a wrong type or value, a missing required field, a broken
cross-reference, a plain secret, an undefined variable), or broken YAML text (tabs, unclosed
brackets and quotes, duplicate keys, control characters, invalid UTF-8, unsafe tags, alias bombs,
deep nesting), or arbitrary bytes. Each goes through `reconciler.cli.main` as `validate`, `plan`
or `apply --auto-approve` against a local workspace, and must end in exit 1 with every stderr
line shaped `path:line:col: message`, never a traceback, and no write in the request log.
"""

from __future__ import annotations

import copy
import re
import string
import tempfile
from pathlib import Path
from typing import Any

import pytest
import soaklib
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from integration.harness import run

# Mappings that are pydantic models (a key that is not a field is an error), per document kind.
MODEL_MAPPINGS = {
    "RegisteredModel": [(), ("metadata",), ("spec",)],
    "ServingEndpoint": [(), ("metadata",), ("spec",), ("spec", "served_entities", 0),
                        ("spec", "served_entities", 1), ("spec", "traffic_config"),
                        ("spec", "traffic_config", "routes", 0), ("spec", "ai_gateway"),
                        ("spec", "ai_gateway", "inference_table_config"), ("spec", "ai_gateway", "usage_tracking_config"),
                        ("spec", "permissions", 0), ("spec", "resources")],
}
REQUIRED = {
    "RegisteredModel": [("apiVersion",), ("kind",), ("metadata",), ("metadata", "name")],
    "ServingEndpoint": [("apiVersion",), ("kind",), ("metadata",), ("metadata", "name"), ("spec",),
                        ("spec", "served_entities"), ("spec", "served_entities", 0, "entity_name"),
                        ("spec", "traffic_config", "routes", 0, "served_entity_name"),
                        ("spec", "traffic_config", "routes", 1, "traffic_percentage"),
                        ("spec", "permissions", 1, "permission_level")],
}
not_int = st.one_of(st.text(max_size=20), st.floats(allow_nan=False).filter(lambda f: not f.is_integer()),
                    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
not_str = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.text(max_size=5), max_size=3),
                    st.dictionaries(st.text(max_size=5), st.text(max_size=5), min_size=1, max_size=2))
not_bool = st.one_of(st.text(max_size=10), st.integers(), st.floats(allow_nan=False))
# (kind, path, values that are wrong there)
WRONG = [
    ("RegisteredModel", ("apiVersion",), st.text(max_size=20).filter(lambda t: t != "reconciler/v1")),
    ("RegisteredModel", ("kind",), st.text(max_size=20).filter(lambda t: t not in ("RegisteredModel", "ServingEndpoint"))),
    ("RegisteredModel", ("metadata", "name"), st.one_of(not_str, st.text(max_size=30).filter(lambda t: t.count(".") != 2))),
    ("RegisteredModel", ("spec", "aliases", "champion"), st.one_of(not_int, st.integers(max_value=0))),
    ("RegisteredModel", ("spec", "comment"), not_str),
    ("ServingEndpoint", ("metadata", "name"),
     st.one_of(not_str, st.text(min_size=1, max_size=30).filter(lambda t: not re.fullmatch(r"[A-Za-z0-9_-]{1,63}", t)))),
    ("ServingEndpoint", ("spec", "served_entities"), st.one_of(st.just([]), not_int.filter(lambda v: not isinstance(v, list)))),
    # Sizes are an open enum (a workspace may offer custom ones: validate warns), so the wrong ones
    # are those wrong whatever the workspace offers: not a string, not a name, a known one miscased.
    ("ServingEndpoint", ("spec", "served_entities", 0, "workload_size"),
     st.one_of(not_str, st.sampled_from(["", " ", "Small ", "x y", "small", "MEDIUM", "lArge"]))),
    ("ServingEndpoint", ("spec", "served_entities", 0, "scale_to_zero_enabled"), not_bool),
    ("ServingEndpoint", ("spec", "served_entities", 1, "entity_version"),
     st.one_of(st.text(max_size=10).filter(lambda t: not re.fullmatch(r"[1-9][0-9]*", t)), st.integers(max_value=0))),
    ("ServingEndpoint", ("spec", "served_entities", 0, "environment_vars", "OPENAI_API_KEY"),
     st.one_of(not_str, st.text(max_size=40).filter(lambda t: not re.fullmatch(r"\{\{secrets/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+\}\}", t)))),
    ("ServingEndpoint", ("spec", "served_entities", 1, "environment_vars", "DB_PASSWORD"),
     st.text(max_size=40).filter(lambda t: "{{" not in t)),
    ("ServingEndpoint", ("spec", "traffic_config", "routes", 0, "traffic_percentage"),
     st.one_of(not_int, st.integers(min_value=101), st.integers(max_value=-1),
               st.integers(min_value=0, max_value=100).filter(lambda n: n != 90))),
    ("ServingEndpoint", ("spec", "traffic_config", "routes", 1, "served_entity_name"),
     st.text(max_size=20).filter(lambda t: t not in ("champion", "challenger"))),
    ("ServingEndpoint", ("spec", "served_entities", 1, "name"), st.just("champion")),
    ("ServingEndpoint", ("spec", "served_entities", 0, "alias"), st.text(max_size=20).filter(lambda t: t not in ("champion", "challenger"))),
    ("ServingEndpoint", ("spec", "permissions", 0, "permission_level"),
     st.text(max_size=12).filter(lambda t: t not in ("CAN_MANAGE", "CAN_QUERY", "CAN_VIEW"))),
    ("ServingEndpoint", ("spec", "ai_gateway", "usage_tracking_config", "enabled"), not_bool),
    ("ServingEndpoint", ("spec", "tags", "team"), not_str),
    ("ServingEndpoint", ("spec", "tags"), st.lists(st.text(max_size=5), max_size=3)),
]
yaml_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                           max_leaves=8)


def _get(doc: Any, path: tuple) -> Any:
    for part in path:
        doc = doc[part]
    return doc


@st.composite
def broken_documents(draw: st.DrawFn) -> tuple[str, list[str]]:
    """The example deployment with 1-3 edits, each of which makes it invalid."""
    docs = soaklib.base_documents()
    kinds = [d["kind"] for d in docs]  # as generated: an edit may break `kind` itself
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        edit = draw(st.sampled_from(["unknown_key", "wrong", "missing", "duplicate", "variable"]))
        index = draw(st.integers(0, len(docs) - 1))
        doc, kind = docs[index], kinds[index]
        try:
            if edit == "unknown_key":
                where = draw(st.sampled_from(MODEL_MAPPINGS[kind]))
                key = "zz" + draw(st.text(max_size=10))
                _get(doc, where)[key] = draw(yaml_values)
                edits.append(f"unknown key {key!r} at {where}")
            elif edit == "wrong":
                wrong_kind, path, values = draw(st.sampled_from(WRONG))
                doc = docs[kinds.index(wrong_kind)]
                _get(doc, path[:-1])[path[-1]] = draw(values)
                edits.append(f"wrong {path}")
            elif edit == "missing":
                path = draw(st.sampled_from(REQUIRED[kind]))
                del _get(doc, path[:-1])[path[-1]]
                edits.append(f"missing {path}")
            elif edit == "duplicate":
                docs.append(copy.deepcopy(doc))
                kinds.append(kind)
                edits.append("duplicate document")
            else:
                name = draw(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True))
                if kind == "RegisteredModel":
                    doc.setdefault("spec", {})["comment"] = f"for ${{var.{name}}}"
                else:
                    doc["metadata"] = {"name": f"agent-${{var.{name}}}"}
                edits.append(f"undefined variable {name}")
        except (KeyError, IndexError, TypeError, AttributeError):
            continue  # an earlier edit replaced the parent: that part is already wrong
    if not edits:
        docs[0]["zz"] = 1
        edits.append("unknown key zz")
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True), edits


SYNTAX = [
    lambda t: t.replace("  served_entities:\n", "\tserved_entities:\n", 1),
    lambda t: t.replace("spec:\n", "spec: {\n", 1),
    lambda t: t.replace("- name: champion", "- [name: champion", 1),
    lambda t: t + "\nextra: 'never closed\n",
    lambda t: t.replace("metadata:\n", "metadata:\n  name: twice\n", 1),
    lambda t: t.replace("kind:", "!!python/object/apply:os.system ['true']\nkind:", 1),
    lambda t: t.replace("spec:", "spec: !custom", 1),
    lambda t: t + "\n---\n" + "a: " + "[" * 200 + "]" * 200 + "\n",
    lambda t: "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)) + "---\n" + t,
    lambda t: t.replace("comment:", "comment:\x07", 1),
    lambda t: t[: len(t) // 2] + "\x00" + t[len(t) // 2:],
    lambda t: t.replace("name:", "name :\n  - :", 1),
]


@st.composite
def broken_files(draw: st.DrawFn) -> bytes:
    choice = draw(st.integers(0, 9))
    if choice < 6:
        text, _ = draw(broken_documents())
        return text.encode("utf-8")
    if choice < 8:
        text = yaml.safe_dump_all(soaklib.base_documents(), sort_keys=False)
        text = draw(st.sampled_from(SYNTAX))(text)
        if draw(st.booleans()):
            cut = draw(st.integers(0, len(text)))
            # Letters only: they can rename or lengthen things, never comment out or close the breakage.
            text = text[:cut] + draw(st.text(alphabet=string.ascii_letters, max_size=5)) + text[cut:]
        raw = text.encode("utf-8")
        if draw(st.booleans()):
            raw = draw(st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\x80"])) + raw
        return raw
    if choice == 8:
        return draw(st.binary(max_size=400))
    return draw(st.text(max_size=400)).encode("utf-8", "surrogatepass")


def check(ws: Any, raw: bytes, command: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bad.yaml")
        Path(path).write_bytes(raw)
        args = {"validate": ["validate", path], "plan": ["plan", path],
                "apply": ["apply", path, "--auto-approve"]}[command]
        before = len(ws.requests())
        result = run(ws, *args)
    text = result.out + result.err
    assert "Traceback" not in text and "internal error" not in text, text
    assert result.code == 1, f"exit {result.code}: {text}"
    lines = result.err.splitlines()
    assert lines, text
    shaped = re.compile(re.escape(path) + r":\d+:\d+: \S")
    assert all(shaped.match(line) for line in lines), result.err
    assert not [e for e in ws.requests()[before:] if e["method"] != "GET"]


def fuzz(ws: Any, *, examples: int, derandomize: bool) -> None:
    @settings(max_examples=examples, deadline=None, derandomize=derandomize, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(raw=broken_files(), command=st.sampled_from(["validate", "plan", "apply"]))
    def one(raw: bytes, command: str) -> None:
        check(ws, raw, command)

    one()


def test_bad_input_fuzz_short(seeded_workspace, soak_report):
    fuzz(seeded_workspace, examples=300, derandomize=True)
    soak_report(examples=300, writes=len([e for e in seeded_workspace.requests() if e["method"] != "GET"]))


@pytest.mark.soak
def test_bad_input_fuzz(seeded_workspace, soak_report):
    fuzz(seeded_workspace, examples=4000, derandomize=False)
    soak_report(examples=4000, writes=len([e for e in seeded_workspace.requests() if e["method"] != "GET"]))


@pytest.mark.parametrize("index", range(len(SYNTAX)))
def test_each_syntax_breakage_alone(seeded_workspace, index):
    text = yaml.safe_dump_all(soaklib.base_documents(), sort_keys=False)
    check(seeded_workspace, SYNTAX[index](text).encode("utf-8"), "apply")


@pytest.mark.parametrize("name", sorted(p.name for p in (soaklib.ROOT / "tests" / "bad_manifests").glob("*.yaml")))
def test_each_known_bad_manifest_through_apply(seeded_workspace, name):
    check(seeded_workspace, (soaklib.ROOT / "tests" / "bad_manifests" / name).read_bytes(), "apply")
