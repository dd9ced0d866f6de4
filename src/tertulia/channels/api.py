"""Provider callbacks: one endpoint for every channel type, the adapter does the provider part.

    GET|POST /webhooks/{channel key}

The raw body is kept and verified by the adapter before anything is parsed (signatures are over
the exact bytes). Inbound messages are deduplicated by provider id and status updates only move
forward, so a provider retrying a callback changes nothing. One bad message in a batch is logged
and skipped: failing the whole callback would make the provider retry it forever.
"""

import anyio
import structlog
from fastapi import APIRouter, Request, Response

from tertulia.channels.base import WebhookRejected, WebhookRequest, get_adapter
from tertulia.channels.http import JsonErrorRoute
from tertulia.channels.service import channel_by_key
from tertulia.kit.db import Database
from tertulia.kit.errors import DomainError, NotFound, PermissionDenied

log = structlog.get_logger()
router = APIRouter(prefix="/webhooks", tags=["channel webhooks"], route_class=JsonErrorRoute)


@router.api_route("/{key}", methods=["GET", "POST"], include_in_schema=False)
async def provider_webhook(key: str, request: Request) -> Response:
    from tertulia.conversations.service import do_apply_status, do_receive

    body = await request.body()
    incoming = WebhookRequest(
        method=request.method,
        url=str(request.url),
        headers={k.lower(): v for k, v in request.headers.items()},
        query=dict(request.query_params),
        body=body,
    )
    db: Database = request.app.state.db

    def handle() -> Response:
        with db.transaction() as session:
            channel = channel_by_key(session, key)
            if channel is None:
                raise NotFound("No such channel.")
            adapter = get_adapter(channel.type)
            try:
                adapter.verify_webhook(channel, incoming)
                parsed = adapter.parse_webhook(channel, incoming)
            except WebhookRejected as exc:
                raise PermissionDenied("Webhook verification failed.", code="webhook_rejected") from exc
            for message in parsed.messages:
                try:
                    with session.begin_nested():
                        do_receive(session, channel, message)
                except DomainError as exc:
                    log.warning("webhook_message_skipped", channel_id=channel.id, reason=exc.message)
            for status in parsed.statuses:
                do_apply_status(session, channel, status.provider_message_id, status.status, status.reason)
        if parsed.reply is not None:
            return Response(parsed.reply, media_type="text/plain")
        return Response(status_code=200)

    return await anyio.to_thread.run_sync(handle)
