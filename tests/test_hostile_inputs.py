"""Hostile local inputs: files that are not files, merge-key alias bombs, durations that are not
durations, and variables that must not be echoed. Each ends in one clear line per cause, exit 1,
before anything is read that should not be (no hang, no MemoryError, no wall of repeats)."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
from test_validate import run_in_process

MANIFEST = """apiVersion: reconciler/v1
kind: RegisteredModel
metadata:
  name: main.agents.support_agent
spec:
  comment: ok
"""


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("RECONCILER_"):
            monkeypatch.delenv(key)
    return tmp_path


def refused_alone(err: str, path: str, what: str) -> None:
    assert err.splitlines() == [f"{path}:1:1: is {what}, not a file; refusing to read it; name manifest files "
                                "(*.yaml, *.yml)"], err


def test_a_fifo_named_like_a_manifest_is_refused_not_read(in_tmp, capsys):
    os.mkfifo("x.yaml")
    done = threading.Event()
    result: list[tuple[int, str, str]] = []

    def validate() -> None:
        result.append(run_in_process(["validate", "x.yaml"], capsys))
        done.set()

    worker = threading.Thread(target=validate, daemon=True)
    worker.start()
    if not done.wait(60):  # the old behaviour: blocked in open() until a writer came
        with open("x.yaml", "w"):
            pass
        pytest.fail("validate blocked on a FIFO")
    code, _, err = result[0]
    assert code == 1
    refused_alone(err, "x.yaml", "a named pipe (FIFO)")


def test_a_fifo_found_in_a_directory_is_refused_too(in_tmp, capsys):
    (in_tmp / "manifests").mkdir()
    (in_tmp / "manifests" / "a.yaml").write_text(MANIFEST)
    os.mkfifo(in_tmp / "manifests" / "b.yaml")
    code, _, err = run_in_process(["validate", "manifests"], capsys)
    assert code == 1
    refused_alone(err, os.path.join("manifests", "b.yaml"), "a named pipe (FIFO)")


def test_a_symlink_to_a_device_is_refused_before_reading(in_tmp, capsys):
    os.symlink("/dev/zero", "zero.yaml")
    code, _, err = run_in_process(["validate", "zero.yaml"], capsys)
    assert code == 1
    refused_alone(err, "zero.yaml", "a character device")


def test_a_socket_is_refused(in_tmp, capsys):
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind("s.yaml")
        code, _, err = run_in_process(["validate", "s.yaml"], capsys)
    assert code == 1
    refused_alone(err, "s.yaml", "a socket")


def test_special_files_are_refused_as_variable_files_and_plans(in_tmp, capsys):
    os.symlink("/dev/zero", "vars.yaml")
    Path("m.yaml").write_text(MANIFEST)
    code, _, err = run_in_process(["validate", "m.yaml", "--var-file", "vars.yaml"], capsys)
    assert code == 1 and err.splitlines() == ["vars.yaml:1:1: cannot read variable file: it is a character device, "
                                              "not a file; refusing to read it"], err
    os.symlink("/dev/zero", "plan.json")
    code, _, err = run_in_process(["apply", "--plan", "plan.json"], capsys)
    assert code == 1 and err.splitlines() == ["plan.json: cannot read plan: it is a character device, not a file; "
                                              "refusing to read it"], err


def test_an_oversized_plan_file_is_refused_before_reading(in_tmp, capsys, monkeypatch):
    import reconciler.cli

    monkeypatch.setattr(reconciler.cli, "PLAN_FILE_BYTES", 1024)
    Path("plan.json").write_text("[" + "1," * 2000 + "1]")
    code, _, err = run_in_process(["apply", "--plan", "plan.json"], capsys)
    assert code == 1 and "plan.json: cannot read plan: it is 0.0 MiB, more than the" in err, err


def test_a_merge_key_alias_bomb_is_one_line_with_a_count(in_tmp, capsys):
    """27 lines; each `*a` expands a mapping holding a merge key, 10 x 10 x 10 x 10 times."""
    ten = ", ".join(["*{}"] * 10)
    bomb = "\n".join([
        "apiVersion: reconciler/v1", "kind: RegisteredModel", "metadata:", "  name: main.agents.bomb", "spec:",
        "  comment: ok", "x:", "  a: &a {<<: {k: v}, n: 1}", f"  b: &b [{ten.format(*'a' * 10)}]",
        f"  c: &c [{ten.format(*'b' * 10)}]", f"  d: &d [{ten.format(*'c' * 10)}]",
        f"  e: [{ten.format(*'d' * 10)}]", *[f"# padding {i}" for i in range(15)]]) + "\n"
    assert len(bomb.splitlines()) == 27
    Path("bomb.yaml").write_text(bomb)
    code, _, err = run_in_process(["validate", "bomb.yaml"], capsys)
    lines = err.splitlines()
    assert code == 1 and len(lines) <= 3, err[:2000]
    merge = [line for line in lines if "merge keys" in line]
    assert len(merge) == 1 and merge[0].startswith("bomb.yaml:8:") and " times)" in merge[0], lines


@pytest.mark.parametrize("args, option, message", [
    (["--timeout", "5minutes"], "--timeout", "'5minutes': expected a duration such as 90s, 30m, 1h or 1h30m"),
    (["--timeout", "-5m"], "--timeout", "'-5m': must be more than zero"),
    (["--timeout", "0"], "--timeout", "'0': must be more than zero"),
    (["--deadline", "-1"], "--deadline", "'-1': must be more than zero"),
    (["--deadline", "0s"], "--deadline", "'0s': must be more than zero"),
    (["--lock-timeout", "-10s"], "--lock-timeout", "'-10s': must not be negative"),
    (["--lock-timeout", "soon"], "--lock-timeout", "'soon': expected a duration"),
])
def test_bad_durations_are_usage_errors_naming_the_option(in_tmp, capsys, args, option, message):
    code, _, err = run_in_process(["apply", "m.yaml", *args], capsys)
    assert code == 1, err
    assert f"Invalid value for '{option}'" in err and message in err, err


@pytest.mark.parametrize("command", ["plan", "export"])
def test_plan_and_export_take_a_deadline_too(in_tmp, capsys, command):
    code, _, err = run_in_process([command, "--deadline", "nope"], capsys)
    assert code == 1 and "Invalid value for '--deadline'" in err, err


def test_good_durations_parse():
    from reconciler.cli import Duration

    duration = Duration()
    assert [duration.convert(text, None, None) for text in ("90s", "30m", "1h", "1h30m", "2.5m", "45")] == \
        [90, 1800, 3600, 5400, 150, 45]


def test_a_variable_from_the_environment_is_never_echoed(in_tmp, capsys, monkeypatch):
    monkeypatch.setenv("RECONCILER_VAR_size", "Hunter2-not-a-size")
    Path("m.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: ServingEndpoint\nmetadata:\n  name: a\nspec:\n  served_entities:\n"
        "    - entity_name: main.agents.support_agent\n      entity_version: '3'\n"
        "      workload_size: ${var.size}\n      scale_to_zero_enabled: ${var.size}\n")
    code, _, err = run_in_process(["validate", "m.yaml"], capsys)
    assert code == 1 and "Hunter2" not in err and "the value of a variable, not shown" in err, err


def test_a_cross_check_quoting_a_variable_shows_its_placeholder(in_tmp, capsys, monkeypatch):
    monkeypatch.setenv("RECONCILER_VAR_n", "Hunter2 secret!")
    Path("m.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: ServingEndpoint\nmetadata:\n  name: ${var.n}\nspec:\n  served_entities:\n"
        "    - entity_name: ${var.n}\n      entity_version: '3'\n      workload_size: Small\n")
    code, _, err = run_in_process(["validate", "m.yaml"], capsys)
    assert code == 1 and "Hunter2" not in err, err
    assert "endpoint name '${var.n}' is invalid" in err and "'${var.n}' is not a Unity Catalog model name" in err, err
