"""Channels: create, configure, look up. Adapters validate their own config."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.channels.base import get_adapter, registered_types
from tertulia.channels.models import Channel
from tertulia.contacts.models import ContactIdentity
from tertulia.kit.errors import NotFound, ValidationFailed
from tertulia.kit.security import new_token
from tertulia.users.permissions import Actor, Permission


def do_create_channel(
    session: Session,
    actor: Actor,
    channel_type: str,
    name: str,
    config: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
) -> Channel:
    actor.require(Permission.MANAGE_CHANNELS)
    try:
        adapter = get_adapter(channel_type)
    except LookupError as exc:
        raise ValidationFailed.field("type", f"must be one of: {', '.join(registered_types())}") from exc
    label = " ".join(name.split())
    if not label or len(label) > 120:
        raise ValidationFailed.field("name", "is required (at most 120 characters)")
    cleaned_config, cleaned_secrets = adapter.clean_config(config or {}, secrets or {})
    channel = Channel(
        workspace_id=actor.workspace_id,
        type=channel_type,
        name=label,
        key=new_token(nbytes=18),
        active=True,
        config=cleaned_config,
        secrets=cleaned_secrets,
    )
    session.add(channel)
    session.flush()
    return channel


def do_update_channel_config(session: Session, actor: Actor, channel: Channel, config: dict[str, Any]) -> Channel:
    actor.require(Permission.MANAGE_CHANNELS)
    adapter = get_adapter(channel.type)
    merged = {**(channel.config or {}), **config}
    channel.config, channel.secrets = adapter.clean_config(merged, dict(channel.secrets or {}))
    session.flush()
    return channel


MAX_SECRET_LENGTH = 4096


def do_replace_channel_secrets(
    session: Session, actor: Actor, channel: Channel, replacements: dict[str, str]
) -> Channel:
    """Replace secrets the channel has; an empty value keeps the stored one (secrets are never shown
    back, so a form or API call that leaves one empty means "unchanged")."""
    actor.require(Permission.MANAGE_CHANNELS)
    merged = dict(channel.secrets or {})
    for name, value in replacements.items():
        if name not in merged:
            raise ValidationFailed.field(f"secrets.{name}", "is not a secret of this channel")
        if not isinstance(value, str) or len(value) > MAX_SECRET_LENGTH:
            raise ValidationFailed.field(f"secrets.{name}", f"must be text of at most {MAX_SECRET_LENGTH} characters")
        if value.strip():
            merged[name] = value.strip()
    channel.config, channel.secrets = get_adapter(channel.type).clean_config(dict(channel.config or {}), merged)
    session.flush()
    return channel


def access_channel(session: Session, actor: Actor, channel_id: int) -> Channel:
    channel = session.scalar(
        select(Channel).where(Channel.workspace_id == actor.workspace_id, Channel.id == channel_id)
    )
    if channel is None:
        raise NotFound(f"No channel {channel_id}.")
    return channel


def list_channels(session: Session, workspace_id: int) -> list[Channel]:
    return list(session.scalars(select(Channel).where(Channel.workspace_id == workspace_id).order_by(Channel.id)))


def channel_by_key(session: Session, key: str) -> Channel | None:
    return session.scalar(select(Channel).where(Channel.key == key, Channel.active.is_(True)))


def recipient_for(session: Session, channel: Channel, contact_id: int) -> str | None:
    """The contact's id on this channel (the newest identity the channel's adapter recognises)."""
    adapter = get_adapter(channel.type)
    identities = session.scalars(
        select(ContactIdentity)
        .where(
            ContactIdentity.workspace_id == channel.workspace_id,
            ContactIdentity.contact_id == contact_id,
            ContactIdentity.channel == channel.type,
        )
        .order_by(ContactIdentity.id.desc())
    )
    for identity in identities:
        if adapter.owns_identity(channel, identity.external_id):
            return identity.external_id
    return None
