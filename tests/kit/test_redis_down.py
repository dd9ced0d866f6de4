"""With realtime and limits in Redis (`TERTULIA_REALTIME_URL=redis://...`), a Redis that stops
answering costs no request a 500 and loses no message (SQLite and PostgreSQL).

Rate limits and socket caps are let through while Redis cannot count them (each failure logged as
`rate_limiter_unavailable` / `slot_limiter_unavailable`); realtime events are not delivered (logged as
`realtime_publish_failed`): the data is committed, and inboxes show it when they reload. The rate
limiter used to raise redis.ConnectionError out of every rate-limited request.
"""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.conversations.models import Message
from tertulia.kit import realtime
from tertulia.kit.db import Database
from tertulia.kit.ratelimit import RedisRateLimiter, RedisSlotLimiter
from tertulia.kit.realtime import RedisHub
from tertulia.kit.settings import Settings
from tests.conftest import Tenant, worker_name
from tests.conversations.support import make_webchat, new_visitor, widget_socket
from tests.fakes import immediate_queue

__all__ = ["immediate_queue"]  # a fixture, used by name

REDIS_URL = "redis://127.0.0.1:6379/0"
# Nothing listens on port 1: connections are refused, as when Redis is down.
UNREACHABLE = "redis://127.0.0.1:1/0"


@pytest.fixture
def settings() -> Settings:
    return Settings(api_rate_limit_per_minute=100_000, realtime_url=REDIS_URL, realtime_prefix=f"{worker_name()}-down")


@pytest.fixture
def redis_gone(client: TestClient) -> Iterator[None]:
    """The app started against a live Redis; from here on, every Redis call it makes is refused."""
    state = client.app.state  # type: ignore[attr-defined]
    started_hub = realtime.get_hub()
    assert isinstance(started_hub, RedisHub)
    assert isinstance(state.rate_limiter, RedisRateLimiter)
    state.rate_limiter.close()
    state.rate_limiter = RedisRateLimiter(UNREACHABLE)
    state.slot_limiter = RedisSlotLimiter(UNREACHABLE)
    realtime.set_hub(RedisHub(UNREACHABLE))  # publishes over a client that cannot connect
    try:
        yield
    finally:
        realtime.set_hub(started_hub)


@pytest.mark.usefixtures("immediate_queue", "redis_gone")
def test_requests_and_messages_go_on_while_redis_is_unreachable(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    listed = client.get("/api/v1/contacts", headers=tenant.headers)
    assert listed.status_code == 200, listed.text
    created = client.post("/api/v1/contacts", headers=tenant.headers, json={"first_name": "Ana"})
    assert created.status_code == 201, created.text

    channel = make_webchat(db, tenant)
    visitor = new_visitor(client, channel)  # the session endpoint is rate limited too
    assert visitor.say("hola")["text"] == "hola"
    with widget_socket(client, channel, visitor) as socket:  # the socket caps cannot be counted: let in
        socket.send_json({"type": "ping"})
        assert socket.receive_json() == {"type": "pong"}
        # The visitor's message budget cannot be counted either: the message is let in.
        socket.send_json({"type": "message", "text": "sigo aquí", "client_msg_id": "second-message"})
        answer = socket.receive_json()
        assert answer["type"] == "ack", answer
    with db.transaction(write=False) as session:
        assert sorted(session.scalars(select(Message.text))) == ["hola", "sigo aquí"]
