"""JSON endpoints for channels.

    GET/POST /api/v1/channels, GET/PATCH /api/v1/channels/{id}   the widget's `key`, which secrets
         are set and the channel's health, shown to managers only; a new web-chat channel's
         `identity_secret` (for HMAC identity verification) is in the creating answer only, like a
         new API token. POST connects a provider's channel as Settings > Channels does (a Telegram
         bot: {"type": "telegram", "secrets": {"bot_token": ...}}) and answers its `callback_url`.
    POST /api/v1/channels/{id}/connect      connect again (registers the callback URL anew)
    POST /api/v1/channels/{id}/disconnect   stop the channel; its conversations stay
    GET  /api/v1/channels/{id}/templates    the channel's message templates as last synced (WhatsApp),
         with the number's quality and messaging limit
    POST /api/v1/channels/{id}/templates/sync   read them from the provider again (in the background)

Provider callbacks are not here: they are the inbox's entry point (conversations/ingress/callbacks.py).
"""

from typing import Any

from fastapi import APIRouter, Request

from tertulia.channels import message_templates, service
from tertulia.channels.schemas import ChannelBody, ChannelPatch, channel_out
from tertulia.kit.http import API_ERRORS, CheckedInputRoute, DbSession
from tertulia.kit.types import ID
from tertulia.users.session_auth import SessionOrTokenActor

router = APIRouter(prefix="/api/v1", tags=["channels"], route_class=CheckedInputRoute, responses=API_ERRORS)


@router.get("/channels")
def list_channels(session: DbSession, actor: SessionOrTokenActor) -> list[dict[str, Any]]:
    return [channel_out(c, actor, session) for c in service.list_channels(session, actor.workspace_id)]


def _base_url(request: Request) -> str:
    return str(request.app.state.settings.base_url)


@router.post("/channels", status_code=201)
def create_channel(
    session: DbSession, actor: SessionOrTokenActor, body: ChannelBody, request: Request
) -> dict[str, Any]:
    channel = service.do_connect_channel(
        session, actor, body.type, body.name, body.config, body.secrets, base_url=_base_url(request)
    )
    result = {**channel_out(channel, actor, session), "callback_url": service.callback_url(_base_url(request), channel)}
    # Secrets the adapter generated (web chat's identity secret, WhatsApp's verify token) are shown in
    # this answer only, like a new API token; the ones the caller gave are never read back.
    result.update({name: value for name, value in channel.secrets.items() if name not in body.secrets})
    return result


@router.get("/channels/{channel_id}")
def get_channel(session: DbSession, actor: SessionOrTokenActor, channel_id: ID) -> dict[str, Any]:
    return channel_out(service.access_channel(session, actor, channel_id), actor, session)


@router.patch("/channels/{channel_id}")
def update_channel(
    session: DbSession, actor: SessionOrTokenActor, channel_id: ID, body: ChannelPatch
) -> dict[str, Any]:
    channel = service.access_channel(session, actor, channel_id)
    service.do_update_channel_config(session, actor, channel, body.config)
    if body.secrets:
        service.do_replace_channel_secrets(session, actor, channel, body.secrets)
    return channel_out(channel, actor, session)


@router.post("/channels/{channel_id}/connect")
def connect_channel(
    session: DbSession, actor: SessionOrTokenActor, channel_id: int, request: Request
) -> dict[str, Any]:
    channel = service.access_channel(session, actor, channel_id)
    service.do_reconnect_channel(session, actor, channel, base_url=_base_url(request))
    return channel_out(channel, actor, session)


@router.post("/channels/{channel_id}/disconnect")
def disconnect_channel(session: DbSession, actor: SessionOrTokenActor, channel_id: int) -> dict[str, Any]:
    channel = service.access_channel(session, actor, channel_id)
    problem = service.do_disconnect_channel(session, actor, channel)
    return {**channel_out(channel, actor, session), "provider_refused": problem}


@router.get("/channels/{channel_id}/templates")
def channel_templates(session: DbSession, actor: SessionOrTokenActor, channel_id: ID) -> dict[str, Any]:
    channel = service.access_channel(session, actor, channel_id)
    return {
        "items": [message_templates.as_dict(t) for t in message_templates.templates_of(session, channel)],
        "synced_at": channel.templates_synced_at,
        "sync_error": channel.templates_sync_error,
        "quality_event": channel.quality_event,
        "messaging_limit": channel.messaging_limit,
        "quality_changed_at": channel.quality_changed_at,
    }


@router.post("/channels/{channel_id}/templates/sync", status_code=202)
def sync_channel_templates(session: DbSession, actor: SessionOrTokenActor, channel_id: ID) -> dict[str, Any]:
    channel = service.access_channel(session, actor, channel_id)
    service.do_sync_templates(session, actor, channel)
    return {"queued": True}
