"""The API's shapes for webhook endpoints and their delivery log (OpenAPI-described)."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from tertulia.kit.types import described
from tertulia.webhooks.catalogue import NAMES
from tertulia.webhooks.models import WebhookAttempt, WebhookDelivery

Url = Annotated[str, described(2000, format="uri")]
Description = Annotated[str, described(500)]
# The schema lists the events an endpoint can subscribe to (catalogue.NAMES, the channel's health
# among them); the service refuses any other name with its own message.
EventName = Annotated[str, described(64), Field(json_schema_extra={"enum": list(NAMES)})]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookBody(Strict):
    url: Url = Field(description="https:// URL that receives POSTs (http only to local addresses, when allowed).")
    events: Annotated[list[EventName], described(max_items=50)] = Field(
        description="Event names to send (GET /api/v1/webhooks/events lists them)."
    )
    description: Description = ""


class WebhookPatch(Strict):
    url: Url | None = None
    events: Annotated[list[EventName], described(max_items=50)] | None = None
    description: Description | None = None
    enabled: bool | None = Field(
        default=None, description="false disables it; true enables it and resumes its waiting deliveries."
    )


class WebhookOut(BaseModel):
    id: int
    url: str
    description: str
    events: list[str]
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    consecutive_failures: int
    failing_since: datetime | None
    last_success_at: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret (whsec_...), shown in this answer only.")


class SecretOut(BaseModel):
    secret: str = Field(
        description="The new signing secret, shown in this answer only. The previous one also signs for 24 hours."
    )


class EventOut(BaseModel):
    name: str
    emitted: bool = Field(description="false: listed for subscription, but nothing emits it yet.")


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    status: int | None = Field(description="The HTTP status answered; null when no answer came.")
    response_excerpt: str | None
    error: str | None
    duration_ms: int


class DeliveryOut(BaseModel):
    id: int
    message_id: str = Field(description="The webhook-id header and the body's id.")
    event_type: str
    event_id: int | None
    state: str = Field(description="pending, sending, delivered or failed.")
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    body: Any = Field(description="The JSON that is sent.")
    attempt_log: list[AttemptOut]


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: int | None = Field(description="Pass as `before` for older deliveries.")


def attempt_out(attempt: WebhookAttempt) -> AttemptOut:
    return AttemptOut(
        attempt=attempt.attempt,
        at=attempt.at,
        status=attempt.status,
        response_excerpt=attempt.response_excerpt,
        error=attempt.error,
        duration_ms=attempt.duration_ms,
    )


def delivery_out(delivery: WebhookDelivery, attempts: list[WebhookAttempt], body: Any) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        message_id=delivery.message_id,
        event_type=delivery.event_type,
        event_id=delivery.event_id,
        state=delivery.state,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at if delivery.state == "pending" else None,
        last_status=delivery.last_status,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
        body=body,
        attempt_log=[attempt_out(a) for a in attempts],
    )
