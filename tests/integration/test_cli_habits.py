"""Command-line habits users bring from other tools: NO_COLOR and --no-color, option names in
usage errors, a hint for each authentication and permission refusal, a host that is not a
Databricks workspace said in those words, and `${var.NAME}` inside YAML flow mappings.
(`apply --no-wait`'s outcome lines are in test_apply.py.)"""

from __future__ import annotations

import functools
import http.server
import os
import pty
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import click
import pytest
from harness import SEED, base_documents, run, write
from hostile import json_answer, raw_answer

from reconciler.cli import Duration, cli

BIN = Path(sys.executable).parent
ANSI = "\x1b["
ENDPOINT = "/api/2.0/serving-endpoints/support-agent"
BUDGET = {"RECONCILER_RETRY_SECONDS": "4", "RECONCILER_RESPONSE_SECONDS": "3"}


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


# ---- hints on refusals, and a host that is not a workspace -----------------------------------------

def error_lines(result) -> list[str]:
    assert result.code == 1 and "Traceback" not in result.out + result.err, result.out + result.err
    return [line for line in result.err.splitlines() if line and not line.startswith("[")]


def test_a_wrong_token_is_told_to_check_the_token_or_profile(seeded_workspace, tmp_path):
    """403 {"error_code": 403, "message": "Invalid access token."}: the local workspace answers an
    unknown token as real workspaces do (databricks/databricks-sdk-go#873)."""
    result = run(seeded_workspace, "plan", write(tmp_path, base_documents()), env={"DATABRICKS_TOKEN": "dapi-expired"})
    [line] = error_lines(result)
    assert line.endswith("get: permission denied (403 PERMISSION_DENIED): Invalid access token; check "
                         "DATABRICKS_TOKEN (or --profile): the token is not valid for this workspace"), line


def test_no_credential_is_told_to_check_the_token_or_profile(hostile, tmp_path):
    """401 {"error_code": 401, "message": "Credential was not sent or was of an unsupported type for
    this API. [ReqId: ...]"}, as a real workspace answered (PipedreamHQ/pipedream#20701)."""
    hostile.answer("GET", ENDPOINT, json_answer({"error_code": 401, "message": "Credential was not sent or was of an "
                                                 "unsupported type for this API. [ReqId: 3bbb6628]"}, status=401))
    lines = error_lines(run(hostile, "plan", write(tmp_path, base_documents()), env=BUDGET))
    assert "serving_endpoint.support-agent: get: authentication failed (401 UNAUTHENTICATED): Credential was not " \
           "sent or was of an unsupported type for this API. [ReqId: 3bbb6628]; check DATABRICKS_TOKEN (or " \
           "--profile and ~/.databrickscfg)" in lines, lines


def test_a_missing_grant_names_the_permission_and_says_whom_to_ask(seeded_workspace, tmp_path):
    ws = seeded_workspace
    ws.add_seed({"users": [{"user_name": "nobody@example.com"}]})
    ws.add_token("nobody-token", principal="nobody@example.com")
    [line] = error_lines(run(ws, "plan", write(tmp_path, base_documents()), env={"DATABRICKS_TOKEN": "nobody-token"}))
    assert ": get: permission denied (403 PERMISSION_DENIED): User nobody@example.com does not have View " \
           "permissions on serving endpoint '" in line, line
    assert line.endswith("; the credentials are valid but lack this grant: ask the object's owner or a workspace "
                         "admin for the permission named above"), line
    assert "DATABRICKS_TOKEN" not in line  # not the hint for a bad token


@pytest.fixture
def web_server(tmp_path):
    """A web server that is not a Databricks workspace: Python's own, serving an empty directory.
    Every API path is its HTML 404 page ("Error response ... File not found"), every POST a 501."""
    root = tmp_path / "site"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield type("Host", (), {"url": f"http://127.0.0.1:{httpd.server_address[1]}", "token": "dapi" + "0" * 32})
    httpd.shutdown()
    httpd.server_close()


def test_a_web_server_is_not_taken_for_a_workspace(web_server, tmp_path):
    manifests = write(tmp_path, base_documents())
    [line] = error_lines(run(web_server, "plan", manifests, env=BUDGET))
    assert f"get: {web_server.url} does not look like a Databricks workspace: it answered with an HTML page (HTTP 404 " \
           "File not found), not the REST API's JSON; check DATABRICKS_HOST (or the host of --profile)" in line, line
    assert "FILE_NOT_FOUND" not in line and "Error response" not in line
    applied = error_lines(run(web_server, "apply", manifests, "--auto-approve", env=BUDGET))
    assert all("does not look like a Databricks workspace" in line for line in applied), applied
    assert not any("FILE_NOT_FOUND" in line or "UNSUPPORTED_METHOD" in line for line in applied), applied


@pytest.mark.parametrize("answer, expected", [
    (raw_answer((BaseHTTPRequestHandler.error_message_format % {"code": 404, "message": "Not Found",
                                                                 "explain": "Nothing matches"}).encode(),
                status=404, content_type="text/html"),
     "does not look like a Databricks workspace: it answered with an HTML page (HTTP 404 Not Found)"),
    (raw_answer(b"<html><body>Sign in to continue</body></html>", content_type="text/html"),
     "does not look like a Databricks workspace: it answered with an HTML page (HTTP 200 OK)"),
    (json_answer({"detail": "Not Found"}, status=404),  # another JSON API (FastAPI's 404)
     "HTTP 404 without a Databricks error body; {url} does not look like a Databricks workspace"),
    (json_answer({"message": "Not Found"}, status=404),
     "HTTP 404 without a Databricks error body; {url} does not look like a Databricks workspace"),
], ids=["html-404", "login-page", "json-404-detail", "json-404-message"])
def test_answers_no_workspace_gives_say_so(hostile, tmp_path, answer, expected):
    hostile.answer("GET", ENDPOINT, answer)
    lines = error_lines(run(hostile, "plan", write(tmp_path, base_documents()), env=BUDGET))
    assert [line for line in lines if line.startswith("serving_endpoint.support-agent: ")], lines
    assert any(expected.format(url=hostile.url) in line for line in lines), lines
