"""Webhook endpoints, their deliveries (durable rows, one per event and endpoint) and the attempts
made for each delivery (the delivery log)."""

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from tertulia.kit.crypto import EncryptedJSON
from tertulia.kit.models import Base, BigID, IdMixin, JSONType, TimestampMixin


class WebhookEndpoint(IdMixin, TimestampMixin, Base):
    """`secrets` holds the signing secret ("current": "whsec_...") and, for a day after a rotation,
    the previous one ("previous", "previous_until"), encrypted at rest like channel secrets."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_workspace_id", "workspace_id"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(500), default="")
    events: Mapped[list[str]] = mapped_column(JSONType, default=list)
    enabled: Mapped[bool] = mapped_column(default=True)
    secrets: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON("webhooks.secrets"), default=dict)
    # Failures since the last success; the endpoint is disabled after too many or too long.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    failing_since: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(500))


class DeliveryState:
    PENDING = "pending"  # waiting for its first attempt or its next retry (next_attempt_at)
    SENDING = "sending"  # claimed by a worker until lease_until; an expired lease is claimable again
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up (retry window over, or the endpoint was deleted)
    OPEN = (PENDING, SENDING)


# The rows still to send (pending or sending): the claim's partial indexes hold only these, so the
# claim costs the same however many deliveries are done. Spelled out, not bound, in the queries
# too (repository.is_open): a planner uses a partial index only when the query's own WHERE
# contains its predicate, and neither PostgreSQL's generic plans nor SQLite can see into a parameter.
OPEN_PREDICATE = "state IN ({})".format(", ".join(f"'{state}'" for state in DeliveryState.OPEN))


class WebhookDelivery(IdMixin, Base):
    """One event for one endpoint. `body` is the exact JSON sent (fixed when the row is written), so
    retries and redeliveries send the same bytes under the same `message_id` (the `webhook-id`).
    Deliveries of one endpoint with the same `ordering_key` (the contact) go out in id order: a
    later one waits while an earlier one is open."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "message_id", name="uq_webhook_deliveries_endpoint_id_message_id"),
        Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
        # The claim: open deliveries oldest first, without walking the delivered ones.
        Index(
            "ix_webhook_deliveries_open_id",
            "id",
            sqlite_where=text(OPEN_PREDICATE),
            postgresql_where=text(OPEN_PREDICATE),
        ),
        # "An earlier delivery of this endpoint and contact is open", without walking its history.
        Index(
            "ix_webhook_deliveries_open_endpoint_id_ordering_key_id",
            "endpoint_id",
            "ordering_key",
            "id",
            sqlite_where=text(OPEN_PREDICATE),
            postgresql_where=text(OPEN_PREDICATE),
        ),
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int] = mapped_column(BigID, ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[int | None] = mapped_column(BigID)  # None for a test event
    message_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    ordering_key: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    first_attempt_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class WebhookAttempt(IdMixin, Base):
    """One HTTP request made for a delivery: what came back and how long it took."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery_id", "delivery_id"),)

    delivery_id: Mapped[int] = mapped_column(BigID, ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    status: Mapped[int | None] = mapped_column(Integer)  # None: no HTTP answer (refused, timeout)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(String(1000))
    duration_ms: Mapped[int] = mapped_column(Integer)
