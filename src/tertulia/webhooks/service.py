"""The rules of webhook endpoints: who may manage them (`manage_webhooks`), what a valid endpoint
is, the signing secret (shown once), redelivery and test events. Nothing here commits; deliveries
are nudged after the caller's commit."""

import secrets as random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from tertulia.kit.clock import utcnow
from tertulia.kit.db import on_commit
from tertulia.kit.errors import NotFound, ValidationFailed
from tertulia.users.permissions import Actor, Permission, access_in_workspace
from tertulia.webhooks import reasons, repository, signing, tasks
from tertulia.webhooks.addresses import check_url_shape
from tertulia.webhooks.catalogue import NAMES, TEST_EVENT
from tertulia.webhooks.models import DeliveryState, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tertulia.webhooks.payloads import test_body

MAX_ENDPOINTS = 20
MAX_DESCRIPTION = 500
MAX_URL = 2000
# After a rotation the previous secret still signs (a second signature) for this long.
PREVIOUS_SECRET_HOURS = 24


@dataclass(frozen=True)
class EndpointValues:
    url: str
    events: list[str]
    description: str


def check_endpoint_values(
    url: str | None, events: Sequence[str] | None, description: str | None, *, allow_private: bool
) -> EndpointValues:
    """Every field's problem at once (details map the field to its message)."""
    errors: dict[str, str] = {}
    clean_url = (url or "").strip()
    if not clean_url:
        errors["url"] = "Enter the URL to send events to."
    elif len(clean_url) > MAX_URL:
        errors["url"] = "The URL is too long."
    else:
        try:
            clean_url = check_url_shape(clean_url, allow_private=allow_private)
        except ValueError as exc:
            errors["url"] = _URL_MESSAGES.get(str(exc), "Enter a valid https:// URL.")
    chosen = list(dict.fromkeys(events or []))
    unknown = [e for e in chosen if e not in NAMES]
    if unknown:
        errors["events"] = "Unknown event: " + ", ".join(unknown)
    elif not chosen:
        errors["events"] = "Choose at least one event."
    clean_description = " ".join((description or "").split())
    if len(clean_description) > MAX_DESCRIPTION:
        errors["description"] = "The description is too long (500 characters at most)."
    if errors:
        raise ValidationFailed("The webhook endpoint is not valid.", details=errors)
    return EndpointValues(clean_url, [e for e in NAMES if e in chosen], clean_description)


_URL_MESSAGES = {
    "must be an https:// URL": "Enter a valid https:// URL.",
    "is not a valid URL": "Enter a valid https:// URL.",
    "must not contain a user name or password": "The URL must not contain a user name or password.",
    "points to a private or local address, which this server does not allow": (
        "This server does not allow webhooks to private or local addresses."
    ),
    "must use https (plain http is only allowed to local addresses when the server allows them)": (
        "The URL must use https."
    ),
}


def list_endpoints(session: Session, actor: Actor) -> list[WebhookEndpoint]:
    actor.require(Permission.MANAGE_WEBHOOKS)
    return repository.endpoints_of(session, actor.workspace_id)


def access_endpoint(session: Session, actor: Actor, endpoint_id: int) -> WebhookEndpoint:
    return access_in_workspace(
        session,
        actor,
        WebhookEndpoint,
        endpoint_id,
        permission=Permission.MANAGE_WEBHOOKS,
        not_found="Webhook endpoint not found.",
    )


def access_delivery(session: Session, actor: Actor, endpoint: WebhookEndpoint, delivery_id: int) -> WebhookDelivery:
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.endpoint_id != endpoint.id or delivery.workspace_id != actor.workspace_id:
        raise NotFound("Delivery not found.")
    return delivery


def signing_secrets(endpoint: WebhookEndpoint) -> list[str]:
    return signing.secrets_in_use(endpoint.secrets or {}, utcnow().isoformat())


def do_create_endpoint(session: Session, actor: Actor, values: EndpointValues) -> tuple[WebhookEndpoint, str]:
    """The new endpoint and its signing secret (shown this once)."""
    actor.require(Permission.MANAGE_WEBHOOKS)
    if len(repository.endpoints_of(session, actor.workspace_id)) >= MAX_ENDPOINTS:
        raise ValidationFailed.field("url", "A workspace can have at most 20 webhook endpoints.")
    secret = signing.new_secret()
    endpoint = WebhookEndpoint(
        workspace_id=actor.workspace_id,
        url=values.url,
        events=values.events,
        description=values.description,
        enabled=True,
        secrets={"current": secret},
        consecutive_failures=0,
    )
    session.add(endpoint)
    session.flush()
    return endpoint, secret


def do_update_endpoint(session: Session, actor: Actor, endpoint: WebhookEndpoint, values: EndpointValues) -> None:
    actor.require(Permission.MANAGE_WEBHOOKS)
    endpoint.url = values.url
    endpoint.events = values.events
    endpoint.description = values.description
    session.flush()


def do_set_enabled(session: Session, actor: Actor, endpoint: WebhookEndpoint, enabled: bool) -> None:
    actor.require(Permission.MANAGE_WEBHOOKS)
    if enabled == endpoint.enabled:
        return
    now = utcnow()
    endpoint.enabled = enabled
    if enabled:
        endpoint.consecutive_failures = 0
        endpoint.failing_since = None
        endpoint.disabled_at = None
        endpoint.disabled_reason = None
        repository.resume_paused(session, endpoint.id, now)
        on_commit(session, tasks.nudge)
    else:
        endpoint.disabled_at = now
        endpoint.disabled_reason = reasons.BY_PERSON
    session.flush()


def do_rotate_secret(session: Session, actor: Actor, endpoint: WebhookEndpoint) -> str:
    """A new signing secret (shown this once); the previous one keeps signing for a day, so
    receivers can switch without losing events."""
    actor.require(Permission.MANAGE_WEBHOOKS)
    secret = signing.new_secret()
    previous = (endpoint.secrets or {}).get("current")
    until = (utcnow() + timedelta(hours=PREVIOUS_SECRET_HOURS)).isoformat()
    endpoint.secrets = {"current": secret, "previous": previous, "previous_until": until}
    session.flush()
    return secret


def do_delete_endpoint(session: Session, actor: Actor, endpoint: WebhookEndpoint) -> None:
    actor.require(Permission.MANAGE_WEBHOOKS)
    session.delete(endpoint)  # its deliveries and attempts go with it (ON DELETE CASCADE)
    session.flush()


def do_redeliver(session: Session, actor: Actor, delivery: WebhookDelivery) -> None:
    """Send a delivery again: the same body and webhook-id, due now (a new attempt in its log)."""
    actor.require(Permission.MANAGE_WEBHOOKS)
    now = utcnow()
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery.id, WebhookDelivery.state != DeliveryState.SENDING)
        .values(state=DeliveryState.PENDING, next_attempt_at=now, first_attempt_at=None, delivered_at=None)
    )
    session.expire(delivery)
    on_commit(session, tasks.nudge)


def do_send_test(session: Session, actor: Actor, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """Queue a `webhook.test` event to this endpoint (whatever events it subscribes to)."""
    actor.require(Permission.MANAGE_WEBHOOKS)
    now = utcnow()
    message = f"test_{random.token_hex(12)}"
    delivery = WebhookDelivery(
        workspace_id=actor.workspace_id,
        endpoint_id=endpoint.id,
        event_id=None,
        message_id=message,
        event_type=TEST_EVENT,
        ordering_key=None,
        body=test_body(message, actor.workspace_id, now),
        state=DeliveryState.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    session.flush()
    on_commit(session, tasks.nudge)
    return delivery


def list_deliveries(
    session: Session, actor: Actor, endpoint: WebhookEndpoint, *, limit: int = 50, before: int | None = None
) -> list[WebhookDelivery]:
    actor.require(Permission.MANAGE_WEBHOOKS)
    return repository.deliveries_of(session, endpoint.id, limit=limit, before=before)


def attempts_by_delivery(session: Session, deliveries: Sequence[WebhookDelivery]) -> dict[int, list[WebhookAttempt]]:
    return repository.attempts_of(session, [d.id for d in deliveries])


def endpoint_dict(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": list(endpoint.events or []),
        "enabled": endpoint.enabled,
        "disabled_at": endpoint.disabled_at,
        "disabled_reason": endpoint.disabled_reason,
        "consecutive_failures": endpoint.consecutive_failures,
        "failing_since": endpoint.failing_since,
        "last_success_at": endpoint.last_success_at,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
    }
