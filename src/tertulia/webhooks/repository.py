"""The SQL of webhooks: endpoints by workspace, delivery rows written idempotently, and the claim
that hands deliveries to workers (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite's one writer at a
time needs no row locks)."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
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


def _not_blocked() -> Any:
    """No earlier delivery of the same endpoint and ordering key (the contact) is open."""
    earlier = aliased(WebhookDelivery)
    blocked = exists().where(
        earlier.endpoint_id == WebhookDelivery.endpoint_id,
        earlier.ordering_key == WebhookDelivery.ordering_key,
        earlier.id < WebhookDelivery.id,
        earlier.state.in_(DeliveryState.OPEN),
    )
    return or_(WebhookDelivery.ordering_key.is_(None), ~blocked)


def claimable_ids(session: Session, now: datetime, limit: int) -> list[int]:
    """Deliveries that may be attempted now, oldest first, locked (PostgreSQL: skipping rows another
    worker holds). A delivery waits while an earlier one of its endpoint and ordering key is open
    (pending or sending), so one contact's events reach an endpoint in order."""
    query = (
        select(WebhookDelivery.id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(
            WebhookEndpoint.enabled,
            or_(
                and_(WebhookDelivery.state == DeliveryState.PENDING, WebhookDelivery.next_attempt_at <= now),
                and_(WebhookDelivery.state == DeliveryState.SENDING, WebhookDelivery.lease_until < now),
            ),
            _not_blocked(),
        )
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
