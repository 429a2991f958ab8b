"""Prints a plan for people (text, markdown for pull requests) and machines (JSON), and what apply
is doing as it happens (`Progress`).

Every format is rendered from the same `Plan` value, so what a reviewer reads on the pull request
is what `--out plan.json` saves and what apply executes. Values are printed as the manifests and
API hold them: secret references stay references, and plain credential-looking values found live
are already masked by diff.py.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from reconciler.diff import FieldChange
from reconciler.plan import Action, Change, Plan

MARKERS = {Action.CREATE: "+", Action.UPDATE: "~", Action.REPLACE: "-/+", Action.DELETE: "-", Action.NOOP: " "}
COLOURS = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.REPLACE: "magenta", Action.DELETE: "red"}
GITHUB_COMMENT_LIMIT = 65_536
MARKDOWN_BUDGET = 60_000  # under GITHUB_COMMENT_LIMIT with room for a workflow's own marker and footer
HEARTBEAT_SECONDS = 30.0  # CI runners kill jobs silent for some minutes; real endpoint updates take 10 to 30


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def rendered(plan: Plan, fmt: str, *, colour: bool = False) -> str:
    """`plan` in a `--format`: "text", "markdown" or "json" (`Plan.render`), redacted (redact.py)."""
    from reconciler.errors import ReconcilerError
    from reconciler.redact import scrub

    formats = {"text": lambda: text(plan, colour=colour), "markdown": lambda: markdown(plan), "json": lambda: as_json(plan)}
    if fmt not in formats:
        raise ReconcilerError(f"format {fmt!r}: expected one of {', '.join(formats)}")
    return scrub(formats[fmt]())


def summary_line(plan: Plan) -> str:
    counts = plan.summary()
    if not plan.has_changes and plan.not_in_manifests:
        return "No changes to the objects in the manifests."
    if not plan.has_changes:
        return "No changes. The workspace matches the manifests."
    parts = [f"{counts[a.value]} to {a.value}" for a in (Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE)
             if counts[a.value]]
    return "Plan: " + ", ".join(parts) + f"; {counts['no-op']} unchanged."


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
    if change.rollout is not None:
        lines += ["    " + line for line in rollout_lines(change.rollout)]
    if change.operations:
        lines.append("    operations:")
        for i, op in enumerate(change.operations, 1):
            after = f"  (after {', '.join(op.after)})" if op.after else ""
            lines.append(f"      {i}. {op.description}{after}")
    return lines


def wants_colour(stream: Any, *, no_color: bool = False) -> bool:
    """Colour only on a terminal, and never with --no-color or with NO_COLOR set to any non-empty
    value (the convention of https://no-color.org)."""
    return not no_color and not os.environ.get("NO_COLOR") and bool(getattr(stream, "isatty", lambda: False)())


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
    if plan.not_in_manifests:
        out.append(not_in_manifests_line(plan))
    return "\n".join(out) + "\n"


def not_in_manifests_line(plan: Plan) -> str:
    """Managed endpoints of the stack that left the manifests, which only --prune deletes."""
    count = len(plan.not_in_manifests)
    shown = ", ".join(plan.not_in_manifests[:10]) + (f" and {count - 10} more" if count > 10 else "")
    return (f"{count} managed endpoint{'' if count == 1 else 's'} not in the manifests; --prune deletes "
            f"{'it' if count == 1 else 'them'}: {shown}")


def rollout_lines(rollout: dict[str, Any]) -> list[str]:
    """A rollout (plan.Change.rollout, made by reconciler/rollout.py) as plain lines: per target its
    smoke queries, steps with their splits, pauses and analysis; then failure handling and the
    expected duration."""
    spec = rollout.get("spec") or {}
    if not rollout.get("targets"):
        return []
    lines = ["rollout (health-gated; linked alias moves wait for its end):"]
    for target in rollout["targets"]:
        lines.append(f"  {target['entity']}: version {target['from_version']} → {target['to_version']}, served as "
                     f"{target['new_entity']} next to it until the final config"
                     + ("" if str(target["to_version"]).isdigit() else " (N: the number it is registered as)")
                     + (f"; resumes at {target['resume_at_percent']}%" if target.get("resume_at_percent") else ""))
        if not target.get("resume_at_percent"):
            for query in spec.get("smoke") or []:
                lines.append(f"    smoke query {query['name']!r} to {target['new_entity']}, before any traffic: "
                             f"{_expectations(query)}")
        steps = spec.get("steps") or []
        for step in target["steps"]:
            routes = ", ".join(f"{n} {p}%" for n, p in step["traffic"].items())
            lines.append(f"    step {steps.index(step['percent']) + 1} of {len(steps)}: {step['percent']}% of "
                         f"{target['entity']}'s {target['share']}% → {routes}")
        if steps and not target["steps"]:
            lines.append(f"    no traffic steps: {target['entity']} has no traffic share")
        if target["steps"]:
            lines.append(f"    then pause {_duration(spec['pause_seconds'])}: {_analysis(spec.get('analysis'), target)}")
    keep = spec.get("on_failure") == "keep"
    lines.append("  on failure: the split before the rollout restored, the new entity "
                 + ("kept at 0%" if keep else "removed") + ", aliases untouched, apply exits 1 with the evidence")
    expected = rollout.get("expected") or {}
    lines.append(f"  expected: {_duration(expected.get('pause_seconds', 0))} of pauses + "
                 f"{expected.get('config_updates', 0)} config updates")
    return lines


def _expectations(query: dict[str, Any]) -> str:
    expect = query["expect"]
    parts = [f"status {expect['status']}"]
    if expect.get("max_latency_ms") is not None:
        parts.append(f"≤ {expect['max_latency_ms']} ms")
    parts += [f"{c['path']} {c['op']} {json.dumps(c['value'], ensure_ascii=False)}" for c in expect.get("json") or []]
    if expect.get("no_span_errors") and (query["request"].get("databricks_options") or {}).get("return_trace"):
        parts.append("no span in error")
    return ", ".join(parts)


def _analysis(rules: dict[str, Any] | None, target: dict[str, Any]) -> str:
    if rules is None:
        return "no analysis"
    limits = [f"error rate ≤ {rules['max_error_rate']}" if rules.get("max_error_rate") is not None else "",
              f"p99 ≤ {rules['max_p99_latency_ms']:g} ms" if rules.get("max_p99_latency_ms") is not None else ""]
    wait = _duration(rules["no_traffic_timeout_seconds"])
    then = {"wait": "fail", "fail": "fail", "pass": "go on"}[rules["no_traffic"]]
    return (f"{target['new_entity']}'s {' and '.join(p for p in limits if p)} from at least {rules['min_requests']} "
            f"requests (fewer: " + (f"wait up to {wait} for them, then {then})" if rules["no_traffic_timeout_seconds"]
                                    else f"{then})"))


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


# ---- markdown: a pull-request comment -------------------------------------------------------------

ATTENTION_KINDS = ("replace", "delete", "rollout", "traffic shift", "alias move", "registration")
ATTENTION_SHOWN = 25  # items listed in the head; the rest are counted (each object's section has them)
LINE_LIMIT = 600  # a free-text line (warning, reason) is cut here, so the head always fits the budget
DIFF_MARKS = {"added": "+", "removed": "-", "changed": "!"}  # column 0 of a ```diff block: GitHub colours them


@dataclass(frozen=True)
class Attention:
    """Something a reviewer must not miss, with the object it concerns."""

    kind: str  # one of ATTENTION_KINDS
    address: str
    detail: str  # markdown: free text in it is escaped already


def attention(plan: Plan) -> list[Attention]:
    """Replaces (downtime), deletes, traffic shifts, alias moves and new model versions (with the
    API scopes the agent asks users for), in plan order."""
    items: list[Attention] = []
    for change in plan.changes:
        for op in change.operations:
            if op.name == "register_version":  # kinds/model_version.py: what the logged agent asks for
                scopes = next((c.after for c in change.diff if c.path == "user_api_scopes"), None)
                asks = f"; it asks users for API scopes {', '.join(map(_code, scopes))}" if scopes else ""
                items.append(Attention("registration", change.address,
                                       f"registers {_code(str(op.args.get('source')))} as a new version{asks}"))
        if change.action is Action.REPLACE:
            reasons = _inline("; ".join(change.replace_reasons))
            items.append(Attention("replace", change.address,
                                   f"deleted and re-created ({reasons}): downtime; apply needs `--allow-replace`"))
        elif change.action is Action.DELETE:
            items.append(Attention("delete", change.address, "deleted (managed by reconciler, gone from the manifests)"))
        if change.action is not Action.UPDATE:
            continue  # a new object's routes and aliases are its first ones, not a shift or a move
        rollout = change.rollout or {}
        for target in rollout.get("targets") or []:
            expected = rollout["expected"]
            steps = "/".join(str(s["percent"]) for s in target["steps"]) or "no"
            items.append(Attention("rollout", change.address,
                                   _inline(f"{target['entity']} v{target['from_version']} → v{target['to_version']}: "
                                           f"smoke queries, {steps}% steps, rolled back on failure; expected "
                                           f"{_duration(expected['pause_seconds'])} of pauses + "
                                           f"{expected['config_updates']} config updates")))
        routes = [f"{c.path} {_percent(c.before)} → {_percent(c.after)}" for c in change.diff
                  if c.path.startswith("traffic[")]
        if routes:
            items.append(Attention("traffic shift", change.address, ", ".join(routes)))
        waits = {op.args.get("alias"): op.after for op in change.operations if op.after}
        for c in change.diff:
            if c.path.startswith("aliases["):
                alias = c.path[len("aliases["):-1]
                after = f" (once {', '.join(map(_code, waits[alias]))} serves it)" if waits.get(alias) else ""
                items.append(Attention("alias move", change.address,
                                       f"alias {alias} {_version(c.before)} → {_version(c.after)}{after}"))
    return items


def _percent(value: Any) -> str:
    return f"{value if value is not None else 0}%"  # a route that is not there carries no traffic


def _version(value: Any) -> str:
    return "(none)" if value is None else str(value)


def markdown(plan: Plan, *, budget: int = MARKDOWN_BUDGET) -> str:
    """A pull-request comment: the summary and what needs attention first, then one collapsible
    section per changed object, cut (with a note saying so) to stay within `budget` characters."""
    head = _markdown_head(plan)
    changed = [c for c in plan.changes if c.action is not Action.NOOP]
    sections: list[str] = []
    used = len(head) + len(_truncation_note(len(changed), len(changed)))  # room for the note, always
    for change in changed:
        section = _markdown_section(change)
        if used + len(section) > budget:
            break
        sections.append(section)
        used += len(section)
    out = head + "".join(sections)
    if len(sections) < len(changed):
        out += _truncation_note(len(changed) - len(sections), len(changed))
    return out.rstrip() + "\n"


def _markdown_head(plan: Plan) -> str:
    title = "### reconciler plan" + (f" · stack {_code(plan.stack)}" if plan.stack else "")
    lines = [title, "", f"**{summary_line(plan)}**", ""]
    if plan.not_in_manifests:
        lines += [_inline(not_in_manifests_line(plan)), ""]
    items = attention(plan)
    if items:
        counts = {kind: sum(1 for i in items if i.kind == kind) for kind in ATTENTION_KINDS}
        lines += ["⚠️ **Needs attention: " + ", ".join(_count(n, kind) for kind, n in counts.items() if n) + "**", ""]
        lines += [f"- **{i.kind}** {_code(i.address)}: {i.detail}" for i in items[:ATTENTION_SHOWN]]
        if len(items) > ATTENTION_SHOWN:
            lines.append(f"- … and {len(items) - ATTENTION_SHOWN} more (see each object below)")
        lines.append("")
    for warning in plan.warnings[:ATTENTION_SHOWN]:
        lines += [f"> **Warning:** {_inline(warning)}", ""]
    if len(plan.warnings) > ATTENTION_SHOWN:
        lines += [f"> … and {len(plan.warnings) - ATTENTION_SHOWN} more warnings (run `reconciler plan`)", ""]
    return "\n".join(lines) + "\n"


def _count(count: int, kind: str) -> str:
    return f"{count} {kind}{'' if count == 1 else 's'}"


def _markdown_section(change: Change) -> str:
    """One object: a <details> block whose summary names it, its field diff, then its API calls."""
    fields = f"{len(change.diff)} field{'s' if len(change.diff) != 1 else ''}" if change.diff else ""
    calls = ", ".join(op.name for op in change.operations)
    what = " · ".join(part for part in (fields, calls) if part)
    opened = " open" if change.action in (Action.REPLACE, Action.DELETE) else ""
    lines = [f"<details{opened}><summary><code>{MARKERS[change.action]} {html.escape(change.address)}</code> "
             f"<b>{change.action.value}</b>{html.escape(f': {what}' if what else '')}</summary>", ""]
    block = [_diff_line(c) for c in change.diff] + [f"# forces replacement: {r}" for r in change.replace_reasons]
    block += [f"# {note}" for note in change.notes]
    block += [f"# {line}" for line in rollout_lines(change.rollout or {})]
    if block:
        fence = "`" * max(3, 1 + max((len(run) for line in block for run in re.findall(r"`+", line)), default=0))
        lines += [fence + "diff", *block, fence, ""]
    if change.operations:
        lines += ["API calls:", ""]  # apply sets the order (design.md), so this list does not promise one
        lines += [f"- {_code(op.description)}" + (f" after {', '.join(_code(a) for a in op.after)}" if op.after else "")
                  for op in change.operations]
        lines.append("")
    return "\n".join(lines + ["</details>", "", ""])


def _diff_line(change: FieldChange) -> str:
    if change.before is None:
        return f"{DIFF_MARKS['added']} {change.path}: {_value(change.after)}"
    if change.after is None:
        return f"{DIFF_MARKS['removed']} {change.path}: {_value(change.before)}"
    return f"{DIFF_MARKS['changed']} {change.path}: {_value(change.before)} → {_value(change.after)}"


def _truncation_note(hidden: int, total: int) -> str:
    return (f"> [!NOTE]\n> **Plan truncated:** {hidden} of {total} changed objects are not shown, to stay under "
            f"GitHub's {GITHUB_COMMENT_LIMIT:,}-character comment limit. See the whole plan with `reconciler plan`, "
            "or in the saved JSON plan (`plan --out`; in CI, the `reconciler-plan` artifact).\n")


def _code(text: str) -> str:
    """An inline code span that survives backticks in `text` (CommonMark: a longer fence)."""
    fence = "`" * (1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _inline(text: str) -> str:
    """Free text (a warning, a reason) as inline markdown: one line, no markup or HTML of its own."""
    text = " ".join(text.split())
    if len(text) > LINE_LIMIT:
        text = text[:LINE_LIMIT] + "…"
    return re.sub(r"([\\`*_<>&|])", r"\\\1", text)


def as_json(plan: Plan) -> str:
    return json.dumps(plan.to_json(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


# ---- apply progress, as it happens -----------------------------------------------------------------

class Progress:
    """What a run is doing, as it happens: apply's writes and waits, and any command's retries.

    In CI logs (no TTY): one plain line per event, with the elapsed time, and while anything is
    waiting (`waiting`) a heartbeat: at least every `heartbeat_seconds` (30, or
    RECONCILER_HEARTBEAT_SECONDS) one line saying what is still waiting and for how long, because
    real endpoint updates take 10 to 30 minutes and CI runners kill jobs that print nothing for
    that long. On a terminal: one line per object, rewritten in place with its latest state and
    how long it has been at it, so fifty endpoints waiting for their updates read as fifty lines,
    not a scrolling wall.
    """

    SHOWN = 5  # waits named in one heartbeat line; the rest are counted

    def __init__(self, stream: Any = None, *, live: bool | None = None, heartbeat_seconds: float | None = None) -> None:
        self.stream = stream or sys.stdout
        self.live = bool(getattr(self.stream, "isatty", lambda: False)()) if live is None else live
        self.heartbeat_seconds = heartbeat_seconds or _heartbeat_seconds()
        self.start = time.monotonic()
        self.lock = threading.Lock()
        self.rows: dict[str, tuple[float, str]] = {}  # address -> (first seen, latest state)
        self.waits: dict[str, tuple[float, str]] = {}  # address -> (since, what it waits for)
        self.drawn = 0
        self.stopped = threading.Event()
        threading.Thread(target=self._tick, name="progress", daemon=True).start()

    def __call__(self, address: str, message: str) -> None:
        with self.lock:
            if not self.live:
                self._line(f"{address}: {message}")
                return
            first_seen = self.rows.get(address, (time.monotonic(), ""))[0]
            self.rows[address] = (first_seen, message)
            self._draw()

    @contextlib.contextmanager
    def waiting(self, address: str, what: str) -> Iterator[None]:
        """While the block runs, `address` is waiting for `what` (heartbeat lines name it)."""
        with self.lock:
            self.waits[address] = (time.monotonic(), what)
        try:
            yield
        finally:
            with self.lock:
                self.waits.pop(address, None)

    def detach(self) -> None:
        """Other text (the plan) is printed next: on a terminal, lines drawn so far (retries while
        planning) are left as they are, and the next ones form a new block below that text."""
        with self.lock:
            self.rows.clear()
            self.drawn = 0

    def heartbeat(self) -> str | None:
        """The summary line of what is still waiting, or None when nothing is."""
        with self.lock:
            waits = sorted(self.waits.items(), key=lambda item: item[1][0])
        if not waits:
            return None
        now = time.monotonic()
        shown = [f"{address} ({what}, {now - since:.0f}s)" for address, (since, what) in waits[:self.SHOWN]]
        more = f" and {len(waits) - self.SHOWN} more" if len(waits) > self.SHOWN else ""
        return f"still waiting: {', '.join(shown)}{more}"

    def _line(self, text: str) -> None:
        self.stream.write(f"[{time.monotonic() - self.start:6.1f}s] {text}\n")
        self.stream.flush()

    def _draw(self) -> None:
        import shutil

        width = max(20, shutil.get_terminal_size().columns - 1)  # a wrapped line would break the redraw
        if self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F")  # back to the first line of the block
        for address, (first_seen, state) in self.rows.items():
            line = f"{address}: {state} ({time.monotonic() - first_seen:.0f}s)"
            self.stream.write("\x1b[2K" + line[:width] + "\n")
        self.drawn = len(self.rows)
        self.stream.flush()

    def _tick(self) -> None:
        beat = time.monotonic()
        while not self.stopped.wait(1.0 if self.live else min(1.0, self.heartbeat_seconds)):
            if self.live:
                with self.lock:
                    if self.rows:
                        self._draw()
                continue
            if time.monotonic() - beat >= self.heartbeat_seconds:
                beat = time.monotonic()
                line = self.heartbeat()
                if line is not None:
                    with self.lock:
                        self._line(line)

    def close(self) -> None:
        self.stopped.set()


def _heartbeat_seconds() -> float:
    import os

    try:
        seconds = float(os.environ.get("RECONCILER_HEARTBEAT_SECONDS") or HEARTBEAT_SECONDS)
    except ValueError:
        return HEARTBEAT_SECONDS
    return seconds if seconds > 0 else HEARTBEAT_SECONDS
