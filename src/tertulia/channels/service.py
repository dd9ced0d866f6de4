"""Channels: create, configure, look up. Adapters validate their own config."""

from typing import Any

from sqlalchemy.orm import Session

from tertulia.channels import repository as repo
from tertulia.channels.models import Channel
from tertulia.channels.registry import get_adapter, registered_types
from tertulia.kit.errors import ValidationFailed, found
from tertulia.kit.security import new_token
from tertulia.kit.text import tidy_name
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
    label = tidy_name(name)
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
    return found(repo.channel_by_id(session, actor.workspace_id, channel_id), f"No channel {channel_id}.")


def recipient_for(session: Session, channel: Channel, contact_id: int) -> str | None:
    """The contact's id on this channel (the newest identity the channel's adapter recognises)."""
    adapter = get_adapter(channel.type)
    for external_id in repo.identities_on(session, channel, contact_id):
        if adapter.owns_identity(channel, external_id):
            return external_id
    return None


def list_channels(session: Session, workspace_id: int) -> list[Channel]:
    return repo.list_channels(session, workspace_id)
