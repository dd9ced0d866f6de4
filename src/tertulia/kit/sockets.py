"""The loop every realtime WebSocket runs: realtime events out, client frames in.

The agents' inbox socket and the web-chat visitor's socket differ in who they are and what they
send; this is what they share: the client's frames go to `on_frame`, each in a task of its own (a
frame waiting on the database must not hold up the next), and each event of the subscription is
turned into a frame by `render` (None: not for this client) and sent. A client that fell too far
behind is closed with 1013 (reconnect and reload); `render` ends the socket by closing it and
raising `SocketEnded`. Returns when the client goes.
"""

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect

from tertulia.kit.realtime import Event, Subscription

OVERFLOW_CLOSE_CODE = 1013


class SocketEnded(Exception):
    """Raised by a `render` that has closed the socket itself (e.g. the person signed out)."""


async def serve_events(
    websocket: WebSocket,
    subscription: Subscription,
    render: Callable[[Event], Awaitable[str | None]],
    *,
    send: Callable[[str], Awaitable[None]] | None = None,
    on_frame: Callable[[str], Coroutine[Any, Any, None]] | None = None,
) -> None:
    send_text = send or websocket.send_text
    async with anyio.create_task_group() as group:

        async def read_client() -> None:
            try:
                while True:
                    raw = await websocket.receive_text()
                    if on_frame is not None:
                        group.start_soon(on_frame, raw)
            except (WebSocketDisconnect, RuntimeError):
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
