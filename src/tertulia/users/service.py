"""Users, memberships and API tokens: the rules. Repositories of this size live inline here."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.kit.clock import utcnow
from tertulia.kit.errors import Conflict, NotFound, PermissionDenied, Unauthorized, ValidationFailed, found
from tertulia.kit.security import hash_password, new_token, token_digest
from tertulia.users.models import ActivityStatus, ApiToken, Membership, Role, TokenScope, User
from tertulia.users.permissions import Actor, Permission
from tertulia.users.presence import set_shown_status
from tertulia.users.sessions import do_sign_out_of_workspace
from tertulia.workspaces.service import check_timezone

MIN_PASSWORD_LENGTH = 8
API_TOKEN_PREFIX = "tt_"  # noqa: S105 (a prefix, not a secret)
MAX_TOKEN_LIFETIME = timedelta(days=5 * 366)


def normalize_email(value: str, field: str = "email") -> str:
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationFailed.field(field, str(exc)) from exc
    return result.normalized.lower()


def check_password(password: str, field: str = "password") -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed.field(field, f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1024:
        raise ValidationFailed.field(field, "is too long")
    return password


def get_user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def do_create_user(
    session: Session,
    email: str,
    password: str | None,
    *,
    first_name: str = "",
    last_name: str = "",
    language: str | None = None,
) -> User:
    normalized = normalize_email(email)
    if get_user_by_email(session, normalized) is not None:
        raise Conflict("A user with this email already exists.", details={"email": "already exists"})
    user = User(
        email=normalized,
        password_hash=hash_password(check_password(password)) if password is not None else None,
        first_name=first_name.strip(),
        last_name=last_name.strip(),
        language=language,
    )
    session.add(user)
    session.flush()
    return user


def do_add_member(session: Session, workspace_id: int, user_id: int, role: Role) -> Membership:
    existing = session.scalar(
        select(Membership).where(Membership.workspace_id == workspace_id, Membership.user_id == user_id)
    )
    if existing is not None:
        raise Conflict("This user is already a member of the workspace.")
    membership = Membership(workspace_id=workspace_id, user_id=user_id, role=role, active=True)
    session.add(membership)
    session.flush()
    return membership


def get_membership(session: Session, workspace_id: int, user_id: int) -> Membership | None:
    return session.scalar(
        select(Membership).where(Membership.workspace_id == workspace_id, Membership.user_id == user_id)
    )


def check_member_user(session: Session, workspace_id: int, user_id: int, field: str = "user_id") -> User:
    """A user that is an active member of the workspace; other workspaces' users do not exist here."""
    user = session.scalar(
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.workspace_id == workspace_id, User.id == user_id, Membership.active.is_(True))
    )
    if user is None:
        raise ValidationFailed.field(field, f"no active user {user_id} in this workspace")
    return user


@dataclass
class IssuedToken:
    token: ApiToken
    secret: str  # shown once, never stored


def check_token_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes in their catalogue order; at least one, each a TokenScope."""
    chosen = set(scopes)
    unknown = sorted(chosen - set(TokenScope))
    if unknown:
        raise ValidationFailed.field("scopes", f"unknown scope: {', '.join(unknown)}")
    if not chosen:
        raise ValidationFailed.field("scopes", "choose at least one scope")
    return [scope.value for scope in TokenScope if scope.value in chosen]


def check_token_expiry(expires_at: datetime | None) -> datetime | None:
    if expires_at is None:
        return None
    if expires_at.tzinfo is None:
        raise ValidationFailed.field("expires_at", "must carry a time zone")
    now = utcnow()
    if expires_at <= now:
        raise ValidationFailed.field("expires_at", "must be in the future")
    if expires_at > now + MAX_TOKEN_LIFETIME:
        raise ValidationFailed.field("expires_at", "must be at most five years from now")
    return expires_at


def do_create_api_token(
    session: Session,
    workspace_id: int,
    name: str,
    *,
    created_by_id: int | None = None,
    scopes: Iterable[str] = (TokenScope.ADMIN,),
    expires_at: datetime | None = None,
) -> IssuedToken:
    label = name.strip() or "API token"
    if len(label) > 120:
        raise ValidationFailed.field("name", "must be at most 120 characters")
    chosen = check_token_scopes(scopes)
    expiry = check_token_expiry(expires_at)
    secret = new_token(API_TOKEN_PREFIX)
    token = ApiToken(
        workspace_id=workspace_id,
        name=label,
        prefix=secret[: len(API_TOKEN_PREFIX) + 6],
        token_hash=token_digest(secret),
        created_by_id=created_by_id,
        scopes=chosen,
        expires_at=expiry,
    )
    session.add(token)
    session.flush()
    return IssuedToken(token=token, secret=secret)


def list_api_tokens(session: Session, workspace_id: int) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).where(ApiToken.workspace_id == workspace_id).order_by(ApiToken.id)))


def do_revoke_api_token(session: Session, workspace_id: int, token_id: int) -> ApiToken:
    token = session.scalar(select(ApiToken).where(ApiToken.workspace_id == workspace_id, ApiToken.id == token_id))
    if token is None:
        raise NotFound("API token not found.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    return token


def find_active_api_token(session: Session, secret: str) -> ApiToken | None:
    """The token, unless unknown or revoked; raises Unauthorized (code token_expired) once it has
    expired, so an integration's logs say why it stopped working."""
    token = session.scalar(
        select(ApiToken).where(ApiToken.token_hash == token_digest(secret), ApiToken.revoked_at.is_(None))
    )
    if token is not None and token.expires_at is not None and token.expires_at <= utcnow():
        raise Unauthorized(
            f"This API token expired on {token.expires_at.isoformat(timespec='seconds')}.", code="token_expired"
        )
    return token


def do_create_api_token_for(
    session: Session,
    actor: Actor,
    name: str,
    *,
    scopes: Iterable[str] = (TokenScope.ADMIN,),
    expires_at: datetime | None = None,
) -> IssuedToken:
    """Create a token from the UI or the API: only who may manage API tokens."""
    actor.require(Permission.MANAGE_API_TOKENS)
    return do_create_api_token(
        session, actor.workspace_id, name, created_by_id=actor.user_id, scopes=scopes, expires_at=expires_at
    )


def list_api_tokens_for(session: Session, actor: Actor) -> list[ApiToken]:
    actor.require(Permission.MANAGE_API_TOKENS)
    return list_api_tokens(session, actor.workspace_id)


def do_revoke_api_token_for(session: Session, actor: Actor, token_id: int) -> ApiToken:
    actor.require(Permission.MANAGE_API_TOKENS)
    return do_revoke_api_token(session, actor.workspace_id, token_id)


# ----- members ------------------------------------------------------------------------------

MAX_NAME_LENGTH = 100
PROFILE_LANGUAGES = ("en", "es")


def clean_person_name(value: str | None, field: str) -> str:
    cleaned = " ".join((value or "").split())
    if len(cleaned) > MAX_NAME_LENGTH:
        raise ValidationFailed.field(field, f"must be at most {MAX_NAME_LENGTH} characters")
    if any(not ch.isprintable() for ch in cleaned):
        raise ValidationFailed.field(field, "must not contain control characters")
    return cleaned


def check_role(value: object, field: str = "role") -> Role:
    try:
        return Role(str(value))
    except ValueError as exc:
        raise ValidationFailed.field(field, f"must be one of {', '.join(r.value for r in Role)}") from exc


@dataclass
class Member:
    user: User
    membership: Membership

    @property
    def role(self) -> Role:
        return Role(self.membership.role)

    @property
    def active(self) -> bool:
        return self.membership.active


def list_members(session: Session, actor: Actor, *, include_inactive: bool = True) -> list[Member]:
    """Everyone in the actor's workspace; any member may see who their colleagues are."""
    query = (
        select(User, Membership)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.workspace_id == actor.workspace_id)
        .order_by(User.first_name, User.last_name, User.email)
    )
    if not include_inactive:
        query = query.where(Membership.active.is_(True))
    return [Member(user=user, membership=membership) for user, membership in session.execute(query)]


def member_names(session: Session, workspace_id: int) -> dict[int, str]:
    """Active members of the workspace by id, sorted by name, for assignee pickers and names in logs."""
    rows = session.execute(
        select(User.id, User.first_name, User.last_name, User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.workspace_id == workspace_id, Membership.active.is_(True))
    )
    names = {row.id: (f"{row.first_name} {row.last_name}".strip() or row.email) for row in rows}
    return dict(sorted(names.items(), key=lambda item: item[1].casefold()))


def access_member(session: Session, actor: Actor, user_id: int) -> Member:
    """A member of the actor's workspace, for managing; users of other workspaces are not found."""
    actor.require(Permission.MANAGE_USERS)
    row = session.execute(
        select(User, Membership)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.workspace_id == actor.workspace_id, User.id == user_id)
    ).first()
    user, membership = found(row, "Member not found.")
    return Member(user=user, membership=membership)


def _check_other_active_owner(session: Session, workspace_id: int, user_id: int) -> None:
    # FOR UPDATE on every active owner's row, always in id order (so two of these never deadlock):
    # of two owners demoting each other at once, the second sees the first's change and is refused.
    owners = session.scalars(
        select(Membership.user_id)
        .where(Membership.workspace_id == workspace_id, Membership.role == Role.OWNER, Membership.active.is_(True))
        .order_by(Membership.id)
        .with_for_update()
    ).all()
    if not any(owner != user_id for owner in owners):
        raise Conflict("A workspace needs at least one active owner.", code="last_owner")


def do_change_role(session: Session, actor: Actor, user_id: int, role: Role | str) -> Member:
    new_role = check_role(role)
    member = access_member(session, actor, user_id)
    if Role.OWNER in (new_role, member.role):
        actor.require_owner("Only an owner may grant or revoke the owner role.")
    if member.role == Role.OWNER and new_role != Role.OWNER and member.active:
        _check_other_active_owner(session, actor.workspace_id, user_id)
    member.membership.role = new_role
    session.flush()
    return member


def do_deactivate_member(session: Session, actor: Actor, user_id: int) -> Member:
    """The member can no longer sign in to this workspace; their browsers there are signed out."""
    member = access_member(session, actor, user_id)
    if actor.user_id == user_id:
        raise PermissionDenied("You cannot deactivate yourself; ask another owner or manager.")
    if member.role == Role.OWNER:
        actor.require_owner("Only an owner may deactivate an owner.")
        if member.active:
            _check_other_active_owner(session, actor.workspace_id, user_id)
    member.membership.active = False
    do_sign_out_of_workspace(session, user_id, actor.workspace_id)
    session.flush()
    return member


def do_reactivate_member(session: Session, actor: Actor, user_id: int) -> Member:
    member = access_member(session, actor, user_id)
    if member.role == Role.OWNER:
        actor.require_owner("Only an owner may reactivate an owner.")
    member.membership.active = True
    session.flush()
    return member


# ----- profile and activity status ----------------------------------------------------------


def do_update_profile(
    session: Session,
    user: User,
    *,
    first_name: str,
    last_name: str,
    language: str | None,
    timezone: str | None,
    avatar_url: str | None,
    email_signature: str | None = None,
) -> User:
    """Validate every field (all problems reported at once), then save. `email_signature` None
    leaves it as it is; empty text removes it."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    checks: dict[str, Callable[[], Any]] = {
        "first_name": lambda: clean_person_name(first_name, "first_name"),
        "last_name": lambda: clean_person_name(last_name, "last_name"),
        "language": lambda: _check_profile_language(language),
        "timezone": lambda: check_timezone(timezone.strip()) if timezone and timezone.strip() else None,
        "avatar_url": lambda: _check_avatar_url(avatar_url),
    }
    if email_signature is not None:
        checks["email_signature"] = lambda: _check_signature(email_signature)
    for name, check in checks.items():
        try:
            values[name] = check()
        except ValidationFailed as exc:
            errors.update(exc.details)
    if errors:
        raise ValidationFailed("; ".join(f"{k}: {v}" for k, v in errors.items()), details=errors)
    for name, value in values.items():
        setattr(user, name, value)
    session.flush()
    return user


MAX_SIGNATURE = 2000


def _check_signature(value: str) -> str | None:
    """Plain text put under the person's replies on email channels."""
    cleaned = "\n".join(line.rstrip() for line in value.replace("\r\n", "\n").split("\n")).strip()
    if len(cleaned) > MAX_SIGNATURE:
        raise ValidationFailed.field("email_signature", f"must be at most {MAX_SIGNATURE} characters")
    return cleaned or None


def _check_profile_language(value: str | None) -> str | None:
    code = (value or "").strip().lower()
    if not code:
        return None
    if code not in PROFILE_LANGUAGES:
        raise ValidationFailed.field("language", f"must be one of {', '.join(PROFILE_LANGUAGES)}")
    return code


def _check_avatar_url(value: str | None) -> str | None:
    cleaned = (value or "").strip()
    if not cleaned:
        return None
    parsed = urlsplit(cleaned)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or len(cleaned) > 1000:
        raise ValidationFailed.field("avatar_url", "must be an http(s) URL of at most 1000 characters")
    if any(ch.isspace() or not ch.isprintable() for ch in cleaned):
        raise ValidationFailed.field("avatar_url", "must not contain spaces or control characters")
    return cleaned


def do_set_notification_preferences(session: Session, user: User, *, desktop: bool, sound: bool) -> User:
    """The person's inbox alerts for new messages assigned to them (shown by the inbox page)."""
    user.notify_desktop, user.notify_sound = desktop, sound
    session.flush()
    return user


def do_set_activity_status(session: Session, user: User, status: ActivityStatus | str) -> User:
    """The person's own choice, shown at once (they are on a page); presence takes it from there:
    offline when their last tab closes, and with "online", away after a while without activity."""
    try:
        choice = ActivityStatus(str(status))
    except ValueError as exc:
        allowed = ", ".join(s.value for s in ActivityStatus)
        raise ValidationFailed.field("status", f"must be one of {allowed}") from exc
    user.status_choice = choice
    set_shown_status(session, user, choice)
    return user
