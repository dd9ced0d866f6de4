from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tertulia.kit.db import Database
from tertulia.kit.errors import NotFound, RateLimited, Unauthorized, ValidationFailed
from tertulia.kit.security import token_digest
from tertulia.kit.settings import get_settings
from tertulia.users.models import LoginThrottle, PasswordReset, User, WebSession
from tertulia.users.passwords import (
    do_change_password,
    do_request_password_reset,
    do_reset_password,
    find_password_reset,
)
from tertulia.users.sessions import do_sign_in
from tests.conftest import Tenant
from tests.users.helpers import age, link_token, outbox


def email_of(db: Database, user_id: int) -> str:
    with db.transaction(write=False) as session:
        user = session.get(User, user_id)
        assert user is not None
        return user.email


def request_reset(db: Database, email: str) -> str:
    """Ask for a reset and return the token from the link in the email."""
    with db.transaction() as session:
        do_request_password_reset(session, email)
    emails = outbox(db, email.strip().lower())
    return link_token(emails[-1].body, "/password-reset")


def sign_in(db: Database, email: str, password: str, client_ip: str | None = None) -> str:
    with db.transaction() as session:
        return do_sign_in(session, email, password, client_ip=client_ip).token


def failed_sign_in(db: Database, email: str, password: str, client_ip: str | None = None) -> None:
    """A wrong password, reported the way the sign-in page does: caught, and the failure committed."""
    with db.transaction() as session, pytest.raises(Unauthorized):
        do_sign_in(session, email, password, client_ip=client_ip)


def sessions_of(db: Database, user_id: int) -> int:
    with db.transaction(write=False) as session:
        return session.scalar(select(func.count()).select_from(WebSession).where(WebSession.user_id == user_id)) or 0


def test_reset_happy_path_signs_out_everywhere_and_clears_throttling(db: Database, tenant: Tenant) -> None:
    email = email_of(db, tenant.agent_id)
    sign_in(db, email, "agent-password")
    sign_in(db, email, "agent-password")
    failed_sign_in(db, email, "wrong-guess")
    assert sessions_of(db, tenant.agent_id) == 2

    token = request_reset(db, email.upper())
    [reset_email] = outbox(db, email)
    assert f"{get_settings().base_url}/password-reset/{token}" in reset_email.body
    assert f"{get_settings().password_reset_hours} hours" in reset_email.body
    with db.transaction(write=False) as session:
        found = find_password_reset(session, token)
        assert found is not None
        assert found.token_hash == token_digest(token)
        valid_for = found.expires_at - found.created_at
        assert abs(valid_for - timedelta(hours=get_settings().password_reset_hours)) < timedelta(seconds=5)

    with db.transaction() as session:
        user = do_reset_password(session, token, "brand-new-password")
        assert user.id == tenant.agent_id
    assert sessions_of(db, tenant.agent_id) == 0
    with db.transaction(write=False) as session:
        assert session.get(LoginThrottle, f"email:{email}") is None
    with pytest.raises(Unauthorized):
        sign_in(db, email, "agent-password")
    assert sign_in(db, email, "brand-new-password")
    changed = outbox(db, email)[-1]
    assert changed.subject == "Your Tertulia password was changed"


def test_reset_link_works_once(db: Database, tenant: Tenant) -> None:
    email = email_of(db, tenant.manager_id)
    token = request_reset(db, email)
    with db.transaction() as session:
        do_reset_password(session, token, "first-new-password")
    with db.transaction() as session:
        assert find_password_reset(session, token) is None
        with pytest.raises(NotFound):
            do_reset_password(session, token, "second-new-password")
    assert sign_in(db, email, "first-new-password")


def test_using_one_link_spends_the_others(db: Database, tenant: Tenant) -> None:
    email = email_of(db, tenant.manager_id)
    first = request_reset(db, email)
    with db.transaction() as session:
        # Past the resend interval, a second email with a second link goes out.
        for reset in session.scalars(select(PasswordReset)):
            reset.created_at -= timedelta(minutes=5)
    second = request_reset(db, email)
    assert first != second
    with db.transaction() as session:
        do_reset_password(session, second, "another-password")
    with db.transaction(write=False) as session:
        assert find_password_reset(session, first) is None


def test_expired_reset_link_is_refused(db: Database, tenant: Tenant) -> None:
    token = request_reset(db, email_of(db, tenant.agent_id))
    with db.transaction(write=False) as session:
        reset_id = session.scalar(select(PasswordReset.id).where(PasswordReset.token_hash == token_digest(token)))
    age(db, PasswordReset, reset_id, expires_at=timedelta(seconds=1))
    with db.transaction() as session:
        assert find_password_reset(session, token) is None
        with pytest.raises(NotFound):
            do_reset_password(session, token, "too-late-password")


def test_unknown_email_does_nothing_visible(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        do_request_password_reset(session, "nobody@example.com")
    assert outbox(db) == []
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(PasswordReset)) == 0
    with db.transaction() as session, pytest.raises(ValidationFailed):
        do_request_password_reset(session, "not an email")


def test_requests_in_quick_succession_send_one_email(db: Database, tenant: Tenant) -> None:
    email = email_of(db, tenant.agent_id)
    for _ in range(3):
        with db.transaction() as session:
            do_request_password_reset(session, email)
    assert len(outbox(db, email)) == 1


def test_weak_new_password_keeps_the_link(db: Database, tenant: Tenant) -> None:
    token = request_reset(db, email_of(db, tenant.agent_id))
    with db.transaction() as session, pytest.raises(ValidationFailed) as weak:
        do_reset_password(session, token, "short")
    assert "new_password" in weak.value.details
    with db.transaction(write=False) as session:
        assert find_password_reset(session, token) is not None


def test_reset_email_follows_the_users_language(db: Database, tenant: Tenant) -> None:
    email = email_of(db, tenant.agent_id)
    with db.transaction() as session:
        user = session.get(User, tenant.agent_id)
        assert user is not None
        user.language = "es"
    request_reset(db, email)
    assert outbox(db, email)[-1].subject == "Restablece tu contraseña de Tertulia"


def test_change_password(db: Database, tenant: Tenant) -> None:
    email = email_of(db, tenant.owner_id)
    sign_in(db, email, "owner-password")
    with db.transaction() as session:
        user = session.get(User, tenant.owner_id)
        assert user is not None
        with pytest.raises(ValidationFailed) as wrong:
            do_change_password(session, user, "not-the-password", "whatever-password")
        assert "current_password" in wrong.value.details
        with pytest.raises(ValidationFailed) as weak:
            do_change_password(session, user, "owner-password", "short")
        assert "new_password" in weak.value.details
    with db.transaction() as session:
        user = session.get(User, tenant.owner_id)
        assert user is not None
        do_change_password(session, user, "owner-password", "changed-password")
    assert sessions_of(db, tenant.owner_id) == 0
    assert sign_in(db, email, "changed-password")


def test_guessing_the_current_password_is_throttled(db: Database, tenant: Tenant) -> None:

    for _ in range(get_settings().login_max_failures):
        with db.transaction() as session:
            user = session.get(User, tenant.owner_id)
            assert user is not None
            with pytest.raises(ValidationFailed):
                do_change_password(session, user, "guess", "whatever-password")
    with db.transaction() as session:
        user = session.get(User, tenant.owner_id)
        assert user is not None
        with pytest.raises(RateLimited):
            do_change_password(session, user, "owner-password", "whatever-password")
