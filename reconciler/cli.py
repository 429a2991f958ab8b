"""The `reconciler` command line.

Only click is imported at start-up; each command imports what it needs (pydantic for manifests,
databricks-sdk for workspace access) so `--help` and `validate` stay fast. `main()` is the one
place errors become output: a `ReconcilerError` prints one line per problem on stderr and exits 1;
anything unexpected is reported in one line too, never as a traceback (RECONCILER_DEBUG=1 shows it).
"""

from __future__ import annotations

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


def load(paths: tuple[str, ...], variables: tuple[str, ...], var_files: tuple[str, ...]) -> Any:
    from reconciler.manifests.loader import load_manifests
    from reconciler.manifests.variables import collect_variables

    return load_manifests(paths or DEFAULT_PATHS, collect_variables(variables, var_files))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="reconciler")
def cli() -> None:
    """Declarative GitOps for AI agents on Databricks: Unity Catalog models, aliases and
    Model Serving endpoints, described in YAML and reconciled with minimal writes."""


@cli.command()
@manifest_options
def validate(paths: tuple[str, ...], variables: tuple[str, ...], var_files: tuple[str, ...]) -> None:
    """Parse, type-check and cross-check manifests offline (default: manifests/)."""
    manifests = load(paths, variables, var_files)
    click.echo(f"valid: {len(manifests.models)} registered model(s), {len(manifests.endpoints)} serving "
               f"endpoint(s) in {len(manifests.files)} file(s)")


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
        code = exc.exit_code
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
