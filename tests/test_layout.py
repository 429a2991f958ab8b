"""The README's Layout section lists every module under reconciler/, one line each with its job,
and nothing that is not there: a module added, moved or removed without its line fails here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def layout_lines() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```text\n(.*?)```", section, re.DOTALL)
    assert block, "the Layout section has no ```text block"
    return block.group(1).splitlines()


def listed() -> dict[str, str]:
    """path → its job, for every line of the block that starts with a module path."""
    found: dict[str, str] = {}
    for line in layout_lines():
        match = re.match(r"(reconciler/\S+\.py)(\s+(.*))?$", line)
        if match:
            assert match.group(1) not in found, f"{match.group(1)} is listed twice"
            found[match.group(1)] = (match.group(3) or "").strip()
    return found


def modules() -> set[str]:
    return {path.relative_to(ROOT).as_posix() for path in (ROOT / "reconciler").rglob("*.py")
            if "__pycache__" not in path.parts}


def test_every_module_has_its_line() -> None:
    missing = sorted(modules() - set(listed()))
    assert not missing, f"README.md, Layout: add a line (path, then its job) for {', '.join(missing)}"


def test_every_line_names_a_module_that_exists() -> None:
    gone = sorted(set(listed()) - modules())
    assert not gone, f"README.md, Layout: {', '.join(gone)} no longer exist(s); remove or rename the line"


def test_every_line_says_the_module_s_job() -> None:
    bare = sorted(path for path, job in listed().items() if len(job.split()) < 2)
    assert not bare, f"README.md, Layout: say what {', '.join(bare)} is for"
