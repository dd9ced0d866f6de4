"""In-app notifications: who is told what (per kind), preferences, reading, marking read, the bell's
live count, and a re-fed event writing nothing new (SQLite and PostgreSQL)."""

import time
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.broadcasts.service import DraftFields, do_create_broadcast
from tertulia.conversations.models import Conversation
from tertulia.events import dispatcher
from tertulia.events.models import EventRecord
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tertulia.notifications import feed, waiting
from tertulia.notifications.models import Notification
from tertulia.users.models import Role
from tertulia.users.teams import do_create_team, do_set_team_members
from tests.conftest import Tenant
from tests.conversations.support import Agent, make_webchat, new_visitor, sign_in

pytestmark = pytest.mark.usefixtures("immediate_queue")


def _conversation(client: TestClient, db: Database, tenant: Tenant, text: str = "hola") -> tuple[int, Any]:
    visitor = new_visitor(client, make_webchat(db, tenant))
    visitor.say(text)
    response = client.get("/api/v1/conversations", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return int(response.json()["items"][0]["id"]), visitor


def _caught_up(db: Database, timeout: float = 15.0) -> None:
    """Feed the notifications consumer every event written so far (the after-commit dispatch may
    still be running in another thread: wait for its position to reach the newest event)."""
    newest = dispatcher.newest_event_id(db)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dispatcher.dispatch(db, [feed.CONSUMER])
        status = {s.name: s for s in dispatcher.consumer_status(db)}[feed.CONSUMER_NAME]
        if status.last_event_id >= newest:
            return
        time.sleep(0.02)
    raise AssertionError("the notifications consumer did not catch up")


def _rows(db: Database, user_id: int) -> list[tuple[str, str, bool]]:
    _caught_up(db)
    with db.transaction(write=False) as session:
        rows = session.scalars(select(Notification).where(Notification.user_id == user_id).order_by(Notification.id))
        return [(row.kind, row.link, row.read_at is None) for row in rows]


def _contact_id(db: Database, conversation_id: int) -> int:
    with db.transaction(write=False) as session:
        return int(session.scalars(select(Conversation.contact_id).where(Conversation.id == conversation_id)).one())


def _api(client: TestClient, agent: Agent, method: str = "GET", path: str = "") -> Any:
    _caught_up(client.app.state.db)  # type: ignore[attr-defined]
    headers = {"Cookie": agent.headers["Cookie"], "X-CSRF-Token": agent.csrf}
    response = client.request(method, f"/api/v1/notifications{path}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_mention_notifies_the_mentioned_teammate_only(client: TestClient, db: Database, tenant: Tenant) -> None:
    conversation_id, _visitor = _conversation(client, db, tenant)
    manager = sign_in(db, tenant, Role.MANAGER)
    response = client.post(
        f"/api/v1/conversations/{conversation_id}/comments",
        headers={"Cookie": manager.headers["Cookie"], "X-CSRF-Token": manager.csrf},
        json={"text": "¿Lo ves tú?", "mentions": [tenant.agent_id, tenant.manager_id]},
    )
    assert response.status_code == 201, response.text
    assert _rows(db, tenant.agent_id) == [("mentioned", f"/messages/{conversation_id}", True)]
    assert _rows(db, tenant.manager_id) == []  # the author mentioning themselves is not told
    listed = _api(client, sign_in(db, tenant))
    assert listed["unread"] == 1
    assert listed["data"][0]["body"] == "¿Lo ves tú?"
    assert listed["data"][0]["title"].endswith("mentioned you")


def test_assignment_notifies_the_assignee_unless_they_took_it(client: TestClient, db: Database, tenant: Tenant) -> None:
    conversation_id, _visitor = _conversation(client, db, tenant)
    agent = sign_in(db, tenant)
    taken = client.post(
        f"/api/v1/conversations/{conversation_id}/assign",
        headers={"Cookie": agent.headers["Cookie"], "X-CSRF-Token": agent.csrf},
        json={"user_id": tenant.agent_id},
    )
    assert taken.status_code == 200, taken.text
    assert _rows(db, tenant.agent_id) == []
    given = client.post(
        f"/api/v1/conversations/{conversation_id}/assign", headers=tenant.headers, json={"user_id": tenant.manager_id}
    )
    assert given.status_code == 200, given.text
    assert [kind for kind, _link, _unread in _rows(db, tenant.manager_id)] == ["assigned"]


def test_a_customer_message_notifies_the_assignee(client: TestClient, db: Database, tenant: Tenant) -> None:
    conversation_id, visitor = _conversation(client, db, tenant)
    assigned = client.post(
        f"/api/v1/conversations/{conversation_id}/assign", headers=tenant.headers, json={"user_id": tenant.agent_id}
    )
    assert assigned.status_code == 200, assigned.text
    visitor.say("¿Sigue ahí?")
    rows = _rows(db, tenant.agent_id)
    assert [kind for kind, _link, _unread in rows] == ["assigned", "new_message"]
    assert _api(client, sign_in(db, tenant))["data"][0]["body"] == "¿Sigue ahí?"


def test_a_conversation_left_to_a_team_notifies_its_members(client: TestClient, db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        team = do_create_team(session, tenant.actor(), "Ventas")
        do_set_team_members(session, tenant.actor(), team.id, [tenant.agent_id, tenant.manager_id])
        team_id = team.id
    conversation_id, _visitor = _conversation(client, db, tenant)
    response = client.post(
        f"/api/v1/conversations/{conversation_id}/assign", headers=tenant.headers, json={"team_id": team_id}
    )
    assert response.status_code == 200, response.text
    for user_id in (tenant.agent_id, tenant.manager_id):
        assert [kind for kind, _link, _unread in _rows(db, user_id)] == ["unassigned_in_team"]
    assert _rows(db, tenant.owner_id) == []
    title = _api(client, sign_in(db, tenant))["data"][0]["title"]
    assert "Ventas" in title


def test_a_refed_event_writes_nothing_new(client: TestClient, db: Database, tenant: Tenant) -> None:
    conversation_id, _visitor = _conversation(client, db, tenant)
    client.post(
        f"/api/v1/conversations/{conversation_id}/assign", headers=tenant.headers, json={"user_id": tenant.agent_id}
    )
    assert len(_rows(db, tenant.agent_id)) == 1
    with db.transaction(write=False) as session:
        event = session.scalars(
            select(EventRecord).where(EventRecord.type == "conversation.assigned").order_by(EventRecord.id.desc())
        ).first()
        assert event is not None
        session.expunge(event)
    feed.handle(event)
    feed.handle(event)
    assert len(_rows(db, tenant.agent_id)) == 1


def test_marking_read_one_and_all_and_only_ones_own(client: TestClient, db: Database, tenant: Tenant) -> None:
    conversation_id, _visitor = _conversation(client, db, tenant)
    for text in ("uno", "dos", "tres"):
        client.post(
            f"/api/v1/conversations/{conversation_id}/comments",
            headers=tenant.headers,
            json={"text": text, "mentions": [tenant.agent_id]},
        )
    agent, manager = sign_in(db, tenant), sign_in(db, tenant, Role.MANAGER)
    listed = _api(client, agent)
    assert listed["unread"] == 3
    first = listed["data"][0]["id"]
    # Another person's notification is not found, and a token has no person to notify.
    other = client.post(
        f"/api/v1/notifications/{first}/read",
        headers={"Cookie": manager.headers["Cookie"], "X-CSRF-Token": manager.csrf},
    )
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "not_found"
    assert client.get("/api/v1/notifications", headers=tenant.headers).status_code == 401
    assert _api(client, agent, "POST", f"/{first}/read")["read_at"] is not None
    assert _api(client, agent, "GET", "/unread") == {"unread": 2}
    assert _api(client, agent, "POST", "/read-all")["marked"] == 2
    assert _api(client, agent, "GET", "/unread") == {"unread": 0}
    assert _api(client, agent, "GET", "?unread=true")["data"] == []


def test_preferences_per_kind_turn_in_app_off(client: TestClient, db: Database, tenant: Tenant) -> None:
    agent = sign_in(db, tenant)
    page = client.get("/notifications/preferences", headers=agent.headers)
    assert page.status_code == 200
    assert 'name="mentioned__in_app"' in page.text
    form = {"csrf_token": agent.csrf, "assigned__in_app": "1", "assigned__browser": "1"}
    saved = client.post("/notifications/preferences", headers=agent.headers, data=form, follow_redirects=False)
    assert saved.status_code == 303
    conversation_id, _visitor = _conversation(client, db, tenant)
    client.post(
        f"/api/v1/conversations/{conversation_id}/comments",
        headers=tenant.headers,
        json={"text": "mira", "mentions": [tenant.agent_id]},
    )
    client.post(
        f"/api/v1/conversations/{conversation_id}/assign", headers=tenant.headers, json={"user_id": tenant.agent_id}
    )
    assert [kind for kind, _link, _unread in _rows(db, tenant.agent_id)] == ["assigned"]


def test_the_list_page_opens_the_conversation_and_marks_it_read(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    conversation_id, _visitor = _conversation(client, db, tenant)
    client.post(
        f"/api/v1/conversations/{conversation_id}/comments",
        headers=tenant.headers,
        json={"text": "mira esto", "mentions": [tenant.agent_id]},
    )
    _caught_up(db)  # the comment's nudge may run on a timer thread, after the page is asked for
    agent = sign_in(db, tenant)
    page = client.get("/notifications", headers=agent.headers)
    assert page.status_code == 200
    assert 'data-testid="notification"' in page.text
    notification_id = _api(client, agent)["data"][0]["id"]
    opened = client.post(
        f"/notifications/{notification_id}/open",
        headers=agent.headers,
        data={"csrf_token": agent.csrf},
        follow_redirects=False,
    )
    assert opened.status_code == 303
    assert opened.headers["location"] == f"/messages/{conversation_id}"
    assert _api(client, agent, "GET", "/unread") == {"unread": 0}


def test_the_bell_count_is_pushed_to_the_persons_sockets(client: TestClient, db: Database, tenant: Tenant) -> None:
    conversation_id, _visitor = _conversation(client, db, tenant)
    agent = sign_in(db, tenant)
    with client.websocket_connect("/ws?scope=me", headers={"cookie": agent.headers["Cookie"]}) as socket:
        assert socket.receive_json()["type"] == "hello"
        client.post(
            f"/api/v1/conversations/{conversation_id}/comments",
            headers=tenant.headers,
            json={"text": "¿me ayudas?", "mentions": [tenant.agent_id]},
        )
        _caught_up(db)
        for _ in range(10):
            frame = socket.receive_json()
            if frame["type"] == "notification.created":
                break
        assert frame["user_id"] == tenant.agent_id
        assert frame["data"]["unread"] == 1
        assert frame["data"]["notification"]["link"] == f"/messages/{conversation_id}"
        assert frame["data"]["notification"]["browser"] is True


def test_a_customer_waiting_too_long_is_told_to_the_assignee_once_per_wait(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    conversation_id, visitor = _conversation(client, db, tenant)
    client.post(
        f"/api/v1/conversations/{conversation_id}/assign", headers=tenant.headers, json={"user_id": tenant.agent_id}
    )
    visitor.say("¿Hola?")
    start = len(_rows(db, tenant.agent_id))
    with travel(timedelta(minutes=waiting.WAITING_MINUTES - 1)):
        assert waiting.notify_waiting(db, utcnow(), lambda: None) == 0
    with travel(timedelta(minutes=waiting.WAITING_MINUTES + 1)):
        assert waiting.notify_waiting(db, utcnow(), lambda: None) == 1
        assert waiting.notify_waiting(db, utcnow(), lambda: None) == 0  # once per wait
    assert [kind for kind, _link, _unread in _rows(db, tenant.agent_id)][start:] == ["waiting"]
    # A reply ends the wait; a note does not.
    client.post(
        f"/api/v1/conversations/{conversation_id}/comments", headers=tenant.headers, json={"text": "nota interna"}
    )
    visitor.say("¿Alguien?")
    _caught_up(db)
    with travel(timedelta(minutes=2 * waiting.WAITING_MINUTES + 2)):
        assert waiting.notify_waiting(db, utcnow(), lambda: None) == 1
    reply = client.post(
        f"/api/v1/conversations/{conversation_id}/messages", headers=tenant.headers, json={"text": "¡Aquí estamos!"}
    )
    assert reply.status_code == 201, reply.text
    with travel(timedelta(minutes=4 * waiting.WAITING_MINUTES)):
        assert waiting.notify_waiting(db, utcnow(), lambda: None) == 0
    title = _api(client, sign_in(db, tenant))["data"][0]["title"]
    assert (
        title == f"#{_contact_id(db, conversation_id)} has waited {2 * waiting.WAITING_MINUTES + 2} minutes for a reply"
    )


@pytest.mark.parametrize(
    ("event_type", "kind", "words"),
    [
        ("broadcast.completed", "broadcast_finished", "finished sending"),
        ("broadcast.failed", "broadcast_failed", "failed"),
    ],
)
def test_a_broadcast_ending_tells_whoever_created_it(
    client: TestClient, db: Database, tenant: Tenant, event_type: str, kind: str, words: str
) -> None:
    with db.transaction() as session:
        broadcast = do_create_broadcast(session, tenant.actor(Role.MANAGER), DraftFields(name="Rebajas de enero"))
        broadcast_id = broadcast.id
    # The event as the sender records it (broadcasts.sender), fed to the consumer as the log would.
    event = EventRecord(
        id=10_000 + len(event_type),
        workspace_id=tenant.workspace_id,
        type=event_type,
        actor="system",
        payload={"broadcast_id": broadcast_id, "name": "Rebajas de enero", "status": "x", "reason": "empty_audience"},
        created_at=utcnow(),
    )
    feed.handle(event)
    feed.handle(event)
    rows = _rows(db, tenant.manager_id)
    assert rows == [(kind, f"/broadcasts/{broadcast_id}", True)]
    assert _rows(db, tenant.owner_id) == []
    title = _api(client, sign_in(db, tenant, Role.MANAGER))["data"][0]["title"]
    assert title == f"Broadcast Rebajas de enero {words}"
