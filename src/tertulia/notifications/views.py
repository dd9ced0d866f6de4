"""Pages: the person's notifications (/notifications) and their choices per kind
(/notifications/preferences, linked from Profile > Notifications)."""

from typing import Annotated, Any

from fastapi import APIRouter, Form
from pydantic import BaseModel, create_model
from starlette.responses import Response

from tertulia.kit.http import CheckedInputRoute
from tertulia.kit.types import ID
from tertulia.notifications import service
from tertulia.web.context import UserPage
from tertulia.web.forms import submit

router = APIRouter(prefix="/notifications", include_in_schema=False, route_class=CheckedInputRoute)
CHANNELS = ("in_app", "browser", "email")

# One checkbox per kind and channel, e.g. "mentioned__email" ("1" when ticked, absent when not).
PreferencesForm: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "PreferencesForm", **{f"{kind}__{channel}": (bool, False) for kind in service.DEFAULTS for channel in CHANNELS}
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
        {"kind": kind, "label": service.KIND_LABELS[kind], "choice": chosen[kind]} for kind in service.DEFAULTS
    ]
    return ctx.render("notifications/preferences.html", {"rows": rows}, status_code=status_code, active="profile")


@router.get("/preferences")
def preferences_page(ctx: UserPage) -> Response:
    return _preferences_page(ctx)


@router.post("/preferences")
def save_preferences(ctx: UserPage, form: Annotated[PreferencesForm, Form()]) -> Response:
    values = form.model_dump()
    choices = {
        kind: service.Choice(*(bool(values[f"{kind}__{channel}"]) for channel in CHANNELS)) for kind in service.DEFAULTS
    }
    return submit(
        ctx,
        lambda: service.do_set_preferences(ctx.session, ctx.actor, choices),
        again=lambda _exc: _preferences_page(ctx, 422),
        redirect="/notifications/preferences",
        flash="notifications_saved",
    )
