"""Unity Catalog grants and the effective-permissions API, for registered models.

`GET /api/2.1/unity-catalog/effective-permissions/{securable_type}/{full_name}?principal=`
(`w.grants.get_effective`, SDK `service/catalog.py`) answers `{"privilege_assignments":
[{"principal", "privileges": [{"privilege", "inherited_from_type", "inherited_from_name"}]}]}`:
privileges granted on the securable itself, and those it inherits from its schema and catalog
("Includes inherited permissions from any parent securables", same docstring), the inherited ones
naming where they come from. Registered models are FUNCTION securables (Unity Catalog calls them
"Routine or Model"; shared/reference/databricks-api.md); querying a model version needs
USE_CATALOG, USE_SCHEMA and EXECUTE (SDK `catalog.py` docstrings). The SDK passes
`securable_type` as a plain string, so both `function` and `FUNCTION` are accepted.

Grants come from the seed only (the reconciler never writes them):

    grants:
      - {securable_type: catalog, full_name: main, principal: cx-deployers, privileges: [USE_CATALOG]}
      - {securable_type: schema, full_name: main.agents, principal: cx-deployers, privileges: [USE_SCHEMA]}
      - {securable_type: function, full_name: main.agents.support_agent, principal: viewer@example.com,
         privileges: [EXECUTE]}

Ours, not documented: `principal=` filters on that exact principal; grants held through a group
are listed under the group, not expanded into its members, and a principal with no privilege
yields an empty `privilege_assignments`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconciler.localworkspace.errors import invalid

PARTS = {"CATALOG": 1, "SCHEMA": 2, "FUNCTION": 3}  # name parts of each securable type we keep
GRANT_KEYS = {"securable_type", "full_name", "principal", "privileges"}


def securable(securable_type: str, full_name: str) -> tuple[str, str]:
    """The upper-case type and lower-case name (Unity Catalog names fold case), checked."""
    kind = securable_type.upper()
    if kind not in PARTS:
        raise invalid(f"Unsupported securable type '{securable_type}'; expected one of "
                      f"{', '.join(sorted(PARTS))}.")
    parts = full_name.lower().split(".")
    if len(parts) != PARTS[kind] or not all(parts):
        raise invalid(f"Invalid full name '{full_name}' for a {kind} securable.")
    return kind, ".".join(parts)


@dataclass
class Grants:
    # (securable type, full name) -> principal -> privileges
    granted: dict[tuple[str, str], dict[str, set[str]]] = field(default_factory=dict)

    def seed(self, entry: Any) -> None:
        if not isinstance(entry, dict):
            raise ValueError("must be a mapping")
        unknown = sorted(set(entry) - GRANT_KEYS)
        if unknown:
            raise ValueError(f"unknown field '{unknown[0]}'; expected {', '.join(sorted(GRANT_KEYS))}")
        privileges = entry.get("privileges")
        if not isinstance(privileges, list) or not all(isinstance(p, str) and p for p in privileges):
            raise ValueError("privileges must be a list of privilege names")
        if not all(isinstance(entry.get(key), str) and entry[key] for key in ("securable_type", "full_name",
                                                                             "principal")):
            raise ValueError("needs securable_type, full_name and principal")
        key = securable(entry["securable_type"], entry["full_name"])
        self.granted.setdefault(key, {}).setdefault(entry["principal"], set()).update(
            p.upper() for p in privileges)

    def effective(self, securable_type: str, full_name: str, principal: str | None) -> dict[str, Any]:
        kind, name = securable(securable_type, full_name)
        parts = name.split(".")
        # The securable itself first, then its parents (schema, catalog), each naming its source.
        chain = [(kind, name, False)] + [(parent, ".".join(parts[:PARTS[parent]]), True)
                                         for parent in ("SCHEMA", "CATALOG") if PARTS[parent] < len(parts)]
        assignments: dict[str, list[dict[str, Any]]] = {}
        for source_kind, source_name, inherited in chain:
            for holder, privileges in sorted(self.granted.get((source_kind, source_name), {}).items()):
                if principal is not None and holder != principal:
                    continue
                for privilege in sorted(privileges):
                    entry: dict[str, Any] = {"privilege": privilege}
                    if inherited:
                        entry.update(inherited_from_type=source_kind, inherited_from_name=source_name)
                    assignments.setdefault(holder, []).append(entry)
        return {"privilege_assignments": [{"principal": holder, "privileges": privileges}
                                          for holder, privileges in sorted(assignments.items())]}
