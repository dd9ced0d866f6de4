"""The notifications consumer takes a read of the log as one batch (one transaction); fed the same
events one at a time it must write the same notifications and push the same frames, each with the
unread count as it stood right after its own row (SQLite and PostgreSQL)."""

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from tertulia.events import dispatcher
from tertulia.events import tasks as events_tasks
from tertulia.events.models import EventRecord
from tertulia.events.types import EventType
from tertulia.kit.db import Database
from tertulia.notifications import feed
from tertulia.notifications.models import Notification
from tertulia.users.models import Role
from tests.conftest import Tenant
from tests.conversations.support import make_webchat, new_visitor, sign_in

pytestmark = pytest.mark.usefixtures("immediate_queue")


def _written(db: Database, workspace_id: int) -> list[tuple[Any, ...]]:
    with db.transaction(write=False) as session:
        rows = session.scalars(
            select(Notification).where(Notification.workspace_id == workspace_id).order_by(Notification.id)
        )
        return [
            (row.user_id, row.kind, row.dedupe_key, row.params, row.link, row.in_app, row.email_state, row.read_at)
            for row in rows
        ]


def _frames(socket: Any, count: int) -> list[tuple[Any, ...]]:
    """The next `count` notification frames on `socket`: (unread count, kind, title, body)."""
    frames = []
    while len(frames) < count:
        frame = socket.receive_json()
        if frame["type"] == "notification.created":
            shown = frame["data"]["notification"]
            frames.append((frame["data"]["unread"], shown["kind"], shown["title"], shown["body"]))
    return frames


def test_a_read_as_one_batch_notifies_as_one_event_at_a_time(client: TestClient, db: Database, tenant: Tenant) -> None:
    start = dispatcher.newest_event_id(db)
    with events_tasks.nudges_paused():  # the events wait for the test to feed them
        visitor = new_visitor(client, make_webchat(db, tenant))
        visitor.say("hola")
        conversation_id = client.get("/api/v1/conversations", headers=tenant.headers).json()["items"][0]["id"]
        assigned = client.post(
            f"/api/v1/conversations/{conversation_id}/assign", headers=tenant.headers, json={"user_id": tenant.agent_id}
        )
        assert assigned.status_code == 200, assigned.text
        for text in ("¿Siguen ahí?", "Necesito la factura", "Gracias"):
            visitor.say(text)
        comment = client.post(
            f"/api/v1/conversations/{conversation_id}/comments",
            headers=tenant.headers,
            json={"text": "Mírenlo, por favor", "mentions": [tenant.agent_id, tenant.manager_id]},
        )
        assert comment.status_code == 201, comment.text
    with db.transaction(write=False) as session:
        events = list(
            session.scalars(
                select(EventRecord)
                .where(EventRecord.id > start, EventRecord.type.in_(sorted(feed.TYPES)))
                .order_by(EventRecord.id)
            )
        )
        session.expunge_all()
    agent = sign_in(db, tenant, Role.AGENT)

    def fed(feed_them: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        with db.transaction() as session:
            session.execute(delete(Notification).where(Notification.workspace_id == tenant.workspace_id))
        with client.websocket_connect("/ws?scope=me", headers={"cookie": agent.headers["Cookie"]}) as socket:
            assert socket.receive_json()["type"] == "hello"
            feed_them()
            written = _written(db, tenant.workspace_id)
            return written, _frames(socket, sum(1 for row in written if row[0] == tenant.agent_id))

    batched, batched_frames = fed(lambda: feed.handle_batch(events))
    one_by_one, one_by_one_frames = fed(lambda: [feed.handle(event) for event in events])

    assert batched == one_by_one
    assert batched_frames == one_by_one_frames
    # Each frame counts the rows up to its own. The first message tells the agent too: the consumer
    # reads the conversation as it is when fed, assigned by then (one event at a time does the same).
    assert [(unread, kind) for unread, kind, _title, _body in batched_frames] == [
        (1, "new_message"),
        (2, "assigned"),
        (3, "new_message"),
        (4, "new_message"),
        (5, "new_message"),
        (6, "mentioned"),
    ]
    assert [body for *_, body in batched_frames[2:5]] == ["¿Siguen ahí?", "Necesito la factura", "Gracias"]
    assert [(user_id, kind) for user_id, kind, *_ in batched if user_id == tenant.manager_id] == [
        (tenant.manager_id, "mentioned")
    ]


def test_a_read_fed_again_as_a_batch_writes_nothing_new(client: TestClient, db: Database, tenant: Tenant) -> None:
    start = dispatcher.newest_event_id(db)
    with events_tasks.nudges_paused():
        visitor = new_visitor(client, make_webchat(db, tenant))
        visitor.say("hola")
        conversation_id = client.get("/api/v1/conversations", headers=tenant.headers).json()["items"][0]["id"]
        client.post(
            f"/api/v1/conversations/{conversation_id}/assign", headers=tenant.headers, json={"user_id": tenant.agent_id}
        )
        visitor.say("¿Hola?")
    with db.transaction(write=False) as session:
        events = list(session.scalars(select(EventRecord).where(EventRecord.id > start).order_by(EventRecord.id)))
        session.expunge_all()
    events = [event for event in events if event.type in feed.TYPES]
    feed.handle_batch(events)
    first = _written(db, tenant.workspace_id)
    feed.handle_batch(events)  # as after a crash before the consumer stored its position
    assert _written(db, tenant.workspace_id) == first
    told = [kind for user_id, kind, *_ in first if user_id == tenant.agent_id]
    assert told == ["new_message", "assigned", "new_message"]


def test_an_error_and_its_recovery_in_one_read_end_as_one_event_at_a_time(db: Database, tenant: Tenant) -> None:
    """A channel's error and its recovery read together: the error's notifications are marked
    ended by the recovery, as when each event has its own transaction."""
    first = dispatcher.newest_event_id(db) + 1_000_000
    channel = {"channel_id": 4242, "name": "WhatsApp ventas"}
    events = [
        EventRecord(
            id=first,
            workspace_id=tenant.workspace_id,
            type=EventType.CHANNEL_ERRORED,
            payload={**channel, "error": "La cuenta no tiene método de pago"},
        ),
        EventRecord(id=first + 1, workspace_id=tenant.workspace_id, type=EventType.CHANNEL_RECOVERED, payload=channel),
    ]

    def told(feed_them: Any) -> list[tuple[int, str, bool]]:
        with db.transaction() as session:
            session.execute(delete(Notification).where(Notification.workspace_id == tenant.workspace_id))
        feed_them()
        return [(user_id, kind, read_at is None) for user_id, kind, *_, read_at in _written(db, tenant.workspace_id)]

    batched = told(lambda: feed.handle_batch(events))
    assert batched == told(lambda: [feed.handle(event) for event in events])
    # The owner and the manager look after channels: the error is over, the recovery unread.
    assert sorted(batched) == sorted(
        (user_id, kind, kind == "channel_recovered")
        for user_id in (tenant.owner_id, tenant.manager_id)
        for kind in ("channel_error", "channel_recovered")
    )
