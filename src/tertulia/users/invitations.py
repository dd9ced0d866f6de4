"""Invitations: a one-time link, sent through the mail outbox, that makes its holder a member.

The link's token is stored only as `token_digest(token)`. A pending invitation is one that is not
expired, accepted or revoked; inviting the same address again revokes the earlier pending one,
so only the newest link works.
"""

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from tertulia.kit.clock import utcnow
from tertulia.kit.errors import Conflict, NotFound, ValidationFailed
from tertulia.kit.security import hash_password, new_token, token_digest, verify_password
from tertulia.kit.settings import get_settings
from tertulia.mail.service import queue_template
from tertulia.mail.texts import role_name
from tertulia.users.models import Invitation, Membership, Role, User
from tertulia.users.permissions import Actor, Permission, access_in_workspace
from tertulia.users.service import (
    check_password,
    check_role,
    clean_person_name,
    do_add_member,
    do_create_user,
    get_user_by_email,
    normalize_email,
)
from tertulia.users.sessions import check_not_throttled, record_sign_in_failure
from tertulia.workspaces.service import get_workspace

INVITATION_PATH = "/invitations"


@dataclass
class IssuedInvitation:
    invitation: Invitation
    token: str  # only in the email and in this return value, never stored
    url: str


def _pending(*, unexpired: bool = True) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None)]
    if unexpired:
        conditions.append(Invitation.expires_at > utcnow())
    return conditions


def do_invite(session: Session, actor: Actor, email: str, role: Role | str) -> IssuedInvitation:
    actor.require(Permission.MANAGE_USERS)
    invited_role = check_role(role)
    if invited_role == Role.OWNER:
        actor.require_owner("Only an owner may invite an owner.")
    address = normalize_email(email)
    already = session.scalar(
        select(Membership.id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.workspace_id == actor.workspace_id, User.email == address, Membership.active.is_(True))
    )
    if already is not None:
        raise Conflict("This person is already a member of the workspace.", details={"email": "already a member"})

    now = utcnow()
    settings = get_settings()
    session.execute(
        update(Invitation)
        .where(Invitation.workspace_id == actor.workspace_id, Invitation.email == address, *_pending(unexpired=False))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    token = new_token()
    invitation = Invitation(
        workspace_id=actor.workspace_id,
        email=address,
        role=invited_role,
        token_hash=token_digest(token),
        invited_by_id=actor.user_id,
        expires_at=now + timedelta(days=settings.invitation_days),
    )
    session.add(invitation)
    session.flush()

    workspace = get_workspace(session, actor.workspace_id)
    inviter = session.get(User, actor.user_id) if actor.user_id is not None else None
    url = f"{settings.base_url.rstrip('/')}{INVITATION_PATH}/{token}"
    language = workspace.default_language
    queue_template(
        session,
        address,
        "invitation",
        language,
        inviter=inviter.full_name if inviter is not None else workspace.name,
        workspace=workspace.name,
        role=role_name(invited_role.value, language),
        url=url,
        days=settings.invitation_days,
    )
    return IssuedInvitation(invitation=invitation, token=token, url=url)


def find_invitation(session: Session, token: str) -> Invitation | None:
    """The pending invitation for a link token, or None (unknown, expired, accepted or revoked)."""
    if not token:
        return None
    return session.scalar(select(Invitation).where(Invitation.token_hash == token_digest(token), *_pending()))


def do_accept_invitation(
    session: Session,
    token: str,
    *,
    password: str,
    first_name: str,
    last_name: str,
    device_id: str | None = None,
) -> User:
    """Create the invited user (or, for an existing account, check its password) and add the membership.
    `device_id`: the browser is a known device of the invited account (users.devices.known_device_for).

    A wrong password for an existing account is recorded for sign-in throttling before the
    ValidationFailed is raised; the caller should commit that (render the form again).
    """
    invitation = find_invitation(session, token)
    if invitation is None:
        raise NotFound("This invitation link is invalid, used or expired.", code="invalid_link")
    user = get_user_by_email(session, invitation.email)
    if user is None:
        user = do_create_user(
            session,
            invitation.email,
            check_password(password),
            first_name=clean_person_name(first_name, "first_name"),
            last_name=clean_person_name(last_name, "last_name"),
        )
    elif user.password_hash is None:
        user.password_hash = hash_password(check_password(password))
    else:
        check_not_throttled(session, user.email, None, device_id)
        if not verify_password(user.password_hash, password):
            record_sign_in_failure(session, user.email, None, device_id)
            raise ValidationFailed.field("password", "is not the password of your existing account")

    # The conditional update is what makes the link one-time under concurrent use.
    used = session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, *_pending())
        .values(accepted_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if getattr(used, "rowcount", 0) != 1:
        raise NotFound("This invitation link is invalid, used or expired.", code="invalid_link")
    session.refresh(invitation)

    membership = session.scalar(
        select(Membership)
        .where(Membership.workspace_id == invitation.workspace_id, Membership.user_id == user.id)
        .with_for_update()
    )
    if membership is None:
        do_add_member(session, invitation.workspace_id, user.id, Role(invitation.role))
    elif membership.active:
        raise Conflict("You are already a member of this workspace.", details={"email": "already a member"})
    else:
        membership.active = True
        membership.role = Role(invitation.role)
        session.flush()
    return user


def access_invitation(session: Session, actor: Actor, invitation_id: int) -> Invitation:
    return access_in_workspace(
        session, actor, Invitation, invitation_id, permission=Permission.MANAGE_USERS, not_found="Invitation not found."
    )


def do_revoke_invitation(session: Session, actor: Actor, invitation_id: int) -> Invitation:
    invitation = access_invitation(session, actor, invitation_id)
    if invitation.role == Role.OWNER:
        actor.require_owner("Only an owner may revoke an owner's invitation.")
    if invitation.accepted_at is not None:
        raise Conflict("This invitation was already accepted.", code="already_accepted")
    if invitation.revoked_at is None:
        invitation.revoked_at = utcnow()
        session.flush()
    return invitation


def list_invitations(session: Session, actor: Actor) -> list[Invitation]:
    """Pending invitations of the actor's workspace, newest first."""
    actor.require(Permission.MANAGE_USERS)
    return list(
        session.scalars(
            select(Invitation)
            .where(Invitation.workspace_id == actor.workspace_id, *_pending())
            .order_by(Invitation.created_at.desc(), Invitation.id.desc())
        )
    )
