"""Who may do what. The matrix is documented in docs/permissions.md; keep the two in step."""

import enum
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.kit.errors import PermissionDenied, found
from tertulia.users.models import Role

_Scoped = TypeVar("_Scoped")


class Permission(enum.StrEnum):
    MANAGE_WORKSPACE = "manage_workspace"
    MANAGE_USERS = "manage_users"
    MANAGE_TEAMS = "manage_teams"
    MANAGE_CHANNELS = "manage_channels"
    MANAGE_CUSTOM_FIELDS = "manage_custom_fields"
    MANAGE_TAGS = "manage_tags"
    MANAGE_SEGMENTS = "manage_segments"
    MANAGE_BROADCASTS = "manage_broadcasts"
    MANAGE_WORKFLOWS = "manage_workflows"
    MANAGE_SNIPPETS = "manage_snippets"
    MANAGE_API_TOKENS = "manage_api_tokens"
    MANAGE_WEBHOOKS = "manage_webhooks"
    MANAGE_KNOWLEDGE = "manage_knowledge"
    VIEW_CONTACTS = "view_contacts"
    EDIT_CONTACTS = "edit_contacts"
    DELETE_CONTACTS = "delete_contacts"
    MERGE_CONTACTS = "merge_contacts"
    IMPORT_CONTACTS = "import_contacts"
    EXPORT_CONTACTS = "export_contacts"
    VIEW_ALL_CONVERSATIONS = "view_all_conversations"
    VIEW_REPORTS = "view_reports"
    EXPORT_DATA = "export_data"


# Modelled on respond.io's access levels. Owners and managers hold the same permissions; what sets
# owners apart are rules on the owner role itself (only an owner may invite an owner, grant or
# revoke the role, or deactivate an owner; a workspace always keeps one active owner).
_AGENT = frozenset({Permission.VIEW_CONTACTS, Permission.EDIT_CONTACTS, Permission.MERGE_CONTACTS})
_MANAGER = frozenset(Permission)
_OWNER = frozenset(Permission)

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: _OWNER,
    Role.MANAGER: _MANAGER,
    Role.AGENT: _AGENT,
}
# An API token is an integration's credential: it works with the workspace's data, but it cannot
# change settings, people, channels (their credentials) or mint further tokens, so a leaked token
# cannot lock the team out or persist itself.
API_TOKEN_PERMISSIONS = _MANAGER - {
    Permission.MANAGE_WORKSPACE,
    Permission.MANAGE_USERS,
    Permission.MANAGE_TEAMS,
    Permission.MANAGE_CHANNELS,
    Permission.MANAGE_API_TOKENS,
}


@dataclass(frozen=True)
class Actor:
    """Who is acting, in which workspace: a signed-in user, an API token, or the system."""

    workspace_id: int
    kind: str  # "user", "api", "system", "import"
    user_id: int | None = None
    role: Role | None = None
    token_id: int | None = None

    @property
    def permissions(self) -> frozenset[Permission]:
        if self.kind == "user":
            assert self.role is not None
            return ROLE_PERMISSIONS[self.role]
        if self.kind == "api":
            return API_TOKEN_PERMISSIONS
        return _OWNER

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    @property
    def is_owner(self) -> bool:
        """Owners alone may grant, revoke or remove the owner role; the system (CLI) acts as one."""
        return (self.kind == "user" and self.role == Role.OWNER) or self.kind == "system"

    def require_owner(self, message: str = "Only an owner may do this.") -> None:
        if not self.is_owner:
            raise PermissionDenied(message, details={"role": "owner required"})

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise PermissionDenied(
                "You do not have permission to do this.",
                details={"permission": permission.value},
            )

    @classmethod
    def system(cls, workspace_id: int, kind: str = "system") -> "Actor":
        return cls(workspace_id=workspace_id, kind=kind)


def access_in_workspace(
    session: Session,
    actor: Actor,
    model: type[_Scoped],
    object_id: int,
    *,
    permission: Permission | None,
    not_found: str,
) -> _Scoped:
    """The shape every `access_*` shares: the actor's permission first, then the row of the actor's
    workspace with that id. Another workspace's row is not found (404), never forbidden, so ids do
    not leak across workspaces. `model` has `id` and `workspace_id` columns."""
    if permission is not None:
        actor.require(permission)
    columns: Any = model
    query = select(model).where(columns.workspace_id == actor.workspace_id, columns.id == object_id)
    return found(session.scalar(query), not_found)
