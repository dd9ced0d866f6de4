"""The Reports module's pages: one page per report with its range and filters, the charts (drawn in
the browser by the vendored Chart.js from the same tables the page shows as text), a definition for
every number, and a CSV link for every table (the API's CSV of the same table)."""

import hashlib
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from starlette.responses import RedirectResponse, Response

from tertulia.broadcasts.views import STATUS_LABELS as BROADCAST_STATUS_LABELS
from tertulia.channels.models import Channel
from tertulia.contacts import repository as contacts_repo
from tertulia.conversations.models import ClosingCategory
from tertulia.kit.errors import DomainError, NotFound
from tertulia.kit.http import CheckedInputRoute
from tertulia.reports import service
from tertulia.reports.repository import Filters
from tertulia.reports.rollups import DURATION_METRICS, SOURCES
from tertulia.users.models import Membership, Team, User
from tertulia.users.permissions import Permission
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext

router = APIRouter(prefix="/reports", include_in_schema=False, route_class=CheckedInputRoute)

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static/reports"

REPORT_TITLES: dict[str, str] = {
    "conversations": i18n.lazy("Conversations"),
    "responses": i18n.lazy("Responses"),
    "messages": i18n.lazy("Messages"),
    "resolutions": i18n.lazy("Resolutions"),
    "assignments": i18n.lazy("Assignments"),
    "contacts": i18n.lazy("Contacts"),
    "users": i18n.lazy("Users"),
    "leaderboard": i18n.lazy("Leaderboard"),
    "broadcasts": i18n.lazy("Broadcasts"),
}
PRESET_LABELS: dict[str, str] = {
    "today": i18n.lazy("Today"),
    "yesterday": i18n.lazy("Yesterday"),
    "last_7_days": i18n.lazy("Last 7 days"),
    "last_14_days": i18n.lazy("Last 14 days"),
    "last_30_days": i18n.lazy("Last 30 days"),
    "this_month": i18n.lazy("This month"),
    "last_month": i18n.lazy("Last month"),
    "custom": i18n.lazy("Custom"),
}
SOURCE_LABELS: dict[str, str] = {
    "incoming": i18n.lazy("A customer's message"),
    "user": i18n.lazy("A team member"),
    "api": i18n.lazy("The API"),
    "workflow": i18n.lazy("A workflow"),
    "bot": i18n.lazy("A bot"),
    "broadcast": i18n.lazy("A broadcast"),
    "system": i18n.lazy("The system"),
}
# Column and row names of the tables, as the page shows them (the CSV keeps the API's names).
LABELS: dict[str, str] = {
    "metric": i18n.lazy("Metric"),
    "count": i18n.lazy("Count"),
    "average_seconds": i18n.lazy("Average"),
    "median_seconds": i18n.lazy("Median"),
    "p90_seconds": i18n.lazy("90th percentile"),
    "previous_count": i18n.lazy("Previous count"),
    "previous_average_seconds": i18n.lazy("Previous average"),
    "previous_median_seconds": i18n.lazy("Previous median"),
    "previous_p90_seconds": i18n.lazy("Previous 90th percentile"),
    "change_percent": i18n.lazy("Change %"),
    "period": i18n.lazy("Period"),
    "opened": i18n.lazy("Opened"),
    "closed": i18n.lazy("Closed"),
    "reopened": i18n.lazy("Reopened conversations"),
    "first_response": i18n.lazy("First response time"),
    "resolution": i18n.lazy("Resolution time"),
    "assignment": i18n.lazy("Time to first assignment"),
    "reply_time": i18n.lazy("Reply time"),
    "first_assign_response": i18n.lazy("First assignment to first response"),
    "last_assign_response": i18n.lazy("Last assignment to response"),
    "replies_per_conversation": i18n.lazy("Responses per conversation"),
    "replies": i18n.lazy("Replies"),
    "conversations": i18n.lazy("Conversations replied to"),
    "average": i18n.lazy("Average"),
    "previous_replies": i18n.lazy("Previous replies"),
    "previous_conversations": i18n.lazy("Previous conversations replied to"),
    "previous_average": i18n.lazy("Previous average"),
    "first_response_median_seconds": i18n.lazy("First response (median)"),
    "resolution_median_seconds": i18n.lazy("Resolution (median)"),
    "category_id": i18n.lazy("Category id"),
    "category": i18n.lazy("Closing category"),
    "bucket": i18n.lazy("Response time"),
    "percent": i18n.lazy("Share %"),
    "incoming": i18n.lazy("Incoming"),
    "outgoing": i18n.lazy("Outgoing"),
    "failed": i18n.lazy("Failed messages"),
    "sender": i18n.lazy("Sent by"),
    "channel_id": i18n.lazy("Channel id"),
    "channel": i18n.lazy("Channel"),
    "reason": i18n.lazy("Reason"),
    "weekday": i18n.lazy("Weekday"),
    "contact": i18n.lazy("Customer"),
    "user": i18n.lazy("Team member"),
    "bot": i18n.lazy("Bot"),
    "workflow": i18n.lazy("Workflow"),
    "broadcast": i18n.lazy("Broadcast"),
    "api": i18n.lazy("API"),
    "system": i18n.lazy("System"),
    "mon": i18n.lazy("Monday"),
    "tue": i18n.lazy("Tuesday"),
    "wed": i18n.lazy("Wednesday"),
    "thu": i18n.lazy("Thursday"),
    "fri": i18n.lazy("Friday"),
    "sat": i18n.lazy("Saturday"),
    "sun": i18n.lazy("Sunday"),
    "closed_by_person": i18n.lazy("Closed by a person"),
    "closed_by_bot": i18n.lazy("Closed by a bot"),
    "closed_by_other": i18n.lazy("Closed by automation or the system"),
    "assignment_median_seconds": i18n.lazy("Time to first assignment (median)"),
    "closer": i18n.lazy("Closed by"),
    "auto-close": i18n.lazy("Auto-close"),
    "unknown": i18n.lazy("Not recorded"),
    "assigned": i18n.lazy("Assignments"),
    "unassigned": i18n.lazy("Unassignments"),
    "source": i18n.lazy("Source"),
    "user_id": i18n.lazy("Team member id"),
    "person": i18n.lazy("Team member"),
    "team_id": i18n.lazy("Team id"),
    "team": i18n.lazy("Team"),
    "contacts_added": i18n.lazy("Contacts added"),
    "contacts_deleted": i18n.lazy("Contacts deleted"),
    "contacts_merged": i18n.lazy("Contacts merged"),
    "manual": i18n.lazy("By hand"),
    "import": i18n.lazy("An import"),
    "other": i18n.lazy("Other"),
    "contacts_closed": i18n.lazy("Contacts closed"),
    "messages_sent": i18n.lazy("Messages sent"),
    "comments": i18n.lazy("Comments"),
    "first_response_average_seconds": i18n.lazy("First response (average)"),
    "first_response_p90_seconds": i18n.lazy("First response (90th percentile)"),
    "resolution_average_seconds": i18n.lazy("Resolution (average)"),
    "resolution_p90_seconds": i18n.lazy("Resolution (90th percentile)"),
    "reply_time_median_seconds": i18n.lazy("Reply time (median)"),
    "online_seconds": i18n.lazy("Time online"),
    "away_seconds": i18n.lazy("Time away"),
    "online": i18n.lazy("Time online"),
    "rank": i18n.lazy("Rank"),
    "id": i18n.lazy("Id"),
    "name": i18n.lazy("Name"),
    "value_count": i18n.lazy("Value"),
    "value_seconds": i18n.lazy("Value"),
    "previous_rank": i18n.lazy("Previous rank"),
    "previous_value_count": i18n.lazy("Previous value"),
    "previous_value_seconds": i18n.lazy("Previous value"),
    "broadcasts": i18n.lazy("Broadcasts"),
    "recipients": i18n.lazy("Recipients"),
    "sent": i18n.lazy("Sent"),
    "delivered": i18n.lazy("Delivered"),
    "read": i18n.lazy("Read"),
    "replied": i18n.lazy("Replied"),
    "broadcast_id": i18n.lazy("Broadcast id"),
    "started": i18n.lazy("Started"),
    "status": i18n.lazy("Status"),
    "link": i18n.lazy("Link"),
}
TABLE_TITLES: dict[str, str] = {
    "summary": i18n.lazy("Summary, with the previous period"),
    "series": i18n.lazy("Over time"),
    "closed_by_category": i18n.lazy("Closed by closing category"),
    "buckets": i18n.lazy("First responses by time taken"),
    "per_conversation": i18n.lazy("Responses per conversation"),
    "reply_series": i18n.lazy("Reply time over time"),
    "reply_buckets": i18n.lazy("Replies by time taken"),
    "first_assign_series": i18n.lazy("First assignment to first response over time"),
    "first_assign_buckets": i18n.lazy("First assignment to first response by time taken"),
    "last_assign_series": i18n.lazy("Last assignment to response over time"),
    "last_assign_buckets": i18n.lazy("Last assignment to response by time taken"),
    "outgoing_by_sender": i18n.lazy("Outgoing messages by sender"),
    "by_channel": i18n.lazy("Messages by channel"),
    "failed_reasons": i18n.lazy("Failed messages by reason"),
    "heatmap": i18n.lazy("Incoming messages by weekday and hour"),
    "by_closer": i18n.lazy("Closings by who closed them"),
    "by_source": i18n.lazy("Assignments and unassignments by source"),
    "by_user": i18n.lazy("Assignments and unassignments by team member"),
    "by_team": i18n.lazy("Assignments and unassignments by team"),
    "added_by_source": i18n.lazy("Contacts added by source"),
    "users": i18n.lazy("One row per team member"),
    "leaderboard": i18n.lazy("Ranking"),
    "by_broadcast": i18n.lazy("One row per broadcast"),
}
# The definition shown beside each number (docs/reports.md says the same at more length).
DEFINITIONS: dict[str, str] = {
    "opened": i18n.lazy(
        "Conversations that started in the period, counted on the day they started. Reopenings are counted apart."
    ),
    "closed": i18n.lazy(
        "Closings in the period, counted on the day of the closing. A conversation closed twice counts twice."
    ),
    "reopened": i18n.lazy("Closed conversations opened again in the period, counted on the day of the reopening."),
    "first_response": i18n.lazy(
        "From the customer's first message (after the opening or a reopening) to the first reply of a team member. "
        "Replies of bots, workflows, broadcasts and the API do not stop the clock. Counted on the day of the reply."
    ),
    "resolution": i18n.lazy(
        "From the opening (or the last reopening) to the closing, counted on the day of the closing."
    ),
    "assignment": i18n.lazy(
        "From the opening to the first assignment to a person, counted on the day of the assignment."
    ),
    "reply_time": i18n.lazy(
        "For every reply of a team member that answers the customer: the time since the customer's oldest "
        "message not answered yet (their first message after the previous reply of a team member). Replies of "
        "bots, workflows, broadcasts and the API do not stop the clock. Counted on the day of the reply."
    ),
    "first_assign_response": i18n.lazy(
        "From the conversation's first assignment to a person to the next reply of a team member, once per "
        "conversation. A closing before any reply stops it without a time. Counted on the day of the reply."
    ),
    "last_assign_response": i18n.lazy(
        "From each assignment to a person (the latest, when it was reassigned) to the next reply of a team "
        "member. An unassignment or a closing before any reply stops it without a time. Counted on the day of "
        "the reply."
    ),
    "replies_per_conversation": i18n.lazy(
        "Replies of team members in the period divided by the different conversations they replied to."
    ),
    "incoming": i18n.lazy("Customers' messages received in the period."),
    "outgoing": i18n.lazy(
        "Messages sent to customers in the period, by team members, bots, workflows, broadcasts and the API."
    ),
    "failed": i18n.lazy(
        "Messages the channel could not deliver, with the reason it gave, counted on the day of the failure."
    ),
    "closed_by_person": i18n.lazy("Closings done by a team member (in the inbox or through their own session)."),
    "closed_by_bot": i18n.lazy("Closings done by the bot."),
    "closed_by_other": i18n.lazy(
        "Closings done by workflows, the API, the system or the auto-close of inactive conversations."
    ),
    "assigned": i18n.lazy(
        "Times a person became a conversation's assignee (from nobody or from someone else), counted for that "
        "person on the day it happened. Moving a conversation between teams alone is not counted."
    ),
    "unassigned": i18n.lazy(
        "Times a person was removed from a conversation and nobody took their place, counted for the person "
        "who lost it."
    ),
    "contacts_added": i18n.lazy(
        "Contacts created in the period: by hand, by an import (on the day the import finished), through the "
        "API, or by a new customer's first message."
    ),
    "contacts_deleted": i18n.lazy("Contacts deleted in the period."),
    "contacts_merged": i18n.lazy("Merges of two contacts into one in the period (each merge removes one contact)."),
    "contacts_closed": i18n.lazy(
        "Different contacts whose conversations were closed in the period (a contact closed twice counts once)."
    ),
    "messages_sent": i18n.lazy(
        "Messages team members wrote to customers in the period (not bots, workflows or the API)."
    ),
    "comments": i18n.lazy("Internal comments team members wrote in conversations in the period."),
    "broadcasts": i18n.lazy("Broadcasts that started sending in the period, counted on the day they started."),
    "recipients": i18n.lazy("Contacts of those broadcasts' audiences that were not excluded."),
    "sent": i18n.lazy("Broadcast messages the channel accepted (sent, delivered or read)."),
    "delivered": i18n.lazy("Broadcast messages delivered (or read)."),
    "read": i18n.lazy("Broadcast messages read, where the channel reports it."),
    "replied": i18n.lazy("Recipients who answered within the broadcast's reply window."),
    "business_hours": i18n.lazy(
        "Business hours only: response, resolution and assignment times count only the time the workspace was "
        "open, under the business hours in force then (the team's own hours when it has them, else the "
        "workspace's; holidays closed). A reply at 18:55 on Friday answered at 09:05 on Monday, with hours "
        "from 9:00 to 19:00, took 10 minutes. Counts do not change. Times measured before this option existed "
        "are not included."
    ),
    "times": i18n.lazy(
        "Times show the median, the average and the 90th percentile. Medians and percentiles are read from "
        "histograms and are within 1 second or 9.1% of the exact value; counts and averages are exact. Dates "
        "are the event's, in the workspace's time zone."
    ),
}

# What a report's rows are, said once above its tables.
REPORT_NOTES: dict[str, str] = {
    "users": i18n.lazy(
        "One row per active team member. Assignments, closings, contacts closed and resolution times belong to "
        "the conversation's assignee at the time; first responses, reply times, responses per conversation, "
        "messages sent and comments to the person who wrote them. "
        "Time online and away is the person's status in the app during the period, in any workspace."
    ),
    "leaderboard": i18n.lazy(
        "Counts and time online rank highest first, times (medians) lowest first; equal values share a rank and "
        "those without a value come last. The top 10 are shown; the others are under Show all."
    ),
    "broadcasts": i18n.lazy(
        "Broadcasts that started sending in the period, with their numbers as they are now (a broadcast's "
        "deliveries, reads and replies keep coming after the day it started). Only the channel and team member "
        "(who created the broadcast) filters apply."
    ),
}

# The service's field errors, as the form says them.
FIELD_ERRORS: dict[str, str] = {
    "range": i18n.lazy("Choose one of the date ranges."),
    "from": i18n.lazy("A custom range needs a start and an end."),
    "to": i18n.lazy("A custom range needs a start and an end, at most 366 days apart, the end not before the start."),
    "metric": i18n.lazy("Choose one of the options (time online ranks people, not teams)."),
    "business_hours": i18n.lazy(
        "This workspace has no business hours: set them in Settings > General to use this option."
    ),
    "tag": i18n.lazy("No tag of this workspace has this name."),
}
NO_HOURS = i18n.lazy(
    "This workspace has no business hours yet: set them in Settings > General to count times within them."
)
LEADERBOARD_BY_LABELS: dict[str, str] = {"user": i18n.lazy("Team members"), "team": i18n.lazy("Teams")}
CHOOSE_ONE = i18n.lazy("Choose one of the options.")

# Table cells that open the list of conversations behind them: (table, column) -> metric.
DRILL_LINKS: dict[str, dict[tuple[str, str], str]] = {
    "conversations": {
        ("series", "opened"): "opened",
        ("series", "closed"): "closed",
        ("series", "reopened"): "reopened",
    },
    "responses": {
        (table, "count"): metric
        for tables, metric in (
            (("series", "buckets"), "first_response"),
            (("reply_series", "reply_buckets"), "reply_time"),
            (("first_assign_series", "first_assign_buckets"), "first_assign_response"),
            (("last_assign_series", "last_assign_buckets"), "last_assign_response"),
        )
        for table in tables
    },
}

CHARTED = frozenset(
    {
        "series",
        "buckets",
        "reply_series",
        "reply_buckets",
        "first_assign_series",
        "first_assign_buckets",
        "last_assign_series",
        "last_assign_buckets",
        "outgoing_by_sender",
        "closed_by_category",
        "failed_reasons",
        "by_closer",
        "by_source",
        "added_by_source",
        "users",
        "leaderboard",
        "by_broadcast",
    }
)
# Columns holding names, shown as they are (not as numbers).
TEXT_COLUMNS = frozenset({"category", "channel", "person", "team", "name", "broadcast", "started"})


def duration(seconds: float | None) -> str:
    """A time as people read it: 45 s, 4 min 10 s, 9 h 15 min, 2 d 3 h."""
    if seconds is None:
        return "–"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def heat_level(value: int, table: dict[str, Any]) -> int:
    """0-4: how dark a heatmap cell is, relative to the busiest hour."""
    peak = max((v for row in table["rows"] for v in row[1:]), default=0)
    return 0 if not peak or not value else 1 + min(3, (value * 4 - 1) // peak)


@cache
def _version(name: str) -> str:
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    return f"{STATIC_PREFIX}/{name}?v={_version(name)}"


def _choices(ctx: WebContext) -> dict[str, list[tuple[int, str]]]:
    ws = ctx.actor.workspace_id
    session = ctx.session
    people = session.execute(
        select(User.id, User.first_name, User.last_name, User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.workspace_id == ws)
        .order_by(User.first_name, User.id)
    )
    return {
        "channels": [
            (int(i), str(n))
            for i, n in session.execute(
                select(Channel.id, Channel.name).where(Channel.workspace_id == ws).order_by(Channel.name)
            )
        ],
        "teams": [
            (int(i), str(n))
            for i, n in session.execute(select(Team.id, Team.name).where(Team.workspace_id == ws).order_by(Team.name))
        ],
        "categories": [
            (int(i), str(n))
            for i, n in session.execute(
                select(ClosingCategory.id, ClosingCategory.name)
                .where(ClosingCategory.workspace_id == ws)
                .order_by(ClosingCategory.position)
            )
        ],
        "users": [(int(i), " ".join(p for p in (first, last) if p) or str(e)) for i, first, last, e in people],
    }


def _translated(ctx: WebContext, texts: dict[str, str]) -> dict[str, str]:
    return {key: ctx.fmt.gettext(text) for key, text in texts.items()}


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def is_on(value: str | None) -> bool:
    """A checkbox or query flag: "1", "true", "on", "yes" are on."""
    return (value or "").strip().lower() in ("1", "true", "on", "yes")


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Asked:
    """The range and filters in a report page's address, read leniently: a bad id is no filter and a
    bad date is none, which the report then refuses beside its field."""

    range: str
    from_: str
    to: str
    filters: Filters
    business_hours: bool
    tag: str  # a contact tag by name, as the form's field has it

    @property
    def start(self) -> date | None:
        return _date(self.from_)

    @property
    def end(self) -> date | None:
        return _date(self.to)

    def chosen(self, *, business_hours: bool) -> dict[str, str]:
        """What the page keeps in its links (tabs, CSV, lists), with the toggle as it applied."""
        return {
            "range": self.range,
            "from": self.from_,
            "to": self.to,
            **{k: ("" if v is None else str(v)) for k, v in self.filters.__dict__.items() if k != "tag_id"},
            "tag": self.tag,
            "business_hours": "1" if business_hours else "",
        }

    def resolved(self, ctx: WebContext) -> Filters:
        """The filters with the tag named in the form (a 422 on `tag` when no tag has the name)."""
        return service.with_tag_named(ctx.session, ctx.actor.workspace_id, self.filters, self.tag)


def asked(
    range: Annotated[str, Query(max_length=20)] = "last_7_days",
    from_: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    to: Annotated[str | None, Query(max_length=10)] = None,
    channel_id: Annotated[str | None, Query(max_length=20)] = None,
    team_id: Annotated[str | None, Query(max_length=20)] = None,
    user_id: Annotated[str | None, Query(max_length=20)] = None,
    category_id: Annotated[str | None, Query(max_length=20)] = None,
    source: Annotated[str | None, Query(max_length=16)] = None,
    tag: Annotated[str | None, Query(max_length=100)] = None,
    business_hours: Annotated[str | None, Query(max_length=8)] = None,
) -> Asked:
    filters = Filters(_int(channel_id), _int(team_id), _int(user_id), _int(category_id), source or None)
    return Asked(range, from_ or "", to or "", filters, is_on(business_hours), (tag or "").strip())


AskedRange = Annotated[Asked, Depends(asked)]


@router.get("")
def reports_home(_ctx: UserPage) -> Response:
    return RedirectResponse("/reports/conversations", status_code=303)


@router.get("/{name}")
def report_page(
    ctx: UserPage,
    name: str,
    query: AskedRange,
    metric: Annotated[str | None, Query(max_length=24)] = None,
    by: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    if name not in REPORT_TITLES:
        raise NotFound("No such report.")
    has_hours = service.has_business_hours(ctx.session, ctx.actor.workspace_id)
    # Kept in the addresses (tabs, CSV, lists) only where it can apply, so a shared link never asks
    # a workspace without hours for it.
    in_hours = query.business_hours and has_hours
    chosen = query.chosen(business_hours=in_hours)
    if name == "leaderboard":
        chosen.update(metric=metric or "closed", by=by or "user")
    errors: dict[str, str] = {}
    report: dict[str, Any] | None = None
    try:
        report = service.build_report(
            ctx.session,
            ctx.actor,
            name,
            preset=query.range,
            start=query.start,
            end=query.end,
            # Only these reports show the tag field; the others ignore a tag kept in the address.
            filters=query.resolved(ctx) if name in service.TAG_REPORTS else query.filters,
            metric=metric,
            by=by,
            business_hours=in_hours,
        )
    except DomainError as exc:
        if exc.status_code != 422:
            raise
        errors = {key: ctx.fmt.gettext(FIELD_ERRORS.get(key, CHOOSE_ONE)) for key in exc.details or {}}
    address = urlencode({k: v for k, v in chosen.items() if v})
    # The other reports' tabs keep the range and filters, not the leaderboard's own choice.
    shared_query = urlencode({k: v for k, v in chosen.items() if v and k not in ("metric", "by")})
    labels = _translated(ctx, LABELS)
    return ctx.render(
        "reports/report.html",
        {
            "name": name,
            "titles": _translated(ctx, REPORT_TITLES),
            "report": report,
            "errors": errors,
            "chosen": chosen,
            "query": address,
            "shared_query": shared_query,
            "note": ctx.fmt.gettext(REPORT_NOTES[name]) if name in REPORT_NOTES else None,
            "leaderboard_metrics": [(key, labels[key]) for key in service.LEADERBOARD_METRICS],
            "leaderboard_by": _translated(ctx, LEADERBOARD_BY_LABELS),
            "status_labels": _translated(ctx, BROADCAST_STATUS_LABELS),
            "top": service.TOP,
            "choices": _choices(ctx),
            "sees_all": ctx.actor.can(Permission.VIEW_REPORTS),
            "presets": _translated(ctx, PRESET_LABELS),
            "sources": _translated(ctx, {k: SOURCE_LABELS[k] for k in SOURCES}),
            "labels": labels,
            "table_titles": _translated(ctx, TABLE_TITLES),
            "definitions": _translated(ctx, DEFINITIONS),
            "charted": CHARTED,
            "drill_links": DRILL_LINKS.get(name, {}),
            "text_columns": TEXT_COLUMNS,
            "applied_filters": service.APPLIED_FILTERS.get(name),
            "tagged": name in service.TAG_REPORTS,
            "presence_untagged": name in service.UNTAGGED_PRESENCE,
            "tag_names": contacts_repo.tag_suggestions(ctx.session, ctx.actor.workspace_id),
            "timed": name in service.TIMED_REPORTS,
            "has_hours": has_hours,
            "no_hours": ctx.fmt.gettext(NO_HOURS),
            "chart_labels": labels,
            "duration": duration,
            "heat_level": heat_level,
            "chart_js": static_url("chart-4.5.1.umd.min.js"),
            "reports_js": static_url("reports.js"),
            "reports_css": static_url("reports.css"),
        },
        active="reports",
    )


DRILL_TITLES: dict[str, str] = {
    "opened": i18n.lazy("Conversations opened"),
    "closed": i18n.lazy("Closings"),
    "reopened": i18n.lazy("Reopenings"),
    "first_response": i18n.lazy("First responses"),
    "reply_time": i18n.lazy("Replies with a reply time"),
    "first_assign_response": i18n.lazy("First responses after the first assignment"),
    "last_assign_response": i18n.lazy("Responses after the last assignment"),
}


@router.get("/{name}/list")
def drill_down_page(
    ctx: UserPage,
    name: str,
    query: AskedRange,
    metric: Annotated[str, Query(max_length=24)],
    period: Annotated[str | None, Query(max_length=13)] = None,
    bucket: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    """The conversations behind one bar (a day or hour of the series, a bucket of first responses),
    with the report's range and filters; the count is the bar's number."""
    if name not in service.DRILLABLE:
        raise NotFound("No such report.")
    listed = service.drill_down(
        ctx.session,
        ctx.actor,
        name,
        metric=metric,
        period=period or None,
        bucket=bucket or None,
        preset=query.range,
        start=query.start,
        end=query.end,
        filters=query.resolved(ctx),
        business_hours=query.business_hours,
    )
    chosen = query.chosen(business_hours=listed["business_hours"])
    contacts, channels = service.listed_names(ctx.session, ctx.actor.workspace_id, listed["items"])
    # The CSV of the same list: the page's query, with the bar it lists.
    bar = {"metric": metric, "period": period or "", "bucket": bucket or ""}
    csv_query = urlencode({k: v for k, v in {**chosen, **bar}.items() if v})
    zone = service.zone_of(ctx.session, ctx.actor.workspace_id)
    return ctx.render(
        "reports/list.html",
        {
            "name": name,
            "listed": listed,
            "title": ctx.fmt.gettext(DRILL_TITLES[metric]),
            # A time's list shows each one's seconds (in business hours with the toggle).
            "time_label": ctx.fmt.gettext(LABELS[metric]) if metric in DURATION_METRICS else None,
            "report_title": ctx.fmt.gettext(REPORT_TITLES[name]),
            "back": f"/reports/{name}?{urlencode({k: v for k, v in chosen.items() if v})}",
            "csv_url": f"/api/v1/reports/{name}/list.csv?{csv_query}",
            "contacts": contacts,
            "channels": channels,
            "zone": zone,
            "duration": duration,
            "limit": service.DRILL_LIMIT,
        },
        active="reports",
    )
