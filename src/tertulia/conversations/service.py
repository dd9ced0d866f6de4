"""The inbox rules. Validate and check permissions first (check_*), then change data (do_*).

Every action on a conversation (assign, close, reopen, bot pause) writes a system message, a
contact activity row and an event, all through `_record_change`. Events and queue tasks are
dispatched only after commit. A service never commits.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tertulia.channels import reply_choices
from tertulia.channels.message_templates import check_template_message
from tertulia.channels.models import Channel
from tertulia.channels.protocol import ChannelRules, DeliveryStatus, MessageType, OutboundCheck, window_open
from tertulia.channels.registry import get_adapter
from tertulia.channels.service import list_channels, recipient_for
from tertulia.contacts import repository as contacts_repo
from tertulia.contacts import service as contacts_service
from tertulia.contacts.models import Contact
from tertulia.conversations import events, mentions, sms_consent, variables
from tertulia.conversations import repository as repo
from tertulia.conversations.events import InboxEvent
from tertulia.conversations.models import (
    HUMAN_SENDERS,
    ClosingCategory,
    ClosingSource,
    Conversation,
    ConversationRead,
    ConversationStatus,
    Direction,
    Mention,
    Message,
    OpeningSource,
    SenderKind,
    Snippet,
    StoredFile,
)
from tertulia.conversations.outbox import enqueue_send
from tertulia.conversations.schemas import conversation_dict, message_dict
from tertulia.events import service as event_log
from tertulia.events.types import EventType
from tertulia.kit.clock import utcnow
from tertulia.kit.db import on_commit, race_guard
from tertulia.kit.errors import Conflict, NotFound, PermissionDenied, ValidationFailed, found
from tertulia.kit.text import fold, tidy_name
from tertulia.users.models import Team, User
from tertulia.users.permissions import Actor, Permission
from tertulia.users.service import check_member_user
from tertulia.workspaces.service import get_workspace

MAX_TEXT = 10_000
# Meta's tag for a person's late answer (up to 7 days); never for automated messages.
HUMAN_AGENT_TAG = "HUMAN_AGENT"
MAX_SUMMARY = 2_000
SHORTCUT = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
PREVIEW_LENGTH = 200


# ----- visibility ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """What deciding "may this person see this conversation" needs, loaded once per request/socket."""

    user_id: int | None
    see_all: bool
    team_ids: frozenset[int]
    see_unassigned: bool = False

    def can_see(self, assignee_id: int | None, team_id: int | None) -> bool:
        if self.see_all:
            return True
        if assignee_id is None and team_id is None:
            return self.see_unassigned
        return (assignee_id is not None and assignee_id == self.user_id) or (
            team_id is not None and team_id in self.team_ids
        )

    def visibility_clause(self) -> ColumnElement[bool] | None:
        """The SQL form of `can_see`; None when everything is visible."""
        if self.see_all:
            return None
        return repo.visibility_clause(self.user_id, sorted(self.team_ids), unassigned=self.see_unassigned)

    def can_see_event(self, event: dict[str, Any]) -> bool:
        if event.get("type") == InboxEvent.MENTION_CREATED:
            return self.user_id in (event.get("mentioned_user_ids") or [])
        if self.can_see(event.get("assignee_id"), event.get("team_id")):
            return True
        # Only an assignment has a "before": whoever could see it then learns it moved away.
        return event.get("type") == InboxEvent.CONVERSATION_ASSIGNED and self.can_see(
            event.get("previous_assignee_id"), event.get("previous_team_id")
        )


def viewer_for(session: Session, actor: Actor) -> Viewer:
    see_all = actor.can(Permission.VIEW_ALL_CONVERSATIONS)
    teams = frozenset(repo.team_ids_of(session, actor.user_id)) if actor.user_id and not see_all else frozenset()
    return Viewer(
        user_id=actor.user_id,
        see_all=see_all,
        team_ids=teams,
        see_unassigned=not see_all and get_workspace(session, actor.workspace_id).agents_see_unassigned,
    )


def access_conversation(session: Session, actor: Actor, conversation_id: int, *, lock: bool = False) -> Conversation:
    """The one permission-checked fetch; a conversation the actor may not see is simply not found.
    A teammate @mentioned in one of its notes may open it too: that is what the mention asked for."""
    conversation = repo.conversation(session, actor.workspace_id, conversation_id, lock=lock)
    if conversation is None:
        raise NotFound(f"No conversation {conversation_id}.")
    if not viewer_for(session, actor).can_see(conversation.assignee_id, conversation.team_id) and not (
        actor.user_id is not None and repo.is_mentioned(session, conversation.id, actor.user_id)
    ):
        raise NotFound(f"No conversation {conversation_id}.")
    return conversation


# ----- helpers ------------------------------------------------------------------------------


def _sender_kind(actor: Actor) -> SenderKind:
    return {
        "user": SenderKind.USER,
        "api": SenderKind.API,
        "bot": SenderKind.BOT,
        "workflow": SenderKind.WORKFLOW,
        "broadcast": SenderKind.BROADCAST,
    }.get(actor.kind, SenderKind.SYSTEM)


def preview_of(text: str | None, message_type: MessageType) -> str:
    if text:
        return " ".join(text.split())[:PREVIEW_LENGTH]
    return f"[{message_type.value}]"


def open_conversation_for(
    session: Session, contact: Contact, channel_id: int | None, opened_by: OpeningSource
) -> tuple[Conversation, bool]:
    """The contact's open conversation, or a new one opened by `opened_by` (given here so that the
    insert carries it: record_opened would otherwise update the new row). Safe against a concurrent
    opener: the partial unique index rejects the second insert and we read the winner's row."""
    existing = repo.open_conversation(session, contact.workspace_id, contact.id, lock=True)
    if existing is not None:
        return existing, False
    now = utcnow()
    conversation = Conversation(
        workspace_id=contact.workspace_id,
        contact_id=contact.id,
        channel_id=channel_id,
        status=ConversationStatus.OPEN,
        opening_source=opened_by,
        bot_paused=False,
        opened_at=now,
        last_message_at=now,
    )
    try:
        with race_guard(session):
            session.add(conversation)
            session.flush()
    except IntegrityError:
        winner = repo.open_conversation(session, contact.workspace_id, contact.id, lock=True)
        if winner is None:
            raise
        return winner, False
    return conversation, True


def _internal_message(
    session: Session,
    actor: Actor,
    conversation: Conversation,
    direction: Direction,
    message_type: MessageType,
    text: str,
    payload: dict[str, Any],
) -> Message:
    """A line only the team sees (a system line or a note), never sent to the customer."""
    message = Message(
        workspace_id=conversation.workspace_id,
        conversation_id=conversation.id,
        contact_id=conversation.contact_id,
        channel_id=None,
        direction=direction,
        sender_kind=_sender_kind(actor),
        sender_user_id=actor.user_id,
        type=message_type,
        text=text,
        attachments=[],
        payload=payload,
        created_at=utcnow(),
    )
    session.add(message)
    session.flush()
    events.emit(
        session, events.make_event(InboxEvent.MESSAGE_CREATED, conversation, {"message": message_dict(message)})
    )
    return message


def _record_change(
    session: Session,
    actor: Actor,
    conversation: Conversation,
    text: str | None,
    action: str,
    event_type: InboxEvent,
    *,
    line: dict[str, Any] | None = None,
    field: str | None = "conversation",
    old: Any = None,
    new: Any = None,
    previous_assignee_id: int | None = None,
    previous_team_id: int | None = None,
) -> None:
    """What every change of a conversation leaves behind, in this order: a system line in the
    conversation (`text` with the payload `line`; none when `text` is None), a row in the contact's
    activity log (`action`, `field`, `old`, `new`) and the `event_type` event with the conversation."""
    if text is not None:
        _internal_message(session, actor, conversation, Direction.SYSTEM, MessageType.SYSTEM, text, line or {})
    contacts_service.record(session, actor, conversation.contact_id, action, field, old, new)
    events.emit(
        session,
        events.make_event(
            event_type,
            conversation,
            {"conversation": conversation_dict(conversation)},
            previous_assignee_id=previous_assignee_id,
            previous_team_id=previous_team_id,
        ),
        actor=actor,
    )


def record_opened(session: Session, actor: Actor, conversation: Conversation) -> None:
    source = OpeningSource.of_actor(actor.kind)
    if conversation.opening_source != source:
        conversation.opening_source = source
    _record_change(
        session,
        actor,
        conversation,
        None,
        "conversation_opened",
        InboxEvent.CONVERSATION_OPENED,
        field=None,
        new=conversation.id,
    )


def mark_opened_by(session: Session, conversation: Conversation, source: OpeningSource) -> None:
    """Who opened `conversation`, learnt after this transaction opened it (the broadcasts module
    finds that its first message was a reply to a broadcast): the column, and the conversation's
    shape in the `conversation.opened` event the transaction has not written yet, so the event and
    its webhook say the same as the API."""
    conversation.opening_source = source
    event_log.amend_pending(
        session,
        EventType.CONVERSATION_OPENED,
        conversation.id,
        lambda payload: {**payload, "conversation": {**payload["conversation"], "opening_source": source.value}},
    )


def customer_message_created(
    session: Session, conversation: Conversation, message: Message, *, sender_external_id: str | None = None
) -> None:
    """A message the customer sees too (incoming or outgoing): agents and the visitor's socket get it."""
    events.emit(
        session,
        events.make_event(
            InboxEvent.MESSAGE_CREATED,
            conversation,
            {"message": message_dict(message), "conversation": conversation_dict(conversation)},
            visitor=True,
            sender_external_id=sender_external_id,
        ),
    )


def _user_name(session: Session, user_id: int) -> str:
    user = session.get(User, user_id)
    return user.full_name if user else f"user {user_id}"


# ----- outbound -----------------------------------------------------------------------------


def variable_context(session: Session, actor: Actor, contact: Contact) -> variables.VariableContext:
    workspace = get_workspace(session, actor.workspace_id)
    user = session.get(User, actor.user_id) if actor.user_id else None
    return variables.VariableContext(
        contact={
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "full_name": contact.full_name,
            "email": contact.email,
            "phone": contact.phone,
            "country": contact.country,
            "language": contact.language,
        },
        custom=dict(contact.custom or {}),
        user={
            "first_name": user.first_name if user else None,
            "last_name": user.last_name if user else None,
            "full_name": user.full_name if user else None,
            "email": user.email if user else None,
        },
        workspace={"name": workspace.name},
    )


def custom_keys(session: Session, workspace_id: int) -> list[str]:
    return [d.key for d in contacts_repo.custom_fields(session, workspace_id)]


def check_files(session: Session, workspace_id: int, file_ids: Sequence[int]) -> list[dict[str, Any]]:
    attachments: list[dict[str, Any]] = []
    for index, file_id in enumerate(file_ids):
        stored = session.scalar(
            select(StoredFile).where(StoredFile.workspace_id == workspace_id, StoredFile.id == file_id)
        )
        if stored is None:
            raise ValidationFailed.field(f"attachments[{index}]", f"no file {file_id}")
        attachments.append(
            {"file_id": stored.id, "name": stored.name, "size": stored.size, "content_type": stored.content_type}
        )
    return attachments


def message_type_of(attachments: Sequence[dict[str, Any]]) -> MessageType:
    """A message's type from its first file's content type (text when it has none)."""
    if not attachments:
        return MessageType.TEXT
    content_type = str(attachments[0].get("content_type", ""))
    for prefix, kind in (("image/", MessageType.IMAGE), ("video/", MessageType.VIDEO), ("audio/", MessageType.AUDIO)):
        if content_type.startswith(prefix):
            return kind
    return MessageType.FILE


@dataclass
class OutboundPlan:
    contact: Contact
    channel: Channel
    recipient_id: str
    text: str | None
    message_type: MessageType
    attachments: list[dict[str, Any]]
    # A template message as it goes to the provider: checked against the channel's stored template,
    # variables in its parameters filled in.
    template: dict[str, Any] | None = None
    message_tag: str | None = None


def render_template_parameters(
    session: Session, actor: Actor, contact: Contact, template: dict[str, Any]
) -> dict[str, Any]:
    """The template with dynamic variables in its text parameters filled in for this contact
    (`{{contact.first_name | "cliente"}}`), as in a reply's text."""
    context = variable_context(session, actor, contact)
    keys = custom_keys(session, actor.workspace_id)
    components: list[Any] = []
    for index, component in enumerate(template.get("components") or []):
        if not isinstance(component, dict) or not isinstance(component.get("parameters"), list):
            components.append(component)
            continue
        parameters: list[Any] = []
        for position, parameter in enumerate(component["parameters"]):
            if isinstance(parameter, dict) and parameter.get("type", "text") == "text" and "text" in parameter:
                where = f"message.template.components[{index}].parameters[{position}].text"
                text = variables.render(str(parameter["text"]), context, keys, where)
                if len(text) > MAX_TEMPLATE_PARAMETER:
                    raise ValidationFailed.field(where, f"must be at most {MAX_TEMPLATE_PARAMETER} characters")
                parameters.append({**parameter, "text": text})
            else:
                parameters.append(parameter)
        components.append({**component, "parameters": parameters})
    return {**template, "components": components}


# Meta's limit on a body parameter's text (a template's whole body is at most 1,024 characters).
MAX_TEMPLATE_PARAMETER = 1024


def check_message_tag(
    actor: Actor, channel: Channel, rules: ChannelRules, tag: str | None, last_incoming_at: datetime | None
) -> str | None:
    """The message tag a message outside the reply window goes with (Messenger, Instagram), checked:
    one the channel takes, and within the time it allows after the customer's last message."""
    allowed = dict(rules.message_tags)
    if tag is None:
        return None
    if not allowed:
        raise ValidationFailed.field("message.message_tag", f"{channel.type} messages take no message tag")
    if tag not in allowed:
        raise ValidationFailed.field("message.message_tag", f"must be one of: {', '.join(allowed)}")
    if tag == HUMAN_AGENT_TAG and actor.kind not in ("user", "api"):
        # Meta's policy: the human agent tag is for a person's answer, never an automated one.
        raise ValidationFailed.field("message.message_tag", "HUMAN_AGENT is only for a person's answer")
    horizon = allowed[tag]
    if horizon is not None and (last_incoming_at is None or utcnow() - last_incoming_at >= horizon):
        raise Conflict(
            f"The {tag} tag may be used only within {horizon.days} days of the customer's last message.",
            code="message_tag_expired",
            details={"message.message_tag": f"{tag}: more than {horizon.days} days since the customer wrote"},
        )
    return tag


def check_send(
    session: Session,
    actor: Actor,
    contact: Contact,
    channel: Channel,
    *,
    text: str | None,
    message_type: MessageType = MessageType.TEXT,
    file_ids: Sequence[int] = (),
    template: dict[str, Any] | None = None,
    message_tag: str | None = None,
    private_reply: bool = False,
) -> OutboundPlan:
    if channel.workspace_id != actor.workspace_id:
        raise NotFound(f"No channel {channel.id}.")
    if not channel.active:
        raise ValidationFailed.field("channel_id", "this channel is disabled")
    if message_type == MessageType.SYSTEM:
        raise ValidationFailed.field("message.type", "system messages cannot be sent")
    adapter = get_adapter(channel.type)
    rules = adapter.rules
    if message_type not in rules.message_types:
        raise ValidationFailed.field("message.type", f"{channel.type} cannot send {message_type.value} messages")
    if message_type == MessageType.TEMPLATE:
        # A template is the provider's approved text: allowed outside the reply window, and only as
        # the channel's stored template says (its name, language, status and parameters).
        if template is None:
            raise ValidationFailed.field("message.template", "a template message needs its template")
        checked, rendered_template = check_template_message(
            session, channel, render_template_parameters(session, actor, contact, template)
        )
        recipient = recipient_for(session, channel, contact.id)
        if recipient is None:
            raise ValidationFailed.field("channel_id", f"this contact cannot be reached on channel {channel.id}")
        return OutboundPlan(contact, channel, recipient, rendered_template, message_type, [], checked)
    rendered: str | None = None
    if text is not None and text.strip():
        # Most replies have no variable: their context (three queries) is only read for one that does.
        rendered = (
            variables.render(
                text,
                variable_context(session, actor, contact),
                custom_keys(session, actor.workspace_id),
                "message.text",
            )
            if "{{" in text
            else text
        )
        if len(rendered) > min(MAX_TEXT, rules.max_text_length):
            raise ValidationFailed.field(
                "message.text", f"must be at most {min(MAX_TEXT, rules.max_text_length)} characters"
            )
    attachments = check_files(session, actor.workspace_id, file_ids)
    if message_type == MessageType.TEXT and not rendered:
        raise ValidationFailed.field("message.text", "must not be empty")
    if message_type != MessageType.TEXT and not attachments:
        raise ValidationFailed.field("message.attachments", f"a {message_type.value} message needs a file")
    recipient = recipient_for(session, channel, contact.id)
    if recipient is None:
        raise ValidationFailed.field("channel_id", f"this contact cannot be reached on channel {channel.id}")
    opted_out = sms_consent.refusal(session, channel, recipient) if rules.keyword_consent else None
    if opted_out:
        # Refused when written; the outbox checks again for a STOP that arrives while a message waits.
        raise ValidationFailed(opted_out, code="opted_out", details={"channel_id": "the recipient opted out"})
    if private_reply:
        # A comment opens no window: its one private reply is allowed on its own terms (checked
        # by check_private_reply).
        return OutboundPlan(contact, channel, recipient, rendered, message_type, attachments)
    last_incoming = last_incoming_on(session, contact, channel)
    tag = check_message_tag(actor, channel, rules, message_tag, last_incoming)
    if not window_open(rules, last_incoming, utcnow()) and tag is None:
        if rules.message_tags:
            raise ValidationFailed(
                "The 24-hour reply window on this channel has closed; send the message with a message tag "
                f"({', '.join(name for name, _ in rules.message_tags)}) that fits it.",
                code="reply_window_closed",
                details={"message.message_tag": "required outside the reply window"},
            )
        raise ValidationFailed(
            "The reply window on this channel has closed; send an approved template instead.",
            code="reply_window_closed",
            details={"channel_id": "reply window closed"},
        )
    return OutboundPlan(contact, channel, recipient, rendered, message_type, attachments, message_tag=tag)


def last_incoming_on(session: Session, contact: Contact, channel: Channel) -> datetime | None:
    """When the contact last wrote on this channel, which opens its reply window: a contact who
    writes on Telegram has not reopened their WhatsApp window. `contact.last_incoming_at` is the
    newest across channels, so it can only bound this from above."""
    on_channel = repo.last_incoming_on(session, contact.id, channel.id)
    if on_channel is None or contact.last_incoming_at is None:
        return None
    return min(on_channel, contact.last_incoming_at)


def reply_channels(session: Session, workspace_id: int, contact_id: int) -> list[Channel]:
    """The active channels the contact can be answered on (an identity the channel's adapter owns)."""
    return [
        channel
        for channel in list_channels(session, workspace_id)
        if channel.active and recipient_for(session, channel, contact_id) is not None
    ]


def default_reply_channel(session: Session, contact_id: int, reachable: Sequence[Channel]) -> Channel | None:
    """Of the channels a contact can be answered on, the one they last wrote on; else the one last
    used to write to them; else the first."""
    by_id = {channel.id: channel for channel in reachable}
    for direction in (Direction.INCOMING, Direction.OUTGOING):
        last = repo.last_channel_written(session, contact_id, list(by_id), direction)
        if last is not None:
            return by_id[last]
    return reachable[0] if reachable else None


def choose_channel(session: Session, actor: Actor, contact: Contact, channel_id: int | None) -> Channel:
    """The channel a message to the contact goes through: the one asked for, or by default the one
    they last wrote on. A contact with no channel to be reached on is a 422 that says so."""
    if channel_id is not None:
        channel = session.scalar(
            select(Channel).where(Channel.workspace_id == actor.workspace_id, Channel.id == channel_id)
        )
        if channel is None:
            raise ValidationFailed.field("channel_id", f"no channel {channel_id}")
        return channel
    chosen = default_reply_channel(session, contact.id, reply_channels(session, actor.workspace_id, contact.id))
    if chosen is None:
        raise ValidationFailed(
            "channel_id: this contact has no active channel to be answered on (a contact is answered on a "
            "channel they have written on); give channel_id.",
            code="no_channel",
            details={"channel_id": "required: the contact has no active channel to be answered on"},
        )
    return chosen


def check_content(channel: Channel, plan: OutboundPlan, payload: dict[str, Any]) -> None:
    """What the channel's provider would refuse, refused before anything is written: buttons and
    quick replies where the channel has none, and the adapter's own rules (file kinds and sizes,
    captions, button and list limits)."""
    adapter = get_adapter(channel.type)
    if payload.get("buttons") and not adapter.rules.buttons:
        raise ValidationFailed.field("message.buttons", f"{channel.type} messages cannot carry buttons")
    if payload.get("email") and not adapter.rules.mail_threading:
        raise ValidationFailed.field("message.email", f"{channel.type} messages have no subject, CC or BCC")
    quick_reply = payload.get("quick_reply")
    if quick_reply:
        limits = adapter.rules.reply_choices
        if limits is None:
            raise ValidationFailed.field("message.type", f"{channel.type} cannot send quick_reply messages")
        if payload.get("buttons") and not limits.with_buttons:
            raise ValidationFailed.field(
                "message.buttons", f"{limits.provider} sends either buttons or reply choices (quick_reply), not both"
            )
        reply_choices.check(limits, quick_reply, plan.text, bool(plan.attachments))
    if isinstance(adapter, OutboundCheck):
        adapter.check_outbound(channel, plan.message_type, plan.text, plan.attachments, payload)


def _one_reply_choice_shape(channel: Channel, payload: dict[str, Any]) -> dict[str, Any]:
    """The older `quick_replies` list (Messenger, Instagram) as the one `quick_reply` shape every
    channel maps to its provider's form."""
    legacy = payload.get("quick_replies")
    if not legacy:
        return payload
    if not get_adapter(channel.type).rules.quick_replies:
        raise ValidationFailed.field("message.quick_replies", f"{channel.type} messages cannot carry quick replies")
    if payload.get("quick_reply"):
        raise ValidationFailed.field("message.quick_replies", "give `quick_reply` or the older field, not both")
    rest = {key: value for key, value in payload.items() if key != "quick_replies"}
    return {**rest, "quick_reply": reply_choices.from_suggested(legacy)}


def check_quoted(session: Session, conversation: Conversation, channel: Channel, replied_id: Any) -> None:
    """A quoted message is a customer's or an agent's message of this conversation on this channel."""
    if replied_id is None:
        return
    replied = session.get(Message, replied_id) if isinstance(replied_id, int) else None
    field = "message.reply_to_message_id"
    if replied is None or replied.conversation_id != conversation.id:
        raise ValidationFailed.field(field, f"no message {replied_id} in this conversation")
    if replied.direction not in (Direction.INCOMING, Direction.OUTGOING):
        raise ValidationFailed.field(field, "internal notes and system lines cannot be quoted")
    if replied.channel_id != channel.id:
        raise ValidationFailed.field(field, "that message went through another channel; it cannot be quoted here")


def do_send(
    session: Session,
    actor: Actor,
    contact: Contact,
    channel: Channel,
    *,
    text: str | None,
    message_type: MessageType = MessageType.TEXT,
    file_ids: Sequence[int] = (),
    payload: dict[str, Any] | None = None,
    message_tag: str | None = None,
    private_reply_to: Message | None = None,
) -> Message:
    """Write the outgoing message (status pending: the outbox row) and queue its delivery after commit.
    `private_reply_to` is a comment this message answers privately (check_private_reply)."""
    given_template = (payload or {}).get("template")
    plan = check_send(
        session,
        actor,
        contact,
        channel,
        text=text,
        message_type=message_type,
        file_ids=file_ids,
        template=given_template if isinstance(given_template, dict) else None,
        message_tag=message_tag,
        private_reply=private_reply_to is not None,
    )
    if plan.template is not None:
        payload = {**(payload or {}), "template": plan.template}
    payload = _one_reply_choice_shape(channel, payload or {})
    check_content(channel, plan, payload)
    if plan.message_tag is not None:
        payload = {**(payload or {}), "message_tag": plan.message_tag}
    if private_reply_to is not None:
        payload = {**(payload or {}), "private_reply_to": private_reply_to.payload["comment"]["comment_id"]}
    conversation, created = open_conversation_for(session, contact, channel.id, OpeningSource.of_actor(actor.kind))
    # Writing into a conversation one may not see would leak it; the API checks this too.
    if (
        not created
        and actor.kind == "user"
        and not viewer_for(session, actor).can_see(conversation.assignee_id, conversation.team_id)
    ):
        raise PermissionDenied("This conversation is assigned to someone else.")
    check_quoted(session, conversation, channel, (payload or {}).get("reply_to_message_id"))
    now = utcnow()
    message = Message(
        workspace_id=actor.workspace_id,
        conversation_id=conversation.id,
        contact_id=contact.id,
        channel_id=channel.id,
        direction=Direction.OUTGOING,
        sender_kind=_sender_kind(actor),
        sender_user_id=actor.user_id,
        type=message_type,
        text=plan.text,
        attachments=plan.attachments,
        payload={**(payload or {}), "recipient_id": plan.recipient_id},
        status=DeliveryStatus.PENDING,
        status_at=now,
        attempts=0,
        created_at=now,
    )
    session.add(message)
    session.flush()
    conversation.last_message_at = now
    if message.sender_kind in HUMAN_SENDERS:
        conversation.last_agent_message_at = now
    conversation.channel_id = channel.id
    conversation.last_message_preview = preview_of(plan.text, message_type)
    contact.last_outgoing_at = now
    session.flush()
    if created:
        record_opened(session, actor, conversation)
    customer_message_created(session, conversation, message)
    message_id = message.id
    if private_reply_to is not None:
        private_reply_to.payload = {
            **private_reply_to.payload,
            "private_reply": {"message_id": message_id, "at": now.isoformat()},
        }
        session.flush()

    on_commit(session, lambda: enqueue_send(message_id))
    return message


def check_private_reply(
    session: Session, conversation: Conversation, channel: Channel, comment_message_id: int, file_ids: Sequence[int]
) -> Message:
    """The comment (an incoming message of this conversation, locked) that may be answered privately:
    once, in text, within the time the channel allows after it was written."""
    rules = get_adapter(channel.type).rules
    field = "private_reply_to_message_id"
    if rules.private_replies is None:
        raise ValidationFailed.field(field, f"{channel.type} has no private replies")
    comment = session.get(Message, comment_message_id, with_for_update=True)
    if (
        comment is None
        or comment.conversation_id != conversation.id
        or comment.direction != Direction.INCOMING
        or not isinstance((comment.payload or {}).get("comment"), dict)
    ):
        raise ValidationFailed.field(field, "is not a comment of this conversation")
    if comment.channel_id != channel.id:
        raise ValidationFailed.field(field, "the comment came through another channel")
    if file_ids:
        raise ValidationFailed.field("message.attachments", "a private reply is one text message")
    if comment.payload.get("private_reply"):
        raise Conflict(
            "This comment has already been answered privately; Meta allows one private reply per comment.",
            code="private_reply_sent",
            details={field: "already answered privately"},
        )
    written = datetime.fromisoformat(str(comment.payload["comment"].get("created_at")))
    if utcnow() - written >= rules.private_replies:
        raise Conflict(
            f"A private reply is allowed only within {rules.private_replies.days} days of the comment.",
            code="private_reply_expired",
            details={field: f"the comment is more than {rules.private_replies.days} days old"},
        )
    return comment


def do_reply(
    session: Session,
    actor: Actor,
    conversation: Conversation,
    *,
    text: str | None,
    message_type: MessageType = MessageType.TEXT,
    file_ids: Sequence[int] = (),
    channel_id: int | None = None,
    payload: dict[str, Any] | None = None,
    message_tag: str | None = None,
    private_reply_to_message_id: int | None = None,
) -> Message:
    target = channel_id or conversation.channel_id
    if target is None:
        raise ValidationFailed.field("channel_id", "this conversation has no channel yet; choose one")
    channel = session.scalar(select(Channel).where(Channel.workspace_id == actor.workspace_id, Channel.id == target))
    if channel is None:
        raise ValidationFailed.field("channel_id", f"no channel {target}")
    contact = contacts_repo.contact_by_id(session, actor.workspace_id, conversation.contact_id)
    assert contact is not None
    comment = (
        check_private_reply(session, conversation, channel, private_reply_to_message_id, file_ids)
        if private_reply_to_message_id is not None
        else None
    )
    return do_send(
        session,
        actor,
        contact,
        channel,
        text=text,
        message_type=message_type,
        file_ids=file_ids,
        payload=payload,
        message_tag=message_tag,
        private_reply_to=comment,
    )


# ----- comments and mentions ----------------------------------------------------------------


def do_comment(
    session: Session, actor: Actor, conversation: Conversation, text: str, mention_user_ids: Sequence[int] = ()
) -> Message:
    """An internal note: never sent to the customer. Mentioned teammates get a notification row."""
    body = (text or "").strip()
    if not body:
        raise ValidationFailed.field("text", "must not be empty")
    if len(body) > MAX_TEXT:
        raise ValidationFailed.field("text", f"must be at most {MAX_TEXT} characters")
    if not mention_user_ids and "@" in body:
        # No ids given (an API user wrote names): "@Full Name" of active members (mentions.py).
        mention_user_ids = mentions.resolve_mentions(body, mentions.mentionable_members(session, actor.workspace_id))
    mentioned: list[int] = []
    for index, user_id in enumerate(dict.fromkeys(mention_user_ids)):
        check_member_user(session, actor.workspace_id, user_id, f"mentions[{index}]")
        mentioned.append(user_id)
    message = _internal_message(
        session, actor, conversation, Direction.COMMENT, MessageType.TEXT, body, {"mentions": mentioned}
    )
    for user_id in mentioned:
        session.add(
            Mention(
                workspace_id=actor.workspace_id,
                user_id=user_id,
                conversation_id=conversation.id,
                message_id=message.id,
            )
        )
    session.flush()
    if mentioned:
        events.emit(
            session,
            events.make_event(
                InboxEvent.MENTION_CREATED,
                conversation,
                {"message": message_dict(message)},
                mentioned_user_ids=mentioned,
            ),
        )
    return message


# ----- assignment, close, reopen, bot -------------------------------------------------------


def check_team(session: Session, workspace_id: int, team_id: int) -> Team:
    team = session.scalar(select(Team).where(Team.workspace_id == workspace_id, Team.id == team_id))
    if team is None:
        raise ValidationFailed.field("team_id", f"no team {team_id} in this workspace")
    return team


def do_assign(
    session: Session,
    actor: Actor,
    conversation: Conversation,
    *,
    user_id: int | None,
    team_id: int | None,
) -> Conversation:
    """Assign to a user and/or a team; both None unassigns. An agent without
    view_all_conversations may only assign to themselves or to one of their teams."""
    if user_id is not None:
        check_member_user(session, actor.workspace_id, user_id, "user_id")
    team = check_team(session, actor.workspace_id, team_id) if team_id is not None else None
    viewer = viewer_for(session, actor)
    if not viewer.see_all and not viewer.can_see(user_id, team_id) and (user_id is not None or team_id is not None):
        raise PermissionDenied("You may assign only to yourself or to your teams.")
    previous_user, previous_team = conversation.assignee_id, conversation.team_id
    if (previous_user, previous_team) == (user_id, team_id):
        return conversation
    conversation.assignee_id = user_id
    conversation.team_id = team_id
    conversation.updated_at = utcnow()
    session.flush()
    if user_id is None and team_id is None:
        text, action = "Unassigned", "conversation_unassigned"
    else:
        names = [_user_name(session, user_id)] if user_id is not None else []
        if team is not None:
            names.append(f"team {team.name}")
        text, action = f"Assigned to {' / '.join(names)}", "conversation_assigned"
    _record_change(
        session,
        actor,
        conversation,
        text,
        action,
        InboxEvent.CONVERSATION_ASSIGNED,
        line={
            "event": action.removeprefix("conversation_"),
            "assignee_id": user_id,
            "team_id": team_id,
            "previous_assignee_id": previous_user,
            "previous_team_id": previous_team,
        },
        old={"assignee_id": previous_user, "team_id": previous_team},
        new={"assignee_id": user_id, "team_id": team_id, "conversation_id": conversation.id},
        previous_assignee_id=previous_user,
        previous_team_id=previous_team,
    )
    return conversation


def _closing_source(actor: Actor) -> ClosingSource:
    try:
        return ClosingSource(actor.kind)
    except ValueError:
        return ClosingSource.SYSTEM


def do_close(
    session: Session,
    actor: Actor,
    conversation: Conversation,
    *,
    category_id: int | None,
    summary: str | None,
    source: ClosingSource | None = None,
    resume_bot: bool = False,
) -> Conversation:
    """`source` defaults to the actor's kind; automatic closers (auto-close) name theirs and need no
    closing category even where the workspace asks people for one. `resume_bot` turns the bot back
    on as the conversation closes, so a pause does not carry over to the contact's next one (where
    the channel's bot keeps pauses, see assistant.bot)."""
    if conversation.status == ConversationStatus.CLOSED:
        raise Conflict("This conversation is already closed.", code="already_closed")
    source = source or _closing_source(actor)
    category: ClosingCategory | None = None
    if category_id is not None:
        category = repo.closing_category(session, actor.workspace_id, category_id)
        if category is None:
            raise ValidationFailed.field("category_id", f"no closing category {category_id}")
    elif source != ClosingSource.AUTO_CLOSE and repo.closing_categories(session, actor.workspace_id):
        raise ValidationFailed.field("category_id", "choose a closing category")
    note = (summary or "").strip() or None
    if note is not None and len(note) > MAX_SUMMARY:
        raise ValidationFailed.field("summary", f"must be at most {MAX_SUMMARY} characters")
    if resume_bot:
        do_set_bot_paused(session, actor, conversation, False)
    now = utcnow()
    conversation.status = ConversationStatus.CLOSED
    conversation.closed_at = now
    conversation.closing_category_id = category.id if category else None
    conversation.closing_summary = note
    conversation.closing_source = source
    conversation.updated_at = now
    session.flush()
    name = category.name if category else None
    _record_change(
        session,
        actor,
        conversation,
        f"Closed: {name}"
        if category
        else ("Closed automatically after inactivity" if source == ClosingSource.AUTO_CLOSE else "Closed"),
        "conversation_closed",
        InboxEvent.CONVERSATION_CLOSED,
        line={
            "event": "closed",
            "category_id": category.id if category else None,
            "category": name,
            "summary": note,
            "source": source.value,
        },
        new={"conversation_id": conversation.id, "category": name, "summary": note, "source": source.value},
    )
    return conversation


def do_reopen(session: Session, actor: Actor, conversation: Conversation) -> Conversation:
    if conversation.status == ConversationStatus.OPEN:
        raise Conflict("This conversation is already open.", code="already_open")
    other = repo.open_conversation(session, actor.workspace_id, conversation.contact_id)
    if other is not None:
        raise Conflict(
            "This contact already has an open conversation.",
            code="contact_has_open_conversation",
            details={"conversation_id": other.id},
        )
    now = utcnow()
    conversation.status = ConversationStatus.OPEN
    conversation.closed_at = None
    conversation.opened_at = now
    conversation.opening_source = OpeningSource.of_actor(actor.kind)
    conversation.updated_at = now
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise Conflict("This contact already has an open conversation.", code="contact_has_open_conversation") from exc
    _record_change(
        session,
        actor,
        conversation,
        "Reopened",
        "conversation_reopened",
        InboxEvent.CONVERSATION_REOPENED,
        line={"event": "reopened"},
        new=conversation.id,
    )
    return conversation


def do_set_bot_paused(session: Session, actor: Actor, conversation: Conversation, paused: bool) -> Conversation:
    if conversation.bot_paused == paused:
        return conversation
    conversation.bot_paused = paused
    conversation.updated_at = utcnow()
    session.flush()
    _record_change(
        session,
        actor,
        conversation,
        "Bot paused" if paused else "Bot resumed",
        "bot_paused" if paused else "bot_resumed",
        InboxEvent.CONVERSATION_BOT,
        line={"event": "bot", "paused": paused},
        new=conversation.id,
    )
    return conversation


def do_mark_read(session: Session, actor: Actor, conversation: Conversation, message_id: int | None = None) -> int:
    """Move this user's read marker forward (never back); returns the marker."""
    if actor.user_id is None:
        raise ValidationFailed.field("user", "only a signed-in user has read markers")
    latest = session.scalar(
        select(Message.id).where(Message.conversation_id == conversation.id).order_by(Message.id.desc()).limit(1)
    )
    target = min(message_id, latest or 0) if message_id is not None else latest or 0
    marker = session.get(ConversationRead, (conversation.id, actor.user_id), with_for_update=True)
    if marker is None:
        marker = ConversationRead(conversation_id=conversation.id, user_id=actor.user_id, last_read_message_id=0)
        session.add(marker)
    if target > marker.last_read_message_id:
        marker.last_read_message_id = target
        marker.updated_at = utcnow()
    session.flush()
    return marker.last_read_message_id


# ----- snippets and closing categories -------------------------------------------------------


def _delete(session: Session, actor: Actor, permission: Permission, row: Snippet | ClosingCategory) -> None:
    actor.require(permission)
    session.delete(row)
    session.flush()


def check_snippet(session: Session, actor: Actor, shortcut: str, text: str, file_id: int | None) -> tuple[str, str]:
    actor.require(Permission.MANAGE_SNIPPETS)
    key = shortcut.strip().lstrip("/").lower()
    if not SHORTCUT.match(key):
        raise ValidationFailed.field("shortcut", "use 1-64 lowercase letters, digits, - or _")
    body = text.strip()
    if not body and file_id is None:
        raise ValidationFailed.field("text", "a snippet needs text or a file")
    if len(body) > MAX_TEXT:
        raise ValidationFailed.field("text", f"must be at most {MAX_TEXT} characters")
    variables.parse(body, custom_keys(session, actor.workspace_id), "text")
    if file_id is not None:
        check_files(session, actor.workspace_id, [file_id])
    return key, body


def _check_shortcut_free(session: Session, workspace_id: int, key: str, snippet_id: int | None = None) -> None:
    other = repo.snippet_by_shortcut(session, workspace_id, key)
    if other is not None and other.id != snippet_id:
        raise Conflict(f"A snippet /{key} already exists.", details={"shortcut": "already exists"})


def do_create_snippet(session: Session, actor: Actor, shortcut: str, text: str, file_id: int | None = None) -> Snippet:
    key, body = check_snippet(session, actor, shortcut, text, file_id)
    _check_shortcut_free(session, actor.workspace_id, key)
    snippet = Snippet(workspace_id=actor.workspace_id, shortcut=key, text=body, file_id=file_id)
    session.add(snippet)
    session.flush()
    return snippet


def access_snippet(session: Session, actor: Actor, snippet_id: int) -> Snippet:
    return found(repo.snippet(session, actor.workspace_id, snippet_id), f"No snippet {snippet_id}.")


def do_update_snippet(
    session: Session,
    actor: Actor,
    snippet: Snippet,
    *,
    shortcut: str | None = None,
    text: str | None = None,
    file_id: int | None = None,
    clear_file: bool = False,
) -> Snippet:
    new_file = None if clear_file else (file_id if file_id is not None else snippet.file_id)
    key, body = check_snippet(
        session,
        actor,
        shortcut if shortcut is not None else snippet.shortcut,
        text if text is not None else snippet.text,
        new_file,
    )
    _check_shortcut_free(session, actor.workspace_id, key, snippet.id)
    snippet.shortcut, snippet.text, snippet.file_id = key, body, new_file
    session.flush()
    return snippet


def do_delete_snippet(session: Session, actor: Actor, snippet: Snippet) -> None:
    _delete(session, actor, Permission.MANAGE_SNIPPETS, snippet)


def render_snippet(session: Session, actor: Actor, snippet: Snippet, contact: Contact) -> str:
    return variables.render(
        snippet.text, variable_context(session, actor, contact), custom_keys(session, actor.workspace_id)
    )


def _category_name(categories: Sequence[ClosingCategory], name: str, category_id: int | None = None) -> str:
    """The name with its spaces tidied: required, at most 100 characters, not the name of another
    of the workspace's `categories` (the one with `category_id` is the one being renamed)."""
    text = tidy_name(name)
    if not text or len(text) > 100:
        raise ValidationFailed.field("name", "is required (at most 100 characters)")
    if any(c.name_key == fold(text) and c.id != category_id for c in categories):
        raise Conflict(f"A closing category {text!r} already exists.", details={"name": "already exists"})
    return text


def do_create_closing_category(session: Session, actor: Actor, name: str) -> ClosingCategory:
    actor.require(Permission.MANAGE_WORKSPACE)
    existing = repo.closing_categories(session, actor.workspace_id)
    text = _category_name(existing, name)
    category = ClosingCategory(
        workspace_id=actor.workspace_id,
        name=text,
        name_key=fold(text),
        position=max((c.position for c in existing), default=-1) + 1,
    )
    session.add(category)
    session.flush()
    return category


def access_closing_category(session: Session, actor: Actor, category_id: int) -> ClosingCategory:
    category = repo.closing_category(session, actor.workspace_id, category_id)
    return found(category, f"No closing category {category_id}.")


def do_update_closing_category(
    session: Session, actor: Actor, category: ClosingCategory, *, name: str | None, position: int | None
) -> ClosingCategory:
    actor.require(Permission.MANAGE_WORKSPACE)
    if name is not None:
        text = _category_name(repo.closing_categories(session, actor.workspace_id), name, category.id)
        category.name, category.name_key = text, fold(text)
    if position is not None:
        category.position = position
    session.flush()
    return category


def do_delete_closing_category(session: Session, actor: Actor, category: ClosingCategory) -> None:
    _delete(session, actor, Permission.MANAGE_WORKSPACE, category)
