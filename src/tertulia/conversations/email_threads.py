"""Email threads: which conversation a customer's mail belongs to, and what a reply must carry to
stay in the customer's thread (../shared/reference/channels.md §12).

Inbound, in order (`thread_contacts`, called by the inbound writer for mail):
1. the conversation our per-conversation reply address names (the adapter checked its tag and put
   its id in the payload as "conversation_id");
2. a message we know among the mail's In-Reply-To and References (ours are stored under the
   Message-ID we gave them, the customers' under theirs);
3. as a last resort, for an address we have never seen: a message of the last THREAD_DAYS on the
   same channel with the same normalised subject whose participants include the sender (someone
   copied on the thread answering from their own address).
The mail then goes to that conversation's contact (their open conversation, or a new one when the
thread was closed, as on every channel); otherwise the sender's address decides who it is, through
contacts/identities.py.

Outbound (`outbound_context`): the newest mail of the conversation on the channel gives the reply's
In-Reply-To, References and "Re:" subject; the conversation id gives its reply address; the agent's
signature comes from their profile.
"""

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.channels.adapters.email_parse import normalised_subject
from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.contacts import identities
from tertulia.conversations import repository as repo
from tertulia.conversations.models import Conversation, Direction, Message
from tertulia.kit.clock import utcnow
from tertulia.users.models import User

THREAD_DAYS = 30
SUBJECT_SCAN = 500  # recent messages of the channel looked at for a subject match
MAX_REFERENCES = 20


def _email(message: InboundMessage) -> dict[str, Any] | None:
    found = message.payload.get("email")
    return found if isinstance(found, dict) else None


def thread_contacts(session: Session, items: Sequence[tuple[Channel, InboundMessage]]) -> list[int | None]:
    """The contact each mail's thread belongs to (None: not a thread we know, or not mail)."""
    found: list[int | None] = [None] * len(items)
    by_conversation: dict[int, list[int]] = {}
    references: dict[tuple[int, str], list[int]] = {}
    for index, (channel, message) in enumerate(items):
        email = _email(message)
        if email is None:
            continue
        conversation_id = email.get("conversation_id")
        if isinstance(conversation_id, int):
            by_conversation.setdefault(conversation_id, []).append(index)
            continue
        for ref in [*(email.get("in_reply_to") or []), *reversed(email.get("references") or [])]:
            references.setdefault((channel.id, str(ref)), []).append(index)
    if by_conversation:
        rows = session.execute(
            select(Conversation.id, Conversation.contact_id, Conversation.workspace_id).where(
                Conversation.id.in_(list(by_conversation))
            )
        )
        for conversation_id, contact_id, workspace_id in rows:
            for index in by_conversation[conversation_id]:
                if items[index][0].workspace_id == workspace_id:
                    found[index] = int(contact_id)
    if references:
        known = {
            (m.channel_id, m.provider_message_id): m.contact_id
            for m in repo.messages_by_provider_ids(session, list(references))
        }
        for key, indexes in references.items():
            if key in known:
                for index in indexes:
                    found[index] = found[index] or int(known[key])
    for index, (channel, message) in enumerate(items):
        email = _email(message)
        # Only a reply ("Re: ...") can continue a thread by its subject.
        if found[index] is None and email is not None and email.get("reply") and email.get("subject_key"):
            found[index] = _by_subject(session, channel, message, str(email["subject_key"]))
    return found


def _by_subject(session: Session, channel: Channel, message: InboundMessage, subject_key: str) -> int | None:
    sender = message.sender_id
    if identities.contact_id_for(session, channel.workspace_id, channel.type, sender) is not None:
        return None  # a known address: the sender's own conversation is the thread
    since = utcnow() - timedelta(days=THREAD_DAYS)
    recent = session.scalars(
        select(Message)
        .where(Message.channel_id == channel.id, Message.created_at >= since)
        .order_by(Message.id.desc())
        .limit(SUBJECT_SCAN)
    )
    for candidate in recent:
        payload = candidate.payload or {}
        info = payload.get("email") if candidate.direction == Direction.INCOMING else payload.get("email_thread")
        if not isinstance(info, dict) or info.get("subject_key") != subject_key:
            continue
        if sender in (info.get("participants") or []):
            return int(candidate.contact_id)
    return None


def outbound_context(session: Session, channel: Channel, message: Message) -> dict[str, Any]:
    """What an outgoing mail needs to join the conversation's thread (stored on the message before it
    is sent, so every try sends the same headers)."""
    parent: dict[str, Any] = {}
    rows = session.scalars(
        select(Message)
        .where(
            Message.conversation_id == message.conversation_id,
            Message.channel_id == channel.id,
            Message.id < message.id,
            Message.direction.in_([Direction.INCOMING, Direction.OUTGOING]),
        )
        .order_by(Message.id.desc())
        .limit(20)
    )
    for row in rows:
        payload = row.payload or {}
        if row.direction == Direction.INCOMING and isinstance(payload.get("email"), dict):
            email = payload["email"]
            if email.get("message_id"):
                parent = {
                    "in_reply_to": email["message_id"],
                    "references": [*(email.get("references") or []), email["message_id"]],
                    "subject": email.get("subject") or "",
                    "participants": email.get("participants") or [],
                }
                break
        elif (
            row.direction == Direction.OUTGOING
            and row.provider_message_id
            and isinstance(payload.get("email_thread"), dict)
        ):
            thread = payload["email_thread"]
            parent = {
                "in_reply_to": row.provider_message_id,
                "references": [*(thread.get("references") or []), row.provider_message_id],
                "subject": thread.get("subject") or "",
                "participants": thread.get("participants") or [],
            }
            break
    options = (message.payload or {}).get("email")
    options = options if isinstance(options, dict) else {}
    subject = str(options.get("subject") or "").strip() or _re(str(parent.get("subject") or ""))
    recipient = str((message.payload or {}).get("recipient_id") or "")
    participants = sorted(
        {*(parent.get("participants") or []), recipient, *(options.get("cc") or []), *(options.get("bcc") or [])}
        - {"", (channel.config or {}).get("address")}
    )
    context: dict[str, Any] = {
        "conversation_id": message.conversation_id,
        "subject": subject,
        "subject_key": normalised_subject(subject),
        "participants": participants,
    }
    if parent.get("in_reply_to"):
        context["in_reply_to"] = parent["in_reply_to"]
        context["references"] = [str(r) for r in parent.get("references") or []][-MAX_REFERENCES:]
    if message.sender_user_id is not None:
        user = session.get(User, message.sender_user_id)
        if user is not None and (user.email_signature or "").strip():
            context["signature"] = user.email_signature
    return context


def _re(subject: str) -> str:
    if not subject:
        return ""
    return subject if subject[:3].lower() in {"re:", "aw:", "sv:"} else f"Re: {subject}"
