"""The away message: a customer who writes while the workspace (or the team the conversation is
assigned to) is closed is told so, at most once per conversation per closed period.

It runs as a received hook (`consumers.RECEIVED_HOOKS`), inside the transaction that writes the
customer's messages: the away message is written and queued through the outbox exactly like any
other outgoing message, and the record that it was sent (`away_message_sends`, unique per
conversation and closed period) commits with it or not at all. A closed period is named by the
instant the hours open again (`hours.next_opening`), or "never"; two messages in one closed period
find the row of the first, and a message after the hours opened and closed again is a new period.
Two workers writing messages of one conversation at once meet at that unique key: one sends.

The message is written with an Actor of kind "workflow" (sender kind `workflow`, payload
`automation: "away_message"`), so it counts as automated: it does not reset auto-close and is never
sent with a human-agent tag. The workflow engine is to offer the same behaviour as a template; this
page stays its simple switch.

When the hook finds away messages off in every workspace of a batch it costs one query.
"""

from collections.abc import Sequence
from datetime import datetime

import structlog
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tertulia.channels.models import Channel
from tertulia.contacts.models import Contact
from tertulia.conversations import service, variables
from tertulia.conversations.models import AwayMessage, AwayMessageSend, Conversation, ConversationStatus, Message
from tertulia.kit.clock import utcnow
from tertulia.kit.errors import DomainError, ValidationFailed
from tertulia.users.permissions import Actor, Permission
from tertulia.workspaces.hours import BusinessHours, is_open, next_opening
from tertulia.workspaces.service import hours_at

log = structlog.get_logger("tertulia.conversations.away")

MAX_AWAY_TEXT = 2000
NEEDS_TEXT = "write the message to turn it on"
TOO_LONG = "must be at most 2000 characters"
AUTOMATION = "away_message"


def away_settings(session: Session, workspace_id: int) -> AwayMessage:
    """The workspace's away message (off with no text until one is saved)."""
    row = session.get(AwayMessage, workspace_id)
    return row or AwayMessage(workspace_id=workspace_id, enabled=False, text="")


def do_set_away_message(session: Session, actor: Actor, *, enabled: bool, text: str) -> AwayMessage:
    actor.require(Permission.MANAGE_WORKSPACE)
    body = text.strip()
    if len(body) > MAX_AWAY_TEXT:
        raise ValidationFailed.field("text", TOO_LONG)
    if enabled and not body:
        raise ValidationFailed.field("text", NEEDS_TEXT)
    variables.parse(body, service.custom_keys(session, actor.workspace_id), "text")
    row = session.get(AwayMessage, actor.workspace_id, with_for_update=True)
    if row is None:
        row = AwayMessage(workspace_id=actor.workspace_id)
        session.add(row)
    row.enabled, row.text, row.updated_at = enabled, body, utcnow()
    session.flush()
    return row


# Built once, its ids bound per call: it is asked for every batch of customers' messages.
_ENABLED = select(AwayMessage).where(
    AwayMessage.workspace_id.in_(bindparam("workspace_ids", expanding=True)), AwayMessage.enabled.is_(True)
)


def send_away_messages(session: Session, messages: Sequence[Message]) -> None:
    """The received hook: for each conversation of the batch whose hours are closed at its latest
    message, send the away message unless this closed period already had one."""
    workspace_ids = sorted({m.workspace_id for m in messages})
    enabled = {row.workspace_id: row for row in session.scalars(_ENABLED, {"workspace_ids": workspace_ids})}
    if not enabled:
        return
    latest: dict[int, Message] = {}
    for message in messages:
        if message.workspace_id in enabled:
            latest[message.conversation_id] = message
    schedules: dict[tuple[int, int | None], BusinessHours] = {}
    for conversation_id, message in latest.items():
        conversation = session.get(Conversation, conversation_id)
        if conversation is None or conversation.status != ConversationStatus.OPEN or message.channel_id is None:
            continue
        key = (conversation.workspace_id, conversation.team_id)
        at = message.created_at
        if key not in schedules:
            schedules[key] = hours_at(session, conversation.workspace_id, at, conversation.team_id)
        if is_open(schedules[key], at):
            continue
        _send_once(session, enabled[conversation.workspace_id], conversation, message, _period(schedules[key], at))


def _period(hours: BusinessHours, at: datetime) -> str:
    opening = next_opening(hours, at)
    return opening.isoformat() if opening is not None else "never"


def _send_once(
    session: Session, settings: AwayMessage, conversation: Conversation, message: Message, period: str
) -> None:
    """Claims the (conversation, period) key with an insert that skips a key already there (no
    savepoint: releasing or rolling one back would run or drop the whole transaction's after-commit
    work), then sends. A message the channel refuses (checked before anything is written) gives the
    claim back, so a later message of the period may try again."""
    insert = (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(AwayMessageSend)
    claimed = session.scalar(
        insert.values(
            workspace_id=conversation.workspace_id, conversation_id=conversation.id, period=period, created_at=utcnow()
        )
        .on_conflict_do_nothing(index_elements=["conversation_id", "period"])
        .returning(AwayMessageSend.id)
    )
    if claimed is None:
        return  # this closed period already had its away message
    contact = session.get(Contact, conversation.contact_id)
    channel = session.get(Channel, message.channel_id)
    try:
        if contact is None or channel is None:
            raise ValidationFailed.field("channel_id", "the conversation has no channel")
        sent = service.do_send(
            session,
            Actor.system(conversation.workspace_id, "workflow"),
            contact,
            channel,
            text=settings.text,
            payload={"automation": AUTOMATION},
        )
    except DomainError as exc:
        session.execute(delete(AwayMessageSend).where(AwayMessageSend.id == claimed))
        log.info("away_message_not_sent", conversation_id=conversation.id, reason=exc.message)
        return
    session.execute(update(AwayMessageSend).where(AwayMessageSend.id == claimed).values(message_id=sent.id))
