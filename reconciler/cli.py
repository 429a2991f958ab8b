"""The `reconciler` command line.

Only click is imported at start-up; each command imports what it needs (pydantic for manifests,
databricks-sdk for workspace access) so `--help` and `validate` stay fast. `main()` is the one
place errors become output: a `ReconcilerError` prints one line per problem on stderr and exits 1;
anything unexpected is reported in one line too, never as a traceback (RECONCILER_DEBUG=1 shows it).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from typing import Any

import click

DEFAULT_PATHS = ("manifests",)


def manifest_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """PATHS, --var and --var-file: shared by every command that reads manifests."""
    command = click.option("--var-file", "var_files", multiple=True, metavar="FILE",
                           help="YAML file of NAME: value variables.")(command)
    command = click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
                           help="Set ${var.NAME}; overrides --var-file and RECONCILER_VAR_NAME.")(command)
    return click.argument("paths", nargs=-1, type=click.Path())(command)


def load(paths: tuple[str, ...], variables: tuple[str, ...], var_files: tuple[str, ...],
         stack: str | None = None) -> Any:
    from reconciler.manifests.loader import load_manifests
    from reconciler.manifests.variables import collect_variables

    return load_manifests(paths or DEFAULT_PATHS, collect_variables(variables, var_files), stack=stack)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="reconciler")
def cli() -> None:
    """Declarative GitOps for AI agents on Databricks: Unity Catalog models, aliases and
    Model Serving endpoints, described in YAML and reconciled with minimal writes."""


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
    manifests = load(paths, variables, var_files, stack)
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
def plan(paths: tuple[str, ...], variables: tuple[str, ...], var_files: tuple[str, ...], profile: str | None,
         parallelism: int, stack: str | None, deployer: str | None, out: str | None, fmt: str, detailed_exitcode: bool,
         prune: bool) -> int:
    """Read the live workspace and show what apply would change."""
    from reconciler import pipeline, render
    from reconciler.manifests.variables import collect_variables
    from reconciler.workspace import Workspace

    manifests, source = pipeline.load(paths or DEFAULT_PATHS, collect_variables(variables, var_files), stack=stack)
    workspace = Workspace.connect(profile=profile, parallelism=parallelism)
    the_plan = pipeline.plan(workspace, manifests, parallelism=parallelism, stack=stack, prune=prune,
                             deployer=deployer, source=source)
    if out:
        from reconciler.files import write_atomically

        write_atomically(out, render.as_json(the_plan))
    if fmt == "json":
        click.echo(render.as_json(the_plan), nl=False)
    elif fmt == "markdown":
        click.echo(render.markdown(the_plan), nl=False)
    else:
        click.echo(render.text(the_plan, colour=sys.stdout.isatty()), nl=False)
        if out:
            click.echo(f"Saved the plan to {out}; apply exactly it with: reconciler apply --plan {out}")
    return 2 if detailed_exitcode and the_plan.has_changes else 0


def parse_duration(text: str) -> float:
    from reconciler.errors import ReconcilerError

    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise ReconcilerError(f"'{text}': expected a duration such as 90s, 30m or 1h") from None


@cli.command()
@manifest_options
@workspace_options
@deployer_option
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False),
              help="Apply only if planning again (from the manifests it records, or PATHS) gives exactly this plan.")
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
@click.option("--prune", is_flag=True, help="Delete managed endpoints no longer in the manifests.")
@click.option("--allow-replace", is_flag=True, help="Allow delete-and-recreate of endpoints (downtime).")
@click.option("--timeout", default="30m", show_default=True,
              help="Longest wait for one endpoint update (90s, 30m, 1h); a rollout's pauses are not counted.")
@click.option("--no-wait", is_flag=True, help="Do not wait for endpoint updates (linked alias moves are skipped; "
                                              "endpoints with a rollout to make are not applied).")
@click.option("--lock/--no-lock", default=True, show_default=True,
              help="Hold the stack's lease file in the workspace so two applies never interleave.")
@click.option("--lock-timeout", default="0s", show_default=True, help="How long to wait for the lock (e.g. 10m).")
def apply(paths: tuple[str, ...], variables: tuple[str, ...], var_files: tuple[str, ...], profile: str | None,
          parallelism: int, stack: str | None, deployer: str | None, plan_file: str | None, auto_approve: bool,
          prune: bool, allow_replace: bool, timeout: str, no_wait: bool, lock: bool, lock_timeout: str) -> int:
    """Make the workspace match the manifests (or a saved plan) with the fewest writes."""
    from reconciler import pipeline
    from reconciler.apply import ApplyOptions
    from reconciler.manifests.variables import collect_variables
    from reconciler.workspace import Workspace

    options = ApplyOptions(parallelism=parallelism, timeout_seconds=parse_duration(timeout), wait=not no_wait,
                           allow_replace=allow_replace)
    saved = load_plan(plan_file) if plan_file else None  # claims to compare, checked before any request
    if saved is not None and not paths:
        paths = tuple(saved["source"]["paths"])
        click.echo(f"Planning again from the manifests {plan_file} was made from: {' '.join(paths)}")
    manifests, source = pipeline.load(paths or DEFAULT_PATHS, collect_variables(variables, var_files), stack=stack)
    workspace = Workspace.connect(profile=profile, parallelism=parallelism)
    if saved is not None:
        check_host(plan_file or "", saved, workspace.host)
    held = None
    if lock:
        from reconciler.lock import ApplyLock

        held = ApplyLock(workspace, stack, timeout_seconds=parse_duration(lock_timeout))
        held.acquire()  # from here on, writes are fenced by the lease (Workspace.fence)
    try:
        the_plan = pipeline.plan(workspace, manifests, parallelism=parallelism, stack=stack, prune=prune,
                                 deployer=deployer, source=source)
        if saved is not None:
            pipeline.check_saved(saved, the_plan)  # before any write: one line per difference
        return _apply(workspace, the_plan, options, auto_approve=auto_approve or saved is not None)
    finally:
        if held is not None:
            held.release()


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


def _apply(workspace: Any, the_plan: Any, options: Any, *, auto_approve: bool) -> int:
    from reconciler import render
    from reconciler.apply import apply_plan
    from reconciler.errors import ReconcilerError
    from reconciler.render import Progress

    click.echo(render.text(the_plan, colour=sys.stdout.isatty()), nl=False)
    if not the_plan.has_changes:
        return 0
    if not auto_approve:
        if not sys.stdin.isatty():
            raise ReconcilerError("refusing to ask for confirmation without a terminal; pass --auto-approve, or "
                                  "apply a reviewed plan with --plan FILE")
        if not click.confirm("Apply these changes?", default=False):
            click.echo("Nothing applied.")
            return 1
    progress = Progress()
    try:
        outcomes, _, lease_lost = apply_plan(workspace, the_plan, options, progress)
    finally:
        progress.close()
    code = report(outcomes)
    if lease_lost is not None:
        raise lease_lost  # one line: the lease was lost, the run stopped before its next write
    return code


def load_plan(path: str) -> dict[str, Any]:
    """A saved plan's claims (plan.read_saved): never executed, only compared with a new plan."""
    import json

    from reconciler.errors import Problem, ReconcilerError
    from reconciler.plan import read_saved

    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise ReconcilerError(f"{path}: cannot read plan: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:
        raise ReconcilerError(f"{path}: not a JSON plan ({str(exc)[:200]})") from None
    try:
        return read_saved(data)
    except ReconcilerError as exc:
        raise ReconcilerError([Problem(f"{path}: {p.message}") for p in exc.problems]) from None


def report(outcomes: list[Any]) -> int:
    failed = [o for o in outcomes if o.status in ("failed", "skipped")]
    click.echo("")
    for outcome in outcomes:
        did = "; ".join(outcome.writes) or "no write needed"
        line = f"  {outcome.status:9} {outcome.address}: {did}"
        click.echo(line + (f" | {outcome.detail}" if outcome.detail else ""))
    applied = sum(1 for o in outcomes if o.status in ("applied", "sent"))
    click.echo(f"Apply {'failed' if failed else 'complete'}: {applied} applied, "
               f"{sum(1 for o in outcomes if o.status == 'failed')} failed, "
               f"{sum(1 for o in outcomes if o.status == 'skipped')} not applied.")
    if failed:
        click.echo("Fix the cause and run apply again: it picks up where this run stopped.")
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
def export(profile: str | None, parallelism: int, stack: str | None, endpoints: tuple[str, ...],
           models: tuple[str, ...], all_endpoints: bool, out_dir: str, pin_versions: bool,
           variables: tuple[str, ...], var_files: tuple[str, ...]) -> None:
    """Write manifests for existing endpoints and models (then `plan` shows no changes)."""
    from reconciler import export as exporting
    from reconciler.errors import Problem, ReconcilerError
    from reconciler.manifests.variables import collect_variables
    from reconciler.workspace import Workspace

    if not (endpoints or models or all_endpoints):
        raise ReconcilerError("nothing to export: name objects with --endpoint NAME or --model FULL_NAME, or pass "
                              "--all-endpoints")
    options = exporting.ExportOptions(pin_versions=pin_versions, variables=collect_variables(variables, var_files),
                                      stack=stack)
    workspace = Workspace.connect(profile=profile, parallelism=parallelism)
    live = exporting.read_live(workspace, endpoints=endpoints, models=models, all_endpoints=all_endpoints,
                               pin_versions=pin_versions, parallelism=parallelism)
    result = exporting.export_objects(live, options)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    written = exporting.write_export(out_dir, result)
    for line in exporting.summary(result, written, out_dir, options):
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
    from reconciler.errors import ReconcilerError
    from reconciler.schema import SCHEMA_FILE, schema_is_current, write_schema

    if check:
        if not schema_is_current(out_dir):
            raise ReconcilerError(f"{os.path.join(out_dir, SCHEMA_FILE)} is stale or missing; run `reconciler schema`"
                                  " (or `make schema`) and commit the result")
        click.echo(f"{os.path.join(out_dir, SCHEMA_FILE)} is up to date")
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
    from reconciler.errors import ReconcilerError

    try:
        code = cli.main(args=argv, prog_name="reconciler", standalone_mode=False)
    except ReconcilerError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        code = 1
    except click.exceptions.Abort:
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
        if os.environ.get("RECONCILER_DEBUG"):
            raise
        click.echo(f"reconciler: internal error: {type(exc).__name__}: {exc} "
                   "(set RECONCILER_DEBUG=1 to see where)", err=True)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
