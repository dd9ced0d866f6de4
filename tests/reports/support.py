"""A workspace where things happen at chosen local times, and the reports' consumer fed by hand."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.contacts.models import Contact
from tertulia.contacts.service import do_merge_contacts
from tertulia.conversations import service as inbox
from tertulia.conversations.inbound import do_receive
from tertulia.conversations.models import Conversation
from tertulia.events import dispatcher
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tertulia.reports.rollups import CONSUMER
from tertulia.users.permissions import Actor
from tests.conftest import Tenant


def feed(db: Database) -> int:
    """Feed the consumer everything written so far (on PostgreSQL, once it is settled)."""
    delivered = 0
    for _ in range(50):
        report = dispatcher.dispatch(db, [CONSUMER], settle_wait=2.0)
        delivered += report.delivered
        if not report.unsettled:
            return delivered
    raise AssertionError("the event log did not settle")


@contextmanager
def at(local: str, zone: str = "America/Mexico_City") -> Iterator[None]:
    """The application's clock at `local` ("2026-11-02 23:50") in `zone`, for the block."""
    target = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    with travel(target - datetime.now(UTC)):
        yield


@dataclass
class Shop:
    db: Database
    tenant: Tenant
    channel_id: int

    def customer_writes(self, sender: str, text: str = "hola") -> int:
        """The conversation id."""
        with self.db.transaction() as session:
            channel = session.get(Channel, self.channel_id)
            assert channel is not None
            received = do_receive(
                session,
                channel,
                InboundMessage(sender_id=sender, provider_message_id=f"{sender}-{utcnow().timestamp()}", text=text),
            )
            assert received.conversation is not None
            return received.conversation.id

    def reply(self, conversation_id: int, actor: Actor, text: str = "buenos días") -> int:
        with self.db.transaction() as session:
            conversation = session.get(Conversation, conversation_id)
            assert conversation is not None
            return inbox.do_reply(session, actor, conversation, text=text).id

    def assign(self, conversation_id: int, user_id: int) -> None:
        with self.db.transaction() as session:
            conversation = session.get(Conversation, conversation_id)
            assert conversation is not None
            inbox.do_assign(session, self.tenant.actor(), conversation, user_id=user_id, team_id=None)

    def unassign(self, conversation_id: int) -> None:
        with self.db.transaction() as session:
            conversation = session.get(Conversation, conversation_id)
            assert conversation is not None
            inbox.do_assign(session, self.tenant.actor(), conversation, user_id=None, team_id=None)

    def close(self, conversation_id: int, category_id: int | None = None) -> None:
        with self.db.transaction() as session:
            conversation = session.get(Conversation, conversation_id)
            assert conversation is not None
            inbox.do_close(session, self.tenant.actor(), conversation, category_id=category_id, summary=None)

    def reopen(self, conversation_id: int) -> None:
        with self.db.transaction() as session:
            conversation = session.get(Conversation, conversation_id)
            assert conversation is not None
            inbox.do_reopen(session, self.tenant.actor(), conversation)

    def category(self, name: str) -> int:
        with self.db.transaction() as session:
            return inbox.do_create_closing_category(session, self.tenant.actor(), name).id

    def contact_of(self, conversation_id: int) -> int:
        with self.db.transaction(write=False) as session:
            contact_id = session.scalar(select(Conversation.contact_id).where(Conversation.id == conversation_id))
            assert contact_id is not None
            return int(contact_id)

    def merge(self, survivor_id: int, other_id: int) -> None:
        with self.db.transaction() as session:
            survivor = session.get(Contact, survivor_id)
            other = session.get(Contact, other_id)
            assert survivor is not None
            assert other is not None
            do_merge_contacts(session, self.tenant.actor(), survivor, other)


def system(tenant: Tenant, kind: str) -> Actor:
    return Actor.system(tenant.workspace_id, kind)


def report(client: Any, tenant: Tenant, name: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/v1/reports/{name}", headers=tenant.headers, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
