"""The bot on both databases, fed from the event log as in production: it answers what the
knowledge answers, hands off (message, pause, note) on what it does not, on a hand-off keyword and
past its maximum; a redelivered event sends once; paused, assigned and open-hours conversations get
nothing; closing with "turn the bot back on" ends a pause that would carry over."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import select

from tertulia.assistant import bot
from tertulia.assistant.bot_settings import do_save_settings
from tertulia.assistant.models import BotTurn
from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.channels.service import do_create_channel
from tertulia.conversations import service as inbox
from tertulia.conversations.inbound import do_receive
from tertulia.conversations.models import Conversation, SenderKind
from tertulia.events import dispatcher
from tertulia.events.models import EventRecord
from tertulia.events.types import EventType
from tertulia.kit import queue
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tertulia.users.permissions import Actor
from tertulia.workspaces.service import do_set_business_hours
from tests.assistant.support import Shop, feed
from tests.conftest import Tenant
from tests.conversations.support import receive_customer_message
from tests.fakes import FakeHttpAdapter, FakeProvider, fake_provider
from tests.web.helpers import sign_in_as

pytestmark = pytest.mark.usefixtures("no_background_work")


@pytest.fixture(autouse=True)
def _bot_from_now(db: Database) -> None:
    """The bot's position starts at the log's end, as for a consumer added to a running system."""
    feed(db)


@pytest.fixture
def provider(fakehttp_adapter: FakeHttpAdapter) -> Iterator[FakeProvider]:
    with fake_provider() as running:
        yield running


def test_answers_an_answerable_question(db: Database, tenant: Tenant, provider: FakeProvider) -> None:
    shop = Shop(db, tenant, provider)
    conversation_id = shop.customer_writes("hola, a que hora abren?")
    [reply] = shop.outgoing(conversation_id)
    assert reply.text == "Abrimos de lunes a sábado de 9 a 19 h."
    assert reply.sender_kind == SenderKind.BOT
    assert reply.payload["automation"] == "assistant"
    assert reply.payload["bot"]["outcome"] == "answered"
    assert reply.payload["bot"]["entry_id"] is not None
    assert shop.conversation(conversation_id).bot_paused is False
    assert shop.notes(conversation_id) == []


def test_hands_off_an_unknown_question_then_stays_quiet(db: Database, tenant: Tenant, provider: FakeProvider) -> None:
    shop = Shop(db, tenant, provider, handoff_message="Te paso con una persona.")
    conversation_id = shop.customer_writes("¿reparan bicicletas eléctricas de montaña?")
    [handoff] = shop.outgoing(conversation_id)
    assert handoff.text == "Te paso con una persona."
    assert handoff.sender_kind == SenderKind.BOT
    assert handoff.payload["bot"]["outcome"] == "handoff"
    conversation = shop.conversation(conversation_id)
    assert conversation.bot_paused is True
    assert conversation.assignee_id is None
    [note] = shop.notes(conversation_id)
    assert "reparan bicicletas eléctricas de montaña" in note
    # Something the knowledge does answer now gets nothing: the bot is paused here.
    shop.customer_writes("¿aceptan tarjeta de crédito?")
    assert len(shop.outgoing(conversation_id)) == 1


def test_handoff_note_names_the_entry_and_confidence_below_threshold(
    db: Database, tenant: Tenant, provider: FakeProvider
) -> None:
    shop = Shop(db, tenant, provider, threshold=0.99)
    conversation_id = shop.customer_writes("¿hacen envíos?")
    [handoff] = shop.outgoing(conversation_id)
    assert handoff.payload["bot"]["outcome"] == "handoff"
    entry_id = handoff.payload["bot"]["entry_id"]
    assert entry_id is not None
    [note] = shop.notes(conversation_id)
    assert f"#{entry_id}" in note
    assert "confidence" in note


def test_handoff_keyword(db: Database, tenant: Tenant, provider: FakeProvider) -> None:
    shop = Shop(db, tenant, provider)
    conversation_id = shop.customer_writes("quiero hablar con un humano sobre el horario")
    [handoff] = shop.outgoing(conversation_id)
    assert handoff.payload["bot"]["outcome"] == "handoff"
    assert shop.conversation(conversation_id).bot_paused is True
    assert "asked for a person" in shop.notes(conversation_id)[0]


def test_maximum_answers_then_handoff(db: Database, tenant: Tenant, provider: FakeProvider) -> None:
    shop = Shop(db, tenant, provider, max_bot_answers=2)
    conversation_id = shop.customer_writes("¿a qué hora abren?")
    shop.customer_writes("¿hacen envíos a domicilio?")
    shop.customer_writes("¿puedo pagar con tarjeta?")
    shop.customer_writes("¿a qué hora abren?")
    outcomes = [m.payload["bot"]["outcome"] for m in shop.outgoing(conversation_id)]
    assert outcomes == ["answered", "answered", "handoff"]
    assert "maximum" in shop.notes(conversation_id)[0]


def test_redelivered_event_sends_once(db: Database, tenant: Tenant, provider: FakeProvider) -> None:
    shop = Shop(db, tenant, provider)
    conversation_id = shop.customer_writes("¿a qué hora abren?")
    with db.transaction(write=False) as session:
        event = session.scalar(
            select(EventRecord)
            .where(EventRecord.conversation_id == conversation_id, EventRecord.type == EventType.MESSAGE_RECEIVED)
            .order_by(EventRecord.id.desc())
        )
        assert event is not None
        session.expunge(event)
    bot.handle_event(db, event)
    bot.handle_event(db, event)
    assert len(shop.outgoing(conversation_id)) == 1
    assert sum(provider.deliveries.values()) == 1
    with db.transaction(write=False) as session:
        assert len(session.scalars(select(BotTurn).where(BotTurn.conversation_id == conversation_id)).all()) == 1


def test_paused_conversation_gets_nothing(db: Database, tenant: Tenant, provider: FakeProvider) -> None:
    shop = Shop(db, tenant, provider)
    conversation_id = shop.customer_writes("quiero un agente")
    with db.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        inbox.do_set_bot_paused(session, tenant.actor(), conversation, True)
    before = len(shop.outgoing(conversation_id))
    shop.customer_writes("¿a qué hora abren?")
    assert len(shop.outgoing(conversation_id)) == before


def test_assigned_conversation_gets_nothing(db: Database, tenant: Tenant, provider: FakeProvider) -> None:
    shop = Shop(db, tenant, provider, enabled=False)
    conversation_id = shop.customer_writes("hola")
    with db.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        inbox.do_assign(session, tenant.actor(), conversation, user_id=tenant.agent_id, team_id=None)
        do_save_settings(session, tenant.actor(), shop.channel_id, {"enabled": True})
    shop.customer_writes("¿a qué hora abren?")
    assert shop.outgoing(conversation_id) == []


def test_bot_off_on_the_channel_sends_nothing(db: Database, tenant: Tenant, provider: FakeProvider) -> None:
    shop = Shop(db, tenant, provider, enabled=False)
    conversation_id = shop.customer_writes("¿a qué hora abren?")
    assert shop.outgoing(conversation_id) == []


def _local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("America/Mexico_City")).astimezone(UTC)


def test_outside_hours_option(db: Database, tenant: Tenant, provider: FakeProvider) -> None:
    shop = Shop(db, tenant, provider, hours="outside")
    with db.transaction() as session:
        do_set_business_hours(
            session,
            tenant.actor(),
            {
                "enabled": True,
                "timezone": "America/Mexico_City",
                "week": {"monday": [{"start": "09:00", "end": "18:00"}]},
            },
        )
    # Later Mondays: open at 10:00 (people answer), closed at 20:00 (the bot does).
    with travel(_local("2027-01-04 10:00") - utcnow()):
        open_conversation = shop.customer_writes("¿a qué hora abren?", sender="daytime")
    assert shop.outgoing(open_conversation) == []
    with travel(_local("2027-01-04 20:00") - utcnow()):
        closed_conversation = shop.customer_writes("¿a qué hora abren?", sender="evening")
    [reply] = shop.outgoing(closed_conversation)
    assert reply.payload["bot"]["outcome"] == "answered"


def _close(db: Database, tenant: Tenant, conversation_id: int, *, resume_bot: bool) -> None:
    with db.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        inbox.do_close(session, tenant.actor(), conversation, category_id=None, summary=None, resume_bot=resume_bot)


def test_pause_carries_over_unless_closed_with_the_bot_back_on(
    db: Database, tenant: Tenant, provider: FakeProvider
) -> None:
    shop = Shop(db, tenant, provider, keep_paused=True)
    first = shop.customer_writes("quiero un agente", sender="ana")
    assert shop.conversation(first).bot_paused is True
    _close(db, tenant, first, resume_bot=False)
    second = shop.customer_writes("¿a qué hora abren?", sender="ana")
    assert second != first
    assert shop.outgoing(second) == []
    assert shop.conversation(second).bot_paused is True
    _close(db, tenant, second, resume_bot=True)
    assert shop.conversation(second).bot_paused is False
    third = shop.customer_writes("¿a qué hora abren?", sender="ana")
    [reply] = shop.outgoing(third)
    assert reply.payload["bot"]["outcome"] == "answered"


def test_pause_does_not_carry_over_without_keep_paused(db: Database, tenant: Tenant, provider: FakeProvider) -> None:
    shop = Shop(db, tenant, provider)
    first = shop.customer_writes("quiero un agente", sender="luis")
    _close(db, tenant, first, resume_bot=False)
    second = shop.customer_writes("¿a qué hora abren?", sender="luis")
    [reply] = shop.outgoing(second)
    assert reply.payload["bot"]["outcome"] == "answered"


def test_close_api_turns_the_bot_back_on(
    db: Database, tenant: Tenant, provider: FakeProvider, client: TestClient
) -> None:
    shop = Shop(db, tenant, provider, keep_paused=True)
    first = shop.customer_writes("quiero un agente", sender="eva")
    headers = {"X-CSRF-Token": sign_in_as(client, db, tenant.owner_id, "owner-password")}
    closed = client.post(f"/api/v1/conversations/{first}/close", headers=headers, json={"resume_bot": True})
    assert closed.status_code == 200, closed.text
    assert closed.json()["bot_paused"] is False
    second = shop.customer_writes("¿a qué hora abren?", sender="eva")
    [reply] = shop.outgoing(second)
    assert reply.payload["bot"]["outcome"] == "answered"


def test_hours_option_is_validated(db: Database, tenant: Tenant, provider: FakeProvider, client: TestClient) -> None:
    shop = Shop(db, tenant, provider)
    refused = client.put(
        f"/api/v1/assistant/channels/{shop.channel_id}/settings",
        headers=tenant.headers,
        json={"hours": "weekends", "keep_paused": True},
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["details"] == {"hours": "Choose always or only outside business hours."}
    saved = client.put(
        f"/api/v1/assistant/channels/{shop.channel_id}/settings",
        headers=tenant.headers,
        json={"hours": "outside", "keep_paused": True},
    )
    assert (saved.json()["hours"], saved.json()["keep_paused"]) == ("outside", True)


def test_suggested_replies_for_the_last_customer_message(
    db: Database, tenant: Tenant, provider: FakeProvider, client: TestClient
) -> None:
    shop = Shop(db, tenant, provider, enabled=False)
    conversation_id = shop.customer_writes("hola")
    shop.customer_writes("¿puedo pagar con tarjeta de débito?")
    url = f"/api/v1/assistant/conversations/{conversation_id}/suggestions"
    got = client.get(url, headers=tenant.headers)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["question"] == "¿puedo pagar con tarjeta de débito?"
    assert 1 <= len(body["items"]) <= 3
    assert body["items"][0]["answer"] == "Aceptamos todas las tarjetas de crédito y débito."
    confidences = [item["confidence"] for item in body["items"]]
    assert confidences == sorted(confidences, reverse=True)
    # Suggestions send nothing.
    assert shop.outgoing(conversation_id) == []
    assert client.get("/api/v1/assistant/conversations/999999/suggestions", headers=tenant.headers).status_code == 404


def test_a_stale_message_is_left_to_people(db: Database, tenant: Tenant, provider: FakeProvider) -> None:
    """The bot reaching a message long after it arrived (its first run over an old log, a backlog)
    does not answer it."""
    shop = Shop(db, tenant, provider)
    queue.huey.immediate = False  # the bot runs only when fed, here much later
    with db.transaction() as session:
        channel = session.get(Channel, shop.channel_id)
        assert channel is not None
        received = do_receive(
            session, channel, InboundMessage(sender_id="old", provider_message_id="old-1", text="¿a qué hora abren?")
        )
        assert received.conversation is not None
        conversation_id = received.conversation.id
    with travel(bot.STALE_AFTER + timedelta(minutes=1)):
        feed(db)
    assert shop.outgoing(conversation_id) == []


def test_a_bot_turned_on_in_the_conversation_is_not_paused_again_by_the_carry_over(
    db: Database, tenant: Tenant, provider: FakeProvider
) -> None:
    """A workflow's hand-off to the assistant (or a person) resumes the bot in a conversation that
    started paused because the previous one ended paused: the carry-over does not undo it."""
    shop = Shop(db, tenant, provider, keep_paused=True)
    first = shop.customer_writes("quiero un agente", sender="eva")
    _close(db, tenant, first, resume_bot=False)
    second = shop.customer_writes("hola", sender="eva")
    assert shop.conversation(second).bot_paused is True
    with db.transaction() as session:
        conversation = session.get(Conversation, second)
        assert conversation is not None
        inbox.do_set_bot_paused(session, Actor.system(tenant.workspace_id, "workflow"), conversation, False)
    shop.customer_writes("¿a qué hora abren?", sender="eva")
    assert shop.conversation(second).bot_paused is False
    [reply] = shop.outgoing(second)
    assert reply.payload["bot"]["outcome"] == "answered"


def _messages_received_after(db: Database, start: int) -> list[EventRecord]:
    """The log's `message.received` events after `start`, as a read of the bot's consumer gets them."""
    with db.transaction(write=False) as session:
        events = list(
            session.scalars(
                select(EventRecord)
                .where(EventRecord.id > start, EventRecord.type == EventType.MESSAGE_RECEIVED)
                .order_by(EventRecord.id)
            )
        )
        session.expunge_all()
    return events


def test_a_read_of_several_messages_is_answered_on_the_channels_with_the_bot_on(
    db: Database, tenant: Tenant, provider: FakeProvider
) -> None:
    shop = Shop(db, tenant, provider)
    with db.transaction() as session:
        quiet = do_create_channel(session, tenant.actor(), "fakehttp", "Sin bot", {"url": provider.url}).id
    start = dispatcher.newest_event_id(db)
    asked = receive_customer_message(db, shop.channel_id, "visitor-a", "a-1", "¿a qué hora abren?")
    unheard = receive_customer_message(db, quiet, "visitor-b", "b-1", "¿a qué hora abren?")
    also = receive_customer_message(db, shop.channel_id, "visitor-c", "c-1", "¿Puedo pagar con tarjeta?")
    events = _messages_received_after(db, start)
    assert len(events) == 3
    bot.handle_batch(events)
    bot.handle_batch(events)  # fed again, as after a crash before the consumer stored its position
    assert [m.text for m in shop.outgoing(asked)] == ["Abrimos de lunes a sábado de 9 a 19 h."]
    assert shop.outgoing(unheard) == []
    assert [m.text for m in shop.outgoing(also)] == ["Aceptamos todas las tarjetas de crédito y débito."]
    assert sum(provider.deliveries.values()) == 2


def test_a_read_on_channels_without_the_bot_costs_one_query(
    db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with db.transaction() as session:
        quiet = do_create_channel(session, tenant.actor(), "fakehttp", "Sin bot", {"url": "http://127.0.0.1:9"}).id
    start = dispatcher.newest_event_id(db)
    for n in range(5):
        receive_customer_message(db, quiet, f"visitor-{n}", f"q-{n}", "¿a qué hora abren?")
    events = _messages_received_after(db, start)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    sqlalchemy_event.listen(db.engine, "before_cursor_execute", count)
    try:
        bot.handle_batch(events)
    finally:
        sqlalchemy_event.remove(db.engine, "before_cursor_execute", count)
    # The channel's settings, read once (SQLite's transaction adds its BEGIN).
    assert len([s for s in statements if "FROM assistant_channel_settings" in s]) == 1, statements
    assert len(statements) <= 2, statements
