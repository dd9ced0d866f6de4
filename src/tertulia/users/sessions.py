"""Browser sign-in: password check with throttling, server-side sessions, sign-out.

Throttling is kept in the database (login_throttles) so every web process sees the same count.
Both the account (email) and the client address are keys, so neither spraying one account from
many addresses nor many accounts from one address gets unlimited tries. A key's first
`login_max_failures` failures cost nothing; each one after that makes the key wait, first
`login_delay_seconds`, then twice as long at each further failure, up to `login_lockout_seconds`.
A key is forgotten once it has been quiet for `login_lockout_seconds`. The delays only grow for
someone who keeps failing; the person whose account it is keeps signing in from a device where
they signed in before (users/devices.py): there their attempts are counted under a key of that
device and account only, so failures made elsewhere do not lock them out.

The check takes the keys' rows (inserting them if needed) before the password is verified and holds
them to the commit, so concurrent attempts are counted in turn, on SQLite and PostgreSQL alike.

Ending sessions (sign-out, a password change or reset, a deactivated membership) publishes a
`session.ended` realtime event after commit, through Redis when several processes share events, so
the person's open inbox sockets close at once instead of at their next periodic check.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tertulia.kit import realtime
from tertulia.kit.clock import utcnow
from tertulia.kit.db import on_commit
from tertulia.kit.errors import RateLimited, Unauthorized
from tertulia.kit.security import new_token, token_digest, verify_password
from tertulia.kit.settings import get_settings
from tertulia.users.devices import account_tag
from tertulia.users.models import LoginThrottle, Membership, Role, User, WebSession
from tertulia.users.permissions import Actor

SESSION_COOKIE = "tertulia_session"
SESSION_ENDED = "session.ended"


@dataclass
class SignedIn:
    web_session: WebSession
    token: str  # goes in the cookie; only its digest is stored
    user: User


@dataclass
class CurrentSession:
    web_session: WebSession
    user: User
    membership: Membership

    @property
    def actor(self) -> Actor:
        return Actor(
            workspace_id=self.membership.workspace_id,
            kind="user",
            user_id=self.user.id,
            role=Role(self.membership.role),
        )


def _throttle_keys(email: str, client_ip: str | None, device_id: str | None) -> list[str]:
    if device_id is not None:
        return [f"device:{device_id}:{account_tag(email)}"]
    keys = [f"email:{email.strip().lower()}"]
    if client_ip:
        keys.append(f"ip:{client_ip}")
    return keys


def delay_after(failures: int) -> timedelta | None:
    """How long a key waits after its `failures`-th failure in a row (None: not at all)."""
    settings = get_settings()
    over = failures - settings.login_max_failures
    if over < 0:
        return None
    # Capped before raising 2 to a power an attacker chooses.
    seconds = min(settings.login_delay_seconds * 2 ** min(over, 32), settings.login_lockout_seconds)
    return timedelta(seconds=seconds)


def _claim_throttle_rows(session: Session, keys: list[str]) -> list[tuple[int, datetime, datetime | None]]:
    """Insert-or-touch each key's row in one statement and return (failures, first_failure_at,
    locked_until). The statement takes the row's lock (PostgreSQL) or runs inside the single write
    transaction (SQLite): a concurrent sign-in for the same key waits here until this transaction
    has committed its count, so it reads that count rather than the one from before."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    now = utcnow()
    rows = []
    for key in sorted(keys):  # one order for everyone, so two keys never lock in opposite orders
        new_row = insert(LoginThrottle).values(key=key, failures=0, first_failure_at=now)
        touch = new_row.on_conflict_do_update(
            index_elements=[LoginThrottle.key], set_={"key": new_row.excluded.key}
        ).returning(LoginThrottle.failures, LoginThrottle.first_failure_at, LoginThrottle.locked_until)
        failures, first_failure_at, locked_until = session.execute(touch).one()
        rows.append((failures, first_failure_at, locked_until))
    return rows


def check_not_throttled(session: Session, email: str, client_ip: str | None, device_id: str | None = None) -> None:
    """Refuse while a key must wait. Call it before verifying the password, and count a failure with
    `record_sign_in_failure` in the same transaction: the rows stay locked from here to the commit,
    so concurrent attempts are counted one after another and never get more than the allowed guesses.
    `device_id`: a known device of this account (users.devices.known_device_for)."""
    now = utcnow()
    keys = _throttle_keys(email, client_ip, device_id)
    for _failures, _first_failure_at, locked_until in _claim_throttle_rows(session, keys):
        if locked_until is not None and locked_until > now:
            seconds = int((locked_until - now).total_seconds()) + 1
            raise RateLimited("Too many failed sign-in attempts. Try again later.", retry_after=seconds)


def record_sign_in_failure(session: Session, email: str, client_ip: str | None, device_id: str | None = None) -> None:
    """Count one failed password check. Raising afterwards rolls this back, so callers that
    report the failure (render the form again) must let the transaction commit."""
    now = utcnow()
    quiet = timedelta(seconds=get_settings().login_lockout_seconds)
    for key in sorted(_throttle_keys(email, client_ip, device_id)):
        row = session.get(LoginThrottle, key, with_for_update=True, populate_existing=True)
        if row is None:
            row = LoginThrottle(key=key, failures=0, first_failure_at=now)
            session.add(row)
        elif row.failures == 0 or now - (row.locked_until or row.first_failure_at) > quiet:
            # No failure yet (a row only claimed by the check), or quiet for long enough: start over.
            row.failures, row.first_failure_at, row.locked_until = 0, now, None
        row.failures += 1
        delay = delay_after(row.failures)
        if delay is not None:
            row.locked_until = now + delay
    session.flush()


def clear_sign_in_failures(session: Session, email: str, device_id: str | None = None) -> None:
    keys = [f"email:{email.strip().lower()}"]
    if device_id is not None:
        keys.append(f"device:{device_id}:{account_tag(email)}")
    session.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(keys)))


def memberships_of(session: Session, user_id: int) -> list[Membership]:
    return list(
        session.scalars(
            select(Membership)
            .where(Membership.user_id == user_id, Membership.active.is_(True))
            .order_by(Membership.workspace_id)
        )
    )


def do_sign_in(
    session: Session,
    email: str,
    password: str,
    *,
    client_ip: str | None,
    workspace_id: int | None = None,
    device_id: str | None = None,
) -> SignedIn:
    """Raises RateLimited while throttled, Unauthorized on a bad email/password (same message for both).
    `device_id`: the browser is a known device of this account (users.devices.known_device_for).

    The failure is counted in `session` before Unauthorized is raised: the caller must catch it and
    still commit (as the sign-in page does when it shows the form again), or throttling never starts.
    """
    check_not_throttled(session, email, client_ip, device_id)
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if not verify_password(user.password_hash if user else None, password) or user is None:
        record_sign_in_failure(session, email, client_ip, device_id)
        raise Unauthorized("Wrong email or password.", details={"email": "wrong email or password"})
    memberships = memberships_of(session, user.id)
    if workspace_id is not None:
        memberships = [m for m in memberships if m.workspace_id == workspace_id]
    if not memberships:
        raise Unauthorized("This account has no active workspace.", code="no_workspace")
    clear_sign_in_failures(session, email, device_id)
    return _open_session(session, user, memberships[0].workspace_id)


def _open_session(session: Session, user: User, workspace_id: int) -> SignedIn:
    now = utcnow()
    token = new_token()
    web_session = WebSession(
        token_hash=token_digest(token),
        user_id=user.id,
        workspace_id=workspace_id,
        csrf_token=new_token(nbytes=24),
        expires_at=now + timedelta(days=get_settings().session_days),
        last_seen_at=now,
    )
    session.add(web_session)
    session.flush()
    return SignedIn(web_session=web_session, token=token, user=user)


def resolve_session(session: Session, token: str | None) -> CurrentSession | None:
    """The signed-in user for a cookie token, or None if unknown, expired, or no longer a member."""
    if not token:
        return None
    web_session = session.get(WebSession, token_digest(token))
    if web_session is None or web_session.expires_at <= utcnow():
        return None
    user = session.get(User, web_session.user_id)
    membership = session.scalar(
        select(Membership).where(
            Membership.user_id == web_session.user_id,
            Membership.workspace_id == web_session.workspace_id,
            Membership.active.is_(True),
        )
    )
    if user is None or membership is None:
        return None
    return CurrentSession(web_session=web_session, user=user, membership=membership)


def do_switch_workspace(session: Session, current: CurrentSession, workspace_id: int) -> None:
    if not any(m.workspace_id == workspace_id for m in memberships_of(session, current.user.id)):
        raise Unauthorized("You are not a member of that workspace.")
    current.web_session.workspace_id = workspace_id
    session.flush()


def session_tag(token_hash: str) -> str:
    """How realtime events name one session: a digest of its stored digest, so an event (which may
    travel through Redis) never carries a key of the sessions table."""
    return hashlib.sha256(f"session-tag:{token_hash}".encode()).hexdigest()[:32]


def _announce_ended(session: Session, user_id: int, workspace_ids: list[int], tag: str | None = None) -> None:
    """After commit: the user's sockets (only the one session's when `tag` is given) in these
    workspaces close. Every workspace the user belongs to when none is named: a socket stays
    subscribed to the workspace it opened in, even if its session has switched since."""
    if not workspace_ids:
        workspace_ids = list(session.scalars(select(Membership.workspace_id).where(Membership.user_id == user_id)))
    events = [
        {"type": SESSION_ENDED, "workspace_id": workspace_id, "user_id": user_id, "session": tag}
        for workspace_id in sorted(set(workspace_ids))
    ]

    def publish() -> None:
        for event in events:
            realtime.publish(event)

    on_commit(session, publish)


def do_sign_out(session: Session, token: str | None) -> None:
    if not token:
        return
    web_session = session.get(WebSession, token_digest(token))
    if web_session is None:
        return
    _announce_ended(session, web_session.user_id, [], tag=session_tag(web_session.token_hash))
    session.execute(delete(WebSession).where(WebSession.token_hash == web_session.token_hash))


def do_sign_out_everywhere(session: Session, user_id: int) -> None:
    """After a password change or reset: every other browser must sign in again."""
    session.execute(delete(WebSession).where(WebSession.user_id == user_id))
    _announce_ended(session, user_id, [])


def do_sign_out_of_workspace(session: Session, user_id: int, workspace_id: int) -> None:
    """When a membership is deactivated: that user's browsers in that workspace are signed out."""
    session.execute(delete(WebSession).where(WebSession.user_id == user_id, WebSession.workspace_id == workspace_id))
    _announce_ended(session, user_id, [workspace_id])
