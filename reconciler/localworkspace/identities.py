"""Who is calling: the users and service principals of the local workspace, their groups and tokens.

Every token belongs to one principal, so a test can call as a workspace admin, as a user without
any grant, or as a service principal, and see what a real workspace shows each of them:
- the default token (`LocalWorkspace(token=...)`) belongs to the default user, a workspace admin
  (member of `admins`), so everything that worked with one user keeps working;
- `GET /api/2.0/preview/scim/v2/Me` answers for the token's principal. For a service principal
  `userName` is its application id, a UUID: the Databricks CLI tells service principals from
  users by exactly that (databricks/cli `libs/iamutil/service_principal.go`,
  `IsServicePrincipalName`: "if the user name is a UUID, then we assume it's a service principal");
- every principal is a member of `users` (the workspace's built-in group of all its members) and
  of the groups its seed names; `admin: true` adds `admins`, whose members hold CAN_MANAGE on every
  serving endpoint (the inherited grant the Permissions API lists, see `serving.py`);
- a read-only token (`add_token(..., read_only=True)`) belongs to a principal but may only read:
  a test control for "this identity may not write", kept from the first release.

Seeds (`seed.py`) may add principals:

    users:
      - {user_name: viewer@example.com, display_name: Viewer, groups: [support-team], tokens: [viewer-token]}
      - {user_name: ops@example.com, admin: true, tokens: [ops-token]}
    service_principals:
      - {application_id: 6f0d1c9e-..., display_name: cx-deployer, tokens: [deployer-token]}
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from reconciler.localworkspace.clock import WORKSPACE_ID

UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
BUILT_IN_GROUPS = ("users", "admins")
USER_KEYS = {"user_name", "display_name", "admin", "groups", "tokens", "active"}
SERVICE_PRINCIPAL_KEYS = {"application_id", "display_name", "admin", "groups", "tokens", "active"}


def stable_id(kind: str, name: str) -> str:
    """A 16-digit SCIM id, the same for a name every time (ids are numbers in SCIM answers)."""
    return str(int(hashlib.sha256(f"{kind}:{name}".encode()).hexdigest()[:13], 16)).zfill(16)[:16]


@dataclass(frozen=True)
class Principal:
    """A user (named by e-mail) or a service principal (named by its application id)."""

    kind: str  # "user" | "service_principal"
    name: str
    display_name: str
    groups: tuple[str, ...] = ()
    admin: bool = False
    active: bool = True

    @property
    def id(self) -> str:
        return stable_id(self.kind, self.name)

    @property
    def acl_key(self) -> tuple[str, str]:
        """How the Permissions API names this principal in an access control list."""
        return ("user_name" if self.kind == "user" else "service_principal_name", self.name)

    @property
    def creator_kind(self) -> str:
        """`creator_kind` of the endpoints it creates: "User" in real captures
        (shared/reference/real-api/endpoint_create_resp_03.json, endpoint_list_01.json)."""
        return "User" if self.kind == "user" else "ServicePrincipal"

    def member_of(self) -> set[str]:
        return {"users", *self.groups, *(("admins",) if self.admin else ())}

    def scim_me(self) -> dict[str, Any]:
        """The SCIM `Me` document (`w.current_user.me()` parses it into `iam.User`)."""
        me: dict[str, Any] = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": self.id, "userName": self.name, "displayName": self.display_name, "active": self.active,
            "groups": [{"display": group, "type": "direct", "value": stable_id("group", group)}
                       for group in sorted(self.member_of() - {"users"})],
            "entitlements": [{"value": "workspace-access"}],
            "externalId": WORKSPACE_ID,
        }
        if self.kind == "user":
            me["emails"] = [{"value": self.name, "type": "work", "primary": True}]
        return me


@dataclass
class Identities:
    """Principals by name and the tokens that authenticate them."""

    principals: dict[str, Principal] = field(default_factory=dict)
    tokens: dict[str, tuple[str, bool]] = field(default_factory=dict)  # token -> (principal name, read only)
    default: str = ""

    @classmethod
    def with_default_user(cls, user_name: str) -> Identities:
        identities = cls(default=user_name)
        identities.add(Principal("user", user_name, "Local User", admin=True))
        return identities

    def add(self, principal: Principal) -> Principal:
        self.principals[principal.name] = principal
        return principal

    def add_token(self, token: str, principal: str | None = None, *, read_only: bool = False) -> None:
        name = principal or self.default
        if name not in self.principals:
            raise ValueError(f"no user or service principal named '{name}'")
        self.tokens[token] = (name, read_only)

    def for_token(self, token: str) -> tuple[Principal, bool] | None:
        """The principal a token authenticates and whether the token is read-only, or None."""
        found = self.tokens.get(token)
        if found is None:
            return None
        return self.principals[found[0]], found[1]

    def default_principal(self) -> Principal:
        return self.principals[self.default]

    def seed(self, kind: str, entry: Any) -> None:
        """Add one `users` or `service_principals` seed entry (ValueError names what is wrong)."""
        if not isinstance(entry, dict):
            raise ValueError("must be a mapping")
        key, allowed = ("user_name", USER_KEYS) if kind == "user" else ("application_id", SERVICE_PRINCIPAL_KEYS)
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ValueError(f"unknown field '{unknown[0]}'; expected {', '.join(sorted(allowed))}")
        name = entry.get(key)
        if not isinstance(name, str) or not name:
            raise ValueError(f"needs '{key}'")
        if kind == "service_principal" and not UUID.match(name):
            raise ValueError(f"application_id '{name}' is not a UUID (service principals are named by one)")
        groups, tokens = entry.get("groups") or [], entry.get("tokens") or []
        for label, values in (("groups", groups), ("tokens", tokens)):
            if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
                raise ValueError(f"{label} must be a list of strings")
        principal = self.add(Principal(kind, name, str(entry.get("display_name") or name),
                                       groups=tuple(groups), admin=entry.get("admin") is True,
                                       active=entry.get("active", True) is not False))
        for token in tokens:
            self.add_token(token, principal.name)
