"""Customers' messages in: identity -> contact -> open conversation -> message, in batches.

Every inbound path ends here: the widget's socket and endpoint through the group-commit writer
(receiver.py), provider callbacks through their queued task (ingress/callbacks.py). Which contact a
sender is belongs to contacts (contacts/identities.py); this module owns the conversation side.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus, InboundEdit, InboundMessage, MessageType
from tertulia.contacts import identities
from tertulia.contacts.models import Contact
from tertulia.contacts.service import do_record_blocked_message, record
from tertulia.conversations import email_threads, events
from tertulia.conversations import repository as repo
from tertulia.conversations.events import InboxEvent
from tertulia.conversations.hooks import received_hooks
from tertulia.conversations.models import Conversation, Direction, Message, OpeningSource, SenderKind
from tertulia.conversations.schemas import conversation_dict, message_dict
from tertulia.conversations.service import (
    MAX_TEXT,
    customer_message_created,
    open_conversation_for,
    preview_of,
    record_opened,
)
from tertulia.kit.clock import utcnow
from tertulia.kit.errors import ValidationFailed
from tertulia.users.permissions import Actor


@dataclass
class Received:
    """`blocked`: the contact is blocked, so nothing was put into the inbox (no conversation, and
    `message` is a transient row that was never written); contacts.service.do_record_blocked_message
    recorded what remains of it."""

    message: Message
    conversation: Conversation | None
    contact: Contact
    duplicate: bool
    blocked: bool = False


def check_inbound(inbound: InboundMessage) -> None:
    if not inbound.sender_id:
        raise ValidationFailed.field("sender_id", "is required")
    if inbound.text is not None and len(inbound.text) > MAX_TEXT:
        raise ValidationFailed.field("text", f"must be at most {MAX_TEXT} characters")
    if inbound.type == MessageType.TEXT and not (inbound.text or "").strip():
        raise ValidationFailed.field("text", "must not be empty")


def do_receive(session: Session, channel: Channel, inbound: InboundMessage) -> Received:
    """Append one customer's message; see `do_receive_many`."""
    return do_receive_many(session, [(channel, inbound)])[0]


def do_receive_many(session: Session, items: Sequence[tuple[Channel, InboundMessage]]) -> list[Received]:
    """Append customers' messages: identity -> contact (created if new) -> open conversation -> message.

    Deduplicated by (channel, provider message id): a provider retrying a webhook, or a widget
    resending after a timeout, gets the original message back with duplicate=True (also when both
    copies are in this batch). A blocked contact's message is not written: see `Received.blocked`.
    For senders already known (the common case) a batch costs a fixed number of statements whatever its
    size: one lookup each for stored duplicates, contacts and open conversations (locked in id order, so
    concurrent batches cannot deadlock on them), one multi-row INSERT, and one UPDATE round per table.
    """
    for _, inbound in items:
        check_inbound(inbound)
    results: list[Received | None] = [None] * len(items)
    keys = [
        (channel.id, inbound.provider_message_id) if inbound.provider_message_id else None for channel, inbound in items
    ]
    stored = {
        (m.channel_id, m.provider_message_id): m
        for m in repo.messages_by_provider_ids(session, [k for k in keys if k is not None])
    }
    for index, key in enumerate(keys):
        if key in stored:
            results[index] = _duplicate(session, stored[key])
    first_with_key: dict[tuple[int, str], int] = {}
    repeats: dict[int, int] = {}
    to_write: list[int] = []
    for index, key in enumerate(keys):
        if results[index] is not None:
            continue
        if key is not None and key in first_with_key:
            repeats[index] = first_with_key[key]
            continue
        if key is not None:
            first_with_key[key] = index
        to_write.append(index)

    resolved = _contacts_for(session, [items[i] for i in to_write])
    for index, contact in zip(to_write, resolved, strict=True):
        if contact.blocked:
            results[index] = _blocked(session, *items[index], contact)
    to_write = [index for index, contact in zip(to_write, resolved, strict=True) if not contact.blocked]
    contacts = [contact for contact in resolved if not contact.blocked]
    conversations = repo.open_conversations(session, {c.id: c.workspace_id for c in contacts}.items(), lock=True)
    opened: set[int] = set()
    rows: list[dict[str, Any]] = []
    for index, contact in zip(to_write, contacts, strict=True):
        channel, inbound = items[index]
        conversation = conversations.get(contact.id)
        if conversation is None:
            conversation, created = open_conversation_for(session, contact, channel.id, OpeningSource.CONTACT)
            conversations[contact.id] = conversation
            if created:
                opened.add(conversation.id)
        rows.append(
            {
                "workspace_id": channel.workspace_id,
                "conversation_id": conversation.id,
                "contact_id": contact.id,
                "channel_id": channel.id,
                "direction": Direction.INCOMING,
                "sender_kind": SenderKind.CONTACT,
                "type": inbound.type,
                "text": inbound.text,
                "attachments": inbound.attachments,
                "payload": inbound.payload,
                "provider_message_id": inbound.provider_message_id,
                "created_at": utcnow(),
            }
        )
    # A concurrent delivery of the same provider message (a webhook retried while the first is
    # still being written) makes its row come back missing, not the statement fail.
    inserted = repo.insert_messages_unless_known(session, rows)
    written: list[tuple[int, Message]] = []
    for index, row, new_message in zip(to_write, rows, inserted, strict=True):
        if new_message is None:
            channel, inbound = items[index]
            assert inbound.provider_message_id is not None  # only a provider id can conflict
            existing = repo.message_by_provider_id(session, channel.id, inbound.provider_message_id)
            if existing is None:
                raise RuntimeError("a conflicting message vanished")
            results[index] = _duplicate(session, existing)
            continue
        conversation = conversations[row["contact_id"]]
        sender = session.get(Contact, row["contact_id"])  # from the identity map
        assert sender is not None
        conversation.last_message_at = new_message.created_at
        conversation.channel_id = new_message.channel_id
        conversation.last_message_preview = preview_of(new_message.text, new_message.type)
        if items[index][1].opens_window:
            conversation.last_incoming_at = new_message.created_at
            sender.last_incoming_at = new_message.created_at
        results[index] = Received(message=new_message, conversation=conversation, contact=sender, duplicate=False)
        written.append((index, new_message))
    session.flush()
    for index, message in written:
        received = results[index]
        assert received is not None
        conversation = received.conversation
        assert conversation is not None
        if conversation.id in opened:
            opened.discard(conversation.id)
            record_opened(session, Actor.system(conversation.workspace_id, "channel"), conversation)
        customer_message_created(session, conversation, message, sender_external_id=items[index][1].sender_id)
        referral = items[index][1].payload.get("referral")
        if isinstance(referral, dict):
            # How the customer came (a Telegram /start deep link, an ad): kept in the contact's history.
            actor = Actor.system(conversation.workspace_id, "channel")
            record(session, actor, message.contact_id, "referral", "referral", None, referral)
    if written:
        for hook in received_hooks():
            hook(session, [message for _, message in written])
    for index, original in repeats.items():
        first = results[original]
        assert first is not None
        results[index] = Received(
            first.message, first.conversation, first.contact, duplicate=not first.blocked, blocked=first.blocked
        )
    return [r for r in results if r is not None]


def _blocked(session: Session, channel: Channel, inbound: InboundMessage, contact: Contact) -> Received:
    do_record_blocked_message(session, contact, channel.id, inbound.provider_message_id, inbound.type.value)
    transient = Message(
        workspace_id=channel.workspace_id,
        contact_id=contact.id,
        channel_id=channel.id,
        direction=Direction.INCOMING,
        sender_kind=SenderKind.CONTACT,
        type=inbound.type,
        provider_message_id=inbound.provider_message_id,
        created_at=utcnow(),
    )
    return Received(message=transient, conversation=None, contact=contact, duplicate=False, blocked=True)


def _contacts_for(session: Session, items: Sequence[tuple[Channel, InboundMessage]]) -> list[Contact]:
    """The contact behind each sender, in order (contacts/identities.py decides who is who); mail that
    answers a thread we know goes to that thread's contact (conversations/email_threads.py)."""
    threaded = email_threads.thread_contacts(session, items)
    rest = [index for index, contact_id in enumerate(threaded) if contact_id is None]
    resolved = identities.resolve_senders(
        session, [(items[i][0].workspace_id, items[i][0].type, _sender(items[i][1])) for i in rest]
    )
    by_index = dict(zip(rest, resolved, strict=True))
    contacts: list[Contact] = []
    for index, contact_id in enumerate(threaded):
        if contact_id is None:
            contacts.append(by_index[index])
            continue
        contact = session.get(Contact, contact_id)
        assert contact is not None
        contacts.append(contact)
    return contacts


def _sender(inbound: InboundMessage) -> identities.Sender:
    return identities.Sender(
        external_id=inbound.sender_id,
        display_name=inbound.display_name,
        first_name=inbound.first_name,
        last_name=inbound.last_name,
        email=inbound.email,
        phone=inbound.phone,
        aliases=inbound.sender_aliases,
        avatar_url=inbound.avatar_url,
    )


def _duplicate(session: Session, message: Message) -> Received:
    conversation = session.get(Conversation, message.conversation_id)
    contact = session.get(Contact, message.contact_id)
    assert conversation is not None
    assert contact is not None
    return Received(message=message, conversation=conversation, contact=contact, duplicate=True)


MAX_EDITS_KEPT = 20


def do_apply_edits(session: Session, channel: Channel, edits: Sequence[InboundEdit]) -> None:
    """The customer edited messages they had sent: each original shows the new text, marked edited,
    with the earlier versions kept in its payload ("edits": [{"text", "until"}]); no new message.

    The same edit delivered twice changes nothing (its time is not newer than the one applied). An
    edit of a message we never stored (sent before the channel was connected) is kept as a message
    of its own, marked edited, rather than lost.
    """
    for edit in edits:
        edited_at = edit.edited_at.isoformat()
        message = repo.message_by_provider_id(session, channel.id, edit.provider_message_id)
        if message is None:
            text = (edit.text or "").strip()
            kept = InboundMessage(
                sender_id=edit.sender_id,
                provider_message_id=edit.provider_message_id,
                type=MessageType.TEXT if text else MessageType.UNSUPPORTED,
                text=edit.text if text else None,
                payload={"edited_at": edited_at, **({} if text else {"unsupported": "edit"})},
            )
            do_receive_many(session, [(channel, kept)])
            continue
        payload = dict(message.payload or {})
        if message.direction != Direction.INCOMING or str(payload.get("edited_at") or "") >= edited_at:
            continue
        history = [*(payload.get("edits") or []), {"text": message.text, "until": edited_at}]
        payload.update(edited_at=edited_at, edits=history[-MAX_EDITS_KEPT:])
        message.payload = payload
        message.text = edit.text
        session.flush()
        conversation = session.get(Conversation, message.conversation_id)
        assert conversation is not None
        events.emit(
            session,
            events.make_event(
                InboxEvent.MESSAGE_UPDATED,
                conversation,
                {"message": message_dict(message), "conversation": conversation_dict(conversation)},
            ),
        )


def do_record_echoes(session: Session, channel: Channel, echoes: Sequence[InboundMessage]) -> int:
    """Messages the business sent to customers from elsewhere (Messenger's echoes of the Page inbox):
    stored as outgoing and sent, never as the customer's, and without touching the reply window.
    Deduplicated by provider id against everything the channel stored, our own sends included;
    returns how many were new."""
    keys = [(channel.id, echo.provider_message_id) for echo in echoes if echo.provider_message_id]
    known = {m.provider_message_id for m in repo.messages_by_provider_ids(session, keys)}
    written = 0
    for echo in echoes:
        if not echo.provider_message_id or echo.provider_message_id in known or not echo.sender_id:
            continue
        known.add(echo.provider_message_id)
        contact = identities.resolve_sender(session, channel.workspace_id, channel.type, _sender(echo))
        conversation, created = open_conversation_for(session, contact, channel.id, OpeningSource.CONTACT)
        now = utcnow()
        message = Message(
            workspace_id=channel.workspace_id,
            conversation_id=conversation.id,
            contact_id=contact.id,
            channel_id=channel.id,
            direction=Direction.OUTGOING,
            sender_kind=SenderKind.SYSTEM,
            type=echo.type,
            text=echo.text,
            attachments=echo.attachments,
            payload={**echo.payload, "recipient_id": echo.sender_id},
            provider_message_id=echo.provider_message_id,
            status=DeliveryStatus.SENT,
            status_at=now,
            attempts=0,
            created_at=now,
        )
        session.add(message)
        session.flush()
        conversation.last_message_at = now
        conversation.last_message_preview = preview_of(echo.text, echo.type)
        contact.last_outgoing_at = now
        session.flush()
        if created:
            record_opened(session, Actor.system(conversation.workspace_id, "channel"), conversation)
        customer_message_created(session, conversation, message)
        written += 1
    return written
