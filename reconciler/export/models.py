"""A registered model → its manifest document (`RegisteredModel`): comment and aliases.

The export step of the `RegisteredModel` kind (kinds/registered_model.py), called by
`convert.export_objects`. Pure. Built from `normalize.live_model`, the shape plan compares, so the
document plans back to no changes; the owner is left unmanaged (a comment says so).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.export.documents import Document, ExportOptions, escape, header, template_name
from reconciler.manifests.model import API_VERSION
from reconciler.normalize import live_model


def export_model(api: dict[str, Any], options: ExportOptions, *, served_by: Sequence[str] = ()) -> Document:
    full_name = api.get("full_name") or ""
    live = live_model(api)
    doc = Document("RegisteredModel", template_name(full_name, options.variables, uc=True), {})
    spec: dict[str, Any] = {}
    doc.data = {"apiVersion": API_VERSION, "kind": "RegisteredModel", "metadata": {"name": doc.name}, "spec": spec}
    if live.get("comment"):
        spec["comment"] = live["comment"]
    if live["aliases"]:
        spec["aliases"] = {alias: live["aliases"][alias] for alias in sorted(live["aliases"])}
        doc.eol[("spec", "aliases")] = "the complete set: an alias not listed here is removed on apply"
    else:
        doc.note(("spec",), "aliases: it has none; leave out to leave them unmanaged")
    if live.get("owner"):
        doc.note(("spec",), f"owner ({live['owner']}): unmanaged; add `owner:` to manage it")
    doc.header = header(f"registered model {full_name}")
    if served_by:
        doc.header.append(f"Exported with serving endpoint(s) {', '.join(served_by)}, which serve it through its "
                          "aliases.")
    doc.data = escape(doc.data)
    return doc

