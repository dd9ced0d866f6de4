"""JSON endpoints for channels (the web-chat widget's settings today; every adapter's later).

    GET/POST /api/v1/channels, GET/PATCH /api/v1/channels/{id}   the widget's `key` and which secrets
         are set, shown to managers only; a new web-chat channel's `identity_secret` (for HMAC identity
         verification) is in the creating answer only, like a new API token

Provider callbacks are not here: they are the inbox's entry point (conversations/ingress/callbacks.py).
"""

from typing import Any

from fastapi import APIRouter

from tertulia.channels import service
from tertulia.channels.schemas import ChannelBody, ChannelPatch, channel_out
from tertulia.kit.http import API_ERRORS, CheckedInputRoute, DbSession
from tertulia.kit.types import ID
from tertulia.users.session_auth import SessionOrTokenActor

router = APIRouter(prefix="/api/v1", tags=["channels"], route_class=CheckedInputRoute, responses=API_ERRORS)


@router.get("/channels")
def list_channels(session: DbSession, actor: SessionOrTokenActor) -> list[dict[str, Any]]:
    return [channel_out(c, actor) for c in service.list_channels(session, actor.workspace_id)]


@router.post("/channels", status_code=201)
def create_channel(session: DbSession, actor: SessionOrTokenActor, body: ChannelBody) -> dict[str, Any]:
    channel = service.do_create_channel(session, actor, body.type, body.name, body.config, body.secrets)
    result = channel_out(channel, actor)
    # Secrets the adapter generated (web chat's identity secret, WhatsApp's verify token) are shown in
    # this answer only, like a new API token; the ones the caller gave are never read back.
    result.update({name: value for name, value in channel.secrets.items() if name not in body.secrets})
    return result


@router.get("/channels/{channel_id}")
def get_channel(session: DbSession, actor: SessionOrTokenActor, channel_id: ID) -> dict[str, Any]:
    return channel_out(service.access_channel(session, actor, channel_id), actor)


@router.patch("/channels/{channel_id}")
def update_channel(
    session: DbSession, actor: SessionOrTokenActor, channel_id: ID, body: ChannelPatch
) -> dict[str, Any]:
    channel = service.access_channel(session, actor, channel_id)
    service.do_update_channel_config(session, actor, channel, body.config)
    if body.secrets:
        service.do_replace_channel_secrets(session, actor, channel, body.secrets)
    return channel_out(channel, actor)
