"""The demo workspace's workflows: what a shop would have running, with the runs they made over the
inbox's last days, and drafts to simulate and publish.

Published: "Bienvenida y enrutamiento" (a conversation opened: a branch on who opened it; a
customer's message on a channel the bot does not answer is welcomed in business hours and tagged
and noted outside them, where the away message answers; a reply to a broadcast is tagged),
"Encuesta de satisfacción" (a conversation a person closed: the rating question, saved to the
"csat" field), "Clientes VIP" (the VIP tag: a note and an online agent) and the "Marcar como spam"
shortcut. Drafts: "Bienvenida y correo" and the agent routing template.

The history: they were published before the inbox's last days (`switch_on`, with the clock at that
time), and each conversation opened since went through the welcome as the trigger consumer takes it
when it opens (`opened`): the run is started and carried out in the seed's transaction with the
clock at that moment, and what it sent is recorded as delivered or read, as the team's past replies
are (demo_inbox.py), so nothing is left for the outbox to send: the demo reaches no provider.
The server starting must not run them again over that history: `skip_history` places the
workflows consumer after the seeded events, so only what happens in the demo starts runs.
"""

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus
from tertulia.contacts.models import Contact, FieldType
from tertulia.contacts.service import do_create_custom_field
from tertulia.conversations.models import Conversation, Message, SenderKind
from tertulia.conversations.schemas import conversation_dict
from tertulia.demo_inbox import SPAM_NAME, Automations
from tertulia.events import dispatcher
from tertulia.events.models import EventRecord
from tertulia.events.service import write_pending
from tertulia.events.types import EventType
from tertulia.kit.clock import utcnow
from tertulia.users.models import Membership
from tertulia.users.permissions import Actor
from tertulia.users.teams import do_create_team, do_set_team_members
from tertulia.workflows import runner, triggers
from tertulia.workflows.catalogue import do_create_from_template, template
from tertulia.workflows.models import Workflow, WorkflowStatus, WorkflowVersion
from tertulia.workflows.service import checked_version, do_create_workflow, do_publish
from tertulia.workflows.shortcuts import do_run_shortcut

WELCOME = "Bienvenida y enrutamiento"
VIP = "Clientes VIP"
REPLIED_TAG = "respondió-difusión"
AFTER_HOURS_TAG = "fuera-de-horario"


def _opened_by(source: str) -> dict[str, Any]:
    return {"category": "conversation", "field": "opening_source", "operator": "is", "value": source}


WELCOME_DEFINITION: dict[str, Any] = {
    "trigger": {"type": "conversation_opened", "config": {}},
    "steps": [
        {
            "id": "quien",
            "type": "branch",
            "config": {
                "branches": [
                    {
                        "name": "Respondió a una difusión",
                        "conditions": {"groups": [{"conditions": [_opened_by("broadcast_reply")]}]},
                        "next": "difusion",
                    },
                    {
                        # The web chat's bot greets its visitors itself.
                        "name": "Escribió el cliente",
                        "conditions": {
                            "groups": [
                                {
                                    "conditions": [
                                        _opened_by("contact"),
                                        {
                                            "category": "conversation",
                                            "field": "channel_type",
                                            "operator": "is_none_of",
                                            "value": ["webchat"],
                                        },
                                    ]
                                }
                            ]
                        },
                        "next": "horario",
                    },
                ]
            },
            # Opened by the team, the API or another workflow: they know why; nothing to add.
        },
        {"id": "difusion", "type": "add_tags", "config": {"tags": [REPLIED_TAG]}},
        {
            "id": "horario",
            "type": "date_time",
            "config": {"mode": "business_hours"},
            "next": "bienvenida",
            "on": {"failure": "fuera"},
        },
        {
            "id": "bienvenida",
            "type": "send_message",
            "config": {
                "text": '¡Hola {{contact.first_name | ""}}! Gracias por escribirnos; en un momento te atiende '
                "alguien del equipo."
            },
        },
        {"id": "fuera", "type": "add_tags", "config": {"tags": [AFTER_HOURS_TAG]}, "next": "nota"},
        {
            "id": "nota",
            "type": "add_comment",
            "config": {"text": "Llegó fuera de horario: atender en cuanto abramos."},
        },
    ],
}

WELCOME_AND_EMAIL_DEFINITION: dict[str, Any] = {
    "trigger": {"type": "conversation_opened", "config": {"sources": ["contact"]}},
    "steps": [
        {
            "id": "bienvenida",
            "type": "send_message",
            "config": {"text": '¡Hola {{contact.first_name | ""}}! Gracias por escribirnos.'},
            "next": "correo",
        },
        {
            "id": "correo",
            "type": "ask_question",
            "config": {
                "text": "¿Nos compartes tu correo para enviarte la cotización?",
                "kind": "email",
                "retry_text": "Ese correo no parece válido, ¿lo revisas?",
                "max_attempts": 2,
                "timeout": {"amount": 2, "unit": "hours"},
                "save_to": {"kind": "field", "name": "email"},
            },
            "next": "gracias",
            "on": {"invalid": "asignar", "timeout": "asignar"},
        },
        {
            "id": "gracias",
            "type": "send_message",
            "config": {"text": "¡Listo! En breve te escribe alguien del equipo."},
            "next": "asignar",
        },
        {"id": "asignar", "type": "assign", "config": {"to": "workspace", "strategy": "least_open"}},
    ],
}

VIP_DEFINITION: dict[str, Any] = {
    "trigger": {"type": "tag_added", "config": {"tags": ["VIP"]}},
    "steps": [
        {
            "id": "nota",
            "type": "add_comment",
            "config": {"text": "Cliente VIP: atender con prioridad."},
            "next": "asignar",
        },
        {
            "id": "asignar",
            "type": "assign",
            "config": {"to": "workspace", "strategy": "round_robin", "only_online": True},
        },
    ],
}


def automations(actor: Actor) -> Automations:
    """The workflows for demo_inbox.seed_inbox: switched on before its last days, run as they open."""
    return Automations(
        switch_on=lambda session: seed_workflows(session, actor),
        opened=run_opened,
    )


def seed_workflows(session: Session, actor: Actor) -> None:
    """What the templates need (two teams, a number field for the rating), the published workflows
    and the drafts. Drafts from templates have nothing left to fix: the teams are found by their
    names ("Ventas", "Soporte")."""
    members = sorted(
        session.scalars(
            select(Membership.user_id).where(Membership.workspace_id == actor.workspace_id, Membership.active)
        )
    )
    for name in ("Ventas", "Soporte"):
        team = do_create_team(session, actor, name)
        do_set_team_members(session, actor, team.id, members)
    do_create_custom_field(session, actor, "csat", "Satisfacción (1-5)", FieldType.NUMBER)
    do_publish(session, actor, do_create_workflow(session, actor, WELCOME, WELCOME_DEFINITION))
    do_publish(session, actor, do_create_from_template(session, actor, "csat_survey", language="es").workflow)
    do_publish(session, actor, do_create_workflow(session, actor, VIP, VIP_DEFINITION))
    do_publish(session, actor, do_create_from_template(session, actor, "mark_spam", language="es").workflow)
    # Drafts to simulate and publish (each would answer the same openings as the welcome).
    do_create_workflow(session, actor, "Bienvenida y correo", WELCOME_AND_EMAIL_DEFINITION)
    do_create_from_template(session, actor, "agent_routing", language="es")


def run_opened(session: Session, conversation: Conversation) -> None:
    """The runs the trigger consumer starts when `conversation` opens, carried out now (the clock is
    the moment it opened), and what they sent recorded as the channel took it."""
    source = conversation.opening_source.value if conversation.opening_source else None
    # The event as the consumer reads it (not written: the inbox wrote the real one).
    event = EventRecord(
        type=EventType.CONVERSATION_OPENED.value,
        workspace_id=conversation.workspace_id,
        conversation_id=conversation.id,
        contact_id=conversation.contact_id,
        actor="channel",
        payload={"conversation": conversation_dict(conversation)},
        created_at=utcnow(),
    )
    published = session.scalars(
        select(Workflow).where(
            Workflow.workspace_id == conversation.workspace_id, Workflow.status == WorkflowStatus.PUBLISHED
        )
    )
    for workflow in published:
        version = session.get_one(WorkflowVersion, workflow.published_version_id)
        if version.trigger_type != "conversation_opened":
            continue
        checked = checked_version(session, version)
        values = triggers.trigger_values(event, version.trigger_type, checked.trigger_config, source=source)
        if values is None:
            continue
        run = runner.start_run(
            session,
            workflow,
            version,
            conversation.contact_id,
            values,
            once_per_contact=checked.trigger.once_per_contact,
            conversation_id=conversation.id,
        )
        if run is not None:
            runner.turn(session, run.id, utcnow())
    _delivered(session, conversation)


def _delivered(session: Session, conversation: Conversation) -> None:
    """The workflows' messages in the conversation, still waiting for the outbox, as the channel
    took them: read, or delivered by SMS (no read receipts)."""
    waiting = session.execute(
        select(Message, Channel.type)
        .join(Channel, Channel.id == Message.channel_id)
        .where(
            Message.conversation_id == conversation.id,
            Message.sender_kind == SenderKind.WORKFLOW,
            Message.status == DeliveryStatus.PENDING,
        )
    ).all()
    for message, channel_type in waiting:
        message.status = DeliveryStatus.DELIVERED if channel_type == "twilio" else DeliveryStatus.READ
        message.status_at, message.attempts = message.created_at, 1
    session.flush()


def run_spam_shortcut(session: Session, actor: Actor) -> None:
    """The spam shortcut run once by hand on the spam conversation of the inbox (carried out by the
    server's queue as it starts, or at once where the queue is immediate)."""
    mark_spam = session.scalars(
        select(Workflow).where(
            Workflow.workspace_id == actor.workspace_id,
            Workflow.name == template("mark_spam").name["es"],
        )
    ).first()
    spam = session.scalars(
        select(Conversation)
        .join(Contact, Contact.id == Conversation.contact_id)
        .where(Conversation.workspace_id == actor.workspace_id, Contact.first_name == SPAM_NAME.split()[0])
    ).first()
    if mark_spam is not None and spam is not None:
        contact = session.get_one(Contact, spam.contact_id)
        do_run_shortcut(session, actor, mark_spam.id, contact, {}, conversation_id=spam.id)


def skip_history(session: Session) -> None:
    """The workflows consumer placed after every event the seed wrote: the history's runs were
    carried out as it was written; a server starting must not start them again."""
    write_pending(session)
    dispatcher.start_after_written(session, triggers.CONSUMER_NAME)
