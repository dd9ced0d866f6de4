from datetime import timedelta

import pytest
from sqlalchemy import select

from tertulia.contacts import repository as repo
from tertulia.contacts import service
from tertulia.contacts.models import Contact, ContactIdentity, FieldType
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.errors import NotFound, PermissionDenied, ValidationFailed
from tertulia.users.models import Role
from tests.conftest import Tenant


def _seed_pair(db: Database, tenant: Tenant) -> tuple[int, int]:
    actor = tenant.actor()
    with db.transaction() as session:
        service.do_create_custom_field(session, actor, "plan", "Plan", FieldType.TEXT)
        service.do_create_custom_field(session, actor, "city", "City", FieldType.TEXT)
        survivor = service.do_create_contact(
            session,
            actor,
            {"first_name": "Ana", "email": "ana@example.com", "custom_fields": {"plan": "Pro"}, "tags": ["vip"]},
        )
        other = service.do_create_contact(
            session,
            actor,
            {
                "first_name": "Anita",
                "last_name": "López",
                "phone": "+34 612 345 678",
                "email": "anita@example.com",
                "custom_fields": {"plan": "Free", "city": "Sevilla"},
                "tags": ["lead", "VIP"],
            },
        )
        other.last_incoming_at = utcnow() - timedelta(hours=1)
        session.add(
            ContactIdentity(
                workspace_id=tenant.workspace_id,
                contact_id=other.id,
                channel="whatsapp",
                external_id="34612345678",
                display_name="Anita López",
            )
        )
        service.do_update_contact(session, actor, other, {"first_name": "Anita M."})
        return survivor.id, other.id


def test_merge_keeps_survivor_values_fills_blanks_and_moves_everything(db: Database, tenant: Tenant) -> None:
    survivor_id, other_id = _seed_pair(db, tenant)
    actor = tenant.actor(Role.AGENT)
    with db.transaction() as session:
        survivor = session.get(Contact, survivor_id)
        other = session.get(Contact, other_id)
        assert survivor is not None
        assert other is not None
        service.do_merge_contacts(session, actor, survivor, other, ["email"])
    with db.transaction() as session:
        merged = session.get(Contact, survivor_id)
        assert merged is not None
        assert session.get(Contact, other_id) is None
        assert merged.first_name == "Ana"  # survivor keeps its own
        assert merged.email == "anita@example.com"  # picked from the other
        assert merged.last_name == "López"
        assert merged.last_name_folded == "lopez"
        assert merged.phone == "+34612345678"
        assert merged.phone_raw == "+34 612 345 678"
        assert merged.custom == {"plan": "Pro", "city": "Sevilla"}
        assert merged.last_incoming_at is not None
        assert repo.tag_names_by_contact(session, [survivor_id])[survivor_id] == ["lead", "vip"]
        identities = session.scalars(select(ContactIdentity).where(ContactIdentity.contact_id == survivor_id))
        assert [i.external_id for i in identities] == ["34612345678"]
        history = repo.activity_page(session, survivor_id, before_id=None, limit=100)
        actions = [(a.action, a.field) for a in history]
        assert ("merged", None) in actions
        # The merged contact's own history moved over too.
        assert ("updated", "first_name") in actions
        merged_row = next(a for a in history if a.action == "merged")
        assert merged_row.old_value == {"id": other_id, "name": "Anita M. López"}
        assert merged_row.actor_user_id == tenant.agent_id


def test_merge_rejects_self_and_unknown_fields(db: Database, tenant: Tenant) -> None:
    survivor_id, other_id = _seed_pair(db, tenant)
    with db.transaction() as session:
        survivor = session.get(Contact, survivor_id)
        other = session.get(Contact, other_id)
        assert survivor is not None
        assert other is not None
        with pytest.raises(ValidationFailed):
            service.do_merge_contacts(session, tenant.actor(), survivor, survivor)
        with pytest.raises(ValidationFailed) as error:
            service.do_merge_contacts(session, tenant.actor(), survivor, other, ["nickname"])
        assert "take_from_other" in error.value.details


def test_split_identity_into_new_contact(db: Database, tenant: Tenant) -> None:
    _survivor_id, other_id = _seed_pair(db, tenant)
    with db.transaction() as session:
        contact = session.get(Contact, other_id)
        assert contact is not None
        identity = repo.identities(session, other_id)[0]
        new_contact = service.do_split_identity(session, tenant.actor(), contact, identity.id)
        new_id = new_contact.id
        with pytest.raises(NotFound):
            service.do_split_identity(session, tenant.actor(), contact, identity.id)
    with db.transaction() as session:
        assert repo.identities(session, other_id) == []
        moved = repo.identities(session, new_id)
        assert [i.channel for i in moved] == ["whatsapp"]
        fresh = session.get(Contact, new_id)
        assert fresh is not None
        assert (fresh.first_name, fresh.last_name) == ("Anita", "López")
        assert any(a.action == "split" for a in repo.activity_page(session, other_id, before_id=None, limit=50))


def test_activity_records_who_changed_what(db: Database, tenant: Tenant) -> None:
    actor = tenant.actor(Role.MANAGER)
    with db.transaction() as session:
        contact = service.do_create_contact(session, actor, {"first_name": "Eva", "country": "ES"})
        service.do_update_contact(session, actor, contact, {"country": "MX", "first_name": "Eva"})
        service.do_add_tags(session, actor, contact, ["vip"])
        service.do_remove_tags(session, actor, contact, ["vip"])
        rows = repo.activity_page(session, contact.id, before_id=None, limit=10)
    summary = [(r.action, r.field, r.old_value, r.new_value, r.actor_user_id) for r in reversed(rows)]
    assert summary == [
        ("created", None, None, None, tenant.manager_id),
        ("updated", "country", "ES", "MX", tenant.manager_id),
        ("tag_added", "tags", None, "vip", tenant.manager_id),
        ("tag_removed", "tags", "vip", None, tenant.manager_id),
    ]


def test_agent_cannot_delete_or_manage_fields(db: Database, tenant: Tenant) -> None:
    agent = tenant.actor(Role.AGENT)
    with db.transaction() as session:
        contact = service.do_create_contact(session, agent, {"first_name": "Leo"})
        with pytest.raises(PermissionDenied):
            service.do_delete_contact(session, agent, contact)
        with pytest.raises(PermissionDenied):
            service.do_create_custom_field(session, agent, "x", "X", FieldType.TEXT)


def test_deleting_a_custom_field_removes_its_values(db: Database, tenant: Tenant) -> None:
    actor = tenant.actor()
    with db.transaction() as session:
        service.do_create_custom_field(session, actor, "plan", "Plan", FieldType.TEXT)
        service.do_create_custom_field(session, actor, "city", "City", FieldType.TEXT)
        contact = service.do_create_contact(
            session, actor, {"first_name": "Leo", "custom_fields": {"plan": "Pro", "city": "Lima"}}
        )
        contact_id = contact.id
        service.do_delete_custom_field(session, actor, service.access_custom_field(session, actor, "plan"))
    with db.transaction() as session:
        fresh = session.get(Contact, contact_id)
        assert fresh is not None
        assert fresh.custom == {"city": "Lima"}
