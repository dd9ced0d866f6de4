"""JSON endpoints for the signed-in person's notifications (the session cookie; a token has no
person to notify and gets 401).

GET  /api/v1/notifications              newest first (?before=&limit=&unread=true) and the unread count
GET  /api/v1/notifications/unread       the unread count (the bell)
POST /api/v1/notifications/{id}/read    mark one read
POST /api/v1/notifications/read-all     mark every one read
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query

from tertulia.kit.http import API_ERRORS, CheckedInputRoute, DbSession
from tertulia.kit.types import ID
from tertulia.notifications import service
from tertulia.notifications.texts import formatter_for
from tertulia.users.session_auth import SessionOrTokenActor

router = APIRouter(
    prefix="/api/v1/notifications", tags=["notifications"], route_class=CheckedInputRoute, responses=API_ERRORS
)


@router.get("")
def list_notifications(
    session: DbSession,
    actor: SessionOrTokenActor,
    before: Annotated[ID | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE_SIZE)] = service.PAGE_SIZE,
    unread: bool = False,
) -> dict[str, Any]:
    rows = service.list_notifications(session, actor, before=before, limit=limit, unread_only=unread)
    user_id = actor.user_id or 0
    fmt = formatter_for(session, user_id)
    return {
        "data": [service.out(row, fmt) for row in rows],
        "unread": service.unread_count(session, actor.workspace_id, user_id),
        "next_before": rows[-1].id if len(rows) == limit else None,
    }


@router.get("/unread")
def unread(session: DbSession, actor: SessionOrTokenActor) -> dict[str, int]:
    service.list_notifications(session, actor, limit=1)  # refuses a token
    return {"unread": service.unread_count(session, actor.workspace_id, actor.user_id or 0)}


@router.post("/read-all")
def read_all(session: DbSession, actor: SessionOrTokenActor) -> dict[str, int]:
    marked = service.do_mark_all_read(session, actor)
    return {"marked": marked, "unread": 0}


@router.post("/{notification_id}/read")
def read_one(session: DbSession, actor: SessionOrTokenActor, notification_id: ID) -> dict[str, Any]:
    row = service.do_mark_read(session, actor, notification_id)
    return service.out(row, formatter_for(session, row.user_id))
