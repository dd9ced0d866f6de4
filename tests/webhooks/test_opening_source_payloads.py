"""Who opened a conversation (`opening_source`) is part of the conversation's one shape: the API
answers it, the `conversation.opened` and `conversation.reopened` events carry it and the webhooks
send it, the same value in all three, for a conversation a customer's message opened, one a reply to
a broadcast opened, one opened by an API call, one by a person, and reopened ones. On both databases."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.channels.models import Channel
from tertulia.contacts.models import Contact
from tertulia.conversations import repository as conversations_repo
from tertulia.conversations import service as conversations_service
from tertulia.conversations.models import Conversation
from tertulia.events.models import EventRecord
from tertulia.events.types import EventType
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tests.conftest import Tenant
from tests.webhooks.support import create_endpoint, policy, private_addresses_allowed, receiver
from tests.webhooks.test_delivery import _drain
from tests.workflows.support import channel_on_fake, close_conversation, customer_writes
from tests.workflows.test_opened_sources import replied, send_broadcast

pytestmark = pytest.mark.usefixtures("no_background_work")


@pytest.fixture
def settings() -> Settings:
    return Settings(api_rate_limit_per_minute=100_000, webhooks_allow_private=True)


@pytest.fixture
def channel(db: Database, tenant: Tenant, fakehttp_adapter: object) -> Iterator[Channel]:
    """A channel on the local fake provider; queued work (the outbox) waits, nothing is delivered."""
    with private_addresses_allowed(), channel_on_fake(db, tenant) as (found, _provider):
        queue.huey.immediate = False
        try:
            yield found
        finally:
            queue.huey.immediate = True
            queue.huey.flush()


def _open_conversation_id(db: Database, tenant: Tenant, contact_id: int) -> int:
    with db.transaction(write=False) as session:
        conversation = conversations_repo.open_conversation(session, tenant.workspace_id, contact_id)
        assert conversation is not None
        return conversation.id


def _logged(db: Database) -> dict[int, list[tuple[str, str | None]]]:
    """Each conversation's opened and reopened events, in order: (type, opening_source carried)."""
    found: dict[int, list[tuple[str, str | None]]] = {}
    with db.transaction(write=False) as session:
        rows = session.scalars(
            select(EventRecord)
            .where(EventRecord.type.in_((EventType.CONVERSATION_OPENED, EventType.CONVERSATION_REOPENED)))
            .order_by(EventRecord.id)
        )
        for row in rows:
            conversation: dict[str, Any] = row.payload["conversation"]
            found.setdefault(conversation["id"], []).append((row.type, conversation["opening_source"]))
    return found


def test_the_api_the_events_and_the_webhooks_say_who_opened_a_conversation(
    client: TestClient, db: Database, tenant: Tenant, channel: Channel
) -> None:
    replier, by_api, by_user, reopened_by_api, reopened_by_user = (
        customer_writes(db, channel, f"shape-{n}", "hola") for n in range(5)
    )
    first = {contact_id: _open_conversation_id(db, tenant, contact_id) for contact_id in (replier, by_api)}
    for contact_id in (replier, by_api, by_user, reopened_by_api, reopened_by_user):
        close_conversation(db, tenant, contact_id)

    with receiver() as hooks:
        create_endpoint(client, tenant.headers, hooks.url, ["conversation.opened"])
        send_broadcast(db, tenant, channel)
        customer_writes(db, channel, "shape-0", "sí, voy")  # a reply within the window opens one
        assert replied(db) == [replier]
        by_api_sent = client.post(
            f"/api/v1/contacts/id:{by_api}/messages", headers=tenant.headers, json={"message": {"text": "Listo"}}
        )
        assert by_api_sent.status_code == 201, by_api_sent.text
        with db.transaction() as session:
            contact = session.get(Contact, by_user)
            stored = session.get(Channel, channel.id)
            assert contact is not None
            assert stored is not None
            conversations_service.do_send(session, tenant.actor(), contact, stored, text="Te escribo yo")
        api_reopened = client.post(
            f"/api/v1/conversations/{_closed_conversation_id(db, reopened_by_api)}/reopen", headers=tenant.headers
        )
        assert api_reopened.status_code == 200, api_reopened.text
        # The reopen's answer is the conversation's shape, with who reopened it.
        assert api_reopened.json()["opening_source"] == "api"
        with db.transaction() as session:
            closed = session.get(Conversation, _closed_conversation_id(db, reopened_by_user))
            assert closed is not None
            conversations_service.do_reopen(session, tenant.actor(), closed)
        _drain(db, policy())
        delivered = [request.json for request in hooks.answered()]

    expected = {
        first[replier]: "contact",
        _open_conversation_id(db, tenant, replier): "broadcast_reply",
        first[by_api]: "contact",
        _open_conversation_id(db, tenant, by_api): "api",
        _open_conversation_id(db, tenant, by_user): "user",
        _open_conversation_id(db, tenant, reopened_by_api): "api",
        _open_conversation_id(db, tenant, reopened_by_user): "user",
    }
    # The API: one conversation at a time, and the list.
    for conversation_id, source in expected.items():
        shown = client.get(f"/api/v1/conversations/{conversation_id}", headers=tenant.headers)
        assert shown.status_code == 200, shown.text
        assert shown.json()["opening_source"] == source
    listed = client.get("/api/v1/conversations?view=all&status=all&limit=50", headers=tenant.headers).json()
    assert {c["id"]: c["opening_source"] for c in listed["items"] if c["id"] in expected} == expected

    # The event log: each opening carries its source as it was opened (the first conversations
    # were opened by their customers' messages before they were closed).
    logged = _logged(db)
    opened = EventType.CONVERSATION_OPENED.value
    reopened = EventType.CONVERSATION_REOPENED.value
    assert {conversation_id: logged[conversation_id] for conversation_id in expected} == {
        first[replier]: [(opened, "contact")],
        _open_conversation_id(db, tenant, replier): [(opened, "broadcast_reply")],
        first[by_api]: [(opened, "contact")],
        _open_conversation_id(db, tenant, by_api): [(opened, "api")],
        _open_conversation_id(db, tenant, by_user): [(opened, "user")],
        _open_conversation_id(db, tenant, reopened_by_api): [(opened, "contact"), (reopened, "api")],
        _open_conversation_id(db, tenant, reopened_by_user): [(opened, "contact"), (reopened, "user")],
    }

    # The webhooks: every one of those openings, with the value the event log recorded.
    sent = sorted(
        (body["data"]["conversation"]["id"], body["data"]["event"], body["data"]["conversation"]["opening_source"])
        for body in delivered
    )
    assert sent == sorted((cid, kind, source) for cid, events in logged.items() for kind, source in events)
    for body in delivered:
        conversation = body["data"]["conversation"]
        shown = client.get(f"/api/v1/conversations/{conversation['id']}", headers=tenant.headers).json()
        assert set(conversation) <= set(shown)


def _closed_conversation_id(db: Database, contact_id: int) -> int:
    """The contact's newest conversation (closed, in this test)."""
    with db.transaction(write=False) as session:
        found = session.scalar(
            select(Conversation.id)
            .where(Conversation.contact_id == contact_id)
            .order_by(Conversation.id.desc())
            .limit(1)
        )
        assert found is not None
        return found
