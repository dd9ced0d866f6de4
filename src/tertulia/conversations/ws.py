"""The agents' realtime socket: WebSocket /ws, authenticated by the browser session cookie.

Server frames are the events of conversations/events.py, unchanged, e.g.
    {"type": "message.created", "conversation_id": 7, "data": {"message": {...}}, ...}
plus {"type": "hello", "user_id": ...} once subscribed. Each event is re-checked against the receiving
user's visibility (view_all_conversations, or assigned to them or to one of their teams) before
it is sent; an agent's team list is reloaded at most every TEAM_REFRESH_SECONDS. Close codes:
4401 not signed in, 4403 cross-site origin, 1013 the client fell behind (reconnect and reload).
"""

import json
import time

import anyio
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from tertulia.conversations.service import Viewer, viewer_for
from tertulia.kit import realtime
from tertulia.kit.db import Database
from tertulia.users.permissions import Actor
from tertulia.users.sessions import SESSION_COOKIE, resolve_session

router = APIRouter()
TEAM_REFRESH_SECONDS = 30.0


def _same_origin(websocket: WebSocket) -> bool:
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    host = websocket.headers.get("host", "")
    return origin.split("://", 1)[-1].lower() == host.lower()


@router.websocket("/ws")
async def agent_socket(websocket: WebSocket) -> None:
    db: Database = websocket.app.state.db
    token = websocket.cookies.get(SESSION_COOKIE)
    # The cookie is sent by the browser whatever page opens the socket; refuse other sites.
    if not _same_origin(websocket):
        await websocket.close(code=4403, reason="origin")
        return

    def authenticate() -> tuple[Actor, Viewer] | None:
        with db.transaction(write=False) as session:
            current = resolve_session(session, token)
            if current is None:
                return None
            actor = current.actor
            return actor, viewer_for(session, actor)

    def still_signed_in() -> tuple[Actor, Viewer] | None:
        return authenticate()

    found = await anyio.to_thread.run_sync(authenticate)
    if found is None:
        await websocket.close(code=4401, reason="unauthorized")
        return
    actor, viewer = found
    checked_at = time.monotonic()
    await websocket.accept()
    current = {"viewer": viewer}

    def visible(event: realtime.Event) -> bool:
        # Runs for every event of the workspace, before it is queued: what this person may not
        # see never wakes their socket.
        return current["viewer"].can_see_event(event)

    with realtime.get_hub().subscribe(actor.workspace_id, accepts=visible) as subscription:
        # After subscribing: a client that loads what it shows once "hello" arrives misses nothing.
        await websocket.send_json({"type": "hello", "user_id": actor.user_id, "workspace_id": actor.workspace_id})
        async with anyio.create_task_group() as group:

            async def drain_client() -> None:
                try:
                    while True:
                        await websocket.receive_text()
                except WebSocketDisconnect:
                    group.cancel_scope.cancel()

            group.start_soon(drain_client)
            while True:
                event = await subscription.get()
                if event.get("type") == "overflow":
                    await websocket.close(code=1013, reason="overflow")
                    group.cancel_scope.cancel()
                    return
                if time.monotonic() - checked_at > TEAM_REFRESH_SECONDS:
                    refreshed = await anyio.to_thread.run_sync(still_signed_in)
                    if refreshed is None:
                        await websocket.close(code=4401, reason="signed out")
                        group.cancel_scope.cancel()
                        return
                    actor, current["viewer"] = refreshed
                    checked_at = time.monotonic()
                    if not current["viewer"].can_see_event(event):
                        continue
                try:
                    await websocket.send_text(json.dumps(event, separators=(",", ":")))
                except (WebSocketDisconnect, RuntimeError):
                    group.cancel_scope.cancel()
                    return
