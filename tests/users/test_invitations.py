from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from tertulia.kit.db import Database
from tertulia.kit.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from tertulia.kit.security import token_digest
from tertulia.kit.settings import get_settings
from tertulia.users.invitations import (
    do_accept_invitation,
    do_invite,
    do_revoke_invitation,
    find_invitation,
    list_invitations,
)
from tertulia.users.models import Invitation, Membership, Role, User
from tertulia.users.permissions import Actor
from tertulia.users.service import do_deactivate_member
from tertulia.users.sessions import do_sign_in
from tests.conftest import Tenant
from tests.users.helpers import age, outbox


def invite(db: Database, actor: Actor, email: str, role: Role = Role.AGENT) -> tuple[int, str, str]:
    with db.transaction() as session:
        issued = do_invite(session, actor, email, role)
        return issued.invitation.id, issued.token, issued.url


def accept(db: Database, token: str, password: str = "new-password", **names: str) -> User:  # noqa: S107
    with db.transaction() as session:
        return do_accept_invitation(
            session,
            token,
            password=password,
            first_name=names.get("first_name", "Nueva"),
            last_name=names.get("last_name", "Persona"),
        )


def test_invitation_happy_path(db: Database, tenant: Tenant) -> None:
    invitation_id, token, url = invite(db, tenant.actor(Role.MANAGER), " New.Person@Example.com ")
    assert url == f"{get_settings().base_url}/invitations/{token}"
    with db.transaction(write=False) as session:
        stored = session.get(Invitation, invitation_id)
        assert stored is not None
        assert stored.email == "new.person@example.com"
        assert stored.token_hash == token_digest(token) != token
        assert stored.invited_by_id == tenant.manager_id
        found = find_invitation(session, token)
        assert found is not None
        assert found.id == invitation_id
    [email] = outbox(db, "new.person@example.com")
    assert url in email.body
    assert "as agent" in email.body
    assert email.sent_at is not None  # no SMTP configured: written to the log after commit

    user = accept(db, token, first_name="  Ana  ", last_name="Pérez")
    assert (user.first_name, user.last_name) == ("Ana", "Pérez")
    with db.transaction() as session:
        membership = session.scalar(
            select(Membership).where(Membership.user_id == user.id, Membership.workspace_id == tenant.workspace_id)
        )
        assert membership is not None
        assert membership.role == Role.AGENT
        assert membership.active
        signed_in = do_sign_in(session, "new.person@example.com", "new-password", client_ip=None)
        assert signed_in.web_session.workspace_id == tenant.workspace_id


def test_link_works_once(db: Database, tenant: Tenant) -> None:
    _, token, _ = invite(db, tenant.actor(), "once@example.com")
    accept(db, token)
    with db.transaction(write=False) as session:
        assert find_invitation(session, token) is None
    with pytest.raises(NotFound):
        accept(db, token)


def test_expired_invitation_is_refused(db: Database, tenant: Tenant) -> None:
    invitation_id, token, _ = invite(db, tenant.actor(), "late@example.com")
    age(db, Invitation, invitation_id, expires_at=timedelta(seconds=1))
    with db.transaction(write=False) as session:
        assert find_invitation(session, token) is None
        assert list_invitations(session, tenant.actor()) == []
    with pytest.raises(NotFound):
        accept(db, token)


def test_revoked_invitation_is_refused(db: Database, tenant: Tenant) -> None:
    invitation_id, token, _ = invite(db, tenant.actor(), "revoked@example.com")
    with db.transaction() as session:
        assert [i.id for i in list_invitations(session, tenant.actor())] == [invitation_id]
        do_revoke_invitation(session, tenant.actor(Role.MANAGER), invitation_id)
    with db.transaction(write=False) as session:
        assert find_invitation(session, token) is None
        assert list_invitations(session, tenant.actor()) == []
    with pytest.raises(NotFound):
        accept(db, token)


def test_reinviting_revokes_the_earlier_link(db: Database, tenant: Tenant) -> None:
    _, first, _ = invite(db, tenant.actor(), "twice@example.com", Role.AGENT)
    second_id, second, _ = invite(db, tenant.actor(), "TWICE@example.com", Role.MANAGER)
    with db.transaction(write=False) as session:
        assert find_invitation(session, first) is None
        assert [i.id for i in list_invitations(session, tenant.actor())] == [second_id]
    with pytest.raises(NotFound):
        accept(db, first)
    user = accept(db, second)
    with db.transaction(write=False) as session:
        membership = session.scalar(select(Membership).where(Membership.user_id == user.id))
        assert membership is not None
        assert membership.role == Role.MANAGER


def test_active_member_cannot_be_invited(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        agent = session.get(User, tenant.agent_id)
        assert agent is not None
        with pytest.raises(Conflict):
            do_invite(session, tenant.actor(), agent.email.upper(), Role.MANAGER)


def test_who_may_invite(db: Database, tenant: Tenant) -> None:
    api = Actor(workspace_id=tenant.workspace_id, kind="api", token_id=1)
    with db.transaction() as session:
        for actor in (tenant.actor(Role.AGENT), api):
            with pytest.raises(PermissionDenied):
                do_invite(session, actor, "someone@example.com", Role.AGENT)
        with pytest.raises(PermissionDenied):
            do_invite(session, tenant.actor(Role.MANAGER), "boss@example.com", Role.OWNER)
        with pytest.raises(ValidationFailed) as bad_role:
            do_invite(session, tenant.actor(), "boss@example.com", "admin")
        assert "role" in bad_role.value.details
        with pytest.raises(ValidationFailed) as bad_email:
            do_invite(session, tenant.actor(), "not an email", Role.AGENT)
        assert "email" in bad_email.value.details
        issued = do_invite(session, tenant.actor(Role.OWNER), "boss@example.com", Role.OWNER)
        assert issued.invitation.role == Role.OWNER
        # A manager cannot undo an owner's owner invitation either.
        with pytest.raises(PermissionDenied):
            do_revoke_invitation(session, tenant.actor(Role.MANAGER), issued.invitation.id)


def test_other_workspace_invitation_is_not_found(db: Database, make_tenant: Callable[..., Tenant]) -> None:
    ours, theirs = make_tenant(), make_tenant()
    invitation_id, _, _ = invite(db, theirs.actor(), "x@example.com")
    with db.transaction() as session, pytest.raises(NotFound):
        do_revoke_invitation(session, ours.actor(), invitation_id)


def test_existing_user_joins_with_their_own_password(db: Database, make_tenant: Callable[..., Tenant]) -> None:
    home, other = make_tenant(), make_tenant()
    with db.transaction(write=False) as session:
        agent = session.get(User, home.agent_id)
        assert agent is not None
        email = agent.email
    _, token, _ = invite(db, other.actor(), email, Role.MANAGER)
    with pytest.raises(ValidationFailed) as wrong:
        accept(db, token, password="not-their-password")
    assert "password" in wrong.value.details
    with db.transaction(write=False) as session:
        assert find_invitation(session, token) is not None  # a wrong password does not spend the link
    user = accept(db, token, password="agent-password", first_name="Ignored")
    assert user.id == home.agent_id
    assert user.first_name != "Ignored"
    with db.transaction(write=False) as session:
        rows = session.execute(
            select(Membership.workspace_id, Membership.role).where(Membership.user_id == user.id)
        ).all()
        roles = dict(rows)
    assert roles == {home.workspace_id: Role.AGENT, other.workspace_id: Role.MANAGER}


def test_deactivated_member_can_be_invited_back(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        do_deactivate_member(session, tenant.actor(), tenant.agent_id)
        agent = session.get(User, tenant.agent_id)
        assert agent is not None
        email = agent.email
    _, token, _ = invite(db, tenant.actor(), email, Role.MANAGER)
    accept(db, token, password="agent-password")
    with db.transaction(write=False) as session:
        membership = session.scalar(
            select(Membership).where(
                Membership.user_id == tenant.agent_id, Membership.workspace_id == tenant.workspace_id
            )
        )
        assert membership is not None
        assert membership.active
        assert membership.role == Role.MANAGER


def test_new_user_password_is_validated_and_link_kept(db: Database, tenant: Tenant) -> None:
    _, token, _ = invite(db, tenant.actor(), "short@example.com")
    with pytest.raises(ValidationFailed) as short:
        accept(db, token, password="short")
    assert "password" in short.value.details
    with db.transaction(write=False) as session:
        assert find_invitation(session, token) is not None


def test_invitation_email_in_the_workspace_language(db: Database, make_tenant: Callable[..., Tenant]) -> None:
    spanish = make_tenant(default_language="es")
    _, _, url = invite(db, spanish.actor(), "nuevo@example.com", Role.MANAGER)
    [email] = outbox(db, "nuevo@example.com")
    assert "te invitó" in email.subject
    assert "como gerente" in email.body
    assert url in email.body
