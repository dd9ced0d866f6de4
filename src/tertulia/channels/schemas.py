"""Request bodies and the output shape of the channel endpoints."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tertulia.channels.models import Channel
from tertulia.users.permissions import Actor, Permission


class ChannelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(max_length=32)
    name: str = Field(max_length=200)
    config: dict[str, Any] = Field(default_factory=dict)


class ChannelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: dict[str, Any]


def channel_out(channel: Channel, actor: Actor) -> dict[str, Any]:
    """A channel as the API shows it: the public key (and the widget's identity secret, which the
    site's server needs for identity verification) only to those who manage channels."""
    result: dict[str, Any] = {
        "id": channel.id,
        "type": channel.type,
        "name": channel.name,
        "active": channel.active,
        "config": channel.config or {},
    }
    if actor.can(Permission.MANAGE_CHANNELS):
        result["key"] = channel.key
        if channel.type == "webchat":
            result["identity_secret"] = (channel.secrets or {}).get("identity_secret")
    return result
