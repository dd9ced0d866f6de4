"""Notification emails through the mail outbox: only while the person is away or offline, one each or
a digest, and a signed one-click way out per kind (SQLite and PostgreSQL)."""

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tertulia.notifications import emails
from tertulia.notifications.models import EmailMode, Notification, NotificationPreference
from tertulia.users.models import ActivityStatus, User
from tertulia.users.presence import set_shown_status
from tests.conftest import Tenant
from tests.conversations.support import make_webchat, new_visitor, sign_in
from tests.notifications.test_notifications import _caught_up
from tests.users.helpers import outbox
from tests.web.helpers import csrf_from

pytestmark = pytest.mark.usefixtures("immediate_queue")
BASE = "http://127.0.0.1:8000"


def _email(db: Database, user_id: int) -> str:
    with db.transaction(write=False) as session:
        user = session.get(User, user_id)
        assert user is not None
        return user.email


def _show(db: Database, user_id: int, status: ActivityStatus) -> None:
    with db.transaction() as session:
        user = session.get(User, user_id)
        assert user is not None
        set_shown_status(session, user, status)


def _mention(client: TestClient, db: Database, tenant: Tenant, conversation_id: int, text: str) -> None:
    response = client.post(
        f"/api/v1/conversations/{conversation_id}/comments",
        headers=tenant.headers,
        json={"text": text, "mentions": [tenant.agent_id]},
    )
    assert response.status_code == 201, response.text
    _caught_up(db)


def _conversation(client: TestClient, db: Database, tenant: Tenant) -> int:
    new_visitor(client, make_webchat(db, tenant)).say("hola")
    return int(client.get("/api/v1/conversations", headers=tenant.headers).json()["items"][0]["id"])


def _states(db: Database, user_id: int) -> list[str | None]:
    with db.transaction(write=False) as session:
        return list(
            session.scalars(
                select(Notification.email_state).where(Notification.user_id == user_id).order_by(Notification.id)
            )
        )


def test_an_offline_person_gets_the_mention_by_email_once(client: TestClient, db: Database, tenant: Tenant) -> None:
    conversation_id = _conversation(client, db, tenant)
    _mention(client, db, tenant, conversation_id, "¿Revisas el pedido 42?")
    mails = outbox(db, _email(db, tenant.agent_id))
    assert len(mails) == 1
    assert mails[0].subject.endswith("mentioned you")
    assert "¿Revisas el pedido 42?" in mails[0].body
    assert f"/messages/{conversation_id}" in mails[0].body
    assert re.search(rf"/notifications/unsubscribe/{tenant.agent_id}/mentioned/[A-Za-z0-9_-]{{43}}", mails[0].body)
    assert emails.send_due(db, utcnow(), BASE) == 0  # sent is sent
    assert _states(db, tenant.agent_id) == ["sent"]


def test_an_online_person_is_not_emailed_and_what_they_read_never_is(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    _show(db, tenant.agent_id, ActivityStatus.ONLINE)
    conversation_id = _conversation(client, db, tenant)
    _mention(client, db, tenant, conversation_id, "uno")
    _mention(client, db, tenant, conversation_id, "dos")
    assert outbox(db, _email(db, tenant.agent_id)) == []
    agent = sign_in(db, tenant)
    first = client.get("/api/v1/notifications", headers=agent.headers).json()["data"][-1]["id"]
    read = client.post(
        f"/api/v1/notifications/{first}/read", headers={"Cookie": agent.headers["Cookie"], "X-CSRF-Token": agent.csrf}
    )
    assert read.status_code == 200
    _show(db, tenant.agent_id, ActivityStatus.AWAY)
    assert emails.send_due(db, utcnow(), BASE) == 1
    mails = outbox(db, _email(db, tenant.agent_id))
    assert len(mails) == 1
    assert "dos" in mails[0].body
    assert "uno" not in mails[0].body
    assert _states(db, tenant.agent_id) == ["skipped", "sent"]


def test_a_digest_gathers_what_waited_at_most_once_an_hour(client: TestClient, db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        emails.email_settings(session, tenant.agent_id).mode = EmailMode.DIGEST.value
    conversation_id = _conversation(client, db, tenant)
    _mention(client, db, tenant, conversation_id, "primero")
    _mention(client, db, tenant, conversation_id, "segundo")
    mails = outbox(db, _email(db, tenant.agent_id))
    # The first mention went out alone as the first digest; the second waits for the next hour.
    assert len(mails) == 1
    _mention(client, db, tenant, conversation_id, "tercero")
    assert len(outbox(db, _email(db, tenant.agent_id))) == 1
    with travel(timedelta(hours=1, minutes=1)):
        assert emails.send_due(db, utcnow(), BASE) == 1
    mails = outbox(db, _email(db, tenant.agent_id))
    assert len(mails) == 2
    assert "segundo" in mails[1].body
    assert "tercero" in mails[1].body
    assert "2" in mails[1].subject


def test_the_unsubscribe_link_stops_that_kind_without_signing_in(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    conversation_id = _conversation(client, db, tenant)
    _mention(client, db, tenant, conversation_id, "hola")
    body = outbox(db, _email(db, tenant.agent_id))[0].body
    found = re.search(r"https?://\S+(/notifications/unsubscribe/\S+)", body)
    assert found
    path = found.group(1)
    forged = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    assert client.get(forged).status_code == 404
    assert client.get(path.replace("/mentioned/", "/assigned/")).status_code == 404
    page = client.get(path)
    assert page.status_code == 200
    assert 'data-testid="unsubscribe-button"' in page.text
    done = client.post(path, data={"csrf_token": csrf_from(page)})
    assert done.status_code == 200
    assert 'data-testid="unsubscribed"' in done.text
    with db.transaction(write=False) as session:
        row = session.scalars(
            select(NotificationPreference).where(
                NotificationPreference.user_id == tenant.agent_id, NotificationPreference.kind == "mentioned"
            )
        ).one()
        assert (row.in_app, row.email) == (True, False)
    _mention(client, db, tenant, conversation_id, "otra vez")
    assert len(outbox(db, _email(db, tenant.agent_id))) == 1  # still in the app, no more emails
    assert _states(db, tenant.agent_id) == ["sent", None]
