"""Channels: create, connect, configure, disconnect, look up. Adapters validate their own config.

Connecting is one function for every way in (Settings > Channels, `tertulia channel connect`, the
API): `do_connect_channel` writes the channel and, for an adapter that talks to a provider
(`ProviderSetup`), has the provider check the credentials and register the callback URL while the
caller waits, so a refusal is shown beside the field at fault (`ProviderRefused`) and nothing is
written. Disconnecting stops the provider's callbacks and keeps the channel and its history.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Select, String, column, func, select, table
from sqlalchemy.orm import Session

from tertulia.channels import repository as repo
from tertulia.channels.adapters import email_oauth
from tertulia.channels.health import health_of, record_error, record_reconnected
from tertulia.channels.models import Channel
from tertulia.channels.protocol import ChannelError, ChatMenu, ConnectionCheck, ProviderSetup, SetupRefused
from tertulia.channels.registry import get_adapter, registered_types
from tertulia.channels.tasks import enqueue_template_sync, has_templates
from tertulia.kit.clock import utcnow
from tertulia.kit.db import on_commit
from tertulia.kit.errors import ValidationFailed, found
from tertulia.kit.models import UTCDateTime
from tertulia.kit.security import new_token, sign, signature_matches
from tertulia.kit.text import tidy_name
from tertulia.users.permissions import Actor, Permission
from tertulia.web import i18n


def do_create_channel(
    session: Session,
    actor: Actor,
    channel_type: str,
    name: str,
    config: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
) -> Channel:
    channel = _new_channel(actor, channel_type, name, config, secrets)
    session.add(channel)
    session.flush()
    return channel


def _new_channel(
    actor: Actor, channel_type: str, name: str, config: dict[str, Any] | None, secrets: dict[str, Any] | None
) -> Channel:
    """A checked channel, not yet written."""
    actor.require(Permission.MANAGE_CHANNELS)
    try:
        adapter = get_adapter(channel_type)
    except LookupError as exc:
        raise ValidationFailed.field("type", f"must be one of: {', '.join(registered_types())}") from exc
    label = tidy_name(name)
    if not label or len(label) > 120:
        raise ValidationFailed.field("name", "is required (at most 120 characters)")
    cleaned_config, cleaned_secrets = adapter.clean_config(config or {}, secrets or {})
    return Channel(
        workspace_id=actor.workspace_id,
        type=channel_type,
        name=label,
        key=new_token(nbytes=18),
        active=True,
        config=cleaned_config,
        secrets=cleaned_secrets,
    )


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


# ----- connecting to a provider ------------------------------------------------------------------


class ProviderRefused(ValidationFailed):
    """The provider refused (or could not be asked): `details` names the field at fault; `provider`,
    `reason` (the provider's own words) and `kind` ("token", "callback", "unreachable", "menu") let a
    page say it in the reader's language."""

    def __init__(self, provider: str, field: str, reason: str, kind: str) -> None:
        super().__init__(
            f"{field}: {provider} answered: {reason}", code="provider_refused", details={field: f"{provider}: {reason}"}
        )
        self.provider = provider
        self.field_name = field
        self.reason = reason
        self.kind = kind


# Each type's name for people (the two that are words, not brands, translated where they are shown).
PROVIDER_NAMES = {
    "email": i18n.lazy("Email"),
    "telegram": "Telegram",
    "webchat": i18n.lazy("Web chat"),
    "whatsapp": "WhatsApp",
    "messenger": "Messenger",
    "instagram": "Instagram",
    "twilio": "Twilio",
    "vonage": "Vonage",
    "bird": "Bird",
}


def provider_name(channel_type: str) -> str:
    return PROVIDER_NAMES.get(channel_type, channel_type)


def callback_url(base_url: str, channel: Channel) -> str:
    """Where the provider posts this channel's callbacks (conversations/ingress/callbacks.py)."""
    return f"{base_url.rstrip('/')}/webhooks/{channel.key}"


def secret_fields(channel_type: str) -> frozenset[str]:
    """The settings of this type that are secrets (kept encrypted, never shown again)."""
    try:
        adapter = get_adapter(channel_type)
    except LookupError:
        return frozenset()  # an unknown type: do_connect_channel says which types there are
    fields: frozenset[str] = getattr(adapter, "secret_fields", frozenset())
    return fields


def split_settings(channel_type: str, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`key=value` settings (the CLI's --set) as (config, secrets)."""
    secret = secret_fields(channel_type)
    return (
        {k: v for k, v in values.items() if k not in secret},
        {k: v for k, v in values.items() if k in secret},
    )


def do_connect_channel(
    session: Session,
    actor: Actor,
    channel_type: str,
    name: str,
    config: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    *,
    base_url: str,
) -> Channel:
    """Create a channel and connect it to its provider. An adapter that names the account (a bot's
    username) fills an empty `name` with it."""
    actor.require(Permission.MANAGE_CHANNELS)
    try:
        adapter = get_adapter(channel_type)
    except LookupError as exc:
        raise ValidationFailed.field("type", f"must be one of: {', '.join(registered_types())}") from exc
    label = " ".join(name.split())
    if not label and isinstance(adapter, ProviderSetup):
        label = provider_name(channel_type)
        named_by_provider = True
    else:
        named_by_provider = False
    channel = _new_channel(actor, channel_type, label, config, secrets)
    # The provider is asked before the channel is written: on SQLite a transaction's first write
    # takes the database's one write lock, and every other writer would wait on the provider's
    # answer (seconds, or its whole timeout when it does not answer).
    _ask_provider(channel, base_url)
    bot = (channel.config or {}).get("bot") or {}
    # The name the provider gave the account: a bot's @username, a Page's or profile's name.
    account = f"@{bot['username']}" if bot.get("username") else (channel.config or {}).get("account_name")
    if named_by_provider and account:
        channel.name = tidy_name(str(account))[:120] or channel.name
    session.add(channel)
    session.flush()
    _sync_templates_after_commit(session, channel)
    return channel


def _connect(session: Session, channel: Channel, base_url: str) -> None:
    was = health_of(channel).state
    _ask_provider(channel, base_url)
    record_reconnected(session, channel, was)
    session.flush()
    _sync_templates_after_commit(session, channel)


def _ask_provider(channel: Channel, base_url: str) -> None:
    """Connect the channel to its provider (for an adapter that talks to one): checks the account and
    registers the callback URL; the provider's answer goes into the channel's config."""
    adapter = get_adapter(channel.type)
    if not isinstance(adapter, ProviderSetup):
        return
    try:
        updates = adapter.connect(channel, callback_url(base_url, channel))
    except SetupRefused as exc:
        raise ProviderRefused(provider_name(channel.type), exc.field, exc.reason, exc.code or "token") from exc
    channel.config = {**(channel.config or {}), **updates}
    channel.active = True
    channel.last_error = None
    channel.last_error_at = None
    channel.last_error_from_status = False


def _sync_templates_after_commit(session: Session, channel: Channel) -> None:
    if has_templates(channel.type):
        # Once connected, the account's templates are read in the background (channels/tasks.py).
        channel_id = channel.id
        on_commit(session, lambda: enqueue_template_sync(channel_id))


def do_sync_templates(session: Session, actor: Actor, channel: Channel) -> None:
    """Read the channel's message templates from the provider again, in the background."""
    actor.require(Permission.MANAGE_CHANNELS)
    if not has_templates(channel.type):
        raise ValidationFailed.field("channel_id", f"{channel.type} channels have no message templates")
    if not channel.active:
        raise ValidationFailed.field("channel_id", "this channel is disconnected")
    channel_id = channel.id
    on_commit(session, lambda: enqueue_template_sync(channel_id))


def do_reconnect_channel(session: Session, actor: Actor, channel: Channel, *, base_url: str) -> Channel:
    """Connect again (after a new token, or a disconnect): the provider checks and registers anew."""
    actor.require(Permission.MANAGE_CHANNELS)
    _connect(session, channel, base_url)
    return channel


def do_disconnect_channel(session: Session, actor: Actor, channel: Channel) -> str | None:
    """Stop the channel: the provider stops calling back, nothing more is sent, the conversations and
    messages stay. Returns the provider's refusal, if it refused (the channel is disconnected here
    anyway, and callbacks that still arrive are answered 404)."""
    actor.require(Permission.MANAGE_CHANNELS)
    adapter = get_adapter(channel.type)
    problem: str | None = None
    if isinstance(adapter, ProviderSetup) and channel.active:
        try:
            adapter.disconnect(channel)
        except ChannelError as exc:
            problem = exc.reason
    channel.active = False
    session.flush()
    if problem is not None:
        # Recorded once the channel is inactive: a person disconnecting it is not the channel failing
        # (no channel.errored for its owners).
        record_error(session, channel.id, problem, utcnow())
    return problem


def do_save_chat_menu(session: Session, actor: Actor, channel: Channel, items: list[dict[str, Any]]) -> str:
    """Check the menu, push it to the provider and keep it; the provider's answer."""
    actor.require(Permission.MANAGE_CHANNELS)
    adapter = get_adapter(channel.type)
    if not isinstance(adapter, ChatMenu):
        raise ValidationFailed.field("menu", f"{channel.type} channels have no chat menu")
    cleaned = adapter.clean_menu(items)
    try:
        answer = adapter.push_menu(channel, cleaned)
    except ChannelError as exc:
        raise ProviderRefused(provider_name(channel.type), "menu", exc.reason, "menu") from exc
    channel.config = {**(channel.config or {}), "menu": cleaned}
    session.flush()
    return answer


# The inbox's messages table, by name: channels sit below conversations and may not import them.
_messages = table(
    "messages",
    column("channel_id", BigInteger()),
    column("direction", String()),
    column("created_at", UTCDateTime()),
)


def message_counts_query(channel_ids: list[int], since: datetime) -> Select[int, str, int]:
    return (
        select(_messages.c.channel_id, _messages.c.direction, func.count())
        .where(
            _messages.c.channel_id.in_(channel_ids),
            _messages.c.direction.in_(("incoming", "outgoing")),
            _messages.c.created_at >= since,
        )
        .group_by(_messages.c.channel_id, _messages.c.direction)
    )


def message_counts(session: Session, channel_ids: list[int], since: datetime) -> dict[int, dict[str, int]]:
    """Messages in and out per channel since `since`: {channel id: {"incoming": n, "outgoing": n}}.

    Each (channel, direction) is one range of the index on messages (channel_id, direction,
    created_at), read from the index alone, so a day's count costs what that day holds, not the
    channel's whole history."""
    if not channel_ids:
        return {}
    rows = session.execute(message_counts_query(channel_ids, since))
    counts: dict[int, dict[str, int]] = {i: {"incoming": 0, "outgoing": 0} for i in channel_ids}
    for channel_id, direction, count in rows:
        if direction in ("incoming", "outgoing"):
            counts[channel_id][str(direction)] = int(count)
    return counts


def last_received_query(channel_ids: list[int]) -> Select[int, datetime]:
    newest = (
        select(_messages.c.created_at)
        .where(_messages.c.channel_id == Channel.id, _messages.c.direction == "incoming")
        .order_by(_messages.c.created_at.desc())
        .limit(1)
        .correlate(Channel)
        .scalar_subquery()
    )
    return select(Channel.id, newest).where(Channel.id.in_(channel_ids))


def last_received(session: Session, channel_ids: list[int]) -> dict[int, datetime | None]:
    """When each channel last received a customer's message (Settings > Channels' "last message
    received"): not the last callback, which delivery reports and provider pings also touch.

    One probe per channel at the newest end of its incoming range in the index on messages
    (channel_id, direction, created_at), so it costs the same however long the history."""
    if not channel_ids:
        return {}
    return {int(channel_id): at for channel_id, at in session.execute(last_received_query(channel_ids))}


def check_connection(actor: Actor, channel: Channel) -> dict[str, Any]:
    """Ask the provider about the channel's account (Settings' "Test connection"); nothing is written.
    Raises `ChannelError` with the provider's reason, or `ValidationFailed` for a channel that has no
    provider to ask."""
    actor.require(Permission.MANAGE_CHANNELS)
    adapter = get_adapter(channel.type)
    if not isinstance(adapter, ConnectionCheck):
        raise ValidationFailed.field("type", f"{channel.type} channels have no provider account to check")
    return adapter.check_connection(channel)


# ----- mailboxes authorised through OAuth 2.0 (email channels with auth "oauth2") ---------------

OAUTH_STATE = "email-oauth-state"


def oauth_state(actor: Actor, channel: Channel) -> str:
    """The `state` of the authorisation request: which channel, bound to the person who asked."""
    message = f"{channel.id}:{actor.user_id}"
    return f"{channel.id}.{sign(OAUTH_STATE, message)}"


def mailbox_authorization_url(actor: Actor, channel: Channel, redirect_uri: str) -> str:
    actor.require(Permission.MANAGE_CHANNELS)
    if channel.type != "email" or (channel.config or {}).get("auth") != "oauth2":
        raise ValidationFailed.field("auth", "this mailbox does not use OAuth")
    return email_oauth.authorization_url(channel.config or {}, redirect_uri, oauth_state(actor, channel))


def channel_of_oauth_state(actor: Actor, state: str) -> int:
    channel_id, _, signature = state.partition(".")
    if not channel_id.isdigit() or not signature_matches(OAUTH_STATE, f"{channel_id}:{actor.user_id}", signature):
        raise ValidationFailed.field("state", "this authorisation was not asked for here; start again")
    return int(channel_id)


def do_authorise_mailbox(
    session: Session, actor: Actor, channel: Channel, code: str, redirect_uri: str, *, base_url: str
) -> Channel:
    """Trade the authorisation code for the refresh token we keep, then connect (log in to both
    servers with XOAUTH2). Raises `ProviderRefused` with the authorisation server's words."""
    actor.require(Permission.MANAGE_CHANNELS)
    try:
        answer = email_oauth.exchange_code(channel.config or {}, channel.secrets or {}, code, redirect_uri)
    except ChannelError as exc:
        raise ProviderRefused("OAuth", "__all__", exc.reason, "token") from exc
    refresh = answer.get("refresh_token")
    if not refresh:
        raise ProviderRefused("OAuth", "__all__", "no refresh token came back (offline access refused)", "token")
    channel.secrets = {**(channel.secrets or {}), "oauth_refresh_token": str(refresh)}
    session.flush()
    return do_reconnect_channel(session, actor, channel, base_url=base_url)
