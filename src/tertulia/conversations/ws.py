"""The agents' realtime socket: WebSocket /ws, authenticated by the browser session cookie.

Server frames are the events of conversations/events.py, unchanged, e.g.
    {"type": "message.created", "conversation_id": 7, "data": {"message": {...}}, ...}
plus {"type": "hello", "user_id": ...} once subscribed. Each event is re-checked against the receiving
user's visibility (view_all_conversations, or assigned to them or to one of their teams) before
it is sent; an agent's team list is reloaded at most every TEAM_REFRESH_SECONDS. When the session
ends (sign-out, a password change or reset, deactivation) a `session.ended` event closes the socket
at once, in whichever process it is. Close codes: 4401 not signed in (or no longer), 4403 cross-site
origin, 1013 the client fell behind (reconnect and reload).

Every page of the app holds one (static/js/live.js; the inbox its own), which is what keeps the
person's activity status (users/presence.py): the socket holds a lease on their presence while open,
and `{"type": "ping", "active": true}` says they used the tab. Other pages than the inbox connect with
`?scope=me` and get only events addressed to the person (`notification.*`, their `presence.changed`);
the inbox asks for those beside the conversations' events with `?personal=1`.

The client sends nothing but `{"type": "ping"}` (answered `{"type": "pong"}`); any other frame is
answered with an error frame, never dropped in silence, and a frame holding NUL or an unpaired
surrogate anywhere gets the `validation_failed` error naming where, by the rule every HTTP body and
the widget's socket follow (kit.text).
"""

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import structlog
from fastapi import APIRouter, WebSocket

from tertulia.contacts.service import VISITOR_ENDED
from tertulia.conversations.service import Viewer, viewer_for
from tertulia.kit import realtime
from tertulia.kit.db import Database
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.http import CheckedInputRoute
from tertulia.kit.sockets import SocketEnded, serve_events
from tertulia.kit.text import check_input_text
from tertulia.users import presence
from tertulia.users.permissions import Actor
from tertulia.users.sessions import SESSION_COOKIE, SESSION_ENDED, resolve_session, session_tag

log = structlog.get_logger()
router = APIRouter(route_class=CheckedInputRoute)
# Events addressed to one person (notifications/): `user_id` says whose socket gets them.
NOTIFICATION_PREFIX = "notification."
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

    def authenticate() -> tuple[Actor, Viewer, str] | None:
        with db.transaction(write=False) as session:
            current = resolve_session(session, token)
            if current is None:
                return None
            actor = current.actor
            return actor, viewer_for(session, actor), session_tag(current.web_session.token_hash)

    found = await anyio.to_thread.run_sync(authenticate)
    if found is None:
        await websocket.close(code=4401, reason="unauthorized")
        return
    actor, viewer, tag = found
    await websocket.accept()
    # "?scope=me": a page other than the inbox, which wants only what is addressed to this person
    # (notifications, their own status), not every conversation event of the workspace.
    only_mine = websocket.query_params.get("scope") == "me"
    # Events addressed to the person (notifications, statuses) go to clients that ask for them.
    personal = only_mine or websocket.query_params.get("personal") == "1"
    tab = presence.Tab(db, websocket.app.state.presence, actor.user_id or 0, actor.workspace_id, uuid.uuid4().hex)
    state = _AgentSocket(websocket, viewer, tag, authenticate, tab, only_mine=only_mine, personal=personal)
    with realtime.get_hub().subscribe(actor.workspace_id, accepts=state.visible) as subscription:
        try:
            # Present before "hello": whoever is told the socket is up can count on the status.
            await anyio.to_thread.run_sync(tab.arrive)
            # After subscribing: a client that loads what it shows once "hello" arrives misses nothing.
            await websocket.send_json({"type": "hello", "user_id": actor.user_id, "workspace_id": actor.workspace_id})
            async with anyio.create_task_group() as group:
                group.start_soon(_hold_lease, tab)
                await serve_events(websocket, subscription, state.render, send=state.send_text, on_frame=state.handle)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(tab.leave)


async def _hold_lease(tab: presence.Tab) -> None:
    """Renew this tab's presence lease while the socket is open; if this process dies, the lease
    runs out and the person is no longer counted as here."""
    while True:
        await anyio.sleep(presence.RENEW_SECONDS)
        try:
            await anyio.to_thread.run_sync(tab.renew)
        except Exception:  # Redis away for a moment: the next renewal tries again
            log.warning("presence_renew_failed", user_id=tab.user_id)


def answer_to(raw: str) -> dict[str, Any]:
    """The frame that answers one client frame."""
    try:
        frame = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the parser goes
        return _error("invalid_frame", "Unreadable frame.", {})
    try:
        check_input_text(frame)  # the same rule as every HTTP request body and the widget's frames
    except ValidationFailed as exc:
        return _error(exc.code, "The frame is not valid.", exc.details if isinstance(exc.details, dict) else {})
    if isinstance(frame, dict) and frame.get("type") == "ping" and frame.get("active", False) in (True, False):
        return {"type": "pong"}
    return _error("invalid_frame", 'This socket answers only {"type": "ping", "active": true|false}.', {})


def reports_activity(raw: str) -> bool:
    """A ping saying the person used the tab since the last one."""
    try:
        frame = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(frame, dict) and frame.get("type") == "ping" and frame.get("active") is True


def _error(code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"type": "error", "error": {"code": code, "message": message, "details": details}}


class _AgentSocket:
    """What one agent may see, re-read (with their teams, and whether they are still signed in) at
    most every TEAM_REFRESH_SECONDS."""

    def __init__(
        self,
        websocket: WebSocket,
        viewer: Viewer,
        session_tag: str,
        authenticate: Callable[[], tuple[Actor, Viewer, str] | None],
        tab: presence.Tab,
        *,
        only_mine: bool = False,
        personal: bool = False,
    ) -> None:
        self.tab = tab
        self.only_mine = only_mine
        self.personal = personal
        self.websocket = websocket
        self.viewer = viewer
        self.session_tag = session_tag
        self.authenticate = authenticate
        self.checked_at = time.monotonic()
        # Answers to the client's frames and events are sent from different tasks.
        self.send_lock = anyio.Lock()

    async def send_text(self, text: str) -> None:
        async with self.send_lock:
            await self.websocket.send_text(text)

    async def handle(self, raw: str) -> None:
        answer = answer_to(raw)
        if answer.get("type") == "pong" and reports_activity(raw):
            await anyio.to_thread.run_sync(self.tab.used)
        await self.send_text(json.dumps(answer, separators=(",", ":")))

    def visible(self, event: realtime.Event) -> bool:
        # Runs for every event of the workspace, before it is queued: what this person may not
        # see never wakes their socket.
        if event.get("type") == SESSION_ENDED:
            return event.get("user_id") == self.viewer.user_id and event.get("session") in (None, self.session_tag)
        if event.get("type") == VISITOR_ENDED:
            return False  # for the visitor's own sockets only
        kind = str(event.get("type") or "")
        if kind == presence.PRESENCE_CHANGED:
            if event.get("user_id") == self.viewer.user_id:
                self.tab.saw(str((event.get("data") or {}).get("status")))
                return self.personal
            return self.personal and not self.only_mine  # everyone's dots in the inbox
        if kind.startswith(NOTIFICATION_PREFIX):
            return self.personal and event.get("user_id") == self.viewer.user_id
        if self.only_mine:
            return False
        return self.viewer.can_see_event(event)

    async def render(self, event: realtime.Event) -> str | None:
        if event.get("type") == SESSION_ENDED:
            await self.websocket.close(code=4401, reason="signed out")
            raise SocketEnded
        if time.monotonic() - self.checked_at > TEAM_REFRESH_SECONDS:
            refreshed = await anyio.to_thread.run_sync(self.authenticate)
            if refreshed is None:
                await self.websocket.close(code=4401, reason="signed out")
                raise SocketEnded
            self.viewer = refreshed[1]
            self.checked_at = time.monotonic()
            if not self.viewer.can_see_event(event):
                return None
        return json.dumps(event, separators=(",", ":"))
