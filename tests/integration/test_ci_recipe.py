"""The GitHub Action (action.yml) and the workflows that use it (examples/github-actions/), run as
GitHub would run them.

Each test reads a workflow file, evaluates the `with:` and `env:` of its reconciler step (secrets,
vars, github, inputs), then runs the action's steps from action.yml as GitHub runs a composite
action: each step's `if:` evaluated, each `run:` shell exactly as written, with its `env:` filled
from the action's inputs and earlier steps' outputs, with `bash -eo pipefail` in a checkout laid
out as the recipe's README says, against a local workspace (real CLI, real databricks-sdk, real
HTTP). What the test provides is only what a runner provides: GITHUB_* variables (GITHUB_ACTION_PATH
is this repository), step outputs and summary files, the artifact upload (a copy), and `gh`, the
GitHub CLI, which is a stub here (a small fake of the few REST routes the scripts use, recording
every call). The package install and Python set-up are the runner's: this test's environment.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from databricks.sdk.service.serving import EndpointTag
from harness import ROOT, SEED, base_documents, endpoint, run, write

RECIPE = ROOT / "examples" / "github-actions"
ACTION = ROOT / "action.yml"
WORKFLOWS = RECIPE / "workflows"
BIN = Path(sys.executable).parent
TOKEN = "dapi-ci-recipe-secret-0123456789"  # must never appear in any output
REPO = "acme/agents"
EP = "serving_endpoint.support-agent"

# A fake of the GitHub REST routes the scripts call through `gh api`, and `gh run download`.
# State lives in $GH_STUB_DIR/github.json; every call is appended to $GH_STUB_DIR/calls.jsonl.
GH_STUB = r'''
import json, os, re, shutil, sys
from urllib.parse import parse_qs, urlsplit

state_dir = os.environ["GH_STUB_DIR"]
state_file = os.path.join(state_dir, "github.json")
state = json.load(open(state_file))
argv = sys.argv[1:]
body = None


def done(result=None, code=0, error=None):
    call = {"argv": argv, "method": globals().get("method"), "route": globals().get("route"), "body": body, "code": code}
    with open(os.path.join(state_dir, "calls.jsonl"), "a") as log:
        log.write(json.dumps(call) + "\n")
    json.dump(state, open(state_file, "w"), indent=1)
    if error:
        print(f"gh: {error}", file=sys.stderr)
    elif result is not None:
        print(json.dumps(result))
    sys.exit(code)


if not os.environ.get("GH_TOKEN"):
    done(code=4, error="To use GitHub CLI in a GitHub Actions workflow, set the GH_TOKEN environment variable.")
if argv[:2] == ["run", "download"]:
    run_id, name, dest = argv[2], argv[argv.index("--name") + 1], argv[argv.index("--dir") + 1]
    source = state["artifacts"].get(f"{run_id}/{name}")
    if not source:
        done(code=1, error=f"no artifact matches {name}")
    shutil.copytree(source, dest, dirs_exist_ok=True)
    done()
if argv[0] != "api":
    done(code=1, error=f"stub: unsupported command {argv}")
args, method, path = argv[1:], "GET", None
while args:
    arg = args.pop(0)
    if arg in ("--method", "-X"):
        method = args.pop(0)
    elif arg == "--input":
        source = args.pop(0)
        body = json.load(sys.stdin if source == "-" else open(source))
        method = "POST" if method == "GET" else method
    elif arg == "--paginate":
        pass
    elif arg.startswith("-"):
        done(code=1, error=f"stub: unsupported flag {arg}")
    else:
        path = arg
url = urlsplit(path)
query = {k: v[-1] for k, v in parse_qs(url.query).items()}
route = re.sub(r"^repos/[^/]+/[^/]+/", "", url.path)
bot = {"login": "github-actions[bot]", "type": "Bot"}


def next_id():
    state["next_id"] += 1
    return state["next_id"]


def issue(number):
    found = [i for i in state["issues"] if i["number"] == number]
    return found[0] if found else done(code=1, error="HTTP 404: Not Found")


if m := re.fullmatch(r"issues/(\d+)/comments", route):
    number = int(m[1])
    if method == "GET":
        done([c for c in state["comments"] if c["issue"] == number])
    comment = {"id": next_id(), "issue": number, "body": body["body"], "user": bot}
    state["comments"].append(comment)
    done(comment)
if m := re.fullmatch(r"issues/comments/(\d+)", route):
    comment = next((c for c in state["comments"] if c["id"] == int(m[1])), None) or \
        done(code=1, error="HTTP 404: Not Found")
    comment["body"] = body["body"]
    done(comment)
if route == "issues":
    if method == "GET":
        labels = set(filter(None, query.get("labels", "").split(",")))
        done([i for i in state["issues"] if i["state"] == query.get("state", "open")
              and labels <= {label["name"] for label in i["labels"]}])
    # Only labels that exist are kept here: the script must not count on GitHub creating one.
    labels = [{"name": name} for name in body.get("labels", []) if name in state["labels"]]
    created = {"number": next_id(), "title": body["title"], "body": body["body"], "labels": labels,
               "state": "open", "user": bot}
    state["issues"].append(created)
    done(created)
if m := re.fullmatch(r"issues/(\d+)", route):
    found = issue(int(m[1]))
    found.update({k: body[k] for k in ("body", "state", "state_reason", "title") if k in body})
    done(found)
if m := re.fullmatch(r"labels/(.+)", route):
    done({"name": m[1]}) if m[1] in state["labels"] else done(code=1, error="HTTP 404: Not Found")
if route == "labels":
    state["labels"].append(body["name"])
    done(body)
if route == "check-runs":
    state["check_runs"].append(body)
    done(body)
if m := re.fullmatch(r"commits/([0-9a-f]+)/pulls", route):
    done(state["pulls"].get(m[1], []))
if m := re.fullmatch(r"actions/workflows/([^/]+)/runs", route):
    runs = [r for r in state["runs"] if r["workflow"] == m[1] and r["head_sha"] == query.get("head_sha")
            and r["conclusion"] == query.get("status", r["conclusion"])]
    done({"total_count": len(runs), "workflow_runs": sorted(runs, key=lambda r: -r["id"])})
done(code=1, error=f"stub: unsupported route {method} {path}")
'''


class FakeGitHub:
    """The stub's state and call log, seen from the test."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir()
        (self.dir / "gh").write_text(f"#!{sys.executable}\n{GH_STUB}", encoding="utf-8")
        (self.dir / "gh").chmod(0o755)
        self.save({"next_id": 100, "comments": [], "issues": [], "labels": [], "check_runs": [], "pulls": {},
                   "runs": [], "artifacts": {}})

    def state(self) -> dict[str, Any]:
        return json.loads((self.dir / "github.json").read_text(encoding="utf-8"))

    def save(self, state: dict[str, Any]) -> None:
        (self.dir / "github.json").write_text(json.dumps(state), encoding="utf-8")

    def calls(self) -> list[dict[str, Any]]:
        path = self.dir / "calls.jsonl"
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []

    def writes(self) -> list[str]:
        """`METHOD route` of every write through `gh api`, in order."""
        return [f"{c['method']} {c['route']}" for c in self.calls() if c["method"] not in (None, "GET")]

    def merged(self, *, commit: str, pr: int, head: str, plan_dir: Path, run_id: int) -> None:
        """What GitHub knows after pull request `pr` (head `head`, planned by run `run_id`, which
        uploaded `plan_dir` as its artifact) was merged as `commit`."""
        state = self.state()
        state["pulls"][commit] = [{"number": pr, "merged_at": "2026-11-21T08:00:00Z", "head": {"sha": head}}]
        state["runs"].append({"id": run_id, "workflow": "reconciler-pr.yml", "head_sha": head, "conclusion": "success"})
        state["artifacts"][f"{run_id}/reconciler-plan"] = str(plan_dir)
        self.save(state)


@dataclass
class StepResult:
    code: int
    out: str
    err: str
    outputs: dict[str, str]
    summary: str


@dataclass
class ActionRun:
    """One run of the action (action.yml) as a workflow's step: the steps that ran, by id."""

    steps: dict[str, StepResult]
    skipped: list[str]
    outputs: dict[str, str]  # the action's outputs
    artifacts: dict[str, Path]  # what `actions/upload-artifact` would have uploaded, by name

    def __getitem__(self, step_id: str) -> StepResult:
        assert step_id in self.steps, f"step {step_id} did not run (skipped: {self.skipped})"
        return self.steps[step_id]

    @property
    def code(self) -> int:
        return 1 if any(s.code for s in self.steps.values()) else 0

    @property
    def summary(self) -> str:
        return "".join(s.summary for s in self.steps.values())


def lookup(contexts: dict[str, Any], path: str) -> Any:
    head, *parts = path.split(".")
    assert head in contexts, f"no context {head}"
    if head == "secrets":
        assert parts[0] in contexts["secrets"], f"the test gives no secret {parts[0]}"
    if head == "inputs" and "action" in contexts:
        assert parts[0] in contexts["action"], f"action.yml has no input {parts[0]}"
    value: Any = contexts[head]
    for i, part in enumerate(parts):
        if head == "steps" and i == 0:
            assert part in value, f"no step with id {part}"
        value = value.get(part) if isinstance(value, dict) else None
    return value


def expression(text: Any, contexts: dict[str, Any]) -> str:
    """`${{ ... }}` inside a value: each expression evaluated (see `evaluate`), as a string."""
    def one(match: re.Match[str]) -> str:
        value = evaluate(match[1], contexts)
        return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    return re.sub(r"\$\{\{(.*?)\}\}", one, str(text))


TOKENS = re.compile(r"\s*(?:(?P<str>'[^']*')|(?P<op>==|!=|&&|\|\||!|\(|\))|(?P<fn>(?:success|failure|always|cancelled)\(\))"
                    r"|(?P<bool>true|false)\b|(?P<path>[A-Za-z_][\w.-]*))")


def evaluate(expr: str, contexts: dict[str, Any], status: str = "success") -> Any:
    """The subset of GitHub's expression language the workflows and action.yml use: context paths,
    'strings', true/false, ==, !=, !, && and || (which yield an operand, as in GitHub), parentheses
    and the status functions."""
    python, pos, text = [], 0, expr.strip()
    names: dict[str, Any] = {}
    while pos < len(text):
        m = TOKENS.match(text, pos)
        assert m and m.end() > pos, f"expression not understood at {text[pos:]!r}"
        pos = m.end()
        if m["str"]:
            python.append(repr(m["str"][1:-1]))
        elif m["op"]:
            python.append({"==": "==", "!=": "!=", "&&": " and ", "||": " or ", "!": " not ", "(": "(", ")": ")"}[m["op"]])
        elif m["fn"]:
            fn = m["fn"][:-2]
            python.append(repr({"success": status == "success", "failure": status == "failure", "always": True,
                                "cancelled": False}[fn]))
        elif m["bool"]:
            python.append(m["bool"].title())
        else:
            value = lookup(contexts, m["path"])
            names[f"v{len(names)}"] = value
            python.append(f"v{len(names) - 1}")
    return eval("".join(python), {"__builtins__": {}}, names)  # noqa: S307 (test-only, tokens checked above)


def condition(step: dict[str, Any], contexts: dict[str, Any], status: str) -> bool:
    """Whether a step runs: its `if:` (with `${{ }}` or without), implicitly `success() && ...`
    unless it calls a status function."""
    text = str(step.get("if", "success()")).strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    if not re.search(r"\b(success|failure|always|cancelled)\(\)", text):
        text = f"success() && ({text})"
    return bool(evaluate(text, contexts, status))


@dataclass
class Job:
    """One run of one job of a workflow, whose one `run` is the reconciler action: the workflow's
    `with:` and `env:` evaluated, then each step of action.yml in order, as GitHub runs a
    composite action (its `if:`, step outputs and outcomes, GITHUB_ACTION_PATH)."""

    workflow: str
    checkout: Path
    github: FakeGitHub
    secrets: dict[str, str]
    context: dict[str, Any]  # the `github` context: sha, event, ...
    inputs: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)  # `with:` inputs a user would add or change
    runner_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.doc = yaml.safe_load((WORKFLOWS / self.workflow).read_text(encoding="utf-8"))
        (self.job_id, self.job), = self.doc["jobs"].items()
        [self.step] = [s for s in self.job["steps"] if str(s.get("uses", "")).endswith("/reconciler@v1")]

    def run(self) -> ActionRun:
        action = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
        assert action["runs"]["using"] == "composite"
        workflow = {"secrets": self.secrets, "vars": self.vars, "github": self.context, "inputs": self.inputs}
        given = {**self.step.get("with", {}), **self.settings}
        assert set(given) <= set(action["inputs"]), f"not inputs of action.yml: {set(given) - set(action['inputs'])}"
        inputs = {name: expression(given[name] if name in given else spec.get("default", ""), workflow)
                  for name, spec in action["inputs"].items()}
        step_env = {key: expression(value, workflow) for key, value in self.step.get("env", {}).items()}
        done: dict[str, StepResult] = {}
        steps: dict[str, dict[str, str]] = {s["id"]: {"outputs": {}, "outcome": ""} for s in action["runs"]["steps"]
                                             if "id" in s}
        contexts = {"inputs": inputs, "action": action["inputs"], "github": self.context, "steps": steps}
        skipped, artifacts, status = [], {}, "success"
        for index, step in enumerate(action["runs"]["steps"]):
            sid = step.get("id", f"step{index}")
            if not condition(step, contexts, status) or sid == "install":  # the package is already installed here
                skipped.append(sid)
                if sid in steps:
                    steps[sid]["outcome"] = "skipped"
                continue
            if "uses" in step:
                with_ = {key: expression(value, contexts) for key, value in step.get("with", {}).items()}
                if step["uses"].startswith("actions/upload-artifact@"):
                    artifacts[with_["name"]] = self.upload(with_["name"], self.checkout / with_["path"])
                continue  # actions/setup-python: the runner's Python is this test's
            env = {**step_env, **{key: expression(value, contexts) for key, value in step.get("env", {}).items()}}
            result = self.run_step(sid, step, env)
            done[sid] = result
            steps[sid].update(outputs=result.outputs, outcome="success" if result.code == 0 else "failure")
            if result.code:
                status = "failure"
        outputs = {name: expression(spec["value"], contexts) for name, spec in action.get("outputs", {}).items()}
        return ActionRun(done, skipped, outputs, artifacts)

    def upload(self, name: str, path: Path) -> Path:
        kept = self.checkout.parent / "artifacts" / f"{name}-{len(list(self.checkout.parent.glob('artifacts/*')))}"
        shutil.copytree(path, kept)
        return kept

    def run_step(self, step_id: str, step: dict[str, Any], step_env: dict[str, str]) -> StepResult:
        assert "${{" not in step["run"], "inputs reach the shell through env:, never spliced into the script"
        assert step["shell"] == "bash"
        runner = self.checkout.parent / f"runner-{step_id}"
        runner.mkdir(exist_ok=True)
        output, summary = runner / "output", runner / "summary.md"
        output.write_text("", encoding="utf-8")
        summary.write_text("", encoding="utf-8")
        env = {"PATH": f"{self.github.dir}:{BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(runner), "LANG": "C.UTF-8",
               "GH_STUB_DIR": str(self.github.dir), "CI": "true", "GITHUB_ACTIONS": "true",
               "GITHUB_REPOSITORY": REPO, "GITHUB_SHA": self.context["sha"], "GITHUB_RUN_ID": "4242",
               "GITHUB_SERVER_URL": "https://github.com", "GITHUB_WORKSPACE": str(self.checkout),
               "GITHUB_ACTION_PATH": str(ROOT), "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary),
               "RUNNER_TEMP": str(runner), **self.runner_env, **step_env}
        script = runner / "step.sh"
        script.write_text(step["run"], encoding="utf-8")
        # GitHub runs a `shell: bash` step as `bash --noprofile --norc -eo pipefail {0}`.
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=self.checkout,
                              env=env, capture_output=True, text=True, timeout=120)
        outputs = dict(line.split("=", 1) for line in output.read_text(encoding="utf-8").splitlines() if "=" in line)
        result = StepResult(done.returncode, done.stdout, done.stderr, outputs, summary.read_text(encoding="utf-8"))
        seen = result.out + result.err + result.summary + json.dumps(outputs) + json.dumps(self.github.calls())
        assert TOKEN not in seen, f"step {step_id} printed the workspace token"
        return result


class Recipe:
    """A repository set up as the recipe's README says, a workspace, and GitHub (faked)."""

    def __init__(self, ws: Any, tmp: Path) -> None:
        self.ws = ws
        self.tmp = tmp
        self.checkout = tmp / "repo"
        (self.checkout / ".github").mkdir(parents=True)
        shutil.copytree(WORKFLOWS, self.checkout / ".github" / "workflows")
        self.documents = base_documents()
        self.write_manifests()
        self.github = FakeGitHub(tmp / "gh")

    def write_manifests(self) -> None:
        (self.checkout / "manifests").mkdir(exist_ok=True)
        write(self.checkout / "manifests", self.documents, "support-agent.yaml")

    def job(self, workflow: str, *, sha: str, event: dict[str, Any] | None = None, **options: Any) -> Job:
        """A fresh job: a clean checkout state (no files from another job) and empty step outputs."""
        for leftover in ("reconciler-plan", "reconciler-drift"):
            shutil.rmtree(self.checkout / leftover, ignore_errors=True)
        secrets = {"DATABRICKS_HOST": self.ws.url, "DATABRICKS_CLIENT_ID": "", "DATABRICKS_CLIENT_SECRET": ""}
        # The local workspace takes a token rather than OAuth M2M: the runner gets it, the workflow is unchanged.
        return Job(workflow, self.checkout, self.github, secrets, {"sha": sha, "token": "ghs-test", "event": event or {}},
                   runner_env={"DATABRICKS_TOKEN": self.ws.token}, **options)

    def pull_request(self, number: int, head: str) -> Job:
        event = {"pull_request": {"number": number, "head": {"sha": head}}}
        return self.job("reconciler-pr.yml", sha=f"merge-ref-of-{number}", event=event)

    def merge(self, sha: str, **options: Any) -> tuple[StepResult | None, StepResult]:
        """The apply workflow on a push to main: fetch the reviewed plan (unless asked not to), apply."""
        run = self.job("reconciler-apply.yml", sha=sha, **options).run()
        return run.steps.get("reviewed"), run["apply"]

    def deployed(self) -> None:
        """The example manifests applied (as a laptop would), then the request log cleared."""
        result = run(self.ws, "apply", str(self.checkout / "manifests"), "--auto-approve")
        assert result.code == 0, result.out + result.err
        self.ws.reset_requests()

    def workspace_writes(self) -> list[tuple[str, str]]:
        """Writes to serving endpoints and models (the apply lock's lease file left out)."""
        return [(r["method"], r["path"]) for r in self.ws.requests()
                if r["method"] != "GET" and r["path"].startswith(("/api/2.0/serving-endpoints", "/api/2.1/unity-catalog"))]

    def plan_is_empty(self) -> bool:
        result = run(self.ws, "plan", str(self.checkout / "manifests"), "--detailed-exitcode")
        assert result.code in (0, 2), result.err
        return result.code == 0


@pytest.fixture
def recipe(make_workspace, tmp_path) -> Recipe:
    return Recipe(make_workspace(SEED, token=TOKEN), tmp_path)


def shift_traffic(recipe: Recipe, champion: int) -> None:
    routes = endpoint(recipe.documents)["spec"]["traffic_config"]["routes"]
    routes[0]["traffic_percentage"], routes[1]["traffic_percentage"] = champion, 100 - champion
    recipe.write_manifests()


# ---- the workflows themselves ----------------------------------------------------------------------

def test_the_action_and_workflows_validate_against_githubs_schemas():
    """check-jsonschema ships the schemas (pinned in the dev extra): nothing is fetched."""
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert [Path(f).name for f in files] == ["reconciler-apply.yml", "reconciler-drift.yml", "reconciler-pr.yml"]
    for schema, checked in (("vendor.github-workflows", files), ("vendor.github-actions", [str(ACTION)])):
        done = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", schema, *checked],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_workflows_use_the_action_and_copy_no_steps():
    for workflow in WORKFLOWS.glob("*.yml"):
        doc = yaml.safe_load(workflow.read_text(encoding="utf-8"))
        steps = [s for job in doc["jobs"].values() for s in job["steps"]]
        assert [s.get("uses", "").split("@")[0].split("/")[-1] for s in steps] == ["checkout", "reconciler"], workflow
        assert not any("run" in s for s in steps), workflow


def test_an_unknown_command_fails_the_action_at_once(recipe):
    run = recipe.job("reconciler-drift.yml", sha="0a" * 20, settings={"command": "destroy"}).run()
    assert run.code == 1 and list(run.steps) == ["command"]
    assert "command: 'destroy' is not one of validate, plan, apply, drift" in run["command"].out


def test_every_shell_step_is_exercised_here():
    """A new `run:` step without a test fails this; only the package install is not run here."""
    tested = {"command", "validate", "plan", "comment", "reviewed", "apply", "issue"}
    steps = [s for s in yaml.safe_load(ACTION.read_text(encoding="utf-8"))["runs"]["steps"] if "run" in s]
    assert {s.get("id") for s in steps} == tested | {"install"}
    assert all("${{" not in s["run"] for s in steps)


def test_secrets_only_reach_the_action_and_the_github_token_only_its_github_steps():
    for workflow in WORKFLOWS.glob("*.yml"):
        doc = yaml.safe_load(workflow.read_text(encoding="utf-8"))
        assert "secrets." not in json.dumps(doc.get("env", {})), workflow.name
        for job in doc["jobs"].values():
            for step in job["steps"]:
                if "secrets." in json.dumps(step):
                    assert step.get("id") == "reconciler" and "secrets." not in json.dumps(step.get("with")), workflow
    action = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    assert "secrets." not in json.dumps(action) and "DATABRICKS_" not in json.dumps(action["runs"])
    for step in action["runs"]["steps"]:
        if "GH_TOKEN" in step.get("env", {}):
            assert step["id"] in ("comment", "issue", "reviewed"), step["id"]


# ---- pull request, then merge ----------------------------------------------------------------------

def test_pull_request_plan_is_commented_once_and_applied_exactly_on_merge(recipe):
    recipe.deployed()
    shift_traffic(recipe, 50)

    run = recipe.pull_request(7, head="a1" * 20).run()
    assert run["validate"].code == 0
    plan = run["plan"]
    assert (plan.code, plan.outputs["exitcode"], run.outputs["exitcode"]) == (0, "2", "2")  # changes: no failure
    # Unchanged: the model, and the challenger's logged agent (registered as version 4 already).
    assert "Plan: 1 to update; 2 unchanged." in plan.summary
    assert run["comment"].code == 0, run["comment"].err
    assert run.code == 0 and set(run.artifacts) == {"reconciler-plan"}

    state = recipe.github.state()
    [posted] = state["comments"]
    assert posted["issue"] == 7 and posted["body"].startswith("<!-- reconciler-plan:default -->\n### reconciler plan")
    assert "**Plan: 1 to update; 2 unchanged.**" in posted["body"]
    assert "- **traffic shift** `serving_endpoint.support-agent`: traffic[challenger] 10% → 50%, " \
           "traffic[champion] 90% → 50%" in posted["body"]
    assert "<details><summary><code>~ serving_endpoint.support-agent</code> <b>update</b>" in posted["body"]
    assert "`plan --detailed-exitcode`: 2" in posted["body"]
    [check] = state["check_runs"]
    assert (check["name"], check["head_sha"], check["conclusion"]) == ("reconciler plan", "a1" * 20, "neutral")
    assert check["output"]["title"] == "Changes: 1 to update"

    # Another push to the pull request: the same comment is edited, not a second one posted.
    endpoint(recipe.documents)["spec"]["tags"]["team"] = "cx"
    recipe.write_manifests()
    run = recipe.pull_request(7, head="b2" * 20).run()
    assert run.outputs["exitcode"] == "2" and run["comment"].code == 0
    state = recipe.github.state()
    [edited] = state["comments"]
    assert edited["id"] == posted["id"] and 'tags[team]: "support" → "cx"' in edited["body"]
    assert recipe.github.writes() == ["POST issues/7/comments", "POST check-runs",
                                      f"PATCH issues/comments/{posted['id']}", "POST check-runs"]
    assert recipe.workspace_writes() == []  # planning never writes

    # Merge: the apply workflow finds the pull request's run, downloads its plan and applies exactly it.
    artifact = run.artifacts["reconciler-plan"]
    assert {p.name for p in artifact.iterdir()} >= {"plan.json", "plan.md", "manifests.sha256"}
    recipe.github.merged(commit="c3" * 20, pr=7, head="b2" * 20, plan_dir=artifact, run_id=555)
    fetched, applied = recipe.merge("c3" * 20)
    assert fetched.outputs == {"pr": "7", "run": "555"}
    assert applied.code == 0, applied.out + applied.err
    assert "## reconciler apply: applied" in applied.summary
    assert "Applied the plan reviewed on #7 ([plan run](https://github.com/acme/agents/actions/runs/555))." \
        in applied.summary
    assert "**Plan: 1 to update; 2 unchanged.**" in applied.summary and "Apply complete: 1 applied" in applied.summary
    assert "::warning" not in applied.out  # no fallback
    assert recipe.workspace_writes() == [("PATCH", "/api/2.0/serving-endpoints/support-agent/tags"),
                                         ("PUT", "/api/2.0/serving-endpoints/support-agent/config")]
    assert recipe.plan_is_empty()


def test_a_push_without_a_pull_request_applies_a_fresh_plan(recipe):
    fetched, applied = recipe.merge("d4" * 20)
    assert fetched.outputs == {"note": f"no merged pull request for commit {'d4' * 3}d"}
    assert applied.code == 0, applied.out + applied.err
    assert f"Applied a fresh plan of main at {'d4' * 3}d, because no reviewed plan (no merged pull request for " \
           f"commit {'d4' * 3}d)." in applied.summary
    assert "**Plan: 1 to create, 1 to update; 1 unchanged.**" in applied.summary  # 1: the registered challenger
    assert "::warning title=reconciler apply::Applying a fresh plan of main" in applied.out
    assert recipe.plan_is_empty()


def test_a_stale_reviewed_plan_is_refused_or_planned_again(recipe):
    recipe.deployed()
    shift_traffic(recipe, 70)
    run = recipe.pull_request(8, head="e5" * 20).run()
    assert run.outputs["exitcode"] == "2"
    recipe.github.merged(commit="f6" * 20, pr=8, head="e5" * 20, plan_dir=run.artifacts["reconciler-plan"], run_id=556)

    # Someone changes the endpoint by hand between review and merge.
    recipe.ws.client().serving_endpoints.patch("support-agent", add_tags=[EndpointTag(key="oncall", value="alice")])
    recipe.ws.reset_requests()

    _, refused = recipe.merge("f6" * 20, settings={"on-stale": "fail"})
    assert refused.code == 1
    assert "the saved plan is stale" in refused.out
    assert "**Nothing was applied**: the workspace changed since #8 was planned" in refused.summary
    assert recipe.workspace_writes() == []

    _, applied = recipe.merge("f6" * 20)  # the default: plan main again and apply that
    assert applied.code == 0, applied.out + applied.err
    assert "because the workspace changed since #8 was planned" in applied.summary
    assert '- tags[oncall]: "alice"' in applied.summary  # the fresh plan shows what it undoes
    assert recipe.plan_is_empty()


def test_a_plan_of_other_manifests_is_not_applied(recipe):
    """Main moved on after the pull request was planned: its saved plan is not what main says."""
    recipe.deployed()
    shift_traffic(recipe, 60)
    run = recipe.pull_request(9, head="a7" * 20).run()
    assert run.outputs["exitcode"] == "2"
    recipe.github.merged(commit="b8" * 20, pr=9, head="a7" * 20, plan_dir=run.artifacts["reconciler-plan"], run_id=557)
    endpoint(recipe.documents)["spec"]["tags"]["team"] = "cx"  # merged to main by another pull request
    recipe.write_manifests()

    _, applied = recipe.merge("b8" * 20)
    assert applied.code == 0, applied.out + applied.err
    assert "because main's manifests are not the ones #9 planned" in applied.summary
    assert recipe.plan_is_empty()


def test_a_reader_plans_for_the_deployer_which_applies_it(recipe):
    """CI plans with a read-only identity for the deploying one (RECONCILER_DEPLOYER), which then
    applies exactly that plan. Without the setting the plan is made for the reader, and the apply
    job refuses it before any write and fails, saying why."""
    ws = recipe.ws
    ws.add_seed({"users": [{"user_name": "ci-reader@example.com", "admin": True}]})
    ws.add_token("ci-reader-token", read_only=True, principal="ci-reader@example.com")
    deployer = {"RECONCILER_DEPLOYER": ws.client().current_user.me().user_name}
    recipe.deployed()
    for number, settings, head, merged in ((13, {}, "c1" * 20, "c2" * 20), (14, deployer, "d1" * 20, "d2" * 20)):
        endpoint(recipe.documents)["spec"]["tags"]["team"] = f"team-{number}"
        recipe.write_manifests()
        job = recipe.pull_request(number, head=head)
        job.vars.update(settings)
        job.runner_env["DATABRICKS_TOKEN"] = "ci-reader-token"
        run = job.run()
        assert run.outputs["exitcode"] == "2"
        recipe.github.merged(commit=merged, pr=number, head=head, plan_dir=run.artifacts["reconciler-plan"],
                             run_id=600 + number)
        ws.reset_requests()
        _, applied = recipe.merge(merged, vars=dict(settings))
        if not settings:
            assert applied.code == 1 and recipe.workspace_writes() == []
            assert 'deployer: the plan keeps CAN_MANAGE for "user_name:ci-reader@example.com"' in applied.out
            assert "## reconciler apply: failed" in applied.summary
        else:
            assert applied.code == 0, applied.out + applied.err
            assert "Applied the plan reviewed on #14" in applied.summary
            assert recipe.workspace_writes() == [("PATCH", "/api/2.0/serving-endpoints/support-agent/tags")]
    assert recipe.plan_is_empty()


def test_the_plans_variables_reach_apply_too(recipe):
    """Manifests with a variable (RECONCILER_VAR_FILE): the apply job plans again with the same file,
    so the reviewed plan is what it applies."""
    recipe.deployed()
    endpoint(recipe.documents)["spec"]["tags"]["team"] = "${var.team}"
    recipe.write_manifests()
    (recipe.checkout / "vars.yaml").write_text("team: cx\n", encoding="utf-8")
    job = recipe.pull_request(15, head="e1" * 20)
    job.settings["var-file"] = "vars.yaml"
    run = job.run()
    assert run.outputs["exitcode"] == "2"
    assert json.loads((recipe.checkout / "reconciler-plan" / "plan.json").read_text())["source"]["variables"] == \
        ["team"]
    recipe.github.merged(commit="e2" * 20, pr=15, head="e1" * 20, plan_dir=run.artifacts["reconciler-plan"],
                         run_id=615)
    run = recipe.job("reconciler-apply.yml", sha="e2" * 20, settings={"var-file": "vars.yaml"}).run()
    assert run.outputs["pr"] == "15"
    applied = run["apply"]
    assert applied.code == 0, applied.out + applied.err
    assert "Applied the plan reviewed on #15" in applied.summary and "::warning" not in applied.out
    assert recipe.workspace_writes() == [("PATCH", "/api/2.0/serving-endpoints/support-agent/tags")]


# ---- pull request errors ----------------------------------------------------------------------------

def test_invalid_manifests_are_annotated_where_they_are_wrong(recipe):
    endpoint(recipe.documents)["spec"]["traffic_config"]["routes"][0]["traffic_percentage"] = 95
    recipe.write_manifests()
    run = recipe.pull_request(10, head="c9" * 20).run()
    result = run["validate"]
    assert result.code == 1 and run.code == 1
    annotations = [line for line in result.out.splitlines() if line.startswith("::error ")]
    assert annotations and all(re.match(r"::error file=manifests/support-agent\.yaml,line=\d+,col=\d+,"
                                        r"title=reconciler validate::\S", a) for a in annotations)
    # The plan step and the upload are skipped; the comment step still runs and shows the problems.
    assert "plan" in run.skipped and run.artifacts == {} and run["comment"].code == 0
    state = recipe.github.state()
    [posted] = state["comments"]
    assert "### reconciler: the manifests are not valid" in posted["body"]
    assert annotations[0].split("::")[-1] in posted["body"]
    assert state["check_runs"][0]["conclusion"] == "failure"


def test_a_failed_plan_fails_the_check_and_says_why_on_the_pull_request(recipe):
    job = recipe.pull_request(11, head="d0" * 20)
    job.runner_env["DATABRICKS_TOKEN"] = "dapi-revoked"  # e.g. a service principal secret that expired
    run = job.run()
    plan = run["plan"]
    assert (plan.code, plan.outputs["exitcode"], run.code) == (1, "1", 1)
    [error] = [line for line in plan.out.splitlines() if line.startswith("::error title=reconciler plan::")]
    assert run["comment"].code == 0 and run.artifacts == {}
    state = recipe.github.state()
    [posted] = state["comments"]
    assert posted["body"].startswith("<!-- reconciler-plan:default -->\n### reconciler plan failed\n")
    assert error.split("::")[-1].split("%0A")[0] in posted["body"]
    assert "dapi-revoked" not in plan.out + plan.err + posted["body"]
    assert state["check_runs"][0]["conclusion"] == "failure"


# ---- nightly drift -----------------------------------------------------------------------------------

def test_nightly_drift_keeps_one_issue_open_until_the_workspace_matches_again(recipe):
    recipe.deployed()

    def nightly() -> tuple[StepResult, StepResult]:
        run = recipe.job("reconciler-drift.yml", sha="f1" * 20).run()
        assert run["plan"].code == 0, run["plan"].err
        assert "validate" in run.skipped and "comment" in run.skipped and run.artifacts == {}
        return run["plan"], run["issue"]

    recipe.ws.client().serving_endpoints.patch("support-agent", add_tags=[EndpointTag(key="team", value="platform")])
    plan, issue = nightly()
    assert (plan.outputs["exitcode"], issue.code) == ("2", 0), issue.err
    [opened] = recipe.github.state()["issues"]
    assert opened["title"] == "reconciler: the workspace has drifted from main (stack default)"
    assert opened["labels"] == [{"name": "reconciler-drift"}] and opened["state"] == "open"
    assert 'tags[team]: "platform" → "support"' in opened["body"]
    assert "::warning title=reconciler drift::The workspace has drifted from main: 1 to update." in issue.out

    plan, issue = nightly()  # still drifted: the same issue, its body replaced
    assert [i["number"] for i in recipe.github.state()["issues"]] == [opened["number"]]

    fetched, applied = recipe.merge("f2" * 20, inputs={"fresh-plan": True})  # put main back, by hand
    assert fetched is None and applied.code == 0, applied.out + applied.err
    plan, issue = nightly()
    assert plan.outputs["exitcode"] == "0"
    [closed] = recipe.github.state()["issues"]
    assert (closed["state"], closed["state_reason"]) == ("closed", "completed")
    assert recipe.github.writes() == ["POST labels", "POST issues", f"PATCH issues/{opened['number']}",
                                      f"POST issues/{opened['number']}/comments", f"PATCH issues/{opened['number']}"]


# ---- pre-commit --------------------------------------------------------------------------------------

def test_pre_commit_hooks_run_what_they_promise(tmp_path):
    """Each hook's entry, run as pre-commit runs it (language: python puts `reconciler` on PATH),
    in a repository that uses this one as a hook."""
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))}
    assert set(hooks) == {"reconciler-validate", "reconciler-schema-check"}
    validate, schema = hooks["reconciler-validate"], hooks["reconciler-schema-check"]
    assert all(h["language"] == "python" and h["pass_filenames"] is False for h in hooks.values())
    assert re.search(validate["files"], "manifests/support-agent.yaml")
    assert re.search(validate["files"], "manifests/prod/agents.yml")
    assert not re.search(validate["files"], "README.md")
    assert re.search(schema["files"], "schemas/manifest.schema.json")
    assert re.search(schema["files"], ".pre-commit-config.yaml")  # a new hook rev can make the schema stale

    def hook(entry: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path)}
        return subprocess.run(shlex.split(entry), cwd=cwd, env=env, capture_output=True, text=True, timeout=60)

    user_repo = tmp_path / "agents"
    (user_repo / "manifests").mkdir(parents=True)
    docs = base_documents()
    write(user_repo / "manifests", docs, "support-agent.yaml")
    assert hook(validate["entry"], user_repo).returncode == 0
    endpoint(docs)["spec"]["served_entities"][0]["environment_vars"]["OPENAI_API_KEY"] = "sk-plain"
    write(user_repo / "manifests", docs, "support-agent.yaml")
    failed = hook(validate["entry"], user_repo)
    assert failed.returncode == 1 and "manifests/support-agent.yaml:" in failed.stderr
    assert hook(schema["entry"], ROOT).returncode == 0
    assert hook(schema["entry"], user_repo).returncode == 1  # no schema committed there: the hook says so

