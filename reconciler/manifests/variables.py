"""Where `${var.NAME}` values come from: environment, `--var-file`s, then `--var`s (later wins),
the same precedence Terraform gives TF_VAR_*, -var-file and -var."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import yaml

from reconciler.errors import Problem, ReconcilerError

ENV_PREFIX = "RECONCILER_VAR_"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _scalar_text(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def collect_variables(assignments: Sequence[str], var_files: Sequence[str],
                      environ: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    problems: list[Problem] = []
    result = {k[len(ENV_PREFIX):]: v for k, v in environ.items() if k.startswith(ENV_PREFIX)}
    for path in var_files:
        try:
            with open(path, "rb") as handle:
                data = yaml.safe_load(handle)
        except OSError as exc:
            problems.append(Problem(f"cannot read variable file: {exc.strerror}", path=path, line=1, col=1))
            continue
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problems.append(Problem(f"YAML syntax error: {getattr(exc, 'problem', exc)}", path=path,
                                    line=mark.line + 1 if mark else 1, col=mark.column + 1 if mark else 1))
            continue
        if data is None:
            continue
        if not isinstance(data, dict):
            problems.append(Problem("a variable file must be a mapping of NAME: value", path=path, line=1, col=1))
            continue
        for name, value in data.items():
            text = _scalar_text(value)
            if not isinstance(name, str) or not _NAME.fullmatch(name) or text is None:
                problems.append(Problem(f"variable '{name}' must be a name mapped to a plain value", path=path,
                                        line=1, col=1))
                continue
            result[name] = text
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep or not _NAME.fullmatch(name):
            problems.append(Problem(f"--var '{name}': expected NAME=VALUE"))
            continue
        result[name] = value
    if problems:
        raise ReconcilerError(problems)
    return result
