"""The demo workspace's inbox: channels of every kind and conversations with a realistic history.

The history is written the way it would have arrived: customer messages through the one inbound
path (`do_receive_many`, which also finds or creates each contact), notes, assignments and closings
through the inbox's services. Replies the team sent in the past are written as already delivered
or read rows instead of through `do_reply`, which would queue them for the provider now; the demo's
WhatsApp and Telegram channels hold placeholder credentials and reach no provider. Times are then
moved back so the list reads like the last few days.
"""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus, InboundMessage, MessageType
from tertulia.channels.service import do_create_channel
from tertulia.contacts.models import Contact
from tertulia.conversations.inbound import do_receive_many
from tertulia.conversations.models import Conversation, Direction, Message, SenderKind
from tertulia.conversations.service import (
    do_assign,
    do_close,
    do_comment,
    do_create_closing_category,
    do_create_snippet,
)
from tertulia.kit.clock import utcnow
from tertulia.users.permissions import Actor

CUSTOMER, AGENT = "customer", "agent"


@dataclass(frozen=True)
class Script:
    """One conversation: who writes on which channel, what was said, and how it stands now."""

    channel: str  # "webchat", "whatsapp", "telegram" or "twilio" (SMS)
    name: str
    lines: tuple[tuple[str, str], ...]  # (CUSTOMER or AGENT, text)
    hours_ago: float  # when the first line was written
    assigned: str | None = None  # "owner", "agent" or None
    closed: str | None = None  # the closing category's name
    note: str | None = None  # an internal note, mentioning the agent


SCRIPTS = (
    Script(
        "whatsapp",
        "Lucía Hernández",
        (
            (CUSTOMER, "Hola, buenas tardes. ¿Tienen envío a Guadalajara?"),
            (AGENT, "¡Hola Lucía! Sí, enviamos a todo México. A Guadalajara llega en 2 o 3 días hábiles."),
            (CUSTOMER, "Perfecto. ¿Y cuánto cuesta el envío?"),
            (AGENT, "Es gratis en pedidos desde $799. Si no, son $99."),
            (CUSTOMER, "Va, hago el pedido hoy. ¡Gracias!"),
        ),
        hours_ago=50,
        assigned="agent",
        closed="Venta",
    ),
    Script(
        "whatsapp",
        "Diego Ramírez",
        (
            (CUSTOMER, "Mi pedido #4821 no ha llegado y ya pasaron 6 días 😕"),
            (AGENT, "Lamento la espera, Diego. Reviso el estado con la paquetería y te escribo en un momento."),
            (CUSTOMER, "Ok, quedo atento"),
        ),
        hours_ago=3,
        assigned="agent",
        note=(
            "@Ana Agente la guía 7781 está detenida en el centro de distribución de Querétaro, ¿puedes dar seguimiento?"
        ),
    ),
    Script(
        "whatsapp",
        "Valentina Núñez",
        (
            (CUSTOMER, "¿Hacen factura? Necesito que salga a nombre de mi empresa"),
            (AGENT, "Claro. Mándanos tu RFC, razón social y correo, y la emitimos en 24 h."),
            (CUSTOMER, "Ahorita te los paso"),
        ),
        hours_ago=26,
        assigned="owner",
    ),
    Script(
        "whatsapp",
        "Jorge Castañeda",
        ((CUSTOMER, "Buenas, ¿el plan Pro incluye usuarios ilimitados?"),),
        hours_ago=0.4,
    ),
    Script(
        "telegram",
        "Mateo Ortega",
        (
            (CUSTOMER, "/start promo-noviembre"),
            (AGENT, "¡Bienvenido, Mateo! Tu código de 15 % de descuento es NOV15."),
            (CUSTOMER, "¿Sirve también en la tienda física?"),
        ),
        hours_ago=8,
        assigned="agent",
    ),
    Script(
        "telegram",
        "Emma Clarke",
        (
            (CUSTOMER, "Hi! Do you ship to the UK?"),
            (AGENT, "Hi Emma! Not yet, sorry: we ship within Mexico, Spain and Colombia for now."),
            (CUSTOMER, "No worries, thanks for letting me know"),
        ),
        hours_ago=75,
        assigned="owner",
        closed="Sin respuesta necesaria",
    ),
    Script(
        "twilio",
        "Andrés Villalobos",
        (
            (CUSTOMER, "Hola, me llegó un SMS de que mi pedido sale hoy. ¿Me pueden dar la guía?"),
            (AGENT, "Hola Andrés, tu guía es 7781-2290 de Estafeta. Llega mañana antes de las 6 pm."),
            (CUSTOMER, "Gracias!"),
        ),
        hours_ago=5,
        assigned="agent",
    ),
    Script(
        "webchat",
        "Sofía Muñoz",
        (
            (CUSTOMER, "Hola, no puedo entrar a mi cuenta, dice que la contraseña es incorrecta"),
            (AGENT, "Hola Sofía, te enviamos un enlace para restablecerla a tu correo. ¿Te llegó?"),
            (CUSTOMER, "Sí, ya entré. ¡Mil gracias!"),
        ),
        hours_ago=30,
        assigned="agent",
        closed="Soporte resuelto",
    ),
    Script(
        "webchat",
        "Liam Johnson",
        (
            (CUSTOMER, "Hello, can I change the delivery address of an order I placed yesterday?"),
            (AGENT, "Sure, Liam. What's the order number and the new address?"),
        ),
        hours_ago=1.5,
        assigned="owner",
    ),
    Script(
        "webchat",
        "Camila Pérez",
        ((CUSTOMER, "¿Tienen la chamarra azul en talla M?"),),
        hours_ago=0.1,
    ),
)
CLOSING_CATEGORIES = ("Venta", "Soporte resuelto", "Sin respuesta necesaria")


def seed_inbox(session: Session, actor: Actor, agent_id: int, rng: random.Random) -> None:
    """Channels of every kind and SCRIPTS as their conversations, for the workspace of `actor` (an owner)."""
    channels = {
        "webchat": session.scalars(
            select(Channel).where(Channel.workspace_id == actor.workspace_id, Channel.type == "webchat")
        ).one(),
        "whatsapp": do_create_channel(
            session,
            actor,
            "whatsapp",
            "WhatsApp Ventas",
            {"phone_number_id": "100000000000001", "business_account_id": "100000000000002"},
            {"access_token": "demo-placeholder-token", "app_secret": "demo-placeholder-secret"},
        ),
        "telegram": do_create_channel(
            session,
            actor,
            "telegram",
            "Bot de soporte",
            {"bot": {"id": 7000000001, "username": "tertulia_demo_bot", "first_name": "Tertulia Demo"}},
            {"bot_token": "7000000001:AAdemo-placeholder-token-not-real"},
        ),
        "twilio": do_create_channel(
            session,
            actor,
            "twilio",
            "SMS Avisos",
            {"account_sid": "AC" + "0" * 32, "from_number": "+525512345678"},
            {"auth_token": "0" * 32},
        ),
    }
    categories = {name: do_create_closing_category(session, actor, name).id for name in CLOSING_CATEGORIES}
    do_create_snippet(session, actor, "envio", "Enviamos a todo México en 2 o 3 días hábiles; gratis desde $799.")
    do_create_snippet(session, actor, "gracias", "¡Gracias por escribirnos! Quedamos atentos a lo que necesites.")
    now = utcnow()
    for number, script in enumerate(SCRIPTS):
        _seed_conversation(session, actor, agent_id, channels[script.channel], script, number, categories, rng, now)


def _seed_conversation(
    session: Session,
    actor: Actor,
    agent_id: int,
    channel: Channel,
    script: Script,
    number: int,
    categories: dict[str, int],
    rng: random.Random,
    now: datetime,
) -> None:
    sender = _sender_id(script.channel, number, rng)
    first_name, _, last_name = script.name.partition(" ")
    at = now - timedelta(hours=script.hours_ago)
    conversation: Conversation | None = None
    times: dict[int, datetime] = {}  # message id -> when the script says it was written
    for line, (who, text) in enumerate(script.lines):
        if line:
            at += timedelta(minutes=rng.randint(1, 9), seconds=rng.randint(0, 59))
        if who == CUSTOMER:
            inbound = InboundMessage(
                sender_id=sender,
                provider_message_id=f"demo-{number}-{line}",
                text=text,
                display_name=script.name,
                first_name=first_name,
                last_name=last_name or None,
                phone=f"+{sender}" if script.channel == "whatsapp" else sender if script.channel == "twilio" else None,
            )
            received = do_receive_many(session, [(channel, inbound)])[0]
            assert received.conversation is not None  # the demo's contacts are never blocked
            conversation, message = received.conversation, received.message
        elif conversation is not None:
            message = _past_reply(conversation, channel, script, line, number, agent_id, actor)
            session.add(message)
            session.flush()
        else:
            continue
        times[message.id] = at
        if line == 0 and script.assigned:
            assignee = agent_id if script.assigned == "agent" else actor.user_id
            do_assign(session, actor, conversation, user_id=assignee, team_id=None)
    if conversation is None:
        return
    if script.note:
        do_comment(session, actor, conversation, script.note, [agent_id])
    if script.closed:
        do_close(session, actor, conversation, category_id=categories[script.closed], summary=None)
    _move_back_in_time(session, conversation, times)


def _past_reply(
    conversation: Conversation, channel: Channel, script: Script, line: int, number: int, agent_id: int, actor: Actor
) -> Message:
    """A reply the team sent before the demo began: delivered, and read unless it is the last line."""
    return Message(
        workspace_id=conversation.workspace_id,
        conversation_id=conversation.id,
        contact_id=conversation.contact_id,
        channel_id=channel.id,
        direction=Direction.OUTGOING,
        sender_kind=SenderKind.USER,
        sender_user_id=agent_id if script.assigned == "agent" else actor.user_id,
        type=MessageType.TEXT,
        text=script.lines[line][1],
        attachments=[],
        payload={},
        provider_message_id=f"demo-out-{number}-{line}",
        # SMS has no read receipts.
        status=DeliveryStatus.READ
        if line < len(script.lines) - 1 and channel.type != "twilio"
        else DeliveryStatus.DELIVERED,
        attempts=1,
    )


def _sender_id(channel_type: str, number: int, rng: random.Random) -> str:
    """The customer's id on the channel: a phone number for WhatsApp (without +) and SMS (E.164), a chat
    id for Telegram."""
    if channel_type == "whatsapp":
        return f"52155{rng.randrange(10_000_000, 100_000_000)}"
    if channel_type == "telegram":
        return str(rng.randrange(100_000_000, 2_000_000_000))
    if channel_type == "twilio":
        return f"+52155{rng.randrange(10_000_000, 100_000_000)}"
    return f"demo-visitor-{number}"


def _move_back_in_time(session: Session, conversation: Conversation, times: dict[int, datetime]) -> None:
    """Date the conversation, its contact and every message in it as the script says: scripted lines
    at their times, the lines the inbox wrote itself (assignment, note, closing) just after the line
    before them."""
    messages = session.scalars(
        select(Message).where(Message.conversation_id == conversation.id).order_by(Message.id)
    ).all()
    at = min(times.values())
    for message in messages:
        at = times.get(message.id, at + timedelta(seconds=40))
        message.created_at = at
        if message.status is not None:
            message.status_at = at + timedelta(minutes=2)
    customer = [m for m in messages if m.direction in (Direction.INCOMING, Direction.OUTGOING)]
    incoming = [m.created_at for m in messages if m.direction == Direction.INCOMING]
    outgoing = [m.created_at for m in messages if m.direction == Direction.OUTGOING]
    conversation.opened_at = messages[0].created_at
    conversation.last_message_at = customer[-1].created_at
    conversation.last_message_preview = (customer[-1].text or "")[:200]
    conversation.last_incoming_at = incoming[-1] if incoming else None
    if conversation.closed_at is not None:
        conversation.closed_at = messages[-1].created_at
    contact = session.get(Contact, conversation.contact_id)
    if contact is not None:
        contact.created_at = min(contact.created_at, messages[0].created_at)
        contact.last_incoming_at = incoming[-1] if incoming else contact.last_incoming_at
        contact.last_outgoing_at = outgoing[-1] if outgoing else contact.last_outgoing_at
    session.flush()
