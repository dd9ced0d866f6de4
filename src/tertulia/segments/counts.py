"""Segment counts and the contexts filters are checked and evaluated in.

A segment's count is cached on its row with `count_computed_at`. A cached count is shown only while
younger than COUNT_MAX_AGE (60 s); an older one is recomputed before it is shown. So a shown count is
never more than a minute behind a change to contacts (or behind the clock, for "ago" filters), and
every response says when its count was computed. Counts past REFRESH_AFTER (30 s) are still shown
but recounted in the background (`segments.tasks`, queued by `service.counted_segments`).

This module sits below both `service` and `tasks`, so the task that refreshes counts and the service
that queues it do not import each other.
"""

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import ColumnElement
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from tertulia.kit.clock import utcnow
from tertulia.kit.db import WRITE_OPTION, Database, database_of, statement_timeout
from tertulia.kit.errors import NotFound, TooSlow, ValidationFailed
from tertulia.kit.settings import get_settings
from tertulia.segments import repository as repo
from tertulia.segments.compiler import compile_filter
from tertulia.segments.language import CheckContext, CheckedFilter, check_filter, depends_on_viewer
from tertulia.segments.models import Segment
from tertulia.segments.timing import EvalContext
from tertulia.users.permissions import Actor, Permission

log = structlog.get_logger()

COUNT_MAX_AGE = timedelta(seconds=60)
# Counts older than this are still shown, but refreshed in the background (segments.tasks).
REFRESH_AFTER = timedelta(seconds=30)


TOO_SLOW = "This filter took too long to run; narrow it down, or try again later."


# ----- time limit -----------------------------------------------------------------------------


def filter_deadline(session: Session) -> AbstractContextManager[None]:
    """Statements over a filter inside are cancelled after `filter_timeout_seconds` (TooSlow, 422),
    on both databases, so one heavy filter cannot occupy the database for long."""
    return statement_timeout(session, get_settings().filter_timeout_seconds, TOO_SLOW)


def count_matching(session: Session, clause: ColumnElement[bool]) -> int:
    with filter_deadline(session):
        return repo.count_contacts(session, clause)


# ----- contexts -------------------------------------------------------------------------------


def check_context(session: Session, workspace_id: int, self_segment_id: int | None = None) -> CheckContext:
    fields = repo.custom_field_types(session, workspace_id)

    def load(segment_id: int) -> Mapping[str, Any] | None:
        segment = repo.segment_by_id(session, workspace_id, segment_id)
        return None if segment is None else segment.filter

    return CheckContext(custom_fields=fields, load_segment=load, self_segment_id=self_segment_id)


def eval_context(session: Session, actor: Actor, now: datetime | None = None) -> EvalContext:
    timezone = repo.workspace_timezone(session, actor.workspace_id)
    if timezone is None:
        raise NotFound("No such workspace.")
    return EvalContext(
        workspace_id=actor.workspace_id,
        timezone=ZoneInfo(timezone),
        now=now or utcnow(),
        me_user_id=actor.user_id,
    )


# ----- checked filters, cached ---------------------------------------------------------------

# Checked filters of a workspace's segments, keyed by everything checking depends on: every
# segment's (id, updated_at) (a segment may nest another) and the custom field types.
Check = CheckedFilter | ValidationFailed
_CHECKED_CACHE: "OrderedDict[tuple[Any, ...], dict[int, Check]]" = OrderedDict()
_CHECKED_CACHE_SIZE = 256


def _check_one(raw: Any, checker: CheckContext) -> Check:
    try:
        return check_filter(raw, checker, "filter")
    except ValidationFailed as exc:
        return exc.with_traceback(None)  # cached: keep no frames alive


def checked_filters_by_id(
    session: Session, workspace_id: int
) -> tuple[list[tuple[int, str, datetime]], dict[int, Check]]:
    """The workspace's segments (id, name, updated_at) and each one's checked filter or the error
    that it no longer checks. Checking is cached across requests; only small rows are read."""
    versions = repo.segment_versions(session, workspace_id)
    fields = repo.custom_field_types(session, workspace_id)
    key = (
        workspace_id,
        tuple((segment_id, updated_at) for segment_id, _name, updated_at in versions),
        tuple(sorted(fields.items())),
    )
    cached = _CHECKED_CACHE.get(key)
    if cached is None:
        filters = repo.segment_filters(session, workspace_id)
        checker = CheckContext(custom_fields=fields, load_segment=filters.get)
        cached = {segment_id: _check_one(filters.get(segment_id), checker) for segment_id, _n, _u in versions}
        _CHECKED_CACHE[key] = cached
        while len(_CHECKED_CACHE) > _CHECKED_CACHE_SIZE:
            _CHECKED_CACHE.popitem(last=False)
    else:
        _CHECKED_CACHE.move_to_end(key)
    return versions, cached


# ----- counts ---------------------------------------------------------------------------------


@dataclass
class CountedSegment:
    segment: Segment
    count: int | None
    count_computed_at: datetime | None
    # Set when the stored filter no longer checks (e.g. a custom field it used was deleted).
    filter_error: dict[str, Any] | None = None


def _age_ok(segment: Segment, now: datetime, max_age: timedelta) -> bool:
    computed = segment.count_computed_at
    return segment.contact_count is not None and computed is not None and now - computed < max_age


def _persist_counts(session: Session, workspace_id: int, counts: list[tuple[int, int, object]]) -> None:
    """Cache fresh counts. Reads run in read-only transactions, so those write through a short
    transaction of their own; losing that write only means recounting later."""
    if not counts:
        return
    if session.get_bind().get_execution_options().get(WRITE_OPTION):
        repo.store_counts(session, workspace_id, counts)
        return
    try:
        with database_of(session).transaction() as writer:
            repo.store_counts(writer, workspace_id, counts)
    except (OperationalError, RuntimeError) as exc:
        log.info("segment_count_cache_skipped", error=str(exc))


def count_segments(
    session: Session, actor: Actor, segments: Sequence[Segment], *, max_age: timedelta = COUNT_MAX_AGE
) -> tuple[list[CountedSegment], bool]:
    """Each segment with a count no older than `max_age` (recomputed here when older), and whether
    a count shown is older than REFRESH_AFTER (so due for a refresh in the background)."""
    actor.require(Permission.VIEW_CONTACTS)
    ctx = eval_context(session, actor)
    now = ctx.now
    _versions, checks = checked_filters_by_id(session, actor.workspace_id)
    result: list[CountedSegment] = []
    computed: list[tuple[int, int, object]] = []
    ageing = False
    for segment in segments:
        # A filter that no longer checks (a field it used was deleted) shows no count, even a cached one.
        checked = checks.get(segment.id)
        if checked is None:
            checked = _check_one(segment.filter, check_context(session, actor.workspace_id))
        if isinstance(checked, ValidationFailed):
            error = {"message": checked.message, "details": checked.details}
            result.append(CountedSegment(segment, None, None, error))
            continue
        if _age_ok(segment, now, max_age):
            ageing = ageing or not _age_ok(segment, now, REFRESH_AFTER)
            result.append(CountedSegment(segment, segment.contact_count, segment.count_computed_at))
            continue
        # `assignee is "me"` depends on who asks: such counts are never cached for everyone.
        personal = depends_on_viewer(checked)
        try:
            count = count_matching(session, compile_filter(checked, ctx))
        except TooSlow as exc:
            result.append(CountedSegment(segment, None, None, {"message": exc.message, "details": exc.details}))
            continue
        computed_at = utcnow()
        result.append(CountedSegment(segment, count, computed_at))
        if not personal:
            computed.append((segment.id, count, computed_at))
    _persist_counts(session, actor.workspace_id, computed)
    return result, ageing


def refresh_counts(db: Database, workspace_id: int) -> int:
    """Recompute, and cache, the counts of the workspace's segments older than REFRESH_AFTER."""
    with db.transaction(write=False) as session:
        actor = Actor.system(workspace_id)
        counted, _ageing = count_segments(session, actor, repo.segments(session, workspace_id), max_age=REFRESH_AFTER)
    return sum(1 for c in counted if c.count is not None)
