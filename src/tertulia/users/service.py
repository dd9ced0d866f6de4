"""Users, memberships and API tokens: the rules. Repositories of this size live inline here."""

from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.kit.clock import utcnow
from tertulia.kit.errors import Conflict, NotFound, ValidationFailed
from tertulia.kit.security import hash_password, new_token, token_digest
from tertulia.users.models import ApiToken, Membership, Role, User

MIN_PASSWORD_LENGTH = 8
API_TOKEN_PREFIX = "tt_"  # noqa: S105 (a prefix, not a secret)


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


def do_create_api_token(
    session: Session, workspace_id: int, name: str, *, created_by_id: int | None = None
) -> IssuedToken:
    label = name.strip() or "API token"
    if len(label) > 120:
        raise ValidationFailed.field("name", "must be at most 120 characters")
    secret = new_token(API_TOKEN_PREFIX)
    token = ApiToken(
        workspace_id=workspace_id,
        name=label,
        prefix=secret[: len(API_TOKEN_PREFIX) + 6],
        token_hash=token_digest(secret),
        created_by_id=created_by_id,
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
    return session.scalar(
        select(ApiToken).where(ApiToken.token_hash == token_digest(secret), ApiToken.revoked_at.is_(None))
    )
