"""Writing events: `emit(session, event)` records a fact in the caller's transaction.

Guarantees:
- Same transaction: an event is written if and only if the transaction that emitted it commits. A
  rolled-back transaction, or a rolled-back savepoint (`begin_nested`) the event was emitted in,
  leaves no event.
- Cheap on the hot path: `emit` only appends to a list kept on the session. The list is written
  with ONE executemany INSERT when the transaction commits (the `before_commit` session event), so
  a batch of 64 inbound messages costs one statement, not 64. Savepoints do not write: their
  events join the enclosing transaction's list, and are cut from it if the savepoint rolls back.
- Order: within a transaction events get increasing ids in the order they were emitted.
- On PostgreSQL the transaction id is assigned before the event ids are (`pg_current_xact_id()`
  first): the dispatcher's visibility horizon relies on it (see `events.dispatcher`).
- After the commit, the dispatcher is nudged (`events.tasks.nudge`, coalesced) when this process has
  consumers registered.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import insert, text
from sqlalchemy.orm import Session, SessionTransaction

from tertulia.events import tasks
from tertulia.events.models import EventRecord
from tertulia.events.types import EventType
from tertulia.kit.clock import utcnow
from tertulia.kit.db import on_commit, savepoint_scoped

_PENDING = "events_pending"
_NUDGE = "events_nudge_queued"
# A savepoint that rolls back (or whose flush fails) takes the events emitted inside it, no others.
savepoint_scoped(_PENDING)


@dataclass(frozen=True, slots=True)
class Event:
    """A fact to record. `actor` is a short label: see `actor_label`."""

    type: EventType
    workspace_id: int
    payload: Mapping[str, Any]
    conversation_id: int | None = None
    contact_id: int | None = None
    actor: str | None = None


def actor_label(kind: str, user_id: int | None = None, token_id: int | None = None) -> str:
    """ "user:12", "api:3", or the bare kind ("system", "channel", "import", "contact", "bot")."""
    if user_id is not None:
        return f"{kind}:{user_id}"
    if token_id is not None:
        return f"{kind}:{token_id}"
    return kind


def emit(session: Session, event: Event) -> None:
    """Record `event` in this session's transaction (written at commit, see the module docstring)."""
    pending: list[dict[str, Any]] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
    pending.append(
        {
            "workspace_id": event.workspace_id,
            "type": event.type.value,
            "conversation_id": event.conversation_id,
            "contact_id": event.contact_id,
            "actor": event.actor,
            "payload": dict(event.payload),
            "created_at": utcnow(),
        }
    )


def amend_pending(
    session: Session,
    event_type: EventType,
    conversation_id: int,
    amend: Callable[[dict[str, Any]], dict[str, Any]],
) -> int:
    """Replace the payload of this transaction's `event_type` events about `conversation_id`, not
    written yet, with `amend(payload)`: for a fact the transaction learns after it emitted the event,
    which the event must carry (the first message of a conversation turns out to be a reply to a
    broadcast). How many were amended; none once `write_pending` has written them."""
    amended = 0
    for row in session.info.get(_PENDING) or ():
        if row["type"] == event_type.value and row["conversation_id"] == conversation_id:
            row["payload"] = amend(row["payload"])
            amended += 1
    return amended


def pending_count(session: Session) -> int:
    return len(session.info.get(_PENDING) or ())


# Built once: every transaction that changes the inbox writes its events with these.
_TAKE_XID = text("SELECT pg_current_xact_id()")
_INSERT_EVENTS = insert(EventRecord)


def write_pending(session: Session) -> None:
    """Write the events emitted so far in this transaction now (one executemany INSERT). Not inside
    a savepoint: rows written there would vanish with it although emitted outside it."""
    if session.in_nested_transaction():
        raise RuntimeError("events are written by the outermost transaction, not inside a savepoint")
    rows: list[dict[str, Any]] | None = session.info.get(_PENDING)
    if not rows:
        return
    session.info[_PENDING] = []
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # Take the transaction id before the ids: the dispatcher's horizon needs "xid assigned
        # before any event id of that transaction" (a no-op when the transaction has written).
        connection.execute(_TAKE_XID)
    connection.execute(_INSERT_EVENTS, rows)
    if tasks.has_consumers() and not session.info.get(_NUDGE):
        session.info[_NUDGE] = True
        on_commit(session, tasks.nudge)


@sa_event.listens_for(Session, "before_commit")
def _write_on_commit(session: Session) -> None:
    if not session.in_nested_transaction():  # a savepoint's release: its events wait for the commit
        write_pending(session)


@sa_event.listens_for(Session, "after_transaction_end")
def _end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None and not transaction.nested:
        session.info.pop(_PENDING, None)
        session.info.pop(_NUDGE, None)
