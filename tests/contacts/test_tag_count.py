"""contacts.tag_count is kept by database triggers through every path that writes contact_tags."""

from sqlalchemy import delete, func, select

from tertulia.contacts import service
from tertulia.contacts.importer import ImportOptions, import_contacts
from tertulia.contacts.models import Contact, ContactTag, Tag
from tertulia.kit.db import Database
from tests.conftest import Tenant


def _counts(db: Database) -> dict[int, tuple[int, int]]:
    """contact id -> (tag_count column, real number of tags)."""
    with db.transaction(write=False) as session:
        real = dict(session.execute(select(ContactTag.contact_id, func.count()).group_by(ContactTag.contact_id)).all())
        return {cid: (count, real.get(cid, 0)) for cid, count in session.execute(select(Contact.id, Contact.tag_count))}


def _assert_consistent(db: Database) -> dict[int, int]:
    counts = _counts(db)
    assert all(column == real for column, real in counts.values()), counts
    return {cid: column for cid, (column, _real) in counts.items()}


def test_tag_count_follows_adds_removes_merges_and_deletes(db: Database, tenant: Tenant) -> None:
    actor = tenant.actor()
    with db.transaction() as session:
        ana = service.do_create_contact(session, actor, {"first_name": "Ana", "tags": ["vip", "lead"]})
        leo = service.do_create_contact(session, actor, {"first_name": "Leo", "tags": ["lead", "b2b"]})
        eva = service.do_create_contact(session, actor, {"first_name": "Eva"})
        ids = ana.id, leo.id, eva.id
    assert _assert_consistent(db) == {ids[0]: 2, ids[1]: 2, ids[2]: 0}
    with db.transaction() as session:
        ana = session.get_one(Contact, ids[0])
        service.do_remove_tags(session, actor, ana, ["vip"])
        service.do_add_tags(session, actor, ana, ["vip", "new"])
    assert _assert_consistent(db)[ids[0]] == 3
    with db.transaction() as session:
        service.do_merge_contacts(session, actor, session.get_one(Contact, ids[0]), session.get_one(Contact, ids[1]))
    assert _assert_consistent(db) == {ids[0]: 4, ids[2]: 0}
    with db.transaction() as session:  # deleting a catalogue tag cascades to contact_tags
        session.execute(delete(Tag).where(Tag.workspace_id == tenant.workspace_id, Tag.name_key == "lead"))
    assert _assert_consistent(db)[ids[0]] == 3
    with db.transaction() as session:
        service.do_delete_contact(session, actor, session.get_one(Contact, ids[0]))
    assert _assert_consistent(db) == {ids[2]: 0}


def test_tag_count_after_an_import_that_creates_and_updates_tagged_contacts(db: Database, tenant: Tenant) -> None:
    """The import writes new contacts' counts itself on PostgreSQL and tells the trigger not to count
    their links; links it adds to existing contacts, and any writer after it in the same
    transaction, are still counted by the trigger."""
    actor = tenant.actor()
    with db.transaction() as session:
        ana_id = service.do_create_contact(session, actor, {"email": "ana@example.com", "tags": ["vip"]}).id
    data = (
        "name,email,tags\n"
        "Ana,ana@example.com,vip; lead\n"  # existing: one new link, one she has
        "Bea,bea@example.com,VIP; vip | Lead\n"  # new: the same tag twice in different cases
        "Carla,carla@example.com,\n"
        "Dora,dora@example.com,b2b\n"
        "Eva,eva@example.com,b2b;vip;lead;nueva\n"
    )
    with db.transaction() as session:
        options = ImportOptions(workers=0, batch_size=2, update_existing=True)
        report = import_contacts(session, actor, data.encode(), options)
        assert (report.created, report.updated) == (4, 1)
        later = service.do_create_contact(session, actor, {"first_name": "Fer", "tags": ["vip", "b2b"]})
        later_id = later.id
    counts = _assert_consistent(db)
    with db.transaction(write=False) as session:
        by_email = dict(session.execute(select(Contact.email, Contact.id)).all())
    assert counts[ana_id] == 2
    assert [counts[by_email[f"{name}@example.com"]] for name in ("bea", "carla", "dora", "eva")] == [2, 0, 1, 4]
    assert counts[later_id] == 2
