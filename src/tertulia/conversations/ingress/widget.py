"""The web-chat widget's entry points: the public endpoints, CORS and the visitor's socket.

The provider side (the adapter, visitor tokens, identity verification) is channels/adapters/webchat.py.

Public endpoints (no cookies; CORS only for the channel's allowed origins):

    GET  /widget/{key}/config      theme (colour, greeting, position, avatars), ask_name/ask_email,
                                   identity_verification
    POST /widget/{key}/session     {"token"?, "user_id"?, "user_hash"?, "name"?, "email"?}
                                   -> {"token", "expires_at", "access_token", "access_expires_at"}.
                                   Keep `token` (the visitor token, months) in localStorage and send
                                   it back here, in the body, to be remembered; it is not accepted
                                   anywhere else. `access_token` (an hour) goes in
                                   `Authorization: Bearer <access token>` and the socket's auth
                                   frame; ask for a new one here before it expires. With identity
                                   verification, `user_hash` = hex HMAC-SHA256(identity_secret,
                                   user_id) computed by the site's server; a verified user keeps the
                                   same contact on every device.
    GET  /widget/{key}/messages    ?before_id=&limit= -> {"items": [...oldest first], "next_before_id"}
    POST /widget/{key}/messages    {"text", "client_msg_id"} -> the message; `client_msg_id` (a UUID
                                   made by the widget) makes a resend after a timeout harmless.
    WS   /widget/ws?key=           no credential in the URL (URLs end up in access logs): the first
                                   frame is {"type": "auth", "token": <access token>}, answered by
                                   {"type": "ready", "expires_at"}; see VisitorSocket.

Limits, all answered with a reason the widget shows (429 `rate_limited` or
`too_many_conversations` over HTTP, an error frame on the socket, close code 4429
`too_many_sockets`): `widget_messages_per_minute` per visitor over HTTP and sockets together,
`widget_conversations_per_minute` per channel for messages that open a conversation, and
`widget_sockets_per_visitor` / `widget_sockets_per_ip` sockets open at once. The counters are shared
by every web process through Redis when TERTULIA_REALTIME_URL is redis://.

Agents' internal comments and system lines never reach the visitor.
"""

import dataclasses
import functools
import inspect
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import anyio
from fastapi import APIRouter, FastAPI, Query, Request, Response, WebSocket
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tertulia.channels import repository as channels_repo
from tertulia.channels.adapters.webchat import (
    TYPE,
    Visitor,
    check_origin,
    issue_access_token,
    issue_token,
    read_access_token,
    read_token,
    user_hash,
)
from tertulia.channels.http import JsonErrorRoute
from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.channels.registry import get_adapter
from tertulia.contacts.fields import clean_email
from tertulia.contacts.identities import identity_state
from tertulia.contacts.service import VISITOR_ENDED
from tertulia.conversations import events
from tertulia.conversations import repository as conversations_repo
from tertulia.conversations.events import InboxEvent
from tertulia.conversations.receiver import InboundWriter
from tertulia.conversations.schemas import message_dict, visitor_message
from tertulia.kit import realtime
from tertulia.kit.db import Database
from tertulia.kit.errors import DomainError, NotFound, PermissionDenied, RateLimited, Unauthorized, ValidationFailed
from tertulia.kit.http import API_ERRORS, validation_details
from tertulia.kit.ratelimit import SLOT_LEASE_SECONDS, RateLimiter, SlotLimiter
from tertulia.kit.security import same_secret
from tertulia.kit.settings import Settings
from tertulia.kit.sockets import SocketEnded, close_quietly, read_frame, serve_events
from tertulia.kit.text import check_input_text, tidy_name
from tertulia.kit.types import ID

T = TypeVar("T")


class WidgetCorsMiddleware:
    """Adds CORS headers to /widget responses, errors included, once the route has approved the origin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/widget/"):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def send_with_cors(message: Message) -> None:
            origin = state.get("cors_origin")
            if message["type"] == "http.response.start" and origin:
                headers = list(message.get("headers", []))
                headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
                headers.append((b"vary", b"Origin"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_cors)


# ----- endpoints ------------------------------------------------------------------------------

router = APIRouter(prefix="/widget", tags=["web chat widget"], route_class=JsonErrorRoute, responses=API_ERRORS)


class SessionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str | None = Field(default=None, max_length=4096)
    user_id: str | None = Field(default=None, max_length=200)
    user_hash: str | None = Field(default=None, max_length=128)
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254)


class SendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=10_000)
    client_msg_id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")


def _own_transaction(*, write: bool) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Run the endpoint's unit of work inside its own thread call, committing before it returns.

    The `session` parameter is filled here instead of by a yield dependency: with the commit in a
    separate threadpool step, a burst of visitors could fill the pool with requests all waiting on
    SQLite's write lock while the holder waited for its turn to commit.
    """

    def decorate(endpoint: Callable[..., T]) -> Callable[..., T]:
        signature = inspect.signature(endpoint)
        public = signature.replace(parameters=[p for p in signature.parameters.values() if p.name != "session"])

        @functools.wraps(endpoint)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            request: Request = kwargs["request"]
            database: Database = request.app.state.db
            with database.transaction(write=write) as session:
                return endpoint(*args, session=session, **kwargs)

        wrapper.__signature__ = public  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _channel(session: Session, key: str) -> Channel:
    channel = channels_repo.channel_by_key(session, key, TYPE)
    if channel is None:
        raise NotFound("No such chat widget.")
    return channel


def _approve(request: Request, channel: Channel) -> None:
    origin = check_origin(channel, request.headers.get("origin"))
    if origin:
        request.state.cors_origin = origin


def _throttle(request: Request, key: str, limit: int) -> None:
    retry_after = request.app.state.rate_limiter.hit(f"widget:{key}", limit, 60)
    if retry_after:
        raise RateLimited("Too many messages; wait a moment.", retry_after=retry_after)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


@router.options("/{key}/{rest:path}", include_in_schema=False)
@_own_transaction(write=False)
def preflight(
    key: str,
    rest: str,  # noqa: ARG001 (the path is whatever the widget will call)
    request: Request,
    session: Session,
) -> Response:
    channel = _channel(session, key)
    _approve(request, channel)
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "600",
        },
    )


@router.get("/{key}/config")
@_own_transaction(write=False)
def widget_config(key: str, request: Request, session: Session) -> dict[str, Any]:
    channel = _channel(session, key)
    _approve(request, channel)
    return get_adapter(TYPE).public_config(channel)


@router.post("/{key}/session")
@_own_transaction(write=True)
def widget_session(key: str, body: SessionBody, request: Request, session: Session) -> dict[str, Any]:
    channel = _channel(session, key)
    _approve(request, channel)
    settings = request.app.state.settings
    client_ip = request.client.host if request.client else "unknown"
    _throttle(request, f"session:{channel.id}:{client_ip}", settings.widget_sessions_per_minute)
    name = tidy_name(body.name or "") or None
    email = clean_email(body.email, "email") if body.email else None
    previous: Visitor | None = None
    if body.token:
        try:
            previous = read_token(body.token, channel)
            _contact_id(session, channel, previous)
        except Unauthorized:
            # An expired, foreign or revoked token just starts a fresh visitor.
            previous = None
    if body.user_id is not None:
        if not body.user_hash or not same_secret(body.user_hash.lower(), user_hash(channel, body.user_id)):
            raise Unauthorized("Identity verification failed.", details={"user_hash": "does not match user_id"})
        external_id = f"{channel.id}:u:{body.user_id}"
    elif previous is not None:
        external_id = previous.external_id
    else:
        external_id = f"{channel.id}:v:{secrets.token_urlsafe(16)}"
    state = identity_state(session, channel.workspace_id, TYPE, external_id)
    if state is not None and state.blocked:
        # Only a verified site user comes back as the same visitor after a block.
        raise PermissionDenied("This chat is not available.", code="blocked")
    now = int(time.time())
    visitor = Visitor(
        channel.id,
        external_id,
        name or (previous.name if previous else None),
        email or (previous.email if previous else None),
        now + settings.widget_token_days * 86400,
        state.token_generation if state is not None else 0,
    )
    access = dataclasses.replace(visitor, expires_at=now + settings.widget_access_token_seconds)
    return {
        "token": issue_token(visitor, channel),
        "expires_at": visitor.expires_at,
        "access_token": issue_access_token(access, channel),
        "access_expires_at": access.expires_at,
    }


def _contact_id(session: Session, channel: Channel, visitor: Visitor) -> int | None:
    """The visitor's contact (None before their first message), once their token is known to be
    current: a token issued before the contact was blocked or its sessions were ended is refused."""
    state = identity_state(session, channel.workspace_id, TYPE, visitor.external_id)
    if state is None:
        return None
    if state.blocked or visitor.generation < state.token_generation:
        raise Unauthorized("This chat session has ended.", code="session_ended")
    return state.contact_id


@router.get("/{key}/messages")
@_own_transaction(write=False)
def widget_history(
    key: str,
    request: Request,
    session: Session,
    before_id: ID | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> dict[str, Any]:
    channel = _channel(session, key)
    _approve(request, channel)
    visitor = read_access_token(_bearer(request), channel)
    contact_id = _contact_id(session, channel, visitor)
    if contact_id is None:
        return {"items": [], "next_before_id": None}
    rows = conversations_repo.contact_messages_page(
        session, channel.workspace_id, contact_id, before_id=before_id, limit=limit, channel_id=channel.id
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [visitor_message(message_dict(m)) for m in reversed(rows)],
        "next_before_id": rows[-1].id if more and rows else None,
    }


def _inbound(visitor: Visitor, text: str, client_msg_id: str, origin: str | None) -> InboundMessage:
    first, _, last = (visitor.name or "").partition(" ")
    return InboundMessage(
        sender_id=visitor.external_id,
        # Scoped by visitor: another visitor reusing the same client id is a different message.
        provider_message_id=f"{visitor.external_id}:{client_msg_id}"[:200],
        text=text,
        display_name=visitor.name,
        first_name=first or None,
        last_name=last or None,
        email=visitor.email,
        payload={"origin": origin} if origin else {},
    )


class _OpenConversations:
    """Visitors seen lately with an open conversation, so their next messages skip the database.

    Asking the database whether a message will open a conversation cost a transaction per message
    on the hot path (two queries and a commit: the live inbox's CPU per message doubled). A visitor
    with an open conversation keeps it for minutes as a rule, so the answer is remembered for TTL
    seconds per process. What that costs: a conversation closed within the TTL lets that visitor's
    next message open a new one without counting against the channel's new-conversation limit (at
    most one per visitor per TTL, and visitors themselves are limited per address)."""

    TTL = 30.0
    MAX_ENTRIES = 100_000

    def __init__(self) -> None:
        self._until: dict[tuple[int, str], float] = {}
        self._lock = threading.Lock()

    def known(self, channel_id: int, external_id: str) -> bool:
        with self._lock:
            until = self._until.get((channel_id, external_id))
            return until is not None and until > time.monotonic()

    def remember(self, channel_id: int, external_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._until) >= self.MAX_ENTRIES:
                self._until = {key: until for key, until in self._until.items() if until > now}
                if len(self._until) >= self.MAX_ENTRIES:
                    self._until.clear()
            self._until[(channel_id, external_id)] = now + self.TTL


_open_conversations = _OpenConversations()


def admit_message(db: Database, limiter: RateLimiter, settings: Settings, channel: Channel, visitor: Visitor) -> None:
    """Count a visitor's message against the limits shared by HTTP and the socket: the visitor's
    messages a minute, and, when it will open a conversation (no contact yet, or none open), the
    channel's new conversations a minute. Raises RateLimited with the code the widget shows."""
    _refuse_if_over(limiter.hit(_message_budget(visitor), settings.widget_messages_per_minute, 60))
    if not _open_conversations.known(channel.id, visitor.external_id):
        admit_opening(db, limiter, settings, channel, visitor)


async def admit_socket_message(
    db: Database, limiter: RateLimiter, settings: Settings, channel: Channel, visitor: Visitor
) -> None:
    """`admit_message` from the socket's event loop: the visitor's count leaves the loop only in
    the limiter's shared round trip, and the database is asked in a thread only when the message
    may open a conversation."""
    _refuse_if_over(await limiter.hit_soon(_message_budget(visitor), settings.widget_messages_per_minute, 60))
    if not _open_conversations.known(channel.id, visitor.external_id):
        await anyio.to_thread.run_sync(admit_opening, db, limiter, settings, channel, visitor)


def _message_budget(visitor: Visitor) -> str:
    return f"widget:message:{visitor.external_id}"


def _refuse_if_over(retry_after: int) -> None:
    if retry_after:
        raise RateLimited("Too many messages; wait a moment.", retry_after=retry_after)


def admit_opening(db: Database, limiter: RateLimiter, settings: Settings, channel: Channel, visitor: Visitor) -> None:
    """Whether the visitor's message opens a conversation (asked of the database); if it does, it
    counts against the channel's new conversations a minute."""
    with db.transaction(write=False) as session:
        contact_id = _contact_id(session, channel, visitor)
        opens = (
            contact_id is None
            or conversations_repo.open_conversation(session, channel.workspace_id, contact_id) is None
        )
    if not opens:
        _open_conversations.remember(channel.id, visitor.external_id)
        return
    limit = settings.widget_conversations_per_minute
    retry_after = limiter.hit(f"widget:conversations:{channel.id}", limit, 60)
    if retry_after:
        raise RateLimited(
            "Too many new chats at the moment; try again in a minute.",
            retry_after=retry_after,
            code="too_many_conversations",
        )


@router.post("/{key}/messages", status_code=201)
async def widget_send(key: str, body: SendBody, request: Request) -> dict[str, Any]:
    db: Database = request.app.state.db

    def authorize() -> tuple[int, Visitor]:
        with db.transaction(write=False) as session:
            channel = _channel(session, key)
            _approve(request, channel)
            visitor = read_access_token(_bearer(request), channel)
            _contact_id(session, channel, visitor)  # a revoked token is refused before anything is counted
        admit_message(db, request.app.state.rate_limiter, request.app.state.settings, channel, visitor)
        return channel.id, visitor

    channel_id, visitor = await anyio.to_thread.run_sync(authorize)
    writer: InboundWriter = request.app.state.inbound_writer
    received = await writer.receive(
        channel_id, _inbound(visitor, body.text, body.client_msg_id, request.headers.get("origin"))
    )
    if received.blocked:  # blocked between the check above and the write
        raise Unauthorized("This chat session has ended.", code="session_ended")
    return {**visitor_message(received.message), "duplicate": received.duplicate}


class _SocketFrame(BaseModel):
    type: Literal["message", "typing", "ping", "auth"]


class _MessageFrame(SendBody):
    type: Literal["message"]


class _AuthFrame(BaseModel):
    type: Literal["auth"]
    token: str = Field(max_length=4096)


# A socket that has not said who it is by then is closed.
AUTH_TIMEOUT_SECONDS = 10.0
UNAUTHORIZED_CLOSE_CODE = 4401
FORBIDDEN_CLOSE_CODE = 4403
TOO_MANY_SOCKETS_CLOSE_CODE = 4429


class VisitorSocket:
    """One visitor's socket: replies and their own messages out; messages and typing in.

    Client frames:  {"type": "auth", "token"} first (see widget_socket), and again with a fresh access
                    token before the current one expires (answered by "ready"; at expiry the socket
                    is closed with 4401 "token_expired");
                    {"type": "message", "text", "client_msg_id"} -> {"type": "ack", "client_msg_id",
                    "message", "duplicate"} or {"type": "error", "client_msg_id", "error": {...}};
                    {"type": "typing"} (shown to agents; at most one every TYPING_EVERY seconds);
                    {"type": "ping"} -> {"type": "pong"}.
    Server frames:  {"type": "message.created", "message"} as well.
    A resend after a lost ack (same client_msg_id) is answered with the original message.
    """

    TYPING_EVERY = 2.0

    def __init__(self, websocket: WebSocket, channel: Channel, visitor: Visitor, contact_id: int | None) -> None:
        self.websocket = websocket
        self.channel = channel
        self.channel_id = channel.id
        self.workspace_id = channel.workspace_id
        self.visitor = visitor
        self.contact_id = contact_id
        self.origin = websocket.headers.get("origin")
        self.settings: Settings = websocket.app.state.settings
        self.db: Database = websocket.app.state.db
        self.limiter: RateLimiter = websocket.app.state.rate_limiter
        self.writer: InboundWriter = websocket.app.state.inbound_writer
        self.send_lock = anyio.Lock()
        self.typing_at = 0.0
        self.subscription: realtime.Subscription | None = None

    async def send_text(self, text: str) -> None:
        # Replies to the visitor's frames and forwarded events come from different tasks.
        async with self.send_lock:
            await self.websocket.send_text(text)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.send_text(json.dumps(frame, separators=(",", ":")))

    async def render(self, event: dict[str, Any]) -> str | None:
        """An event `wants` let through, as the visitor's frame."""
        if event.get("type") == VISITOR_ENDED:
            # The contact was blocked or its sessions ended: this socket's token is revoked.
            await close_quietly(self.websocket, UNAUTHORIZED_CLOSE_CODE, "session_ended")
            raise SocketEnded
        if event.get("type") == InboxEvent.TYPING:
            frame: dict[str, Any] = {"type": "typing"}
        else:
            message = (event.get("data") or {}).get("message") or {}
            frame = {"type": InboxEvent.MESSAGE_CREATED, "message": visitor_message(message)}
        return json.dumps(frame, separators=(",", ":"))

    def follow_contact(self, contact_id: int) -> None:
        self.contact_id = contact_id
        if self.subscription is not None:
            self.subscription.add_topic(f"contact:{contact_id}")

    def wants(self, event: dict[str, Any]) -> bool:
        if event.get("type") == VISITOR_ENDED:
            return self.contact_id is not None and event.get("contact_id") == self.contact_id
        if not event.get("visitor"):
            return False
        contact_id = event.get("contact_id")
        own = event.get("sender_external_id") == self.visitor.external_id
        if self.contact_id is None and own and isinstance(contact_id, int):
            self.follow_contact(contact_id)  # another tab's first message created the contact
        if self.contact_id is None or contact_id != self.contact_id:
            return False
        if event.get("type") == InboxEvent.TYPING:
            return not (event.get("data") or {}).get("contact")  # an agent or a bot replying, not the visitor
        message = (event.get("data") or {}).get("message") or {}
        return message.get("direction") in ("incoming", "outgoing") and message.get("channel_id") == self.channel_id

    async def handle(self, raw: str) -> None:
        try:
            frame = json.loads(raw)
            kind = _SocketFrame.model_validate(frame, strict=False).type if isinstance(frame, dict) else None
        except (ValueError, ValidationError, RecursionError):
            kind = None  # RecursionError: JSON nested deeper than the parser goes
        if kind is None:
            await self.send({"type": "error", "error": _error_body("invalid_frame", "Unreadable frame.", {})})
        elif kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "typing":
            await self.typing()
        elif kind == "auth":
            await self.reauthenticate(frame)
        else:
            await self.message(frame)

    async def reauthenticate(self, frame: dict[str, Any]) -> None:
        """A fresh access token for the same visitor keeps the socket open past the old one's expiry."""
        try:
            token = _AuthFrame.model_validate(frame).token
            visitor = read_access_token(token, self.channel)
        except (ValidationError, Unauthorized) as exc:
            reason = exc.code if isinstance(exc, Unauthorized) else "unauthorized"
            await close_quietly(self.websocket, UNAUTHORIZED_CLOSE_CODE, reason)
            return
        if visitor.external_id != self.visitor.external_id:
            await close_quietly(self.websocket, UNAUTHORIZED_CLOSE_CODE, "another visitor")
            return
        self.visitor = visitor
        await self.send({"type": "ready", "expires_at": visitor.expires_at})

    async def keep_alive(self, slots: "_SocketSlots", scope: anyio.CancelScope) -> None:
        """Renew the socket's slots while it lives; close it when its access token expires."""
        while True:
            remaining = self.visitor.expires_at - time.time()
            if remaining <= 0:
                await close_quietly(self.websocket, UNAUTHORIZED_CLOSE_CODE, "token_expired")
                scope.cancel()
                return
            await anyio.sleep(min(remaining, SLOT_LEASE_SECONDS / 3))
            await anyio.to_thread.run_sync(slots.renew)

    async def typing(self) -> None:
        now = time.monotonic()
        if self.contact_id is None or now - self.typing_at < self.TYPING_EVERY:
            return
        self.typing_at = now
        db = self.db
        workspace_id, contact_id = self.workspace_id, self.contact_id

        def event() -> dict[str, Any] | None:
            with db.transaction(write=False) as session:
                conversation = conversations_repo.open_conversation(session, workspace_id, contact_id)
                # The conversation's current owner decides which agents may see it.
                return events.make_event(InboxEvent.TYPING, conversation, {"contact": True}) if conversation else None

        found = await anyio.to_thread.run_sync(event)
        if found is not None:
            realtime.publish(found)

    async def message(self, frame: dict[str, Any]) -> None:
        client_msg_id = frame.get("client_msg_id") if isinstance(frame.get("client_msg_id"), str) else None
        try:
            check_input_text(frame)  # the same rule as every HTTP request body
            body = _MessageFrame.model_validate(frame)
        except (ValidationError, ValidationFailed) as exc:
            details = exc.details if isinstance(exc, ValidationFailed) else validation_details(exc.errors())
            error = _error_body("validation_failed", "The message is not valid.", details)
            await self.send({"type": "error", "client_msg_id": client_msg_id, "error": error})
            return
        try:
            await admit_socket_message(self.db, self.limiter, self.settings, self.channel, self.visitor)
            received = await self.writer.receive(
                self.channel_id, _inbound(self.visitor, body.text, body.client_msg_id, self.origin)
            )
            if received.blocked:
                raise Unauthorized("This chat session has ended.", code="session_ended")
        except DomainError as exc:
            error = _error_body(exc.code, exc.message, exc.details)
            await self.send({"type": "error", "client_msg_id": body.client_msg_id, "error": error})
            return
        if self.contact_id != received.contact_id:
            self.follow_contact(received.contact_id)
        await self.send(
            {
                "type": "ack",
                "client_msg_id": body.client_msg_id,
                "message": visitor_message(received.message),
                "duplicate": received.duplicate,
            }
        )


def _error_body(code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details}


class _SocketSlots:
    """The slots one socket holds (its client address's, then its visitor's), released when it ends."""

    def __init__(self, limiter: SlotLimiter) -> None:
        self.limiter = limiter
        self.holder = uuid.uuid4().hex
        self.keys: list[str] = []

    def take(self, key: str, limit: int) -> bool:
        if not self.limiter.acquire(key, limit, self.holder):
            return False
        self.keys.append(key)
        return True

    def renew(self) -> None:
        for key in self.keys:
            self.limiter.renew(key, self.holder)

    def release(self) -> None:
        for key in self.keys:
            self.limiter.release(key, self.holder)
        self.keys = []


async def _contact_now(db: Database, channel: Channel, visitor: Visitor) -> int | None:
    def lookup() -> int | None:
        with db.transaction(write=False) as session:
            return _contact_id(session, channel, visitor)

    return await anyio.to_thread.run_sync(lookup)


async def _authenticate(websocket: WebSocket, channel: Channel) -> tuple[Visitor, int | None] | None:
    """Wait for the auth frame; None when the socket has been closed instead (with the reason)."""
    with anyio.move_on_after(AUTH_TIMEOUT_SECONDS):
        raw = await read_frame(websocket)
        if raw is None:
            return None
        try:
            token = _AuthFrame.model_validate_json(raw).token
        except (ValidationError, RecursionError):
            await close_quietly(websocket, UNAUTHORIZED_CLOSE_CODE, "the first frame must be auth")
            return None
        db: Database = websocket.app.state.db

        def check() -> tuple[Visitor, int | None]:
            check_input_text({"token": token})
            visitor = read_access_token(token, channel)
            with db.transaction(write=False) as session:
                return visitor, _contact_id(session, channel, visitor)

        try:
            return await anyio.to_thread.run_sync(check)
        except (Unauthorized, ValidationFailed) as exc:
            await close_quietly(websocket, UNAUTHORIZED_CLOSE_CODE, exc.code)
            return None
    await close_quietly(websocket, UNAUTHORIZED_CLOSE_CODE, "auth_timeout")
    return None


@router.websocket("/ws")
async def widget_socket(websocket: WebSocket, key: str) -> None:
    db: Database = websocket.app.state.db
    settings: Settings = websocket.app.state.settings

    def find_channel() -> Channel:
        check_input_text({"key": key})
        with db.transaction(write=False) as session:
            channel = _channel(session, key)
            check_origin(channel, websocket.headers.get("origin"))
            return channel

    try:
        channel = await anyio.to_thread.run_sync(find_channel)
    except DomainError as exc:
        code = FORBIDDEN_CLOSE_CODE if isinstance(exc, PermissionDenied) else UNAUTHORIZED_CLOSE_CODE
        await websocket.close(code=code, reason=exc.code)
        return

    slots = _SocketSlots(websocket.app.state.slot_limiter)
    try:
        await websocket.accept()
        client_ip = websocket.client.host if websocket.client else "unknown"
        if not await anyio.to_thread.run_sync(
            slots.take, f"widget:sockets:ip:{client_ip}", settings.widget_sockets_per_ip
        ):
            await close_quietly(websocket, TOO_MANY_SOCKETS_CLOSE_CODE, "too_many_sockets")
            return
        found = await _authenticate(websocket, channel)
        if found is None:
            return
        visitor, contact_id = found
        visitor_key = f"widget:sockets:visitor:{visitor.external_id}"
        if not await anyio.to_thread.run_sync(slots.take, visitor_key, settings.widget_sockets_per_visitor):
            await close_quietly(websocket, TOO_MANY_SOCKETS_CLOSE_CODE, "too_many_sockets")
            return
        await _serve_visitor(websocket, channel, visitor, contact_id, slots)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(slots.release)


async def _serve_visitor(
    websocket: WebSocket, channel: Channel, visitor: Visitor, contact_id: int | None, slots: _SocketSlots
) -> None:
    db: Database = websocket.app.state.db
    state = VisitorSocket(websocket, channel, visitor, contact_id)
    hub = realtime.get_hub()
    with hub.subscribe(channel.workspace_id, f"visitor:{visitor.external_id}", accepts=state.wants) as subscription:
        state.subscription = subscription
        if contact_id is None:
            # The visitor's first message may have committed between the lookup above and the
            # subscription, its event published to nobody: look again now that nothing can slip by.
            contact_id = await _contact_now(db, channel, visitor)
        if contact_id is not None:
            state.follow_contact(contact_id)
        await state.send({"type": "ready", "expires_at": visitor.expires_at})
        async with anyio.create_task_group() as group:
            group.start_soon(state.keep_alive, slots, group.cancel_scope)
            await serve_events(websocket, subscription, state.render, send=state.send_text, on_frame=state.handle)
            group.cancel_scope.cancel()


def install(app: FastAPI) -> None:
    """The widget's CORS; its routes (`router`) are mounted with the app's other routers."""
    app.add_middleware(WidgetCorsMiddleware)
