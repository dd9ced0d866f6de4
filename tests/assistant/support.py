"""The bot's test scenery shared by the bot's tests: a shop with three knowledge entries and a bot on
a made-up channel, and feeding the event log to the bot as a worker would."""

from typing import Any

from sqlalchemy import select

from tertulia.assistant import bot
from tertulia.assistant.bot_settings import do_save_settings
from tertulia.assistant.service import check_entry_values, do_create_entry
from tertulia.channels.service import do_create_channel
from tertulia.conversations.models import Conversation, Direction, Message
from tertulia.events import dispatcher
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.conversations.support import receive_customer_message
from tests.fakes import FakeProvider

ENTRIES = [
    {
        "question": "¿Cuál es el horario de la tienda?",
        "alternatives": ["¿A qué hora abren?", "¿Hasta qué hora atienden?"],
        "answer": "Abrimos de lunes a sábado de 9 a 19 h.",
        "language": "es",
    },
    {
        "question": "¿Hacen envíos a domicilio?",
        "alternatives": ["¿Mandan pedidos a casa?"],
        "answer": "Sí, enviamos a todo el país en 48 horas.",
        "language": "es",
    },
    {
        "question": "¿Aceptan tarjeta de crédito?",
        "alternatives": ["¿Puedo pagar con tarjeta?"],
        "answer": "Aceptamos todas las tarjetas de crédito y débito.",
        "language": "es",
    },
]


class Shop:
    def __init__(self, db: Database, tenant: Tenant, provider: FakeProvider, **settings: Any) -> None:
        self.db = db
        self.tenant = tenant
        self.provider = provider
        self.counter = 0
        with db.transaction() as session:
            actor = tenant.actor()
            self.channel_id = do_create_channel(session, actor, "fakehttp", "Tienda", {"url": provider.url}).id
            for raw in ENTRIES:
                do_create_entry(session, actor, check_entry_values(session, tenant.workspace_id, raw))
            do_save_settings(session, actor, self.channel_id, {"enabled": True, **settings})

    def customer_writes(self, text: str, sender: str = "visitor-1") -> int:
        """Writes the message, lets the bot run; the conversation id."""
        self.counter += 1
        conversation_id = receive_customer_message(self.db, self.channel_id, sender, f"{sender}-{self.counter}", text)
        feed(self.db)
        return conversation_id

    def outgoing(self, conversation_id: int) -> list[Message]:
        with self.db.transaction(write=False) as session:
            return list(
                session.scalars(
                    select(Message)
                    .where(Message.conversation_id == conversation_id, Message.direction == Direction.OUTGOING)
                    .order_by(Message.id)
                )
            )

    def notes(self, conversation_id: int) -> list[str]:
        with self.db.transaction(write=False) as session:
            return [
                m.text or ""
                for m in session.scalars(
                    select(Message)
                    .where(Message.conversation_id == conversation_id, Message.direction == Direction.COMMENT)
                    .order_by(Message.id)
                )
            ]

    def conversation(self, conversation_id: int) -> Conversation:
        with self.db.transaction(write=False) as session:
            row = session.get(Conversation, conversation_id)
            assert row is not None
            session.expunge(row)
            return row


def feed(db: Database) -> None:
    """Hand the bot every event in the log, as its consumer would."""
    for _ in range(50):
        if not dispatcher.dispatch(db, [bot.CONSUMER], settle_wait=2.0).unsettled:
            return
    raise AssertionError("the event log did not settle")
