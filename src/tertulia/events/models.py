"""The event log's two tables.

`events` is append-only: rows are written by `events.service` in the transaction of the change they
record and deleted only by the retention sweep. It has no foreign keys on purpose: an event outlives
what it names (a merged contact is deleted, its `contact.merged` event stays).

`consumer_positions` holds, per consumer, the last event id it has processed and the lease that keeps
two workers from feeding it at once (see `events.dispatcher`).
"""

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tertulia.kit.clock import utcnow
from tertulia.kit.models import Base, BigID, JSONType, UTCDateTime


class EventRecord(Base):
    __tablename__ = "events"
    # SQLite AUTOINCREMENT: ids are never reused, even after the newest rows are pruned. Without it
    # a pruned maximum would be handed out again, below a consumer's position, and never delivered.
    __table_args__ = (Index("ix_events_created_at", "created_at"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(BigID, nullable=False)
    type: Mapped[str] = mapped_column(String(64), nullable=False)
    conversation_id: Mapped[int | None] = mapped_column(BigID)
    contact_id: Mapped[int | None] = mapped_column(BigID)
    # Who caused it: "user:12", "api:3" (a token), "system", "channel", "import", "contact"...
    actor: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class ConsumerPosition(Base):
    __tablename__ = "consumer_positions"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigID, nullable=False, default=0)
    # Held by one dispatcher at a time; after a failure it is the retry time (owner None).
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
