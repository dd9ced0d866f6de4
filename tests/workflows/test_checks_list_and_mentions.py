"""Checks and views not covered elsewhere, on both databases: workflows that would start each other
in a cycle (or start themselves) are refused with a 422 naming the field; the workflow list's
"runs in progress" and "last error" columns; an internal comment step's @mention reaching the
named teammate."""

import html
import re
import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.channels.models import Channel
from tertulia.conversations.models import Direction, Mention, Message
from tertulia.events import dispatcher
from tertulia.kit.db import Database
from tertulia.notifications import feed as notifications_feed
from tertulia.notifications.models import Notification
from tertulia.notifications.texts import title
from tertulia.users.models import User
from tertulia.web.i18n import Formatter
from tertulia.workflows.models import Workflow
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as
from tests.workflows.support import customer_writes, feed, publish, runs

pytestmark = pytest.mark.usefixtures("no_background_work")

TAG = {"id": "mark", "type": "add_tags", "config": {"tags": ["done"]}}


def manual(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"trigger": {"type": "manual"}, "steps": list(steps) or [TAG]}


def starts(workflow_id: int) -> dict[str, Any]:
    return {"id": "start", "type": "start_workflow", "config": {"workflow_id": workflow_id}}


def create(client: TestClient, tenant: Tenant, name: str, definition: dict[str, Any]) -> int:
    created = client.post("/api/v1/workflows", headers=tenant.headers, json={"name": name, "definition": definition})
    assert created.status_code == 201, created.text
    workflow_id: int = created.json()["id"]
    return workflow_id


def publish_answer(client: TestClient, tenant: Tenant, workflow_id: int) -> Any:
    return client.post(f"/api/v1/workflows/{workflow_id}/publish", headers=tenant.headers)


def test_a_workflow_that_starts_itself_is_refused_on_save(client: TestClient, tenant: Tenant) -> None:
    workflow_id = create(client, tenant, "Itself", manual())
    answer = client.patch(
        f"/api/v1/workflows/{workflow_id}",
        headers=tenant.headers,
        json={"definition": manual(TAG | {"next": "start"}, starts(workflow_id))},
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["details"] == {"steps[1].config.workflow_id": "a workflow cannot start itself"}
    assert "a workflow cannot start itself" in error["message"]
    # Nothing was saved: the draft is still the first definition, and it publishes.
    exported = client.get(f"/api/v1/workflows/{workflow_id}/export", headers=tenant.headers).json()
    assert exported["definition"]["steps"] == [TAG]
    assert publish_answer(client, tenant, workflow_id).status_code == 200


def test_workflows_that_would_start_each_other_in_a_cycle_are_refused_on_publish(
    client: TestClient, tenant: Tenant
) -> None:
    # A starts B, B starts C: a chain, published from its end.
    third = create(client, tenant, "C", manual())
    second = create(client, tenant, "B", manual(starts(third)))
    first = create(client, tenant, "A", manual(starts(second)))
    for workflow_id in (third, second, first):
        assert publish_answer(client, tenant, workflow_id).status_code == 200
    # C edited to start A closes the cycle A → B → C → A: saved as a draft, refused on publish.
    edited = client.patch(
        f"/api/v1/workflows/{third}", headers=tenant.headers, json={"definition": manual(starts(first))}
    )
    assert edited.status_code == 200, edited.text
    refused = publish_answer(client, tenant, third)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["details"] == {"definition": "workflows would start each other in a cycle"}
    got = client.get(f"/api/v1/workflows/{third}", headers=tenant.headers).json()
    assert (got["status"], got["published_version"], got["has_draft"]) == ("published", 1, True)
    # Two that start each other: B edited to start A.
    client.patch(f"/api/v1/workflows/{second}", headers=tenant.headers, json={"definition": manual(starts(first))})
    assert publish_answer(client, tenant, second).json()["error"]["details"] == {
        "definition": "workflows would start each other in a cycle"
    }
    # Once A no longer starts B, the cycle is gone and B publishes.
    client.patch(f"/api/v1/workflows/{first}", headers=tenant.headers, json={"definition": manual()})
    assert publish_answer(client, tenant, first).status_code == 200
    assert publish_answer(client, tenant, second).status_code == 200


def _rows(page: str) -> dict[str, list[str]]:
    """The workflow list's rows by name: each cell's text, tags stripped, entities decoded and spaces
    collapsed."""
    found: dict[str, list[str]] = {}
    for row in re.findall(r'<tr data-testid="workflow-row">(.*?)</tr>', page, re.DOTALL):
        cells = [
            " ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)
        ]
        found[cells[0]] = cells[1:]
    return found


def test_the_list_shows_runs_in_progress_and_the_last_error(
    client: TestClient, db: Database, tenant: Tenant, channel: Channel
) -> None:
    waiting = publish(
        db,
        tenant,
        {
            "trigger": {"type": "tag_added", "config": {"tags": ["vip"]}},
            "steps": [{"id": "wait", "type": "wait", "config": {"duration": {"amount": 1, "unit": "hours"}}}],
        },
        name="Espera",
    )
    failing = publish(
        db,
        tenant,
        {
            "trigger": {"type": "tag_added", "config": {"tags": ["vip"]}},
            "steps": [
                {"id": "call", "type": "http_request", "config": {"method": "GET", "url": "http://127.0.0.1:9/x"}}
            ],
        },
        name="Llamada",
    )
    publish(db, tenant, manual(), name="Quieta")
    for sender in ("l1", "l2"):
        contact_id = customer_writes(db, channel, sender, "hola")
        tagged = client.post(f"/api/v1/contacts/id:{contact_id}/tags", headers=tenant.headers, json={"tags": ["vip"]})
        assert tagged.status_code == 200, tagged.text
    feed(db, allow_private=False)  # the request to a loopback address is refused: the run fails
    assert [r.status for r in runs(db, waiting)] == ["waiting", "waiting"]
    assert [r.status for r in runs(db, failing)] == ["failed", "failed"]
    with db.transaction(write=False) as session:
        stored = session.get(Workflow, failing)
        assert stored is not None
        last_error = stored.last_error
    assert last_error

    sign_in_as(client, db, tenant.manager_id, "manager-password")
    rows = _rows(client.get("/workflows").text)
    assert rows["Espera"][1:] == ["2", "—"]
    assert rows["Quieta"][1:] == ["0", "—"]
    assert rows["Llamada"][1] == "0"
    assert rows["Llamada"][2].startswith(" ".join(last_error.split()))


def _notifications(db: Database, user_id: int) -> list[tuple[str, dict[str, Any]]]:
    newest = dispatcher.newest_event_id(db)
    deadline = time.monotonic() + 15
    while True:
        dispatcher.dispatch(db, [notifications_feed.CONSUMER])
        status = {s.name: s for s in dispatcher.consumer_status(db)}[notifications_feed.CONSUMER_NAME]
        if status.last_event_id >= newest:
            break
        assert time.monotonic() < deadline, "the notifications consumer did not catch up"
        time.sleep(0.02)
    with db.transaction(write=False) as session:
        rows = session.scalars(select(Notification).where(Notification.user_id == user_id).order_by(Notification.id))
        return [(row.kind, dict(row.params)) for row in rows]


def test_an_internal_comment_step_mentions_the_named_teammate(
    client: TestClient, db: Database, tenant: Tenant, channel: Channel
) -> None:
    with db.transaction() as session:
        manager = session.get(User, tenant.manager_id)
        assert manager is not None
        manager.first_name, manager.last_name = "Marta", "Ruiz"
    workflow_id = publish(
        db,
        tenant,
        {
            "trigger": {"type": "tag_added", "config": {"tags": ["vip"]}},
            "steps": [
                {
                    "id": "note",
                    "type": "add_comment",
                    "config": {"text": "Cliente VIP {{contact.phone}}: @Marta Ruiz, llámale"},
                }
            ],
        },
    )
    contact_id = customer_writes(db, channel, "m1", "hola")
    client.post(f"/api/v1/contacts/id:{contact_id}/tags", headers=tenant.headers, json={"tags": ["vip"]})
    feed(db)
    assert [r.status for r in runs(db, workflow_id)] == ["finished"]
    with db.transaction(write=False) as session:
        [comment] = session.scalars(
            select(Message).where(Message.contact_id == contact_id, Message.direction == Direction.COMMENT)
        ).all()
        assert comment.payload["mentions"] == [tenant.manager_id]
        mentions = session.scalars(select(Mention.user_id).where(Mention.message_id == comment.id)).all()
    assert list(mentions) == [tenant.manager_id]
    assert [kind for kind, _ in _notifications(db, tenant.manager_id)] == ["mentioned"]
    assert _notifications(db, tenant.agent_id) == []
    # No person wrote the note: the notification says a workflow did, in the reader's language.
    with db.transaction(write=False) as session:
        [notification] = session.scalars(select(Notification).where(Notification.user_id == tenant.manager_id))
    assert title(notification, Formatter("es", ZoneInfo("UTC"))) == "Un flujo de trabajo te mencionó"
    assert title(notification, Formatter("en", ZoneInfo("UTC"))) == "A workflow mentioned you"
