"""Prints a plan for people (text, markdown for pull requests) and machines (JSON).

Every format is rendered from the same `Plan` value, so what a reviewer reads on the pull request
is what `--out plan.json` saves and what apply executes. Values are printed as the manifests and
API hold them: secret references stay references, and plain credential-looking values found live
are already masked by diff.py.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler.plan import Action, Change, Plan

MARKERS = {Action.CREATE: "+", Action.UPDATE: "~", Action.REPLACE: "-/+", Action.DELETE: "-", Action.NOOP: " "}
COLOURS = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.REPLACE: "magenta", Action.DELETE: "red"}
GITHUB_COMMENT_LIMIT = 65_536
MARKDOWN_BUDGET = 60_000  # leaves room for the truncation note and a workflow's own header


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def summary_line(plan: Plan) -> str:
    counts = plan.summary()
    if not plan.has_changes:
        return "No changes. The workspace matches the manifests."
    parts = [f"{counts[a.value]} to {a.value}" for a in (Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE)
             if counts[a.value]]
    return "Plan: " + ", ".join(parts) + f"; {counts['no-op']} unchanged."


def attention(plan: Plan) -> list[str]:
    """What a reviewer must not miss: replaces, deletes, traffic shifts, alias moves."""
    lines = []
    for change in plan.changes:
        if change.action is Action.REPLACE:
            lines.append(f"{change.address} will be deleted and re-created ({'; '.join(change.replace_reasons)}): "
                         "downtime; apply needs --allow-replace")
        elif change.action is Action.DELETE:
            lines.append(f"{change.address} will be deleted (pruned)")
        for field_change in change.diff:
            if field_change.path.startswith("traffic[") and change.action is Action.UPDATE:
                lines.append(f"{change.address}: traffic {field_change.path[7:]} "
                             f"{_value(field_change.before)}% → {_value(field_change.after)}%")
        for op in change.operations:
            if op.name in ("set_alias", "delete_alias") and change.action is not Action.CREATE:
                lines.append(f"{change.address}: {op.description}")
    return lines


def _change_lines(change: Change) -> list[str]:
    lines = []
    for field_change in change.diff:
        if field_change.before is None:
            lines.append(f"    + {field_change.path}: {_value(field_change.after)}")
        elif field_change.after is None:
            lines.append(f"    - {field_change.path}: {_value(field_change.before)}")
        else:
            lines.append(f"    ~ {field_change.path}: {_value(field_change.before)} → {_value(field_change.after)}")
    for reason in change.replace_reasons:
        lines.append(f"    # forces replacement: {reason}")
    for note in change.notes:
        lines.append(f"    # {note}")
    if change.operations:
        lines.append("    operations:")
        for i, op in enumerate(change.operations, 1):
            after = f"  (after {', '.join(op.after)})" if op.after else ""
            lines.append(f"      {i}. {op.description}{after}")
    return lines


def text(plan: Plan, *, colour: bool = False) -> str:
    import click

    out = []
    for change in plan.changes:
        if change.action is Action.NOOP:
            continue
        header = f"{MARKERS[change.action]} {change.address} ({change.action.value})"
        out.append(click.style(header, fg=COLOURS[change.action], bold=True) if colour else header)
        out += _change_lines(change)
        out.append("")
    for warning in plan.warnings:
        out.append(("Warning: " if not colour else click.style("Warning: ", fg="yellow")) + warning)
    if plan.warnings:
        out.append("")
    out.append(summary_line(plan))
    return "\n".join(out) + "\n"


def markdown(plan: Plan, *, budget: int = MARKDOWN_BUDGET) -> str:
    """A pull-request comment: summary and warnings first, one collapsible section per object."""
    head = ["### reconciler plan", "", f"**{summary_line(plan)}**", ""]
    counts = plan.summary()
    if plan.has_changes:
        head += ["| create | update | replace | delete | unchanged |", "|---:|---:|---:|---:|---:|",
                 f"| {counts['create']} | {counts['update']} | {counts['replace']} | {counts['delete']} | "
                 f"{counts['no-op']} |", ""]
    head += [f"> ⚠️ {line}" + "  " for line in attention(plan)]
    head += [f"> Warning: {w}" + "  " for w in plan.warnings]
    if attention(plan) or plan.warnings:
        head.append("")
    body: list[str] = []
    shown = 0
    changed = [c for c in plan.changes if c.action is not Action.NOOP]
    used = len("\n".join(head))
    for change in changed:
        section = "\n".join([f"<details><summary><code>{MARKERS[change.action]} {change.address}</code> "
                             f"({change.action.value})</summary>", "", "```diff",
                             *[line.replace("```", "`​``") for line in _change_lines(change)], "```", "",
                             "</details>", ""])
        if used + len(section) > budget:
            break
        body.append(section)
        used += len(section)
        shown += 1
    if shown < len(changed):
        body.append(f"_Plan truncated: {len(changed) - shown} of {len(changed)} changed objects are not shown "
                    "(comment size limit). Download the JSON plan artifact or run `reconciler plan` for all of it._")
    return "\n".join(head + body).rstrip() + "\n"


def as_json(plan: Plan) -> str:
    return json.dumps(plan.to_json(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"
