"""Pages: the person's notifications (/notifications) and their choices per kind
(/notifications/preferences, linked from Profile > Notifications)."""

from typing import Annotated, Any

from fastapi import APIRouter, Form
from pydantic import BaseModel, create_model
from starlette.responses import Response

from tertulia.kit.errors import NotFound
from tertulia.kit.http import CheckedInputRoute
from tertulia.kit.types import ID
from tertulia.notifications import emails, service
from tertulia.notifications.models import DEFAULTS, Choice, EmailMode, NotificationKind
from tertulia.notifications.texts import KIND_LABELS
from tertulia.web.context import PublicPage, UserPage
from tertulia.web.forms import submit

router = APIRouter(prefix="/notifications", include_in_schema=False, route_class=CheckedInputRoute)
CHANNELS = ("in_app", "browser", "email")

# One checkbox per kind and channel, e.g. "mentioned__email" ("1" when ticked, absent when not).
PreferencesForm: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "PreferencesForm",
    email_mode=(EmailMode, EmailMode.IMMEDIATE),
    **{f"{kind}__{channel}": (bool, False) for kind in DEFAULTS for channel in CHANNELS},
)


@router.get("")
def notifications_page(ctx: UserPage) -> Response:
    rows = service.list_notifications(ctx.session, ctx.actor, limit=service.MAX_PAGE_SIZE)
    items = [service.out(row, ctx.fmt) | {"when": ctx.fmt.ago(row.created_at)} for row in rows]
    return ctx.render(
        "notifications/list.html",
        {"notifications": items, "unread": service.unread_count(ctx.session, ctx.actor.workspace_id, ctx.user.id)},
    )


@router.post("/{notification_id}/open")
def open_notification(ctx: UserPage, notification_id: ID) -> Response:
    row = service.do_mark_read(ctx.session, ctx.actor, notification_id)
    return ctx.redirect(row.link)


@router.post("/read-all")
def read_all(ctx: UserPage) -> Response:
    service.do_mark_all_read(ctx.session, ctx.actor)
    return ctx.redirect("/notifications")


def _preferences_page(ctx: UserPage, status_code: int = 200) -> Response:
    chosen = service.preferences(ctx.session, ctx.user.id)
    rows: list[dict[str, Any]] = [
        {"kind": kind, "label": KIND_LABELS[kind], "choice": chosen[kind]} for kind in DEFAULTS
    ]
    mode = _mode(ctx)
    return ctx.render(
        "notifications/preferences.html",
        {"rows": rows, "email_mode": mode},
        status_code=status_code,
        active="profile",
    )


def _mode(ctx: UserPage) -> str:
    # Read without writing (a GET has a read transaction): no row yet means immediate.
    row = emails.current_settings(ctx.session, ctx.user.id)
    return row.mode if row is not None else EmailMode.IMMEDIATE.value


@router.get("/preferences")
def preferences_page(ctx: UserPage) -> Response:
    return _preferences_page(ctx)


@router.post("/preferences")
def save_preferences(ctx: UserPage, form: Annotated[PreferencesForm, Form()]) -> Response:
    values = form.model_dump()
    choices = {kind: Choice(*(bool(values[f"{kind}__{channel}"]) for channel in CHANNELS)) for kind in DEFAULTS}
    mode = EmailMode(values["email_mode"])

    def save() -> None:
        service.do_set_preferences(ctx.session, ctx.actor, choices)
        emails.email_settings(ctx.session, ctx.user.id).mode = mode.value

    return submit(
        ctx,
        save,
        again=lambda _exc: _preferences_page(ctx, 422),
        redirect="/notifications/preferences",
        flash="notifications_saved",
    )


@router.get("/unsubscribe/{user_id}/{kind}/{signature}")
def unsubscribe_page(ctx: PublicPage, user_id: ID, kind: str, signature: str) -> Response:
    """The link in every notification email: one button, no sign-in (the link is signed). Not done
    on the GET itself, which mail scanners fetch before anyone clicks."""
    if not emails.check_unsubscribe(user_id, kind, signature):
        raise NotFound("This link is not valid.")
    label = KIND_LABELS[NotificationKind(kind)]
    return ctx.render("notifications/unsubscribe.html", {"label": label, "done": False})


@router.post("/unsubscribe/{user_id}/{kind}/{signature}")
def unsubscribe(ctx: PublicPage, user_id: ID, kind: str, signature: str) -> Response:
    if not emails.check_unsubscribe(user_id, kind, signature):
        raise NotFound("This link is not valid.")
    emails.do_unsubscribe(ctx.session, user_id, kind)
    label = KIND_LABELS[NotificationKind(kind)]
    return ctx.render("notifications/unsubscribe.html", {"label": label, "done": True})
