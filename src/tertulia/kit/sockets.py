"""The loop every realtime WebSocket runs: realtime events out, client frames in.

The agents' inbox socket and the web-chat visitor's socket differ in who they are and what they
send; this is what they share: the client's frames go to `on_frame`, each in a task of its own (a
frame waiting on the database must not hold up the next), and each event of the subscription is
turned into a frame by `render` (None: not for this client) and sent. A client that fell too far
behind is closed with 1013 (reconnect and reload); `render` ends the socket by closing it and
raising `SocketEnded`. Returns when the client goes.

What a client sends never ends the loop with an unhandled exception: a binary frame closes the
socket with 1003, a text frame over `max_frame_chars` with 1009 (both with a reason), and a frame
handler that fails is logged and closes the socket with 1011.
"""

import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect

from tertulia.kit.realtime import Event, Subscription

log = structlog.get_logger()

OVERFLOW_CLOSE_CODE = 1013
UNSUPPORTED_DATA_CLOSE_CODE = 1003
TOO_BIG_CLOSE_CODE = 1009
INTERNAL_ERROR_CLOSE_CODE = 1011
# Client frames are chat messages (at most 10,000 characters) and small control frames.
MAX_FRAME_CHARS = 128 * 1024


class SocketEnded(Exception):
    """Raised by a `render` that has closed the socket itself (e.g. the person signed out)."""


async def close_quietly(websocket: WebSocket, code: int, reason: str) -> None:
    """Close, ignoring a client that has already gone."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await websocket.close(code=code, reason=reason)


async def read_frame(websocket: WebSocket, max_frame_chars: int = MAX_FRAME_CHARS) -> str | None:
    """The client's next text frame; None once the socket is over (the client left, or sent a frame
    this loop refuses, in which case the socket has been closed with the reason)."""
    try:
        message = await websocket.receive()
    except (WebSocketDisconnect, RuntimeError):
        return None
    if message["type"] == "websocket.disconnect":
        return None
    text = message.get("text")
    if not isinstance(text, str):
        await close_quietly(websocket, UNSUPPORTED_DATA_CLOSE_CODE, "binary frames are not accepted")
        return None
    if len(text) > max_frame_chars:
        await close_quietly(websocket, TOO_BIG_CLOSE_CODE, f"frames are limited to {max_frame_chars} characters")
        return None
    return text


async def serve_events(
    websocket: WebSocket,
    subscription: Subscription,
    render: Callable[[Event], Awaitable[str | None]],
    *,
    send: Callable[[str], Awaitable[None]] | None = None,
    on_frame: Callable[[str], Coroutine[Any, Any, None]] | None = None,
    max_frame_chars: int = MAX_FRAME_CHARS,
) -> None:
    send_text = send or websocket.send_text
    async with anyio.create_task_group() as group:

        async def handle(raw: str, handler: Callable[[str], Coroutine[Any, Any, None]]) -> None:
            try:
                await handler(raw)
            except (WebSocketDisconnect, RuntimeError):
                group.cancel_scope.cancel()  # the client went while we answered
            except Exception:
                log.exception("socket_frame_failed", path=websocket.url.path)
                await close_quietly(websocket, INTERNAL_ERROR_CLOSE_CODE, "internal error")
                group.cancel_scope.cancel()

        async def read_client() -> None:
            while (raw := await read_frame(websocket, max_frame_chars)) is not None:
                if on_frame is not None:
                    group.start_soon(handle, raw, on_frame)
            group.cancel_scope.cancel()

        group.start_soon(read_client)
        while True:
            event = await subscription.get()
            try:
                if event.get("type") == "overflow":
                    await websocket.close(code=OVERFLOW_CLOSE_CODE, reason="overflow")
                    raise SocketEnded
                frame = await render(event)
                if frame is not None:
                    await send_text(frame)
            except (SocketEnded, WebSocketDisconnect, RuntimeError):
                group.cancel_scope.cancel()
                return
