"""The `reconciler` command line.

Only click (and the small interrupts.py) is imported at start-up; each command imports what it
needs (pydantic for manifests, databricks-sdk for workspace access) so `--help` and `validate`
stay fast. `main()` runs a command with stdout and stderr behind the redaction layer (redact.py)
and its signal handling installed (interrupts.py), and is the one place errors become output: a
`ReconcilerError` prints one line per problem on stderr and exits 1, an interrupt exits 130 (143
for SIGTERM), anything unexpected is reported in one line too, never as a traceback
(RECONCILER_DEBUG=1 shows it, redacted like everything else).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from reconciler.interrupts import Interrupts

DEFAULT_PATHS = ("manifests",)
PLAN_FILE_BYTES = 64 * 1024 * 1024  # a plan of thousands of objects is a few MiB
DEFAULT_DEADLINE = "15m"  # plan and export; apply has none unless given (rollouts may take hours)
# This run's signal handling and its start (for --deadline), set by `main` (per thread: tests run
# several commands at once in one process).
RUN = threading.local()


class Duration(click.ParamType):
    """90s, 30m, 1h, 1h30m or a number of seconds; negative (and, unless `zero_ok`, zero) is a
    usage error naming the option, as is anything else (`5minutes`)."""

    name = "duration"
    PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(h|m|s)")

    def __init__(self, *, zero_ok: bool = False) -> None:
        self.zero_ok = zero_ok

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        if isinstance(value, (int, float)):
            seconds = float(value)
        else:
            text = str(value).strip()
            if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", text):
                seconds = float(text)
            elif text and re.fullmatch(rf"(?:{self.PART.pattern})+", text):
                seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in self.PART.findall(text))
            elif text.startswith("-") and re.fullmatch(rf"(?:{self.PART.pattern})+", text[1:]):
                seconds = -1.0
            else:
                self.fail(f"'{value}': expected a duration such as 90s, 30m, 1h or 1h30m", param, ctx)
        if seconds < 0 or (seconds == 0 and not self.zero_ok):
            self.fail(f"'{value}': must not be negative" if self.zero_ok else f"'{value}': must be more than zero",
                      param, ctx)
        return seconds


def deadline_option(default: str | None) -> Callable[..., Any]:
    help_text = "Bound on the whole run, retries and waits included (90s, 30m, 1h)" + \
        ("." if default else "; none unless given, since rollouts may take hours.")
    return click.option("--deadline", default=default, show_default=bool(default), type=Duration(),
                        help=help_text)


def _run_state() -> Any:
    if not hasattr(RUN, "interrupts"):  # a command invoked without `main` (click's own runner)
        RUN.interrupts, RUN.started = Interrupts(), time.monotonic()
    return RUN


def connect(profile: str | None, parallelism: int, deadline: float | None, progress: Any) -> Any:
    """The workspace, bounded by --deadline from the start of the run, reporting retries to
    `progress`, and watched by this run's signal handling (interrupts.py)."""
    from reconciler.workspace import Workspace

    with _kept():  # the SDK's modules
        workspace = Workspace.connect(profile=profile, parallelism=parallelism)
    if deadline is not None:
        workspace.deadline = _run_state().started + deadline
    workspace.on_retry = progress
    _run_state().interrupts.watch(workspace)
    return workspace


def manifest_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """PATHS, --var and --var-file: shared by every command that reads manifests."""
    command = click.option("--var-file", "var_files", multiple=True, metavar="FILE",
                           help="YAML file of NAME: value variables.")(command)
    command = click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
                           help="Set ${var.NAME}; overrides --var-file and RECONCILER_VAR_NAME.")(command)
    return click.argument("paths", nargs=-1, type=click.Path())(command)


def load(paths: tuple[str, ...], variables: tuple[str, ...], var_files: tuple[str, ...],
         stack: str | None = None) -> Any:
    from reconciler import api

    with _kept():
        return api.load(paths or DEFAULT_PATHS, variables=variables, var_files=var_files, stack=stack)


@contextmanager
def _kept() -> Iterator[None]:
    """For what stays until the run ends (the manifests, the SDK's modules): the cyclic garbage
    collector is paused while it is made, then told never to walk it (`gc.freeze`). 10,000 manifest
    documents are about two million objects; each full pass of the collector, which their growth
    and a plan's thousands of answers trigger again and again, would walk them all (seconds, in
    total). Loading makes no reference cycles (tests/test_validate.py), so nothing is kept that
    should have been freed; `main` unfreezes when the command ends."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


def target_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--target", "targets", multiple=True, metavar="ADDRESS",
                        help="Only this object (an address as the plan prints it, e.g. serving_endpoint.NAME) and "
                             "what it depends on; repeatable.")(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="reconciler")
@click.option("--no-color", is_flag=True, help="No colour on a terminal either (as NO_COLOR=1 does).")
def cli(no_color: bool) -> None:
    """Declarative GitOps for AI agents on Databricks: Unity Catalog models, aliases and
    Model Serving endpoints, described in YAML and reconciled with minimal writes."""


def colour() -> bool:
    """Whether stdout gets colour: a terminal, without --no-color or NO_COLOR (render.wants_colour)."""
    from reconciler.render import wants_colour

    return wants_colour(sys.stdout, no_color=bool(click.get_current_context().find_root().params.get("no_color")))


def checked_stack(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--stack names a lease file and a tag value: held to its grammar before anything uses it."""
    from reconciler.errors import ReconcilerError
    from reconciler.terms import name_problem

    problem = name_problem("stack", value) if value is not None else None
    if problem:
        raise ReconcilerError(f"--stack: {problem}")
    return value


@cli.command()
@manifest_options
@click.option("--stack", envvar="RECONCILER_STACK", default=None, metavar="NAME", callback=checked_stack,
              help="Stack name, for policies that match on stacks (as plan and apply use it).")
def validate(paths: tuple[str, ...], variables: tuple[str, ...], var_files: tuple[str, ...], stack: str | None) -> None:
    """Parse, type-check and cross-check manifests offline, and check them against policies (default: manifests/)."""
    manifests = load(paths, variables, var_files, stack).manifests
    for warning in manifests.warnings:  # unknown enum values, broken warning-severity policy rules
        click.echo(str(dataclasses.replace(warning, message=f"warning: {warning.message}")), err=True)
    policies = f", {len(manifests.policies)} policy(ies)" if manifests.policies else ""
    click.echo(f"valid: {len(manifests.models)} registered model(s), {len(manifests.endpoints)} serving "
               f"endpoint(s){policies} in {len(manifests.files)} file(s)")


def workspace_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Auth and read options shared by plan and apply (auth itself is the SDK's unified auth)."""
    command = click.option("--stack", envvar="RECONCILER_STACK", default=None, metavar="NAME", callback=checked_stack,
                           help="Stack name tagged on endpoints; --prune only touches this stack's.")(command)
    command = click.option("--parallelism", default=16, show_default=True, type=click.IntRange(1, 64),
                           help="Concurrent API calls.")(command)
    return click.option("--profile", default=None, help="Profile in ~/.databrickscfg (else DATABRICKS_HOST/"
                                                        "DATABRICKS_TOKEN and the SDK's other auth).")(command)


def deployer_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--deployer", envvar="RECONCILER_DEPLOYER", default=None, metavar="IDENTITY",
                        help="The identity that applies (a user's e-mail or a service principal's application id): it "
                             "keeps CAN_MANAGE on endpoints whose permissions apply writes, and plan checks it can "
                             "apply. Default: the identity running the command.")(command)


@cli.command()
@manifest_options
@workspace_options
@deployer_option
@click.option("--out", type=click.Path(dir_okay=False), help="Save the plan (JSON) for `apply --plan`.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when no changes, 2 when there are changes.")
@click.option("--prune", is_flag=True, help="Show deletes for managed endpoints no longer in the manifests.")
@target_option
@deadline_option(DEFAULT_DEADLINE)
def plan(paths: tuple[str, ...], variables: tuple[str, ...], var_files: tuple[str, ...], profile: str | None,
         parallelism: int, stack: str | None, deployer: str | None, out: str | None, fmt: str, detailed_exitcode: bool,
         prune: bool, targets: tuple[str, ...], deadline: float) -> int:
    """Read the live workspace and show what apply would change."""
    from reconciler import api
    from reconciler.render import Progress

    loaded = load(paths, variables, var_files, stack)
    progress = Progress(sys.stderr, live=False)  # retries and heartbeats; stdout holds the plan
    try:
        workspace = connect(profile, parallelism, deadline, progress)
        the_plan = api.plan(loaded, client=workspace, prune=prune, deployer=deployer, targets=targets,
                            parallelism=parallelism)
    finally:
        progress.close()
    if out:
        from reconciler.files import write_atomically

        write_atomically(out, the_plan.render("json"))
    click.echo(the_plan.render(fmt, colour=fmt == "text" and colour()), nl=False)
    if fmt == "text":
        if out:
            click.echo(f"Saved the plan to {out}; apply exactly it with: reconciler apply --plan {out}")
    return 2 if detailed_exitcode and the_plan.has_changes else 0


@cli.command()
@manifest_options
@workspace_options
@deployer_option
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False),
              help="Apply only if planning again (from the manifests it records, or PATHS) gives exactly this plan.")
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
@click.option("--prune", is_flag=True, help="Delete managed endpoints no longer in the manifests.")
@click.option("--allow-replace", is_flag=True, help="Allow delete-and-recreate of endpoints (downtime).")
@click.option("--timeout", default="30m", show_default=True, type=Duration(),
              help="Longest wait for one endpoint update (90s, 30m, 1h); a rollout's pauses are not counted.")
@click.option("--no-wait", is_flag=True, help="Do not wait for endpoint updates (linked alias moves are skipped; "
                                              "endpoints with a rollout to make are not applied).")
@click.option("--lock/--no-lock", default=True, show_default=True,
              help="Hold the stack's lease file in the workspace so two applies never interleave.")
@click.option("--lock-timeout", default="0s", show_default=True, type=Duration(zero_ok=True),
              help="How long to wait for the lock (e.g. 10m).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: the audit record of what was applied on stdout (schemas/apply.schema.json); the plan "
                   "and progress go to stderr.")
@target_option
@deadline_option(None)
def apply(paths: tuple[str, ...], variables: tuple[str, ...], var_files: tuple[str, ...], profile: str | None,
          parallelism: int, stack: str | None, deployer: str | None, plan_file: str | None, auto_approve: bool,
          prune: bool, allow_replace: bool, timeout: float, no_wait: bool, lock: bool, lock_timeout: float,
          fmt: str, targets: tuple[str, ...], deadline: float | None) -> int:
    """Make the workspace match the manifests (or a saved plan) with the fewest writes."""
    import json

    from reconciler import api, pipeline
    from reconciler.errors import ReconcilerError
    from reconciler.render import Progress

    err = fmt == "json"  # stdout holds the audit record only
    saved = load_plan(plan_file) if plan_file else None  # claims to compare, checked before any request
    if saved is not None and not paths:
        paths = tuple(saved["source"]["paths"])
        click.echo(f"Planning again from the manifests {plan_file} was made from: {' '.join(paths)}", err=err)
    loaded = load(paths, variables, var_files, stack)
    progress = Progress(sys.stderr if err else None)
    try:
        workspace = connect(profile, parallelism, deadline, progress)
        if saved is not None:
            check_host(plan_file or "", saved, workspace.host)
        # Planned without the lock first: nothing to apply, nothing written (not even the lease).
        first = api.plan(loaded, client=workspace, prune=prune, deployer=deployer, targets=targets,
                         parallelism=parallelism)
        if saved is not None:
            pipeline.check_saved(saved, first)  # before any write: one line per difference
        progress.detach()
        coloured = not err and colour()
        click.echo(first.render("text", colour=coloured), nl=False, err=err)
        if first.has_changes and not (auto_approve or saved is not None):
            if not sys.stdin.isatty():
                raise ReconcilerError("refusing to ask for confirmation without a terminal; pass --auto-approve, "
                                      "or apply a reviewed plan with --plan FILE")
            with _run_state().interrupts.raising():
                confirmed = click.confirm("Apply these changes?", default=False, err=err)
            if not confirmed:
                click.echo("Nothing applied.", err=err)
                return 1

        def planned_under_lock(fresh: Any) -> None:
            if fresh.to_json() != first.to_json():  # only with --auto-approve: otherwise it must be `first`
                click.echo("The workspace changed before the apply lock was taken; applying the plan made under "
                           "it:\n" + fresh.render("text", colour=coloured), nl=False, err=err)

        # What was reviewed (a saved plan, or the plan confirmed here) is applied exactly; with
        # --auto-approve, what the manifests ask once the lock is held.
        result = api.apply(first, loaded, client=workspace, exact=saved is not None or not auto_approve,
                           allow_replace=allow_replace, wait=not no_wait, timeout_seconds=timeout, lock=lock,
                           lock_timeout_seconds=lock_timeout, parallelism=parallelism, progress=progress,
                           on_plan=planned_under_lock)
    finally:
        progress.close()
    code = report(result.outcomes, err=err) if result.plan.has_changes else 0
    if err:
        click.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    if result.lease_lost is not None:
        raise result.lease_lost  # one line: the lease was lost, the run stopped before its next write
    return code


def check_host(plan_file: str, saved: dict[str, Any], host: str) -> None:
    """A saved plan applies only to the workspace it was made against (said before the lock is taken)."""
    from reconciler.errors import ReconcilerError

    made = saved.get("workspace_host")
    if not made:
        raise ReconcilerError(f"{plan_file}: names no workspace it was made against; plan again with "
                              "`reconciler plan --out`")
    if made != host:
        raise ReconcilerError(f"{plan_file}: made against {str(made)[:200]}, not {host}; plan again against this "
                              "workspace")


def load_plan(path: str) -> dict[str, Any]:
    """A saved plan's claims (plan.read_saved): never executed, only compared with a new plan."""
    import json

    from reconciler.errors import Problem, ReconcilerError
    from reconciler.files import Unreadable, read_regular
    from reconciler.plan import read_saved

    try:
        data = json.loads(read_regular(path, limit=PLAN_FILE_BYTES).decode("utf-8"))
    except Unreadable as exc:
        raise ReconcilerError(f"{path}: cannot read plan: it {exc}") from None
    except OSError as exc:
        raise ReconcilerError(f"{path}: cannot read plan: {exc.strerror or exc}") from None
    except RecursionError:
        raise ReconcilerError(f"{path}: not a JSON plan (nested too deeply)") from None
    except ValueError as exc:
        raise ReconcilerError(f"{path}: not a JSON plan ({exc})") from None
    try:
        return read_saved(data)
    except ReconcilerError as exc:
        raise ReconcilerError([Problem(f"{path}: {p.message}") for p in exc.problems]) from None


def report(outcomes: list[Any], *, err: bool = False) -> int:
    failed = [o for o in outcomes if o.status in ("failed", "skipped")]
    click.echo("", err=err)
    for outcome in outcomes:
        did = "; ".join(outcome.writes) or "no write needed"
        line = f"  {outcome.status:10} {outcome.address}: {did}"
        click.echo(line + (f" | {outcome.detail}" if outcome.detail else ""), err=err)
    applied = sum(1 for o in outcomes if o.status in ("applied", "sent"))
    not_waited = sum(1 for o in outcomes if o.status == "not waited")
    click.echo(f"Apply {'failed' if failed else 'complete'}: {applied} applied, "
               f"{sum(1 for o in outcomes if o.status == 'failed')} failed, "
               f"{sum(1 for o in outcomes if o.status == 'skipped')} not applied"
               + (f", {not_waited} not waited for (--no-wait: run apply again to finish)." if not_waited else "."),
               err=err)
    if failed:
        click.echo("Fix the cause and run apply again: it picks up where this run stopped.", err=err)
    return 1 if failed else 0


@cli.command()
@workspace_options
@click.option("--endpoint", "endpoints", multiple=True, metavar="NAME", help="Serving endpoint to export (repeatable).")
@click.option("--model", "models", multiple=True, metavar="FULL_NAME",
              help="Registered model catalog.schema.model to export (repeatable).")
@click.option("--all-endpoints", is_flag=True, help="Export every serving endpoint of the workspace.")
@click.option("--out", "out_dir", default="manifests", show_default=True, metavar="DIR",
              help="Write DIR/endpoints/<name>.yaml and DIR/models/<catalog.schema.model>.yaml.")
@click.option("--pin-versions", is_flag=True, help="Write entity_version, not the alias that points at it.")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="Write ${var.NAME} where a name or value (or a part of a UC name) equals VALUE.")
@click.option("--var-file", "var_files", multiple=True, metavar="FILE", help="YAML file of NAME: value variables.")
@deadline_option(DEFAULT_DEADLINE)
def export(profile: str | None, parallelism: int, stack: str | None, endpoints: tuple[str, ...],
           models: tuple[str, ...], all_endpoints: bool, out_dir: str, pin_versions: bool,
           variables: tuple[str, ...], var_files: tuple[str, ...], deadline: float) -> None:
    """Write manifests for existing endpoints and models (then `plan` shows no changes)."""
    from reconciler.errors import Problem, ReconcilerError
    from reconciler.export import convert, read, write
    from reconciler.export.documents import ExportOptions
    from reconciler.manifests.variables import collect_variables
    from reconciler.render import Progress

    if not (endpoints or models or all_endpoints):
        raise ReconcilerError("nothing to export: name objects with --endpoint NAME or --model FULL_NAME, or pass "
                              "--all-endpoints")
    options = ExportOptions(pin_versions=pin_versions, variables=collect_variables(variables, var_files), stack=stack)
    progress = Progress(sys.stderr, live=False)  # retries and heartbeats
    try:
        workspace = connect(profile, parallelism, deadline, progress)
        live = read.read_live(workspace, endpoints=endpoints, models=models, all_endpoints=all_endpoints,
                              pin_versions=pin_versions, parallelism=parallelism)
    finally:
        progress.close()
    result = convert.export_objects(live, options)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    written = write.write_export(out_dir, result)
    for line in write.summary(result, written, out_dir, options):
        click.echo(line)
    if not result.documents:  # the summary line sorts first (it names no object): it introduces the list
        raise ReconcilerError(result.problems + [Problem("nothing was exported:")])
    if result.problems:
        raise ReconcilerError(result.problems + [Problem(f"exported {len(result.documents)} object(s); "
                                                         f"{len(result.problems)} could not be exported:")])


@cli.command()
@click.option("--out", "out_dir", default="schemas", show_default=True, help="Directory to write into.")
@click.option("--check", is_flag=True, help="Exit 1 if the file there is not what would be written.")
def schema(out_dir: str, check: bool) -> None:
    """Write the manifests' JSON Schema (schemas/manifest.schema.json)."""
    from reconciler.errors import Problem, ReconcilerError
    from reconciler.schema import SCHEMA_FILE, output_schema_problems, schema_is_current, write_schema

    if check:
        if not schema_is_current(out_dir):
            raise ReconcilerError(f"{os.path.join(out_dir, SCHEMA_FILE)} is stale or missing; run `reconciler schema`"
                                  " (or `make schema`) and commit the result")
        problems, checked = output_schema_problems(out_dir)
        if problems:
            raise ReconcilerError([Problem(p) for p in problems])
        click.echo(f"{os.path.join(out_dir, SCHEMA_FILE)} is up to date")
        for path in checked:
            click.echo(f"{path} names what the code writes")
        return
    click.echo(f"wrote {write_schema(out_dir)}")


@cli.group()
def sim() -> None:
    """The local workspace: a Databricks API look-alike for demos and tests."""


@sim.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--seed", type=click.Path(exists=True, dir_okay=False), help="YAML/JSON of API-shaped objects.")
@click.option("--latency-ms", default=0, show_default=True, type=int, help="Added to every API request.")
@click.option("--update-seconds", default=1.0, show_default=True, type=float,
              help="How long endpoint creates and config updates stay IN_PROGRESS.")
@click.option("--fault-rate", default=0.0, show_default=True, type=float,
              help="Share of API requests answered with 429/503 or a dropped connection.")
@click.option("--fault-seed", default=None, type=int, help="Makes fault injection reproducible.")
@click.option("--token", default=None, help="Bearer token to accept (default: printed at start).")
def serve(host: str, port: int, seed: str | None, latency_ms: int, update_seconds: float, fault_rate: float,
          fault_seed: int | None, token: str | None) -> None:
    """Run the local workspace until interrupted."""
    from reconciler.errors import ReconcilerError
    from reconciler.localworkspace.server import run

    try:
        run(host=host, port=port, seed=seed, latency_ms=latency_ms, update_seconds=update_seconds,
            fault_rate=fault_rate, fault_seed=fault_seed, token=token)
    except ValueError as exc:
        raise ReconcilerError(str(exc)) from None
    except OSError as exc:
        raise ReconcilerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


@sim.command()
@click.argument("endpoint")
@click.option("--url", default="http://127.0.0.1:8765", show_default=True, help="The local workspace.")
@click.option("--token", envvar="DATABRICKS_TOKEN", default=None, help="Bearer token [env DATABRICKS_TOKEN; "
              "default: the local workspace's]")
@click.option("--count", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--rate", default=20.0, show_default=True, type=click.FloatRange(min=0),
              help="Queries per second (0: as fast as the workers go).")
@click.option("--served-entity", default=None, help="Query this served entity only, whatever its traffic share.")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(min=1), help="Queries in flight at most.")
def traffic(endpoint: str, url: str, token: str | None, count: int, rate: float, served_entity: str | None,
            workers: int) -> None:
    """Send COUNT chat queries to ENDPOINT over HTTP and summarise the answers."""
    from reconciler.errors import ReconcilerError
    from reconciler.localworkspace.server import DEFAULT_TOKEN
    from reconciler.localworkspace.traffic import send_queries

    report = send_queries(url, token or DEFAULT_TOKEN, endpoint, count=count, rate=rate,
                          served_entity=served_entity, workers=workers)
    if not report.sent - report.statuses[0]:
        raise ReconcilerError(f"traffic: {endpoint}: {report.first_error or 'no answer'} ({url})")
    click.echo(f"{endpoint}: {report.summary()}")


def main(argv: list[str] | None = None) -> None:
    """Run one command with stdout and stderr behind the redaction layer, and turn what it raised
    into one line per problem and an exit code."""
    from reconciler import redact

    RUN.interrupts, RUN.started = Interrupts(), time.monotonic()
    saved = sys.stdout, sys.stderr
    with redact.REDACTOR.run():
        redact.register_url(os.environ.get("DATABRICKS_HOST"))
        sys.stdout, sys.stderr = redact.RedactingStream(sys.stdout), redact.RedactingStream(sys.stderr)
        try:
            code = _run(argv)
        finally:
            gc.unfreeze()  # what `_kept` froze: collectable again when a command runs in-process (tests)
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            sys.stdout, sys.stderr = saved
    sys.exit(code)


def _run(argv: list[str] | None) -> int:
    from reconciler.errors import Interrupted, ReconcilerError

    try:
        _run_state().interrupts.install()
        try:
            code = cli.main(args=argv, prog_name="reconciler", standalone_mode=False)
        finally:
            _run_state().interrupts.restore()  # a signal while the outcome is printed is no longer ours
    except Interrupted as exc:
        click.echo("interrupted", err=True)
        code = 128 + exc.signum
    except ReconcilerError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        code = 1
    except click.exceptions.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            click.echo("interrupted", err=True)
            return 130
        click.echo("aborted", err=True)
        code = 1
    except click.ClickException as exc:
        exc.show()
        # A usage error is an error (1): 2 means "changes present" with plan --detailed-exitcode.
        code = 1 if exc.exit_code == 2 else exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        code = 130
    except Exception as exc:  # the last line of defence: one line, never a traceback
        if os.environ.get("RECONCILER_DEBUG"):  # asked for: the traceback, through the redaction layer too
            import traceback

            click.echo(traceback.format_exc().rstrip(), err=True)
            return 1
        click.echo(f"reconciler: internal error: {type(exc).__name__}: {exc} "
                   "(set RECONCILER_DEBUG=1 to see where)", err=True)
        code = 1
    return code if isinstance(code, int) else 0
