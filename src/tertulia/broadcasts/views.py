"""Broadcasts in the web app (Owners and Managers only, as the API): the list with its status filter
and a month calendar of scheduled broadcasts, the draft editor with a preview as three real contacts
of the audience would receive it, the dry run, scheduling, and the live results page.

Every page calls the broadcasts service (service.py) for the rules; this module only reads forms,
maps the service's field names onto the form's fields and draws the pages. The results page polls
`/broadcasts/{id}/live` (an HTML fragment, htmx `every 5s`) while the broadcast is scheduled,
sending or paused: the backend emits no broadcast events on the agents' socket.
"""

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Query
from sqlalchemy import select
from starlette.responses import Response

from tertulia.broadcasts import hooks, service, template_form
from tertulia.broadcasts.audience import UNSUPPORTED_TYPES
from tertulia.broadcasts.models import Audience, Broadcast, BroadcastStatus, ChannelMode
from tertulia.channels.message_templates import (
    component_text,
    file_header,
    find_template,
    language_key,
    slots,
    templates_of,
)
from tertulia.channels.models import Channel, MessageTemplate
from tertulia.channels.service import provider_name
from tertulia.kit.clock import as_utc, utcnow
from tertulia.kit.errors import Conflict, DomainError, ValidationFailed
from tertulia.kit.http import CheckedInputRoute, writes
from tertulia.kit.types import ID
from tertulia.segments.models import Segment
from tertulia.users.permissions import Permission
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext
from tertulia.web.forms import errors_beside, field_errors, submit

router = APIRouter(prefix="/broadcasts", include_in_schema=False, route_class=CheckedInputRoute)

STATUS_LABELS: dict[str, str] = {
    "draft": i18n.lazy("Draft"),
    "scheduled": i18n.lazy("Scheduled"),
    "sending": i18n.lazy("Sending"),
    "paused": i18n.lazy("Paused"),
    "completed": i18n.lazy("Completed"),
    "failed": i18n.lazy("Failed"),
    "cancelled": i18n.lazy("Cancelled"),
}
RECIPIENT_STATUS_LABELS: dict[str, str] = {
    "waiting": i18n.lazy("Waiting"),
    "excluded": i18n.lazy("Excluded"),
    "skipped": i18n.lazy("Skipped"),
    "messaged": i18n.lazy("Queued"),
    "pending": i18n.lazy("Pending"),
    "sent": i18n.lazy("Sent"),
    "delivered": i18n.lazy("Delivered"),
    "read": i18n.lazy("Read"),
    "failed": i18n.lazy("Failed"),
}
REASON_LABELS: dict[str, str] = {
    "excluded_segment": i18n.lazy("In the excluded segment"),
    "blocked": i18n.lazy("Blocked"),
    "opted_out": i18n.lazy("Unsubscribed from broadcasts"),
    "no_identity": i18n.lazy("Not reachable on the channel"),
    "window_closed": i18n.lazy("Reply window closed"),
    "variable_empty": i18n.lazy("A variable without value or fallback"),
    "messaging_limit": i18n.lazy("Over the WhatsApp messaging limit"),
    "stopped": i18n.lazy("Stopped before their turn"),
    "header_too_long": i18n.lazy("Their values make the template's header longer than 60 characters"),
    "body_parameter_too_long": i18n.lazy(
        "Their values make a body parameter of the template longer than 1024 characters"
    ),
    "parameter_spacing": i18n.lazy(
        "Their values put a tab, a line break or more than 4 spaces in a row in a parameter of the template"
    ),
}
# The editor's template fields, named where the dry run points at them.
FIELD_LABELS: dict[str, str] = {
    "template_name": i18n.lazy("Template name"),
    "template_header": i18n.lazy("Header text value"),
    "template_header_media": i18n.lazy("Header file (https link or media id)"),
    "template_header_filename": i18n.lazy("Document file name"),
    "template_header_latitude": i18n.lazy("Latitude"),
    "template_header_longitude": i18n.lazy("Longitude"),
    "template_header_place_name": i18n.lazy("Place name"),
    "template_header_address": i18n.lazy("Address"),
    "template_params": i18n.lazy("Body parameters"),
}
# A template's header that is a file or a place, in the list of templates (its text header otherwise).
HEADER_KINDS: dict[str, str] = {
    "image": i18n.lazy("(an image)"),
    "video": i18n.lazy("(a video)"),
    "document": i18n.lazy("(a document)"),
    "location": i18n.lazy("(a place)"),
}
PREVIEW_NEEDS_TEMPLATE = i18n.lazy("Complete the template's parameters (beside the fields) to see the preview.")
SCHEDULE_NEEDS_TEMPLATE = i18n.lazy("Complete the template's parameters in the editor first (see above).")
# The Messenger tags a broadcast may carry outside the 24-hour window (the adapter checks them too).
MESSAGE_TAGS = ("ACCOUNT_UPDATE", "POST_PURCHASE_UPDATE", "CONFIRMED_EVENT_UPDATE")
# The channel types a broadcast can be sent on, each of which may have a text of its own instead of
# the default one (the editor's `text_<type>` fields).
OWN_TEXT_TYPES = ("whatsapp", "messenger", "telegram", "email", "twilio", "vonage", "bird")
VARIABLES = (
    "contact.first_name",
    "contact.last_name",
    "contact.full_name",
    "contact.email",
    "contact.phone",
    "contact.country",
    "workspace.name",
)
LIVE_STATUSES = frozenset({BroadcastStatus.SCHEDULED, BroadcastStatus.SENDING, BroadcastStatus.PAUSED})
CALENDAR_STATUSES = frozenset(
    {BroadcastStatus.SCHEDULED, BroadcastStatus.SENDING, BroadcastStatus.PAUSED, BroadcastStatus.COMPLETED}
)
BAR_LABELS: dict[str, str] = {
    "sent": i18n.lazy("Sent"),
    "delivered": i18n.lazy("Delivered"),
    "read": i18n.lazy("Read"),
    "replied": i18n.lazy("Replied"),
    "failed": i18n.lazy("Failed"),
}
RESULT_BARS = ("sent", "delivered", "read", "replied", "failed")
RECIPIENTS_SHOWN = 200
# Messages the service raises that a page shows beside a field (extraction only; the wording is the service's).
SERVICE_MESSAGES = (
    i18n.lazy("is required"),
    i18n.lazy("choose the audience's segment (or audience all)"),
    i18n.lazy("choose a channel (or channel_mode last_interacted)"),
    i18n.lazy("no content for this channel"),
    i18n.lazy("needs a text, a file or a template"),
    i18n.lazy("is in the past"),
    i18n.lazy("must be a segment id"),
    i18n.lazy("must be a channel id"),
    i18n.lazy("must be one word of 1 to 64 characters"),
    i18n.lazy("must be a list of at most 30 keywords"),
)


def _require(ctx: WebContext) -> None:
    ctx.actor.require(Permission.MANAGE_BROADCASTS)


def _item(ctx: WebContext, broadcast_id: int) -> Broadcast:
    return service.access_broadcast(ctx.session, ctx.actor, broadcast_id)


def _zone(ctx: WebContext) -> ZoneInfo:
    return service.workspace_zone(ctx.session, ctx.actor.workspace_id)


def _in_zone(value: datetime | None, zone: ZoneInfo) -> str:
    return as_utc(value).astimezone(zone).strftime("%Y-%m-%d %H:%M") if value else ""


def _times(ctx: WebContext, value: datetime | None) -> dict[str, str]:
    """A time in the workspace's zone and in the reader's own."""
    zone = _zone(ctx)
    return {
        "workspace": f"{_in_zone(value, zone)} ({zone.key})" if value else "",
        "mine": f"{_in_zone(value, ctx.fmt.zone)} ({ctx.fmt.zone.key})" if value else "",
        "same": str(zone.key == ctx.fmt.zone.key),
    }


def _labels(ctx: WebContext) -> dict[str, Any]:
    return {
        "status_labels": {k: ctx.fmt.gettext(v) for k, v in STATUS_LABELS.items()},
        "recipient_labels": {k: ctx.fmt.gettext(v) for k, v in RECIPIENT_STATUS_LABELS.items()},
        "reason_labels": {k: ctx.fmt.gettext(v) for k, v in REASON_LABELS.items()},
    }


def _channels(ctx: WebContext) -> list[Channel]:
    rows = ctx.session.scalars(
        select(Channel).where(Channel.workspace_id == ctx.actor.workspace_id).order_by(Channel.name)
    )
    return [c for c in rows if c.type not in UNSUPPORTED_TYPES]


def _segments(ctx: WebContext) -> list[Segment]:
    return list(
        ctx.session.scalars(
            select(Segment).where(Segment.workspace_id == ctx.actor.workspace_id).order_by(Segment.name)
        )
    )


# ----- the list and its calendar ------------------------------------------------------------------


@dataclass
class Day:
    day: date | None
    items: list[tuple[Broadcast, str]]
    today: bool


def _month(value: str | None, today: date) -> date:
    try:
        year, _, number = (value or "").partition("-")
        return date(int(year), int(number), 1)
    except ValueError:
        return today.replace(day=1)


def _calendar(items: list[Broadcast], month: date, zone: ZoneInfo, today: date) -> list[list[Day]]:
    """The month's weeks (Monday first); each day the broadcasts scheduled then, in the reader's zone."""
    by_day: dict[date, list[tuple[Broadcast, str]]] = {}
    for item in items:
        if item.scheduled_at is None:
            continue
        local = as_utc(item.scheduled_at).astimezone(zone)
        by_day.setdefault(local.date(), []).append((item, local.strftime("%H:%M")))
    weeks = []
    for week in calendar.Calendar(firstweekday=0).monthdatescalendar(month.year, month.month):
        weeks.append(
            [
                Day(d if d.month == month.month else None, sorted(by_day.get(d, []), key=lambda x: x[1]), d == today)
                for d in week
            ]
        )
    return weeks


def _scheduled_between(ctx: WebContext, first: date, last: date) -> list[Broadcast]:
    """The calendar's broadcasts: those with a time in [first, last) (a week's margin each side covers
    every time zone and the weeks the grid shows of the months around)."""
    _require(ctx)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC)
    return list(
        ctx.session.scalars(
            select(Broadcast)
            .where(
                Broadcast.workspace_id == ctx.actor.workspace_id,
                Broadcast.scheduled_at >= start,
                Broadcast.scheduled_at < end,
                Broadcast.status.in_(list(CALENDAR_STATUSES)),
            )
            .order_by(Broadcast.scheduled_at)
            .limit(1000)
        )
    )


def _bar_labels(ctx: WebContext) -> dict[str, str]:
    return {key: ctx.fmt.gettext(label) for key, label in BAR_LABELS.items()}


@router.get("")
def broadcasts_page(
    ctx: UserPage,
    status: Annotated[str | None, Query(max_length=20)] = None,
    month: Annotated[str | None, Query(max_length=7)] = None,
) -> Response:
    return _list(ctx, status or None, month)


def _list(
    ctx: WebContext,
    status: str | None,
    month: str | None = None,
    *,
    typed: str = "",
    keywords: str | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    _require(ctx)
    if status not in STATUS_LABELS:
        status = None
    items = service.list_broadcasts(ctx.session, ctx.actor, status=status, limit=200)[:200]
    zone = ctx.fmt.zone
    today = utcnow().astimezone(zone).date()
    shown = _month(month, today)
    previous = (shown - timedelta(days=1)).replace(day=1)
    following = (shown + timedelta(days=32)).replace(day=1)
    scheduled = _scheduled_between(ctx, shown - timedelta(days=7), following + timedelta(days=7))
    counts = service.summaries(ctx.session, ctx.actor, items)
    context = {
        "broadcasts": items,
        "status": status,
        "counts": counts,
        "weeks": _calendar(scheduled, shown, zone, today),
        "month": shown,
        "month_key": shown.strftime("%Y-%m"),
        "previous": previous.strftime("%Y-%m"),
        "following": following.strftime("%Y-%m"),
        "weekdays": [ctx.fmt.date(date(2024, 1, 1) + timedelta(days=n), "EEE") for n in range(7)],
        "zone": zone.key,
        "workspace_zone": _zone(ctx).key,
        "typed": typed,
        "errors": errors or {},
        "keywords": keywords
        if keywords is not None
        else ", ".join(service.unsubscribe_keywords(ctx.session, ctx.actor.workspace_id)),
        "times": {b.id: _times(ctx, b.scheduled_at) for b in items},
        **_labels(ctx),
    }
    return ctx.render("broadcasts/list.html", context, active="broadcasts", status_code=status_code)


@router.post("")
def create_broadcast(ctx: UserPage, name: Annotated[str, Form(max_length=500)] = "") -> Response:
    _require(ctx)
    return submit(
        ctx,
        lambda: service.do_create_broadcast(ctx.session, ctx.actor, service.DraftFields(name=name)),
        again=lambda exc: _list(ctx, None, typed=name, errors=errors_beside(ctx, exc), status_code=422),
        done=lambda item: ctx.redirect(f"/broadcasts/{item.id}"),
    )


@router.post("/unsubscribe-keywords")
def save_unsubscribe_keywords(ctx: UserPage, keywords: Annotated[str, Form(max_length=3000)] = "") -> Response:
    """The words that, sent alone by a contact, stop their broadcasts (commas or spaces between them)."""
    _require(ctx)
    words = [w for w in keywords.replace(",", " ").split() if w]

    def again(exc: DomainError) -> Response:
        message = "; ".join(field_errors(ctx, exc).values())
        return _list(ctx, None, keywords=keywords, errors={"keywords": message}, status_code=422)

    return submit(
        ctx,
        lambda: service.do_set_unsubscribe_keywords(ctx.session, ctx.actor, words),
        again=again,
        redirect="/broadcasts#keywords",
        flash="settings_saved",
    )


# ----- the editor -------------------------------------------------------------------------------


def _typed(item: Broadcast) -> dict[str, str]:
    """The editor's fields as the stored draft fills them."""
    content = item.content or {}
    default = content.get("default") or {}
    whatsapp = content.get("whatsapp") or {}
    messenger = content.get("messenger") or {}
    template = whatsapp.get("template") or {}
    params: list[str] = []
    header: list[str] = []
    media, filename = "", ""
    place = dict.fromkeys(template_form.PLACE_FIELDS, "")
    named: set[str] = set()
    for component in template.get("components") or []:
        for parameter in component.get("parameters") or []:
            name = parameter.get("parameter_name")
            file = template_form.file_parameter(parameter)
            shown_place = template_form.place_parameter(parameter)
            if file is not None:  # the header's file: its link or media id and a document's name
                media, filename = file
            elif shown_place is not None:  # the header's place: its coordinates, name and address
                place = shown_place
            elif str(component.get("type", "")).lower() == "header":
                # The header's text value has its own field, named or not (a named one was once a
                # `name = value` line: a draft saved then opens with it in the field).
                header.append(str(parameter.get("text", "")))
            elif name is None:
                params.append(str(parameter.get("text", "")))
            elif name not in named:
                named.add(name)
                params.append(f"{name} = {parameter.get('text', '')}")
    language = template.get("language")
    quick = default.get("quick_reply") or {}
    return {
        "name": item.name,
        "labels": ", ".join(item.labels or []),
        "audience": item.audience.value if item.audience != Audience.RESEND else "resend",
        "segment_id": str(item.segment_id or ""),
        "exclude_segment_id": str(item.exclude_segment_id or ""),
        "channel_mode": item.channel_mode.value,
        "channel_id": str(item.channel_id or ""),
        "text": str(default.get("text") or ""),
        "file_id": str((default.get("file_ids") or [""])[0]),
        "quick_replies": "\n".join(b.get("title", "") for b in quick.get("buttons") or []),
        "buttons": "\n".join(
            f"{b.get('title', '')} | {b['url']}" if b.get("url") else str(b.get("title", ""))
            for b in default.get("buttons") or []
        ),
        "template_name": str(template.get("name") or ""),
        "template_language": str(language.get("code") if isinstance(language, dict) else language or ""),
        "template_header": " ".join(header),
        "template_header_media": media,
        "template_header_filename": filename,
        **place,
        "template_params": "\n".join(params),
        "message_tag": str(messenger.get("message_tag") or ""),
        "reply_window_hours": str(item.reply_window_hours),
        "reply_workflow_id": str(item.reply_workflow_id or ""),
        **{f"text_{kind}": _own_text(content, kind) for kind in OWN_TEXT_TYPES},
    }


def _own_text(content: dict[str, Any], kind: str) -> str:
    """A channel type's own text, when it has one other than the default's."""
    own = (content.get(kind) or {}).get("text")
    default = (content.get("default") or {}).get("text")
    return str(own) if own is not None and own != default else ""


def _text_types(ctx: WebContext, channels: list[Channel], typed: dict[str, str]) -> list[tuple[str, str]]:
    """The channel types the editor offers a text of their own for: those with a channel in the
    workspace, and any that already has one (so that saving keeps it)."""
    connected = {c.type for c in channels}
    return [
        (kind, ctx.fmt.gettext(provider_name(kind)))
        for kind in OWN_TEXT_TYPES
        if kind in connected or typed.get(f"text_{kind}", "").strip()
    ]


def _form_field(key: str, header_first: bool = False, own_texts: frozenset[str] = frozenset()) -> str:
    """The editor's field for a name the service gave (`header_first`: the template's first
    component is the header field's value; `own_texts`: the channel types given a text of their own)."""
    kind, _, rest = key.removeprefix("content.").partition(".")
    if key.startswith("content.") and kind in own_texts and rest.startswith("text"):
        return f"text_{kind}"
    if header_first and key.startswith("content.whatsapp.template.components[0]"):
        return "template_header"
    if key.startswith("content.whatsapp.template") or key == "content.whatsapp":
        return "template_name" if key in ("content.whatsapp.template", "content.whatsapp") else "template_params"
    if key.startswith("content.messenger.message_tag") or key == "content.messenger":
        return "message_tag"
    if ".file_ids" in key or key.startswith("attachments"):
        return "file_id"
    if ".quick_reply" in key:
        return "quick_replies"
    if ".buttons" in key:
        return "buttons"
    if key.startswith("content"):
        return "text"
    if key.startswith("labels"):
        return "labels"
    return key


FORM_FIELDS = frozenset(
    {
        "name",
        "labels",
        "audience",
        "segment_id",
        "exclude_segment_id",
        "channel_mode",
        "channel_id",
        "text",
        "file_id",
        "quick_replies",
        "buttons",
        "template_name",
        "template_language",
        "template_header",
        "template_header_media",
        "template_header_filename",
        *template_form.PLACE_FIELDS,
        "template_params",
        "message_tag",
        "reply_window_hours",
        "reply_workflow_id",
        *(f"text_{kind}" for kind in OWN_TEXT_TYPES),
        "then",
        "scheduled_at",
        "over_limit",
    }
)


def _mapped(
    ctx: WebContext, exc: DomainError, header_first: bool = False, own_texts: frozenset[str] = frozenset()
) -> dict[str, str]:
    """The service's messages beside the editor's fields; one that names no field of the form on top."""
    errors: dict[str, str] = {}
    for key, message in field_errors(ctx, exc).items():
        field = _form_field(key, header_first, own_texts)
        errors.setdefault(field if field in FORM_FIELDS else "__all__", message)
    return errors


def _refusal(ctx: WebContext, exc: DomainError) -> str:
    """An action's refusal that names no field, in the reader's language where the catalogue has it."""
    if isinstance(exc, Conflict) and exc.code == "broadcast_status":
        status = exc.details.get("status") if isinstance(exc.details, dict) else None
        label = ctx.fmt.gettext(STATUS_LABELS.get(str(status), str(status)))
        return ctx.fmt.gettext(i18n.lazy("This cannot be done while the broadcast is %(status)s.")) % {
            "status": label.lower()
        }
    if isinstance(exc, Conflict) and exc.code == "nothing_failed":
        return ctx.fmt.gettext(i18n.lazy("No recipient of this broadcast failed."))
    if isinstance(exc, Conflict):
        return ctx.fmt.gettext(exc.message)
    return "; ".join(field_errors(ctx, exc).values())


def _int(value: str, key: str) -> int | None:
    text = value.strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 15:
        raise ValidationFailed.field(key, i18n.lazy("must be a whole number"))
    return int(text)


def _stored_template(ctx: WebContext, name: str, language: str) -> MessageTemplate | None:
    """The workspace's synced WhatsApp template of this name and language (any of its numbers: the
    numbers of one business account share them), to read its parameter format and names."""
    for channel in _channels(ctx):
        if channel.type == "whatsapp":
            found = find_template(ctx.session, channel, name, language)
            if found is not None:
                return found
    return None


def _beside(ctx: WebContext, problems: list[template_form.Problem]) -> dict[str, str]:
    """The template's problems in the reader's language, joined per field."""
    by_field: dict[str, list[str]] = {}
    for problem in problems:
        by_field.setdefault(problem.beside, []).append(ctx.fmt.gettext(problem.message) % problem.values)
    return {key: "; ".join(messages) for key, messages in by_field.items()}


def _draft_template(item: Broadcast) -> tuple[str, str, Any] | None:
    """The stored draft's WhatsApp template: name, language code and components."""
    template = ((item.content or {}).get("whatsapp") or {}).get("template")
    if not isinstance(template, dict) or not template.get("name"):
        return None
    language = template.get("language")
    code = language.get("code") if isinstance(language, dict) else language
    return str(template["name"]), str(code or ""), template.get("components")


def _may_use_whatsapp(ctx: WebContext, item: Broadcast) -> bool:
    """Whether the draft may go out on a WhatsApp number (its channel, not chosen yet, or each
    contact's last with a WhatsApp number in the workspace): only then is its template's due."""
    whatsapp = {c.id for c in _channels(ctx) if c.type == "whatsapp" and c.active}
    if item.channel_mode == ChannelMode.LAST_INTERACTED:
        return bool(whatsapp)
    return item.channel_id is None or item.channel_id in whatsapp


def _draft_problems(ctx: WebContext, item: Broadcast) -> dict[str, str]:
    """What the stored draft's template still lacks, beside the editor's fields (empty: nothing).
    The dry run and scheduling are refused while there is any."""
    found = _draft_template(item)
    if found is None or not _may_use_whatsapp(ctx, item):
        return {}
    name, language, components = found
    stored = _stored_template(ctx, name, language)
    return _beside(ctx, template_form.completeness(stored, name, language, components))


def _content(ctx: WebContext, form: dict[str, str], item: Broadcast) -> dict[str, Any]:
    """The content per channel type from the editor: the text (any channel), the WhatsApp template
    (sent when a contact's reply window is closed) and the Messenger tag. The draft (`item`) as
    stored gives its template's parameter names when the template is no longer synced."""
    content: dict[str, Any] = {}
    default: dict[str, Any] = {}
    if form["text"].strip():
        default["text"] = form["text"]
    file_id = _int(form["file_id"], "file_id")
    if file_id is not None:
        default["file_ids"] = [file_id]
    titles = [line.strip() for line in form["quick_replies"].splitlines() if line.strip()]
    if titles:
        default["quick_reply"] = {"buttons": [{"id": t[:64], "title": t} for t in titles]}
    buttons = []
    for line in form["buttons"].splitlines():
        title, _, link = (part.strip() for part in line.partition("|"))
        if title:
            buttons.append({"title": title, "url": link} if link else {"title": title, "payload": title[:64]})
    if buttons:
        default["buttons"] = buttons
    if default:
        content["default"] = default
    for kind in OWN_TEXT_TYPES:
        if form[f"text_{kind}"].strip():
            content[kind] = {**default, "text": form[f"text_{kind}"]}
    if form["template_name"].strip():
        name, language = form["template_name"].strip(), form["template_language"].strip() or "es"
        stored = _stored_template(ctx, name, language)
        read = template_form.read_form(
            stored,
            name,
            language,
            form["template_header"],
            form["template_params"],
            form["template_header_media"],
            form["template_header_filename"],
            {key: form[field] for key, field in template_form.PLACE_KEYS.items()},
            before=(_draft_template(item) or ("", "", None))[2],
        )
        if read.refuses_save:
            # Every problem beside its field, the missing parameters too: one round to fix them all.
            errors = _beside(ctx, read.problems)
            raise ValidationFailed("; ".join(errors.values()), code="template_parameters", details=errors)
        template: dict[str, Any] = {"name": name, "language": language, "components": read.components}
        content["whatsapp"] = {**content.get("whatsapp", default), "template": template}
    if form["message_tag"]:
        if form["message_tag"] not in MESSAGE_TAGS:
            raise ValidationFailed.field("message_tag", i18n.lazy("choose one of the listed tags"))
        content["messenger"] = {**content.get("messenger", default), "message_tag": form["message_tag"]}
    return content


def _save(ctx: WebContext, item: Broadcast, form: dict[str, str]) -> Broadcast:
    labels = [part.strip() for part in form["labels"].split(",") if part.strip()]
    unset = set()
    if not form["exclude_segment_id"].strip():
        unset.add("exclude_segment_id")
    if not labels:
        unset.add("labels")
    if not form["reply_workflow_id"].strip():
        unset.add("reply_workflow_id")
    fields = service.DraftFields(
        name=form["name"],
        labels=labels or None,
        audience=form["audience"] or None,
        segment_id=_int(form["segment_id"], "segment_id") if form["audience"] != "all" else None,
        exclude_segment_id=_int(form["exclude_segment_id"], "exclude_segment_id"),
        channel_mode=form["channel_mode"] or None,
        channel_id=_int(form["channel_id"], "channel_id") if form["channel_mode"] != "last_interacted" else None,
        content=_content(ctx, form, item),
        reply_window_hours=_int(form["reply_window_hours"], "reply_window_hours"),
        reply_workflow_id=_int(form["reply_workflow_id"], "reply_workflow_id"),
        unset=frozenset(unset),
    )
    return service.do_update_broadcast(ctx.session, ctx.actor, item, fields)


def _templates(ctx: WebContext, channels: list[Channel]) -> list[dict[str, Any]]:
    """The approved WhatsApp templates of the workspace's numbers, to pick a name and map its parameters."""
    found: list[dict[str, Any]] = []
    for channel in channels:
        if channel.type != "whatsapp":
            continue
        for template in templates_of(ctx.session, channel, approved_only=True):
            key = f"{template.name}|{language_key(template.language)}"
            media = file_header(template)
            found.append(
                {
                    "channel": channel.name,
                    "name": template.name,
                    "language": template.language,
                    "header": component_text(template, "HEADER") or _header_kind(ctx, template),
                    "body": component_text(template, "BODY") or "",
                    # A named template's body names, to write as `name = value` lines; else how
                    # many values the body takes (a text header's value has its own field).
                    "parameters": ", ".join(dict.fromkeys(s.key for s in slots(template) if s.component == "body"))
                    if template.parameter_format == "NAMED"
                    else str(sum(1 for s in slots(template) if s.component == "body")),
                    # Typed as name and language, this template shows the header field, or the
                    # header file's (and a document's name).
                    "header_key": key if template_form.header_slot(template) is not None else "",
                    "media_key": key if media is not None else "",
                    "document_key": key if media is not None and media.kind == "document" else "",
                    "place_key": key if any(s.kind == "location" for s in slots(template)) else "",
                }
            )
    return found


def _header_kind(ctx: WebContext, template: MessageTemplate) -> str:
    """A header that is a file or a place, named for the list of templates ("" without one)."""
    kind = next((s.kind for s in slots(template) if s.component == "header" and s.kind != "text"), None)
    return ctx.fmt.gettext(HEADER_KINDS[kind]) if kind in HEADER_KINDS else ""


def _shown_fields(ctx: WebContext, typed: dict[str, str], errors: dict[str, str]) -> set[str]:
    """The header fields shown: the header's value where the typed template's header takes one,
    its file's link where it shows a file (and the file name for a document), its place's fields
    where it shows a place, or a field holding a value or a problem (the place's four as one: any
    of them) (the page's script shows and hides them too as a template is typed)."""
    shown = {
        key
        for key in ("template_header", "template_header_media", "template_header_filename")
        if typed.get(key, "").strip() or errors.get(key)
    }
    if any(typed.get(key, "").strip() or errors.get(key) for key in template_form.PLACE_FIELDS):
        shown.add("template_header_place")
    name = typed.get("template_name", "").strip()
    if not name:
        return shown
    stored = _stored_template(ctx, name, typed.get("template_language", "").strip() or "es")
    media = file_header(stored)
    if template_form.header_slot(stored) is not None:
        shown.add("template_header")
    if media is not None:
        shown.add("template_header_media")
        if media.kind == "document":
            shown.add("template_header_filename")
    if stored is not None and any(s.kind == "location" for s in slots(stored)):
        shown.add("template_header_place")
    return shown


def _previews(ctx: WebContext, item: Broadcast) -> tuple[list[service.Preview], str]:
    """Three contacts of the audience as they would receive it, or why there is no preview yet."""
    try:
        return service.preview(ctx.session, ctx.actor, item), ""
    except DomainError as exc:
        errors = field_errors(ctx, exc)
        return [], "; ".join(errors.values())


def _editor(
    ctx: WebContext,
    item: Broadcast,
    *,
    typed: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    previews: list[service.Preview] = []
    not_ready = ""
    if not errors:
        # The stored draft's template problems stay beside their fields until they are fixed.
        errors = _draft_problems(ctx, item)
        if errors:
            not_ready = ctx.fmt.gettext(PREVIEW_NEEDS_TEMPLATE)
        else:
            previews, not_ready = _previews(ctx, item)
    channels = _channels(ctx)
    templates = _templates(ctx, channels)
    shown = typed or _typed(item)
    context = {
        "item": item,
        "typed": shown,
        "errors": errors,
        "segments": _segments(ctx),
        "channels": channels,
        "templates": templates,
        "header_keys": " ".join(sorted({t["header_key"] for t in templates if t["header_key"]})),
        "media_keys": " ".join(sorted({t["media_key"] for t in templates if t["media_key"]})),
        "document_keys": " ".join(sorted({t["document_key"] for t in templates if t["document_key"]})),
        "place_keys": " ".join(sorted({t["place_key"] for t in templates if t["place_key"]})),
        "shown_fields": _shown_fields(ctx, shown, errors),
        "message_tags": MESSAGE_TAGS,
        "variables": VARIABLES,
        "text_types": _text_types(ctx, channels, shown),
        "reply_workflows": hooks.reply_workflows(ctx.session, ctx.actor.workspace_id),
        "previews": previews,
        "not_ready": not_ready,
        "keywords": service.unsubscribe_keywords(ctx.session, ctx.actor.workspace_id),
        "times": _times(ctx, item.scheduled_at),
        "workspace_zone": _zone(ctx).key,
        "now_local": utcnow().astimezone(_zone(ctx)).strftime("%Y-%m-%dT%H:%M"),
        **_labels(ctx),
    }
    return ctx.render("broadcasts/editor.html", context, active="broadcasts", status_code=status_code)


@router.get("/{broadcast_id}")
@writes
def broadcast_page(ctx: UserPage, broadcast_id: ID) -> Response:
    item = _item(ctx, broadcast_id)
    if item.status == BroadcastStatus.DRAFT:
        return _editor(ctx, item)
    return _results(ctx, item)


@router.post("/{broadcast_id}")
def save_broadcast(
    ctx: UserPage,
    broadcast_id: ID,
    name: Annotated[str, Form(max_length=500)] = "",
    labels: Annotated[str, Form(max_length=2000)] = "",
    audience: Annotated[str, Form(max_length=20)] = "segment",
    segment_id: Annotated[str, Form(max_length=20)] = "",
    exclude_segment_id: Annotated[str, Form(max_length=20)] = "",
    channel_mode: Annotated[str, Form(max_length=20)] = "specific",
    channel_id: Annotated[str, Form(max_length=20)] = "",
    text: Annotated[str, Form(max_length=10_000)] = "",
    file_id: Annotated[str, Form(max_length=20)] = "",
    quick_replies: Annotated[str, Form(max_length=2000)] = "",
    buttons: Annotated[str, Form(max_length=4000)] = "",
    template_name: Annotated[str, Form(max_length=512)] = "",
    template_language: Annotated[str, Form(max_length=20)] = "",
    template_header: Annotated[str, Form(max_length=1000)] = "",
    template_header_media: Annotated[str, Form(max_length=2000)] = "",
    template_header_filename: Annotated[str, Form(max_length=500)] = "",
    template_header_latitude: Annotated[str, Form(max_length=100)] = "",
    template_header_longitude: Annotated[str, Form(max_length=100)] = "",
    template_header_place_name: Annotated[str, Form(max_length=1000)] = "",
    template_header_address: Annotated[str, Form(max_length=1000)] = "",
    template_params: Annotated[str, Form(max_length=5000)] = "",
    message_tag: Annotated[str, Form(max_length=40)] = "",
    reply_window_hours: Annotated[str, Form(max_length=10)] = "72",
    reply_workflow_id: Annotated[str, Form(max_length=20)] = "",
    text_whatsapp: Annotated[str, Form(max_length=10_000)] = "",
    text_messenger: Annotated[str, Form(max_length=10_000)] = "",
    text_telegram: Annotated[str, Form(max_length=10_000)] = "",
    text_email: Annotated[str, Form(max_length=10_000)] = "",
    text_twilio: Annotated[str, Form(max_length=10_000)] = "",
    text_vonage: Annotated[str, Form(max_length=10_000)] = "",
    text_bird: Annotated[str, Form(max_length=10_000)] = "",
    then: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    item = _item(ctx, broadcast_id)
    form = {
        "name": name,
        "labels": labels,
        "audience": audience,
        "segment_id": segment_id,
        "exclude_segment_id": exclude_segment_id,
        "channel_mode": channel_mode,
        "channel_id": channel_id,
        "text": text,
        "file_id": file_id,
        "quick_replies": quick_replies,
        "buttons": buttons,
        "template_name": template_name,
        "template_language": template_language,
        "template_header": template_header,
        "template_header_media": template_header_media,
        "template_header_filename": template_header_filename,
        "template_header_latitude": template_header_latitude,
        "template_header_longitude": template_header_longitude,
        "template_header_place_name": template_header_place_name,
        "template_header_address": template_header_address,
        "template_params": template_params,
        "message_tag": message_tag,
        "reply_window_hours": reply_window_hours,
        "reply_workflow_id": reply_workflow_id,
        "text_whatsapp": text_whatsapp,
        "text_messenger": text_messenger,
        "text_telegram": text_telegram,
        "text_email": text_email,
        "text_twilio": text_twilio,
        "text_vonage": text_vonage,
        "text_bird": text_bird,
    }

    def done(saved: Broadcast) -> Response:
        # A draft whose template still lacks parameters is saved, and its editor shows what is
        # missing beside the fields: the dry run waits until they are filled.
        ready = then == "dry-run" and not _draft_problems(ctx, saved)
        return ctx.redirect(
            f"/broadcasts/{saved.id}/dry-run" if ready else f"/broadcasts/{saved.id}", flash="settings_saved"
        )

    return submit(
        ctx,
        lambda: _save(ctx, item, form),
        again=lambda exc: _editor(
            ctx,
            item,
            typed={k: v.replace("\x00", "\ufffd") for k, v in form.items()},
            errors=_mapped(
                ctx,
                exc,
                header_first=bool(template_header.strip()),
                own_texts=frozenset(k for k in OWN_TEXT_TYPES if form[f"text_{k}"].strip()),
            ),
            status_code=422,
        ),
        done=done,
    )


# ----- dry run ----------------------------------------------------------------------------------


def _dry_run_page(
    ctx: WebContext, item: Broadcast, *, errors: dict[str, str] | None = None, status_code: int = 200
) -> Response:
    result: service.DryRun | None = None
    problem = ""
    # The draft's template problems point at their fields in the editor; no dry run until fixed.
    not_ready = _draft_problems(ctx, item) if item.status == BroadcastStatus.DRAFT else {}
    if not not_ready:
        try:
            result = service.dry_run(ctx.session, ctx.actor, item)
        except DomainError as exc:
            problem = "; ".join(field_errors(ctx, exc).values())
    names = {c.id: c.name for c in _channels(ctx)}
    context = {
        "item": item,
        "result": result,
        "problem": problem,
        "not_ready": [(key, ctx.fmt.gettext(FIELD_LABELS[key]), message) for key, message in not_ready.items()],
        "channel_names": names,
        "errors": errors or {},
        "workspace_zone": _zone(ctx).key,
        "my_zone": ctx.fmt.zone.key,
        "now_local": utcnow().astimezone(_zone(ctx)).strftime("%Y-%m-%dT%H:%M"),
        "typed": {"scheduled_at": ""},
        **_labels(ctx),
    }
    return ctx.render("broadcasts/dry_run.html", context, active="broadcasts", status_code=status_code)


@router.get("/{broadcast_id}/dry-run")
@writes
def dry_run_page(ctx: UserPage, broadcast_id: ID) -> Response:
    return _dry_run_page(ctx, _item(ctx, broadcast_id))


@router.post("/{broadcast_id}/over-limit")
def set_over_limit(ctx: UserPage, broadcast_id: ID, over_limit: Annotated[str, Form(max_length=20)] = "") -> Response:
    item = _item(ctx, broadcast_id)
    return submit(
        ctx,
        lambda: service.do_update_broadcast(ctx.session, ctx.actor, item, service.DraftFields(over_limit=over_limit)),
        again=lambda exc: _dry_run_page(ctx, item, errors=errors_beside(ctx, exc, "over_limit"), status_code=422),
        redirect=f"/broadcasts/{item.id}/dry-run",
    )


def _csv(text: str, filename: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/{broadcast_id}/excluded.csv")
@writes
def excluded_csv(ctx: UserPage, broadcast_id: ID) -> Response:
    item = _item(ctx, broadcast_id)
    return _csv(service.excluded_csv(ctx.session, ctx.actor, item), f"broadcast-{item.id}-excluded.csv")


# ----- schedule and the actions -----------------------------------------------------------------


def _parse_local(value: str) -> datetime | None:
    text = value.strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text[:16]).replace(tzinfo=None)  # a wall-clock time in the workspace's zone
    except ValueError:
        raise ValidationFailed.field("scheduled_at", i18n.lazy("must be a date and time")) from None


@router.post("/{broadcast_id}/schedule")
def schedule_broadcast(
    ctx: UserPage, broadcast_id: ID, scheduled_at: Annotated[str, Form(max_length=40)] = ""
) -> Response:
    item = _item(ctx, broadcast_id)

    def again(exc: DomainError) -> Response:
        errors = _mapped(ctx, exc)
        if "scheduled_at" not in errors:
            errors = {"scheduled_at": _refusal(ctx, exc)}
        return _dry_run_page(ctx, item, errors=errors, status_code=422)

    def schedule() -> Broadcast:
        if item.status == BroadcastStatus.DRAFT and _draft_problems(ctx, item):
            raise ValidationFailed.field("scheduled_at", SCHEDULE_NEEDS_TEMPLATE)
        return service.do_schedule(ctx.session, ctx.actor, item, _parse_local(scheduled_at))

    return submit(
        ctx,
        schedule,
        again=again,
        done=lambda done: ctx.redirect(f"/broadcasts/{done.id}"),
    )


def _action(path: str, name: str, do: Any, target: str) -> None:
    """A one-button form: the action, then `target` ({id} the broadcast's, {new} a new draft's)."""

    def endpoint(ctx: UserPage, broadcast_id: ID) -> Response:
        item = _item(ctx, broadcast_id)

        def again(exc: DomainError) -> Response:
            page = _editor if item.status == BroadcastStatus.DRAFT else _results
            return page(ctx, item, errors={"__all__": _refusal(ctx, exc)}, status_code=409)

        def done(result: Any) -> Response:
            new = result.id if isinstance(result, Broadcast) else item.id
            return ctx.redirect(target.format(id=item.id, new=new))

        return submit(ctx, lambda: do(ctx.session, ctx.actor, item), again=again, done=done)

    endpoint.__name__ = endpoint.__qualname__ = name
    router.post(path)(endpoint)


_action("/{broadcast_id}/cancel", "cancel_broadcast", service.do_cancel, "/broadcasts/{id}")
_action("/{broadcast_id}/pause", "pause_broadcast", service.do_pause, "/broadcasts/{id}")
_action("/{broadcast_id}/resume", "resume_broadcast", service.do_resume, "/broadcasts/{id}")
_action("/{broadcast_id}/stop", "stop_broadcast", service.do_stop, "/broadcasts/{id}")
_action("/{broadcast_id}/clone", "clone_broadcast", service.do_clone, "/broadcasts/{new}")
_action("/{broadcast_id}/resend-failed", "resend_failed", service.do_resend_failed, "/broadcasts/{new}")
_action("/{broadcast_id}/delete", "delete_broadcast", service.do_delete_broadcast, "/broadcasts")


# ----- results ----------------------------------------------------------------------------------


def _summary(ctx: WebContext, item: Broadcast) -> dict[str, Any]:
    results = service.results(ctx.session, item)
    recipients = results.counts.recipients
    values = {
        "sent": results.sent,
        "delivered": results.delivered,
        "read": results.read,
        "replied": results.replied,
        "failed": results.failed,
    }
    bars = [(key, values[key], round(100 * values[key] / recipients) if recipients else 0) for key in RESULT_BARS]
    return {"results": results, "recipients": recipients, "bars": bars, "live": item.status in LIVE_STATUSES}


def _results(
    ctx: WebContext,
    item: Broadcast,
    *,
    status: str | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    if status is not None and status not in service.RECIPIENT_STATUSES:
        status = None
    rows = list(service.recipient_rows(ctx.session, item, status=status, limit=RECIPIENTS_SHOWN))
    context = {
        "item": item,
        "rows": rows,
        "filter": status,
        "statuses": sorted(service.RECIPIENT_STATUSES),
        "errors": errors or {},
        "times": _times(ctx, item.started_at or item.scheduled_at),
        "shown": RECIPIENTS_SHOWN,
        "bar_labels": _bar_labels(ctx),
        **_summary(ctx, item),
        **_labels(ctx),
    }
    return ctx.render("broadcasts/results.html", context, active="broadcasts", status_code=status_code)


@router.get("/{broadcast_id}/results")
def results_page(
    ctx: UserPage, broadcast_id: ID, status: Annotated[str | None, Query(max_length=20)] = None
) -> Response:
    return _results(ctx, _item(ctx, broadcast_id), status=status or None)


@router.get("/{broadcast_id}/live")
def live_results(ctx: UserPage, broadcast_id: ID) -> Response:
    """The counts and bars alone, polled by the results page while the broadcast is under way."""
    item = _item(ctx, broadcast_id)
    context = {"item": item, "bar_labels": _bar_labels(ctx), **_summary(ctx, item), **_labels(ctx)}
    return ctx.render("broadcasts/_live.html", context)


@router.get("/{broadcast_id}/recipients.csv")
def recipients_csv(
    ctx: UserPage, broadcast_id: ID, status: Annotated[str | None, Query(max_length=20)] = None
) -> Response:
    item = _item(ctx, broadcast_id)
    text = service.recipients_csv(ctx.session, ctx.actor, item, status=status or None)
    suffix = f"-{status}" if status else ""
    return _csv(text, f"broadcast-{item.id}-recipients{suffix}.csv")


def visible(ctx: WebContext) -> bool:
    """Whether the person may open the broadcasts module."""
    return ctx.can(Permission.MANAGE_BROADCASTS.value)


__all__ = ["router", "visible"]
