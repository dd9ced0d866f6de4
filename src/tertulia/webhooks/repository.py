"""The SQL of webhooks: endpoints by workspace, delivery rows written idempotently, and the claim
that hands deliveries to workers (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite's one writer at a
time needs no row locks)."""

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, literal_column, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from tertulia.webhooks.models import DeliveryState, WebhookAttempt, WebhookDelivery, WebhookEndpoint


def endpoints_of(session: Session, workspace_id: int) -> list[WebhookEndpoint]:
    query = select(WebhookEndpoint).where(WebhookEndpoint.workspace_id == workspace_id)
    return list(session.scalars(query.order_by(WebhookEndpoint.id)))


def enabled_endpoints(session: Session, workspace_id: int) -> list[WebhookEndpoint]:
    query = select(WebhookEndpoint).where(WebhookEndpoint.workspace_id == workspace_id, WebhookEndpoint.enabled)
    return list(session.scalars(query.order_by(WebhookEndpoint.id)))


def subscribed_events(session: Session, workspace_ids: Iterable[int]) -> dict[int, set[str]]:
    """The event names the enabled endpoints of each workspace subscribe to (workspaces with none left out)."""
    query = select(WebhookEndpoint.workspace_id, WebhookEndpoint.events).where(
        WebhookEndpoint.workspace_id.in_(sorted(set(workspace_ids))), WebhookEndpoint.enabled
    )
    found: dict[int, set[str]] = {}
    for workspace_id, names in session.execute(query):
        found.setdefault(int(workspace_id), set()).update(names or [])
    return found


def insert_deliveries(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Write delivery rows; one already written for the same endpoint and message id is kept (an
    event fed twice to the fan-out makes one delivery)."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        statement: Any = postgres_insert(WebhookDelivery).on_conflict_do_nothing(
            index_elements=["endpoint_id", "message_id"]
        )
    else:
        statement = sqlite_insert(WebhookDelivery).on_conflict_do_nothing(index_elements=["endpoint_id", "message_id"])
    session.execute(statement, list(rows))


def _state(value: str) -> ColumnElement[str]:
    """A state written into the SQL rather than bound: a planner uses a partial index only when it
    can tell from the query's text that the rows wanted are in it (models.OPEN_PREDICATE), and a
    parameter hides that (PostgreSQL's generic plans, SQLite always)."""
    return literal_column(f"'{value}'")


def is_open(state: Any) -> ColumnElement[bool]:
    """`state IN ('pending', 'sending')`, as in the partial indexes' predicate."""
    return state.in_([_state(value) for value in DeliveryState.OPEN])  # type: ignore[no-any-return]


def _not_blocked() -> Any:
    """No earlier delivery of the same endpoint and ordering key (the contact) is open."""
    earlier = aliased(WebhookDelivery)
    blocked = exists().where(
        earlier.endpoint_id == WebhookDelivery.endpoint_id,
        earlier.ordering_key == WebhookDelivery.ordering_key,
        earlier.id < WebhookDelivery.id,
        is_open(earlier.state),
    )
    return or_(WebhookDelivery.ordering_key.is_(None), ~blocked)


def claimable_ids(session: Session, now: datetime, limit: int) -> list[int]:
    """Deliveries that may be attempted now, oldest first, locked (PostgreSQL: skipping rows another
    worker holds). A delivery waits while an earlier one of its endpoint and ordering key is open
    (pending or sending), so one contact's events reach an endpoint in order."""
    due = or_(
        and_(WebhookDelivery.state == _state(DeliveryState.PENDING), WebhookDelivery.next_attempt_at <= now),
        and_(WebhookDelivery.state == _state(DeliveryState.SENDING), WebhookDelivery.lease_until < now),
    )
    # The walk is along ix_webhook_deliveries_open_id, stopping at `limit`. PostgreSQL proves from
    # `due` alone that the rows are in that partial index; repeating the index's predicate there
    # would count it twice in the row estimate and turn the plan into a sort of every open row.
    # SQLite uses a partial index only when its predicate is a term of the query's WHERE.
    if session.get_bind().dialect.name == "sqlite":
        due = and_(is_open(WebhookDelivery.state), due)
    query = (
        select(WebhookDelivery.id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookEndpoint.enabled, due, _not_blocked())
        .order_by(WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    )
    return list(session.scalars(query))


def next_due(session: Session) -> datetime | None:
    """When the earliest waiting delivery that is not held behind an earlier one of its contact is
    due (for scheduling a follow-up; it may be due already). A held one is freed by the retry of the
    one before it, which is counted."""
    query = (
        select(func.min(WebhookDelivery.next_attempt_at))
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookEndpoint.enabled, WebhookDelivery.state == DeliveryState.PENDING, _not_blocked())
    )
    return session.scalar(query)


def deliveries_of(
    session: Session, endpoint_id: int, *, limit: int, before: int | None = None
) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    return list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))


def attempts_of(session: Session, delivery_ids: Sequence[int]) -> dict[int, list[WebhookAttempt]]:
    result: dict[int, list[WebhookAttempt]] = {i: [] for i in delivery_ids}
    if not delivery_ids:
        return result
    query = select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(list(delivery_ids)))
    for attempt in session.scalars(query.order_by(WebhookAttempt.id)):
        result[attempt.delivery_id].append(attempt)
    return result


def resume_paused(session: Session, endpoint_id: int, now: datetime) -> None:
    """An endpoint enabled again: its open deliveries are due now."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.state == DeliveryState.PENDING)
        .values(next_attempt_at=now)
    )
