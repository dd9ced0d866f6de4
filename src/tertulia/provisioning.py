"""Creating a workspace with its first owner and its default segments: shared by the CLI, the demo
and the tests. A composition module (like app.py and cli.py): it calls several domains, so it sits
above them all rather than in `workspaces/`, which the other domains build on."""

from dataclasses import dataclass

from sqlalchemy.orm import Session

from tertulia.kit.errors import PermissionDenied
from tertulia.kit.security import verify_password
from tertulia.segments.service import do_create_default_segments
from tertulia.users.models import Role, User
from tertulia.users.service import do_add_member, do_create_user, get_user_by_email
from tertulia.workspaces.models import Workspace
from tertulia.workspaces.service import do_create_workspace


@dataclass
class NewWorkspace:
    workspace: Workspace
    owner: User


def do_create_workspace_with_owner(
    session: Session,
    name: str,
    owner_email: str,
    owner_password: str,
    *,
    default_country: str | None = None,
    timezone: str = "UTC",
    default_language: str = "en",
    owner_first_name: str = "",
) -> NewWorkspace:
    """An existing user becomes the owner only when the password given is theirs."""
    workspace = do_create_workspace(
        session, name, default_country=default_country, timezone=timezone, default_language=default_language
    )
    owner = get_user_by_email(session, owner_email)
    if owner is None:
        owner = do_create_user(session, owner_email, owner_password, first_name=owner_first_name)
    elif not verify_password(owner.password_hash, owner_password):
        raise PermissionDenied("A user with this email exists and the password does not match.")
    do_add_member(session, workspace.id, owner.id, Role.OWNER)
    do_create_default_segments(session, workspace.id, workspace.default_language)
    return NewWorkspace(workspace=workspace, owner=owner)
