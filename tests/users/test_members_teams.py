import threading
from collections.abc import Callable

import pytest
from sqlalchemy import select

from tertulia.kit.db import Database
from tertulia.kit.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from tertulia.users.models import ActivityStatus, Membership, Role, User
from tertulia.users.permissions import Actor
from tertulia.users.service import (
    do_change_role,
    do_create_api_token_for,
    do_deactivate_member,
    do_reactivate_member,
    do_revoke_api_token_for,
    do_set_activity_status,
    do_update_profile,
    find_active_api_token,
    list_api_tokens_for,
    list_members,
)
from tertulia.users.teams import (
    do_create_team,
    do_delete_team,
    do_rename_team,
    do_set_team_members,
    list_teams,
)
from tests.conftest import Tenant


def role_of(db: Database, tenant: Tenant, user_id: int) -> Role:
    with db.transaction(write=False) as session:
        membership = session.scalar(
            select(Membership).where(Membership.workspace_id == tenant.workspace_id, Membership.user_id == user_id)
        )
        assert membership is not None
        return Role(membership.role)


def test_list_members_for_every_role(db: Database, tenant: Tenant, make_tenant: Callable[..., Tenant]) -> None:
    other = make_tenant()
    with db.transaction(write=False) as session:
        for role in Role:
            members = list_members(session, tenant.actor(role))
            assert {m.user.id: m.role for m in members} == {
                tenant.owner_id: Role.OWNER,
                tenant.manager_id: Role.MANAGER,
                tenant.agent_id: Role.AGENT,
            }
        assert other.owner_id not in {m.user.id for m in list_members(session, tenant.actor())}


def test_change_role_rules(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        with pytest.raises(PermissionDenied):
            do_change_role(session, tenant.actor(Role.AGENT), tenant.agent_id, Role.MANAGER)
        # Managers handle managers and agents, never the owner role.
        with pytest.raises(PermissionDenied):
            do_change_role(session, tenant.actor(Role.MANAGER), tenant.agent_id, Role.OWNER)
        with pytest.raises(PermissionDenied):
            do_change_role(session, tenant.actor(Role.MANAGER), tenant.owner_id, Role.AGENT)
        with pytest.raises(ValidationFailed):
            do_change_role(session, tenant.actor(), tenant.agent_id, "superuser")
        with pytest.raises(NotFound):
            do_change_role(session, tenant.actor(), 999_999, Role.AGENT)
        do_change_role(session, tenant.actor(Role.MANAGER), tenant.agent_id, Role.MANAGER)
    assert role_of(db, tenant, tenant.agent_id) == Role.MANAGER
    with db.transaction() as session:
        do_change_role(session, tenant.actor(Role.OWNER), tenant.manager_id, Role.OWNER)
    assert role_of(db, tenant, tenant.manager_id) == Role.OWNER


def test_last_active_owner_stays(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session, pytest.raises(Conflict) as last:
        do_change_role(session, tenant.actor(), tenant.owner_id, Role.MANAGER)
    assert last.value.code == "last_owner"
    system = Actor.system(tenant.workspace_id)
    with db.transaction() as session, pytest.raises(Conflict):
        do_deactivate_member(session, system, tenant.owner_id)
    with db.transaction() as session:
        do_change_role(session, tenant.actor(), tenant.manager_id, Role.OWNER)
    # With a second owner, the first may step down, and then the second is the last one.
    with db.transaction() as session:
        do_change_role(session, tenant.actor(), tenant.owner_id, Role.MANAGER)
    second_owner = Actor(workspace_id=tenant.workspace_id, kind="user", user_id=tenant.manager_id, role=Role.OWNER)
    with db.transaction() as session, pytest.raises(Conflict):
        do_change_role(session, second_owner, tenant.manager_id, Role.AGENT)


def test_an_inactive_owner_does_not_count(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        do_change_role(session, tenant.actor(), tenant.manager_id, Role.OWNER)
        do_deactivate_member(session, tenant.actor(), tenant.manager_id)
    with db.transaction() as session, pytest.raises(Conflict):
        do_change_role(session, tenant.actor(), tenant.owner_id, Role.AGENT)


def test_deactivate_rules(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        with pytest.raises(PermissionDenied):
            do_deactivate_member(session, tenant.actor(Role.AGENT), tenant.manager_id)
        with pytest.raises(PermissionDenied):
            do_deactivate_member(session, tenant.actor(Role.MANAGER), tenant.owner_id)
        with pytest.raises(PermissionDenied):
            do_deactivate_member(session, tenant.actor(Role.MANAGER), tenant.manager_id)
        member = do_deactivate_member(session, tenant.actor(Role.MANAGER), tenant.agent_id)
        assert not member.active
    with db.transaction() as session:
        assert not next(m for m in list_members(session, tenant.actor()) if m.user.id == tenant.agent_id).active
        assert tenant.agent_id not in {m.user.id for m in list_members(session, tenant.actor(), include_inactive=False)}
        assert do_reactivate_member(session, tenant.actor(Role.MANAGER), tenant.agent_id).active


def test_update_profile_validates_every_field(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        user = session.get(User, tenant.agent_id)
        assert user is not None
        with pytest.raises(ValidationFailed) as bad:
            do_update_profile(
                session,
                user,
                first_name="A" * 101,
                last_name="ok",
                language="fr",
                timezone="Mars/Olympus",
                avatar_url="javascript:alert(1)",
            )
        assert set(bad.value.details) == {"first_name", "language", "timezone", "avatar_url"}
    with db.transaction() as session:
        user = session.get(User, tenant.agent_id)
        assert user is not None
        do_update_profile(
            session,
            user,
            first_name="  María José ",
            last_name="Núñez",
            language="ES",
            timezone="America/Bogota",
            avatar_url="https://example.com/me.png",
        )
    with db.transaction() as session:
        user = session.get(User, tenant.agent_id)
        assert user is not None
        assert (user.first_name, user.last_name, user.language) == ("María José", "Núñez", "es")
        assert (user.timezone, user.avatar_url) == ("America/Bogota", "https://example.com/me.png")
        do_update_profile(session, user, first_name="", last_name="", language=None, timezone="", avatar_url="")
        assert (user.language, user.timezone, user.avatar_url) == (None, None, None)


def test_activity_status(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        user = session.get(User, tenant.agent_id)
        assert user is not None
        do_set_activity_status(session, user, "away")
        assert user.activity_status == ActivityStatus.AWAY
        do_set_activity_status(session, user, ActivityStatus.BUSY)
        with pytest.raises(ValidationFailed):
            do_set_activity_status(session, user, "sleeping")
    with db.transaction(write=False) as session:
        user = session.get(User, tenant.agent_id)
        assert user is not None
        assert user.activity_status == ActivityStatus.BUSY


def test_teams(db: Database, tenant: Tenant, make_tenant: Callable[..., Tenant]) -> None:
    other = make_tenant()
    with db.transaction() as session:
        support = do_create_team(session, tenant.actor(Role.MANAGER), "  Soporte   técnico ")
        assert support.name == "Soporte técnico"
        with pytest.raises(Conflict):
            do_create_team(session, tenant.actor(), "SOPORTE TECNICO")
        with pytest.raises(ValidationFailed):
            do_create_team(session, tenant.actor(), "   ")
        do_create_team(session, other.actor(), "Soporte técnico")  # names are per workspace
        sales = do_create_team(session, tenant.actor(), "Ventas")
        with pytest.raises(Conflict):
            do_rename_team(session, tenant.actor(), sales.id, "soporte técnico")
        do_rename_team(session, tenant.actor(), sales.id, "Ventas LATAM")
        result = do_set_team_members(
            session, tenant.actor(), support.id, [tenant.agent_id, tenant.manager_id, tenant.agent_id]
        )
        assert result.member_ids == sorted([tenant.agent_id, tenant.manager_id])
        with pytest.raises(ValidationFailed) as foreign:
            do_set_team_members(session, tenant.actor(), support.id, [tenant.agent_id, other.agent_id])
        assert str(other.agent_id) in foreign.value.details["user_ids"]
        with pytest.raises(NotFound):
            do_set_team_members(session, other.actor(), support.id, [])
        support_id, sales_id = support.id, sales.id
    with db.transaction() as session:
        do_deactivate_member(session, tenant.actor(), tenant.agent_id)
        with pytest.raises(ValidationFailed):
            do_set_team_members(session, tenant.actor(), support_id, [tenant.agent_id])
        do_set_team_members(session, tenant.actor(), support_id, [tenant.manager_id])
    with db.transaction(write=False) as session:
        teams = list_teams(session, tenant.actor(Role.AGENT))
        assert [(t.name, t.member_ids) for t in teams] == [
            ("Soporte técnico", [tenant.manager_id]),
            ("Ventas LATAM", []),
        ]
    with db.transaction() as session:
        do_delete_team(session, tenant.actor(), sales_id)
        with pytest.raises(NotFound):
            do_delete_team(session, tenant.actor(), sales_id)
        assert [t.id for t in list_teams(session, tenant.actor())] == [support_id]


def test_only_team_managers_change_teams(db: Database, tenant: Tenant) -> None:
    api = Actor(workspace_id=tenant.workspace_id, kind="api", token_id=1)
    with db.transaction() as session:
        team = do_create_team(session, tenant.actor(), "Team")
        for actor in (tenant.actor(Role.AGENT), api):
            with pytest.raises(PermissionDenied):
                do_create_team(session, actor, "Another")
            with pytest.raises(PermissionDenied):
                do_rename_team(session, actor, team.id, "Renamed")
            with pytest.raises(PermissionDenied):
                do_set_team_members(session, actor, team.id, [])
            with pytest.raises(PermissionDenied):
                do_delete_team(session, actor, team.id)


def test_api_tokens_for_actors(db: Database, tenant: Tenant, make_tenant: Callable[..., Tenant]) -> None:
    other = make_tenant()
    api = Actor(workspace_id=tenant.workspace_id, kind="api", token_id=1)
    with db.transaction() as session:
        for actor in (tenant.actor(Role.AGENT), api):
            with pytest.raises(PermissionDenied):
                do_create_api_token_for(session, actor, "zapier")
            with pytest.raises(PermissionDenied):
                list_api_tokens_for(session, actor)
        issued = do_create_api_token_for(session, tenant.actor(Role.MANAGER), "  Zapier ")
        assert issued.token.name == "Zapier"
        assert issued.token.created_by_id == tenant.manager_id
        assert issued.secret not in (issued.token.token_hash, issued.token.prefix)
        assert find_active_api_token(session, issued.secret) is not None
        with pytest.raises(NotFound):
            do_revoke_api_token_for(session, other.actor(), issued.token.id)
        with pytest.raises(PermissionDenied):
            do_revoke_api_token_for(session, tenant.actor(Role.AGENT), issued.token.id)
        do_revoke_api_token_for(session, tenant.actor(), issued.token.id)
        assert find_active_api_token(session, issued.secret) is None
        names = [t.name for t in list_api_tokens_for(session, tenant.actor())]
        assert names == ["tests", "Zapier"]


def test_two_owners_demoting_each_other_at_once_leave_one_owner(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        do_change_role(session, tenant.actor(), tenant.manager_id, Role.OWNER)
    first = tenant.actor(Role.OWNER)
    second = Actor(workspace_id=tenant.workspace_id, kind="user", user_id=tenant.manager_id, role=Role.OWNER)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(actor: Actor, target: int) -> None:
        barrier.wait()
        try:
            with db.transaction() as session:
                do_change_role(session, actor, target, Role.AGENT)
            outcomes.append("demoted")
        except Conflict as exc:
            outcomes.append(exc.code)

    threads = [
        threading.Thread(target=demote, args=(first, tenant.manager_id)),
        threading.Thread(target=demote, args=(second, tenant.owner_id)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["demoted", "last_owner"]
    with db.transaction(write=False) as session:
        owners = [m for m in list_members(session, tenant.actor()) if m.role == Role.OWNER and m.active]
    assert len(owners) == 1
