"""The reports' three tables, all written by the event-log consumer (`reports.rollups`) only.

`report_cursor` is the last event the rollups include, moved in the same transaction as the rows an
event changes: an event delivered twice finds its id at or below it and changes nothing.

`report_conversations` holds what the reports need to know about each conversation as it stood after
the events read so far (when its clock started, whether it was answered, its dimensions). Like the
event log it has no foreign keys: its rows outlive a deleted or merged conversation.

`report_rollups` holds the numbers: one row per workspace, grain (day or hour, in the workspace's
time zone when the event happened), metric and combination of dimensions; durations are kept as
a histogram, one row per bucket (`reports.histogram`), with the exact count and sum of each bucket.
"""

from datetime import datetime

from sqlalchemy import Float, Index, Integer, SmallInteger, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from tertulia.kit.models import Base, BigID, UTCDateTime

NONE = 0  # a dimension without a value (no team, no assignee): 0 rather than NULL, so it is a key


class ReportCursor(Base):
    __tablename__ = "report_cursor"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigID, default=0)


class ConversationFact(Base):
    __tablename__ = "report_conversations"
    __table_args__ = (
        Index("ix_report_conversations_workspace_id_opened_at", "workspace_id", "opened_at"),
        Index("ix_report_conversations_contact_id", "contact_id"),
    )

    conversation_id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=False)
    workspace_id: Mapped[int] = mapped_column(BigID)
    contact_id: Mapped[int] = mapped_column(BigID)
    channel_id: Mapped[int] = mapped_column(BigID, default=NONE)
    team_id: Mapped[int] = mapped_column(BigID, default=NONE)
    assignee_id: Mapped[int] = mapped_column(BigID, default=NONE)
    category_id: Mapped[int] = mapped_column(BigID, default=NONE)
    # What opened it: incoming, user, api, workflow, bot, broadcast, system (see rollups.source_of).
    source: Mapped[str] = mapped_column(String(16), default="")
    status: Mapped[str] = mapped_column(String(8), default="open")  # open, closed, merged
    opened_at: Mapped[datetime]
    # The current open period: from the opening or the last reopening.
    period_started_at: Mapped[datetime]
    # The first response clock of the current period: set by the customer's first message, stopped
    # (responded) by the first reply of a person.
    waiting_since: Mapped[datetime | None]
    responded: Mapped[bool] = mapped_column(default=False)
    first_response_seconds: Mapped[float | None] = mapped_column(Float)
    # The same time counting only business hours (reports.rollups: the hours in force then).
    first_response_business_seconds: Mapped[float | None] = mapped_column(Float)
    # The reply clock: the customer's earliest message not answered yet by a person (since the last
    # reply of a person, or the (re)opening); stopped, and measured, by the next reply of a person.
    reply_waiting_since: Mapped[datetime | None]
    first_assigned_at: Mapped[datetime | None]
    # The assignment clocks: the first assignment of the conversation, and its latest assignment,
    # each until the next reply of a person (then measured and cleared); a closing clears both.
    first_assignment_waiting_since: Mapped[datetime | None]
    last_assignment_waiting_since: Mapped[datetime | None]
    first_assignee_id: Mapped[int] = mapped_column(BigID, default=NONE)
    closed_at: Mapped[datetime | None]
    resolution_seconds: Mapped[float | None] = mapped_column(Float)
    resolution_business_seconds: Mapped[float | None] = mapped_column(Float)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    incoming_count: Mapped[int] = mapped_column(Integer, default=0)
    outgoing_count: Mapped[int] = mapped_column(Integer, default=0)
    merged_into_id: Mapped[int | None] = mapped_column(BigID)


# The metrics with one label per contact (or conversation), read only as distinct labels
# (`repository.labels_by`), and the condition of their index, which the distinct counts repeat word
# for word: SQLite uses a partial index only for a query with the same term, not for `metric = ?`.
LABELLED_METRICS = ("closed_contact", "replied_conversation")
LABELLED_WHERE = "metric IN ({})".format(", ".join(f"'{m}'" for m in LABELLED_METRICS))
LABELLED_KEY = (
    "workspace_id",
    "grain",
    "metric",
    "period",
    "label",
    "channel_id",
    "team_id",
    "user_id",
    "category_id",
    "source",
)


class Rollup(Base):
    # The key leads with the metric before the period, so a report reads each metric's periods as
    # one range of the index (the heatmap's incoming hours are not spread among every other metric).
    __tablename__ = "report_rollups"
    __table_args__ = (
        UniqueConstraint(
            "workspace_id",
            "grain",
            "metric",
            "period",
            "label",
            "channel_id",
            "team_id",
            "user_id",
            "category_id",
            "source",
            "bucket",
            name="uq_report_rollups_key",
        ),
        # The distinct counts (`repository.labels_by` and its counts) group the rows of a labelled
        # metric by label and sum their counts: with `count` in an index they read it alone (an
        # index-only scan) instead of one table page per row, rows that are scattered among every
        # other metric's. Partial, so only the labelled metrics' writes touch it.
        Index(
            "ix_report_rollups_labelled_counts",
            *LABELLED_KEY,
            "count",
            sqlite_where=text(LABELLED_WHERE),
            postgresql_where=text(LABELLED_WHERE),
        ),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(BigID)
    # "d" (period "2026-11-26") or "h" ("2026-11-26T09"); "D" and "H" for the workspace's totals
    # (every dimension NONE), which unfiltered reports read.
    grain: Mapped[str] = mapped_column(String(1))
    period: Mapped[str] = mapped_column(String(13))
    metric: Mapped[str] = mapped_column(String(24))
    # What a metric is split by besides the dimensions: the sender kind of an outgoing message, the
    # reason a message failed.
    label: Mapped[str] = mapped_column(String(64), default="")
    channel_id: Mapped[int] = mapped_column(BigID, default=NONE)
    team_id: Mapped[int] = mapped_column(BigID, default=NONE)
    user_id: Mapped[int] = mapped_column(BigID, default=NONE)
    category_id: Mapped[int] = mapped_column(BigID, default=NONE)
    source: Mapped[str] = mapped_column(String(16), default="")
    bucket: Mapped[int] = mapped_column(SmallInteger, default=-1)  # -1: a count, not a duration
    count: Mapped[int] = mapped_column(BigID, default=0)
    total: Mapped[float] = mapped_column(Float, default=0.0)  # seconds, for durations


class ReportItem(Base):
    """One counted occurrence behind a bar: a conversation opened, closed or reopened, assigned or
    unassigned, a reply of a person, a first response, resolution, assignment or reply time, written
    by the consumer beside the rollup increment it explains, with the same period (local hour),
    dimensions and label. The drill-down lists these, so its count is the bar's by construction; a
    report filtered on a contact tag adds them up instead of the rollups (they name their
    conversation). Like the facts it has no foreign keys. Only events applied since migration 0380
    have items (0490 for all but openings, closings, reopenings and first responses, and for
    labels)."""

    __tablename__ = "report_items"
    # conversation_id in the index: a report filtered on a tag keeps only its conversations' items,
    # and SQLite tests that on the index entry, reading the row of those items only.
    __table_args__ = (
        Index(
            "ix_report_items_workspace_id_metric_period_conversation_id",
            "workspace_id",
            "metric",
            "period",
            "conversation_id",
        ),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(BigID)
    conversation_id: Mapped[int] = mapped_column(BigID)
    metric: Mapped[str] = mapped_column(String(24))
    period: Mapped[str] = mapped_column(String(13))  # the local hour, "2026-11-26T09"
    channel_id: Mapped[int] = mapped_column(BigID, default=NONE)
    team_id: Mapped[int] = mapped_column(BigID, default=NONE)
    user_id: Mapped[int] = mapped_column(BigID, default=NONE)
    category_id: Mapped[int] = mapped_column(BigID, default=NONE)
    source: Mapped[str] = mapped_column(String(16), default="")
    label: Mapped[str] = mapped_column(String(64), default="", server_default="")
    bucket: Mapped[int] = mapped_column(SmallInteger, default=-1)
    seconds: Mapped[float | None] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
