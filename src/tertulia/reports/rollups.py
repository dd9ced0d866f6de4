"""The event-log consumer that keeps the reports' facts and rollups (docs/reports.md has the
definitions this code implements).

A read of the log (up to the dispatcher's batch) is applied in one transaction that also moves the
reports' own cursor past it (`repository.claim_events`): an event delivered again (the log is at
least once) finds the cursor at or past it and changes nothing, and a crash before the commit leaves
neither the numbers nor the cursor moved. Events are applied in id order, so a conversation's fact
row is always the conversation as it stood just before the event. A batch reads its fact rows in one
query and writes its rollup increments merged by key, a few statements whatever its size.

Which date counts: the event's, in the workspace's time zone at the time the event is applied (so a
past period does not change when later things happen). Durations count on the date of the event
that ends them: a first response on the reply's date, a resolution on the close's.

Reply times: every reply of a person that answers the customer is timed from the customer's
earliest message since the previous reply of a person (`reply_time`); the first reply of a person
after the conversation's first assignment, and after its latest assignment, is timed from that
assignment (`first_assign_response`, `last_assign_response`). Each reply of a person is counted
(`replies`) and so is its conversation (`replied_conversation`, labelled with the conversation),
so a range can divide the replies by the different conversations replied to; both are written from
the same event, so they start together (the outgoing messages counted before have no conversation).

Business hours: every duration is also measured counting only the open time of the business hours
in force while it ran (the conversation's team's own hours, else the workspace's; each part of the
duration under the version in force then, `workspaces.hours.HoursHistory`), and kept as a metric of
its own (`first_response_bh`, `resolution_bh`, `assignment_bh`, ...) beside the calendar one. A duration
measured while no hours were set counts in full (no hours: always open).

Contacts' events (added, deleted, merged) have no conversation: they are counted with every
dimension empty but the team member who did it.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.conversations.models import ClosingSource, Conversation, ConversationStatus, SenderKind
from tertulia.events.dispatcher import Consumer
from tertulia.events.models import EventRecord
from tertulia.events.types import EventType
from tertulia.kit.clock import as_utc
from tertulia.kit.db import Database
from tertulia.kit.queue import task_database
from tertulia.reports import histogram, repository
from tertulia.reports.models import NONE, ConversationFact
from tertulia.workspaces.hours import HoursHistory
from tertulia.workspaces.models import Workspace
from tertulia.workspaces.service import hours_history

log = structlog.get_logger("tertulia.reports")

CONSUMER_NAME = "reports"

TYPES = frozenset(
    {
        EventType.CONVERSATION_OPENED,
        EventType.CONVERSATION_ASSIGNED,
        EventType.CONVERSATION_UNASSIGNED,
        EventType.CONVERSATION_CLOSED,
        EventType.CONVERSATION_REOPENED,
        EventType.MESSAGE_RECEIVED,
        EventType.MESSAGE_SENT,
        EventType.MESSAGE_STATUS_CHANGED,
        EventType.CONTACT_MERGED,
        EventType.CONTACT_CREATED,
        EventType.CONTACT_DELETED,
        EventType.COMMENT_ADDED,
    }
)

# Only a person's reply stops the first response clock; bots, workflows, broadcasts, integrations
# (API tokens) and the system do not.
HUMAN_SENDERS = frozenset({SenderKind.USER.value})
SOURCES = ("incoming", "user", "api", "workflow", "bot", "broadcast", "system")
SENDER_KINDS = tuple(k.value for k in SenderKind if k is not SenderKind.CONTACT)
# Who closed a conversation (the closed event's closing_source); "" for closings counted before the
# rollups kept it.
CLOSING_SOURCES = tuple(s.value for s in ClosingSource)
# Who assigned or unassigned a conversation, from the event's actor.
ASSIGNMENT_SOURCES = ("user", "workflow", "api", "bot", "system")
# How a contact was added: by a person (manual), an import, the API, a customer's first message
# (incoming), anything else (workflows, the system).
CONTACT_SOURCES = ("manual", "import", "api", "incoming", "other")
MAX_LABEL = 64
# Fact rows read per query of a batch's prefetch, and rollup rows per INSERT (11 key columns and 3
# values each): both below SQLite's 32,766 parameters.
PREFETCH_CHUNK = 500
WRITE_CHUNK = 1000
# The metrics whose occurrences are kept one by one (`models.ReportItem`): for the drill-down lists,
# and for the reports a contact tag filters: every number about a conversation (the conversations,
# responses, resolutions, assignments, messages, users and leaderboard reports). Only the contacts'
# own events, which belong to no conversation, have none.
ITEM_METRICS = frozenset(
    {
        "incoming",
        "outgoing",
        "failed",
        "comments",
        "closed_contact",
        "opened",
        "closed",
        "reopened",
        "assigned",
        "unassigned",
        "first_response",
        "first_response_bh",
        "resolution",
        "resolution_bh",
        "assignment",
        "assignment_bh",
        "replies",
        "replied_conversation",
        "reply_time",
        "reply_time_bh",
        "first_assign_response",
        "first_assign_response_bh",
        "last_assign_response",
        "last_assign_response_bh",
    }
)
# The durations, each also kept in business hours under its name with this suffix.
DURATION_METRICS = (
    "first_response",
    "resolution",
    "assignment",
    "reply_time",
    "first_assign_response",
    "last_assign_response",
)
BUSINESS_SUFFIX = "_bh"


def in_business_hours(metric: str) -> str:
    """The rollup metric holding `metric`'s business-hours values (itself for counts)."""
    return metric + BUSINESS_SUFFIX if metric in DURATION_METRICS else metric


# At most this many not yet applied events are added to a report (the consumer is normally a second
# behind; when it is far behind, reports show the rollups plus the oldest of the waiting events).
PENDING_LIMIT = 5000


def source_of(actor: str | None) -> str:
    """What opened a conversation, from the opening event's actor ("channel": a customer's message)."""
    kind = (actor or "system").split(":", 1)[0]
    if kind in ("channel", "contact"):
        return "incoming"
    return kind if kind in SOURCES else "system"


def actor_kind(actor: str | None) -> str:
    return (actor or "system").split(":", 1)[0]


def actor_user(actor: str | None) -> int:
    """The team member behind an event's actor ("user:12"), or NONE."""
    kind, _, rest = (actor or "").partition(":")
    return int(rest) if kind == "user" and rest.isdigit() else NONE


def assignment_source(actor: str | None) -> str:
    kind = actor_kind(actor)
    return kind if kind in ASSIGNMENT_SOURCES else "system"


def contact_source(actor: str | None, source: str | None) -> str:
    """How a contact was added, from contact.created's source ("channel:webchat") and actor."""
    kind = actor_kind(actor)
    if (source or "").startswith("channel") or kind == "channel":
        return "incoming"
    return {"user": "manual", "api": "api", "import": "import"}.get(kind, "other")


def _time(value: str | None) -> datetime | None:
    return as_utc(datetime.fromisoformat(value)) if value else None


def zone_of(session: Session, workspace_id: int) -> ZoneInfo:
    """The workspace's time zone, read once per transaction (kept on the session): a batch of
    events applied in one transaction is applied at one moment."""
    zones: dict[int, ZoneInfo] = session.info.setdefault("report_zones", {})
    found = zones.get(workspace_id)
    if found is None:
        name = session.scalar(select(Workspace.timezone).where(Workspace.id == workspace_id))
        try:
            found = ZoneInfo(name or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            found = ZoneInfo("UTC")
        zones[workspace_id] = found
    return found


class Changes:
    """The rollup increments of one event, merged by key, written in one statement."""

    def __init__(self, workspace_id: int, at: datetime, zone: ZoneInfo) -> None:
        local = at.astimezone(zone)
        self.workspace_id = workspace_id
        self.at = at
        self.periods = (("d", local.strftime("%Y-%m-%d")), ("h", local.strftime("%Y-%m-%dT%H")))
        self.rows: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0, 0.0])
        self.items: list[dict[str, Any]] = []

    def count(
        self,
        metric: str,
        fact: ConversationFact,
        *,
        user_id: int | None = None,
        team_id: int | None = None,
        label: str = "",
    ) -> None:
        dimensions = self._dimensions(metric, fact, user_id, team_id)
        self._item(metric, fact.conversation_id, dimensions, label, -1, 0.0)
        self._add(metric, dimensions, label, -1, 0.0)

    def duration(
        self,
        metric: str,
        fact: ConversationFact,
        seconds: float,
        business_seconds: float,
        *,
        user_id: int | None = None,
        label: str = "",
    ) -> None:
        """A duration, counted twice with the same dimensions: on the calendar under `metric`, and
        within business hours under its `_bh` twin."""
        dimensions = self._dimensions(metric, fact, user_id, None)
        for name, given in ((metric, seconds), (in_business_hours(metric), business_seconds)):
            value = max(0.0, given)
            bucket = histogram.bucket_of(value)
            self._item(name, fact.conversation_id, dimensions, label, bucket, value)
            self._add(name, dimensions, label, bucket, value)

    def count_unattached(self, metric: str, *, user_id: int, label: str = "") -> None:
        """A count that belongs to no conversation (contacts' events): only the team member is known."""
        self._add(metric, (NONE, NONE, user_id, NONE, ""), label, -1, 0.0)

    @staticmethod
    def _dimensions(
        metric: str, fact: ConversationFact, user_id: int | None, team_id: int | None
    ) -> tuple[int, int, int, int, str]:
        return (
            fact.channel_id,
            fact.team_id if team_id is None else team_id,
            fact.assignee_id if user_id is None else user_id,
            fact.category_id if metric in repository.CATEGORY_METRICS else NONE,
            fact.source,
        )

    def _item(
        self,
        metric: str,
        conversation_id: int,
        dimensions: tuple[int, int, int, int, str],
        label: str,
        bucket: int,
        total: float,
    ) -> None:
        """The conversation behind a counted increment (same dimensions and label), for the
        drill-down lists and the tag filter."""
        if metric not in ITEM_METRICS:
            return
        channel_id, team_id, user_id, category_id, source = dimensions
        self.items.append(
            {
                "workspace_id": self.workspace_id,
                "conversation_id": conversation_id,
                "metric": metric,
                "period": self.periods[1][1],
                "channel_id": channel_id,
                "team_id": team_id,
                "user_id": user_id,
                "category_id": category_id,
                "source": source,
                "label": label[:MAX_LABEL],
                "bucket": bucket,
                "seconds": total if bucket >= 0 else None,
                "at": self.at,
            }
        )

    def _add(
        self, metric: str, dimensions: tuple[int, int, int, int, str], label: str, bucket: int, total: float
    ) -> None:
        label = label[:MAX_LABEL]
        for grain, period in self.periods:
            detailed = (grain, period, metric, label, *dimensions, bucket)
            # The same increment in the workspace's totals (no dimensions): an unfiltered report
            # reads rows bounded by periods x metrics x buckets, however busy the workspace.
            whole = (repository.TOTALS[grain], period, metric, label, NONE, NONE, NONE, NONE, "", bucket)
            for key in (detailed,) if metric in repository.DETAILED_ONLY else (detailed, whole):
                row = self.rows[key]
                row[0] += 1
                row[1] += total

    def as_rows(self) -> list[dict[str, Any]]:
        columns = repository.KEY_COLUMNS[1:]
        return [
            {"workspace_id": self.workspace_id, **dict(zip(columns, key, strict=True)), "count": int(c), "total": t}
            for key, (c, t) in self.rows.items()
        ]


class _Facts:
    """Fact rows by conversation id, as this run leaves them: each read once (or in one query for a
    batch, `prefetch`) and kept, those added included (the preview never flushes, so a new row is
    not in the session's identity map; and the identity map keeps a clean row only while something
    else refers to it)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.added: dict[int, ConversationFact] = {}
        self._known: dict[int, ConversationFact | None] = {}
        # Kept on the session, so a batch of events (one transaction) reads each workspace's hours once.
        self._hours: dict[int, HoursHistory] = session.info.setdefault("report_hours", {})

    def business_seconds(self, fact: ConversationFact, start: datetime, end: datetime) -> float:
        """The open time of [start, end) under the hours in force then: the conversation's team's
        own, else the workspace's. A version saved after `end` cannot change the answer, so applying
        an event late (or replaying it for a report) gives the same value."""
        history = self._hours.get(fact.workspace_id)
        if history is None:
            history = self._hours[fact.workspace_id] = hours_history(self.session, fact.workspace_id)
        return history.business_seconds(start, end, fact.team_id if fact.team_id != NONE else None)

    def prefetch(self, events: Sequence[EventRecord]) -> None:
        """Read the fact rows of these events' conversations in one query each few hundred, and
        note those that have none yet (a batch's openings), instead of one read per event."""
        wanted = sorted({cid for event in events for cid in _conversation_ids(event)} - self._known.keys())
        for offset in range(0, len(wanted), PREFETCH_CHUNK):
            chunk = wanted[offset : offset + PREFETCH_CHUNK]
            found = {fact.conversation_id: fact for fact in repository.facts(self.session, chunk)}
            for conversation_id in chunk:
                self._known[conversation_id] = found.get(conversation_id)

    def get(self, conversation_id: int) -> ConversationFact | None:
        if conversation_id in self._known:
            return self._known[conversation_id]
        found = self._known[conversation_id] = repository.fact(self.session, conversation_id)
        return found

    def add(self, fact: ConversationFact) -> None:
        self.added[fact.conversation_id] = fact
        self._known[fact.conversation_id] = fact
        self.session.add(fact)


def _conversation_ids(event: EventRecord) -> set[int]:
    """The conversations whose fact rows an event may read (the payload's, for the few events
    stored without the column)."""
    found = {event.conversation_id} if event.conversation_id is not None else set()
    payload = event.payload if isinstance(event.payload, dict) else {}
    for key, field in (("conversation", "id"), ("message", "conversation_id")):
        part = payload.get(key)
        value = part.get(field) if isinstance(part, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            found.add(value)
    return found


def _new_fact(event: EventRecord, snapshot: dict[str, Any]) -> ConversationFact:
    opened = _time(snapshot.get("opened_at")) or as_utc(event.created_at)
    return ConversationFact(
        conversation_id=int(snapshot["id"]),
        workspace_id=event.workspace_id,
        contact_id=int(snapshot["contact_id"]),
        channel_id=snapshot.get("channel_id") or NONE,
        team_id=snapshot.get("team_id") or NONE,
        assignee_id=snapshot.get("assignee_id") or NONE,
        category_id=NONE,
        source=source_of(event.actor),
        status="open",
        opened_at=opened,
        period_started_at=opened,
        responded=False,
        first_assignee_id=NONE,
        reopen_count=0,
        incoming_count=0,
        outgoing_count=0,
    )


def _fact_from_inbox(facts: _Facts, event: EventRecord) -> ConversationFact | None:
    """A conversation whose opening the rollups never saw (it predates them): its fact as the inbox
    has it now, without counting an opening."""
    if event.conversation_id is None:
        return None
    conversation = facts.session.get(Conversation, event.conversation_id)
    if conversation is None or conversation.workspace_id != event.workspace_id:
        return None
    fact = _new_fact(
        event,
        {
            "id": conversation.id,
            "contact_id": conversation.contact_id,
            "channel_id": conversation.channel_id,
            "team_id": conversation.team_id,
            "assignee_id": conversation.assignee_id,
            "opened_at": conversation.opened_at.isoformat(),
        },
    )
    fact.source = ""
    fact.status = "open" if conversation.status == ConversationStatus.OPEN else "closed"
    facts.add(fact)
    return fact


def _conversation_event(facts: _Facts, event: EventRecord, changes: Changes) -> None:
    snapshot: dict[str, Any] = event.payload["conversation"]
    fact = facts.get(int(snapshot["id"]))
    if event.type == EventType.CONVERSATION_OPENED:
        if fact is None:
            fact = _new_fact(event, snapshot)
            facts.add(fact)
            changes.count("opened", fact)
        return
    if fact is None:
        fact = _fact_from_inbox(facts, event)
        if fact is None:
            return
    fact.channel_id = snapshot.get("channel_id") or fact.channel_id
    fact.team_id = snapshot.get("team_id") or NONE
    fact.assignee_id = snapshot.get("assignee_id") or NONE
    at = as_utc(event.created_at)
    if event.type in (EventType.CONVERSATION_ASSIGNED, EventType.CONVERSATION_UNASSIGNED):
        _assignment_counts(event, fact, changes)
        _assignment_clocks(event, fact, at)
    if event.type == EventType.CONVERSATION_ASSIGNED:
        if fact.assignee_id != NONE and fact.first_assigned_at is None:
            fact.first_assigned_at = at
            fact.first_assignment_waiting_since = at
            fact.first_assignee_id = fact.assignee_id
            started = as_utc(fact.period_started_at)
            changes.duration(
                "assignment", fact, (at - started).total_seconds(), facts.business_seconds(fact, started, at)
            )
    elif event.type == EventType.CONVERSATION_CLOSED:
        closed = _time(snapshot.get("closed_at")) or at
        fact.status = "closed"
        fact.closed_at = closed
        fact.category_id = snapshot.get("closing_category_id") or NONE
        started = as_utc(fact.period_started_at)
        fact.resolution_seconds = max(0.0, (closed - started).total_seconds())
        fact.resolution_business_seconds = facts.business_seconds(fact, started, closed)
        fact.waiting_since = None
        _stop_reply_clocks(fact)
        closed_by = str(snapshot.get("closing_source") or "")
        changes.count("closed", fact, label=closed_by)
        changes.duration("resolution", fact, fact.resolution_seconds, fact.resolution_business_seconds, label=closed_by)
        # One row per contact, so a range can count the different contacts closed (per person).
        changes.count("closed_contact", fact, label=str(fact.contact_id))
    elif event.type == EventType.CONVERSATION_REOPENED:
        fact.status = "open"
        fact.reopen_count += 1
        fact.period_started_at = _time(snapshot.get("opened_at")) or at
        fact.closed_at = None
        fact.waiting_since = None
        fact.responded = False
        _stop_reply_clocks(fact)
        changes.count("reopened", fact)


def _assignment_clocks(event: EventRecord, fact: ConversationFact, at: datetime) -> None:
    """The latest assignment's clock: started when a person becomes the assignee (an assignment, as
    counted), stopped without a value when nobody is left assigned. `fact` holds the new assignee."""
    previous_user = event.payload.get("previous_assignee_id") or NONE
    if fact.assignee_id not in (NONE, previous_user):
        fact.last_assignment_waiting_since = at
    elif fact.assignee_id == NONE:
        fact.last_assignment_waiting_since = None


def _stop_reply_clocks(fact: ConversationFact) -> None:
    """A closing or a reopening: what was not answered in the open period is not measured."""
    fact.reply_waiting_since = None
    fact.first_assignment_waiting_since = None
    fact.last_assignment_waiting_since = None


def _assignment_counts(event: EventRecord, fact: ConversationFact, changes: Changes) -> None:
    """An assignment: a person becomes the assignee (from nobody or from someone else), counted for
    them under the conversation's new team. An unassignment: the person is removed and nobody takes
    their place, counted for the person who lost it under the team it had. Team-only changes are
    neither. `fact` already holds the new assignee and team."""
    previous_user = event.payload.get("previous_assignee_id") or NONE
    previous_team = event.payload.get("previous_team_id") or NONE
    source = assignment_source(event.actor)
    if fact.assignee_id not in (NONE, previous_user):
        changes.count("assigned", fact, label=source)
    elif fact.assignee_id == NONE and previous_user != NONE:
        changes.count("unassigned", fact, user_id=int(previous_user), team_id=int(previous_team), label=source)


def _contact_event(event: EventRecord, changes: Changes) -> None:
    by = actor_user(event.actor)
    if event.type == EventType.CONTACT_CREATED:
        source = contact_source(event.actor, event.payload.get("source"))
        changes.count_unattached("contacts_added", user_id=by, label=source)
    elif event.type == EventType.CONTACT_DELETED:
        changes.count_unattached("contacts_deleted", user_id=by)
    elif event.type == EventType.CONTACT_MERGED:
        changes.count_unattached("contacts_merged", user_id=by)


def _message_event(facts: _Facts, event: EventRecord, changes: Changes) -> None:
    message: dict[str, Any] = event.payload["message"]
    conversation_id = int(message["conversation_id"])
    fact = facts.get(conversation_id)
    if fact is None:
        fact = _fact_from_inbox(facts, event)
        if fact is None:
            return
    if fact.merged_into_id is not None:
        fact = facts.get(fact.merged_into_id) or fact
    if event.type == EventType.COMMENT_ADDED:
        author = message.get("sender_user_id")
        changes.count("comments", fact, user_id=int(author) if author else NONE)
        return
    written = _time(message.get("created_at")) or as_utc(event.created_at)
    if event.type == EventType.MESSAGE_RECEIVED:
        fact.incoming_count += 1
        if fact.status == "open" and not fact.responded and fact.waiting_since is None:
            fact.waiting_since = max(written, as_utc(fact.period_started_at))
        if fact.status == "open" and fact.reply_waiting_since is None:
            fact.reply_waiting_since = max(written, as_utc(fact.period_started_at))
        changes.count("incoming", fact)
        return
    kind = str(message.get("sender_kind") or SenderKind.SYSTEM.value)
    sender = message.get("sender_user_id")
    fact.outgoing_count += 1
    changes.count("outgoing", fact, label=kind, user_id=int(sender) if sender else None)
    if kind not in HUMAN_SENDERS:
        return
    replier = int(sender) if sender else None
    if fact.waiting_since is not None and not fact.responded:
        waited = as_utc(fact.waiting_since)
        seconds = max(0.0, (written - waited).total_seconds())
        business = facts.business_seconds(fact, waited, written)
        fact.responded = True
        if fact.first_response_seconds is None:
            fact.first_response_seconds = seconds
            fact.first_response_business_seconds = business
        changes.duration("first_response", fact, seconds, business, user_id=replier)
    _reply_times(facts, fact, written, changes, replier)


# A person's reply stops these clocks (the fact's column, and the metric it is measured as).
REPLY_CLOCKS = (
    ("reply_waiting_since", "reply_time"),
    ("first_assignment_waiting_since", "first_assign_response"),
    ("last_assignment_waiting_since", "last_assign_response"),
)


def _reply_times(
    facts: _Facts, fact: ConversationFact, written: datetime, changes: Changes, replier: int | None
) -> None:
    """A reply of a person: counted for its conversation, and the end of every clock that runs (the
    customer's oldest unanswered message, the first and the latest assignment), each measured."""
    changes.count("replies", fact, user_id=replier)
    changes.count("replied_conversation", fact, user_id=replier, label=str(fact.conversation_id))
    for column, metric in REPLY_CLOCKS:
        started: datetime | None = getattr(fact, column)
        if started is None:
            continue
        since = as_utc(started)
        seconds = (written - since).total_seconds()
        changes.duration(metric, fact, seconds, facts.business_seconds(fact, since, written), user_id=replier)
        setattr(fact, column, None)


def _status_event(facts: _Facts, event: EventRecord, changes: Changes) -> None:
    if event.payload.get("status") != "failed" or event.conversation_id is None:
        return
    fact = facts.get(event.conversation_id) or _fact_from_inbox(facts, event)
    if fact is None:
        return
    changes.count("failed", fact, label=str(event.payload.get("reason") or "unknown"))


def _merge_event(facts: _Facts, event: EventRecord) -> None:
    """The merged contact's conversations now belong to the survivor. An open conversation of the
    merged contact that the merge folded into the survivor's open one (the inbox deleted it) keeps
    its counts where they fell; its waiting customer, if not answered yet, now waits in the
    survivor's conversation from the earlier of the two times (for the first response and for the
    reply time alike); its assignment clocks stop unmeasured (that conversation is gone)."""
    session = facts.session
    survivor_id = int(event.payload["contact_id"])
    merged_id = int(event.payload["merged_contact_id"])
    keep = _open_fact_of(facts, event.workspace_id, survivor_id)
    survivor_open = keep.conversation_id if keep is not None else None
    for fact in repository.facts_of_contact(session, event.workspace_id, merged_id):
        fact.contact_id = survivor_id
        if fact.status != "open" or session.get(Conversation, fact.conversation_id) is not None:
            continue
        fact.status = "merged"
        fact.merged_into_id = survivor_open
        if keep is not None and fact.waiting_since is not None and not fact.responded and not keep.responded:
            waited = as_utc(fact.waiting_since)
            keep.waiting_since = waited if keep.waiting_since is None else min(as_utc(keep.waiting_since), waited)
        if keep is not None and fact.reply_waiting_since is not None:
            waited = as_utc(fact.reply_waiting_since)
            keep.reply_waiting_since = (
                waited if keep.reply_waiting_since is None else min(as_utc(keep.reply_waiting_since), waited)
            )
        fact.waiting_since = None
        _stop_reply_clocks(fact)


def _open_fact_of(facts: _Facts, workspace_id: int, contact_id: int) -> ConversationFact | None:
    """The contact's open conversation as the facts say at this event, not as the inbox says now:
    a merge applied late (the consumer behind, a retry) must not see a closing or an opening that
    came after it."""
    found = {f.conversation_id: f for f in repository.facts_of_contact(facts.session, workspace_id, contact_id)}
    found.update(
        (f.conversation_id, f)
        for f in facts.added.values()
        if f.workspace_id == workspace_id and f.contact_id == contact_id
    )
    opened = [f for f in found.values() if f.status == "open"]
    return max(opened, key=lambda f: as_utc(f.opened_at)) if opened else None


def _well_formed(event: EventRecord) -> bool:
    """Whether the payload has what this consumer reads (the catalogue's shape, events.types). An
    event without it is passed over, not retried for ever: it would hold every later event back."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    if event.type == EventType.CONTACT_MERGED:
        return "contact_id" in payload and "merged_contact_id" in payload
    if event.type in (EventType.CONTACT_CREATED, EventType.CONTACT_DELETED):
        return "contact_id" in payload
    if event.type in (EventType.MESSAGE_RECEIVED, EventType.MESSAGE_SENT, EventType.COMMENT_ADDED):
        message = payload.get("message")
        return isinstance(message, dict) and "conversation_id" in message
    if event.type == EventType.MESSAGE_STATUS_CHANGED:
        return "status" in payload
    conversation = payload.get("conversation")
    return isinstance(conversation, dict) and "id" in conversation and "contact_id" in conversation


def _changes(facts: _Facts, event: EventRecord) -> Changes:
    changes = Changes(event.workspace_id, as_utc(event.created_at), zone_of(facts.session, event.workspace_id))
    if not _well_formed(event):
        log.warning("report_event_skipped", event_id=event.id, type=event.type)
    elif event.type == EventType.CONTACT_MERGED:
        _merge_event(facts, event)
        _contact_event(event, changes)
    elif event.type in (EventType.CONTACT_CREATED, EventType.CONTACT_DELETED):
        _contact_event(event, changes)
    elif event.type in (EventType.MESSAGE_RECEIVED, EventType.MESSAGE_SENT, EventType.COMMENT_ADDED):
        _message_event(facts, event, changes)
    elif event.type == EventType.MESSAGE_STATUS_CHANGED:
        _status_event(facts, event, changes)
    else:
        _conversation_event(facts, event, changes)
    return changes


def replay(session: Session, events: Sequence[EventRecord]) -> list[Changes]:
    """These events' changes to the fact rows (made and flushed in the caller's transaction) and,
    for each event in order, its rollup increments and items (returned, not written): the live
    consumer writes them all, a rebuild (`reports.rebuild`) those of the days it rebuilds. One
    definition for both. The fact rows are read once for the whole list."""
    facts = _Facts(session)
    facts.prefetch(events)
    changed = [_changes(facts, event) for event in events]
    session.flush()
    return changed


def merged_rows(changed: Iterable[Changes]) -> list[dict[str, Any]]:
    """The rollup increments of many events with the same key added together: one INSERT may not
    touch a row twice (PostgreSQL), and fewer rows are fewer writes."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for changes in changed:
        for row in changes.as_rows():
            key = tuple(row[column] for column in repository.KEY_COLUMNS)
            found = merged.get(key)
            if found is None:
                merged[key] = row
            else:
                found["count"] += row["count"]
                found["total"] += row["total"]
    return list(merged.values())


def write(session: Session, changed: Sequence[Changes]) -> None:
    """Write events' rollup increments (merged by key) and items."""
    rows = merged_rows(changed)
    for offset in range(0, len(rows), WRITE_CHUNK):
        repository.add_rollups(session, rows[offset : offset + WRITE_CHUNK])
    repository.add_items(session, [item for changes in changed for item in changes.items])


def apply_all(session: Session, events: Sequence[EventRecord]) -> int:
    """Apply a read of the log (in id order) in the caller's transaction; how many were new (the
    others were applied before). Events of a workspace being rebuilt only move the cursor: the
    rebuild replays every event of that workspace up to the cursor, these included, before it lets
    the consumer back in."""
    if not events:
        return 0
    position = repository.claim_events(session, max(event.id for event in events))
    fresh = [event for event in events if event.id > position]
    rebuilding = repository.rebuilding_workspaces(session)
    write(session, replay(session, [event for event in fresh if event.workspace_id not in rebuilding]))
    return len(fresh)


def apply(session: Session, event: EventRecord) -> bool:
    """Apply one event in the caller's transaction; False when it was applied before."""
    return apply_all(session, [event]) == 1


def _pending_changes(session: Session, workspace_id: int, limit: int) -> tuple[list[Changes], _Facts]:
    """The changes of this workspace's events the consumer has not applied yet, computed in memory
    and never written (the fact rows are changed in memory only: `session` is thrown away after),
    with the fact rows as those events leave them."""
    position = repository.cursor_position(session)
    events = list(
        session.scalars(
            select(EventRecord)
            .where(
                EventRecord.id > position, EventRecord.workspace_id == workspace_id, EventRecord.type.in_(sorted(TYPES))
            )
            .order_by(EventRecord.id)
            .limit(limit)
        )
    )
    with session.no_autoflush:
        facts = _Facts(session)
        facts.prefetch(events)
        return [_changes(facts, event) for event in events], facts


def pending_rows(session: Session, workspace_id: int, limit: int = PENDING_LIMIT) -> list[dict[str, Any]]:
    """The rollup increments of this workspace's events the consumer has not applied yet: reports
    add them to the rollups, so a number shows as soon as its event is committed. `session` must be
    thrown away afterwards; nothing is flushed."""
    return [row for changes in _pending_changes(session, workspace_id, limit)[0] for row in changes.as_rows()]


def pending_items(session: Session, workspace_id: int, limit: int = PENDING_LIMIT) -> list[dict[str, Any]]:
    """`pending_rows`' twin for the drill-down: the items of the events not applied yet (same
    snapshot rules: `session` is thrown away afterwards)."""
    return [item for changes in _pending_changes(session, workspace_id, limit)[0] for item in changes.items]


def pending_items_with_contacts(
    session: Session, workspace_id: int, limit: int = PENDING_LIMIT
) -> tuple[list[dict[str, Any]], dict[int, int]]:
    """`pending_items`, and the contact of each of their conversations after those events (a merge
    moves a conversation to the surviving contact), for the tag filter."""
    changed, facts = _pending_changes(session, workspace_id, limit)
    found = [item for changes in changed for item in changes.items]
    contacts: dict[int, int] = {}
    with session.no_autoflush:
        for conversation_id in {item["conversation_id"] for item in found}:
            fact = facts.get(conversation_id)
            if fact is not None:
                contacts[conversation_id] = fact.contact_id
    return found, contacts


def apply_event(db: Database, event: EventRecord) -> bool:
    with db.transaction() as session:
        return apply(session, event)


def apply_events(db: Database, events: list[EventRecord]) -> int:
    """Apply a read of the log in one transaction; how many were new."""
    with db.transaction() as session:
        return apply_all(session, sorted(events, key=lambda event: event.id))


def handle(event: EventRecord) -> None:
    apply_event(task_database(), event)


def handle_batch(events: list[EventRecord]) -> None:
    apply_events(task_database(), events)


CONSUMER = Consumer(name=CONSUMER_NAME, handle=handle, types=TYPES, handle_batch=handle_batch)
