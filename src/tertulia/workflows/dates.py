"""The date trigger: N days or hours before or after a date in a contact field, in the workspace's
time zone, once or every year; fired by a sweep every minute (`workflows.date_sweep`).

When it fires. A date field (a custom field of type date) fires at `time` (default 09:00, local) on
the date, moved by the offset: days move the local date (so "3 days before at 09:00" is 09:00 three
local days earlier, whatever DST does), hours move the instant. A date-time field (custom, or the
contact's `created_at`) fires at its instant moved by the offset (days are 24 hours there). With
`repeat: yearly` (date fields), every anniversary of the date is an occurrence (29 February falls
on 28 February in other years), from the date's own year on.

How it stays exact. Each workflow has a cursor, `swept_until`: the sweep looks at the fire times in
(`swept_until`, now], starts their runs, records each occurrence in `workflow_date_fires` (unique per
workflow, contact and occurrence) and moves the cursor, all in one transaction. A crash rolls all of
it back, so the next sweep looks at the same window again: nothing is skipped and, by the unique
occurrence, nothing fires twice. The window starts no earlier than the version's publication (a
workflow published today does not fire for yesterday) and no more than `MAX_CATCH_UP` before now
(a server down for a week does not wish a week of birthdays at once).

A changed field is a new occurrence (its key is the new date), so changing the date re-arms the
trigger for it; a new date whose fire time has already passed fires next year (yearly) or never.
Blocked contacts start nothing; the trigger's conditions and "once per contact" apply; a contact
already in the workflow at its occurrence gets no second run (the occurrence is recorded as fired,
with no run).
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from huey import crontab
from sqlalchemy import ColumnElement, String, false, func, literal_column, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tertulia.contacts.models import Contact
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.errors import Conflict, DomainError
from tertulia.kit.queue import huey, task_database
from tertulia.segments import repository as segments_repo
from tertulia.segments.language import CUSTOM_KEY
from tertulia.workflows import starts
from tertulia.workflows.models import (
    VersionState,
    Workflow,
    WorkflowDateFire,
    WorkflowDateSweep,
    WorkflowStatus,
    WorkflowVersion,
)
from tertulia.workflows.trigger_kinds import DateConfig, date_field_kind

MAX_CATCH_UP = timedelta(days=2)
ISO_INSTANT = "%Y-%m-%dT%H:%M:%SZ"

# Test hook: called after each occurrence is fired; a test raises from it to simulate a crash.
crash_point: Callable[[str], None] | None = None


@dataclass(frozen=True)
class Due:
    contact_id: int
    occurrence: str  # the occurrence's date (date fields) or the field's instant (date-time fields)
    fire_at: datetime
    value: str


def _custom_text(key: str) -> ColumnElement[Any]:
    if not CUSTOM_KEY.match(key):  # inlined into SQL text: never anything but [a-z0-9_]
        raise ValueError(f"not a custom field key: {key!r}")
    return Contact.custom.op("->>", return_type=String())(literal_column(f"'{key}'"))


def _sign(config: DateConfig) -> int:
    return -1 if config.direction == "before" else 1


def fire_time(config: DateConfig, day: date, zone: ZoneInfo) -> datetime:
    """When an occurrence on local `day` of a date field fires (UTC)."""
    hour, minute = (int(part) for part in config.time.split(":"))
    shift = _sign(config) * config.offset.amount
    if config.offset.unit == "days":
        local = datetime.combine(day + timedelta(days=shift), time(hour, minute), tzinfo=zone)
        return local.astimezone(UTC)
    local = datetime.combine(day, time(hour, minute), tzinfo=zone)
    return local.astimezone(UTC) + timedelta(hours=shift)


def occurrence_days(config: DateConfig, zone: ZoneInfo, low: datetime, high: datetime) -> list[date]:
    """The local dates whose occurrence fires in (low, high]."""
    shift = _sign(config) * config.offset.amount
    reach = timedelta(days=shift) if config.offset.unit == "days" else timedelta(hours=shift)
    first = (low - reach).astimezone(zone).date() - timedelta(days=2)
    last = (high - reach).astimezone(zone).date() + timedelta(days=2)
    days: list[date] = []
    current = first
    while current <= last:
        if low < fire_time(config, current, zone) <= high:
            days.append(current)
        current += timedelta(days=1)
    return days


def _anniversary(value: date, year: int) -> date | None:
    if value.year > year:
        return None
    try:
        return value.replace(year=year)
    except ValueError:  # 29 February in a year without one
        return date(year, 2, 28)


def due_contacts(
    session: Session, workspace_id: int, config: DateConfig, kind: str, zone: ZoneInfo, low: datetime, high: datetime
) -> Iterator[Due]:
    """Every contact of the workspace (not blocked) with an occurrence firing in (low, high]."""
    base = select(Contact.id).where(Contact.workspace_id == workspace_id, Contact.blocked == false())
    if kind == "date":
        yield from _due_dates(session, base, config, zone, low, high)
        return
    shift = _sign(config) * config.offset.amount
    reach = timedelta(days=shift) if config.offset.unit == "days" else timedelta(hours=shift)
    start, end = low - reach, high - reach
    if config.field == "created_at":
        query = base.add_columns(Contact.created_at).where(Contact.created_at > start, Contact.created_at <= end)
        for contact_id, created in session.execute(query.order_by(Contact.id)):
            instant = created.astimezone(UTC)
            yield Due(contact_id, instant.strftime(ISO_INSTANT), instant + reach, instant.strftime(ISO_INSTANT))
        return
    column = _custom_text(config.field)
    query = base.add_columns(column).where(column > start.strftime(ISO_INSTANT), column <= end.strftime(ISO_INSTANT))
    for contact_id, text in session.execute(query.order_by(Contact.id)):
        instant = datetime.strptime(text, ISO_INSTANT).replace(tzinfo=UTC)
        yield Due(contact_id, text, instant + reach, text)


def _due_dates(
    session: Session, base: Any, config: DateConfig, zone: ZoneInfo, low: datetime, high: datetime
) -> Iterator[Due]:
    days = occurrence_days(config, zone, low, high)
    if not days:
        return
    column = _custom_text(config.field)
    if config.repeat == "once":
        by_value = {day.isoformat(): day for day in days}
        query = base.add_columns(column).where(column.in_(sorted(by_value)))
        for contact_id, text in session.execute(query.order_by(Contact.id)):
            day = by_value[text]
            yield Due(contact_id, day.isoformat(), fire_time(config, day, zone), text)
        return
    month_days: dict[str, list[date]] = {}
    for day in days:
        month_days.setdefault(day.strftime("%m-%d"), []).append(day)
        if day.month == 2 and day.day == 28 and not _leap(day.year):
            month_days.setdefault("02-29", []).append(day)
    query = base.add_columns(column).where(func.substr(column, 6, 5).in_(sorted(month_days)))
    for contact_id, text in session.execute(query.order_by(Contact.id)):
        try:
            value = date.fromisoformat(text)
        except (TypeError, ValueError):
            continue
        for day in month_days.get(text[5:10], []):
            if _anniversary(value, day.year) == day:
                yield Due(contact_id, day.isoformat(), fire_time(config, day, zone), text)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def date_workflow_ids(session: Session) -> list[int]:
    query = select(WorkflowVersion.workflow_id).where(
        WorkflowVersion.state == VersionState.PUBLISHED, WorkflowVersion.trigger_type == "date"
    )
    return sorted(set(session.scalars(query)))


def sweep(db: Database, *, now: datetime | None = None) -> int:
    """Fire every date workflow's occurrences due by now; how many runs started."""
    moment = now or utcnow()
    with db.transaction(write=False) as session:
        workflow_ids = date_workflow_ids(session)
    started = 0
    for workflow_id in workflow_ids:
        with db.transaction() as session:
            started += sweep_workflow(session, workflow_id, moment)
    return started


def sweep_workflow(session: Session, workflow_id: int, now: datetime) -> int:
    """One workflow's window, in the caller's transaction (see the module's docstring)."""
    workflow = session.scalar(select(Workflow).where(Workflow.id == workflow_id).with_for_update())
    if workflow is None or workflow.status != WorkflowStatus.PUBLISHED:
        return 0
    try:
        version, checked = starts.published(session, workflow, "date")
    except Conflict:
        return 0
    config = checked.trigger_config
    assert isinstance(config, DateConfig)
    cursor = session.scalar(
        select(WorkflowDateSweep).where(WorkflowDateSweep.workflow_id == workflow_id).with_for_update()
    )
    published_at = version.published_at or now
    if cursor is None:
        cursor = WorkflowDateSweep(workflow_id=workflow_id, swept_until=published_at)
        session.add(cursor)
    low = max(cursor.swept_until, published_at, now - MAX_CATCH_UP)
    if now <= low:
        return 0
    kind = date_field_kind(config.field, segments_repo.custom_field_types(session, workflow.workspace_id))
    started = 0
    if kind is not None:
        zone = ZoneInfo(segments_repo.workspace_timezone(session, workflow.workspace_id) or "UTC")
        for due in list(due_contacts(session, workflow.workspace_id, config, kind, zone, low, now)):
            started += _fire(session, workflow, version, checked, config, due)
            if crash_point is not None:
                crash_point("after_fire")
    cursor.swept_until = now
    session.flush()
    return started


def _fire(session: Session, workflow: Workflow, version: Any, checked: Any, config: DateConfig, due: Due) -> int:
    fire = WorkflowDateFire(
        workspace_id=workflow.workspace_id,
        workflow_id=workflow.id,
        contact_id=due.contact_id,
        occurrence=due.occurrence,
        fire_at=due.fire_at,
        at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(fire)
            session.flush()
    except IntegrityError:
        return 0  # fired already (the window overlapped one swept before)
    contact = session.get(Contact, due.contact_id)
    if contact is None:
        return 0
    values = {"field": config.field, "date": due.occurrence[:10], "value": due.value}
    try:
        run = starts.start(session, workflow, version, checked, contact, values)
    except DomainError:
        return 0  # blocked, conditions, once per contact, already in it: recorded as fired
    fire.run_id = run.id
    return 1


def fires_of_contact(session: Session, workflow_id: int, contact_id: int) -> list[WorkflowDateFire]:
    query = select(WorkflowDateFire).where(
        WorkflowDateFire.workflow_id == workflow_id, WorkflowDateFire.contact_id == contact_id
    )
    return list(session.scalars(query.order_by(WorkflowDateFire.id)))


@huey.periodic_task(crontab(minute="*"), name="workflows.date_sweep")  # type: ignore[untyped-decorator]
def date_sweep_task() -> int:
    return sweep(task_database())
