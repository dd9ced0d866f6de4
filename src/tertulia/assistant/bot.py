"""The bot: an event-log consumer that answers customers' messages from the knowledge, or hands the
conversation to people.

For each message.received it looks at the conversation as it is now (locked), and acts only when
the conversation is open, has no person assigned (a team alone is fine), the bot is not paused in
it, and the channel's bot is on (and, with the "outside" hours option, the business hours are
closed at the message's time). It then asks the same function as POST /api/v1/assistant/answer:

With a language model set (Settings > Assistant > Language model), the model writes the answer
from the retrieved entries (`assistant.grounded`): that call is made in a read transaction before
the turn's write transaction (`prepare`), so no lock is held while the model writes, and its
outcome is handed to `respond`. An ungrounded answer hands off; a failure of the model falls back
to retrieval's answer, never to silence.

- a confident answer, with answers left (`max_bot_answers` per conversation), is sent through the
  outbox as a message of sender kind "bot" (payload `automation: "assistant"`, the entry and the
  confidence);
- a hand-off keyword, an answer below the channel's threshold, or the maximum reached: the
  hand-off message is sent, the bot is paused in the conversation, and an internal note tells
  the team what the customer asked and what the bot found. The conversation stays unassigned,
  in the people's queue.

A message the bot gets to more than STALE_AFTER after it arrived is left alone (the first run
reads the log from its start; a backlog after an outage is not answered late).

Idempotent: everything happens in one transaction that first claims the message's `BotTurn` row
(unique per incoming message, inserted with ON CONFLICT DO NOTHING). A redelivered event finds the
claim and sends nothing; a crash before the commit leaves neither the claim nor the message.

With `keep_paused` on the channel, a pause outlives the conversation: the contact's next
conversation starts paused unless the previous one was closed with "turn the bot back on"
(`conversations.service.do_close(resume_bot=True)`).
"""

from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tertulia.assistant import bot_settings, grounded, model_settings, retrieval, semantic
from tertulia.assistant.models import BotTurn
from tertulia.channels.models import Channel
from tertulia.contacts.models import Contact
from tertulia.conversations import repository as conversations_repo
from tertulia.conversations import service as inbox
from tertulia.conversations.models import Conversation, ConversationStatus, Direction, Message
from tertulia.events.dispatcher import Consumer
from tertulia.events.models import EventRecord
from tertulia.events.types import EventType
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.errors import DomainError
from tertulia.kit.queue import task_database
from tertulia.users.permissions import Actor
from tertulia.workspaces.hours import is_open
from tertulia.workspaces.service import hours_at

log = structlog.get_logger("tertulia.assistant.bot")

CONSUMER_NAME = "assistant-bot"
AUTOMATION = "assistant"
ANSWERED = "answered"
HANDOFF = "handoff"
# A message older than this when the bot gets to it is left to people: the consumer starts from the
# beginning of the log when first deployed, and catches up after an outage, and an answer that late
# (to a question the customer may have moved on from) does more harm than none.
STALE_AFTER = timedelta(minutes=30)


@dataclass(frozen=True)
class Decision:
    outcome: str  # ANSWERED or HANDOFF
    reason: str  # "matched", "keyword", "max_answers", or the answer's hand-off reason ("ungrounded"...)
    found: retrieval.Answer | None
    source: str = grounded.RETRIEVAL  # who wrote the answer: grounded.MODEL or grounded.RETRIEVAL


def decide(
    session: Session,
    workspace_id: int,
    text: str,
    settings: bot_settings.BotValues,
    answered: int,
    draft: grounded.Outcome | None = None,
) -> Decision:
    """What the bot does with a customer's message, given how many answers it already gave here;
    `draft` is the model's outcome prepared for this message (without one: retrieval alone)."""
    if bot_settings.asks_for_a_person(text, settings.handoff_keywords):
        return Decision(HANDOFF, "keyword", None)
    if answered >= settings.max_bot_answers:
        return Decision(HANDOFF, "max_answers", None)
    if draft is not None:
        found, source = draft.answer, draft.source
    else:
        found = retrieval.answer(
            session, workspace_id, text[: retrieval.MAX_QUESTION], None, settings.applied_threshold
        )
        source = grounded.RETRIEVAL
    if found.handoff or not found.answer:
        return Decision(HANDOFF, found.reason, found, source)
    return Decision(ANSWERED, "matched", found, source)


def _claim(session: Session, conversation: Conversation, message_id: int, decision: Decision) -> int | None:
    """The turn's row, or None when this message already had its turn. No savepoint: rolling one
    back would drop the transaction's after-commit work (the same reasoning as the away message)."""
    insert = (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(BotTurn)
    found = decision.found
    return session.scalar(
        insert.values(
            workspace_id=conversation.workspace_id,
            conversation_id=conversation.id,
            message_id=message_id,
            outcome=decision.outcome,
            reason=decision.reason,
            entry_id=found.entry_id if found else None,
            confidence=found.confidence if found else 0.0,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["message_id"])
        .returning(BotTurn.id)
    )


def answers_given(session: Session, conversation_id: int) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(BotTurn)
            .where(BotTurn.conversation_id == conversation_id, BotTurn.outcome == ANSWERED)
        )
        or 0
    )


def _pause_carries_over(session: Session, conversation: Conversation) -> bool:
    """Whether the contact's previous conversation ended with the bot paused (only asked of a
    conversation the bot has not acted in yet)."""
    if session.scalar(select(BotTurn.id).where(BotTurn.conversation_id == conversation.id).limit(1)) is not None:
        return False
    if _resumed_here(session, conversation):
        return False  # a person or a workflow turned the bot on in this conversation: that decides
    previous = session.scalar(
        select(Conversation.bot_paused)
        .where(
            Conversation.workspace_id == conversation.workspace_id,
            Conversation.contact_id == conversation.contact_id,
            Conversation.id != conversation.id,
            Conversation.status == ConversationStatus.CLOSED,
        )
        .order_by(Conversation.closed_at.desc(), Conversation.id.desc())
        .limit(1)
    )
    return bool(previous)


def _resumed_here(session: Session, conversation: Conversation) -> bool:
    """Whether the bot was turned back on in this conversation (its "Bot resumed" system line)."""
    lines = session.scalars(
        select(Message.payload).where(
            Message.conversation_id == conversation.id,
            Message.direction == Direction.SYSTEM,
        )
    )
    return any((line or {}).get("event") == "bot" and (line or {}).get("paused") is False for line in lines)


def handoff_note(text: str, decision: Decision) -> str:
    asked = " ".join(text.split())[:500] or "(no text)"
    if decision.reason == "keyword":
        found = "The customer asked for a person."
    elif decision.reason == "max_answers":
        found = "The bot reached its maximum of answers in this conversation."
    elif decision.reason == "ungrounded":
        found = "The language model's answer was not grounded in the knowledge entries it was given."
    elif decision.found is not None and decision.found.entry_id is not None:
        found = (
            f"Best knowledge entry #{decision.found.entry_id}, confidence {decision.found.confidence:.2f} "
            "(below the threshold)."
        )
    else:
        found = "No knowledge entry matched."
    return f"Bot handed off. The customer asked: “{asked}”. {found}"


def _eligible_message(message: Message | None, workspace_id: int) -> bool:
    return not (
        message is None
        or message.workspace_id != workspace_id
        or message.direction != Direction.INCOMING
        or message.channel_id is None
        or message.created_at < utcnow() - STALE_AFTER
    )


def prepare(session: Session, workspace_id: int, message_id: int) -> grounded.Outcome | None:
    """The language model's outcome for a message the bot will probably answer (the checks of
    `respond`, without locks); None when the workspace has no model or the bot will not answer with
    one. Reads only: run it before the turn's write transaction, since the endpoint may take
    seconds, and hand the outcome to `respond`, which checks everything again."""
    message = session.get(Message, message_id)
    if not _eligible_message(message, workspace_id) or model_settings.active_model(session, workspace_id) is None:
        return None
    assert message is not None
    assert message.channel_id is not None
    settings = bot_settings.settings_for(session, workspace_id, message.channel_id)
    if not settings.enabled:
        return None
    conversation = conversations_repo.conversation(session, workspace_id, message.conversation_id)
    text = message.text or ""
    if (
        conversation is None
        or conversation.status != ConversationStatus.OPEN
        or conversation.assignee_id is not None
        or conversation.bot_paused
        or bot_settings.asks_for_a_person(text, settings.handoff_keywords)
        or answers_given(session, conversation.id) >= settings.max_bot_answers
    ):
        return None
    if settings.hours == "outside" and is_open(
        hours_at(session, workspace_id, message.created_at, conversation.team_id), message.created_at
    ):
        return None
    return grounded.compose(
        session,
        workspace_id,
        text[: retrieval.MAX_QUESTION],
        None,
        settings.applied_threshold,
        conversation_id=conversation.id,
    )


def respond(
    session: Session, workspace_id: int, message_id: int, draft: grounded.Outcome | None = None
) -> BotTurn | None:
    """The bot's turn for one incoming message, in the caller's transaction; None when it does
    nothing (not its conversation to answer, or the turn was already taken). `draft` is `prepare`'s
    outcome for the same message (`record_draft` records its tokens, whatever the bot then does)."""
    message = session.get(Message, message_id)
    if not _eligible_message(message, workspace_id):
        return None
    assert message is not None
    assert message.channel_id is not None
    # The channel's settings first: with the bot off (most channels) nothing is locked.
    settings = bot_settings.settings_for(session, workspace_id, message.channel_id)
    if not settings.enabled:
        return None
    conversation = conversations_repo.conversation(session, workspace_id, message.conversation_id, lock=True)
    if (
        conversation is None
        or conversation.status != ConversationStatus.OPEN
        or conversation.assignee_id is not None
        or conversation.bot_paused
    ):
        return None
    if settings.hours == "outside" and is_open(
        hours_at(session, workspace_id, message.created_at, conversation.team_id), message.created_at
    ):
        return None
    actor = Actor.system(workspace_id, "bot")
    if settings.keep_paused and _pause_carries_over(session, conversation):
        inbox.do_set_bot_paused(session, actor, conversation, True)
        return None
    text = message.text or ""
    decision = decide(session, workspace_id, text, settings, answers_given(session, conversation.id), draft)
    claimed = _claim(session, conversation, message.id, decision)
    if claimed is None:
        return None
    turn = session.get(BotTurn, claimed)
    assert turn is not None
    contact = session.get(Contact, conversation.contact_id)
    channel = session.get(Channel, message.channel_id)
    found = decision.found
    reply = found.answer if decision.outcome == ANSWERED and found is not None else settings.handoff_message
    try:
        if contact is None or channel is None:
            raise DomainError("The conversation has no contact or channel.")
        sent = inbox.do_send(
            session,
            actor,
            contact,
            channel,
            text=reply,
            payload={
                "automation": AUTOMATION,
                "bot": {
                    "outcome": decision.outcome,
                    "source": decision.source,
                    "entry_id": found.entry_id if found else None,
                    "confidence": round(found.confidence, 4) if found else None,
                },
            },
        )
        turn.reply_message_id = sent.id
    except DomainError as exc:
        # The channel refused (disconnected, ...): the turn stays taken so the event is not retried
        # forever; a hand-off still pauses and leaves its note below.
        log.info("bot_reply_not_sent", conversation_id=conversation.id, reason=exc.message)
    if decision.outcome == HANDOFF:
        inbox.do_set_bot_paused(session, actor, conversation, True)
        inbox.do_comment(session, actor, conversation, handoff_note(text, decision))
    session.flush()
    return turn


def _incoming(event: EventRecord) -> tuple[int, int | None] | None:
    """The customer's message the event tells of: (message id, channel id); None for any other."""
    message = (event.payload or {}).get("message") or {}
    message_id, channel_id = message.get("id"), message.get("channel_id")
    if not isinstance(message_id, int) or message.get("direction") != Direction.INCOMING.value:
        return None
    return message_id, channel_id if isinstance(channel_id, int) else None


def handle_event(db: Database, event: EventRecord) -> None:
    incoming = _incoming(event)
    if incoming is None:
        return
    message_id = incoming[0]
    with db.transaction(write=False) as session:
        draft = prepare(session, event.workspace_id, message_id)
    if draft is not None:
        with db.transaction() as session:
            record_draft(session, event.workspace_id, message_id, draft)
    with db.transaction() as session:
        respond(session, event.workspace_id, message_id, draft)


def record_draft(session: Session, workspace_id: int, message_id: int, draft: grounded.Outcome) -> None:
    """What `prepare`'s calls spent, against the message's conversation, in a short transaction of
    its own: settling the budgets' counters locks their rows, which the turn's longer transaction
    would hold for the workspace's other turns to wait on."""
    message = session.get(Message, message_id)
    if message is not None and message.workspace_id == workspace_id:
        grounded.record(session, workspace_id, draft, message.conversation_id)


def handle(event: EventRecord) -> None:
    handle_event(task_database(), event)


def handle_batch(events: list[EventRecord]) -> None:
    """A read of the log: the bot's settings of the messages' channels read once, in one short
    transaction, and only the messages on channels where the bot is on handled (each as
    `handle_event` does). The bot is off on most channels, and there a message then costs no
    transaction of its own. A failure raises, and the dispatcher feeds the read again one event at a
    time: a turn already taken is not taken again (`_claim`)."""
    db = task_database()
    channels = {
        (event.workspace_id, incoming[1])
        for event in events
        if (incoming := _incoming(event)) is not None and incoming[1] is not None
    }
    if not channels:
        return
    with db.transaction(write=False) as session:
        bot_on = {pair for pair in channels if bot_settings.settings_for(session, *pair).enabled}
    for event in events:
        incoming = _incoming(event)
        if incoming is not None and (event.workspace_id, incoming[1]) in bot_on:
            handle_event(db, event)


CONSUMER = Consumer(
    name=CONSUMER_NAME, handle=handle, types=frozenset({EventType.MESSAGE_RECEIVED}), handle_batch=handle_batch
)


def last_customer_text(session: Session, conversation_id: int) -> str:
    """The text of the customer's latest message in the conversation ("" when none has text)."""
    return (
        session.scalar(
            select(Message.text)
            .where(
                Message.conversation_id == conversation_id,
                Message.direction == Direction.INCOMING,
                Message.text.is_not(None),
            )
            .order_by(Message.id.desc())
            .limit(1)
        )
        or ""
    )


def suggested_replies(
    session: Session, actor: Actor, conversation_id: int
) -> tuple[str, list[retrieval.Answer], semantic.Lookup]:
    """The customer's last message and the top knowledge answers for it, for a person who may see
    the conversation (another's is not found), ranked as the bot's answer is (with the message's
    embedding when embeddings are on and ready); and the lookup, for the caller to record what the
    embedding spent (`grounded.record_lookup`, against the conversation)."""
    conversation = inbox.access_conversation(session, actor, conversation_id)
    text = last_customer_text(session, conversation.id)
    if not text.strip():
        return text, [], semantic.Lookup(None, semantic.OFF)
    looked = grounded.retrieve(session, actor.workspace_id, text[: retrieval.MAX_QUESTION], conversation.id)
    return text, retrieval.suggestions(session, actor.workspace_id, text, semantic=looked.semantic), looked
