"""Password reset by a one-time link, and password change.

Asking for a reset never tells whether an account exists: an unknown address gets the same
answer and, since no argon2 hash or SMTP call happens on either path inside the request (mail is
sent after commit, in the background), the same timing class. The link's token is stored only as
`token_digest(token)`. Using a link spends it and every other unused link of that user, signs the
user out of every browser, and clears sign-in throttling for the address.
"""

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tertulia.kit.clock import utcnow
from tertulia.kit.errors import NotFound, ValidationFailed
from tertulia.kit.security import hash_password, new_token, token_digest, verify_password
from tertulia.kit.settings import get_settings
from tertulia.mail.service import queue_template
from tertulia.mail.texts import pick_language
from tertulia.users.models import Membership, PasswordReset, User
from tertulia.users.service import check_password, get_user_by_email, normalize_email
from tertulia.users.sessions import (
    check_not_throttled,
    clear_sign_in_failures,
    do_sign_out_everywhere,
    record_sign_in_failure,
)
from tertulia.workspaces.models import Workspace

PASSWORD_RESET_PATH = "/password-reset"  # noqa: S105 (a URL path, not a secret)
# One reset email per account per interval: the form cannot be used to flood someone's inbox.
RESEND_INTERVAL = timedelta(minutes=1)


def _user_language(session: Session, user: User) -> str:
    """The user's own language, else the default language of their first active workspace."""
    workspace_language = session.scalar(
        select(Workspace.default_language)
        .join(Membership, Membership.workspace_id == Workspace.id)
        .where(Membership.user_id == user.id, Membership.active.is_(True))
        .order_by(Membership.workspace_id)
        .limit(1)
    )
    return pick_language(user.language, workspace_language)


def _base_url() -> str:
    return get_settings().base_url.rstrip("/")


def do_request_password_reset(session: Session, email: str) -> None:
    """Queue a reset link for the account with this email, if there is one. Raises only on a
    malformed address (422), never on an unknown one."""
    address = normalize_email(email)
    token = new_token()
    digest = token_digest(token)
    user = get_user_by_email(session, address)
    if user is None:
        return
    now = utcnow()
    recent = session.scalar(
        select(PasswordReset.id).where(
            PasswordReset.user_id == user.id,
            PasswordReset.used_at.is_(None),
            PasswordReset.created_at > now - RESEND_INTERVAL,
        )
    )
    if recent is not None:
        return
    hours = get_settings().password_reset_hours
    session.add(PasswordReset(user_id=user.id, token_hash=digest, expires_at=now + timedelta(hours=hours)))
    session.flush()
    queue_template(
        session,
        user.email,
        "password_reset",
        _user_language(session, user),
        name=user.first_name or user.email,
        url=f"{_base_url()}{PASSWORD_RESET_PATH}/{token}",
        hours=hours,
    )


def find_password_reset(session: Session, token: str) -> PasswordReset | None:
    """The usable reset for a link token, or None (unknown, used or expired)."""
    if not token:
        return None
    return session.scalar(
        select(PasswordReset).where(
            PasswordReset.token_hash == token_digest(token),
            PasswordReset.used_at.is_(None),
            PasswordReset.expires_at > utcnow(),
        )
    )


def do_reset_password(session: Session, token: str, new_password: str) -> User:
    check_password(new_password, "new_password")
    reset = find_password_reset(session, token)
    if reset is None:
        raise NotFound("This password reset link is invalid, used or expired.", code="invalid_link")
    now = utcnow()
    # The conditional update is what makes the link one-time when two requests race.
    spent = session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == reset.id, PasswordReset.used_at.is_(None), PasswordReset.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(spent, "rowcount", 0) != 1:
        raise NotFound("This password reset link is invalid, used or expired.", code="invalid_link")
    user = session.get(User, reset.user_id)
    if user is None:
        raise NotFound("This password reset link is invalid, used or expired.", code="invalid_link")
    session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    _set_password(session, user, new_password)
    clear_sign_in_failures(session, user.email)
    return user


def do_change_password(
    session: Session, user: User, current_password: str, new_password: str, *, device_id: str | None = None
) -> User:
    """Change a signed-in user's password. Every browser, the current one included, is signed out.
    `device_id`: the browser is a known device of this account (users.devices.known_device_for)."""
    check_not_throttled(session, user.email, None, device_id)
    if not verify_password(user.password_hash, current_password):
        # Counted like a failed sign-in (a caller that reports it must commit for the count to stay).
        record_sign_in_failure(session, user.email, None, device_id)
        raise ValidationFailed.field("current_password", "is not your current password")
    check_password(new_password, "new_password")
    _set_password(session, user, new_password)
    return user


def _set_password(session: Session, user: User, password: str) -> None:
    user.password_hash = hash_password(password)
    do_sign_out_everywhere(session, user.id)
    session.flush()
    queue_template(
        session,
        user.email,
        "password_changed",
        _user_language(session, user),
        name=user.first_name or user.email,
        url=f"{_base_url()}/forgot-password",
    )
