"""Segments: the rules. Validate and check permissions first (check_*), then change data (do_*).

Counts: a segment's count is cached on its row and shown while younger than COUNT_MAX_AGE (60 s);
counts past REFRESH_AFTER (30 s) are still shown but recounted in the background (segments.tasks),
so regular viewers never wait. The counting itself, and the filter contexts, are in `counts`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.orm import Session

from tertulia.contacts import repository as contacts_repo
from tertulia.contacts.models import Contact
from tertulia.kit.clock import utcnow
from tertulia.kit.db import on_commit
from tertulia.kit.errors import Conflict, ValidationFailed, found
from tertulia.kit.text import tidy_name
from tertulia.segments import repository as repo
from tertulia.segments import tasks
from tertulia.segments.compiler import compile_filter
from tertulia.segments.counts import (
    COUNT_MAX_AGE,
    REFRESH_AFTER,
    CountedSegment,
    check_context,
    checked_filters_by_id,
    count_matching,
    count_segments,
    eval_context,
    filter_deadline,
)
from tertulia.segments.evaluator import ContactSnapshot, matches
from tertulia.segments.language import (
    CheckedFilter,
    check_filter,
    parse_filter,
    referenced_segment_ids,
)
from tertulia.segments.models import Segment
from tertulia.users.permissions import Actor, Permission

# Re-exported: callers ask the service for contexts and counts.
__all__ = [
    "COUNT_MAX_AGE",
    "REFRESH_AFTER",
    "CountedSegment",
    "check_context",
    "count_matching",
    "eval_context",
    "filter_deadline",
]

log = structlog.get_logger()

MAX_NAME = 120


def _one(category: str, operator: str, field: str | None = None, value: Any = None) -> dict[str, Any]:
    condition: dict[str, Any] = {"category": category, "operator": operator}
    if field is not None:
        condition["field"] = field
    if value is not None:
        condition["value"] = value
    return {"match": "all", "groups": [{"match": "all", "conditions": [condition]}]}


DEFAULT_SEGMENTS: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "Contacts created <7 days ago",
        _one("contact_field", "less_than_ago", "created_at", {"amount": 7, "unit": "days"}),
    ),
    (
        "Contacts inactive >30 days",
        _one("last_incoming_message", "more_than_ago", value={"amount": 30, "unit": "days"}),
    ),
    ("Contacts with tags", _one("tag", "exists")),
    ("Country known", _one("contact_field", "exists", "country")),
    ("Language known", _one("contact_field", "exists", "language")),
)


# ----- contexts -------------------------------------------------------------------------------


def check_ad_hoc_filter(session: Session, actor: Actor, raw: Any, prefix: str = "filter") -> CheckedFilter:
    actor.require(Permission.VIEW_CONTACTS)
    return check_filter(raw, check_context(session, actor.workspace_id), prefix)


def filter_clause(session: Session, actor: Actor, raw: Any, prefix: str = "filter") -> Any:
    """A checked, workspace-scoped SQL clause for an ad-hoc filter (the contacts list uses it)."""
    checked = check_ad_hoc_filter(session, actor, raw, prefix)
    return compile_filter(checked, eval_context(session, actor))


# ----- access and validation ------------------------------------------------------------------


def access_segment(
    session: Session, actor: Actor, segment_id: int, permission: Permission = Permission.VIEW_CONTACTS
) -> Segment:
    actor.require(permission)
    return found(repo.segment_by_id(session, actor.workspace_id, segment_id), f"No segment {segment_id}.")


def check_segment_name(session: Session, workspace_id: int, name: Any, exclude_id: int | None = None) -> str:
    text = tidy_name(name) if isinstance(name, str) else ""
    if not text:
        raise ValidationFailed.field("name", "is required")
    if len(text) > MAX_NAME:
        raise ValidationFailed.field("name", f"must be at most {MAX_NAME} characters")
    other = repo.segment_by_name_key(session, workspace_id, text.casefold())
    if other is not None and other.id != exclude_id:
        raise Conflict(
            f"A segment named {other.name!r} already exists.",
            code="duplicate_name",
            details={"name": f"already used by segment {other.id}", "segment_id": other.id},
        )
    return text


def check_segment_filter(
    session: Session, workspace_id: int, raw: Any, self_segment_id: int | None = None
) -> dict[str, Any]:
    """The filter as it will be stored (its JSON shape normalised), after checking it fully."""
    check_filter(raw, check_context(session, workspace_id, self_segment_id), "filter")
    return parse_filter(raw, "filter").model_dump(exclude_none=True)


# ----- writing --------------------------------------------------------------------------------


def do_create_segment(session: Session, actor: Actor, name: Any, raw_filter: Any) -> Segment:
    actor.require(Permission.MANAGE_SEGMENTS)
    clean_name = check_segment_name(session, actor.workspace_id, name)
    stored = check_segment_filter(session, actor.workspace_id, raw_filter)
    segment = Segment(
        workspace_id=actor.workspace_id,
        name=clean_name,
        name_key=clean_name.casefold(),
        filter=stored,
        created_by_user_id=actor.user_id,
    )
    session.add(segment)
    session.flush()
    return segment


def do_update_segment(
    session: Session, actor: Actor, segment: Segment, *, name: Any = None, raw_filter: Any = None
) -> Segment:
    """Rename and/or replace the filter. A new filter drops the cached count."""
    actor.require(Permission.MANAGE_SEGMENTS)
    clean_name = None if name is None else check_segment_name(session, actor.workspace_id, name, segment.id)
    stored = None if raw_filter is None else check_segment_filter(session, actor.workspace_id, raw_filter, segment.id)
    if clean_name is not None:
        segment.name = clean_name
        segment.name_key = clean_name.casefold()
    if stored is not None and stored != segment.filter:
        segment.filter = stored
        segment.contact_count = None
        segment.count_computed_at = None
    segment.updated_at = utcnow()
    session.flush()
    return segment


def do_save_as_new(session: Session, actor: Actor, source: Segment, name: Any, raw_filter: Any = None) -> Segment:
    """A copy of `source` under a new name, with an edited filter when given; `source` is untouched."""
    return do_create_segment(session, actor, name, source.filter if raw_filter is None else raw_filter)


def segments_using(session: Session, workspace_id: int, segment_id: int) -> list[Segment]:
    return [s for s in repo.segments(session, workspace_id) if segment_id in referenced_segment_ids(s.filter)]


def do_delete_segment(session: Session, actor: Actor, segment: Segment) -> None:
    actor.require(Permission.MANAGE_SEGMENTS)
    users = segments_using(session, actor.workspace_id, segment.id)
    if users:
        names = ", ".join(f"{s.name!r} (id {s.id})" for s in users)
        raise Conflict(
            f"Segment {segment.name!r} is used by {names}; change those first.",
            code="segment_in_use",
            details={"used_by": [{"id": s.id, "name": s.name} for s in users]},
        )
    session.delete(segment)
    session.flush()


# The default segments' names in the workspace's language when it is created (they are ordinary,
# renamable segments from then on).
DEFAULT_SEGMENT_NAMES: dict[str, dict[str, str]] = {
    "es": {
        "Contacts created <7 days ago": "Contactos creados hace <7 días",
        "Contacts inactive >30 days": "Contactos inactivos >30 días",
        "Contacts with tags": "Contactos con etiquetas",
        "Country known": "País conocido",
        "Language known": "Idioma conocido",
    }
}


def do_create_default_segments(session: Session, workspace_id: int, language: str = "en") -> list[Segment]:
    """The five segments every new workspace starts with; ordinary segments from then on."""
    names = DEFAULT_SEGMENT_NAMES.get(language, {})
    created = []
    for english, filter_ in DEFAULT_SEGMENTS:
        name = names.get(english, english)
        segment = Segment(workspace_id=workspace_id, name=name, name_key=name.casefold(), filter=dict(filter_))
        session.add(segment)
        created.append(segment)
    session.flush()
    return created


# ----- counts ---------------------------------------------------------------------------------


def counted_segments(
    session: Session,
    actor: Actor,
    segments: Sequence[Segment],
    *,
    max_age: timedelta = COUNT_MAX_AGE,
    schedule_refresh: bool = True,
) -> list[CountedSegment]:
    """Each segment with a count no older than `max_age` (recomputed here when older). Counts
    older than REFRESH_AFTER are shown and refreshed in the background after this transaction."""
    result, ageing = count_segments(session, actor, segments, max_age=max_age)
    if ageing and schedule_refresh:
        workspace_id = actor.workspace_id
        on_commit(session, lambda: tasks.enqueue_refresh(workspace_id))
    return result


def list_segments(session: Session, actor: Actor) -> list[CountedSegment]:
    actor.require(Permission.VIEW_CONTACTS)
    return counted_segments(session, actor, repo.segments(session, actor.workspace_id))


# ----- members --------------------------------------------------------------------------------


def checked_segment_filter(session: Session, actor: Actor, segment: Segment) -> CheckedFilter:
    return check_filter(segment.filter, check_context(session, actor.workspace_id), "filter")


def contacts_page(
    session: Session, actor: Actor, checked: CheckedFilter, *, after_id: int | None, limit: int
) -> list[Contact]:
    """Newest first, keyset on id; limit+1 rows so the caller knows whether there is a next page."""
    actor.require(Permission.VIEW_CONTACTS)
    clause = compile_filter(checked, eval_context(session, actor))
    query = contacts_repo.contacts_page_query(actor.workspace_id, after_id=after_id, limit=limit, extra=clause)
    with filter_deadline(session):
        return list(session.scalars(query))


def preview(session: Session, actor: Actor, raw_filter: Any, limit: int) -> tuple[int, list[Contact]]:
    checked = check_ad_hoc_filter(session, actor, raw_filter)
    ctx = eval_context(session, actor)
    count = count_matching(session, compile_filter(checked, ctx))
    return count, contacts_page(session, actor, checked, after_id=None, limit=limit)[:limit]


@dataclass(frozen=True)
class SegmentSummary:
    id: int
    name: str


def checked_segments(session: Session, workspace_id: int) -> list[tuple[SegmentSummary, CheckedFilter | None]]:
    """Every segment of the workspace with its checked filter (None when it no longer checks)."""
    versions, checks = checked_filters_by_id(session, workspace_id)
    result: list[tuple[SegmentSummary, CheckedFilter | None]] = []
    for segment_id, name, _updated_at in versions:
        checked = checks[segment_id]
        result.append((SegmentSummary(segment_id, name), None if isinstance(checked, ValidationFailed) else checked))
    return result


def segments_of_contact(session: Session, actor: Actor, contact: Contact) -> list[SegmentSummary]:
    """The saved segments this contact is in: the contact is loaded once and every segment's filter
    is evaluated in memory, so the cost does not grow with the number of contacts."""
    actor.require(Permission.VIEW_CONTACTS)
    ctx = eval_context(session, actor)
    snapshot = ContactSnapshot.of(contact, repo.contact_tag_keys(session, contact.id))
    # A segment whose filter no longer checks holds no one.
    return [
        segment
        for segment, checked in checked_segments(session, actor.workspace_id)
        if checked is not None and matches(checked, snapshot, ctx)
    ]
