"""Each role against the services that check permissions: what it may do, and what is refused (403)."""

from collections.abc import Callable

import pytest

from tertulia.contacts import service as contacts
from tertulia.contacts.exporter import export_contacts
from tertulia.contacts.importer import import_contacts
from tertulia.contacts.models import FieldType
from tertulia.kit.db import Database
from tertulia.kit.errors import PermissionDenied
from tertulia.users.invitations import do_invite, list_invitations
from tertulia.users.models import Role
from tertulia.users.permissions import Actor, Permission
from tertulia.users.service import do_create_api_token_for, do_deactivate_member, list_members
from tertulia.users.teams import do_create_team, list_teams
from tests.conftest import Tenant

CSV = b"first_name,email\nLuz,luz@example.com\n"


def api_actor(tenant: Tenant) -> Actor:
    return Actor(workspace_id=tenant.workspace_id, kind="api", token_id=1)


@pytest.mark.parametrize("role", [Role.OWNER, Role.MANAGER])
def test_owner_and_manager_manage_contacts_fully(db: Database, tenant: Tenant, role: Role) -> None:
    actor = tenant.actor(role)
    with db.transaction() as session:
        contacts.do_create_custom_field(session, actor, "plan", "Plan", FieldType.TEXT)
        first = contacts.do_create_contact(session, actor, {"first_name": "Ana", "custom_fields": {"plan": "pro"}})
        second = contacts.do_create_contact(session, actor, {"first_name": "Ana B"})
        contacts.do_merge_contacts(session, actor, first, second)
        assert import_contacts(session, actor, CSV).created == 1
        assert "luz@example.com" in "".join(export_contacts(session, actor, fields=["first_name", "email"]))
        contacts.do_delete_contact(session, actor, first)


def test_agent_works_with_contacts_but_not_the_workspace_setup(db: Database, tenant: Tenant) -> None:
    agent = tenant.actor(Role.AGENT)
    with db.transaction() as session:
        contact = contacts.do_create_contact(session, agent, {"first_name": "Ana"})
        contacts.do_update_contact(session, agent, contact, {"last_name": "Pérez"})
        contacts.do_add_tags(session, agent, contact, ["vip"])  # a new tag name joins the catalogue
        twin = contacts.do_create_contact(session, agent, {"first_name": "Ana P"})
        contacts.do_merge_contacts(session, agent, contact, twin)
        assert contacts.access_contact(session, agent, f"id:{contact.id}").last_name == "Pérez"
        refused: list[Callable[[], object]] = [
            lambda: contacts.do_delete_contact(session, agent, contact),
            lambda: contacts.do_create_custom_field(session, agent, "plan", "Plan", FieldType.TEXT),
            lambda: import_contacts(session, agent, CSV),
            lambda: export_contacts(session, agent),
            lambda: do_invite(session, agent, "x@example.com", Role.AGENT),
            lambda: list_invitations(session, agent),
            lambda: do_deactivate_member(session, agent, tenant.manager_id),
            lambda: do_create_team(session, agent, "Team"),
            lambda: do_create_api_token_for(session, agent, "token"),
        ]
        for attempt in refused:
            with pytest.raises(PermissionDenied):
                attempt()
        # Seeing colleagues and teams is for everyone: assignment needs it.
        assert len(list_members(session, agent)) == 3
        assert list_teams(session, agent) == []


def test_custom_field_changes_are_refused_to_agents(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        definition = contacts.do_create_custom_field(session, tenant.actor(), "plan", "Plan", FieldType.TEXT)
        agent = tenant.actor(Role.AGENT)
        with pytest.raises(PermissionDenied):
            contacts.do_update_custom_field(session, agent, definition, label="Tier")
        with pytest.raises(PermissionDenied):
            contacts.do_delete_custom_field(session, agent, definition)
        contacts.do_update_custom_field(session, tenant.actor(Role.MANAGER), definition, label="Tier")


def test_api_token_works_with_data_not_people(db: Database, tenant: Tenant) -> None:
    api = api_actor(tenant)
    with db.transaction() as session:
        contacts.do_create_custom_field(session, api, "plan", "Plan", FieldType.TEXT)
        contact = contacts.do_create_contact(session, api, {"first_name": "Ana"})
        contacts.do_delete_contact(session, api, contact)
        for attempt in (
            lambda: do_invite(session, api, "x@example.com", Role.AGENT),
            lambda: do_create_team(session, api, "Team"),
            lambda: do_create_api_token_for(session, api, "another"),
            lambda: do_deactivate_member(session, api, tenant.agent_id),
        ):
            with pytest.raises(PermissionDenied) as refused:
                attempt()
            assert refused.value.details["permission"] in {p.value for p in Permission}
