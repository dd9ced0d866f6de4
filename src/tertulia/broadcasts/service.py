"""Broadcasts: the rules. Check first (check_*, `actor.require`), then change data (do_*); a service
never commits. Only Owners and Managers (Permission.MANAGE_BROADCASTS) and API tokens may touch them.

Lifecycle (docs/broadcasts.md):
    draft --schedule/send now--> scheduled --start (at its time)--> sending --> completed
    scheduled --cancel--> draft;  sending <--pause/resume--> paused;  sending|paused --stop--> cancelled
    scheduled --start--> failed (segment deleted, empty audience, channel disconnected, over the limit)

At start the audience is snapshotted into `broadcast_recipients` set-based (repository.insert_audience:
INSERT ... SELECT over the segment compiler's clause), then each exclusion reason is one UPDATE over the
waiting rows. The dry run is the same snapshot in a savepoint that is rolled back after counting, so the
dry run and the send can never disagree on the rules.

The files: audience.py (content rendered for a contact, the snapshot and its counts), sender.py
(start and pump, called by tasks.py), repository.py (all SQL), api.py (/api/v1/broadcasts).

Sending (`sender.pump`) claims batches of waiting recipients per channel (FOR UPDATE SKIP LOCKED on
PostgreSQL), writes one outgoing message per recipient (status pending: the outbox row, sender kind
`broadcast`) in the same transaction that marks the recipient messaged, and queues the outbox's send
after commit. A crash before the commit leaves the recipients waiting; after it, the messages are the
outbox's, which sends each once (its idempotency key, its start-up re-queue). Each batch is at most a
share of the channel's pace, minus the broadcast messages still waiting in the outbox on that channel,
split between the broadcasts sending on it: agents' replies, which are not held back, find at most one
batch ahead of them, and several broadcasts take turns.
"""

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.broadcasts import hooks, tasks
from tertulia.broadcasts import repository as repo
from tertulia.broadcasts.audience import (
    PARAMETER_REFUSALS,
    REFUSAL_RULES,
    UNSUPPORTED_TYPES,
    AudienceGone,
    Counts,
    LimitCheck,
    Renderer,
    broadcast_channels,
    check_rendered,
    content_for,
    counts_of,
    known_refusal,
    snapshot,
    text_parameters,
)
from tertulia.broadcasts.models import (
    Audience,
    Broadcast,
    BroadcastOptOut,
    BroadcastRecipient,
    BroadcastSettings,
    BroadcastStatus,
    ChannelMode,
    OverLimit,
    RecipientState,
)
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus
from tertulia.channels.registry import registered_types
from tertulia.contacts.models import Contact
from tertulia.conversations import service as conversations_service
from tertulia.conversations import variables
from tertulia.conversations.models import Conversation, Direction, Message, OpeningSource
from tertulia.events.service import Event, actor_label, emit
from tertulia.events.types import EventType
from tertulia.kit.clock import as_utc, utcnow
from tertulia.kit.db import on_commit
from tertulia.kit.errors import Conflict, NotFound, ValidationFailed, found
from tertulia.kit.text import fold, tidy_name
from tertulia.segments.models import Segment
from tertulia.users.permissions import Actor, Permission
from tertulia.workspaces.service import get_workspace

log = structlog.get_logger()

MAX_NAME = 120
MAX_LABELS = 20
MAX_LABEL = 40
DEFAULT_REPLY_WINDOW_HOURS = 72
MAX_REPLY_WINDOW_HOURS = 24 * 30
DEFAULT_UNSUBSCRIBE_KEYWORDS = ("BAJA", "STOP")
MAX_KEYWORDS = 30
MAX_KEYWORD = 64
CONTENT_KEYS = frozenset({"text", "file_ids", "quick_reply", "buttons", "template", "message_tag"})
EDITABLE = frozenset({BroadcastStatus.DRAFT})
# What the sample contact's render may refuse that refuses the broadcast itself (check_ready).
TEMPLATE_REFUSALS = frozenset({"template_unknown", "template_not_approved", "template_parameters"}) | PARAMETER_REFUSALS


# ----- access -----------------------------------------------------------------------------------


def access_broadcast(session: Session, actor: Actor, broadcast_id: int, *, lock: bool = False) -> Broadcast:
    actor.require(Permission.MANAGE_BROADCASTS)
    return found(repo.broadcast(session, actor.workspace_id, broadcast_id, lock=lock), f"No broadcast {broadcast_id}.")


def list_broadcasts(
    session: Session,
    actor: Actor,
    *,
    status: str | None = None,
    label: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
    scheduled_from: datetime | None = None,
    scheduled_to: datetime | None = None,
) -> list[Broadcast]:
    """Newest first, keyset on id; limit+1 rows so the caller knows whether there is a next page.
    `scheduled_from`/`scheduled_to` (aware) bound the time it was or is to be sent (a calendar)."""
    actor.require(Permission.MANAGE_BROADCASTS)
    if status is not None and status not in {s.value for s in BroadcastStatus}:
        raise ValidationFailed.field("status", f"must be one of: {', '.join(s.value for s in BroadcastStatus)}")
    for name, value in (("scheduled_from", scheduled_from), ("scheduled_to", scheduled_to)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed.field(name, "must carry its offset (e.g. 2026-12-01T00:00:00-06:00)")
    return repo.broadcasts_page(
        session,
        actor.workspace_id,
        status=status,
        label=label,
        before_id=before_id,
        limit=limit,
        scheduled_from=scheduled_from,
        scheduled_to=scheduled_to,
    )


@dataclass
class Summary:
    """A list row's figures: recipients (messaged or waiting), excluded, and the messages' fate."""

    recipients: int
    excluded: int
    sent: int
    delivered: int
    read: int
    replied: int
    failed: int
    pending: int


def summaries(session: Session, actor: Actor, items: Sequence[Broadcast]) -> dict[int, Summary]:
    """Figures for a page of broadcasts in three queries (drafts and scheduled ones have none yet)."""
    actor.require(Permission.MANAGE_BROADCASTS)
    found: dict[int, Summary] = {}
    for broadcast_id, raw in repo.summaries(session, [b.id for b in items]).items():
        read = raw.get(DeliveryStatus.READ.value, 0)
        delivered = raw.get(DeliveryStatus.DELIVERED.value, 0) + read
        found[broadcast_id] = Summary(
            recipients=raw.get(f"state:{RecipientState.WAITING.value}", 0)
            + raw.get(f"state:{RecipientState.MESSAGED.value}", 0),
            excluded=raw.get(f"state:{RecipientState.EXCLUDED.value}", 0),
            sent=raw.get(DeliveryStatus.SENT.value, 0) + delivered,
            delivered=delivered,
            read=read,
            replied=raw.get("replied", 0),
            failed=raw.get(DeliveryStatus.FAILED.value, 0),
            pending=raw.get(DeliveryStatus.PENDING.value, 0),
        )
    return found


# ----- checking a draft -------------------------------------------------------------------------


def check_name(name: Any) -> str:
    text = tidy_name(name) if isinstance(name, str) else ""
    if not text:
        raise ValidationFailed.field("name", "is required")
    if len(text) > MAX_NAME:
        raise ValidationFailed.field("name", f"must be at most {MAX_NAME} characters")
    return text


def check_labels(labels: Any) -> list[str]:
    if labels is None:
        return []
    if not isinstance(labels, list) or len(labels) > MAX_LABELS:
        raise ValidationFailed.field("labels", f"must be a list of at most {MAX_LABELS} labels")
    clean: list[str] = []
    for index, label in enumerate(labels):
        text = tidy_name(label) if isinstance(label, str) else ""
        if not text or len(text) > MAX_LABEL:
            raise ValidationFailed.field(f"labels[{index}]", f"must be 1 to {MAX_LABEL} characters")
        if text not in clean:
            clean.append(text)
    return clean


def _segment(session: Session, actor: Actor, segment_id: Any, field_name: str) -> Segment:
    if not isinstance(segment_id, int) or isinstance(segment_id, bool):
        raise ValidationFailed.field(field_name, "must be a segment id")
    segment = session.scalar(
        select(Segment).where(Segment.workspace_id == actor.workspace_id, Segment.id == segment_id)
    )
    if segment is None:
        raise ValidationFailed.field(field_name, f"no segment {segment_id}")
    return segment


def _channel(session: Session, workspace_id: int, channel_id: Any) -> Channel:
    if not isinstance(channel_id, int) or isinstance(channel_id, bool):
        raise ValidationFailed.field("channel_id", "must be a channel id")
    channel = session.scalar(select(Channel).where(Channel.workspace_id == workspace_id, Channel.id == channel_id))
    if channel is None:
        raise ValidationFailed.field("channel_id", f"no channel {channel_id}")
    if channel.type in UNSUPPORTED_TYPES:
        raise ValidationFailed.field("channel_id", f"{channel.type} channels cannot send broadcasts")
    return channel


def _template_parameter(value: Any, where: str) -> dict[str, Any]:
    """A template parameter mapped to a value (`{"text": "..."}`, variables allowed) or to a variable
    (`{"variable": "contact.first_name", "fallback": "cliente"}`), as a text parameter."""
    if not isinstance(value, dict):
        raise ValidationFailed.field(where, "must be an object")
    if "variable" in value:
        name = value.get("variable")
        fallback = value.get("fallback")
        if not isinstance(name, str) or not name:
            raise ValidationFailed.field(f"{where}.variable", "must name a variable")
        if fallback is not None and (not isinstance(fallback, str) or '"' in fallback):
            raise ValidationFailed.field(f"{where}.fallback", "must be text without double quotes")
        text = "{{" + name + (f' | "{fallback}"' if fallback else "") + "}}"
        rest = {k: v for k, v in value.items() if k not in ("variable", "fallback")}
        return {"type": "text", **rest, "text": text}
    return value


def _check_literal_place(template: dict[str, Any], where: str) -> None:
    """A LOCATION header's place is sent as written, the same for every contact: a variable in its
    name or address would reach the customer as raw braces (docs/broadcasts.md says why it is not
    rendered per contact yet)."""
    for index, component in enumerate(template.get("components") or []):
        for position, parameter in enumerate(component.get("parameters") or []):
            place = parameter.get("location") if parameter.get("type") == "location" else None
            for key in ("name", "address"):
                text = place.get(key) if isinstance(place, dict) else None
                if isinstance(text, str) and "{{" in text:
                    path = f"{where}.components[{index}].parameters[{position}].location.{key}"
                    raise ValidationFailed.field(path, "a place is the same for every contact: no variables")


def check_content(session: Session, workspace_id: int, content: Any) -> dict[str, Any]:
    """The content per channel type (`default` for any type without its own), each checked for shape
    and variables; the channel's own rules are checked when the broadcast is scheduled."""
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ValidationFailed.field("content", "must be an object keyed by channel type (or default)")
    keys = conversations_service.custom_keys(session, workspace_id)
    clean: dict[str, Any] = {}
    kinds = {"default", *(t for t in registered_types() if t not in UNSUPPORTED_TYPES)}
    for kind, spec in content.items():
        where = f"content.{kind}"
        if kind not in kinds:
            raise ValidationFailed.field(where, f"must be one of: {', '.join(sorted(kinds))}")
        if not isinstance(spec, dict):
            raise ValidationFailed.field(where, "must be an object")
        unknown = set(spec) - CONTENT_KEYS
        if unknown:
            raise ValidationFailed.field(f"{where}.{sorted(unknown)[0]}", "unknown field")
        text = spec.get("text")
        if text is not None:
            if not isinstance(text, str):
                raise ValidationFailed.field(f"{where}.text", "must be text")
            variables.parse(text, keys, f"{where}.text")
        file_ids = spec.get("file_ids") or []
        if not isinstance(file_ids, list) or len(file_ids) > 1 or not all(isinstance(i, int) for i in file_ids):
            raise ValidationFailed.field(f"{where}.file_ids", "must be a list of at most one file id")
        conversations_service.check_files(session, workspace_id, file_ids)
        template = spec.get("template")
        if template is not None:
            if not isinstance(template, dict) or not isinstance(template.get("name"), str):
                raise ValidationFailed.field(f"{where}.template", "must be {name, language, components}")
            language = template.get("language")
            if isinstance(language, str):
                template = {**template, "language": {"code": language}}
            components = []
            for index, component in enumerate(template.get("components") or []):
                if not isinstance(component, dict):
                    raise ValidationFailed.field(f"{where}.template.components[{index}]", "must be an object")
                parameters = [
                    _template_parameter(p, f"{where}.template.components[{index}].parameters[{position}]")
                    for position, p in enumerate(component.get("parameters") or [])
                ]
                components.append({**component, "parameters": parameters} if parameters else component)
            template = {**template, "components": components}
            _check_literal_place(template, f"{where}.template")
            for index, position, part, parameter in text_parameters(template):
                path = f"{where}.template.components[{index}].parameters[{position}]"
                variables.parse(parameter["text"], keys, path)
                refusal = known_refusal(part, parameter["text"])
                if refusal is not None:
                    raise ValidationFailed.field(path, f"{REFUSAL_RULES[refusal]} (a variable counted as its fallback)")
        if text is None and not file_ids and template is None:
            raise ValidationFailed.field(where, "needs a text, a file or a template")
        clean[str(kind)] = {
            **{k: v for k, v in spec.items() if v is not None},
            **({"template": template} if template else {}),
        }
    return clean


@dataclass
class DraftFields:
    """What a draft may set; None leaves a field as it is (`unset` lists fields to clear)."""

    name: Any = None
    labels: Any = None
    audience: Any = None
    segment_id: Any = None
    exclude_segment_id: Any = None
    channel_mode: Any = None
    channel_id: Any = None
    content: Any = None
    over_limit: Any = None
    reply_window_hours: Any = None
    reply_workflow_id: Any = None
    unset: frozenset[str] = field(default_factory=frozenset)


def _apply(session: Session, actor: Actor, item: Broadcast, fields: DraftFields) -> None:
    if fields.name is not None:
        item.name = check_name(fields.name)
    if fields.labels is not None or "labels" in fields.unset:
        item.labels = check_labels(fields.labels)
    if fields.audience is not None:
        if fields.audience not in {a.value for a in Audience if a != Audience.RESEND}:
            raise ValidationFailed.field("audience", "must be segment or all")
        item.audience = Audience(fields.audience)
    if fields.segment_id is not None:
        item.segment_id = _segment(session, actor, fields.segment_id, "segment_id").id
        if fields.audience is None:
            item.audience = Audience.SEGMENT
    if fields.exclude_segment_id is not None:
        item.exclude_segment_id = _segment(session, actor, fields.exclude_segment_id, "exclude_segment_id").id
        item.exclude_segment_chosen = True
    if "exclude_segment_id" in fields.unset:
        item.exclude_segment_id = None
        item.exclude_segment_chosen = False
    if fields.channel_mode is not None:
        if fields.channel_mode not in {m.value for m in ChannelMode}:
            raise ValidationFailed.field("channel_mode", "must be specific or last_interacted")
        item.channel_mode = ChannelMode(fields.channel_mode)
    if fields.channel_id is not None:
        item.channel_id = _channel(session, actor.workspace_id, fields.channel_id).id
        if fields.channel_mode is None:
            item.channel_mode = ChannelMode.SPECIFIC
    if fields.content is not None:
        item.content = check_content(session, actor.workspace_id, fields.content)
    if fields.over_limit is not None:
        if fields.over_limit not in {o.value for o in OverLimit}:
            raise ValidationFailed.field("over_limit", "must be refuse or partial")
        item.over_limit = OverLimit(fields.over_limit)
    if fields.reply_window_hours is not None:
        hours = fields.reply_window_hours
        if not isinstance(hours, int) or isinstance(hours, bool) or not 1 <= hours <= MAX_REPLY_WINDOW_HOURS:
            raise ValidationFailed.field("reply_window_hours", f"must be 1 to {MAX_REPLY_WINDOW_HOURS}")
        item.reply_window_hours = hours
    if fields.reply_workflow_id is not None or "reply_workflow_id" in fields.unset:
        workflow = fields.reply_workflow_id
        if workflow is not None and (not isinstance(workflow, int) or isinstance(workflow, bool) or workflow < 1):
            raise ValidationFailed.field("reply_workflow_id", "must be a workflow id")
        if workflow is not None and workflow not in {w.id for w in hooks.reply_workflows(session, actor.workspace_id)}:
            raise ValidationFailed.field(
                "reply_workflow_id", "no workflow of this workspace with a broadcast reply trigger has this id"
            )
        item.reply_workflow_id = workflow


def do_create_broadcast(session: Session, actor: Actor, fields: DraftFields) -> Broadcast:
    """A new draft: a name and optional labels, the rest now or later (update)."""
    actor.require(Permission.MANAGE_BROADCASTS)
    item = Broadcast(
        workspace_id=actor.workspace_id,
        name=check_name(fields.name),
        labels=[],
        status=BroadcastStatus.DRAFT,
        audience=Audience.SEGMENT,
        exclude_segment_chosen=False,
        channel_mode=ChannelMode.SPECIFIC,
        content={},
        over_limit=OverLimit.REFUSE,
        reply_window_hours=DEFAULT_REPLY_WINDOW_HOURS,
        created_by_user_id=actor.user_id,
    )
    _apply(session, actor, item, fields)
    session.add(item)
    session.flush()
    return item


def _require_status(item: Broadcast, allowed: Sequence[BroadcastStatus], action: str) -> None:
    if item.status not in allowed:
        raise Conflict(
            f"A {item.status.value} broadcast cannot be {action}.",
            code="broadcast_status",
            details={"status": item.status.value, "allowed": [s.value for s in allowed]},
        )


def do_update_broadcast(session: Session, actor: Actor, item: Broadcast, fields: DraftFields) -> Broadcast:
    actor.require(Permission.MANAGE_BROADCASTS)
    _require_status(item, [BroadcastStatus.DRAFT], "edited")
    _apply(session, actor, item, fields)
    item.updated_at = utcnow()
    session.flush()
    return item


def do_delete_broadcast(session: Session, actor: Actor, item: Broadcast) -> None:
    actor.require(Permission.MANAGE_BROADCASTS)
    _require_status(item, [BroadcastStatus.DRAFT], "deleted")
    session.delete(item)
    session.flush()


def _copy(session: Session, actor: Actor, source: Broadcast, name: str, **extra: Any) -> Broadcast:
    item = Broadcast(
        workspace_id=source.workspace_id,
        name=name[:MAX_NAME],
        labels=list(source.labels or []),
        status=BroadcastStatus.DRAFT,
        audience=source.audience,
        segment_id=source.segment_id,
        exclude_segment_id=source.exclude_segment_id,
        exclude_segment_chosen=source.exclude_segment_chosen,
        channel_mode=source.channel_mode,
        channel_id=source.channel_id,
        content=dict(source.content or {}),
        over_limit=source.over_limit,
        reply_window_hours=source.reply_window_hours,
        reply_workflow_id=source.reply_workflow_id,
        created_by_user_id=actor.user_id,
        **extra,
    )
    session.add(item)
    session.flush()
    return item


def do_clone(session: Session, actor: Actor, source: Broadcast) -> Broadcast:
    """A new draft with the source's audience, channel, content and time."""
    actor.require(Permission.MANAGE_BROADCASTS)
    return _copy(
        session,
        actor,
        source,
        f"{source.name} (copy)",
        copied_from_id=source.id,
        resend_of_id=source.resend_of_id,
        scheduled_at=source.scheduled_at,
    )


def do_resend_failed(session: Session, actor: Actor, source: Broadcast) -> Broadcast:
    """A new draft, same content and channel, whose audience is the source's recipients whose
    message failed (taken when the new one starts)."""
    actor.require(Permission.MANAGE_BROADCASTS)
    _require_status(source, [BroadcastStatus.COMPLETED, BroadcastStatus.CANCELLED, BroadcastStatus.FAILED], "resent")
    if not repo.delivery_counts(session, source.id).get(DeliveryStatus.FAILED.value):
        raise Conflict("No recipient of this broadcast failed.", code="nothing_failed")
    copy = _copy(session, actor, source, f"{source.name} (resend)", resend_of_id=source.id)
    copy.audience = Audience.RESEND
    copy.exclude_segment_id = None
    copy.exclude_segment_chosen = False
    session.flush()
    return copy


@dataclass
class DryRun:
    counts: Counts
    limits: list[LimitCheck]
    # True when the broadcast would not be sent at all (over a messaging limit with over_limit
    # refuse, or nobody left to send to).
    refused: bool
    refusal: str | None


def check_ready(session: Session, actor: Actor, item: Broadcast) -> None:
    """What must be set before a broadcast can be sent or dry-run: an audience, a channel, content
    for each kind of channel it may use, content the channel can carry (templates known and approved)."""
    actor.require(Permission.MANAGE_BROADCASTS)
    if item.audience == Audience.SEGMENT and item.segment_id is None:
        raise ValidationFailed.field("segment_id", "choose the audience's segment (or audience all)")
    if item.channel_mode == ChannelMode.SPECIFIC and item.channel_id is None:
        raise ValidationFailed.field("channel_id", "choose a channel (or channel_mode last_interacted)")
    try:
        channels = broadcast_channels(session, item)
    except AudienceGone as exc:
        raise ValidationFailed.field("channel_id", exc.detail) from exc
    if not channels:
        raise ValidationFailed.field("channel_mode", "the workspace has no channel that can send broadcasts")
    renderer = Renderer.of(session, item)
    sample = Contact(workspace_id=item.workspace_id, first_name="A", last_name="B", custom={})
    for channel in channels:
        if item.channel_mode == ChannelMode.LAST_INTERACTED and content_for(item, channel.type) is None:
            continue
        spec = content_for(item, channel.type)
        if spec is None:
            raise ValidationFailed.field(f"content.{channel.type}", "no content for this channel")
        try:
            rendered = renderer.render(channel, sample)
        except ValidationFailed as exc:
            # A parameter refused even for a sample contact (A B) is refused for everyone.
            if exc.code in TEMPLATE_REFUSALS:
                raise
            continue  # a sample contact's empty values: the dry run counts real ones
        check_rendered(channel, sample, rendered)
    if item.channel_mode == ChannelMode.LAST_INTERACTED and not any(content_for(item, c.type) for c in channels):
        raise ValidationFailed.field("content", "no content for any of the workspace's channels")


def dry_run(session: Session, actor: Actor, item: Broadcast) -> DryRun:
    """How the broadcast would go if it started now: the same snapshot as a real start, written in a
    savepoint, counted, and rolled back."""
    actor.require(Permission.MANAGE_BROADCASTS)
    check_ready(session, actor, item)
    savepoint = session.begin_nested()
    try:
        result = _dry_run_in(session, item)
    finally:
        savepoint.rollback()
    return result


def _dry_run_in(session: Session, item: Broadcast) -> DryRun:
    # A draft has no recipients: a dry run of a resend or a clone writes its own under the same id.
    try:
        limits = snapshot(session, item, utcnow())
    except AudienceGone as exc:
        return DryRun(Counts(), [], True, exc.detail)
    counts = counts_of(session, item.id)
    over = sum(check.over for check in limits)
    if over and item.over_limit == OverLimit.REFUSE:
        return DryRun(counts, limits, True, f"{over} recipients are over the WhatsApp messaging limit")
    if counts.recipients == 0:
        return DryRun(counts, limits, True, "nobody in the audience can receive it")
    return DryRun(counts, limits, False, None)


CSV_COLUMNS = ["contact_id", "name", "phone", "email", "channel_id", "status", "reason", "time"]


def excluded_csv(session: Session, actor: Actor, item: Broadcast) -> str:
    """The contacts a dry run (a draft or scheduled broadcast) or the snapshot (once started)
    excludes, with the reason, as CSV."""
    actor.require(Permission.MANAGE_BROADCASTS)
    if item.status in (BroadcastStatus.DRAFT, BroadcastStatus.SCHEDULED):
        check_ready(session, actor, item)
        savepoint = session.begin_nested()
        try:
            try:
                snapshot(session, item, utcnow())
            except AudienceGone as exc:
                raise Conflict(exc.detail, code=exc.reason.value) from exc
            return _csv(session, item, status=RecipientState.EXCLUDED.value)
        finally:
            savepoint.rollback()
    return _csv(session, item, status=RecipientState.EXCLUDED.value)


def _csv(session: Session, item: Broadcast, **filters: Any) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in recipient_rows(session, item, **filters):
        writer.writerow(
            [
                row.contact_id,
                _safe(row.name),
                _safe(row.phone),
                _safe(row.email),
                row.channel_id or "",
                row.status,
                _safe(row.reason),
                row.at.isoformat() if row.at else "",
            ]
        )
    return out.getvalue()


def _safe(value: str | None) -> str:
    """A cell a spreadsheet will not run as a formula."""
    text = value or ""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not text[1:2].isdigit() else text


# ----- preview ----------------------------------------------------------------------------------


@dataclass
class Preview:
    contact_id: int
    contact_name: str
    channel_id: int | None
    channel_type: str | None
    type: str | None
    text: str | None
    payload: dict[str, Any]
    attachments: list[dict[str, Any]]
    error: str | None = None


def preview(session: Session, actor: Actor, item: Broadcast, limit: int = 3) -> list[Preview]:
    """The message as `limit` real contacts of the audience would receive it (the oldest contacts
    among the recipients of a dry run: exclusions applied)."""
    actor.require(Permission.MANAGE_BROADCASTS)
    check_ready(session, actor, item)
    savepoint = session.begin_nested()
    try:
        try:
            snapshot(session, item, utcnow())
        except AudienceGone as exc:
            raise Conflict(exc.detail, code=exc.reason.value) from exc
        rows = list(
            session.execute(
                select(BroadcastRecipient.contact_id, BroadcastRecipient.channel_id)
                .where(
                    BroadcastRecipient.broadcast_id == item.id,
                    BroadcastRecipient.state == RecipientState.WAITING,
                )
                # By contact: the snapshot inserts recipients in whatever order the audience query
                # yields them, and a preview should show the same contacts every time.
                .order_by(BroadcastRecipient.contact_id)
                .limit(limit)
            )
        )
    finally:
        savepoint.rollback()
    renderer = Renderer.of(session, item)
    previews: list[Preview] = []
    for contact_id, channel_id in rows:
        contact = session.get(Contact, contact_id)
        channel = session.get(Channel, channel_id) if channel_id else None
        if contact is None or channel is None:
            continue
        try:
            rendered = renderer.render(channel, contact)
            previews.append(
                Preview(
                    contact.id,
                    contact.full_name,
                    channel.id,
                    channel.type,
                    rendered.type.value,
                    rendered.text,
                    rendered.payload,
                    rendered.attachments,
                )
            )
        except ValidationFailed as exc:
            previews.append(
                Preview(contact.id, contact.full_name, channel.id, channel.type, None, None, {}, [], str(exc))
            )
    return previews


# ----- scheduling -------------------------------------------------------------------------------


def workspace_zone(session: Session, workspace_id: int) -> ZoneInfo:
    return ZoneInfo(get_workspace(session, workspace_id).timezone or "UTC")


def resolve_local_time(value: datetime, zone: ZoneInfo) -> datetime:
    """A wall-clock time in the workspace's zone as UTC. A time that does not exist there (the hour
    clocks skip) is refused; one that happens twice (the hour repeated) is the first of the two."""
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    local = value.replace(tzinfo=zone, fold=0)
    back = local.astimezone(UTC).astimezone(zone)
    if back.replace(tzinfo=None) != value:
        raise ValidationFailed.field(
            "scheduled_at", f"{value:%Y-%m-%d %H:%M} does not exist in {zone.key} (the clocks move forward then)"
        )
    return local.astimezone(UTC)


def do_schedule(session: Session, actor: Actor, item: Broadcast, at: datetime | None) -> Broadcast:
    """Send now (`at` None) or at a time (naive: the workspace's time zone; aware: as given). A
    broadcast over a WhatsApp messaging limit with over_limit refuse is refused here (409)."""
    actor.require(Permission.MANAGE_BROADCASTS)
    _require_status(item, [BroadcastStatus.DRAFT], "scheduled")
    check_ready(session, actor, item)
    now = utcnow()
    when = now if at is None else resolve_local_time(at, workspace_zone(session, actor.workspace_id))
    if when < now - timedelta(minutes=1):
        raise ValidationFailed.field("scheduled_at", "is in the past")
    result = dry_run(session, actor, item)
    if result.refused:
        raise Conflict(
            f"The broadcast cannot be sent: {result.refusal}.",
            code="broadcast_refused",
            details={"refusal": result.refusal, "excluded": result.counts.excluded_by_reason},
        )
    item.status = BroadcastStatus.SCHEDULED
    item.scheduled_at = max(when, now)
    item.failure_reason = None
    item.failure_detail = None
    item.updated_at = now
    session.flush()
    broadcast_id, eta = item.id, item.scheduled_at
    on_commit(session, lambda: tasks.enqueue_start(broadcast_id, eta))
    return item


def do_cancel(session: Session, actor: Actor, item: Broadcast) -> Broadcast:
    """A scheduled broadcast goes back to draft (a sending one is paused or stopped instead)."""
    actor.require(Permission.MANAGE_BROADCASTS)
    _require_status(item, [BroadcastStatus.SCHEDULED], "cancelled")
    item.status = BroadcastStatus.DRAFT
    item.updated_at = utcnow()
    session.flush()
    return item


def do_pause(session: Session, actor: Actor, item: Broadcast) -> Broadcast:
    """No further recipient is claimed; messages already in the outbox still go."""
    actor.require(Permission.MANAGE_BROADCASTS)
    _require_status(item, [BroadcastStatus.SENDING], "paused")
    item.status = BroadcastStatus.PAUSED
    item.updated_at = utcnow()
    session.flush()
    return item


def do_resume(session: Session, actor: Actor, item: Broadcast) -> Broadcast:
    actor.require(Permission.MANAGE_BROADCASTS)
    _require_status(item, [BroadcastStatus.PAUSED], "resumed")
    item.status = BroadcastStatus.SENDING
    item.updated_at = utcnow()
    session.flush()
    broadcast_id = item.id
    on_commit(session, lambda: tasks.enqueue_pump(broadcast_id))
    return item


def do_stop(session: Session, actor: Actor, item: Broadcast) -> Broadcast:
    """The recipients not yet messaged are skipped (reason stopped); the broadcast is cancelled."""
    actor.require(Permission.MANAGE_BROADCASTS)
    _require_status(item, [BroadcastStatus.SENDING, BroadcastStatus.PAUSED], "stopped")
    repo.skip_waiting(session, item.id, "stopped")
    item.status = BroadcastStatus.CANCELLED
    item.finished_at = utcnow()
    item.updated_at = item.finished_at
    session.flush()
    return item


# ----- replies and unsubscribes (the event-log consumer) -----------------------------------------


def do_record_replies(session: Session, messages: Sequence[Message]) -> int:
    """Customers' messages just written (the inbox's received hook, in its transaction): each is a
    reply to the broadcasts sent to that contact on that channel within their reply window (marked
    once, a broadcast.replied event each); one that is exactly an unsubscribe keyword opts the contact
    out of broadcasts. One query per batch when nobody has been sent a broadcast."""
    incoming = [m for m in messages if m.direction == Direction.INCOMING and m.channel_id is not None]
    if not incoming:
        return 0
    replies = 0
    done: set[int] = set()
    candidates = repo.reply_candidates(session, sorted({m.contact_id for m in incoming}))
    for message in sorted(incoming, key=lambda m: m.id):
        at = as_utc(message.created_at)
        for recipient_id, broadcast_id, contact_id, channel_id, sent_id, messaged_at, hours, workflow_id in candidates:
            if recipient_id in done or messaged_at is None:
                continue
            if contact_id != message.contact_id or channel_id != message.channel_id:
                continue
            sent_at = as_utc(messaged_at)
            if not sent_at <= at <= sent_at + timedelta(hours=hours):
                continue
            done.add(recipient_id)
            if not repo.mark_replied(session, recipient_id, message.id, at):
                continue
            replies += 1
            _mark_opened_by_reply(session, message)
            emit(
                session,
                Event(
                    EventType.BROADCAST_REPLIED,
                    message.workspace_id,
                    {
                        "broadcast_id": broadcast_id,
                        "contact_id": contact_id,
                        "channel_id": channel_id,
                        "message_id": sent_id,
                        "reply_message_id": message.id,
                        "workflow_id": workflow_id,
                    },
                    conversation_id=message.conversation_id,
                    contact_id=contact_id,
                    actor=actor_label("contact"),
                ),
            )
    short = [m for m in incoming if m.text and len(m.text.strip()) <= MAX_KEYWORD]
    keywords: dict[int, set[str]] = {}
    for message in short:
        if message.workspace_id not in keywords:
            keywords[message.workspace_id] = {fold(k) for k in unsubscribe_keywords(session, message.workspace_id)}
        if fold((message.text or "").strip()) in keywords[message.workspace_id]:
            _opt_out(session, message.workspace_id, message.contact_id, (message.text or "").strip(), message.id)
    return replies


def _mark_opened_by_reply(session: Session, message: Message) -> None:
    """A reply that opened its conversation (its first message) makes the conversation's opening
    source "broadcast_reply", as the "conversation opened" trigger calls it."""
    conversation = session.get(Conversation, message.conversation_id)
    if conversation is None or conversation.opening_source != OpeningSource.CONTACT:
        return
    earlier = session.scalar(
        select(Message.id).where(Message.conversation_id == message.conversation_id, Message.id < message.id).limit(1)
    )
    if earlier is None:
        conversations_service.mark_opened_by(session, conversation, OpeningSource.BROADCAST_REPLY)


def _opt_out(session: Session, workspace_id: int, contact_id: int, keyword: str | None, message_id: int | None) -> bool:
    if repo.opt_out(session, workspace_id, contact_id) is not None:
        return False
    session.add(
        BroadcastOptOut(workspace_id=workspace_id, contact_id=contact_id, keyword=keyword, message_id=message_id)
    )
    session.flush()
    return True


# ----- settings and opt-outs --------------------------------------------------------------------


def unsubscribe_keywords(session: Session, workspace_id: int) -> list[str]:
    row = repo.settings_of(session, workspace_id)
    return list(row.unsubscribe_keywords) if row is not None else list(DEFAULT_UNSUBSCRIBE_KEYWORDS)


def do_set_unsubscribe_keywords(session: Session, actor: Actor, keywords: Any) -> list[str]:
    actor.require(Permission.MANAGE_BROADCASTS)
    if not isinstance(keywords, list) or len(keywords) > MAX_KEYWORDS:
        raise ValidationFailed.field("unsubscribe_keywords", f"must be a list of at most {MAX_KEYWORDS} keywords")
    clean: list[str] = []
    for index, keyword in enumerate(keywords):
        text = keyword.strip() if isinstance(keyword, str) else ""
        if not text or len(text) > 64 or any(ch.isspace() for ch in text):
            raise ValidationFailed.field(f"unsubscribe_keywords[{index}]", "must be one word of 1 to 64 characters")
        if fold(text) not in {fold(k) for k in clean}:
            clean.append(text)
    row = repo.settings_of(session, actor.workspace_id)
    if row is None:
        row = BroadcastSettings(workspace_id=actor.workspace_id, unsubscribe_keywords=clean, updated_at=utcnow())
        session.add(row)
    else:
        row.unsubscribe_keywords = clean
        row.updated_at = utcnow()
    session.flush()
    return clean


def do_set_opted_out(session: Session, actor: Actor, contact: Contact, opted_out: bool) -> None:
    actor.require(Permission.MANAGE_BROADCASTS)
    if contact.workspace_id != actor.workspace_id:
        raise NotFound(f"No contact {contact.id}.")
    if opted_out:
        _opt_out(session, actor.workspace_id, contact.id, None, None)
    else:
        row = repo.opt_out(session, actor.workspace_id, contact.id)
        if row is not None:
            session.delete(row)
            session.flush()


def move_merged_contact(session: Session, survivor_id: int, merged_id: int) -> None:
    """The contact-merge hook (installed by `tertulia.consumers`): broadcasts follow the survivor."""
    repo.move_to_survivor(session, survivor_id, merged_id)


def is_opted_out(session: Session, workspace_id: int, contact_id: int) -> bool:
    return repo.opt_out(session, workspace_id, contact_id) is not None


# ----- results ----------------------------------------------------------------------------------


@dataclass
class Results:
    counts: Counts
    sent: int
    delivered: int
    read: int
    failed: int
    pending: int
    replied: int


def results(session: Session, item: Broadcast) -> Results:
    """Recipients (the snapshot once started), sent, delivered, read, replied, failed."""
    counts = counts_of(session, item.id)
    by_status = repo.delivery_counts(session, item.id)
    read = by_status.get(DeliveryStatus.READ.value, 0)
    delivered = by_status.get(DeliveryStatus.DELIVERED.value, 0) + read
    sent = by_status.get(DeliveryStatus.SENT.value, 0) + delivered
    return Results(
        counts,
        sent=sent,
        delivered=delivered,
        read=read,
        failed=by_status.get(DeliveryStatus.FAILED.value, 0),
        pending=by_status.get(DeliveryStatus.PENDING.value, 0),
        replied=by_status.get("replied", 0),
    )


@dataclass
class RecipientRow:
    id: int
    contact_id: int
    name: str
    phone: str | None
    email: str | None
    channel_id: int | None
    status: str  # waiting, excluded, skipped, or the message's delivery status
    reason: str | None
    at: datetime | None
    message_id: int | None
    replied_at: datetime | None


RECIPIENT_STATUSES = frozenset({s.value for s in RecipientState} | {s.value for s in DeliveryStatus})


def recipient_rows(
    session: Session,
    item: Broadcast,
    *,
    status: str | None = None,
    reason: str | None = None,
    channel_id: int | None = None,
    replied: bool | None = None,
    after_id: int | None = None,
    limit: int | None = None,
) -> Iterator[RecipientRow]:
    if status is not None and status not in RECIPIENT_STATUSES:
        raise ValidationFailed.field("status", f"must be one of: {', '.join(sorted(RECIPIENT_STATUSES))}")
    query = repo.recipients_query(item.id, status=status, reason=reason, channel_id=channel_id, replied=replied)
    if after_id is not None:
        query = query.where(BroadcastRecipient.id > after_id)
    if limit is not None:
        query = query.limit(limit)
    for recipient, first, last, phone, email, message_status, status_reason, status_at in session.execute(query):
        yield RecipientRow(
            recipient.id,
            recipient.contact_id,
            " ".join(part for part in (first, last) if part),
            phone,
            email,
            recipient.channel_id,
            str(message_status) if message_status is not None else recipient.state.value,
            status_reason if message_status is not None else recipient.reason,
            status_at or recipient.messaged_at or recipient.created_at,
            recipient.message_id,
            recipient.replied_at,
        )


def recipients_csv(session: Session, actor: Actor, item: Broadcast, **filters: Any) -> str:
    actor.require(Permission.MANAGE_BROADCASTS)
    return _csv(session, item, **filters)
