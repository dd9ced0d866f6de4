"""Request bodies and the output shape of the channel endpoints."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from tertulia.channels.adapters import email as email_adapter
from tertulia.channels.email_watch import WatchState, watch_of
from tertulia.channels.health import health_of
from tertulia.channels.models import Channel
from tertulia.users.permissions import Actor, Permission


class ChannelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(max_length=32)
    # Empty: the provider's name for the account (a Telegram bot's @username).
    name: str = Field(default="", max_length=200)
    config: dict[str, Any] = Field(default_factory=dict)
    # Write-only (a bot token, an access token, an app secret): kept encrypted, never shown again;
    # the ones the adapter generates are in the creation's answer only.
    secrets: dict[str, str] = Field(default_factory=dict)


class ChannelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: dict[str, Any] = Field(default_factory=dict)
    # Replacements only: secrets are never read back; an empty value keeps the stored one.
    secrets: dict[str, str] = Field(default_factory=dict)


def channel_out(channel: Channel, actor: Actor, session: Session) -> dict[str, Any]:
    """A channel as the API shows it: the public key and which secrets are set (never their values:
    they are encrypted at rest and write-only) only to those who manage channels, and for an email
    channel, which process watches its mailbox (read-only)."""
    result: dict[str, Any] = {
        "id": channel.id,
        "type": channel.type,
        "name": channel.name,
        "active": channel.active,
        "config": channel.config or {},
    }
    if actor.can(Permission.MANAGE_CHANNELS):
        result["health"] = health_out(channel)
        result["provider_failures"] = provider_failures_out(channel)
        result["key"] = channel.key
        result["secrets"] = dict.fromkeys(sorted(channel.secrets or {}), "set")
        if channel.type == email_adapter.TYPE:
            result["watcher"] = watcher_out(watch_of(session, channel.id))
    return result


def watcher_out(state: WatchState) -> dict[str, Any]:
    """Who watches an email channel's mailbox (`process`: null when no live process holds it, and the
    minute sweep reads it), how, and how its looks at the server went."""
    return {
        "watched": state.watched,
        "process": (
            {"kind": state.kind, "host": state.host, "pid": state.pid, "heartbeat_at": _iso(state.heartbeat_at)}
            if state.watched
            else None
        ),
        "since": _iso(state.since),
        "mode": state.mode,
        "last_check_at": _iso(state.checked_at),
        "last_mail_at": _iso(state.mail_at),
        "last_error": state.error,
        "last_error_at": _iso(state.error_at),
    }


def health_out(channel: Channel) -> dict[str, Any]:
    health = health_of(channel)
    return {
        "state": health.state.value,
        "last_callback_at": _iso(health.last_callback_at),
        "last_sent_at": _iso(health.last_sent_at),
        "last_error": health.last_error,
        "last_error_at": _iso(health.last_error_at),
    }


def provider_failures_out(channel: Channel) -> dict[str, Any] | None:
    """The run of provider failures going on (read-only): the channel is still connected and goes
    into error if it lasts; null when there is none."""
    run = health_of(channel).provider_run
    return None if run is None else {"count": run.failures, "since": _iso(run.since)}


def channel_summary(channel: Channel) -> dict[str, Any]:
    """A channel as the API shows it to those who manage channels, without its config, key and
    secrets: what an outgoing webhook about the channel carries."""
    return {
        "id": channel.id,
        "type": channel.type,
        "name": channel.name,
        "active": channel.active,
        "health": health_out(channel),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
