"""Channel pages: the widget script that sites embed, and Settings > Channels (web chat)."""

from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form
from pydantic import BaseModel
from starlette.responses import Response

from tertulia.channels import service
from tertulia.channels.models import Channel
from tertulia.kit.errors import DomainError, NotFound
from tertulia.kit.http import CheckedInputRoute
from tertulia.kit.security import new_token
from tertulia.kit.types import ID
from tertulia.users.permissions import Permission
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext
from tertulia.web.forms import FORM_ERRORS, field_errors, submit
from tertulia.web.sections import Section, render_section

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


def _errors(ctx: WebContext, exc: DomainError) -> dict[str, str]:
    """Map the config's dotted field names onto the form's inputs."""
    errors = field_errors(ctx, exc)
    mapped: dict[str, str] = {}
    for key, message in errors.items():
        name = key.removeprefix("config.").removeprefix("secrets.").removeprefix("theme.")
        if name.startswith("allowed_origins"):
            name = "allowed_origins"
        mapped[name] = message
    return mapped


def _list(ctx: WebContext, values: dict[str, Any], errors: dict[str, str], status: int) -> Response:
    channels = [c for c in service.list_channels(ctx.session, ctx.actor.workspace_id) if c.type == "webchat"]
    return _render(ctx, "list.html", {"channels": channels, "values": values, "errors": errors}, status_code=status)


@router.get("/settings/channels")
def channels_page(ctx: UserPage) -> Response:
    ctx.actor.require(Permission.MANAGE_CHANNELS)
    return _list(ctx, _form_values(None), {}, 200)


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


def _access(ctx: WebContext, channel_id: int) -> Channel:
    ctx.actor.require(Permission.MANAGE_CHANNELS)
    channel = service.access_channel(ctx.session, ctx.actor, channel_id)
    if channel.type != "webchat":
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
    snippet = f'<script src="{_base_url(ctx)}/widget/{channel.key}.js" async></script>'
    response = _render(
        ctx,
        "detail.html",
        {
            "channel": channel,
            "values": values,
            "errors": errors,
            "snippet": snippet,
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
    channel = _access(ctx, channel_id)
    return _detail(ctx, channel, _form_values(channel), {}, 200)


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
