"""REST API v1: segments, segment members, filter preview, a contact's segments."""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from tertulia.contacts import service as contacts_service
from tertulia.contacts.schemas import ContactPage, Identifier
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.http import API_ERRORS, CheckedInputRoute, DbSession, read_only
from tertulia.kit.pagination import check_limit, decode_cursor, encode_cursor
from tertulia.kit.types import ID, is_id
from tertulia.segments import service
from tertulia.segments.schemas import PreviewBody, PreviewOut, SegmentCreate, SegmentOut, SegmentRef, SegmentUpdate
from tertulia.segments.service import CountedSegment
from tertulia.users.auth import ApiActor
from tertulia.users.permissions import Permission

router = APIRouter(prefix="/api/v1", tags=["segments"], route_class=CheckedInputRoute, responses=API_ERRORS)


def segment_out(counted: CountedSegment) -> SegmentOut:
    segment = counted.segment
    return SegmentOut(
        id=segment.id,
        name=segment.name,
        filter=segment.filter,
        count=counted.count,
        count_computed_at=counted.count_computed_at,
        filter_error=counted.filter_error,
        created_at=segment.created_at,
        updated_at=segment.updated_at,
    )


def _after_id(cursor: str | None) -> int | None:
    decoded = decode_cursor(cursor)
    if decoded is None:
        return None
    value = decoded.get("id")
    if not is_id(value):
        raise ValidationFailed.field("cursor", "not a valid cursor")
    return value


@router.get("/segments", response_model=list[SegmentOut])
def list_segments(session: DbSession, actor: ApiActor) -> list[SegmentOut]:
    return [segment_out(c) for c in service.list_segments(session, actor)]


@router.post("/segments", response_model=SegmentOut, status_code=201)
def create_segment(session: DbSession, actor: ApiActor, body: SegmentCreate) -> SegmentOut:
    actor.require(Permission.MANAGE_SEGMENTS)
    if body.copy_of is not None:
        source = service.access_segment(session, actor, body.copy_of)
        segment = service.do_save_as_new(session, actor, source, body.name, body.filter)
    else:
        segment = service.do_create_segment(session, actor, body.name, body.filter or {})
    return segment_out(service.counted_segments(session, actor, [segment])[0])


@router.get("/segments/{segment_id}", response_model=SegmentOut)
def get_segment(session: DbSession, actor: ApiActor, segment_id: ID) -> SegmentOut:
    segment = service.access_segment(session, actor, segment_id)
    return segment_out(service.counted_segments(session, actor, [segment])[0])


@router.patch("/segments/{segment_id}", response_model=SegmentOut)
def update_segment(session: DbSession, actor: ApiActor, segment_id: ID, body: SegmentUpdate) -> SegmentOut:
    segment = service.access_segment(session, actor, segment_id, Permission.MANAGE_SEGMENTS)
    fields = body.model_dump(exclude_unset=True)
    if fields.get("name", "") is None or ("filter" in fields and fields["filter"] is None):
        raise ValidationFailed.field("name" if "name" in fields else "filter", "must not be null")
    service.do_update_segment(session, actor, segment, name=body.name, raw_filter=body.filter)
    return segment_out(service.counted_segments(session, actor, [segment])[0])


@router.delete("/segments/{segment_id}", status_code=204)
def delete_segment(session: DbSession, actor: ApiActor, segment_id: ID) -> Response:
    segment = service.access_segment(session, actor, segment_id, Permission.MANAGE_SEGMENTS)
    service.do_delete_segment(session, actor, segment)
    return Response(status_code=204)


@router.get("/segments/{segment_id}/contacts", response_model=ContactPage)
def segment_contacts(
    session: DbSession,
    actor: ApiActor,
    segment_id: ID,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ContactPage:
    segment = service.access_segment(session, actor, segment_id)
    size = check_limit(limit)
    checked = service.checked_segment_filter(session, actor, segment)
    rows = service.contacts_page(session, actor, checked, after_id=_after_id(cursor), limit=size)
    has_more = len(rows) > size
    rows = rows[:size]
    next_cursor = encode_cursor({"id": rows[-1].id}) if has_more and rows else None
    return ContactPage(items=contacts_service.contacts_out(session, rows), next_cursor=next_cursor)


@router.post("/segments/preview", response_model=PreviewOut)
@read_only
def preview(session: DbSession, actor: ApiActor, body: PreviewBody) -> PreviewOut:
    count, rows = service.preview(session, actor, body.filter or {}, body.limit)
    return PreviewOut(count=count, contacts=contacts_service.contacts_out(session, rows))


@router.get("/contacts/{identifier}/segments", response_model=list[SegmentRef])
def contact_segments(session: DbSession, actor: ApiActor, identifier: Identifier) -> list[SegmentRef]:
    contact = contacts_service.access_contact(session, actor, identifier)
    return [SegmentRef(id=s.id, name=s.name) for s in service.segments_of_contact(session, actor, contact)]
