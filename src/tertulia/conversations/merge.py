"""Keeps conversations with their person when two contacts are merged (a contacts.hooks merge hook,
installed by `tertulia.consumers`)."""

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from tertulia.conversations.models import Conversation, ConversationStatus, Mention, Message, StoredFile


def move_conversations(session: Session, survivor_id: int, merged_id: int) -> None:
    """Both contacts may have an open conversation; the survivor keeps one (the rule is one open
    conversation per contact), so the merged one's messages move into it."""
    opened = {
        c.contact_id: c
        for c in session.scalars(
            select(Conversation)
            .where(
                Conversation.contact_id.in_([survivor_id, merged_id]),
                Conversation.status == ConversationStatus.OPEN,
            )
            .with_for_update()
        )
    }
    keep, drop = opened.get(survivor_id), opened.get(merged_id)
    if keep is not None and drop is not None:
        for model in (Message, Mention):
            session.execute(update(model).where(model.conversation_id == drop.id).values(conversation_id=keep.id))
        session.execute(update(StoredFile).where(StoredFile.conversation_id == drop.id).values(conversation_id=keep.id))
        if drop.last_message_at > keep.last_message_at:
            # The newer conversation's channel is where the person is talking now.
            keep.channel_id = drop.channel_id
            keep.last_message_preview = drop.last_message_preview
        keep.last_message_at = max(keep.last_message_at, drop.last_message_at)
        if drop.last_incoming_at is not None and (
            keep.last_incoming_at is None or drop.last_incoming_at > keep.last_incoming_at
        ):
            keep.last_incoming_at = drop.last_incoming_at
        if drop.last_agent_message_at is not None and (
            keep.last_agent_message_at is None or drop.last_agent_message_at > keep.last_agent_message_at
        ):
            keep.last_agent_message_at = drop.last_agent_message_at
        session.flush()
        session.execute(delete(Conversation).where(Conversation.id == drop.id))
    session.execute(update(Conversation).where(Conversation.contact_id == merged_id).values(contact_id=survivor_id))
    session.execute(update(Message).where(Message.contact_id == merged_id).values(contact_id=survivor_id))
    session.flush()
