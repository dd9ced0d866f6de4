"""The demo workspace's inbox: channels of every kind and conversations with a realistic history.

The history is written the way it would have arrived: customer messages through the one inbound
path (`do_receive_many`, which also finds or creates each contact), notes, assignments and closings
through the inbox's services. Replies the team sent in the past are written as already delivered
or read rows instead of through `do_reply`, which would queue them for the provider now; the demo's
WhatsApp and Telegram channels hold placeholder credentials and reach no provider. The web chat's bot
takes its turn on each web-chat message of its last two days through its own `respond`, as its
consumer would have when the message arrived; its replies are then recorded as read the same way. Each step is
written with the application's clock moved back to when the script says it happened, so the
event log, and the reports built from it, read like the past weeks rather than the second the demo
was seeded: first responses, resolutions and a day-by-day series to look at.
"""

import random
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.assistant import bot, bot_settings
from tertulia.broadcasts.audience import Renderer, snapshot
from tertulia.broadcasts.models import BroadcastRecipient, BroadcastStatus, RecipientState
from tertulia.broadcasts.repository import identities_of, latest_conversations
from tertulia.broadcasts.service import DraftFields, do_create_broadcast
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus, InboundMessage, MessageType
from tertulia.channels.service import do_create_channel
from tertulia.contacts.models import Contact
from tertulia.conversations.files import do_store_file
from tertulia.conversations.inbound import do_receive_many
from tertulia.conversations.models import Conversation, Direction, Message, SenderKind
from tertulia.conversations.service import (
    customer_message_created,
    do_assign,
    do_close,
    do_comment,
    do_create_closing_category,
    do_create_snippet,
)
from tertulia.demo_integrations import seed_templates
from tertulia.kit.clock import travel, utcnow
from tertulia.users.permissions import Actor

CUSTOMER, AGENT = "customer", "agent"
# The customer whose conversation the demo marks as spam with the "Marcar como spam" shortcut.
SPAM_NAME = "Ganancias Rápidas"


@dataclass(frozen=True)
class Automations:
    """What the shop switched on before the inbox's last days (`switch_on`, run with the clock at
    that time), and what then ran as each of those days' conversations opened (`opened`, with the
    clock at the moment its first message arrived), as the event consumers would have: the demo's
    workflows (demo_workflows.py)."""

    switch_on: Callable[[Session], object]
    opened: Callable[[Session, Conversation], object]


@dataclass(frozen=True)
class Script:
    """One conversation: who writes on which channel, what was said, and how it stands now."""

    channel: str  # "webchat", "whatsapp", "telegram" or "twilio" (SMS)
    name: str
    lines: tuple[tuple[str, str], ...]  # (CUSTOMER or AGENT, text)
    hours_ago: float  # when the first line was written
    assigned: str | None = None  # "owner", "manager", "agent" or None
    closed: str | None = None  # the closing category's name
    note: str | None = None  # an internal note, mentioning the agent
    sender: str | None = None  # the customer's id on the channel; None: a new customer


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
        SPAM_NAME,
        ((CUSTOMER, "💰 Gana $5,000 diarios desde casa, sin experiencia. Escríbeme a bit.ly/gana-ya"),),
        hours_ago=0.7,
    ),
    Script(
        "webchat",
        "Camila Pérez",
        ((CUSTOMER, "¿Tienen la chamarra azul en talla M?"),),
        hours_ago=0.1,
    ),
)
# The web chat's bot has answered since BOT_SINCE_HOURS ago: every customer message on the web chat
# since then went through it as it arrived (`assistant.bot.respond`), so the scripts there show its
# answers and hand-offs. These are the conversations it handled: answered from the knowledge
# (customer lines only: the bot writes its own), and one where the customer asked for a person.
BOT_SINCE_HOURS = 48
BOT_SETTINGS = {
    "enabled": True,
    "threshold": None,  # the assistant's measured default
    "handoff_keywords": [*bot_settings.DEFAULT_KEYWORDS, "ejecutivo", "hablar con alguien"],
    "handoff_message": "Te comunico con alguien del equipo; te responde en unos minutos (lunes a viernes "
    "de 9 a 19 h, sábados de 10 a 14 h).",
    "max_bot_answers": 3,
    "hours": "always",
    "keep_paused": False,
}
BOT_SCRIPTS = (
    Script(
        "webchat",
        "Martina Ríos",
        ((CUSTOMER, "Hola, ¿cuál es su horario de atención?"), (CUSTOMER, "¿Atienden los sábados?")),
        hours_ago=40,
        closed="Soporte resuelto",
    ),
    Script(
        "webchat",
        "Olivia Brown",
        ((CUSTOMER, "Hi! What are your support hours?"),),
        hours_ago=20,
        closed="Sin respuesta necesaria",
    ),
    Script(
        "webchat",
        "Ricardo Montes",
        ((CUSTOMER, "¿Cuánto cuesta el plan Pro?"),),
        hours_ago=9,
        closed="Venta",
    ),
    Script(
        "webchat",
        "Beatriz Salazar",
        (
            (CUSTOMER, "Quiero hablar con un asesor, mi pedido #5120 llegó incompleto"),
            (AGENT, "Hola Beatriz, soy Ana. Lamento lo del pedido, ¿me dices qué producto faltó?"),
            (CUSTOMER, "Faltó la salsa verde de 500 ml"),
        ),
        hours_ago=4,
        assigned="agent",
    ),
)
CLOSING_CATEGORIES = ("Venta", "Soporte resuelto", "Sin respuesta necesaria")
PRICE_LIST = "plan,precio_mensual_usd,agentes\nGratis,0,1\nBásico,12,3\nPro,29,10\nEmpresa,79,ilimitados\n"

# Older conversations, answered and closed over the past four weeks, so the reports have a history:
# (question, answer, thanks, closing category).
PAST_EXCHANGES = (
    ("¿Tienen envío a Monterrey?", "¡Hola! Sí, llega en 2 o 3 días hábiles.", "Perfecto, gracias", "Venta"),
    ("¿Puedo pagar con transferencia?", "Claro, te mandamos los datos por aquí.", "Listo, ya pagué", "Venta"),
    (
        "No me llega el correo de confirmación",
        "Lo reenviamos; revisa también spam.",
        "Ya llegó, gracias",
        "Soporte resuelto",
    ),
    (
        "¿Cómo cambio mi contraseña?",
        "En Perfil > Contraseña; te mando el enlace.",
        "Hecho, ¡gracias!",
        "Soporte resuelto",
    ),
    ("¿El plan Básico tiene factura?", "Sí, todos los planes incluyen factura.", "Ok, gracias", "Venta"),
    ("Gracias por la atención de ayer", "¡A ti! Quedamos atentos.", "👍", "Sin respuesta necesaria"),
)
PAST_NAMES = (
    "Renata Ortega",
    "Paula Sánchez",
    "Martín Gómez",
    "Ximena Ruiz",
    "Iñaki Herrera",
    "Olivia Brown",
    "José Navarro",
    "Chloe Evans",
)
PAST_CONVERSATIONS = 30


def seed_inbox(
    session: Session,
    actor: Actor,
    agent_id: int,
    rng: random.Random,
    manager_id: int | None = None,
    automations: Automations | None = None,
) -> None:
    """Channels of every kind and SCRIPTS as their conversations, for the workspace of `actor` (an
    owner); `automations` switched on before the last days (the broadcast and what followed it)."""
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
    seed_templates(session, channels["whatsapp"])
    categories = {name: do_create_closing_category(session, actor, name).id for name in CLOSING_CATEGORIES}
    do_create_snippet(session, actor, "envio", "Enviamos a todo México en 2 o 3 días hábiles; gratis desde $799.")
    do_create_snippet(session, actor, "gracias", "¡Gracias por escribirnos! Quedamos atentos a lo que necesites.")
    # A file in the library, sent with a snippet.
    prices = do_store_file(
        session, actor, name="lista-de-precios.csv", content_type="text/csv", data=PRICE_LIST.encode()
    )
    do_create_snippet(session, actor, "precios", "Te comparto nuestra lista de precios vigente.", file_id=prices.id)
    # Who each script's "owner", "manager" and "agent" are.
    assert actor.user_id is not None  # the seed acts as the owner
    people = {"owner": actor.user_id, "agent": agent_id}
    if manager_id is not None:
        people["manager"] = manager_id
    now = utcnow()
    _seed_contact_history(session, actor, people, channels, categories, rng, now)
    past = _past_scripts(rng, sorted(people))
    for number, script in enumerate(past):
        _seed_conversation(session, actor, people, channels[script.channel], script, number, categories, rng, now)
    if automations is not None:
        with _clock_at(now - timedelta(hours=BROADCAST_HOURS_AGO + AUTOMATIONS_BEFORE_HOURS)):
            automations.switch_on(session)
    # Between the past weeks and the last three days: a broadcast, and the customers who answered it.
    replies = _seed_sent_broadcast(session, actor, now - timedelta(hours=BROADCAST_HOURS_AGO), rng)
    # The web chat's bot switched on, then the last two days' conversations (its own among them).
    with _clock_at(now - timedelta(hours=BOT_SINCE_HOURS)):
        bot_settings.do_save_settings(session, actor, channels["webchat"].id, BOT_SETTINGS)
    recent = sorted(replies + SCRIPTS + BOT_SCRIPTS, key=lambda script: -script.hours_ago)
    opened = automations.opened if automations is not None else None
    for number, script in enumerate(recent, start=len(past)):
        _seed_conversation(
            session, actor, people, channels[script.channel], script, number, categories, rng, now, opened=opened
        )


BROADCAST_HOURS_AGO = 84
AUTOMATIONS_BEFORE_HOURS = 2  # the automations were switched on this long before the broadcast
# The share of the generated contacts with a phone who wrote in before, on WhatsApp or by SMS (so
# they have an identity there, and the broadcast a channel to reach them on).
HISTORY_SHARE = 0.85
HISTORY_PREFIX = "demo-history"


def _seed_contact_history(
    session: Session,
    actor: Actor,
    people: dict[str, int],
    channels: dict[str, Channel],
    categories: dict[str, int],
    rng: random.Random,
    now: datetime,
) -> None:
    """One answered and closed conversation for a share of the contacts already in the workspace
    (the generated ones), written from their phone: WhatsApp and SMS vouch for the number, so the
    inbound path joins each to its contact rather than making a new one. Spread over the two
    months before the broadcast; some WhatsApp ones in the day before it, inside the 24-hour window
    its free text needs there (the others are left out of it, as WhatsApp requires)."""
    contacts = session.scalars(
        select(Contact)
        .where(Contact.workspace_id == actor.workspace_id, Contact.phone.is_not(None))
        .order_by(Contact.id)
    ).all()
    scripts: list[Script] = []
    for contact in contacts:
        if rng.random() >= HISTORY_SHARE or contact.phone is None:
            continue
        kind = rng.choice(("whatsapp", "whatsapp", "twilio"))
        if kind == "whatsapp" and rng.random() < 0.55:
            hours_ago = BROADCAST_HOURS_AGO + rng.uniform(1, 20)
        else:
            hours_ago = rng.uniform(BROADCAST_HOURS_AGO + 24, 60 * 24)
        question, answer, thanks, category = rng.choice(PAST_EXCHANGES)
        script = Script(
            kind,
            contact.full_name or contact.first_name or "",
            ((CUSTOMER, question), (AGENT, answer), (CUSTOMER, thanks)),
            hours_ago=hours_ago,
            assigned=rng.choice(sorted(people)),
            closed=category,
            sender=contact.phone.removeprefix("+") if kind == "whatsapp" else contact.phone,
        )
        scripts.append(script)
    for number, script in enumerate(sorted(scripts, key=lambda script: -script.hours_ago)):
        _seed_conversation(
            session, actor, people, channels[script.channel], script, number, categories, rng, now, HISTORY_PREFIX
        )


BROADCAST_REPLIES = ("¡Me interesa! ¿Cómo lo activo?", "SÍ", "¿Aplica también al plan mensual?")


def _seed_sent_broadcast(session: Session, actor: Actor, at: datetime, rng: random.Random) -> tuple[Script, ...]:
    """A broadcast sent at `at` to every contact on their last channel, as the sender would have
    written it (the audience snapshot with its exclusions, one message per recipient), with the
    deliveries that came back since; and, as scripts to seed after it, the customers who replied
    (each reply is recorded against the broadcast as it arrives)."""
    with _clock_at(at):
        item = do_create_broadcast(
            session,
            actor,
            DraftFields(
                name="Nuevo catálogo de temporada",
                labels=["catalogo"],
                audience="all",
                channel_mode="last_interacted",
                content={
                    "default": {
                        "text": 'Hola {{contact.first_name | "cliente"}}, ya está aquí el catálogo de temporada '
                        "con envío gratis desde $799. Responde SÍ y te mandamos las novedades."
                    }
                },
            ),
        )
        snapshot(session, item, at)
        waiting = session.scalars(
            select(BroadcastRecipient).where(
                BroadcastRecipient.broadcast_id == item.id, BroadcastRecipient.state == RecipientState.WAITING
            )
        ).all()
        renderer = Renderer.of(session, item)
        conversations = latest_conversations(session, [r.contact_id for r in waiting])
        replies: list[Script] = []
        for recipient in waiting:
            contact = session.get_one(Contact, recipient.contact_id)
            channel = session.get_one(Channel, recipient.channel_id)
            identity = identities_of(session, channel, [contact.id]).get(contact.id, [None])[0]
            rendered = renderer.render(channel, contact)
            chance = rng.random()
            status = (
                DeliveryStatus.FAILED
                if chance < 0.1
                # SMS has no read receipts.
                else DeliveryStatus.DELIVERED
                if chance < 0.35 or channel.type == "twilio"
                else DeliveryStatus.READ
            )
            message = Message(
                workspace_id=item.workspace_id,
                conversation_id=conversations[contact.id],
                contact_id=contact.id,
                channel_id=channel.id,
                direction=Direction.OUTGOING,
                sender_kind=SenderKind.BROADCAST,
                type=rendered.type,
                text=rendered.text,
                attachments=rendered.attachments,
                payload={**rendered.payload, "recipient_id": identity},
                status=status,
                status_reason="The provider refused the message (demo)" if status == DeliveryStatus.FAILED else None,
                status_at=at + timedelta(minutes=rng.randint(1, 30)),
                attempts=1,
                created_at=at,
            )
            session.add(message)
            session.flush()
            recipient.state, recipient.message_id, recipient.messaged_at = RecipientState.MESSAGED, message.id, at
            if status == DeliveryStatus.READ and identity is not None and len(replies) < len(BROADCAST_REPLIES):
                name = contact.full_name or contact.first_name or ""
                replies.append(
                    Script(
                        channel.type,
                        name,
                        ((CUSTOMER, BROADCAST_REPLIES[len(replies)]), (AGENT, "¡Gracias! Te mandamos el catálogo.")),
                        hours_ago=BROADCAST_HOURS_AGO - rng.uniform(0.2, 3),
                        assigned="owner",
                        closed="Venta",
                        sender=identity,
                    )
                )
        item.status = BroadcastStatus.COMPLETED
        item.scheduled_at = item.started_at = at  # sent now, as "Send now" would have
        item.finished_at = at + timedelta(minutes=2)
        session.flush()
    return tuple(replies)


def _past_scripts(rng: random.Random, assignees: list[str]) -> tuple[Script, ...]:
    """PAST_CONVERSATIONS closed conversations from PAST_EXCHANGES, spread over the past 4 to 28 days
    (oldest first), each answered by one of `assignees` ("owner", "manager", "agent")."""
    scripts = []
    for _ in range(PAST_CONVERSATIONS):
        question, answer, thanks, category = rng.choice(PAST_EXCHANGES)
        scripts.append(
            Script(
                rng.choice(("webchat", "whatsapp", "whatsapp", "telegram", "twilio")),
                rng.choice(PAST_NAMES),
                ((CUSTOMER, question), (AGENT, answer), (CUSTOMER, thanks)),
                hours_ago=rng.uniform(4 * 24, 28 * 24),
                assigned=rng.choice(assignees),
                closed=category,
            )
        )
    return tuple(sorted(scripts, key=lambda script: -script.hours_ago))


def _seed_conversation(
    session: Session,
    actor: Actor,
    people: dict[str, int],
    channel: Channel,
    script: Script,
    number: int,
    categories: dict[str, int],
    rng: random.Random,
    now: datetime,
    prefix: str = "demo",
    opened: Callable[[Session, Conversation], object] | None = None,
) -> None:
    sender = script.sender or _sender_id(channel, number, rng)
    first_name, _, last_name = script.name.partition(" ")
    at = now - timedelta(hours=script.hours_ago)
    conversation: Conversation | None = None
    for line, (who, text) in enumerate(script.lines):
        if line:
            at += timedelta(minutes=rng.randint(1, 9), seconds=rng.randint(0, 59))
        with _clock_at(at):
            if who == CUSTOMER:
                inbound = InboundMessage(
                    sender_id=sender,
                    provider_message_id=f"{prefix}-{number}-{line}",
                    text=text,
                    display_name=script.name,
                    first_name=first_name,
                    last_name=last_name or None,
                    phone=f"+{sender}"
                    if script.channel == "whatsapp"
                    else sender
                    if script.channel == "twilio"
                    else None,
                )
                received = do_receive_many(session, [(channel, inbound)])[0]
                assert received.conversation is not None  # the demo's contacts are never blocked
                first = conversation is None
                conversation = received.conversation
                if at >= now - timedelta(hours=BOT_SINCE_HOURS):
                    _bot_turn(session, conversation, received.message, at)
                if first and opened is not None:
                    opened(session, conversation)
            elif conversation is not None:
                _past_reply(
                    session,
                    conversation,
                    channel,
                    script,
                    line,
                    f"{prefix}-{number}",
                    people[script.assigned or "owner"],
                    at,
                )
            else:
                continue
            if line == 0 and script.assigned:
                assignee = people[script.assigned]
                do_assign(session, actor, conversation, user_id=assignee, team_id=None)
    if conversation is None:
        return
    if script.note:
        at += timedelta(minutes=rng.randint(2, 15))
        with _clock_at(at):
            do_comment(session, actor, conversation, script.note, [people["agent"]])
    if script.closed:
        at += timedelta(minutes=rng.randint(3, 40))
        with _clock_at(at):
            do_close(session, actor, conversation, category_id=categories[script.closed], summary=None)
    session.flush()


def _bot_turn(session: Session, conversation: Conversation, message: Message, at: datetime) -> None:
    """The bot's turn on a customer's message, as its consumer takes it when the message arrives
    (nothing where the bot is off, or the conversation is a person's or paused). Its reply is
    recorded as read by the visitor, as the team's past replies are."""
    turn = bot.respond(session, conversation.workspace_id, message.id)
    if turn is None or turn.reply_message_id is None:
        return
    reply = session.get_one(Message, turn.reply_message_id)
    reply.status, reply.status_at, reply.attempts = DeliveryStatus.READ, at + timedelta(minutes=1), 1
    session.flush()


def _clock_at(at: datetime) -> AbstractContextManager[None]:
    """The application's clock set to `at` (in the past) for what is written inside the block."""
    return travel(at - utcnow())


def _past_reply(
    session: Session,
    conversation: Conversation,
    channel: Channel,
    script: Script,
    line: int,
    key: str,
    sender_user_id: int,
    at: datetime,
) -> Message:
    """A reply the team sent before the demo began: delivered, and read unless it is the last line.
    Recorded in the event log as a reply, so the reports time it."""
    message = Message(
        workspace_id=conversation.workspace_id,
        conversation_id=conversation.id,
        contact_id=conversation.contact_id,
        channel_id=channel.id,
        direction=Direction.OUTGOING,
        sender_kind=SenderKind.USER,
        sender_user_id=sender_user_id,
        type=MessageType.TEXT,
        text=script.lines[line][1],
        attachments=[],
        payload={},
        provider_message_id=f"{key}-out-{line}",
        # SMS has no read receipts.
        status=DeliveryStatus.READ
        if line < len(script.lines) - 1 and channel.type != "twilio"
        else DeliveryStatus.DELIVERED,
        status_at=at + timedelta(minutes=2),
        attempts=1,
        created_at=at,
    )
    session.add(message)
    session.flush()
    # As a reply sent through the inbox leaves the conversation: the dashboard's "waiting for a first
    # response" and auto-close read last_agent_message_at.
    conversation.last_message_at = conversation.last_agent_message_at = at
    conversation.last_message_preview = message.text[:200] if message.text else None
    contact = session.get(Contact, conversation.contact_id)
    if contact is not None:
        contact.last_outgoing_at = at
    customer_message_created(session, conversation, message)
    return message


def _sender_id(channel: Channel, number: int, rng: random.Random) -> str:
    """The customer's id on the channel: a phone number for WhatsApp (without +) and SMS (E.164), a chat
    id for Telegram, and a visitor of this web chat ("<channel id>:v:...", as the widget names them)."""
    if channel.type == "whatsapp":
        return f"52155{rng.randrange(10_000_000, 100_000_000)}"
    if channel.type == "telegram":
        return str(rng.randrange(100_000_000, 2_000_000_000))
    if channel.type == "twilio":
        # E.164 has no mobile "1" after Mexico's +52 (WhatsApp's ids keep it): a number SMS can reach.
        return f"+5255{rng.randrange(10_000_000, 100_000_000)}"
    return f"{channel.id}:v:demo-visitor-{number}"
