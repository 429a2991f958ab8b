"""The markdown plan, read the way GitHub shows it: rendered to HTML by a CommonMark library.

Plans are built as values here (no workspace needed): the renderer is pure, and a 300-object plan
costs nothing this way. What a reviewer must see is checked on the HTML, not on the source text:
the summary and attention lines, one collapsible section per changed object, and the cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

from markdown_it import MarkdownIt

from reconciler import render
from reconciler.diff import FieldChange
from reconciler.plan import Action, Change, Operation, Plan

EP = "serving_endpoint.support-agent"
RM = "registered_model.main.agents.support_agent"


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def find_all(self, tag: str) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                found += ([child] if child.tag == tag else []) + child.find_all(tag)
        return found

    def kids(self, tag: str) -> list[Node]:
        return [c for c in self.children if isinstance(c, Node) and c.tag == tag]


class TreeBuilder(HTMLParser):
    """Just enough of an HTML tree to ask what GitHub would show; fails on unbalanced tags."""

    VOID = {"br", "hr", "img", "input"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack = [Node("root", {})]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def html_tree(markdown: str) -> Node:
    builder = TreeBuilder()
    builder.feed(MarkdownIt("commonmark").render(markdown))
    builder.close()
    assert len(builder.stack) == 1, f"unclosed <{builder.stack[-1].tag}>"
    return builder.stack[0]


def review_plan() -> Plan:
    """Every kind of change a reviewer meets, and one object that does not change."""
    return Plan(warnings=["endpoint 'legacy' is not managed by reconciler <yet>"], changes=[
        Change(RM, "registered_model", "main.agents.support_agent", Action.UPDATE,
               diff=[FieldChange("aliases[champion]", "3", "4")],
               operations=[Operation("set_alias", "set_alias(champion → 4)", after=[EP],
                                     args={"alias": "champion", "version": "4"})]),
        Change(EP, "serving_endpoint", "support-agent", Action.UPDATE,
               diff=[FieldChange("served_entities[champion].entity_version", "3", "4"),
                     FieldChange("tags[owner]", None, "cx"),
                     FieldChange("tags[old]", "x", None),
                     FieldChange("traffic[challenger]", 10, 50), FieldChange("traffic[champion]", 90, 50)],
               operations=[Operation("update_config", "update_config(champion=v4; routes champion=50% challenger=50%)"),
                           Operation("patch_tags", "patch_tags(add: [owner], delete: [old])")],
               notes=["served_entities[champion] follows alias champion → version 4"]),
        Change("serving_endpoint.new-agent", "serving_endpoint", "new-agent", Action.CREATE,
               diff=[FieldChange("traffic[a]", None, 100), FieldChange("tags[team]", None, "cx")],
               operations=[Operation("create_endpoint", "create_endpoint(a=support_agent v4)")]),
        Change("serving_endpoint.renamed", "serving_endpoint", "renamed", Action.REPLACE,
               diff=[FieldChange("description", "old", "new")],
               replace_reasons=["description cannot change after creation"],
               operations=[Operation("delete_endpoint", "delete_endpoint(renamed)"),
                           Operation("create_endpoint", "create_endpoint(a=support_agent v4)")]),
        Change("serving_endpoint.gone", "serving_endpoint", "gone", Action.DELETE,
               operations=[Operation("delete_endpoint", "delete_endpoint(gone)")]),
        Change("serving_endpoint.steady", "serving_endpoint", "steady", Action.NOOP),
    ])


def test_summary_and_attention_come_first():
    tree = html_tree(render.markdown(review_plan()))
    paragraphs = [p.text() for p in tree.kids("p")]
    assert paragraphs[0] == "Plan: 1 to create, 2 to update, 1 to replace, 1 to delete; 1 unchanged."
    assert tree.kids("p")[0].kids("strong"), "the summary line is bold"
    assert paragraphs[1] == "⚠️ Needs attention: 1 replace, 1 delete, 1 traffic shift, 1 alias move"
    items = [li.text() for li in tree.kids("ul")[0].kids("li")]
    assert items == [
        f"alias move {RM}: alias champion 3 → 4 (once {EP} serves it)",
        f"traffic shift {EP}: traffic[challenger] 10% → 50%, traffic[champion] 90% → 50%",
        "replace serving_endpoint.renamed: deleted and re-created (description cannot change after creation): "
        "downtime; apply needs --allow-replace",
        "delete serving_endpoint.gone: deleted (managed by reconciler, gone from the manifests)",
    ]
    warning = tree.kids("blockquote")[0].text().strip()
    assert warning == "Warning: endpoint 'legacy' is not managed by reconciler <yet>"
    assert not tree.find_all("yet"), "free text never becomes HTML"
    first_section = next(i for i, c in enumerate(tree.children) if isinstance(c, Node) and c.tag == "details")
    assert all(not (isinstance(c, Node) and c.tag in ("p", "ul")) for c in tree.children[first_section:])


def test_one_collapsible_section_per_changed_object():
    tree = html_tree(render.markdown(review_plan()))
    sections = tree.find_all("details")
    summaries = [s.kids("summary")[0].text() for s in sections]
    assert summaries == [
        f"~ {RM} update: 1 field · set_alias",
        f"~ {EP} update: 5 fields · update_config, patch_tags",
        "+ serving_endpoint.new-agent create: 2 fields · create_endpoint",
        "-/+ serving_endpoint.renamed replace: 1 field · delete_endpoint, create_endpoint",
        "- serving_endpoint.gone delete: delete_endpoint",
    ]
    assert ["open" in s.attrs for s in sections] == [False, False, False, True, True]  # destructive ones open
    endpoint = sections[1]
    code = endpoint.find_all("code")[1]
    assert code.attrs == {"class": "language-diff"}
    assert code.text().splitlines() == [
        '! served_entities[champion].entity_version: "3" → "4"',
        '+ tags[owner]: "cx"',
        '- tags[old]: "x"',
        "! traffic[challenger]: 10 → 50",
        "! traffic[champion]: 90 → 50",
        "# served_entities[champion] follows alias champion → version 4",
    ]
    calls = [li.text() for li in endpoint.find_all("ul")[0].kids("li")]
    assert calls == ["update_config(champion=v4; routes champion=50% challenger=50%)",
                     "patch_tags(add: [owner], delete: [old])"]
    alias_call = sections[0].find_all("ul")[0].kids("li")[0].text()
    assert alias_call == f"set_alias(champion → 4) after {EP}"
    assert "forces replacement: description cannot change after creation" in sections[3].text()


def test_no_changes_is_one_line():
    plan = Plan(changes=[Change(EP, "serving_endpoint", "support-agent", Action.NOOP)], stack="prod")
    markdown = render.markdown(plan)
    tree = html_tree(markdown)
    assert tree.kids("h3")[0].text() == "reconciler plan · stack prod"
    assert [p.text() for p in tree.kids("p")] == ["No changes. The workspace matches the manifests."]
    assert not tree.find_all("details")


def test_values_with_backticks_and_html_stay_code():
    plan = Plan(changes=[Change(EP, "serving_endpoint", "support-agent", Action.UPDATE,
                                diff=[FieldChange("tags[x`y]", None, "<b>```</b> & `c`")],
                                operations=[Operation("patch_tags", "patch_tags(add: [x`y], delete: [])")])])
    tree = html_tree(render.markdown(plan))
    assert [b.text() for b in tree.find_all("b")] == ["update"]  # the action's own, nothing from the values
    section = tree.find_all("details")[0]
    assert section.find_all("pre")[0].text() == '+ tags[x`y]: "<b>```</b> & `c`"\n'
    assert section.find_all("ul")[0].text().strip() == "patch_tags(add: [x`y], delete: [])"


def huge_plan(count: int) -> Plan:
    """`count` new endpoints of about 30 fields each: far more than one comment holds."""
    changes = []
    for i in range(count):
        diff = [FieldChange(f"served_entities[agent].environment_vars[SETTING_{k:02}]", None, f"value-{i}-{k}")
                for k in range(28)] + [FieldChange("traffic[agent]", None, 100)]
        changes.append(Change(f"serving_endpoint.agent-{i:03}", "serving_endpoint", f"agent-{i:03}", Action.CREATE,
                              diff=diff, operations=[Operation("create_endpoint", f"create_endpoint(agent=m v{i})")]))
    return Plan(changes=changes)


def test_a_huge_plan_is_cut_under_the_comment_limit_with_a_note():
    markdown = render.markdown(huge_plan(300))
    assert len(markdown) <= render.MARKDOWN_BUDGET < render.GITHUB_COMMENT_LIMIT
    tree = html_tree(markdown)  # every section that is shown is whole: all tags balanced
    assert tree.kids("p")[0].text() == "Plan: 300 to create; 0 unchanged."
    sections = tree.find_all("details")
    shown = len(sections)
    assert 20 < shown < 300
    assert [s.kids("summary")[0].text().split()[1] for s in sections] == \
        [f"serving_endpoint.agent-{i:03}" for i in range(shown)]
    assert all(len(s.find_all("code")[1].text().splitlines()) == 29 for s in sections)
    note = tree.kids("blockquote")[-1].text()
    assert f"Plan truncated: {300 - shown} of 300 changed objects are not shown" in note
    assert "65,536-character comment limit" in note
    assert tree.children[-1] is tree.kids("blockquote")[-1] or not str(tree.children[-1]).strip()


def test_a_plan_that_fits_has_no_note():
    markdown = render.markdown(huge_plan(5))
    assert len(html_tree(markdown).find_all("details")) == 5
    assert "truncated" not in markdown


def test_the_head_is_bounded_too():
    """Thousands of deletes and warnings: the attention list and warnings are capped, so the
    comment still fits and still says what it left out."""
    changes = [Change(f"serving_endpoint.old-{i:04}", "serving_endpoint", f"old-{i:04}", Action.DELETE,
                      operations=[Operation("delete_endpoint", f"delete_endpoint(old-{i:04})")]) for i in range(3000)]
    plan = Plan(changes=changes, warnings=["w" * 5000] * 100, prune=True)
    markdown = render.markdown(plan)
    assert len(markdown) <= render.MARKDOWN_BUDGET
    tree = html_tree(markdown)
    assert tree.kids("p")[1].text() == "⚠️ Needs attention: 3000 deletes"
    items = tree.kids("ul")[0].kids("li")
    assert len(items) == render.ATTENTION_SHOWN + 1
    assert items[-1].text() == f"… and {3000 - render.ATTENTION_SHOWN} more (see each object below)"
    assert "Plan truncated:" in tree.kids("blockquote")[-1].text()


def test_a_budget_smaller_than_any_section_still_says_why():
    markdown = render.markdown(huge_plan(3), budget=1000)
    tree = html_tree(markdown)
    assert not tree.find_all("details")
    assert "Plan truncated: 3 of 3 changed objects are not shown" in tree.kids("blockquote")[-1].text()
