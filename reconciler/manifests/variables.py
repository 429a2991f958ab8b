"""Where `${var.NAME}` values come from: environment, `--var-file`s, then `--var`s (later wins),
the same precedence Terraform gives TF_VAR_*, -var-file and -var.

Variable files are read by the manifests' own YAML reader, so they get the same defences
(duplicate keys, tags, size, encoding) and every problem in them has a line and column.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

from reconciler.errors import Problem, ReconcilerError
from reconciler.redact import register
from reconciler.terms import CREDENTIAL_VALUE, SECRET_LOOKING_NAME

ENV_PREFIX = "RECONCILER_VAR_"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _scalar_text(value: object) -> str | None:
    """The text a value stands for in a manifest: `true`, `3`, `0.5`, `prod`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _read_var_file(path: str, problems: list[Problem]) -> dict[str, str]:
    from reconciler.files import Unreadable, read_regular
    from reconciler.manifests.yamlsource import MAX_FILE_BYTES, read_documents

    try:
        raw = read_regular(path, limit=MAX_FILE_BYTES)
    except Unreadable as exc:
        problems.append(Problem(f"cannot read variable file: it {exc}", path=path, line=1, col=1))
        return {}
    except OSError as exc:
        problems.append(Problem(f"cannot read variable file: {exc.strerror}", path=path, line=1, col=1))
        return {}
    documents = read_documents(path, raw, None, problems, allow_empty=True)
    if len(documents) > 1:
        problems.append(documents[1].problem((), "a variable file holds one mapping of NAME: value; remove the "
                                                 "extra documents"))
    result: dict[str, str] = {}
    for document in documents[:1]:
        if not isinstance(document.data, dict):
            problems.append(document.problem((), "a variable file must be a mapping of NAME: value"))
            continue
        for name, value in document.data.items():
            text = _scalar_text(value)
            if not _NAME.fullmatch(name):
                problems.append(document.problem((name,), f"variable name '{name}' is invalid; use letters, digits, "
                                                          "'_' and '-', starting with a letter or '_'", key=True))
            elif text is None and not document.already_reported((name,)):
                problems.append(document.problem((name,), f"variable '{name}' must be a plain value (text, number "
                                                          "or true/false), not a list, mapping or null"))
            elif text is not None:
                result[name] = text
    return result


def collect_variables(assignments: Sequence[str], var_files: Sequence[str],
                      environ: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    problems: list[Problem] = []
    result = {k[len(ENV_PREFIX):]: v for k, v in environ.items() if k.startswith(ENV_PREFIX)}
    for path in var_files:
        result.update(_read_var_file(path, problems))
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep:
            problems.append(Problem(f"--var '{assignment}': expected NAME=VALUE, e.g. --var catalog=prod"))
            continue
        if not _NAME.fullmatch(name):  # the value is not echoed: it may be a credential
            problems.append(Problem(f"--var: variable name '{name}' is invalid; use letters, digits, '_' and '-', "
                                    "starting with a letter or '_'"))
            continue
        result[name] = value
    if problems:
        raise ReconcilerError(problems)
    for name, value in result.items():
        if SECRET_LOOKING_NAME.fullmatch(name) or CREDENTIAL_VALUE.search(value):
            register(value)  # a credential passed as a variable is never printed (redact.py)
    return result
