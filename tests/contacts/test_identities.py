"""Which contact a channel's sender is (contacts/identities.py): found by identity per channel type,
created through the API's validation, never refused over a bad field, never attached to someone
else's contact over an email or phone."""

from sqlalchemy import select

from tertulia.contacts.identities import Sender, contact_id_for, resolve_sender, resolve_senders
from tertulia.contacts.models import Contact, ContactActivity
from tertulia.contacts.service import do_create_contact
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.fakes import sql_statements


def test_a_new_sender_becomes_a_contact_with_only_the_valid_fields(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        contact = resolve_sender(
            session,
            tenant.workspace_id,
            "webchat",
            Sender(
                external_id="9:v:abc", display_name="Ana " + "x" * 300, email="not an email", phone="+34 600 11 22 33"
            ),
        )
        contact_id = contact.id
    with db.transaction(write=False) as session:
        stored = session.get(Contact, contact_id)
        assert stored is not None
        assert (stored.first_name, stored.last_name, stored.email) == ("Ana", None, None)  # too long, invalid
        assert stored.phone == "+34600112233"  # cleaned as the API cleans it
        assert contact_id_for(session, tenant.workspace_id, "webchat", "9:v:abc") == contact_id
        assert contact_id_for(session, tenant.workspace_id, "telegram", "9:v:abc") is None  # per channel type
        actions = list(session.scalars(select(ContactActivity.action).where(ContactActivity.contact_id == contact_id)))
        assert actions == ["created"]


def test_an_email_someone_else_has_is_not_kept_nor_followed(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        owner = do_create_contact(session, tenant.actor(), {"first_name": "Real", "email": "real@example.com"})
        owner_id = owner.id
        sender = Sender(external_id="tg-1", first_name="Impostor", email="REAL@example.com")
        contact = resolve_sender(session, tenant.workspace_id, "telegram", sender)
        assert contact.id != owner_id
        assert contact.email is None
        again = resolve_sender(session, tenant.workspace_id, "telegram", sender)
        assert again.id == contact.id


def test_known_senders_cost_one_query_whatever_their_number(db: Database, tenant: Tenant) -> None:
    senders = [(tenant.workspace_id, "webchat", Sender(external_id=f"1:v:{n}", first_name=f"P{n}")) for n in range(20)]
    with db.transaction() as session:
        created = [c.id for c in resolve_senders(session, senders)]
    with sql_statements(db, this_thread_only=True) as statements, db.transaction(write=False) as session:
        found = [c.id for c in resolve_senders(session, list(reversed(senders)))]
    assert found == list(reversed(created))
    assert len(statements) <= 2  # the lookup (and, on some drivers, the transaction's own setup)
