"""The "conversation opened" trigger filtered by who opened the conversation: a contact's ordinary
first message, a contact's reply to a broadcast, an API call, a person, another workflow. Each source
starts the workflow filtered on it and no other, on both databases."""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.broadcasts import sender
from tertulia.broadcasts import service as broadcasts_service
from tertulia.broadcasts.models import BroadcastRecipient
from tertulia.channels.models import Channel
from tertulia.contacts import service as contacts_service
from tertulia.contacts.models import Contact
from tertulia.conversations import service as conversations_service
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.workflows.support import (
    close_conversation,
    customer_writes,
    dispatch,
    feed,
    publish,
    runs,
    tags_of,
)

pytestmark = pytest.mark.usefixtures("no_background_work")

SOURCES = ("contact", "broadcast_reply", "api", "user", "workflow")


def mark_on_opened(source: str) -> dict[str, object]:
    return {
        "trigger": {"type": "conversation_opened", "config": {"sources": [source]}},
        "steps": [{"id": "mark", "type": "add_tags", "config": {"tags": [f"by-{source}"]}}],
    }


def send_broadcast(db: Database, tenant: Tenant, channel: Channel) -> int:
    """A broadcast to everyone on the channel, sent now (started and pumped here: the queue waits;
    the messages are written, so the recipients are messaged, before the outbox delivers them)."""
    with db.transaction() as session:
        fields = broadcasts_service.DraftFields(
            name="Aviso", audience="all", channel_id=channel.id, content={"default": {"text": "¿Vienes el sábado?"}}
        )
        item = broadcasts_service.do_create_broadcast(session, tenant.actor(), fields)
        broadcasts_service.do_schedule(session, tenant.actor(), item, None)
        broadcast_id = item.id
    assert sender.start(db, broadcast_id) == "started"
    tick = sender.pump(db, broadcast_id)
    while tick.state == "more":
        tick = sender.pump(db, broadcast_id)
    assert tick.state == "finishing"  # every message written, waiting in the outbox
    return broadcast_id


def replied(db: Database) -> list[int]:
    """The contacts whose reply to a broadcast was recorded."""
    with db.transaction(write=False) as session:
        query = select(BroadcastRecipient.contact_id).where(BroadcastRecipient.replied_at.is_not(None))
        return sorted(session.scalars(query))


def test_each_source_starts_only_the_workflows_filtered_on_it(
    db: Database, client: TestClient, tenant: Tenant, channel: Channel
) -> None:
    # Four customers wrote once; their conversations are closed, so each is opened again below.
    replier, by_api, by_user, by_workflow = (customer_writes(db, channel, f"src-{n}", "hola") for n in range(4))
    for contact_id in (replier, by_api, by_user, by_workflow):
        close_conversation(db, tenant, contact_id)
    dispatch(db)  # those first conversations opened before any of the workflows below existed
    flows = {source: publish(db, tenant, mark_on_opened(source), name=source) for source in SOURCES}
    opener = publish(
        db,
        tenant,
        {
            "trigger": {"type": "tag_added", "config": {"tags": ["reopen"]}},
            "steps": [{"id": "open", "type": "open_conversation", "config": {}}],
        },
        name="Opener",
    )

    # A customer who opens a conversation before the broadcast and replies to it there: the reply
    # did not open the conversation, so it is "contact" (the consumer reads it all in one go).
    chatting = customer_writes(db, channel, "src-chat", "hola, una pregunta")
    send_broadcast(db, tenant, channel)  # held in the closed conversations: it opens none
    customer_writes(db, channel, "src-0", "sí, voy")  # a reply within the window opens a conversation
    customer_writes(db, channel, "src-chat", "sí, también voy")
    assert replied(db) == sorted([replier, chatting])
    newcomer = customer_writes(db, channel, "src-new", "hola")  # not a recipient: an ordinary first message
    sent = client.post(
        f"/api/v1/contacts/id:{by_api}/messages", headers=tenant.headers, json={"message": {"text": "Tu pedido salió"}}
    )
    assert sent.status_code == 201, sent.text
    with db.transaction() as session:
        contact = session.get(Contact, by_user)
        stored = session.get(Channel, channel.id)
        assert contact is not None
        assert stored is not None
        conversations_service.do_send(session, tenant.actor(), contact, stored, text="Te escribo yo")
        found = session.get(Contact, by_workflow)
        assert found is not None
        contacts_service.do_add_tags(session, tenant.actor(), found, ["reopen"])
    feed(db)  # the opener's run opens the conversation, whose event the next read sees
    feed(db)

    assert [r.status for r in runs(db, opener)] == ["finished"]
    assert tags_of(db, replier) == ["by-broadcast_reply"]
    assert tags_of(db, newcomer) == ["by-contact"]
    assert tags_of(db, chatting) == ["by-contact"]
    assert tags_of(db, by_api) == ["by-api"]
    assert tags_of(db, by_user) == ["by-user"]
    assert tags_of(db, by_workflow) == ["by-workflow", "reopen"]
    [reply_run] = runs(db, flows["broadcast_reply"])
    assert reply_run.state["trigger"]["source"] == "broadcast_reply"
    assert {source: [r.contact_id for r in runs(db, flow)] for source, flow in flows.items()} == {
        "contact": [chatting, newcomer],
        "broadcast_reply": [replier],
        "api": [by_api],
        "user": [by_user],
        "workflow": [by_workflow],
    }
