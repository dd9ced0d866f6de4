"""JSON endpoints for outgoing webhooks (`manage_webhooks`: owners, managers and API tokens).

GET  /api/v1/webhooks/events                the events an endpoint can subscribe to
GET/POST /api/v1/webhooks                   endpoints; POST answers the signing secret once
GET/PATCH/DELETE /api/v1/webhooks/{id}      one endpoint (PATCH enabled: true resumes it)
POST /api/v1/webhooks/{id}/rotate-secret    a new secret, shown once; the old one signs for 24 h
POST /api/v1/webhooks/{id}/test             queue a webhook.test event to it
GET  /api/v1/webhooks/{id}/deliveries       its delivery log, newest first (?before=&limit=)
GET  /api/v1/webhooks/{id}/deliveries/{d}   one delivery with its attempts
POST /api/v1/webhooks/{id}/deliveries/{d}/redeliver   send it again (same body and webhook-id)
"""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from tertulia.kit.http import API_ERRORS, CheckedInputRoute, DbSession
from tertulia.kit.types import ID
from tertulia.users.permissions import Permission
from tertulia.users.session_auth import SessionOrTokenActor as ApiActor
from tertulia.webhooks import service
from tertulia.webhooks.catalogue import EVENTS
from tertulia.webhooks.models import WebhookDelivery
from tertulia.webhooks.schemas import (
    DeliveryOut,
    DeliveryPage,
    EventOut,
    SecretOut,
    WebhookBody,
    WebhookCreated,
    WebhookOut,
    WebhookPatch,
    delivery_out,
)

router = APIRouter(prefix="/api/v1", tags=["webhooks"], route_class=CheckedInputRoute, responses=API_ERRORS)


def _allow_private(request: Request) -> bool:
    return bool(request.app.state.settings.webhooks_allow_private)


def _out(endpoint: Any) -> WebhookOut:
    return WebhookOut(**service.endpoint_dict(endpoint))


def _delivery(session: DbSession, delivery: WebhookDelivery) -> DeliveryOut:
    attempts = service.attempts_by_delivery(session, [delivery])[delivery.id]
    return delivery_out(delivery, attempts, json.loads(delivery.body))


@router.get("/webhooks/events", response_model=list[EventOut])
def list_events(actor: ApiActor) -> list[EventOut]:
    actor.require(Permission.MANAGE_WEBHOOKS)
    return [EventOut(name=e.name, emitted=e.emitted) for e in EVENTS]


@router.get("/webhooks", response_model=list[WebhookOut])
def list_webhooks(session: DbSession, actor: ApiActor) -> list[WebhookOut]:
    return [_out(e) for e in service.list_endpoints(session, actor)]


@router.post("/webhooks", response_model=WebhookCreated, status_code=201)
def create_webhook(session: DbSession, actor: ApiActor, body: WebhookBody, request: Request) -> WebhookCreated:
    actor.require(Permission.MANAGE_WEBHOOKS)
    values = service.check_endpoint_values(
        body.url, body.events, body.description, allow_private=_allow_private(request)
    )
    endpoint, secret = service.do_create_endpoint(session, actor, values)
    return WebhookCreated(**service.endpoint_dict(endpoint), secret=secret)


@router.get("/webhooks/{endpoint_id}", response_model=WebhookOut)
def get_webhook(session: DbSession, actor: ApiActor, endpoint_id: ID) -> WebhookOut:
    return _out(service.access_endpoint(session, actor, endpoint_id))


@router.patch("/webhooks/{endpoint_id}", response_model=WebhookOut)
def update_webhook(
    session: DbSession, actor: ApiActor, endpoint_id: ID, body: WebhookPatch, request: Request
) -> WebhookOut:
    endpoint = service.access_endpoint(session, actor, endpoint_id)
    if body.url is not None or body.events is not None or body.description is not None:
        values = service.check_endpoint_values(
            body.url if body.url is not None else endpoint.url,
            body.events if body.events is not None else endpoint.events,
            body.description if body.description is not None else endpoint.description,
            allow_private=_allow_private(request),
        )
        service.do_update_endpoint(session, actor, endpoint, values)
    if body.enabled is not None:
        service.do_set_enabled(session, actor, endpoint, body.enabled)
    return _out(endpoint)


@router.delete("/webhooks/{endpoint_id}", status_code=204)
def delete_webhook(session: DbSession, actor: ApiActor, endpoint_id: ID) -> Response:
    service.do_delete_endpoint(session, actor, service.access_endpoint(session, actor, endpoint_id))
    return Response(status_code=204)


@router.post("/webhooks/{endpoint_id}/rotate-secret", response_model=SecretOut)
def rotate_secret(session: DbSession, actor: ApiActor, endpoint_id: ID, response: Response) -> SecretOut:
    endpoint = service.access_endpoint(session, actor, endpoint_id)
    response.headers["Cache-Control"] = "no-store"
    return SecretOut(secret=service.do_rotate_secret(session, actor, endpoint))


@router.post("/webhooks/{endpoint_id}/test", response_model=DeliveryOut, status_code=202)
def send_test(session: DbSession, actor: ApiActor, endpoint_id: ID) -> DeliveryOut:
    endpoint = service.access_endpoint(session, actor, endpoint_id)
    return _delivery(session, service.do_send_test(session, actor, endpoint))


@router.get("/webhooks/{endpoint_id}/deliveries", response_model=DeliveryPage)
def list_deliveries(
    session: DbSession,
    actor: ApiActor,
    endpoint_id: ID,
    before: Annotated[ID | None, Query(description="A delivery id: older ones.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> DeliveryPage:
    endpoint = service.access_endpoint(session, actor, endpoint_id)
    rows = service.list_deliveries(session, actor, endpoint, limit=limit + 1, before=before)
    page = rows[:limit]
    attempts = service.attempts_by_delivery(session, page)
    items = [delivery_out(d, attempts[d.id], json.loads(d.body)) for d in page]
    return DeliveryPage(items=items, next_cursor=page[-1].id if len(rows) > limit else None)


@router.get("/webhooks/{endpoint_id}/deliveries/{delivery_id}", response_model=DeliveryOut)
def get_delivery(session: DbSession, actor: ApiActor, endpoint_id: ID, delivery_id: ID) -> DeliveryOut:
    endpoint = service.access_endpoint(session, actor, endpoint_id)
    return _delivery(session, service.access_delivery(session, actor, endpoint, delivery_id))


@router.post("/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver", response_model=DeliveryOut, status_code=202)
def redeliver(session: DbSession, actor: ApiActor, endpoint_id: ID, delivery_id: ID) -> DeliveryOut:
    endpoint = service.access_endpoint(session, actor, endpoint_id)
    delivery = service.access_delivery(session, actor, endpoint, delivery_id)
    service.do_redeliver(session, actor, delivery)
    return _delivery(session, delivery)
