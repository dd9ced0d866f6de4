"""contacts.tag_count is kept by database triggers through every path that writes contact_tags."""

from sqlalchemy import delete, func, select

from tertulia.contacts import service
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
