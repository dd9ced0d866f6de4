"""Who opened a conversation is stored on it (`conversations.opening_source`), for every source the
"conversation opened" trigger knows, and a branch on it takes a different path for each; the
migration that added it fills it in from the event log as the inbox would have. On both databases."""

import importlib
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, text, update

from tertulia.channels.models import Channel
from tertulia.contacts import service as contacts_service
from tertulia.contacts.models import Contact
from tertulia.conversations import service as conversations_service
from tertulia.conversations.models import Conversation
from tertulia.events.models import EventRecord
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.workflows.support import close_conversation, customer_writes, dispatch, feed, publish, runs, tags_of
from tests.workflows.test_opened_sources import replied, send_broadcast

pytestmark = pytest.mark.usefixtures("no_background_work")

SOURCES = ("contact", "broadcast_reply", "api", "user", "workflow")
MIGRATION = importlib.import_module("tertulia.migrations.versions.0620_conversation_opening_source")


def by_source() -> dict[str, Any]:
    """On any opened conversation: a branch per source, each tagging "via-<source>"; else "via-none"."""
    branches = [
        {
            "name": source,
            "conditions": {
                "groups": [
                    {
                        "conditions": [
                            {"category": "conversation", "field": "opening_source", "operator": "is", "value": source}
                        ]
                    }
                ]
            },
            "next": f"via-{source}",
        }
        for source in SOURCES
    ]
    steps: list[dict[str, Any]] = [{"id": "route", "type": "branch", "config": {"branches": branches}, "next": "none"}]
    steps += [{"id": f"via-{s}", "type": "add_tags", "config": {"tags": [f"via-{s}"]}} for s in SOURCES]
    steps.append({"id": "none", "type": "add_tags", "config": {"tags": ["via-none"]}})
    return {"trigger": {"type": "conversation_opened", "config": {}}, "steps": steps}


def sources(db: Database, contact_ids: list[int]) -> dict[int, list[str | None]]:
    """Each contact's conversations' opening sources, oldest first."""
    with db.transaction(write=False) as session:
        rows = session.execute(
            select(Conversation.contact_id, Conversation.opening_source)
            .where(Conversation.contact_id.in_(contact_ids))
            .order_by(Conversation.id)
        )
        found: dict[int, list[str | None]] = {contact_id: [] for contact_id in contact_ids}
        for contact_id, source in rows:
            found[contact_id].append(None if source is None else str(source))
        return found


def test_each_source_is_stored_branched_on_and_filled_in_by_the_migration(
    db: Database, client: TestClient, tenant: Tenant, channel: Channel
) -> None:
    replier, by_api, by_user, by_workflow, reopened = (
        customer_writes(db, channel, f"os-{n}", "hola") for n in range(5)
    )
    for contact_id in (replier, by_api, by_user, by_workflow, reopened):
        close_conversation(db, tenant, contact_id)
    dispatch(db)  # those first conversations opened before the workflows below existed
    flow = publish(db, tenant, by_source(), name="By source")
    publish(
        db,
        tenant,
        {
            "trigger": {"type": "tag_added", "config": {"tags": ["reopen"]}},
            "steps": [{"id": "open", "type": "open_conversation", "config": {}}],
        },
        name="Opener",
    )
    send_broadcast(db, tenant, channel)
    customer_writes(db, channel, "os-0", "sí, voy")  # a reply within the window opens a conversation
    assert replied(db) == [replier]
    newcomer = customer_writes(db, channel, "os-new", "hola")
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
        # A person reopens a closed conversation: its source is who reopened it.
        closed = session.scalar(select(Conversation).where(Conversation.contact_id == reopened))
        assert closed is not None
        conversations_service.do_reopen(session, tenant.actor(), closed)
    feed(db)
    feed(db)

    everyone = [replier, by_api, by_user, by_workflow, reopened, newcomer]
    stored_sources = sources(db, everyone)
    # The first conversations were opened by the customers' messages; a broadcast wrote into none.
    assert stored_sources == {
        replier: ["contact", "broadcast_reply"],
        by_api: ["contact", "api"],
        by_user: ["contact", "user"],
        by_workflow: ["contact", "workflow"],
        reopened: ["user"],
        newcomer: ["contact"],
    }
    # The run of each opened conversation took its source's branch (a reopening is not an opening).
    assert {contact_id: tags_of(db, contact_id) for contact_id in everyone} == {
        replier: ["via-broadcast_reply"],
        by_api: ["via-api"],
        by_user: ["via-user"],
        by_workflow: ["reopen", "via-workflow"],
        reopened: [],
        newcomer: ["via-contact"],
    }
    assert [run.status for run in runs(db, flow)] == ["finished"] * 5

    # The migration's backfill, run on the same rows with the column emptied, finds the same
    # sources in the event log; a conversation whose events are gone stays empty.
    with db.transaction() as session:
        forgotten = session.scalar(select(Conversation.id).where(Conversation.contact_id == newcomer))
        session.execute(delete(EventRecord).where(EventRecord.conversation_id == forgotten))
        session.execute(update(Conversation).values(opening_source=None))
        session.execute(text(MIGRATION.FROM_LATEST_OPENING))
        session.execute(text(MIGRATION.OPENED_BY_REPLY))
    assert sources(db, everyone) == {**stored_sources, newcomer: [None]}
