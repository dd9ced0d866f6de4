"""REST API v1: contacts, tags, custom fields."""

from contextlib import nullcontext
from typing import Annotated

from fastapi import APIRouter, Query, Response

from tertulia.contacts import merge_suggestions, service
from tertulia.contacts import repository as repo
from tertulia.contacts.models import Contact, MergeSuggestion
from tertulia.contacts.schemas import (
    ActivityOut,
    ContactOut,
    ContactPage,
    ContactWrite,
    CustomFieldCreate,
    CustomFieldOut,
    CustomFieldUpdate,
    Identifier,
    IdentityOut,
    MergeBody,
    MergeSuggestionOut,
    TagBody,
    TagOut,
    TagsBody,
)
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.http import API_ERRORS, CheckedInputRoute, DbSession
from tertulia.kit.pagination import check_limit, decode_cursor, encode_cursor
from tertulia.kit.types import ID, is_id
from tertulia.segments import service as segments_service
from tertulia.segments.language import parse_filter_param
from tertulia.users.auth import ApiActor
from tertulia.users.permissions import Permission

router = APIRouter(prefix="/api/v1", tags=["contacts"], route_class=CheckedInputRoute, responses=API_ERRORS)


def _cursor_id(cursor: str | None) -> int | None:
    decoded = decode_cursor(cursor)
    if decoded is None:
        return None
    value = decoded.get("id")
    if not is_id(value):
        raise ValidationFailed.field("cursor", "not a valid cursor")
    return value


@router.get("/contacts", response_model=ContactPage)
def list_contacts(
    session: DbSession,
    actor: ApiActor,
    search: str | None = None,
    unassigned: bool = False,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    filter: Annotated[str | None, Query(description="A segment filter as JSON (docs/segments.md).")] = None,
) -> ContactPage:
    actor.require(Permission.VIEW_CONTACTS)
    size = check_limit(limit)
    extra = None if filter is None else segments_service.filter_clause(session, actor, parse_filter_param(filter))
    query = repo.contacts_page_query(
        actor.workspace_id, after_id=_cursor_id(cursor), limit=size, search=search, unassigned=unassigned, extra=extra
    )
    with segments_service.filter_deadline(session) if extra is not None else nullcontext():
        rows = list(session.scalars(query))
    has_more = len(rows) > size
    rows = rows[:size]
    next_cursor = encode_cursor({"id": rows[-1].id}) if has_more and rows else None
    return ContactPage(items=service.contacts_out(session, rows), next_cursor=next_cursor)


@router.post("/contacts", response_model=ContactOut, status_code=201)
def create_contact(session: DbSession, actor: ApiActor, body: ContactWrite) -> ContactOut:
    contact = service.do_create_contact(session, actor, body.model_dump(exclude_unset=True))
    return service.contacts_out(session, [contact])[0]


@router.get("/contacts/{identifier}", response_model=ContactOut)
def get_contact(session: DbSession, actor: ApiActor, identifier: Identifier) -> ContactOut:
    contact = service.access_contact(session, actor, identifier)
    return service.contacts_out(session, [contact])[0]


@router.patch("/contacts/{identifier}", response_model=ContactOut)
def update_contact(session: DbSession, actor: ApiActor, identifier: Identifier, body: ContactWrite) -> ContactOut:
    contact = service.access_contact(session, actor, identifier, Permission.EDIT_CONTACTS)
    service.do_update_contact(session, actor, contact, body.model_dump(exclude_unset=True))
    return service.contacts_out(session, [contact])[0]


@router.delete("/contacts/{identifier}", status_code=204)
def delete_contact(session: DbSession, actor: ApiActor, identifier: Identifier) -> Response:
    contact = service.access_contact(session, actor, identifier, Permission.DELETE_CONTACTS)
    service.do_delete_contact(session, actor, contact)
    return Response(status_code=204)


@router.post("/contacts/{identifier}/tags", response_model=ContactOut)
def add_tags(session: DbSession, actor: ApiActor, identifier: Identifier, body: TagsBody) -> ContactOut:
    contact = service.access_contact(session, actor, identifier, Permission.EDIT_CONTACTS)
    service.do_add_tags(session, actor, contact, body.tags)
    return service.contacts_out(session, [contact])[0]


@router.delete("/contacts/{identifier}/tags", response_model=ContactOut)
def remove_tags(session: DbSession, actor: ApiActor, identifier: Identifier, body: TagsBody) -> ContactOut:
    contact = service.access_contact(session, actor, identifier, Permission.EDIT_CONTACTS)
    service.do_remove_tags(session, actor, contact, body.tags)
    return service.contacts_out(session, [contact])[0]


@router.post("/contacts/{identifier}/block", response_model=ContactOut)
def block_contact(session: DbSession, actor: ApiActor, identifier: Identifier) -> ContactOut:
    """The contact's messages stop reaching the inbox (each is counted in `blocked_messages` and
    recorded as a `message.blocked` event, its text and files not kept) and its web-chat visitors'
    tokens stop working at once. Blocking a blocked contact changes nothing."""
    contact = service.access_contact(session, actor, identifier, Permission.EDIT_CONTACTS)
    service.do_block_contact(session, actor, contact)
    return service.contacts_out(session, [contact])[0]


@router.post("/contacts/{identifier}/unblock", response_model=ContactOut)
def unblock_contact(session: DbSession, actor: ApiActor, identifier: Identifier) -> ContactOut:
    contact = service.access_contact(session, actor, identifier, Permission.EDIT_CONTACTS)
    service.do_unblock_contact(session, actor, contact)
    return service.contacts_out(session, [contact])[0]


@router.post("/contacts/{identifier}/end-sessions", response_model=ContactOut)
def end_visitor_sessions(session: DbSession, actor: ApiActor, identifier: Identifier) -> ContactOut:
    """End the contact's web-chat sessions without blocking it: its visitors' tokens stop working and
    open chat windows close; a visitor who comes back starts as a new visitor."""
    contact = service.access_contact(session, actor, identifier, Permission.EDIT_CONTACTS)
    service.do_end_visitor_sessions(session, actor, contact)
    return service.contacts_out(session, [contact])[0]


@router.get("/contacts/{identifier}/activity", response_model=list[ActivityOut])
def contact_activity(
    session: DbSession, actor: ApiActor, identifier: Identifier, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[ActivityOut]:
    contact = service.access_contact(session, actor, identifier)
    rows = repo.activity_page(session, contact.id, before_id=None, limit=limit)[:limit]
    return [ActivityOut.model_validate(row, from_attributes=True) for row in rows]


@router.get("/contacts/{identifier}/identities", response_model=list[IdentityOut])
def contact_identities(session: DbSession, actor: ApiActor, identifier: Identifier) -> list[IdentityOut]:
    contact = service.access_contact(session, actor, identifier)
    return [IdentityOut.model_validate(i, from_attributes=True) for i in repo.identities(session, contact.id)]


@router.post("/contacts/{identifier}/merge", response_model=ContactOut)
def merge_contact(session: DbSession, actor: ApiActor, identifier: Identifier, body: MergeBody) -> ContactOut:
    survivor = service.access_contact(session, actor, identifier, Permission.MERGE_CONTACTS)
    other = service.access_contact(session, actor, body.other, Permission.MERGE_CONTACTS)
    service.do_merge_contacts(session, actor, survivor, other, body.take_from_other)
    return service.contacts_out(session, [survivor])[0]


def _suggestion_out(session: DbSession, row: MergeSuggestion, other: Contact) -> MergeSuggestionOut:
    return MergeSuggestionOut(
        id=row.id,
        reason=row.reason,
        status=row.status,
        created_at=row.created_at,
        contact=service.contacts_out(session, [other])[0],
        survivor_id=row.contact_id,
    )


@router.get("/contacts/{identifier}/merge_suggestions", response_model=list[MergeSuggestionOut])
def list_merge_suggestions(session: DbSession, actor: ApiActor, identifier: Identifier) -> list[MergeSuggestionOut]:
    """Open suggestions that this contact and another are one person (oldest first)."""
    contact = service.access_contact(session, actor, identifier)
    views = merge_suggestions.open_suggestions(session, actor, contact)
    return [_suggestion_out(session, view.suggestion, view.other) for view in views]


@router.post("/contacts/{identifier}/merge_suggestions/{suggestion_id}/accept", response_model=ContactOut)
def accept_merge_suggestion(
    session: DbSession, actor: ApiActor, identifier: Identifier, suggestion_id: ID
) -> ContactOut:
    """Merge the pair (the older contact survives); answers the surviving contact."""
    contact = service.access_contact(session, actor, identifier, Permission.MERGE_CONTACTS)
    row = merge_suggestions.access_suggestion(session, actor, contact, suggestion_id)
    survivor = merge_suggestions.do_accept(session, actor, row)
    return service.contacts_out(session, [survivor])[0]


@router.post("/contacts/{identifier}/merge_suggestions/{suggestion_id}/dismiss", response_model=MergeSuggestionOut)
def dismiss_merge_suggestion(
    session: DbSession, actor: ApiActor, identifier: Identifier, suggestion_id: ID
) -> MergeSuggestionOut:
    """Not the same person: the pair is never suggested again."""
    contact = service.access_contact(session, actor, identifier, Permission.MERGE_CONTACTS)
    row = merge_suggestions.access_suggestion(session, actor, contact, suggestion_id)
    dismissed = merge_suggestions.do_dismiss(session, actor, row)
    other_id = row.other_contact_id if row.contact_id == contact.id else row.contact_id
    other = repo.contact_by_id(session, actor.workspace_id, other_id)
    assert other is not None  # the pair's rows cascade with either contact
    return _suggestion_out(session, dismissed, other)


@router.post("/contacts/{identifier}/identities/{identity_id}/split", response_model=ContactOut, status_code=201)
def split_identity(session: DbSession, actor: ApiActor, identifier: Identifier, identity_id: ID) -> ContactOut:
    contact = service.access_contact(session, actor, identifier, Permission.MERGE_CONTACTS)
    new_contact = service.do_split_identity(session, actor, contact, identity_id)
    return service.contacts_out(session, [new_contact])[0]


@router.get("/tags", response_model=list[TagOut], tags=["tags"])
def list_tags(session: DbSession, actor: ApiActor) -> list[TagOut]:
    actor.require(Permission.VIEW_CONTACTS)
    return [TagOut.model_validate(t, from_attributes=True) for t in repo.list_tags(session, actor.workspace_id)]


@router.post("/tags", response_model=TagOut, status_code=201, tags=["tags"])
def create_tag(session: DbSession, actor: ApiActor, body: TagBody) -> TagOut:
    return TagOut.model_validate(service.do_create_tag(session, actor, body.name), from_attributes=True)


@router.get("/tags/{tag_id}", response_model=TagOut, tags=["tags"])
def get_tag(session: DbSession, actor: ApiActor, tag_id: ID) -> TagOut:
    tag = service.access_tag(session, actor, tag_id, Permission.VIEW_CONTACTS)
    return TagOut.model_validate(tag, from_attributes=True)


@router.patch("/tags/{tag_id}", response_model=TagOut, tags=["tags"])
def rename_tag(session: DbSession, actor: ApiActor, tag_id: ID, body: TagBody) -> TagOut:
    """Saved segments name tags by text: a filter on the old name stops matching."""
    tag = service.do_rename_tag(session, actor, service.access_tag(session, actor, tag_id), body.name)
    return TagOut.model_validate(tag, from_attributes=True)


@router.delete("/tags/{tag_id}", status_code=204, tags=["tags"])
def delete_tag(session: DbSession, actor: ApiActor, tag_id: ID) -> Response:
    """Removes the tag from every contact, then from the catalogue."""
    service.do_delete_tag(session, actor, service.access_tag(session, actor, tag_id))
    return Response(status_code=204)


@router.get("/custom-fields", response_model=list[CustomFieldOut], tags=["custom fields"])
def list_custom_fields(session: DbSession, actor: ApiActor) -> list[CustomFieldOut]:
    actor.require(Permission.VIEW_CONTACTS)
    return [
        CustomFieldOut.model_validate(d, from_attributes=True) for d in repo.custom_fields(session, actor.workspace_id)
    ]


@router.post("/custom-fields", response_model=CustomFieldOut, status_code=201, tags=["custom fields"])
def create_custom_field(session: DbSession, actor: ApiActor, body: CustomFieldCreate) -> CustomFieldOut:
    definition = service.do_create_custom_field(session, actor, body.key, body.label, body.type, body.options)
    return CustomFieldOut.model_validate(definition, from_attributes=True)


@router.patch("/custom-fields/{key}", response_model=CustomFieldOut, tags=["custom fields"])
def update_custom_field(session: DbSession, actor: ApiActor, key: str, body: CustomFieldUpdate) -> CustomFieldOut:
    definition = service.access_custom_field(session, actor, key)
    service.do_update_custom_field(
        session, actor, definition, label=body.label, options=body.options, position=body.position
    )
    return CustomFieldOut.model_validate(definition, from_attributes=True)


@router.delete("/custom-fields/{key}", status_code=204, tags=["custom fields"])
def delete_custom_field(session: DbSession, actor: ApiActor, key: str) -> Response:
    definition = service.access_custom_field(session, actor, key)
    service.do_delete_custom_field(session, actor, definition)
    return Response(status_code=204)
