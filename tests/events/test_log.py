"""Writing the log: events share their change's transaction, cost one INSERT per transaction, and
the inbox and contacts record the catalogue's events."""

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.contacts import service as contacts
from tertulia.contacts.models import Contact
from tertulia.conversations import inbound
from tertulia.conversations import service as inbox
from tertulia.conversations.models import Conversation, DeliveryStatus, Message
from tertulia.conversations.status import advance_message_status
from tertulia.events.service import emit, write_pending
from tertulia.kit.db import Database
from tertulia.users.models import Role, User
from tests.conftest import Tenant
from tests.conversations.support import make_webchat
from tests.events.support import all_events, event
from tests.fakes import Statement, sql_statements


def event_inserts(executed: list[Statement]) -> list[int]:
    """The statements that inserted into `events`, each as the rows it wrote (an executemany counts once)."""
    return [statement.rows for statement in executed if statement.starts("INSERT INTO events")]


class ChangeFailed(Exception):
    pass


def test_a_rolled_back_change_leaves_no_event(db: Database) -> None:
    try:
        with db.transaction() as session:
            emit(session, event(n=1))
            write_pending(session)  # even once written, the rollback takes it away
            raise ChangeFailed
    except ChangeFailed:
        pass
    assert all_events(db) == []


def test_a_rolled_back_savepoint_takes_its_events_only(db: Database) -> None:
    with db.transaction() as session:
        emit(session, event(n=1))
        try:
            with session.begin_nested():
                emit(session, event(n=2))
                raise ChangeFailed
        except ChangeFailed:
            pass
        with session.begin_nested():
            emit(session, event(n=3))
        emit(session, event(n=4))
    assert [e.payload["n"] for e in all_events(db)] == [1, 3, 4]


def test_a_transaction_writes_its_events_with_one_statement(db: Database) -> None:
    with sql_statements(db) as executed, db.transaction() as session:
        for n in range(64):
            emit(session, event(conversation_id=7, n=n))
    assert event_inserts(executed) == [64]
    stored = all_events(db)
    assert [e.payload["n"] for e in stored] == list(range(64))
    assert [e.id for e in stored] == sorted(e.id for e in stored)


def _types(db: Database) -> list[str]:
    return [e.type for e in all_events(db)]


def test_contacts_record_created_updated_tagged_untagged_and_merged(db: Database, tenant: Tenant) -> None:
    actor = tenant.actor(Role.AGENT)
    with db.transaction() as session:
        ana = contacts.do_create_contact(session, actor, {"first_name": "Ana", "tags": ["vip"]})
        other = contacts.do_create_contact(session, actor, {"first_name": "Anita", "email": "anita@example.com"})
        ana_id, other_id = ana.id, other.id
    with db.transaction() as session:
        ana = session.get(Contact, ana_id)
        assert ana is not None
        contacts.do_update_contact(session, actor, ana, {"last_name": "López", "country": "ES"})
        contacts.do_update_contact(session, actor, ana, {"last_name": "López"})  # no change, no event
        contacts.do_remove_tags(session, actor, ana, ["VIP"])
    with db.transaction() as session:
        survivor, merged = session.get(Contact, ana_id), session.get(Contact, other_id)
        assert survivor is not None
        assert merged is not None
        contacts.do_merge_contacts(session, tenant.actor(), survivor, merged)
    stored = all_events(db)
    assert [(e.type, e.contact_id) for e in stored] == [
        ("contact.created", ana_id),
        ("contact.tagged", ana_id),
        ("contact.created", other_id),
        ("contact.updated", ana_id),
        ("contact.untagged", ana_id),
        ("contact.updated", ana_id),  # the merge filled the survivor's blank email
        ("contact.merged", ana_id),
    ]
    created, tagged, _, updated, untagged, filled, merged_event = stored
    assert created.payload == {"contact_id": ana_id, "source": None}
    assert created.actor == f"user:{tenant.agent_id}"
    assert created.workspace_id == tenant.workspace_id
    assert tagged.payload == {"contact_id": ana_id, "tag": "vip"}
    assert untagged.payload == {"contact_id": ana_id, "tag": "vip"}
    assert sorted(c["field"] for c in updated.payload["changes"]) == ["country", "last_name"]
    assert {"field": "last_name", "old": None, "new": "López"} in updated.payload["changes"]
    assert filled.payload["changes"] == [{"field": "email", "old": None, "new": "anita@example.com"}]
    assert merged_event.payload == {"contact_id": ana_id, "merged_contact_id": other_id, "merged_name": "Anita"}
    assert merged_event.actor == f"user:{tenant.owner_id}"


def test_the_inbox_records_its_changes_under_the_catalogue_names(db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    with db.transaction() as session:
        fresh = session.get(Channel, channel.id)
        assert fresh is not None
        received = inbound.do_receive_many(
            session, [(fresh, InboundMessage(sender_id=f"{channel.id}:v:ana", provider_message_id="p1", text="hola"))]
        )[0]
        conversation_id, contact_id = received.conversation.id, received.contact.id
    agent = tenant.actor(Role.OWNER)
    with db.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        reply = inbox.do_reply(session, agent, conversation, text="¿En qué te ayudo?")
        inbox.do_comment(session, agent, conversation, "a note")
        inbox.do_assign(session, agent, conversation, user_id=tenant.agent_id, team_id=None)
        inbox.do_assign(session, agent, conversation, user_id=None, team_id=None)
        inbox.do_set_bot_paused(session, agent, conversation, True)  # realtime only
        inbox.do_close(session, agent, conversation, category_id=None, summary=None)
        inbox.do_reopen(session, agent, conversation)
        reply_id = reply.id
    with db.transaction() as session:
        message = session.get(Message, reply_id)
        assert message is not None
        advance_message_status(session, message, DeliveryStatus.SENT, None)
    stored = all_events(db)
    assert [e.type for e in stored] == [
        "contact.created",
        "conversation.opened",
        "message.received",
        "message.sent",
        "comment.added",
        "conversation.assigned",
        "conversation.unassigned",
        "conversation.closed",
        "conversation.reopened",
        "message.status_changed",
    ]
    assert {e.contact_id for e in stored} == {contact_id}
    assert {e.conversation_id for e in stored[1:]} == {conversation_id}
    created, opened, incoming, sent, comment, assigned, unassigned, closed, _, status = stored
    assert created.payload == {"contact_id": contact_id, "source": "channel:webchat"}
    assert opened.payload["conversation"]["id"] == conversation_id
    assert incoming.payload["message"]["text"] == "hola"
    assert incoming.actor == "contact"
    assert sent.payload["message"]["direction"] == "outgoing"
    assert sent.actor == f"user:{tenant.owner_id}"
    assert comment.payload["message"]["text"] == "a note"
    assert assigned.payload["conversation"]["assignee_id"] == tenant.agent_id
    assert assigned.payload["previous_assignee_id"] is None
    assert unassigned.payload["previous_assignee_id"] == tenant.agent_id
    assert closed.payload["conversation"]["status"] == "closed"
    assert {assigned.actor, unassigned.actor, closed.actor} == {f"user:{tenant.owner_id}"}
    assert opened.actor == "channel"
    assert status.payload == {"message_id": reply_id, "status": "sent", "reason": None}
    with db.transaction(write=False) as session:
        assert session.scalar(select(Message.id).where(Message.id == reply_id)) == reply_id


def test_a_batch_of_inbound_messages_writes_its_events_with_one_statement(db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    with db.transaction() as session:  # the senders are known, their conversations open
        fresh = session.get(Channel, channel.id)
        assert fresh is not None
        inbound.do_receive_many(
            session,
            [
                (fresh, InboundMessage(sender_id=f"{channel.id}:v:{n}", provider_message_id=None, text="hola"))
                for n in range(8)
            ],
        )
    with sql_statements(db) as executed, db.transaction() as session:
        fresh = session.get(Channel, channel.id)
        assert fresh is not None
        inbound.do_receive_many(
            session,
            [
                (fresh, InboundMessage(sender_id=f"{channel.id}:v:{n % 8}", provider_message_id=None, text=f"m{n}"))
                for n in range(64)
            ],
        )
    assert event_inserts(executed) == [64]
    received = [e for e in all_events(db) if e.type == "message.received"][-64:]
    assert [e.payload["message"]["text"] for e in received] == [f"m{n}" for n in range(64)]


def test_a_savepoint_whose_flush_failed_takes_its_events_only(db: Database) -> None:
    """The path of a lost race (kit.db.race_guard): the savepoint's INSERT fails, the transaction
    goes on, and the events emitted before the savepoint are still written."""
    with db.transaction() as session:
        session.add(User(email="taken@example.com", password_hash="x"))
        session.flush()
    with db.transaction() as session:
        emit(session, event(n=1))
        try:
            with session.begin_nested():
                emit(session, event(n=2))
                session.add(User(email="taken@example.com", password_hash="x"))
                session.flush()
        except IntegrityError:
            pass
        emit(session, event(n=3))
    assert [e.payload["n"] for e in all_events(db)] == [1, 3]
