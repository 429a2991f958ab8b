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


class ReconcilerError(Exception):
    """Raised with every problem found, so one run reports all of them."""

    def __init__(self, problems: list[Problem] | Problem | str, *, cause: BaseException | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = sorted(problems, key=Problem.sort_key)
        self.cause = cause  # the SDK error behind it, for callers that recover from specific ones
        super().__init__("\n".join(str(p) for p in self.problems))
