"""JSON endpoints of the inbox (for the inbox UI with the session cookie + X-CSRF-Token, and for
integrations with a bearer API token).

Conversations
    GET  /api/v1/conversations?view=mine|unassigned|all|team&team_id=&status=open|closed|all
         &contact=<identifier>&search=<name, email or phone>&cursor=&limit=
         latest message first, keyset pages; each item has the contact's name and `unread`
    GET  /api/v1/conversations/{id}
    GET  /api/v1/conversations/{id}/messages?before_id=&limit=   newest page first; items oldest
         first; `next_before_id` pages upwards (infinite scroll)
    POST /api/v1/conversations/{id}/messages   {"type","text","attachments":[file ids],"channel_id"?,
         "message_tag"?, "private_reply_to_message_id"? (a comment to answer privately, once)}
         (a WhatsApp template: {"type": "whatsapp_template", "template": {...}}, checked against the
         channel's synced template, variables in its text parameters filled in)
    GET  /api/v1/conversations/{id}/templates  the APPROVED templates of the conversation's channel
    POST /api/v1/conversations/{id}/template-preview  {"template"} -> {"text","template"}: the message
         as the customer would read it, or the 422 sending it would get
    POST /api/v1/conversations/{id}/comments   {"text","mentions":[user ids]}; without ids, every
         "@Full Name" of an active member in the text is a mention (conversations/mentions.py)
    POST /api/v1/conversations/{id}/assign     {"user_id"|null,"team_id"|null}
    POST /api/v1/conversations/{id}/close      {"category_id","summary"}
    POST /api/v1/conversations/{id}/reopen
    POST /api/v1/conversations/{id}/bot        {"paused": bool}
    POST /api/v1/conversations/{id}/read       {"message_id"?}
    POST /api/v1/conversations/{id}/typing     {"note"?: bool} (realtime only; the customer's widget
                                               shows it too unless it is a note)
Contacts' messages (REST API v1)
    POST /api/v1/contacts/{identifier}/messages  {"channel_id"?,"message":{"type","text","attachments",
         "buttons"?,"quick_replies"?,"message_tag"?}} (message_tag: Messenger/Instagram outside the window)
         -> {"id","status","conversation_id","channel_id"}; without channel_id, the channel the contact
         last wrote on (422 no_channel when they can be answered on none)
    Both message bodies also take "reply_to_message_id" (quote an earlier message of the
    conversation), "preview_url" (text), "template" (type whatsapp_template) and "quick_reply"
    (type quick_reply: {"buttons": [{"id","title"}]} or {"list": {"button","sections":[{"title",
    "rows":[{"id","title","description"}]}]}}, optional "header" and "footer"): reply choices in one
    shape on every channel that has them (WhatsApp, Messenger, Instagram, Telegram; channels/
    reply_choices.py); each channel checks its provider's limits (422 naming the rule) before
    anything is written. The older "quick_replies" (Messenger/Instagram) is read as quick_reply
    buttons; "buttons" stays for link buttons and Telegram's older inline keyboard.
    GET  /api/v1/contacts/{identifier}/messages?before_id=&limit=
Settings
    GET/POST /api/v1/snippets, PATCH/DELETE /api/v1/snippets/{id},
    POST /api/v1/snippets/{id}/render {"conversation_id"} -> {"text"} (variables filled in)
    GET/POST /api/v1/closing-categories, PATCH/DELETE /api/v1/closing-categories/{id}
    GET/PUT  /api/v1/workspace/away-message {"enabled", "text"} (conversations/away.py)
    (channels: channels/api.py)
Files
    POST /api/v1/files (multipart `file`, optional `conversation_id`), GET /api/v1/files (library),
    GET  /api/v1/files/{id} (download; a file sent in a conversation only to those who may see it),
    DELETE /api/v1/files/{id} (an upload not sent nor in a snippet: its uploader or a manager; 409 else)
Realtime: WebSocket /ws (see conversations/ws.py).
"""

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.channels import message_templates
from tertulia.channels.models import Channel
from tertulia.channels.protocol import MessageType, window_closes_at, window_open
from tertulia.channels.registry import get_adapter
from tertulia.contacts import repository as contacts_repo
from tertulia.contacts.models import Contact
from tertulia.contacts.schemas import IDENTIFIER_PATTERN, Identifier
from tertulia.contacts.service import access_contact
from tertulia.conversations import away, events, files, schemas, service
from tertulia.conversations import repository as repo
from tertulia.conversations.auth import InboxActor
from tertulia.conversations.events import InboxEvent
from tertulia.conversations.models import Conversation, ConversationStatus, Message, StoredFile
from tertulia.events.types import ConversationSnapshot
from tertulia.kit import realtime, storage
from tertulia.kit.clock import utcnow
from tertulia.kit.errors import NotFound, ValidationFailed
from tertulia.kit.http import API_ERRORS, CheckedInputRoute, DbSession, read_only
from tertulia.kit.pagination import decode_cursor, encode_cursor
from tertulia.kit.types import ID, Position, is_id
from tertulia.users.permissions import Actor, Permission

router = APIRouter(prefix="/api/v1", tags=["conversations"], route_class=CheckedInputRoute, responses=API_ERRORS)

MAX_FILES = 10  # attachments per message
# What the endpoints answering with the bare conversation declare: their return type is the
# conversation's shape (`ConversationSnapshot`) for the type checker, but pydantic cannot read a
# `typing.TypedDict` before Python 3.12, so the schema stays the object it was.
CONVERSATION_RESPONSE = dict[str, Any]


class TemplateLanguage(BaseModel):
    code: str = Field(min_length=2, max_length=15, pattern=r"^[A-Za-z]{2,3}(_[A-Za-z0-9]{2,8})?$")


class WhatsAppTemplate(BaseModel):
    """A message template in WhatsApp's own shape (name, language, components with parameters)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$")
    language: TemplateLanguage
    components: list[dict[str, Any]] = Field(default_factory=list, max_length=10)


class ButtonBody(BaseModel):
    """A button under the message: a choice the customer sends back (`payload`), or a link (`url`)."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=64)
    payload: str | None = Field(default=None, max_length=64)
    url: str | None = Field(default=None, max_length=1000, pattern=r"^https?://")


class QuickReplyChoice(BaseModel):
    """A reply button or a row of a list: `id` comes back when the customer picks it."""

    model_config = ConfigDict(extra="forbid")
    # Loose bounds: each channel checks its provider's own limits and names the rule it breaks.
    id: str = Field(min_length=1, max_length=256)
    title: str = Field(min_length=1, max_length=256)
    description: str | None = Field(default=None, max_length=256)


class QuickReplySection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, max_length=256)
    rows: list[QuickReplyChoice] = Field(min_length=1, max_length=100)


class QuickReplyList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    button: str = Field(min_length=1, max_length=256, description="The label of the button that opens the list.")
    sections: list[QuickReplySection] = Field(min_length=1, max_length=100)


class QuickReplyBody(BaseModel):
    """Reply buttons (`buttons`) or a list to pick from (`list`), under the message's text."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)
    buttons: list[QuickReplyChoice] = Field(default_factory=list, max_length=100)
    choices: QuickReplyList | None = Field(default=None, alias="list")
    header: str | None = Field(default=None, max_length=256)
    footer: str | None = Field(default=None, max_length=256)


class SuggestedReply(BaseModel):
    """A suggested answer shown above the customer's keyboard (Messenger, Instagram): its title comes
    back as the customer's choice, with `payload`."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=20)
    payload: str | None = Field(default=None, max_length=1000)


class EmailOptions(BaseModel):
    """Email channels: the subject (empty: "Re:" and the thread's), copies and blind copies."""

    model_config = ConfigDict(extra="forbid")
    subject: str | None = Field(default=None, max_length=998)
    cc: list[str] = Field(default_factory=list, max_length=50)
    bcc: list[str] = Field(default_factory=list, max_length=50)


class MessageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # `whatsapp_template` is the stored type `template` with a WhatsApp template; `quick_reply` is a
    # text message with reply buttons or a list (`quick_reply`), on channels that have them.
    type: MessageType | Literal["whatsapp_template", "quick_reply"] = MessageType.TEXT
    text: str | None = Field(default=None, max_length=20_000)
    attachments: list[ID] = Field(default_factory=list, max_length=MAX_FILES)
    template: WhatsAppTemplate | None = None
    # Channels whose rules allow buttons (Telegram's inline keyboard); others refuse them (422).
    buttons: list[ButtonBody] = Field(default_factory=list, max_length=20)
    # An earlier message of the conversation this one answers (quoted where the channel can).
    reply_to_message_id: ID | None = None
    quick_reply: QuickReplyBody | None = None
    # Text messages: ask the channel to show a preview of the first link (WhatsApp's preview_url).
    preview_url: bool | None = None
    # The older form of reply choices (Messenger, Instagram), read as `quick_reply` buttons whose id
    # is the payload (conversations/service.py); others refuse them (422).
    quick_replies: list[SuggestedReply] = Field(default_factory=list, max_length=13)
    # Messenger/Instagram: the message tag that allows a message outside the 24-hour window
    # (ACCOUNT_UPDATE, POST_PURCHASE_UPDATE, CONFIRMED_EVENT_UPDATE, HUMAN_AGENT within 7 days).
    message_tag: str | None = Field(default=None, max_length=40, pattern=r"^[A-Z_]+$")
    # Email channels only (others refuse it, 422).
    email: EmailOptions | None = None

    @model_validator(mode="after")
    def _template_with_its_type(self) -> "MessageBody":
        if (self.type in ("whatsapp_template", MessageType.TEMPLATE)) != (self.template is not None):
            raise ValueError("`template` is given with type whatsapp_template, and only then")
        if self.type == MessageType.TEMPLATE:
            self.type = "whatsapp_template"
        if (self.type == "quick_reply") != (self.quick_reply is not None):
            raise ValueError("`quick_reply` is given with type quick_reply, and only then")
        if self.preview_url is not None and self.type not in (MessageType.TEXT, "quick_reply"):
            raise ValueError("`preview_url` is for text messages")
        return self

    @property
    def message_type(self) -> MessageType:
        if self.type == "whatsapp_template":
            return MessageType.TEMPLATE
        return MessageType.TEXT if self.type == "quick_reply" else MessageType(self.type)

    @property
    def preview_text(self) -> str | None:
        return f"[{self.template.name}]" if self.template is not None else self.text

    def extra_payload(self) -> dict[str, Any]:
        """What the message carries besides its text and files: a template, buttons, a quoted message."""
        payload: dict[str, Any] = {}
        if self.template is not None:
            payload["template"] = self.template.model_dump()
        if self.buttons:
            payload["buttons"] = [b.model_dump(exclude_none=True) for b in self.buttons]
        if self.reply_to_message_id is not None:
            payload["reply_to_message_id"] = self.reply_to_message_id
        if self.quick_reply is not None:
            payload["quick_reply"] = self.quick_reply.model_dump(
                by_alias=True, exclude_none=True, exclude_defaults=True
            )
        if self.preview_url:
            payload["preview_url"] = True
        if self.quick_replies:
            payload["quick_replies"] = [q.model_dump(exclude_none=True) for q in self.quick_replies]
        if self.email is not None:
            payload["email"] = self.email.model_dump(exclude_none=True)
        return payload


class ReplyBody(MessageBody):
    channel_id: ID | None = None
    # A comment on the business's post (an incoming message of this conversation) to answer privately,
    # once, within 7 days (Messenger, Instagram).
    private_reply_to_message_id: ID | None = None


class ContactMessageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel_id: ID | None = Field(
        default=None, description="The channel to send through; by default the one the contact last wrote on."
    )
    message: MessageBody


class CommentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=20_000)
    mentions: list[ID] = Field(default_factory=list, max_length=50)


class AssignBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: ID | None = None
    team_id: ID | None = None


class CloseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category_id: ID | None = None
    summary: str | None = Field(default=None, max_length=5_000)
    resume_bot: bool = Field(
        default=False,
        description="Turn the bot back on: a pause does not carry over to the contact's next conversation.",
    )


class BotBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paused: bool


class ReadBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message_id: ID | None = None


class SnippetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shortcut: str = Field(max_length=65)
    text: str = Field(default="", max_length=20_000)
    file_id: ID | None = None


class SnippetPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shortcut: str | None = Field(default=None, max_length=65)
    text: str | None = Field(default=None, max_length=20_000)
    file_id: ID | None = None
    clear_file: bool = False


class RenderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conversation_id: ID


class CategoryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=200)
    position: Position | None = None


class CategoryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    position: Position | None = None


# ----- helpers ------------------------------------------------------------------------------


def _contacts_summary(session: DbSession, workspace_id: int, contact_ids: list[int]) -> dict[int, dict[str, Any]]:
    if not contact_ids:
        return {}
    rows = session.scalars(select(Contact).where(Contact.workspace_id == workspace_id, Contact.id.in_(contact_ids)))
    return {
        c.id: {"id": c.id, "name": c.full_name or c.email or c.phone or f"#{c.id}", "avatar_url": c.avatar_url}
        for c in rows
    }


def _message_page(rows: list[Message], limit: int) -> dict[str, Any]:
    """A page of `rows` (newest first, one more than `limit` when an older page follows), oldest first."""
    page = rows[:limit]
    return {
        "items": [schemas.message_dict(m) for m in reversed(page)],
        "next_before_id": page[-1].id if len(rows) > limit and page else None,
    }


def _conversation_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    decoded = decode_cursor(cursor)
    if decoded is None:
        return None
    try:
        moment, row_id = datetime.fromisoformat(str(decoded["t"])), decoded["id"]
    except (KeyError, ValueError, TypeError) as exc:
        raise ValidationFailed.field("cursor", "not a valid cursor") from exc
    if not is_id(row_id):
        raise ValidationFailed.field("cursor", "not a valid cursor")
    return moment, row_id


# ----- conversations ------------------------------------------------------------------------


@router.get("/conversations")
def list_conversations(
    session: DbSession,
    actor: InboxActor,
    view: Literal["mine", "unassigned", "all", "team"] = "all",
    status: Literal["open", "closed", "all"] = "open",
    team_id: ID | None = None,
    contact: Annotated[
        str | None,
        Query(
            description="Only this contact's: `id:<number>`, `email:<address>` or `phone:<+E.164 number>`",
            json_schema_extra={"pattern": IDENTIFIER_PATTERN, "maxLength": 300},
        ),
    ] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    assignee_id: Annotated[ID | None, Query(description="Only those assigned to this user")] = None,
    channel_id: Annotated[ID | None, Query(description="Only those on this channel")] = None,
    updated_since: Annotated[
        datetime | None,
        Query(description="Only those with a message or a change (status, assignee, team) at or after this time"),
    ] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 30,
) -> dict[str, Any]:
    viewer = service.viewer_for(session, actor)
    visible = viewer.visibility_clause()
    if view == "mine" and actor.user_id is None:
        raise ValidationFailed.field("view", "'mine' needs a signed-in user")
    if view == "mine" and assignee_id is not None:
        raise ValidationFailed.field("assignee_id", "cannot be combined with view=mine")
    if updated_since is not None and updated_since.tzinfo is None:
        raise ValidationFailed.field("updated_since", "must carry a time zone (e.g. 2026-11-26T10:00:00Z)")
    if view == "team" and team_id is None:
        raise ValidationFailed.field("team_id", "is required for view=team")
    contact_ids = None
    if contact:
        found = access_contact(session, actor, contact)
        contact_ids = [found.id]
    rows = repo.conversations_page(
        session,
        actor.workspace_id,
        status=None if status == "all" else ConversationStatus(status),
        visible=visible,
        assignee_id=actor.user_id if view == "mine" else assignee_id,
        unassigned=view == "unassigned",
        team_id=team_id if view == "team" else None,
        contact_ids=contact_ids,
        contact_filter=contacts_repo.search_clause(search) if search else None,
        channel_id=channel_id,
        changed_since=updated_since,
        after=_conversation_cursor(cursor),
        limit=limit,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    unread = repo.unread_counts(session, actor.user_id, [c.id for c in rows]) if actor.user_id else {}
    contacts = _contacts_summary(session, actor.workspace_id, list({c.contact_id for c in rows}))
    items = [
        {**schemas.conversation_dict(c), "contact": contacts.get(c.contact_id), "unread": unread.get(c.id, 0)}
        for c in rows
    ]
    next_cursor = (
        encode_cursor({"t": rows[-1].last_message_at.isoformat(), "id": rows[-1].id}) if more and rows else None
    )
    return {"items": items, "next_cursor": next_cursor}


@router.get("/conversations/{conversation_id}")
def get_conversation(session: DbSession, actor: InboxActor, conversation_id: ID) -> dict[str, Any]:
    conversation = service.access_conversation(session, actor, conversation_id)
    contacts = _contacts_summary(session, actor.workspace_id, [conversation.contact_id])
    contact = contacts_repo.contact_by_id(session, actor.workspace_id, conversation.contact_id)
    window: dict[str, Any] = {}
    answer_on: dict[str, Any] = {}
    if contact is not None:
        now = utcnow()
        if conversation.channel_id is not None:
            channel = session.get(Channel, conversation.channel_id)
            if channel is not None:
                rules = get_adapter(channel.type).rules
                last_incoming = service.last_incoming_on(session, contact, channel)
                closes_at = window_closes_at(rules, last_incoming)
                window = {
                    "channel_type": channel.type,
                    "reply_window_open": window_open(rules, last_incoming, now),
                    "reply_window_seconds": rules.reply_window.total_seconds() if rules.reply_window else None,
                    # When the window closes (or closed), by the server's clock: the composer shows it.
                    "reply_window_closes_at": closes_at.isoformat() if closes_at else None,
                    "templates_outside_window": rules.templates_outside_window,
                    # The tags that let a message out after the window (Messenger, Instagram), each
                    # with the days after the customer's last message it may be used (null: any time).
                    "message_tags": [
                        {"tag": tag, "days": horizon.days if horizon else None} for tag, horizon in rules.message_tags
                    ],
                }
        # The channels the contact can be answered on, for the composer's choice (default: the one
        # they last wrote on).
        reachable = service.reply_channels(session, actor.workspace_id, contact.id)
        default = service.default_reply_channel(session, contact.id, reachable)
        answer_on = {
            "reply_channels": [
                {
                    "id": channel.id,
                    "type": channel.type,
                    "name": channel.name,
                    "reply_window_open": window_open(
                        get_adapter(channel.type).rules, service.last_incoming_on(session, contact, channel), now
                    ),
                }
                for channel in reachable
            ],
            "default_channel_id": default.id if default is not None else None,
        }
    return {
        **schemas.conversation_dict(conversation),
        "contact": contacts.get(conversation.contact_id),
        **window,
        **answer_on,
    }


def _conversation_channel(session: Session, actor: Actor, conversation: Conversation) -> Channel:
    channel = (
        session.scalar(
            select(Channel).where(Channel.workspace_id == actor.workspace_id, Channel.id == conversation.channel_id)
        )
        if conversation.channel_id is not None
        else None
    )
    if channel is None:
        raise ValidationFailed.field("channel_id", "this conversation has no channel yet")
    return channel


@router.get("/conversations/{conversation_id}/templates")
def conversation_templates(session: DbSession, actor: InboxActor, conversation_id: ID) -> dict[str, Any]:
    """The APPROVED message templates of the conversation's channel, for the composer's picker."""
    conversation = service.access_conversation(session, actor, conversation_id)
    channel = _conversation_channel(session, actor, conversation)
    templates = message_templates.templates_of(session, channel, approved_only=True)
    return {"channel_id": channel.id, "items": [message_templates.as_dict(t) for t in templates]}


class TemplatePreviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template: WhatsAppTemplate


@router.post("/conversations/{conversation_id}/template-preview")
@read_only
def template_preview(
    session: DbSession, actor: InboxActor, conversation_id: ID, body: TemplatePreviewBody
) -> dict[str, Any]:
    """The template message as this conversation's customer would read it (variables filled in), or
    the 422 sending it would get."""
    conversation = service.access_conversation(session, actor, conversation_id)
    channel = _conversation_channel(session, actor, conversation)
    contact = contacts_repo.contact_by_id(session, actor.workspace_id, conversation.contact_id)
    if contact is None:
        raise NotFound(f"No conversation {conversation_id}.")
    rendered = service.render_template_parameters(session, actor, contact, body.template.model_dump())
    template, text = message_templates.check_template_message(session, channel, rendered)
    return {"text": text, "template": template}


@router.get("/conversations/{conversation_id}/messages")
def conversation_messages(
    session: DbSession,
    actor: InboxActor,
    conversation_id: ID,
    before_id: ID | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    conversation = service.access_conversation(session, actor, conversation_id)
    rows = repo.messages_page(session, [conversation.id], before_id=before_id, limit=limit)
    return _message_page(rows, limit)


@router.post("/conversations/{conversation_id}/messages", status_code=201)
def reply(session: DbSession, actor: InboxActor, conversation_id: ID, body: ReplyBody) -> dict[str, Any]:
    conversation = service.access_conversation(session, actor, conversation_id, lock=True)
    message = service.do_reply(
        session,
        actor,
        conversation,
        text=body.preview_text,
        message_type=body.message_type,
        file_ids=body.attachments,
        channel_id=body.channel_id,
        payload=body.extra_payload(),
        message_tag=body.message_tag,
        private_reply_to_message_id=body.private_reply_to_message_id,
    )
    return schemas.message_dict(message)


@router.post("/conversations/{conversation_id}/comments", status_code=201)
def comment(session: DbSession, actor: InboxActor, conversation_id: ID, body: CommentBody) -> dict[str, Any]:
    conversation = service.access_conversation(session, actor, conversation_id)
    return schemas.message_dict(service.do_comment(session, actor, conversation, body.text, body.mentions))


@router.post("/conversations/{conversation_id}/assign", response_model=CONVERSATION_RESPONSE)
def assign(session: DbSession, actor: InboxActor, conversation_id: ID, body: AssignBody) -> ConversationSnapshot:
    conversation = service.access_conversation(session, actor, conversation_id, lock=True)
    service.do_assign(session, actor, conversation, user_id=body.user_id, team_id=body.team_id)
    return schemas.conversation_dict(conversation)


@router.post("/conversations/{conversation_id}/close", response_model=CONVERSATION_RESPONSE)
def close(session: DbSession, actor: InboxActor, conversation_id: ID, body: CloseBody) -> ConversationSnapshot:
    conversation = service.access_conversation(session, actor, conversation_id, lock=True)
    service.do_close(
        session, actor, conversation, category_id=body.category_id, summary=body.summary, resume_bot=body.resume_bot
    )
    return schemas.conversation_dict(conversation)


@router.post("/conversations/{conversation_id}/reopen", response_model=CONVERSATION_RESPONSE)
def reopen(session: DbSession, actor: InboxActor, conversation_id: ID) -> ConversationSnapshot:
    conversation = service.access_conversation(session, actor, conversation_id, lock=True)
    service.do_reopen(session, actor, conversation)
    return schemas.conversation_dict(conversation)


@router.post("/conversations/{conversation_id}/bot", response_model=CONVERSATION_RESPONSE)
def bot(session: DbSession, actor: InboxActor, conversation_id: ID, body: BotBody) -> ConversationSnapshot:
    conversation = service.access_conversation(session, actor, conversation_id, lock=True)
    service.do_set_bot_paused(session, actor, conversation, body.paused)
    return schemas.conversation_dict(conversation)


@router.post("/conversations/{conversation_id}/read")
def mark_read(session: DbSession, actor: InboxActor, conversation_id: ID, body: ReadBody) -> dict[str, int]:
    conversation = service.access_conversation(session, actor, conversation_id)
    return {"last_read_message_id": service.do_mark_read(session, actor, conversation, body.message_id)}


class TypingBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Writing an internal note: only teammates are told, never the customer.
    note: bool = False


@router.post("/conversations/{conversation_id}/typing", status_code=204)
def typing(session: DbSession, actor: InboxActor, conversation_id: ID, body: TypingBody | None = None) -> Response:
    conversation = service.access_conversation(session, actor, conversation_id)
    note = body.note if body is not None else False
    event = events.make_event(
        InboxEvent.TYPING, conversation, {"user_id": actor.user_id, "note": note}, visitor=not note
    )
    realtime.publish(event)
    return Response(status_code=204)


# ----- contacts' messages (REST API v1) -------------------------------------------------------


@router.post("/contacts/{identifier}/messages", status_code=201, tags=["messages"])
def send_to_contact(
    session: DbSession, actor: InboxActor, identifier: Identifier, body: ContactMessageBody
) -> dict[str, Any]:
    contact = access_contact(session, actor, identifier)
    channel = service.choose_channel(session, actor, contact, body.channel_id)
    message = service.do_send(
        session,
        actor,
        contact,
        channel,
        text=body.message.preview_text,
        message_type=body.message.message_type,
        file_ids=body.message.attachments,
        payload=body.message.extra_payload(),
        message_tag=body.message.message_tag,
    )
    return {
        "id": message.id,
        "status": message.status.value if message.status else None,
        "conversation_id": message.conversation_id,
        "channel_id": message.channel_id,
    }


@router.get("/contacts/{identifier}/messages", tags=["messages"])
def contact_messages(
    session: DbSession,
    actor: InboxActor,
    identifier: Identifier,
    before_id: ID | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    contact = access_contact(session, actor, identifier)
    viewer = service.viewer_for(session, actor)
    if viewer.see_all:
        rows = repo.contact_messages_page(session, actor.workspace_id, contact.id, before_id=before_id, limit=limit)
    else:
        visible_ids = list(
            session.scalars(
                select(Conversation.id).where(
                    Conversation.workspace_id == actor.workspace_id,
                    Conversation.contact_id == contact.id,
                    repo.visibility_clause(actor.user_id, sorted(viewer.team_ids), unassigned=viewer.see_unassigned),
                )
            )
        )
        rows = repo.messages_page(session, visible_ids, before_id=before_id, limit=limit, include_internal=False)
    return _message_page(rows, limit)


# ----- snippets -----------------------------------------------------------------------------


def _snippet_dict(snippet: Any) -> dict[str, Any]:
    return {"id": snippet.id, "shortcut": snippet.shortcut, "text": snippet.text, "file_id": snippet.file_id}


@router.get("/snippets", tags=["snippets"])
def list_snippets(session: DbSession, actor: InboxActor) -> list[dict[str, Any]]:
    actor.require(Permission.VIEW_CONTACTS)
    return [_snippet_dict(s) for s in repo.snippets(session, actor.workspace_id)]


@router.post("/snippets", status_code=201, tags=["snippets"])
def create_snippet(session: DbSession, actor: InboxActor, body: SnippetBody) -> dict[str, Any]:
    return _snippet_dict(service.do_create_snippet(session, actor, body.shortcut, body.text, body.file_id))


@router.patch("/snippets/{snippet_id}", tags=["snippets"])
def update_snippet(session: DbSession, actor: InboxActor, snippet_id: ID, body: SnippetPatch) -> dict[str, Any]:
    snippet = service.access_snippet(session, actor, snippet_id)
    service.do_update_snippet(
        session,
        actor,
        snippet,
        shortcut=body.shortcut,
        text=body.text,
        file_id=body.file_id,
        clear_file=body.clear_file,
    )
    return _snippet_dict(snippet)


@router.delete("/snippets/{snippet_id}", status_code=204, tags=["snippets"])
def delete_snippet(session: DbSession, actor: InboxActor, snippet_id: ID) -> Response:
    service.do_delete_snippet(session, actor, service.access_snippet(session, actor, snippet_id))
    return Response(status_code=204)


@router.post("/snippets/{snippet_id}/render", tags=["snippets"])
def render_snippet(session: DbSession, actor: InboxActor, snippet_id: ID, body: RenderBody) -> dict[str, Any]:
    snippet = service.access_snippet(session, actor, snippet_id)
    conversation = service.access_conversation(session, actor, body.conversation_id)
    contact = contacts_repo.contact_by_id(session, actor.workspace_id, conversation.contact_id)
    assert contact is not None
    return {"text": service.render_snippet(session, actor, snippet, contact), "file_id": snippet.file_id}


# ----- closing categories -------------------------------------------------------------------


def _category_dict(category: Any) -> dict[str, Any]:
    return {"id": category.id, "name": category.name, "position": category.position}


@router.get("/closing-categories", tags=["closing categories"])
def list_categories(session: DbSession, actor: InboxActor) -> list[dict[str, Any]]:
    return [_category_dict(c) for c in repo.closing_categories(session, actor.workspace_id)]


@router.post("/closing-categories", status_code=201, tags=["closing categories"])
def create_category(session: DbSession, actor: InboxActor, body: CategoryBody) -> dict[str, Any]:
    category = service.do_create_closing_category(session, actor, body.name)
    if body.position is not None:
        service.do_update_closing_category(session, actor, category, name=None, position=body.position)
    return _category_dict(category)


@router.patch("/closing-categories/{category_id}", tags=["closing categories"])
def update_category(session: DbSession, actor: InboxActor, category_id: ID, body: CategoryPatch) -> dict[str, Any]:
    category = service.access_closing_category(session, actor, category_id)
    service.do_update_closing_category(session, actor, category, name=body.name, position=body.position)
    return _category_dict(category)


@router.delete("/closing-categories/{category_id}", status_code=204, tags=["closing categories"])
def delete_category(session: DbSession, actor: InboxActor, category_id: ID) -> Response:
    service.do_delete_closing_category(session, actor, service.access_closing_category(session, actor, category_id))
    return Response(status_code=204)


class AwayMessageBody(BaseModel):
    enabled: bool = False
    text: str = Field("", description="with the inbox's variables ({{contact.first_name}}...)")


@router.get("/workspace/away-message", tags=["away message"], response_model=AwayMessageBody)
def get_away_message(session: DbSession, actor: InboxActor) -> AwayMessageBody:
    row = away.away_settings(session, actor.workspace_id)
    return AwayMessageBody(enabled=row.enabled, text=row.text)


@router.put("/workspace/away-message", tags=["away message"], response_model=AwayMessageBody)
def put_away_message(session: DbSession, actor: InboxActor, body: AwayMessageBody) -> AwayMessageBody:
    row = away.do_set_away_message(session, actor, enabled=body.enabled, text=body.text)
    return AwayMessageBody(enabled=row.enabled, text=row.text)


# ----- files --------------------------------------------------------------------------------


def _file_dict(stored: StoredFile) -> dict[str, Any]:
    return {
        "id": stored.id,
        "name": stored.name,
        "size": stored.size,
        "content_type": stored.content_type,
        "conversation_id": stored.conversation_id,
        "created_at": stored.created_at.isoformat(),
    }


@router.post("/files", status_code=201, tags=["files"])
def upload_file(
    session: DbSession,
    actor: InboxActor,
    file: Annotated[UploadFile, File()],
    conversation_id: Annotated[ID | None, Form()] = None,
) -> dict[str, Any]:
    actor.require(Permission.VIEW_CONTACTS)
    if conversation_id is not None:
        service.access_conversation(session, actor, conversation_id)
    # Read at most one byte past the limit: a bigger file is refused without holding it all.
    data = file.file.read(files.max_bytes() + 1)
    stored = files.do_store_file(
        session,
        actor,
        name=file.filename,
        content_type=file.content_type,
        data=data,
        conversation_id=conversation_id,
    )
    return _file_dict(stored)


@router.get("/files", tags=["files"])
def list_files(
    session: DbSession,
    actor: InboxActor,
    before_id: ID | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    actor.require(Permission.VIEW_CONTACTS)
    rows = files.library_page(session, actor.workspace_id, before_id=before_id, limit=limit)
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": [_file_dict(f) for f in rows], "next_before_id": rows[-1].id if more and rows else None}


def _access_file(session: Session, actor: Actor, file_id: int) -> StoredFile:
    actor.require(Permission.VIEW_CONTACTS)
    stored = session.scalar(
        select(StoredFile).where(StoredFile.workspace_id == actor.workspace_id, StoredFile.id == file_id)
    )
    if stored is None:
        raise NotFound(f"No file {file_id}.")
    if stored.conversation_id is not None:
        service.access_conversation(session, actor, stored.conversation_id)
    return stored


@router.delete("/files/{file_id}", status_code=204, tags=["files"])
def delete_file(session: DbSession, actor: InboxActor, file_id: ID) -> Response:
    files.do_delete_file(session, actor, _access_file(session, actor, file_id))
    return Response(status_code=204)


@router.get(
    "/files/{file_id}",
    tags=["files"],
    response_class=Response,
    responses={200: {"description": "The file's bytes, as its own content type", "content": {"*/*": {}}}},
)
def download_file(session: DbSession, actor: InboxActor, file_id: ID) -> Response:
    stored = _access_file(session, actor, file_id)
    data = storage.get_storage().get(stored.storage_key)
    return Response(
        content=data,
        media_type=stored.content_type,
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(stored.name)}",
            "X-Content-Type-Options": "nosniff",
        },
    )
