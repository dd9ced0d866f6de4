"""Channel pages: the widget script that sites embed, and Settings > Channels: every channel with
its health, web chat widgets, Telegram bots (connect by token, replace the token, disconnect, connect
again), WhatsApp numbers (what to paste into Meta's dashboard, a connection test that reads the
number from the Graph API, and its message templates), Messenger Pages and Instagram accounts
(meta.html: the callback URL and verify token to paste into Meta's dashboard, new tokens, disconnect)
and each channel's chat menu (Telegram's commands, Messenger's persistent menu, Instagram's ice
breakers; pushed to the provider on save)."""

import re
from collections.abc import Callable
from datetime import datetime, time
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import RedirectResponse
from pydantic import BaseModel
from starlette.responses import Response

from tertulia.channels import email_watch, message_templates, service
from tertulia.channels.adapters import webchat
from tertulia.channels.health import health_of
from tertulia.channels.models import Channel
from tertulia.channels.protocol import PACE_SETTING, ChannelError, channel_pace
from tertulia.channels.registry import get_adapter
from tertulia.channels.service import ProviderRefused
from tertulia.kit.errors import DomainError, NotFound
from tertulia.kit.http import CheckedInputRoute, check_form_text
from tertulia.kit.security import new_token
from tertulia.kit.types import ID
from tertulia.users.permissions import Permission
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext
from tertulia.web.forms import FORM_ERRORS, field_errors, submit
from tertulia.web.sections import Section, render_section
from tertulia.workspaces.service import get_workspace

WIDGET_JS = Path(__file__).parent / "static" / "widget.js"
router = APIRouter(include_in_schema=False, route_class=CheckedInputRoute)

CHANNELS = Section("channels", i18n.lazy("Channels"), Permission.MANAGE_CHANNELS)


@cache
def _widget_source() -> bytes:
    return WIDGET_JS.read_bytes()


@router.get("/widget/{key}.js")
def widget_script(key: str) -> Response:  # noqa: ARG001 (the script reads its key from its own URL)
    # Short cache: sites cannot add a version to the URL they pasted, so a fix must reach them soon.
    return Response(
        _widget_source(),
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=300", "Cross-Origin-Resource-Policy": "cross-origin"},
    )


# ----- Settings > Channels ------------------------------------------------------------------------


class WidgetForm(BaseModel):
    """The web chat form's inputs (the name only counts when creating)."""

    name: str = ""
    allowed_origins: str = ""
    color: str = "#2563eb"
    greeting: str = ""
    position: str = "right"
    avatars: str = ""
    ask_name: bool = False
    ask_email: bool = False
    identity_verification: bool = False
    # Write-only: empty keeps the stored secret, a value replaces it; never put back into the page.
    identity_secret: str = ""


def _render(ctx: WebContext, template: str, context: dict[str, Any], *, status_code: int = 200) -> Response:
    return render_section(ctx, CHANNELS, f"channels/{template}", context, status_code=status_code)


def _base_url(ctx: WebContext) -> str:
    return str(ctx.request.app.state.settings.base_url).rstrip("/")


def _form_values(channel: Channel | None) -> dict[str, Any]:
    config = (channel.config if channel else None) or {}
    theme = config.get("theme") or {}
    return {
        "name": channel.name if channel else "",
        "allowed_origins": "\n".join(config.get("allowed_origins") or []),
        "color": theme.get("color", "#2563eb"),
        "greeting": theme.get("greeting", ""),
        "position": theme.get("position", "right"),
        "avatars": "\n".join(theme.get("avatars") or []),
        "ask_name": bool(config.get("ask_name")),
        "ask_email": bool(config.get("ask_email")),
        "identity_verification": bool(config.get("identity_verification")),
    }


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


def _config(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "allowed_origins": _lines(values["allowed_origins"]),
        "theme": {
            "color": values["color"],
            "greeting": values["greeting"],
            "position": values["position"],
            "avatars": _lines(values["avatars"]),
        },
        "ask_name": values["ask_name"],
        "ask_email": values["ask_email"],
        "identity_verification": values["identity_verification"],
    }


PROVIDER_SAYS = {
    "token": i18n.lazy("%(provider)s refused the token: %(reason)s"),
    "unreachable": i18n.lazy("%(provider)s could not be reached at this API address: %(reason)s"),
    "callback": i18n.lazy(
        "%(provider)s refused this server's callback address: %(reason)s. It needs a public HTTPS address "
        "(TERTULIA_BASE_URL)."
    ),
    "menu": i18n.lazy("%(provider)s refused the menu: %(reason)s"),
    "number": i18n.lazy("%(provider)s does not know this sender: %(reason)s"),
    "login": i18n.lazy("The mail server refused the login: %(reason)s"),
    "mailserver": i18n.lazy("The mail server answered: %(reason)s"),
}


LINE = i18n.lazy("Line %(number)s")


def _provider_error(ctx: WebContext, exc: ProviderRefused) -> str:
    template = PROVIDER_SAYS.get(exc.kind, PROVIDER_SAYS["token"])
    return ctx.fmt.gettext(template) % {"provider": exc.provider, "reason": exc.reason}


def _errors(ctx: WebContext, exc: DomainError) -> dict[str, str]:
    """Map the config's dotted field names onto the form's inputs; a provider's refusal is said in
    the reader's language around the provider's own words."""
    if isinstance(exc, ProviderRefused):
        field = {"callback_url": "__all__"}.get(exc.field_name, exc.field_name)
        return {field.removeprefix("config.").removeprefix("secrets."): _provider_error(ctx, exc)}
    errors = field_errors(ctx, exc)
    mapped: dict[str, str] = {}
    for key, message in errors.items():
        name = key.removeprefix("config.").removeprefix("secrets.").removeprefix("theme.")
        if name.startswith("allowed_origins"):
            name = "allowed_origins"
        mapped[name] = message
    return mapped


def _today_start(ctx: WebContext) -> datetime:
    """Midnight today in the workspace's time zone."""
    zone = i18n.safe_zone(get_workspace(ctx.session, ctx.actor.workspace_id).timezone)
    return datetime.combine(datetime.now(zone).date(), time(), tzinfo=zone)


def _overview(ctx: WebContext, channels: list[Channel]) -> list[dict[str, Any]]:
    ids = [c.id for c in channels]
    counts = service.message_counts(ctx.session, ids, _today_start(ctx))
    received = service.last_received(ctx.session, ids)
    return [
        {"channel": c, "health": health_of(c), "today": counts.get(c.id, {}), "last_received": received.get(c.id)}
        for c in channels
    ]


TELEGRAM_VALUES = {"name": "", "api_base_url": "https://api.telegram.org"}
WHATSAPP_VALUES = {
    "name": "",
    "phone_number_id": "",
    "business_account_id": "",
    "messages_per_second": "",
    "api_base_url": "https://graph.facebook.com",
}
MESSENGER_VALUES = {"name": "", "page_id": "", "api_base_url": "https://graph.facebook.com"}
INSTAGRAM_VALUES = {"name": "", "login": "instagram", "page_id": "", "api_base_url": ""}
# Meta's channels share one settings page (meta.html); the chat menu page serves every ChatMenu.
META_TYPES = ("messenger", "instagram")
MENU_TYPES = ("telegram", *META_TYPES)


def _list(
    ctx: WebContext,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int,
    *,
    telegram: dict[str, Any] | None = None,
    telegram_errors: dict[str, str] | None = None,
    whatsapp: dict[str, Any] | None = None,
    whatsapp_errors: dict[str, str] | None = None,
    messenger: dict[str, Any] | None = None,
    messenger_errors: dict[str, str] | None = None,
    instagram: dict[str, Any] | None = None,
    instagram_errors: dict[str, str] | None = None,
    sms: dict[str, dict[str, Any]] | None = None,
    sms_errors: dict[str, dict[str, str]] | None = None,
    email: dict[str, Any] | None = None,
    email_errors: dict[str, str] | None = None,
) -> Response:
    everything = service.list_channels(ctx.session, ctx.actor.workspace_id)
    context = {
        "overview": _overview(ctx, everything),
        "channels": [c for c in everything if c.type == "webchat"],
        "values": values,
        "errors": errors,
        "telegram": telegram or TELEGRAM_VALUES,
        "telegram_errors": telegram_errors or {},
        "whatsapp": whatsapp or WHATSAPP_VALUES,
        "whatsapp_errors": whatsapp_errors or {},
        "messenger": messenger or MESSENGER_VALUES,
        "messenger_errors": messenger_errors or {},
        "instagram": instagram or INSTAGRAM_VALUES,
        "instagram_errors": instagram_errors or {},
        "sms": {**SMS_VALUES, **(sms or {})},
        "sms_errors": sms_errors or {},
        "email": email or EMAIL_VALUES,
        "email_errors": email_errors or {},
    }
    return _render(ctx, "list.html", context, status_code=status)


def _connect(
    ctx: WebContext,
    channel_type: str,
    name: str,
    config: dict[str, Any],
    secrets: dict[str, Any],
    *,
    kept: dict[str, Any],
    done: Callable[[Channel], Response],
) -> Response:
    """Connect a channel from its form on the channels page: refused, the page again with what the
    manager typed (never the secrets) and each error beside its field in that form; connected, `done`."""
    # Before the form is handled: a refusal would show the channels list again, which only managers see.
    ctx.actor.require(Permission.MANAGE_CHANNELS)
    return submit(
        ctx,
        lambda: service.do_connect_channel(
            ctx.session, ctx.actor, channel_type, name, config, secrets, base_url=_base_url(ctx)
        ),
        again=lambda exc: _list(
            ctx, _form_values(None), {}, 422, **{channel_type: kept, f"{channel_type}_errors": _errors(ctx, exc)}
        ),
        done=done,
        catch=(DomainError,),
    )


def _to_channel_page(ctx: WebContext) -> Callable[[Channel], Response]:
    return lambda channel: ctx.redirect(f"/settings/channels/{channel.id}", flash="channel_connected")


def _verify_token_once(ctx: WebContext) -> Callable[[Channel], Response]:
    """The Meta channel's page with its generated verify token, shown this once."""
    return lambda channel: _meta_detail(
        ctx, channel, {}, 200, verify_token=str((channel.secrets or {}).get("verify_token"))
    )


@router.get("/settings/channels")
def channels_page(ctx: UserPage) -> Response:
    ctx.actor.require(Permission.MANAGE_CHANNELS)
    return _list(ctx, _form_values(None), {}, 200)


class TelegramForm(BaseModel):
    name: str = ""
    # Write-only: never put back into the page.
    bot_token: str = ""
    api_base_url: str = "https://api.telegram.org"


@router.post("/settings/channels/telegram")
def connect_telegram(ctx: UserPage, form: Annotated[TelegramForm, Form()]) -> Response:
    kept = {"name": form.name, "api_base_url": form.api_base_url}
    config = {"api_base_url": form.api_base_url}
    secrets = {"bot_token": form.bot_token}
    return _connect(ctx, "telegram", form.name, config, secrets, kept=kept, done=_to_channel_page(ctx))


EMAIL_FIELDS = (
    "address",
    "from_name",
    "incoming_protocol",
    "incoming_host",
    "incoming_port",
    "incoming_security",
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "username",
    "folder",
    "sent_folder",
    "poll_seconds",
    "auth",
    "oauth_client_id",
    "oauth_auth_url",
    "oauth_token_url",
)
EMAIL_VALUES: dict[str, Any] = {
    "name": "",
    "address": "",
    "from_name": "",
    "incoming_protocol": "imap",
    "incoming_host": "",
    "incoming_port": "",
    "incoming_security": "ssl",
    "smtp_host": "",
    "smtp_port": "",
    "smtp_security": "ssl",
    "username": "",
    "folder": "INBOX",
    "sent_folder": "Sent",
    "poll_seconds": "60",
    "auth": "password",
    "oauth_client_id": "",
    "oauth_auth_url": "",
    "oauth_token_url": "",
}
EMAIL_TEST_FAILED = i18n.lazy("The mail server answered: %(reason)s")


class EmailForm(BaseModel):
    name: str = ""
    address: str = ""
    from_name: str = ""
    incoming_protocol: str = "imap"
    incoming_host: str = ""
    incoming_port: str = ""
    incoming_security: str = "ssl"
    smtp_host: str = ""
    smtp_port: str = ""
    smtp_security: str = "ssl"
    username: str = ""
    folder: str = "INBOX"
    sent_folder: str = "Sent"
    poll_seconds: str = "60"
    auth: str = "password"
    oauth_client_id: str = ""
    oauth_auth_url: str = ""
    oauth_token_url: str = ""
    # Write-only: never put back into the page.
    password: str = ""
    oauth_client_secret: str = ""


@router.post("/settings/channels/email")
def connect_email(ctx: UserPage, form: Annotated[EmailForm, Form()]) -> Response:
    """Connect a mailbox: both servers are asked (log in, read the greeting) before it is saved."""
    values = form.model_dump()
    config = {name: values[name] for name in EMAIL_FIELDS}
    kept = {"name": form.name, **config}
    name = form.name or form.address
    secrets = {"password": form.password, "oauth_client_secret": form.oauth_client_secret}
    if form.auth != "oauth2":
        config = {k: v for k, v in config.items() if not k.startswith("oauth_")}
    return _connect(ctx, "email", name, config, secrets, kept=kept, done=_to_channel_page(ctx))


class WhatsAppForm(BaseModel):
    name: str = ""
    phone_number_id: str = ""
    business_account_id: str = ""
    # Write-only: never put back into the page.
    access_token: str = ""
    app_secret: str = ""
    messages_per_second: str = ""
    api_base_url: str = "https://graph.facebook.com"


@router.post("/settings/channels/whatsapp")
def connect_whatsapp(ctx: UserPage, form: Annotated[WhatsAppForm, Form()]) -> Response:
    """Connect a number; the answer is its page with the callback URL and verify token to paste into
    Meta's dashboard, and the test that reads the number from the Graph API."""
    kept = {
        "name": form.name,
        "phone_number_id": form.phone_number_id,
        "business_account_id": form.business_account_id,
        "messages_per_second": form.messages_per_second,
        "api_base_url": form.api_base_url,
    }
    config: dict[str, Any] = {
        "phone_number_id": form.phone_number_id,
        "business_account_id": form.business_account_id,
        "api_base_url": form.api_base_url,
        PACE_SETTING: form.messages_per_second or None,
    }
    secrets = {"access_token": form.access_token, "app_secret": form.app_secret}
    name = form.name.strip() or "WhatsApp"
    return _connect(ctx, "whatsapp", name, config, secrets, kept=kept, done=_to_channel_page(ctx))


class MessengerForm(BaseModel):
    name: str = ""
    page_id: str = ""
    # Write-only: never put back into the page.
    page_access_token: str = ""
    app_secret: str = ""
    api_base_url: str = "https://graph.facebook.com"


@router.post("/settings/channels/messenger")
def connect_messenger(ctx: UserPage, form: Annotated[MessengerForm, Form()]) -> Response:
    """Connect a Page; the answer is its page with the verify token to paste into Meta's dashboard,
    shown this once."""
    kept = {"name": form.name, "page_id": form.page_id, "api_base_url": form.api_base_url}
    config = {"page_id": form.page_id, "api_base_url": form.api_base_url}
    secrets = {"page_access_token": form.page_access_token, "app_secret": form.app_secret}
    return _connect(ctx, "messenger", form.name, config, secrets, kept=kept, done=_verify_token_once(ctx))


class InstagramForm(BaseModel):
    name: str = ""
    login: str = "instagram"
    page_id: str = ""
    # Write-only: never put back into the page.
    access_token: str = ""
    page_access_token: str = ""
    app_secret: str = ""
    api_base_url: str = ""


@router.post("/settings/channels/instagram")
def connect_instagram(ctx: UserPage, form: Annotated[InstagramForm, Form()]) -> Response:
    """Connect a professional account; the answer is its page with the verify token, shown this once."""
    kept = {"name": form.name, "login": form.login, "page_id": form.page_id, "api_base_url": form.api_base_url}
    config = {"login": form.login, "api_base_url": form.api_base_url}
    if form.login == "facebook":
        config["page_id"] = form.page_id
        secrets = {"page_access_token": form.page_access_token, "app_secret": form.app_secret}
    else:
        secrets = {"access_token": form.access_token, "app_secret": form.app_secret}
    return _connect(ctx, "instagram", form.name, config, secrets, kept=kept, done=_verify_token_once(ctx))


def _meta_detail(
    ctx: WebContext, channel: Channel, errors: dict[str, str], status: int, *, verify_token: str | None = None
) -> Response:
    """`verify_token` is one generated by this request: shown in this response only."""
    [row] = _overview(ctx, [channel])
    config = channel.config or {}
    context = {
        **row,
        "account_name": config.get("account_name") or config.get("page_name") or config.get("username"),
        "api_base_url": config.get("api_base_url", ""),
        "callback_url": service.callback_url(_base_url(ctx), channel),
        "verify_token": verify_token,
        "errors": errors,
    }
    response = _render(ctx, "meta.html", context, status_code=status)
    if verify_token:
        response.headers["Cache-Control"] = "no-store"
    return response


class MetaTokensForm(BaseModel):
    # Write-only: empty keeps the stored value.
    page_access_token: str = ""
    access_token: str = ""
    app_secret: str = ""


@router.post("/settings/channels/{channel_id}/meta")
def update_meta(ctx: UserPage, channel_id: int, form: Annotated[MetaTokensForm, Form()]) -> Response:
    """New tokens: kept, then the channel is connected again with them."""
    channel = _access(ctx, channel_id, None)
    if channel.type not in META_TYPES:
        raise NotFound("Channel not found.")
    replacements = {
        name: value for name, value in form.model_dump().items() if name in (channel.secrets or {}) and value.strip()
    }

    def save() -> Channel:
        service.do_replace_channel_secrets(ctx.session, ctx.actor, channel, replacements)
        return service.do_reconnect_channel(ctx.session, ctx.actor, channel, base_url=_base_url(ctx))

    return submit(
        ctx,
        save,
        again=lambda exc: _meta_detail(ctx, channel, _errors(ctx, exc), 422),
        redirect=f"/settings/channels/{channel_id}",
        flash="channel_connected",
        catch=(DomainError,),
    )


@router.post("/settings/channels/{channel_id}/verify-token")
def new_verify_token(ctx: UserPage, channel_id: int) -> Response:
    channel = _access(ctx, channel_id, None)
    if channel.type not in META_TYPES:
        raise NotFound("Channel not found.")
    token = new_token(nbytes=24)
    service.do_replace_channel_secrets(ctx.session, ctx.actor, channel, {"verify_token": token})
    return _meta_detail(ctx, channel, {}, 200, verify_token=token)


@router.post("/settings/channels")
def create_channel(ctx: UserPage, form: Annotated[WidgetForm, Form()]) -> Response:
    # Before anything else: the form's error page shows the channel list, which is for managers only.
    ctx.actor.require(Permission.MANAGE_CHANNELS)
    values = form.model_dump()
    return submit(
        ctx,
        lambda: service.do_create_channel(ctx.session, ctx.actor, "webchat", form.name, _config(values)),
        again=lambda exc: _list(ctx, values, _errors(ctx, exc), 422),
        done=lambda channel: ctx.redirect(f"/settings/channels/{channel.id}", flash="settings_saved"),
        catch=FORM_ERRORS,
    )


def _access(ctx: WebContext, channel_id: int, channel_type: str | None = "webchat") -> Channel:
    """The channel, for its settings pages; of `channel_type` when given (a page of one kind)."""
    ctx.actor.require(Permission.MANAGE_CHANNELS)
    channel = service.access_channel(ctx.session, ctx.actor, channel_id)
    if channel_type is not None and channel.type != channel_type:
        raise NotFound("Channel not found.")
    return channel


def _detail(
    ctx: WebContext,
    channel: Channel,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int,
    *,
    new_secret: str | None = None,
) -> Response:
    """`new_secret` is a secret generated by this request: shown in this response only."""
    response = _render(
        ctx,
        "detail.html",
        {
            "channel": channel,
            "values": values,
            "errors": errors,
            "snippet": webchat.snippet(_base_url(ctx), channel.key),
            "identity_secret_set": bool((channel.secrets or {}).get("identity_secret")),
            "new_secret": new_secret,
        },
        status_code=status,
    )
    if new_secret:
        response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/settings/channels/{channel_id}")
def channel_page(ctx: UserPage, channel_id: ID) -> Response:
    channel = _access(ctx, channel_id, None)
    if channel.type == "telegram":
        return _telegram_detail(ctx, channel, {}, 200)
    if channel.type == "whatsapp":
        return _whatsapp_detail(ctx, channel, 200)
    if channel.type in META_TYPES:
        return _meta_detail(ctx, channel, {}, 200)
    if channel.type in SMS_FORMS:
        return _sms_detail(ctx, channel, {}, 200)
    if channel.type == "email":
        return _email_detail(ctx, channel, {}, 200)
    if channel.type != "webchat":
        raise NotFound("Channel not found.")
    return _detail(ctx, channel, _form_values(channel), {}, 200)


def _telegram_detail(ctx: WebContext, channel: Channel, errors: dict[str, str], status: int) -> Response:
    [row] = _overview(ctx, [channel])
    context = {
        **row,
        "bot": (channel.config or {}).get("bot") or {},
        "api_base_url": (channel.config or {}).get("api_base_url", ""),
        "callback_url": service.callback_url(_base_url(ctx), channel),
        "errors": errors,
    }
    return _render(ctx, "telegram.html", context, status_code=status)


# Meta's quality ratings and messaging limit tiers, as a manager reads them.
QUALITY = {
    "GREEN": i18n.lazy("High (green)"),
    "YELLOW": i18n.lazy("Medium (yellow)"),
    "RED": i18n.lazy("Low (red)"),
    "UNKNOWN": i18n.lazy("Not rated yet"),
}
LIMIT_TIERS = {
    "TIER_50": 50,
    "TIER_250": 250,
    "TIER_1K": 1_000,
    "TIER_2K": 2_000,
    "TIER_10K": 10_000,
    "TIER_100K": 100_000,
}
LIMIT = i18n.lazy("%(count)s customers outside the service window in 24 hours")
UNLIMITED = i18n.lazy("Unlimited")
TEST_FAILED = i18n.lazy("WhatsApp answered: %(reason)s")


def _number_facts(ctx: WebContext, number: dict[str, Any]) -> dict[str, str]:
    """The number's fields as the page shows them: Meta's codes in the reader's words, with the code."""
    quality = str(number.get("quality_rating") or "")
    tier = str(number.get("messaging_limit_tier") or "")
    if tier in LIMIT_TIERS:
        limit = ctx.fmt.gettext(LIMIT) % {"count": ctx.fmt.number(LIMIT_TIERS[tier])}
    else:
        limit = ctx.fmt.gettext(UNLIMITED) if tier == "TIER_UNLIMITED" else tier
    return {
        "verified_name": str(number.get("verified_name") or "—"),
        "display_phone_number": str(number.get("display_phone_number") or "—"),
        "quality_rating": f"{ctx.fmt.gettext(QUALITY[quality])} · {quality}" if quality in QUALITY else quality or "—",
        "messaging_limit": f"{limit} · {tier}" if tier and limit != tier else limit or "—",
    }


def _whatsapp_detail(
    ctx: WebContext,
    channel: Channel,
    status: int,
    *,
    number: dict[str, Any] | None = None,
    test_error: str | None = None,
) -> Response:
    [row] = _overview(ctx, [channel])
    config = channel.config or {}
    context = {
        **row,
        "config": config,
        "pace": channel_pace(get_adapter(channel.type).rules, channel),
        "callback_url": service.callback_url(_base_url(ctx), channel),
        # Meta asks for it once, when the callback URL is set up: shown here (managers only) to paste.
        "verify_token": (channel.secrets or {}).get("verify_token", ""),
        "number": _number_facts(ctx, number) if number is not None else None,
        "test_error": test_error,
    }
    response = _render(ctx, "whatsapp.html", context, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/settings/channels/{channel_id}/whatsapp/test")
def test_whatsapp(ctx: UserPage, channel_id: ID) -> Response:
    """Read the number from the Graph API: its name, quality rating and messaging limit, or Meta's error."""
    channel = _access(ctx, channel_id, "whatsapp")
    try:
        number = service.check_connection(ctx.actor, channel)
    except ChannelError as exc:
        return _whatsapp_detail(ctx, channel, 422, test_error=ctx.fmt.gettext(TEST_FAILED) % {"reason": exc.reason})
    return _whatsapp_detail(ctx, channel, 200, number=number)


class TokenForm(BaseModel):
    bot_token: str = ""
    api_base_url: str = ""


@router.post("/settings/channels/{channel_id}/telegram")
def update_telegram(ctx: UserPage, channel_id: int, form: Annotated[TokenForm, Form()]) -> Response:
    """A new token or API address: kept, then the bot is connected again with it."""
    channel = _access(ctx, channel_id, "telegram")

    def save() -> Channel:
        if form.api_base_url.strip():
            service.do_update_channel_config(ctx.session, ctx.actor, channel, {"api_base_url": form.api_base_url})
        service.do_replace_channel_secrets(ctx.session, ctx.actor, channel, {"bot_token": form.bot_token})
        return service.do_reconnect_channel(ctx.session, ctx.actor, channel, base_url=_base_url(ctx))

    return submit(
        ctx,
        save,
        again=lambda exc: _telegram_detail(ctx, channel, _errors(ctx, exc), 422),
        redirect=f"/settings/channels/{channel_id}",
        flash="channel_connected",
        catch=(DomainError,),
    )


@router.post("/settings/channels/{channel_id}/connect")
def reconnect_channel(ctx: UserPage, channel_id: int) -> Response:
    channel = _access(ctx, channel_id, None)
    return submit(
        ctx,
        lambda: service.do_reconnect_channel(ctx.session, ctx.actor, channel, base_url=_base_url(ctx)),
        again=lambda exc: (
            _meta_detail(ctx, channel, _errors(ctx, exc), 422)
            if channel.type in META_TYPES
            else _sms_detail(ctx, channel, _errors(ctx, exc), 422)
            if channel.type in SMS_FORMS
            else _email_detail(ctx, channel, _errors(ctx, exc), 422)
            if channel.type == "email"
            else _telegram_detail(ctx, channel, _errors(ctx, exc), 422)
        ),
        redirect=f"/settings/channels/{channel_id}",
        flash="channel_connected",
        catch=(DomainError,),
    )


@router.post("/settings/channels/{channel_id}/disconnect")
def disconnect_channel(ctx: UserPage, channel_id: int) -> Response:
    channel = _access(ctx, channel_id, None)
    service.do_disconnect_channel(ctx.session, ctx.actor, channel)
    return ctx.redirect(f"/settings/channels/{channel_id}", flash="channel_disconnected")


# ----- WhatsApp message templates ---------------------------------------------------------------

TEMPLATE_STATUSES = {
    "APPROVED": i18n.lazy("Approved"),
    "PENDING": i18n.lazy("In review"),
    "REJECTED": i18n.lazy("Rejected"),
    "PAUSED": i18n.lazy("Paused"),
    "DISABLED": i18n.lazy("Disabled"),
    "IN_APPEAL": i18n.lazy("In appeal"),
    "FLAGGED": i18n.lazy("Flagged"),
    "PENDING_DELETION": i18n.lazy("Being deleted"),
    "DELETED": i18n.lazy("Deleted"),
    "ARCHIVED": i18n.lazy("Archived"),
    "LIMIT_EXCEEDED": i18n.lazy("Over the template limit"),
    "LOCKED": i18n.lazy("Locked"),
    "REINSTATED": i18n.lazy("Reinstated"),
}
TEMPLATE_CATEGORIES = {
    "MARKETING": i18n.lazy("Marketing"),
    "UTILITY": i18n.lazy("Utility"),
    "AUTHENTICATION": i18n.lazy("Authentication"),
}
TEMPLATE_QUALITY = {
    "GREEN": i18n.lazy("High quality"),
    "YELLOW": i18n.lazy("Medium quality"),
    "RED": i18n.lazy("Low quality"),
    "UNKNOWN": i18n.lazy("Quality pending"),
}
NUMBER_EVENTS = {
    "FLAGGED": i18n.lazy("Flagged: quality is low, the messaging limit may go down"),
    "UNFLAGGED": i18n.lazy("No longer flagged"),
    "DOWNGRADE": i18n.lazy("Messaging limit lowered"),
    "UPGRADE": i18n.lazy("Messaging limit raised"),
    "ONBOARDING": i18n.lazy("Still being registered"),
    "THROUGHPUT_UPGRADE": i18n.lazy("Higher throughput"),
}
MESSAGING_LIMITS = {
    "TIER_UNLIMITED": i18n.lazy("Unlimited"),
    "TIER_NOT_SET": i18n.lazy("Not set yet"),
}
# Tiers that are a number of customers: TIER_250, TIER_2K, TIER_100K...
_TIER = re.compile(r"^TIER_([0-9]+)(K?)$")


def _messaging_limit(ctx: WebContext, tier: str) -> str:
    number = _TIER.match(tier)
    if number is None:
        return _label(ctx, MESSAGING_LIMITS, tier)
    return ctx.fmt.number(int(number.group(1)) * (1000 if number.group(2) else 1))


def _label(ctx: WebContext, labels: dict[str, str], value: str | None) -> str:
    """A provider's code in the reader's language; a code we do not know yet is shown as it is."""
    if not value:
        return "—"
    label = labels.get(value)
    return value if label is None else ctx.fmt.gettext(label)


SYNC_REFUSED = i18n.lazy("The channel is disconnected: connect it again to read its templates.")


def _templates_page(ctx: WebContext, channel: Channel, error: str | None = None, status: int = 200) -> Response:
    templates = message_templates.templates_of(ctx.session, channel)
    rows = [
        {
            **message_templates.as_dict(t),
            "status_label": _label(ctx, TEMPLATE_STATUSES, t.status),
            "category_label": _label(ctx, TEMPLATE_CATEGORIES, t.category),
            "quality_label": _label(ctx, TEMPLATE_QUALITY, t.quality) if t.quality else None,
            "previous_category_label": _label(ctx, TEMPLATE_CATEGORIES, t.previous_category)
            if t.previous_category
            else None,
        }
        for t in templates
    ]
    context = {
        "channel": channel,
        "templates": rows,
        "number_event": _label(ctx, NUMBER_EVENTS, channel.quality_event) if channel.quality_event else None,
        "messaging_limit": _messaging_limit(ctx, channel.messaging_limit) if channel.messaging_limit else None,
        "error": error,
    }
    return _render(ctx, "whatsapp_templates.html", context, status_code=status)


@router.get("/settings/channels/{channel_id}/templates")
def templates_page(ctx: UserPage, channel_id: ID) -> Response:
    return _templates_page(ctx, _access(ctx, channel_id, "whatsapp"))


@router.post("/settings/channels/{channel_id}/templates/sync")
def sync_templates(ctx: UserPage, channel_id: ID) -> Response:
    channel = _access(ctx, channel_id, "whatsapp")
    return submit(
        ctx,
        lambda: service.do_sync_templates(ctx.session, ctx.actor, channel),
        again=lambda _exc: _templates_page(ctx, channel, ctx.fmt.gettext(SYNC_REFUSED), 422),
        redirect=f"/settings/channels/{channel_id}/templates",
        flash="templates_sync_queued",
        catch=(DomainError,),
    )


def _menu_lines(channel: Channel) -> str:
    items = (channel.config or {}).get("menu") or []
    if channel.type == "telegram":
        return "\n".join(f"/{item['command']} {item['description']}" for item in items)
    return "\n".join(
        f"{item.get('title') or item.get('question')} | {item.get('url') or item.get('payload')}" for item in items
    )


def _menu_items(channel: Channel, text: str) -> list[dict[str, str]]:
    """The menu's lines as items: Telegram's `/command description`; Meta's `Title | payload or URL`
    (Instagram's ice breakers: `Question | payload`)."""
    items = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if channel.type == "telegram":
            command, _, description = line.strip().partition(" ")
            items.append({"command": command, "description": description})
            continue
        title, _, target = (part.strip() for part in line.partition("|"))
        label = "question" if channel.type == "instagram" else "title"
        if target.startswith(("https://", "http://")):
            items.append({label: title, "url": target})
        else:
            items.append({label: title, "payload": target})
    return items


def _menu_page(
    ctx: WebContext, channel: Channel, text: str, errors: dict[str, str], status: int, answer: str | None = None
) -> Response:
    context = {"channel": channel, "menu": text, "errors": errors, "answer": answer}
    return _render(ctx, "menu.html", context, status_code=status)


class MenuForm(BaseModel):
    menu: str = ""


@router.get("/settings/channels/{channel_id}/menu")
def menu_page(ctx: UserPage, channel_id: int) -> Response:
    channel = _menu_channel(ctx, channel_id)
    return _menu_page(ctx, channel, _menu_lines(channel), {}, 200)


def _menu_channel(ctx: WebContext, channel_id: int) -> Channel:
    channel = _access(ctx, channel_id, None)
    if channel.type not in MENU_TYPES:
        raise NotFound("Channel not found.")
    return channel


@router.post("/settings/channels/{channel_id}/menu")
def save_menu(ctx: UserPage, channel_id: int, form: Annotated[MenuForm, Form()]) -> Response:
    channel = _menu_channel(ctx, channel_id)

    def again(exc: DomainError) -> Response:
        errors = _errors(ctx, exc)
        # Every line's problem is shown beside the one field, naming its line.
        message = "; ".join(
            f"{ctx.fmt.gettext(LINE) % {'number': int(key.split('[')[1].split(']')[0]) + 1}}: {value}"
            if key.startswith("menu[")
            else value
            for key, value in errors.items()
        )
        return _menu_page(ctx, channel, form.menu, {"menu": message}, 422)

    return submit(
        ctx,
        lambda: service.do_save_chat_menu(ctx.session, ctx.actor, channel, _menu_items(channel, form.menu)),
        again=again,
        done=lambda answer: _menu_page(ctx, channel, _menu_lines(channel), {}, 200, answer),
        catch=(DomainError,),
    )


@router.post("/settings/channels/{channel_id}")
def update_channel(ctx: UserPage, channel_id: ID, form: Annotated[WidgetForm, Form()]) -> Response:
    channel = _access(ctx, channel_id)
    values = {**form.model_dump(exclude={"identity_secret"}), "name": channel.name}

    def save() -> Channel:
        service.do_update_channel_config(ctx.session, ctx.actor, channel, _config(values))
        return service.do_replace_channel_secrets(
            ctx.session, ctx.actor, channel, {"identity_secret": form.identity_secret}
        )

    return submit(
        ctx,
        save,
        again=lambda exc: _detail(ctx, channel, values, _errors(ctx, exc), 422),
        redirect=f"/settings/channels/{channel_id}",
        flash="settings_saved",
        catch=FORM_ERRORS,
    )


@router.post("/settings/channels/{channel_id}/identity-secret")
def new_identity_secret(ctx: UserPage, channel_id: ID) -> Response:
    channel = _access(ctx, channel_id)
    secret = new_token(nbytes=32)
    service.do_replace_channel_secrets(ctx.session, ctx.actor, channel, {"identity_secret": secret})
    return _detail(ctx, channel, _form_values(channel), {}, 200, new_secret=secret)


# ----- SMS providers ----------------------------------------------------------------------------

# Each SMS provider's connect form: the fields that go to the channel's config, and the secrets
# (write-only: never put back into the page).
SMS_FORMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "twilio": (
        (
            "account_sid",
            "from_number",
            "messaging_service_sid",
            "api_key_sid",
            "webhook_key_sid",
            "help_reply",
            "api_base_url",
        ),
        ("auth_token", "api_key_secret", "webhook_key_secret"),
    ),
    "vonage": (
        ("api", "api_key", "from_number", "signature_method", "signature_max_age", "help_reply", "api_base_url"),
        ("api_secret", "signature_secret"),
    ),
    "bird": (
        ("api", "workspace_id", "channel_id", "from_number", "help_reply", "api_base_url"),
        ("access_key", "signing_key"),
    ),
}
SMS_VALUES: dict[str, dict[str, Any]] = {
    "twilio": {
        "name": "",
        "account_sid": "",
        "from_number": "",
        "messaging_service_sid": "",
        "api_key_sid": "",
        "webhook_key_sid": "",
        "help_reply": "",
        "api_base_url": "https://api.twilio.com",
    },
    "vonage": {
        "name": "",
        "api": "sms",
        "api_key": "",
        "from_number": "",
        "signature_method": "md5",
        "signature_max_age": "",
        "help_reply": "",
        "api_base_url": "",
    },
    "bird": {
        "name": "",
        "api": "channels",
        "workspace_id": "",
        "channel_id": "",
        "from_number": "",
        "help_reply": "",
        "api_base_url": "",
    },
}
SMS_TEST_FAILED = i18n.lazy("%(provider)s answered: %(reason)s")
SMS_SECRET_LABELS = {
    "auth_token": i18n.lazy("Auth token"),
    "api_key_secret": i18n.lazy("API key secret"),
    "api_secret": i18n.lazy("API secret"),
    "signature_secret": i18n.lazy("Signature secret"),
    "access_key": i18n.lazy("Access key"),
    "signing_key": i18n.lazy("Signing key"),
    "webhook_key_secret": i18n.lazy("Webhook signing key secret"),
}


class SmsForm(BaseModel):
    """Every SMS provider's connect fields; each provider reads its own (SMS_FORMS)."""

    name: str = ""
    account_sid: str = ""
    auth_token: str = ""
    api_key_sid: str = ""
    api_key_secret: str = ""
    from_number: str = ""
    messaging_service_sid: str = ""
    help_reply: str = ""
    api_base_url: str = ""
    api: str = ""
    api_key: str = ""
    api_secret: str = ""
    signature_secret: str = ""
    signature_method: str = ""
    signature_max_age: str = ""
    webhook_key_sid: str = ""
    webhook_key_secret: str = ""
    workspace_id: str = ""
    channel_id: str = ""
    access_key: str = ""
    signing_key: str = ""


@router.post("/settings/channels/sms/{provider}")
def connect_sms(ctx: UserPage, provider: str, form: Annotated[SmsForm, Form()]) -> Response:
    """Connect an SMS sender; the answer is its page with the callback URL (and what to paste where)."""
    ctx.actor.require(Permission.MANAGE_CHANNELS)
    if provider not in SMS_FORMS:
        raise NotFound("No such SMS provider.")
    config_fields, secret_fields = SMS_FORMS[provider]
    values = form.model_dump()
    config = {name: values[name] for name in config_fields}
    secrets = {name: values[name] for name in secret_fields}
    kept = {provider: {"name": form.name, **config}}
    return submit(
        ctx,
        lambda: service.do_connect_channel(
            ctx.session, ctx.actor, provider, form.name, config, secrets, base_url=_base_url(ctx)
        ),
        again=lambda exc: _list(ctx, _form_values(None), {}, 422, sms=kept, sms_errors={provider: _errors(ctx, exc)}),
        done=lambda channel: ctx.redirect(f"/settings/channels/{channel.id}", flash="channel_connected"),
        catch=(DomainError,),
    )


def _sms_detail(
    ctx: WebContext,
    channel: Channel,
    errors: dict[str, str],
    status: int,
    *,
    account: dict[str, Any] | None = None,
    test_error: str | None = None,
) -> Response:
    [row] = _overview(ctx, [channel])
    context = {
        **row,
        "config": channel.config or {},
        "provider": service.provider_name(channel.type),
        "callback_url": service.callback_url(_base_url(ctx), channel),
        "errors": errors,
        "account": account,
        "test_error": test_error,
        "secret_labels": {name: ctx.fmt.gettext(label) for name, label in SMS_SECRET_LABELS.items()},
    }
    return _render(ctx, "sms.html", context, status_code=status)


@router.post("/settings/channels/{channel_id}/sms/test")
def test_sms(ctx: UserPage, channel_id: ID) -> Response:
    """Ask the provider about the account and the sender, or show its error."""
    channel = _access(ctx, channel_id, None)
    if channel.type not in SMS_FORMS:
        raise NotFound("Channel not found.")
    try:
        account = service.check_connection(ctx.actor, channel)
    except ChannelError as exc:
        reason = ctx.fmt.gettext(SMS_TEST_FAILED) % {
            "provider": service.provider_name(channel.type),
            "reason": exc.reason,
        }
        return _sms_detail(ctx, channel, {}, 422, test_error=reason)
    return _sms_detail(ctx, channel, {}, 200, account=account)


class SmsSecretsForm(BaseModel):
    # Write-only: empty keeps the stored value.
    auth_token: str = ""
    api_key_secret: str = ""
    api_secret: str = ""
    signature_secret: str = ""
    access_key: str = ""
    signing_key: str = ""


@router.post("/settings/channels/{channel_id}/sms")
def update_sms(ctx: UserPage, channel_id: int, form: Annotated[SmsSecretsForm, Form()]) -> Response:
    """New credentials: kept, then the channel is connected again with them."""
    channel = _access(ctx, channel_id, None)
    if channel.type not in SMS_FORMS:
        raise NotFound("Channel not found.")
    replacements = {
        name: value for name, value in form.model_dump().items() if name in (channel.secrets or {}) and value.strip()
    }

    def save() -> Channel:
        service.do_replace_channel_secrets(ctx.session, ctx.actor, channel, replacements)
        return service.do_reconnect_channel(ctx.session, ctx.actor, channel, base_url=_base_url(ctx))

    return submit(
        ctx,
        save,
        again=lambda exc: _sms_detail(ctx, channel, _errors(ctx, exc), 422),
        redirect=f"/settings/channels/{channel_id}",
        flash="channel_connected",
        catch=(DomainError,),
    )


# ----- email ------------------------------------------------------------------------------------


def _email_detail(
    ctx: WebContext,
    channel: Channel,
    errors: dict[str, str],
    status: int,
    *,
    report: dict[str, Any] | None = None,
    test_error: str | None = None,
    oauth_code: dict[str, str] | None = None,
) -> Response:
    [row] = _overview(ctx, [channel])
    context = {
        **row,
        "oauth_code": oauth_code,
        "authorised": bool((channel.secrets or {}).get("oauth_refresh_token")),
        "config": channel.config or {},
        "callback_url": service.callback_url(_base_url(ctx), channel),
        "errors": errors,
        "report": report,
        "test_error": test_error,
        "watch": email_watch.watch_of(ctx.session, channel.id),
    }
    return _render(ctx, "email.html", context, status_code=status)


@router.post("/settings/channels/{channel_id}/email/test")
def test_email(ctx: UserPage, channel_id: ID) -> Response:
    """Log in to the incoming server and to SMTP and show what each answered, or the error."""
    channel = _access(ctx, channel_id, "email")
    try:
        report = service.check_connection(ctx.actor, channel)
    except ChannelError as exc:
        return _email_detail(
            ctx, channel, {}, 422, test_error=ctx.fmt.gettext(EMAIL_TEST_FAILED) % {"reason": exc.reason}
        )
    return _email_detail(ctx, channel, {}, 200, report=report)


class EmailSecretsForm(BaseModel):
    # Write-only: empty keeps the stored value.
    password: str = ""


@router.post("/settings/channels/{channel_id}/email")
def update_email(ctx: UserPage, channel_id: int, form: Annotated[EmailSecretsForm, Form()]) -> Response:
    """A new password (or app password): kept, then both servers are asked again."""
    channel = _access(ctx, channel_id, "email")
    replacements = (
        {"password": form.password} if form.password.strip() and "password" in (channel.secrets or {}) else {}
    )

    def save() -> Channel:
        service.do_replace_channel_secrets(ctx.session, ctx.actor, channel, replacements)
        return service.do_reconnect_channel(ctx.session, ctx.actor, channel, base_url=_base_url(ctx))

    return submit(
        ctx,
        save,
        again=lambda exc: _email_detail(ctx, channel, _errors(ctx, exc), 422),
        redirect=f"/settings/channels/{channel_id}",
        flash="channel_connected",
        catch=(DomainError,),
    )


def _oauth_redirect(ctx: WebContext) -> str:
    return f"{_base_url(ctx)}/settings/channels/email/oauth"


@router.post("/settings/channels/{channel_id}/email/authorise")
def authorise_email(ctx: UserPage, channel_id: ID) -> Response:
    """To the mail provider's consent page (Google's), which comes back to `email_oauth_callback`."""
    channel = _access(ctx, channel_id, "email")
    try:
        url = service.mailbox_authorization_url(ctx.actor, channel, _oauth_redirect(ctx))
    except DomainError as exc:
        return _email_detail(ctx, channel, _errors(ctx, exc), 422)
    return RedirectResponse(url, status_code=303)


@router.get("/settings/channels/email/oauth")
def email_oauth_callback(ctx: UserPage, state: str = "", code: str = "", error: str = "") -> Response:
    """The provider's answer comes back here; the person confirms, and the code is traded (POST)."""
    ctx.actor.require(Permission.MANAGE_CHANNELS)
    channel = _access(ctx, service.channel_of_oauth_state(ctx.actor, state), "email")
    if error or not code:
        reason = ctx.fmt.gettext(EMAIL_TEST_FAILED) % {"reason": error or "no code"}
        return _email_detail(ctx, channel, {}, 422, test_error=reason)
    return _email_detail(ctx, channel, {}, 200, oauth_code={"state": state, "code": code})


class OAuthCodeForm(BaseModel):
    state: str = ""
    code: str = ""


@router.post("/settings/channels/email/oauth")
def finish_email_oauth(ctx: UserPage, form: Annotated[OAuthCodeForm, Form()]) -> Response:
    """Trade the code for a refresh token, then connect the mailbox with it."""
    ctx.actor.require(Permission.MANAGE_CHANNELS)
    try:
        check_form_text(ctx.request)
        channel_id = service.channel_of_oauth_state(ctx.actor, form.state)
    except DomainError as exc:
        # Not a request this page made: said above the connect form, there is no channel to show.
        problem = next(iter(_errors(ctx, exc).values()), "")
        return _list(ctx, _form_values(None), {}, 422, email_errors={"state": problem})
    channel = _access(ctx, channel_id, "email")
    return submit(
        ctx,
        lambda: service.do_authorise_mailbox(
            ctx.session, ctx.actor, channel, form.code, _oauth_redirect(ctx), base_url=_base_url(ctx)
        ),
        again=lambda exc: _email_detail(ctx, channel, _errors(ctx, exc), 422),
        redirect=f"/settings/channels/{channel.id}",
        flash="channel_connected",
        catch=(DomainError,),
    )
