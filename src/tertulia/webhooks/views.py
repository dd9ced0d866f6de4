"""Settings > Integrations > Webhooks: endpoints, their signing secret (shown once), test events
and the delivery log with redelivery. `manage_webhooks` (owners and managers)."""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form
from starlette.responses import Response

from tertulia.kit.errors import DomainError, ValidationFailed
from tertulia.kit.http import CheckedInputRoute
from tertulia.kit.text import replace_unsafe_characters
from tertulia.kit.types import ID
from tertulia.users.permissions import Permission
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext
from tertulia.web.forms import field_errors, submit
from tertulia.web.sections import Section, open_section, render_section, section_page
from tertulia.webhooks import reasons, service
from tertulia.webhooks.catalogue import EVENTS
from tertulia.webhooks.models import WebhookEndpoint

router = APIRouter(prefix="/settings", include_in_schema=False, route_class=CheckedInputRoute)

WEBHOOKS = Section("webhooks", i18n.lazy("Webhooks"), Permission.MANAGE_WEBHOOKS)

STATE_LABELS: dict[str, str] = {
    "pending": i18n.lazy("Waiting"),
    "sending": i18n.lazy("Sending"),
    "delivered": i18n.lazy("Delivered"),
    "failed": i18n.lazy("Failed"),
}


def _reason(ctx: WebContext, reason: str | None) -> str | None:
    """Why the endpoint is off, in the reader's language (a reason of another form as stored)."""
    return reasons.in_language(reason, ctx.fmt.language) if reason else None


def _allow_private(ctx: WebContext) -> bool:
    return bool(ctx.request.app.state.settings.webhooks_allow_private)


def _typed(url: str, events: list[str] | None, description: str) -> dict[str, Any]:
    return {
        "url": replace_unsafe_characters(url),
        "events": [replace_unsafe_characters(e) for e in events or []],
        "description": replace_unsafe_characters(description),
    }


@section_page(router, "/webhooks", WEBHOOKS)
def _webhooks(
    ctx: WebContext,
    *,
    typed: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    secret: str | None = None,
) -> Response:
    context = {
        "endpoints": service.list_endpoints(ctx.session, ctx.actor),
        "events": EVENTS,
        "typed": typed or {"url": "", "events": [], "description": ""},
        "errors": errors or {},
        "secret": secret,
    }
    response = render_section(ctx, WEBHOOKS, "webhooks/list.html", context, status_code=422 if errors else 200)
    if secret:
        response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/webhooks")
def create_webhook(
    ctx: UserPage,
    url: Annotated[str, Form()] = "",
    events: Annotated[list[str] | None, Form()] = None,
    description: Annotated[str, Form()] = "",
) -> Response:
    open_section(ctx, WEBHOOKS)

    def create() -> tuple[WebhookEndpoint, str]:
        values = service.check_endpoint_values(url, events, description, allow_private=_allow_private(ctx))
        return service.do_create_endpoint(ctx.session, ctx.actor, values)

    return submit(
        ctx,
        create,
        again=lambda exc: _webhooks(ctx, typed=_typed(url, events, description), errors=field_errors(ctx, exc)),
        done=lambda created: _webhooks(ctx, secret=created[1]),
        catch=(ValidationFailed,),
    )


def _endpoint_page(
    ctx: WebContext,
    endpoint_id: int,
    *,
    typed: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    secret: str | None = None,
) -> Response:
    endpoint = service.access_endpoint(ctx.session, ctx.actor, endpoint_id)
    deliveries = service.list_deliveries(ctx.session, ctx.actor, endpoint, limit=50)
    attempts = service.attempts_by_delivery(ctx.session, deliveries)
    rows = [
        {
            "delivery": d,
            "attempts": attempts[d.id],
            "body": json.dumps(json.loads(d.body), indent=2, ensure_ascii=False),
        }
        for d in deliveries
    ]
    context = {
        "endpoint": endpoint,
        "events": EVENTS,
        "typed": typed
        or {"url": endpoint.url, "events": list(endpoint.events or []), "description": endpoint.description},
        "errors": errors or {},
        "secret": secret,
        "deliveries": rows,
        "states": STATE_LABELS,
        "disabled_reason": _reason(ctx, endpoint.disabled_reason),
    }
    response = render_section(ctx, WEBHOOKS, "webhooks/endpoint.html", context, status_code=422 if errors else 200)
    if secret:
        response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/webhooks/{endpoint_id}")
def endpoint_page(ctx: UserPage, endpoint_id: ID) -> Response:
    open_section(ctx, WEBHOOKS)
    return _endpoint_page(ctx, endpoint_id)


@router.post("/webhooks/{endpoint_id}")
def update_webhook(
    ctx: UserPage,
    endpoint_id: ID,
    url: Annotated[str, Form()] = "",
    events: Annotated[list[str] | None, Form()] = None,
    description: Annotated[str, Form()] = "",
) -> Response:
    open_section(ctx, WEBHOOKS)

    def update() -> None:
        endpoint = service.access_endpoint(ctx.session, ctx.actor, endpoint_id)
        values = service.check_endpoint_values(url, events, description, allow_private=_allow_private(ctx))
        service.do_update_endpoint(ctx.session, ctx.actor, endpoint, values)

    def again(exc: DomainError) -> Response:
        return _endpoint_page(ctx, endpoint_id, typed=_typed(url, events, description), errors=field_errors(ctx, exc))

    return submit(
        ctx,
        update,
        again=again,
        redirect=f"/settings/webhooks/{endpoint_id}",
        flash="settings_saved",
        catch=(ValidationFailed,),
    )


@router.post("/webhooks/{endpoint_id}/enable")
def enable_webhook(ctx: UserPage, endpoint_id: ID) -> Response:
    open_section(ctx, WEBHOOKS)
    service.do_set_enabled(ctx.session, ctx.actor, service.access_endpoint(ctx.session, ctx.actor, endpoint_id), True)
    return ctx.redirect(f"/settings/webhooks/{endpoint_id}", flash="settings_saved")


@router.post("/webhooks/{endpoint_id}/disable")
def disable_webhook(ctx: UserPage, endpoint_id: ID) -> Response:
    open_section(ctx, WEBHOOKS)
    service.do_set_enabled(ctx.session, ctx.actor, service.access_endpoint(ctx.session, ctx.actor, endpoint_id), False)
    return ctx.redirect(f"/settings/webhooks/{endpoint_id}", flash="settings_saved")


@router.post("/webhooks/{endpoint_id}/rotate-secret")
def rotate_secret(ctx: UserPage, endpoint_id: ID) -> Response:
    open_section(ctx, WEBHOOKS)
    endpoint = service.access_endpoint(ctx.session, ctx.actor, endpoint_id)
    secret = service.do_rotate_secret(ctx.session, ctx.actor, endpoint)
    return _endpoint_page(ctx, endpoint_id, secret=secret)


@router.post("/webhooks/{endpoint_id}/test")
def send_test(ctx: UserPage, endpoint_id: ID) -> Response:
    open_section(ctx, WEBHOOKS)
    service.do_send_test(ctx.session, ctx.actor, service.access_endpoint(ctx.session, ctx.actor, endpoint_id))
    return ctx.redirect(f"/settings/webhooks/{endpoint_id}", flash="webhook_test_queued")


@router.post("/webhooks/{endpoint_id}/delete")
def delete_webhook(ctx: UserPage, endpoint_id: ID) -> Response:
    open_section(ctx, WEBHOOKS)
    service.do_delete_endpoint(ctx.session, ctx.actor, service.access_endpoint(ctx.session, ctx.actor, endpoint_id))
    return ctx.redirect("/settings/webhooks", flash="webhook_deleted")


@router.post("/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver")
def redeliver(ctx: UserPage, endpoint_id: ID, delivery_id: ID) -> Response:
    open_section(ctx, WEBHOOKS)
    endpoint = service.access_endpoint(ctx.session, ctx.actor, endpoint_id)
    service.do_redeliver(ctx.session, ctx.actor, service.access_delivery(ctx.session, ctx.actor, endpoint, delivery_id))
    return ctx.redirect(f"/settings/webhooks/{endpoint_id}", flash="webhook_redeliver_queued")
