"""Auto-close: inactivity counts the contact's and people's messages only (a broadcast's, a
workflow's or the bot's do not reset it), the closing source is "auto-close" with the normal
conversation.closed event, and several sweeps at once close each conversation once."""

import threading
from datetime import timedelta

from sqlalchemy import select

from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.conversations.autoclose import close_inactive
from tertulia.conversations.inbound import do_receive_many
from tertulia.conversations.models import ClosingSource, Conversation, ConversationStatus, Message, SenderKind
from tertulia.conversations.service import do_close, do_create_closing_category, do_reply
from tertulia.events.models import EventRecord
from tertulia.kit.clock import travel
from tertulia.kit.db import Database
from tertulia.users.permissions import Actor
from tertulia.workspaces.service import do_set_auto_close
from tests.conftest import Tenant
from tests.conversations.support import make_webchat


def _customer_writes(db: Database, channel: Channel, who: str, text: str) -> int:
    with db.transaction() as session:
        fresh = session.get(Channel, channel.id)
        assert fresh is not None
        inbound = InboundMessage(sender_id=f"{fresh.id}:v:{who}", provider_message_id=None, text=text)
        [result] = do_receive_many(session, [(fresh, inbound)])
        return result.message.conversation_id


def _reply(db: Database, actor: Actor, conversation_id: int, text: str) -> Message:
    with db.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        return do_reply(session, actor, conversation, text=text)


def _status(db: Database, conversation_id: int) -> tuple[ConversationStatus, ClosingSource | None]:
    with db.transaction(write=False) as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        return conversation.status, conversation.closing_source


def _auto_close_after(db: Database, tenant: Tenant, minutes: int | None) -> None:
    with db.transaction() as session:
        do_set_auto_close(session, tenant.actor(), minutes)


def test_automated_messages_do_not_reset_the_timer(db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    _auto_close_after(db, tenant, 60)
    quiet = _customer_writes(db, channel, "ana", "Hola")
    answered = _customer_writes(db, channel, "luis", "Hola")
    with travel(timedelta(minutes=50)):
        broadcast = _reply(db, Actor.system(tenant.workspace_id, "broadcast"), quiet, "¡Ofertas!")
        _reply(db, Actor.system(tenant.workspace_id, "workflow"), quiet, "Seguimos aquí")
        _reply(db, Actor.system(tenant.workspace_id, "bot"), quiet, "¿Te ayudo?")
        human = _reply(db, tenant.actor(), answered, "Te atiendo")
    assert broadcast.sender_kind == SenderKind.BROADCAST
    assert human.sender_kind == SenderKind.USER
    with travel(timedelta(minutes=59)):
        assert close_inactive(db) == 0
    with travel(timedelta(minutes=61)):
        assert close_inactive(db) == 1
    assert _status(db, quiet) == (ConversationStatus.CLOSED, ClosingSource.AUTO_CLOSE)
    assert _status(db, answered) == (ConversationStatus.OPEN, None)
    with travel(timedelta(minutes=111)):
        assert close_inactive(db) == 1
        assert close_inactive(db) == 0  # nothing left: a second sweep changes nothing
    assert _status(db, answered) == (ConversationStatus.CLOSED, ClosingSource.AUTO_CLOSE)
    with db.transaction(write=False) as session:
        closed = session.scalars(select(EventRecord).where(EventRecord.type == "conversation.closed")).all()
        assert sorted(e.conversation_id for e in closed if e.conversation_id) == sorted([quiet, answered])
        assert {e.payload["conversation"]["closing_source"] for e in closed} == {"auto-close"}
        line = session.scalar(
            select(Message).where(Message.conversation_id == quiet, Message.payload["event"].as_string() == "closed")
        )
        assert line is not None
        assert line.payload["source"] == "auto-close"


def test_a_customer_message_or_reopening_resets_and_off_closes_nothing(db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    conversation = _customer_writes(db, channel, "ana", "Hola")
    with travel(timedelta(days=20)):
        assert close_inactive(db) == 0  # off
    _auto_close_after(db, tenant, 30)
    with travel(timedelta(minutes=25)):
        assert _customer_writes(db, channel, "ana", "¿Hay alguien?") == conversation
    with travel(timedelta(minutes=50)):
        assert close_inactive(db) == 0
    with travel(timedelta(minutes=56)):
        assert close_inactive(db) == 1
    # Closing categories are asked of people, not of auto-close; a person closing records "user".
    with db.transaction() as session:
        category_id = do_create_closing_category(session, tenant.actor(), "Resuelto").id
    other = _customer_writes(db, channel, "luis", "Hola")
    with travel(timedelta(minutes=31)):
        assert close_inactive(db) == 1
    assert _status(db, other) == (ConversationStatus.CLOSED, ClosingSource.AUTO_CLOSE)
    third = _customer_writes(db, channel, "marta", "Hola")
    with db.transaction() as session:
        row = session.get(Conversation, third)
        assert row is not None
        do_close(session, tenant.actor(), row, category_id=category_id, summary=None)
    assert _status(db, third) == (ConversationStatus.CLOSED, ClosingSource.USER)


def test_several_sweeps_at_once_close_each_conversation_once(db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    _auto_close_after(db, tenant, 30)
    conversations = [_customer_writes(db, channel, f"v{n}", "Hola") for n in range(12)]
    counts: list[int] = []
    with travel(timedelta(hours=1)):
        sweeps = [threading.Thread(target=lambda: counts.append(close_inactive(db, batch=5))) for _ in range(3)]
        for sweep in sweeps:
            sweep.start()
        for sweep in sweeps:
            sweep.join()
    assert sum(counts) == len(conversations)
    with db.transaction(write=False) as session:
        closed = session.scalars(
            select(EventRecord.conversation_id).where(EventRecord.type == "conversation.closed")
        ).all()
    assert sorted(c for c in closed if c is not None) == sorted(conversations)
