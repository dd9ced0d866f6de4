"""REST API v1: broadcasts (drafts, schedule, pause/resume/stop, dry run, preview, results and
their CSV exports, clone, resend to failed), the workspace's unsubscribe keywords and opt-outs.
Owners, Managers and API tokens only (`manage_broadcasts`)."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from tertulia.broadcasts import audience, service
from tertulia.broadcasts.models import Broadcast, BroadcastStatus
from tertulia.broadcasts.schemas import (
    BroadcastCreate,
    BroadcastOut,
    BroadcastPage,
    BroadcastUpdate,
    Counts,
    DryRunOut,
    LimitOut,
    OptOutBody,
    PreviewOut,
    RecipientOut,
    RecipientPage,
    ResultsOut,
    ScheduleBody,
    SettingsBody,
    SettingsOut,
)
from tertulia.contacts import service as contacts_service
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.http import API_ERRORS, CheckedInputRoute, DbSession
from tertulia.kit.pagination import decode_cursor, encode_cursor
from tertulia.kit.types import ID, is_id
from tertulia.users.auth import ApiActor
from tertulia.users.permissions import Permission

router = APIRouter(prefix="/api/v1", tags=["broadcasts"], route_class=CheckedInputRoute, responses=API_ERRORS)
CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "CSV"}
}


def counts_out(counts: audience.Counts) -> Counts:
    return Counts(
        audience=counts.audience,
        recipients=counts.recipients,
        excluded=counts.excluded,
        skipped=counts.skipped,
        by_channel={str(k): v for k, v in counts.by_channel.items()},
        templates_by_channel={str(k): v for k, v in counts.templates_by_channel.items()},
        excluded_by_reason=dict(counts.excluded_by_reason),
    )


def broadcast_out(session: Any, item: Broadcast, summary: service.Summary | None = None) -> BroadcastOut:
    started = item.status not in (BroadcastStatus.DRAFT, BroadcastStatus.SCHEDULED)
    results = service.results(session, item) if started and summary is None else None
    figures: Any = summary if summary is not None else results
    return BroadcastOut(
        id=item.id,
        name=item.name,
        labels=list(item.labels or []),
        status=item.status.value,
        failure_reason=item.failure_reason,
        failure_detail=item.failure_detail,
        audience=item.audience.value,
        segment_id=item.segment_id,
        exclude_segment_id=item.exclude_segment_id,
        channel_mode=item.channel_mode.value,
        channel_id=item.channel_id,
        content=dict(item.content or {}),
        over_limit=item.over_limit.value,
        reply_window_hours=item.reply_window_hours,
        reply_workflow_id=item.reply_workflow_id,
        scheduled_at=item.scheduled_at,
        started_at=item.started_at,
        finished_at=item.finished_at,
        copied_from_id=item.copied_from_id,
        resend_of_id=item.resend_of_id,
        created_at=item.created_at,
        updated_at=item.updated_at,
        recipients=(summary.recipients if summary else results.counts.recipients if results else None)
        if started
        else None,
        counts=counts_out(results.counts) if results else None,
        results=ResultsOut(
            sent=figures.sent,
            delivered=figures.delivered,
            read=figures.read,
            replied=figures.replied,
            failed=figures.failed,
            pending=figures.pending,
        )
        if started and figures is not None
        else None,
    )


def _fields(body: BroadcastCreate | BroadcastUpdate) -> service.DraftFields:
    given = body.model_dump(exclude_unset=True)
    nullable = {"labels", "exclude_segment_id", "reply_workflow_id"}
    for name, value in given.items():
        if value is None and name not in nullable:
            raise ValidationFailed.field(name, "must not be null")
    return service.DraftFields(
        **{k: v for k, v in given.items() if v is not None},
        unset=frozenset(k for k, v in given.items() if v is None),
    )


def _cursor_id(cursor: str | None) -> int | None:
    decoded = decode_cursor(cursor)
    if decoded is None:
        return None
    value = decoded.get("id")
    if not is_id(value):
        raise ValidationFailed.field("cursor", "not a valid cursor")
    return value


@router.post("/broadcasts", response_model=BroadcastOut, status_code=201)
def create_broadcast(session: DbSession, actor: ApiActor, body: BroadcastCreate) -> BroadcastOut:
    """A new draft: a name and labels, and any of audience, channel and content (or later, by PATCH)."""
    return broadcast_out(session, service.do_create_broadcast(session, actor, _fields(body)))


@router.get("/broadcasts", response_model=BroadcastPage)
def list_broadcasts(
    session: DbSession,
    actor: ApiActor,
    status: str | None = None,
    label: Annotated[str | None, Query(max_length=40)] = None,
    scheduled_from: datetime | None = None,
    scheduled_to: datetime | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> BroadcastPage:
    """Newest first; filter by status, label and when it was or is to be sent (`scheduled_from` <=
    time < `scheduled_to`, with their offsets: a calendar). Each started one has its recipients and
    results (not the per-reason counts: read one broadcast for those)."""
    rows = service.list_broadcasts(
        session,
        actor,
        status=status,
        label=label,
        before_id=_cursor_id(cursor),
        limit=limit,
        scheduled_from=scheduled_from,
        scheduled_to=scheduled_to,
    )
    page = rows[:limit]
    next_cursor = encode_cursor({"id": page[-1].id}) if len(rows) > limit and page else None
    figures = service.summaries(session, actor, page)
    return BroadcastPage(items=[broadcast_out(session, b, figures[b.id]) for b in page], next_cursor=next_cursor)


@router.get("/broadcasts/{broadcast_id}", response_model=BroadcastOut)
def get_broadcast(session: DbSession, actor: ApiActor, broadcast_id: ID) -> BroadcastOut:
    """The broadcast, with its counts and results once it has started."""
    return broadcast_out(session, service.access_broadcast(session, actor, broadcast_id))


@router.patch("/broadcasts/{broadcast_id}", response_model=BroadcastOut)
def update_broadcast(session: DbSession, actor: ApiActor, broadcast_id: ID, body: BroadcastUpdate) -> BroadcastOut:
    """Change a draft (409 broadcast_status otherwise)."""
    item = service.access_broadcast(session, actor, broadcast_id, lock=True)
    return broadcast_out(session, service.do_update_broadcast(session, actor, item, _fields(body)))


@router.delete("/broadcasts/{broadcast_id}", status_code=204)
def delete_broadcast(session: DbSession, actor: ApiActor, broadcast_id: ID) -> Response:
    """Delete a draft (409 broadcast_status otherwise)."""
    item = service.access_broadcast(session, actor, broadcast_id, lock=True)
    service.do_delete_broadcast(session, actor, item)
    return Response(status_code=204)


@router.post("/broadcasts/{broadcast_id}/schedule", response_model=BroadcastOut)
def schedule_broadcast(session: DbSession, actor: ApiActor, broadcast_id: ID, body: ScheduleBody) -> BroadcastOut:
    """Send now (no `scheduled_at`) or at a time. 422 when something is missing, 409
    `broadcast_refused` when nobody can receive it or it is over a WhatsApp messaging limit with
    `over_limit` refuse."""
    item = service.access_broadcast(session, actor, broadcast_id, lock=True)
    return broadcast_out(session, service.do_schedule(session, actor, item, body.scheduled_at))


def _transition(name: str, doc: str) -> None:
    action = getattr(service, f"do_{name}")

    def endpoint(session: DbSession, actor: ApiActor, broadcast_id: ID) -> BroadcastOut:
        item = service.access_broadcast(session, actor, broadcast_id, lock=True)
        return broadcast_out(session, action(session, actor, item))

    endpoint.__doc__ = doc
    endpoint.__name__ = f"{name}_broadcast"
    router.post(f"/broadcasts/{{broadcast_id}}/{name}", response_model=BroadcastOut, name=f"{name}_broadcast")(endpoint)


_transition("cancel", "A scheduled broadcast back to draft.")
_transition("pause", "A sending broadcast claims no further recipients until resumed.")
_transition("resume", "A paused broadcast goes on where it stopped.")
_transition("stop", "A sending or paused broadcast is cancelled; recipients not yet messaged are skipped.")


@router.post("/broadcasts/{broadcast_id}/clone", response_model=BroadcastOut, status_code=201)
def clone_broadcast(session: DbSession, actor: ApiActor, broadcast_id: ID) -> BroadcastOut:
    """A new draft with the same audience, channel, content and time."""
    item = service.access_broadcast(session, actor, broadcast_id)
    return broadcast_out(session, service.do_clone(session, actor, item))


@router.post("/broadcasts/{broadcast_id}/resend-failed", response_model=BroadcastOut, status_code=201)
def resend_failed(session: DbSession, actor: ApiActor, broadcast_id: ID) -> BroadcastOut:
    """A new draft with the same content whose audience is the recipients whose message failed."""
    item = service.access_broadcast(session, actor, broadcast_id)
    return broadcast_out(session, service.do_resend_failed(session, actor, item))


@router.post("/broadcasts/{broadcast_id}/dry-run", response_model=DryRunOut)
def dry_run(session: DbSession, actor: ApiActor, broadcast_id: ID) -> DryRunOut:
    """How many contacts the audience has now, how many would receive it on which channel, how many
    are excluded and why, and the WhatsApp messaging limits involved. Nothing is written."""
    item = service.access_broadcast(session, actor, broadcast_id)
    result = service.dry_run(session, actor, item)
    return DryRunOut(
        counts=counts_out(result.counts),
        messaging_limits=[
            LimitOut(channel_id=c.channel_id, limit=c.limit, used=c.used, room=c.room, over=c.over)
            for c in result.limits
        ],
        refused=result.refused,
        refusal=result.refusal,
    )


@router.post("/broadcasts/{broadcast_id}/dry-run/excluded.csv", response_class=Response, responses=CSV)
def dry_run_excluded(session: DbSession, actor: ApiActor, broadcast_id: ID) -> Response:
    """The dry run's excluded contacts and why, as CSV (once started: the snapshot's)."""
    item = service.access_broadcast(session, actor, broadcast_id)
    return _csv_response(service.excluded_csv(session, actor, item), f"broadcast-{item.id}-excluded.csv")


@router.post("/broadcasts/{broadcast_id}/preview", response_model=list[PreviewOut])
def preview(session: DbSession, actor: ApiActor, broadcast_id: ID) -> list[PreviewOut]:
    """The message as three real contacts of the audience would receive it."""
    item = service.access_broadcast(session, actor, broadcast_id)
    return [PreviewOut(**vars(p)) for p in service.preview(session, actor, item)]


@router.get("/broadcasts/{broadcast_id}/recipients", response_model=RecipientPage)
def recipients(
    session: DbSession,
    actor: ApiActor,
    broadcast_id: ID,
    status: str | None = None,
    reason: Annotated[str | None, Query(max_length=200)] = None,
    channel_id: ID | None = None,
    replied: bool | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> RecipientPage:
    """Per-recipient rows (oldest first) with status, time and failure reason; filter by status
    (waiting, excluded, skipped, pending, sent, delivered, read, failed), reason, channel, replied."""
    item = service.access_broadcast(session, actor, broadcast_id)
    rows = list(
        service.recipient_rows(
            session,
            item,
            status=status,
            reason=reason,
            channel_id=channel_id,
            replied=replied,
            after_id=_cursor_id(cursor),
            limit=limit + 1,
        )
    )
    page = rows[:limit]
    next_cursor = encode_cursor({"id": page[-1].id}) if len(rows) > limit and page else None
    return RecipientPage(
        items=[
            RecipientOut(
                id=r.id,
                contact_id=r.contact_id,
                name=r.name,
                channel_id=r.channel_id,
                status=r.status,
                reason=r.reason,
                at=r.at,
                message_id=r.message_id,
                replied_at=r.replied_at,
            )
            for r in page
        ],
        next_cursor=next_cursor,
    )


@router.get("/broadcasts/{broadcast_id}/recipients.csv", response_class=Response, responses=CSV)
def recipients_csv(
    session: DbSession,
    actor: ApiActor,
    broadcast_id: ID,
    status: str | None = None,
    reason: Annotated[str | None, Query(max_length=200)] = None,
    channel_id: ID | None = None,
    replied: bool | None = None,
) -> Response:
    """The recipients (with the same filters) as CSV."""
    item = service.access_broadcast(session, actor, broadcast_id)
    text = service.recipients_csv(
        session, actor, item, status=status, reason=reason, channel_id=channel_id, replied=replied
    )
    return _csv_response(text, f"broadcast-{item.id}-recipients.csv")


def _csv_response(text: str, filename: str) -> Response:
    return Response(
        content=text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/broadcast-settings", response_model=SettingsOut)
def get_settings(session: DbSession, actor: ApiActor) -> SettingsOut:
    """The words that, sent alone, opt a contact out of broadcasts (default BAJA, STOP)."""
    actor.require(Permission.MANAGE_BROADCASTS)
    return SettingsOut(unsubscribe_keywords=service.unsubscribe_keywords(session, actor.workspace_id))


@router.put("/broadcast-settings", response_model=SettingsOut)
def put_settings(session: DbSession, actor: ApiActor, body: SettingsBody) -> SettingsOut:
    return SettingsOut(
        unsubscribe_keywords=service.do_set_unsubscribe_keywords(session, actor, body.unsubscribe_keywords)
    )


@router.post("/broadcast-opt-outs", status_code=204)
def opt_out(session: DbSession, actor: ApiActor, body: OptOutBody) -> Response:
    """Opt a contact out of broadcasts (they are excluded, reason opted_out)."""
    contact = contacts_service.access_contact(session, actor, f"id:{body.contact_id}")
    service.do_set_opted_out(session, actor, contact, True)
    return Response(status_code=204)


@router.delete("/broadcast-opt-outs/{contact_id}", status_code=204)
def opt_in(session: DbSession, actor: ApiActor, contact_id: ID) -> Response:
    """Take a contact's opt-out back."""
    contact = contacts_service.access_contact(session, actor, f"id:{contact_id}")
    service.do_set_opted_out(session, actor, contact, False)
    return Response(status_code=204)
