"""Command-line habits users bring from other tools: NO_COLOR and --no-color, option names in
usage errors, a hint for each authentication and permission refusal, a host that is not a
Databricks workspace said in those words, and `${var.NAME}` inside YAML flow mappings.
(`apply --no-wait`'s outcome lines are in test_apply.py.)"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import click
import pytest
from harness import SEED, base_documents, run, write

from reconciler.cli import Duration, cli

BIN = Path(sys.executable).parent
ANSI = "\x1b["


def on_a_terminal(ws, *args: str, env: dict[str, str] | None = None) -> str:
    """`reconciler ARGS` with its stdout on a pseudo-terminal (a TTY, as in a user's shell): what it printed there."""
    leader, follower = pty.openpty()
    environment = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
                   "DATABRICKS_HOST": ws.url, "DATABRICKS_TOKEN": ws.token, **(env or {})}
    done = subprocess.run([str(BIN / "reconciler"), *args], stdout=follower, stderr=subprocess.PIPE, env=environment,
                          timeout=120)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other end is closed and everything was read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert done.returncode == 0, done.stderr
    return b"".join(chunks).decode("utf-8", "replace")


def test_colour_on_a_terminal_unless_no_color_or_the_option_says_no(make_workspace, tmp_path):
    ws = make_workspace(SEED)
    manifests = write(tmp_path, base_documents())
    assert ANSI in on_a_terminal(ws, "plan", manifests)  # the plan's headers are coloured
    assert ANSI in on_a_terminal(ws, "plan", manifests, env={"NO_COLOR": ""})  # empty: not set (no-color.org)
    for value in ("1", "true", "0"):  # any non-empty value, even "0"
        printed = on_a_terminal(ws, "plan", manifests, env={"NO_COLOR": value})
        assert ANSI not in printed and "serving_endpoint.support-agent" in printed
    printed = on_a_terminal(ws, "--no-color", "plan", manifests)
    assert ANSI not in printed and "serving_endpoint.support-agent" in printed


# ---- option names in usage errors ---------------------------------------------------------------

def typed_options() -> list[tuple[str, str]]:
    """(command, option) for every option of every command whose value is converted (a duration,
    a number, a choice, a path): each must be named when its value is wrong."""
    found = []
    for name, command in sorted(cli.commands.items()):
        for sub_name, sub in sorted(getattr(command, "commands", {command.name: command}).items()):
            path = f"{name} {sub_name}" if sub is not command else name
            for param in sub.params:
                if isinstance(param, click.Option) and not param.is_flag and not isinstance(
                        param.type, (click.types.StringParamType, click.Path)):
                    found.append((path, param.opts[0]))
    return found


BAD_VALUES = {Duration: "5minutes", click.IntRange: "many", click.FloatRange: "lots", click.Choice: "nonsense",
              type(click.INT): "many", type(click.FLOAT): "lots"}


def test_every_typed_option_is_named_in_its_usage_error(workspace, tmp_path):
    options = typed_options()
    assert ("apply", "--timeout") in options and ("plan", "--deadline") in options and ("apply", "--lock-timeout") in \
        options and ("plan", "--parallelism") in options
    for command, option in options:
        param = next(p for c in [cli.commands[command.split()[0]]]
                     for p in (c.commands[command.split()[1]] if " " in command else c).params if option in p.opts)
        bad = next(v for t, v in BAD_VALUES.items() if isinstance(param.type, t))
        result = run(workspace, *command.split(), option, bad)
        assert result.code == 1, (command, option, result.err)
        assert f"Invalid value for '{option}'" in result.err and bad in result.err, (command, option, result.err)


def test_a_duration_option_says_what_it_expected(workspace):
    result = run(workspace, "apply", "--timeout", "5minutes")
    assert result.code == 1
    assert "Error: Invalid value for '--timeout': '5minutes': expected a duration such as 90s, 30m, 1h or 1h30m" \
        in result.err
