from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.errors import RateLimited, Unauthorized
from tertulia.kit.security import token_digest
from tertulia.kit.settings import get_settings
from tertulia.users.devices import known_device_for, remember_account
from tertulia.users.models import LoginThrottle, Role, User, WebSession
from tertulia.users.service import do_add_member, do_deactivate_member, do_reactivate_member
from tertulia.users.sessions import (
    do_sign_in,
    do_sign_out,
    do_sign_out_everywhere,
    do_switch_workspace,
    resolve_session,
)
from tests.conftest import Tenant

MAX = get_settings().login_max_failures
LOCKOUT = get_settings().login_lockout_seconds


def email_of(db: Database, user_id: int) -> str:
    with db.transaction(write=False) as session:
        user = session.get(User, user_id)
        assert user is not None
        return user.email


def sign_in(db: Database, email: str, password: str, client_ip: str | None = None) -> str:
    with db.transaction() as session:
        return do_sign_in(session, email, password, client_ip=client_ip).token


def fail(db: Database, email: str, client_ip: str | None = None) -> None:
    # The sign-in page catches the error and commits, so the failure is counted.
    with db.transaction() as session, pytest.raises(Unauthorized):
        do_sign_in(session, email, "wrong-password", client_ip=client_ip)


def test_account_locks_after_max_failures(db: Database, tenant: Tenant) -> None:
    email = email_of(db, tenant.agent_id)
    for _ in range(MAX):
        fail(db, email, client_ip=None)
    with pytest.raises(RateLimited) as locked:
        sign_in(db, email.upper(), "agent-password")
    assert 0 < locked.value.retry_after <= LOCKOUT + 1
    assert locked.value.details == {"retry_after": locked.value.retry_after}


def test_success_clears_the_count(db: Database, tenant: Tenant) -> None:
    email = email_of(db, tenant.agent_id)
    for _ in range(MAX - 1):
        fail(db, email)
    assert sign_in(db, email, "agent-password")
    with db.transaction(write=False) as session:
        assert session.get(LoginThrottle, f"email:{email}") is None
    for _ in range(MAX - 1):
        fail(db, email)
    assert sign_in(db, email, "agent-password")


def test_client_address_locks_across_accounts(db: Database, tenant: Tenant) -> None:
    for n in range(MAX):
        fail(db, f"spray{n}@example.com", client_ip="203.0.113.7")
    email = email_of(db, tenant.manager_id)
    with pytest.raises(RateLimited):
        sign_in(db, email, "manager-password", client_ip="203.0.113.7")
    assert sign_in(db, email, "manager-password", client_ip="198.51.100.1")


def test_lock_ends_and_old_failures_are_forgotten(db: Database, tenant: Tenant) -> None:
    email = email_of(db, tenant.agent_id)
    for _ in range(MAX):
        fail(db, email)
    past = utcnow() - timedelta(seconds=LOCKOUT + 1)
    with db.transaction() as session:
        session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.key == f"email:{email}")
            .values(first_failure_at=past, locked_until=past)
        )
    fail(db, email)  # outside the window: counting starts again from one
    with db.transaction(write=False) as session:
        row = session.get(LoginThrottle, f"email:{email}")
        assert row is not None
        assert row.failures == 1
        assert row.locked_until is None
    assert sign_in(db, email, "agent-password")


def test_unknown_email_and_wrong_password_look_the_same(db: Database, tenant: Tenant) -> None:
    messages = []
    for email in ("nobody@example.com", email_of(db, tenant.agent_id)):
        with db.transaction() as session, pytest.raises(Unauthorized) as error:
            do_sign_in(session, email, "wrong-password", client_ip=None)
        messages.append((error.value.code, error.value.message))
    assert messages[0] == messages[1]


def test_resolve_session(db: Database, make_tenant: Callable[..., Tenant]) -> None:
    tenant, other = make_tenant(), make_tenant()
    token = sign_in(db, email_of(db, tenant.manager_id), "manager-password")
    with db.transaction(write=False) as session:
        current = resolve_session(session, token)
        assert current is not None
        assert current.user.id == tenant.manager_id
        assert current.actor.workspace_id == tenant.workspace_id
        assert current.actor.role == Role.MANAGER
        assert resolve_session(session, "not-a-token") is None
        assert resolve_session(session, None) is None
        # Switching to a workspace the user does not belong to is refused.
        with pytest.raises(Unauthorized):
            do_switch_workspace(session, current, other.workspace_id)


def test_expired_session_is_not_resolved(db: Database, tenant: Tenant) -> None:
    token = sign_in(db, email_of(db, tenant.agent_id), "agent-password")
    with db.transaction() as session:
        session.execute(
            update(WebSession)
            .where(WebSession.token_hash == token_digest(token))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    with db.transaction(write=False) as session:
        assert resolve_session(session, token) is None


def test_deactivated_member_is_signed_out_and_cannot_sign_in(db: Database, make_tenant: Callable[..., Tenant]) -> None:
    tenant, other = make_tenant(), make_tenant()
    email = email_of(db, tenant.agent_id)
    token = sign_in(db, email, "agent-password")
    with db.transaction() as session:
        do_deactivate_member(session, tenant.actor(Role.MANAGER), tenant.agent_id)
    with db.transaction(write=False) as session:
        assert resolve_session(session, token) is None
        assert session.get(WebSession, token_digest(token)) is None
    with pytest.raises(Unauthorized) as refused:
        sign_in(db, email, "agent-password")
    assert refused.value.code == "no_workspace"
    with db.transaction() as session:
        do_reactivate_member(session, tenant.actor(Role.MANAGER), tenant.agent_id)
    assert sign_in(db, email, "agent-password")
    assert other.workspace_id != tenant.workspace_id


def test_deactivation_keeps_sessions_in_other_workspaces(db: Database, make_tenant: Callable[..., Tenant]) -> None:
    home, other = make_tenant(), make_tenant()

    with db.transaction() as session:
        do_add_member(session, other.workspace_id, home.agent_id, Role.AGENT)
    email = email_of(db, home.agent_id)
    with db.transaction() as session:
        there = do_sign_in(session, email, "agent-password", client_ip=None, workspace_id=other.workspace_id).token
    here = sign_in(db, email, "agent-password")
    with db.transaction() as session:
        do_deactivate_member(session, home.actor(), home.agent_id)
    with db.transaction(write=False) as session:
        assert resolve_session(session, here) is None
        still = resolve_session(session, there)
        assert still is not None
        assert still.membership.workspace_id == other.workspace_id


def test_sign_out(db: Database, tenant: Tenant) -> None:
    email = email_of(db, tenant.agent_id)
    first, second, third = (sign_in(db, email, "agent-password") for _ in range(3))
    with db.transaction() as session:
        do_sign_out(session, first)
    with db.transaction(write=False) as session:
        assert resolve_session(session, first) is None
        assert resolve_session(session, second) is not None
    with db.transaction() as session:
        do_sign_out_everywhere(session, tenant.agent_id)
    with db.transaction(write=False) as session:
        assert session.scalars(select(WebSession).where(WebSession.user_id == tenant.agent_id)).all() == []
        assert resolve_session(session, third) is None


def _expire_locks(db: Database) -> None:
    """As if the current wait had just run out."""
    with db.transaction() as session:
        session.execute(update(LoginThrottle).values(locked_until=utcnow() - timedelta(seconds=1)))


def test_failures_past_the_free_ones_cost_growing_waits_not_one_long_lockout(db: Database, tenant: Tenant) -> None:
    """Five failures used to lock the account for the whole lockout (15 minutes), whoever made them."""
    first = get_settings().login_delay_seconds
    email = email_of(db, tenant.agent_id)
    for _ in range(MAX):
        fail(db, email)
    waits = []
    for _ in range(7):
        with pytest.raises(RateLimited) as waiting:
            sign_in(db, email, "agent-password")
        waits.append(waiting.value.retry_after)
        _expire_locks(db)
        fail(db, email)  # one more failure once the wait is over
    expected = [min(first * 2**n, LOCKOUT) for n in range(7)]
    assert all(e - 1 <= w <= e + 1 for w, e in zip(waits, expected, strict=True)), (waits, expected)
    assert waits[-1] <= LOCKOUT + 1  # never longer than the lockout setting
    _expire_locks(db)
    assert sign_in(db, email, "agent-password")  # the right password once the wait is over


def test_a_known_device_signs_in_while_others_keep_the_account_waiting(db: Database, tenant: Tenant) -> None:
    email = email_of(db, tenant.agent_id)
    device = known_device_for(remember_account(None, email), email)
    assert device is not None
    for _ in range(MAX):  # a stranger makes the account and their address wait
        fail(db, email, client_ip="203.0.113.7")
    with pytest.raises(RateLimited):
        sign_in(db, email, "agent-password", client_ip="198.51.100.9")
    # The person's own browser, behind the stranger's address even (a shared NAT), is not held back.
    with db.transaction() as session:
        assert do_sign_in(session, email, "agent-password", client_ip="203.0.113.7", device_id=device).token
    # Guessing from a known device is throttled too, under that device's own key.
    for _ in range(MAX):
        with db.transaction() as session, pytest.raises(Unauthorized):
            do_sign_in(session, email, "wrong-password", client_ip=None, device_id=device)
    with db.transaction() as session, pytest.raises(RateLimited):
        do_sign_in(session, email, "agent-password", client_ip=None, device_id=device)


def test_a_device_cookie_counts_only_for_the_accounts_signed_in_with_it(db: Database, tenant: Tenant) -> None:
    agent, manager = email_of(db, tenant.agent_id), email_of(db, tenant.manager_id)
    cookie = remember_account(None, agent)
    assert known_device_for(cookie, agent) is not None
    assert known_device_for(cookie, manager) is None
    both = remember_account(cookie, manager)
    assert known_device_for(both, agent) == known_device_for(both, manager) == known_device_for(cookie, agent)
    body, signature = cookie.split(".")
    assert known_device_for(f"{body}x.{signature}", agent) is None  # edited
    assert known_device_for("made.up", agent) is None
