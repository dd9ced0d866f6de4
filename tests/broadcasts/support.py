"""Helpers for the broadcast tests: channels, customers who wrote on them, broadcasts."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from tertulia.broadcasts import service
from tertulia.broadcasts.models import Broadcast, BroadcastRecipient
from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.channels.service import do_create_channel
from tertulia.conversations.inbound import do_receive_many
from tertulia.conversations.models import Message
from tertulia.kit.db import Database
from tests.conftest import Tenant


def fake_channel(db: Database, tenant: Tenant, url: str, **config: Any) -> Channel:
    with db.transaction() as session:
        return do_create_channel(session, tenant.actor(), "fakehttp", "Fake", {"url": url, **config})


def customers_write(
    db: Database, channel: Channel, senders: Sequence[str], text: str = "hola", **fields: Any
) -> list[int]:
    """Each sender writes once on the channel (a contact with an identity there, window open)."""
    with db.transaction() as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        received = do_receive_many(
            session,
            [
                (
                    stored,
                    InboundMessage(
                        sender_id=sender,
                        provider_message_id=f"in-{sender}-{text}-{index}",
                        text=text,
                        **fields,
                    ),
                )
                for index, sender in enumerate(senders)
            ],
        )
        return [r.contact.id for r in received]


def draft(db: Database, tenant: Tenant, **fields: Any) -> int:
    with db.transaction() as session:
        return service.do_create_broadcast(session, tenant.actor(), service.DraftFields(**fields)).id


def get(db: Database, broadcast_id: int) -> Broadcast:
    with db.transaction(write=False) as session:
        item = session.get(Broadcast, broadcast_id)
        assert item is not None
        session.expunge(item)
        return item


def recipients(db: Database, broadcast_id: int) -> list[BroadcastRecipient]:
    with db.transaction(write=False) as session:
        rows = list(
            session.scalars(
                select(BroadcastRecipient)
                .where(BroadcastRecipient.broadcast_id == broadcast_id)
                .order_by(BroadcastRecipient.id)
            )
        )
        for row in rows:
            session.expunge(row)
        return rows


def broadcast_messages(db: Database, broadcast_id: int) -> list[Message]:
    with db.transaction(write=False) as session:
        rows = [
            m
            for m in session.scalars(select(Message).where(Message.sender_kind == "broadcast").order_by(Message.id))
            if (m.payload or {}).get("broadcast_id") == broadcast_id
        ]
        for row in rows:
            session.expunge(row)
        return rows
