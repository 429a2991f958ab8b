"""The one error type users see.

Everything that can go wrong for a user (a bad manifest, an unreachable workspace, a failed
endpoint update) is raised as a `ReconcilerError` holding one or more `Problem`s. The CLI prints
each problem on one line (`path:line:col: message` or `object: operation: message`) to stderr and
exits 1; nothing else is allowed to reach the terminal as a traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Characters that end or break a line on a terminal or in a CI log (str.splitlines() splits on them).
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """`text` with line breaks and other control characters escaped (`\\r`, `\\x1b`): a value quoted
    from a manifest (a route named "\\r") must not split a problem over lines or colour a terminal."""
    return _LINE_BREAKING.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


@dataclass(frozen=True)
class Problem:
    """One thing wrong, with where it is: a file position, or an object and operation."""

    message: str
    path: str | None = None  # manifest file as given on the command line
    line: int | None = None  # 1-based
    col: int | None = None  # 1-based
    subject: str | None = None  # e.g. "serving_endpoint.support-agent" when there is no file

    def __str__(self) -> str:
        message = one_line(self.message)
        if self.path is not None:
            return f"{self.path}:{self.line or 1}:{self.col or 1}: {message}"
        if self.subject is not None:
            return f"{one_line(self.subject)}: {message}"
        return message

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.path or self.subject or "", self.line or 0, self.col or 0, self.message)


def collapse(problems: list[Problem], *, by_cause: bool = False) -> list[Problem]:
    """One line per problem, with a count: the same problem found many times (a YAML alias that
    repeats a bad value thousands of times) is one line saying how often. With `by_cause`, objects
    failing the same way (a bad token fails every read alike: "<object>: <operation>: <cause>") are
    one line naming the first and how many more (for workspace calls; never for problems each
    object must be named in, such as a stale saved plan)."""
    groups: dict[object, list[Problem]] = {}
    for problem in problems:
        cause = by_cause and problem.path is None and problem.subject is not None
        groups.setdefault(("cause", problem.message.split(": ", 1)[-1]) if cause else problem, []).append(problem)
    collapsed = []
    for same in groups.values():
        first = same[0]
        subjects = list(dict.fromkeys(p.subject for p in same))
        if len(subjects) > 1:
            first = Problem(first.message, subject=f"{first.subject} (and {len(subjects) - 1} more)")
        elif len(same) > 1:
            first = Problem(f"{first.message} ({len(same):,} times)", first.path, first.line, first.col,
                            first.subject)
        collapsed.append(first)
    return collapsed


class ReconcilerError(Exception):
    """Raised with every problem found, so one run reports all of them (identical ones once,
    with a count: `collapse`)."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = sorted(collapse(list(problems)), key=Problem.sort_key)
        super().__init__("\n".join(str(p) for p in self.problems))


# ---- what a call to the workspace can end in (raised by workspace.py only) ----------------------
# Callers recover from some of these by type (a create whose first attempt landed meets
# AlreadyExists; a config write during someone else's update meets Conflict); the rest are
# reported as they are. `status` and `error_code` are the server's, when it answered.

class WorkspaceError(ReconcilerError):
    def __init__(self, problem: Problem, *, status: int | None = None, error_code: str | None = None) -> None:
        super().__init__(problem)
        self.status = status
        self.error_code = error_code


class NotFound(WorkspaceError):
    """The object does not exist (404 RESOURCE_DOES_NOT_EXIST and kin)."""


class Conflict(WorkspaceError):
    """409: the object is busy (an update in progress) or already there."""


class AlreadyExists(Conflict):
    """RESOURCE_ALREADY_EXISTS / ALREADY_EXISTS (a 400 or a 409 depending on the API)."""


class PermissionDenied(WorkspaceError):
    """403: the caller may not do this (or the token is not valid for this workspace)."""


class Unauthenticated(WorkspaceError):
    """401: no valid credentials."""


class Unreachable(WorkspaceError):
    """No answer: connection refused, timed out, name not resolved, retries exhausted.
    `retry_after`: the server asked to be called again no sooner than this many seconds (its
    Retry-After), more than the time that was left; nothing tries again sooner."""

    def __init__(self, problem: Problem, *, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.retry_after = retry_after


class UnexpectedAnswer(WorkspaceError):
    """An answer that is not what the API documents (not JSON, wrong types, absurd nesting)."""


class Interrupted(ReconcilerError):
    """SIGINT or SIGTERM: stop before the next write, abandon waits (exit 130 or 143)."""

    def __init__(self, signum: int) -> None:
        super().__init__("interrupted")
        self.signum = signum


class LeaseLost(ReconcilerError):
    """The apply lock's lease is gone or too close to its end for another write: stop writing."""
