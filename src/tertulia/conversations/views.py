"""The Messages module (inbox) pages.

The page is rendered here with everything that does not change while it is open (the people and
teams one can assign to, closing-note categories, the texts the script needs); the conversation
list, the messages and the composer talk to the JSON endpoints of conversations/api.py from
static/js/inbox.js, and live updates arrive over WebSocket /ws. The contact side panel is an htmx
fragment rendered here.
"""

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from tertulia.channels.registry import get_adapter
from tertulia.channels.service import list_channels
from tertulia.contacts import repository as contacts_repo
from tertulia.conversations import files, service
from tertulia.conversations import repository as repo
from tertulia.conversations.api import MAX_FILES
from tertulia.kit.errors import NotFound
from tertulia.kit.http import CheckedInputRoute
from tertulia.kit.types import ID
from tertulia.segments.service import segments_of_contact
from tertulia.users.permissions import Permission
from tertulia.users.service import list_members
from tertulia.users.teams import list_teams
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext

router = APIRouter(prefix="/messages", include_in_schema=False, route_class=CheckedInputRoute)

# Texts the inbox script shows; translated here so the script carries no language of its own.
SCRIPT_TEXTS: dict[str, str] = {
    "unassigned": i18n.lazy("Unassigned"),
    # Activity statuses beside people (users/presence.py).
    "status_online": i18n.lazy("Online"),
    "status_away": i18n.lazy("Away"),
    "status_busy": i18n.lazy("Busy"),
    "status_offline": i18n.lazy("Offline"),
    # System lines are stored in English for the API; the inbox shows them in the reader's language.
    "sys_assigned": i18n.lazy("Assigned to %(name)s"),
    "sys_closed": i18n.lazy("Closed (system line)"),
    "sys_closed_as": i18n.lazy("Closed: %(category)s"),
    "sys_auto_closed": i18n.lazy("Closed automatically after inactivity"),
    "sys_reopened": i18n.lazy("Reopened"),
    "sys_bot_paused": i18n.lazy("Bot paused"),
    "sys_bot_resumed": i18n.lazy("Bot resumed"),
    "no_conversations": i18n.lazy("No conversations here."),
    "pick_conversation": i18n.lazy("Pick a conversation to read it."),
    "load_older": i18n.lazy("Loading older messages…"),
    "internal": i18n.lazy("Internal note"),
    "open": i18n.lazy("Open (conversation status)"),
    "closed": i18n.lazy("Closed (conversation status)"),
    "failed": i18n.lazy("Failed"),
    "pending": i18n.lazy("Sending"),
    "sent": i18n.lazy("Sent"),
    "delivered": i18n.lazy("Delivered"),
    "read": i18n.lazy("Read"),
    "no_snippets": i18n.lazy("No snippet matches."),
    "new_message_from": i18n.lazy("New message from %(name)s"),
    "mentioned_you": i18n.lazy("%(name)s mentioned you in a note"),
    "error": i18n.lazy("Something went wrong. Try again."),
    "reconnecting": i18n.lazy("Reconnecting…"),
    "notifications_on": i18n.lazy("Notifications on"),
    "window_closed": i18n.lazy("The reply window of this channel has closed; the customer must write first."),
    "window_open_until": i18n.lazy("24-hour window open until %(time)s: any message can be sent."),
    "sms_segments": i18n.lazy("SMS: %(segments)s segment(s) · %(units)s/%(limit)s (%(encoding)s)"),
    "window_closed_templates": i18n.lazy(
        "The 24-hour window has closed: only approved templates can be sent until the customer writes again."
    ),
    "window_closed_templates_at": i18n.lazy(
        "The 24-hour window closed on %(time)s: only approved templates can be sent until the customer writes again."
    ),
    "templates_only": i18n.lazy("Free text cannot be sent outside the 24-hour window; choose a template."),
    "template_choose": i18n.lazy("Choose a template…"),
    "template_none": i18n.lazy("This channel has no approved templates. A manager can sync them in Settings."),
    "template_parameter": i18n.lazy("%(part)s %(name)s"),
    "template_header": i18n.lazy("Header"),
    "template_body": i18n.lazy("Body"),
    "template_value_hint": i18n.lazy("A value or a variable"),
    "template_fill_all": i18n.lazy("Fill in every parameter to see the message."),
    "template_media_header": i18n.lazy("This template's header takes a file or a place; send it through the API."),
    "no_members": i18n.lazy("No teammate matches."),
    "no_emoji": i18n.lazy("No emoji matches."),
    "remove_file": i18n.lazy("Remove %(name)s"),
    "file_too_big": i18n.lazy("%(name)s is larger than %(size)s."),
    "file_type": i18n.lazy("Files of type %(type)s cannot be sent."),
    "file_empty": i18n.lazy("%(name)s is empty."),
    "too_many_files": i18n.lazy("At most %(count)s files per message."),
    "uploading": i18n.lazy("Wait until the files have uploaded."),
    "upload_failed": i18n.lazy("%(name)s could not be uploaded: %(reason)s"),
    "notes_no_files": i18n.lazy("Internal notes cannot carry files; switch to Reply."),
    "unsafe_text": i18n.lazy("The message must not contain NUL characters or unpaired surrogates."),
    "quote": i18n.lazy("Quote"),
    "email_quoted": i18n.lazy("Quoted text"),
    "email_signature": i18n.lazy("Signature"),
    "email_html": i18n.lazy("Show as sent (HTML)"),
    "email_images": i18n.lazy("Load remote images"),
    "email_bad_address": i18n.lazy("is not a valid email address"),
    "email_too_many": i18n.lazy("at most 50 recipients"),
    "email_subject_long": i18n.lazy("must be at most 998 characters"),
    "quoting": i18n.lazy("Replying to: %(text)s"),
    "emoji_smileys": i18n.lazy("Smileys"),
    "emoji_people": i18n.lazy("People and gestures"),
    "emoji_nature": i18n.lazy("Animals and nature"),
    "emoji_food": i18n.lazy("Food and drink"),
    "emoji_activities": i18n.lazy("Activities"),
    "emoji_travel": i18n.lazy("Travel and places"),
    "emoji_objects": i18n.lazy("Objects"),
    "emoji_symbols": i18n.lazy("Symbols"),
    "edited": i18n.lazy("edited"),
    "location": i18n.lazy("Location"),
    "shared_contact": i18n.lazy("Contact card"),
    "chose": i18n.lazy("Chose: %(choice)s"),
    "unsupported": i18n.lazy("Not shown here: %(kind)s"),
    "window_closed_tags": i18n.lazy(
        "The 24-hour reply window has closed: only a message with a message tag that fits it can be sent."
    ),
    "message_tag": i18n.lazy("Message tag"),
    "reply_privately": i18n.lazy("Reply privately"),
    "replying_privately": i18n.lazy(
        "Your next reply goes privately to this comment's author in Messenger (one reply per comment)."
    ),
    "private_reply_sent": i18n.lazy("Answered privately"),
    "no_message_tag": i18n.lazy("No tag"),
    "tag_ACCOUNT_UPDATE": i18n.lazy(
        "Account update: a change to the customer's account or application (not promotional)."
    ),
    "tag_POST_PURCHASE_UPDATE": i18n.lazy(
        "Post-purchase update: news about a purchase the customer made (shipping, receipt, problem)."
    ),
    "tag_CONFIRMED_EVENT_UPDATE": i18n.lazy(
        "Confirmed event update: a reminder or change for an event the customer registered for."
    ),
    "tag_HUMAN_AGENT": i18n.lazy(
        "Human agent: a person's answer to the customer's question, up to 7 days after they last wrote."
    ),
    "file_unavailable": i18n.lazy("%(name)s was not downloaded: %(reason)s"),
    # The composer's reply buttons and lists.
    "choices_buttons_hint": i18n.lazy(
        "Up to %(count)s buttons of up to %(length)s characters; the customer's pick comes back as their answer."
    ),
    "choices_list_hint": i18n.lazy(
        "Up to %(rows)s rows in all, titles of up to %(length)s characters; "
        "the customer opens the list with its button."
    ),
    "choice_button": i18n.lazy("Button %(n)s"),
    "remove_choice": i18n.lazy("Remove button %(n)s"),
    "add_button": i18n.lazy("Add a button"),
    "list_button": i18n.lazy("Label of the button that opens the list"),
    "list_section": i18n.lazy("Section %(n)s"),
    "section_title": i18n.lazy("Section title"),
    "remove_section": i18n.lazy("Remove section %(n)s"),
    "row_title": i18n.lazy("Row %(n)s"),
    "row_description": i18n.lazy("Description (optional)"),
    "remove_row": i18n.lazy("Remove row %(n)s"),
    "add_row": i18n.lazy("Add a row"),
    "add_section": i18n.lazy("Add a section"),
    "choice_required": i18n.lazy("Write a title."),
    "choice_too_long": i18n.lazy("At most %(count)s characters."),
    "choice_too_long_bytes": i18n.lazy("Too long for this channel (at most %(count)s bytes): shorten it."),
    "choice_duplicate": i18n.lazy("Each choice needs a different title."),
    "section_title_required": i18n.lazy("With several sections, each needs a title."),
    "choices_fix": i18n.lazy("Fix the buttons marked below."),
    "choices_need_text": i18n.lazy("Write the message the buttons go under."),
    "choices_text_too_long": i18n.lazy("At most %(count)s characters above reply buttons."),
    "choices_no_files": i18n.lazy("Buttons go without files: send the files in a message of their own."),
    "picked": i18n.lazy("Picked by the customer"),
}


def _reply_choices(channel_type: str) -> dict[str, Any] | None:
    limits = get_adapter(channel_type).rules.reply_choices
    return asdict(limits) if limits is not None else None


def _member_name(first: str | None, last: str | None, email: str) -> str:
    name = " ".join(part for part in (first, last) if part)
    return name or email


@router.get("")
def inbox(ctx: UserPage) -> Response:
    return _inbox(ctx, None)


@router.get("/{conversation_id}")
def inbox_conversation(ctx: UserPage, conversation_id: ID) -> Response:
    # Checked here so a link to a conversation one may not see is a 404 page, not an empty pane.
    service.access_conversation(ctx.session, ctx.actor, conversation_id)
    return _inbox(ctx, conversation_id)


def _inbox(ctx: WebContext, conversation_id: int | None) -> Response:
    actor = ctx.actor
    viewer = service.viewer_for(ctx.session, actor)
    members = [
        {
            "id": m.user.id,
            "name": _member_name(m.user.first_name, m.user.last_name, m.user.email),
            "status": m.user.activity_status.value,  # shown beside them, kept live by presence.changed
        }
        for m in list_members(ctx.session, actor, include_inactive=False)
    ]
    teams = [{"id": t.team.id, "name": t.team.name} for t in list_teams(ctx.session, actor)]
    if not viewer.see_all:
        # Agents may assign only to themselves or their teams (service.do_assign): offer no more.
        members = [m for m in members if m["id"] == actor.user_id]
        teams = [t for t in teams if t["id"] in viewer.team_ids]
    # Names for the history (senders, mentions), and whom a note may @mention: every active
    # member, whoever one may assign to.
    people = [
        {
            "id": m.user.id,
            "name": _member_name(m.user.first_name, m.user.last_name, m.user.email),
            "active": m.membership.active,
        }
        for m in list_members(ctx.session, actor, include_inactive=True)
    ]
    categories = [{"id": c.id, "name": c.name} for c in repo.closing_categories(ctx.session, actor.workspace_id)]
    # Each conversation and message shows its channel (icon and name); the composer offers reply
    # buttons (and lists) within the channel's limits.
    channels = [
        {"id": c.id, "type": c.type, "name": c.name, "reply_choices": _reply_choices(c.type)}
        for c in list_channels(ctx.session, actor.workspace_id)
    ]
    data = {
        "user_id": actor.user_id,
        "see_all": viewer.see_all,
        "conversation_id": conversation_id,
        "members": members,
        "people": people,
        "upload": {"max_bytes": files.max_bytes(), "types": list(files.ALLOWED_TYPES), "max_files": MAX_FILES},
        "teams": teams,
        "categories": categories,
        "channels": channels,
        "texts": {key: ctx.fmt.gettext(text) for key, text in SCRIPT_TEXTS.items()},
        "language": ctx.fmt.language,
    }
    return ctx.render(
        "conversations/inbox.html",
        {"data": data, "teams": teams, "see_all": viewer.see_all, "categories": categories},
        active="messages",
    )


@router.get("/contacts/{contact_id}/panel")
def contact_panel(ctx: UserPage, contact_id: ID, conversation_id: ID) -> Response:
    """The side panel: who the contact is, their tags and the segments they are in."""
    conversation = service.access_conversation(ctx.session, ctx.actor, conversation_id)
    if conversation.contact_id != contact_id:
        raise NotFound("Contact not found.")
    contact = contacts_repo.contact_by_id(ctx.session, ctx.actor.workspace_id, contact_id)
    if contact is None:
        raise NotFound("Contact not found.")
    custom = contact.custom or {}
    fields = contacts_repo.custom_fields(ctx.session, ctx.actor.workspace_id)
    custom_values = [(f.label, custom.get(f.key)) for f in fields if custom.get(f.key) not in (None, "", [])]
    tags = contacts_repo.tag_names_by_contact(ctx.session, [contact.id]).get(contact.id, [])
    segments = segments_of_contact(ctx.session, ctx.actor, contact) if ctx.actor.can(Permission.VIEW_CONTACTS) else []
    return ctx.render(
        "conversations/_contact_panel.html",
        {
            "contact": contact,
            "custom_values": custom_values,
            "tags": tags,
            "segments": segments,
            "conversation_id": conversation.id,
        },
    )
