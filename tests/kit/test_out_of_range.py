"""Integers beyond what the database can hold are 422s, not 500s (SQLite and PostgreSQL).

SQLite raises OverflowError above 64 bits and PostgreSQL "bigint out of range"; both used to escape
as 500s from any id, cursor or filter value. Bounded path parameters refuse them up front, and the
driver's range errors that still escape are mapped to 422 wherever they come from.
"""

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.app import create_app
from tertulia.contacts.models import Contact, FieldType
from tertulia.contacts.service import do_create_contact, do_create_custom_field
from tertulia.kit.db import Database
from tertulia.kit.http import DbSession
from tertulia.kit.settings import Settings
from tertulia.users.teams import do_create_team
from tests.conftest import Tenant
from tests.conversations.support import make_webchat, new_visitor
from tests.web.helpers import sign_in_as

BIG = 99999999999999999999
BIG_CURSOR = base64.urlsafe_b64encode(json.dumps({"id": BIG}).encode()).decode().rstrip("=")


def _assert_out_of_range(response: Any) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["details"]


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", f"/api/v1/segments/{BIG}", None),
        ("PATCH", f"/api/v1/segments/{BIG}", {"name": "x"}),
        ("DELETE", f"/api/v1/segments/{BIG}", None),
        ("GET", f"/api/v1/segments/{BIG}/contacts", None),
        ("GET", f"/api/v1/segments/1/contacts?cursor={BIG_CURSOR}", None),
        ("GET", f"/api/v1/contacts?cursor={BIG_CURSOR}", None),
        ("GET", f"/api/v1/contacts/id:{BIG}", None),
        ("POST", f"/api/v1/contacts/id:1/identities/{BIG}/split", None),
        ("POST", "/api/v1/segments", {"name": "s", "copy_of": BIG}),
        ("POST", "/api/v1/contacts", {"first_name": "x", "assignee_id": BIG}),
        (
            "POST",
            "/api/v1/segments/preview",
            {"filter": {"groups": [{"conditions": [{"category": "segment", "operator": "in", "value": BIG}]}]}},
        ),
        (
            "POST",
            "/api/v1/segments/preview",
            {
                "filter": {
                    "groups": [
                        {
                            "conditions": [
                                {"category": "contact_field", "field": "assignee", "operator": "is", "value": BIG}
                            ]
                        }
                    ]
                }
            },
        ),
    ],
)
def test_review_reproductions_are_422(
    client: TestClient, tenant: Tenant, method: str, url: str, body: dict[str, Any] | None
) -> None:
    _assert_out_of_range(client.request(method, url, headers=tenant.headers, json=body))


def test_bounded_ids_are_in_the_schema(client: TestClient) -> None:
    parameters = client.get("/api/openapi.json").json()["paths"]["/api/v1/segments/{segment_id}"]["get"]["parameters"]
    schema = next(p for p in parameters if p["name"] == "segment_id")["schema"]
    assert (schema["minimum"], schema["maximum"]) == (1, 2**63 - 1)


@pytest.fixture
def client_with_raw_query(db: Database, settings: Settings) -> Iterator[TestClient]:
    app: FastAPI = create_app(settings, db)

    def contact_by_raw_id(session: DbSession, contact_id: int) -> dict[str, int]:
        # Unbounded on purpose: the database driver itself refuses the value.
        found = session.scalar(select(Contact.id).where(Contact.id == contact_id))
        return {"found": found or 0}

    app.add_api_route("/api/test-only/contacts/{contact_id}", contact_by_raw_id, methods=["GET", "POST"])
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_driver_range_errors_from_anywhere_are_422(client_with_raw_query: TestClient, method: str) -> None:
    _assert_out_of_range(client_with_raw_query.request(method, f"/api/test-only/contacts/{BIG}"))
    assert client_with_raw_query.request(method, "/api/test-only/contacts/1").json() == {"found": 0}


def test_anonymous_widget_history_with_a_huge_cursor_is_422(client: TestClient, db: Database, tenant: Tenant) -> None:
    # The review's anonymous trigger of a 500: only the public widget key is needed.
    visitor = new_visitor(client, make_webchat(db, tenant))
    visitor.say("hi")
    response = client.get(f"/widget/{visitor.key}/messages?before_id={BIG}", headers=visitor.headers)
    _assert_out_of_range(response)


# ----- every other id, cursor, position and numeric filter value (API, widget, pages) ---------------

BIG_CONVERSATION_CURSOR = (
    base64.urlsafe_b64encode(json.dumps({"t": "2026-01-01T00:00:00+00:00", "id": BIG}).encode()).decode().rstrip("=")
)


def _filter_of(condition: dict[str, Any]) -> dict[str, Any]:
    return {"filter": {"groups": [{"conditions": [condition]}]}}


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("GET", f"/api/v1/channels/{BIG}", None, "channel_id"),
        ("PATCH", f"/api/v1/channels/{BIG}", {"name": "x"}, "channel_id"),
        ("DELETE", f"/api/v1/snippets/{BIG}", None, "snippet_id"),
        ("PATCH", f"/api/v1/snippets/{BIG}", {"text": "x"}, "snippet_id"),
        ("POST", f"/api/v1/snippets/{BIG}/render", {"conversation_id": 1}, "snippet_id"),
        ("POST", "/api/v1/snippets/1/render", {"conversation_id": BIG}, "conversation_id"),
        ("POST", "/api/v1/snippets", {"shortcut": "hi", "text": "x", "file_id": BIG}, "file_id"),
        ("DELETE", f"/api/v1/files/{BIG}", None, "file_id"),
        ("GET", f"/api/v1/files/{BIG}", None, "file_id"),
        ("GET", f"/api/v1/files?before_id={BIG}", None, "before_id"),
        ("DELETE", f"/api/v1/closing-categories/{BIG}", None, "category_id"),
        ("POST", "/api/v1/closing-categories", {"name": "x", "position": 3_000_000_000}, "position"),
        ("PATCH", "/api/v1/custom-fields/plan", {"position": 3_000_000_000}, "position"),
        ("GET", f"/api/v1/conversations/{BIG}", None, "conversation_id"),
        ("GET", f"/api/v1/conversations/{BIG}/messages", None, "conversation_id"),
        ("GET", f"/api/v1/conversations/1/messages?before_id={BIG}", None, "before_id"),
        ("POST", f"/api/v1/conversations/{BIG}/comments", {"text": "x"}, "conversation_id"),
        ("POST", f"/api/v1/conversations/{BIG}/read", {}, "conversation_id"),
        ("POST", f"/api/v1/conversations/{BIG}/assign", {}, "conversation_id"),
        ("POST", "/api/v1/conversations/1/assign", {"team_id": BIG}, "team_id"),
        ("POST", "/api/v1/conversations/1/assign", {"user_id": BIG}, "user_id"),
        ("POST", "/api/v1/conversations/1/close", {"category_id": BIG}, "category_id"),
        ("POST", "/api/v1/conversations/1/read", {"message_id": BIG}, "message_id"),
        ("POST", "/api/v1/conversations/1/messages", {"text": "x", "attachments": [BIG]}, "attachments.0"),
        ("POST", "/api/v1/conversations/1/comments", {"text": "x", "mentions": [BIG]}, "mentions.0"),
        ("GET", f"/api/v1/conversations?view=team&team_id={BIG}", None, "team_id"),
        ("GET", f"/api/v1/conversations?cursor={BIG_CONVERSATION_CURSOR}", None, "cursor"),
        (
            "POST",
            "/api/v1/contacts/id:1/messages",
            {"channel_id": BIG, "message": {"text": "x"}},
            "channel_id",
        ),
        ("GET", f"/api/v1/contacts/id:{BIG}/messages", None, "identifier"),
        ("GET", f"/api/v1/contacts/id:{BIG}", None, "identifier"),
        ("GET", f"/api/v1/contacts/id:{'9' * 5000}", None, "identifier"),  # past int()'s digit limit
        ("GET", f"/api/v1/workflows/{BIG}/export", None, "workflow_id"),
        ("POST", f"/api/v1/workflows/{BIG}/clone", None, "workflow_id"),
        ("DELETE", f"/api/v1/workflows/{BIG}", None, "workflow_id"),
        ("POST", f"/api/v1/workflows/{BIG}/run", {"contact": "id:1"}, "workflow_id"),
        ("POST", "/api/v1/workflows/1/run", {"contact": "id:1", "conversation_id": BIG}, "conversation_id"),
        ("POST", "/api/v1/workflows/1/run", {"contact": f"id:{BIG}"}, "identifier"),
        ("GET", f"/api/v1/workflows/1/runs?before={BIG}", None, "before"),
        ("POST", f"/hooks/workflows/{BIG}/secret", {"email": "a@example.com"}, "workflow_id"),
        ("POST", f"/hooks/workflows/{BIG}", {"email": "a@example.com"}, "workflow_id"),
        (
            "POST",
            "/api/v1/segments/preview",
            _filter_of({"category": "segment", "operator": "in", "value": BIG}),
            "filter.groups[0].conditions[0].value",
        ),
        (
            "POST",
            "/api/v1/segments/preview",
            _filter_of({"category": "contact_field", "field": "assignee", "operator": "is", "value": BIG}),
            "filter.groups[0].conditions[0].value",
        ),
        (
            "POST",
            "/api/v1/segments/preview",
            _filter_of({"category": "contact_field", "field": "score", "operator": "gt", "value": 10**400}),
            "filter.groups[0].conditions[0].value",
        ),
    ],
)
def test_ids_positions_and_filter_values_are_bounded_where_they_come_in(
    client: TestClient, tenant: Tenant, db: Database, method: str, url: str, body: dict[str, Any] | None, field: str
) -> None:
    with db.transaction() as session:
        do_create_custom_field(session, tenant.actor(), "plan", "Plan", FieldType.TEXT)
        do_create_custom_field(session, tenant.actor(), "score", "Score", FieldType.NUMBER)
    response = client.request(method, url, headers=tenant.headers, json=body)
    _assert_out_of_range(response)
    # Refused where it came in, naming the value, not by the database driver (details: "request").
    assert field in response.json()["error"]["details"], response.text


def test_the_upload_form_bounds_its_conversation_id(client: TestClient, tenant: Tenant) -> None:
    response = client.post(
        "/api/v1/files",
        headers=tenant.headers,
        files={"file": ("x.txt", b"hello", "text/plain")},
        data={"conversation_id": str(BIG)},
    )
    _assert_out_of_range(response)
    assert "conversation_id" in response.json()["error"]["details"]


def test_the_widget_bounds_before_id(client: TestClient, db: Database, tenant: Tenant) -> None:
    visitor = new_visitor(client, make_webchat(db, tenant))
    visitor.say("hola")
    response = client.get(f"/widget/{visitor.key}/messages?before_id={BIG}", headers=visitor.headers)
    _assert_out_of_range(response)
    assert "before_id" in response.json()["error"]["details"]


@pytest.mark.parametrize(
    ("method", "url", "data"),
    [
        ("GET", f"/contacts/{BIG}", None),
        ("GET", f"/contacts/{{contact}}?before={BIG}", None),
        ("GET", f"/contacts?after={BIG}", None),
        ("GET", f"/contacts/segments/{BIG}", None),
        ("GET", f"/contacts/segments/{BIG}/count", None),
        ("GET", f"/contacts/filter?segment={BIG}", None),
        ("GET", f"/contacts/export?segment={BIG}", None),
        ("GET", f"/contacts/import/{BIG}", None),
        ("GET", f"/messages/{BIG}", None),
        ("GET", f"/messages/contacts/{BIG}/panel?conversation_id=1", None),
        ("GET", f"/messages/contacts/{{contact}}/panel?conversation_id={BIG}", None),
        ("GET", f"/messages/{'9' * 5000}", None),
        ("GET", f"/messages/files?before={BIG}", None),
        ("GET", f"/settings/snippets/{BIG}", None),
        ("GET", f"/settings/channels/{BIG}", None),
        ("POST", "/contacts/bulk", {"action": "delete", "ids": str(BIG), "confirm": "yes"}),
        ("POST", f"/settings/tags/{BIG}/rename", {"name": "x"}),
        ("POST", f"/settings/closing-categories/{BIG}/rename", {"name": "x"}),
        ("POST", "/settings/teams/{team}/members", {"members": str(BIG)}),
        ("POST", "/contacts/filter/count", {"segment": str(BIG)}),
        ("GET", f"/workflows/{BIG}", None),
        ("GET", f"/workflows/{BIG}/export", None),
        ("GET", f"/workflows/shortcuts/menu?contact_id={BIG}", None),
        ("GET", f"/workflows/contacts/{BIG}/runs", None),
        ("POST", f"/workflows/{BIG}/clone", {}),
        ("POST", f"/workflows/{BIG}/delete", {}),
        ("POST", f"/workflows/{BIG}/shortcut/{{contact}}", {"answer_0": "x"}),
    ],
)
def test_pages_with_an_id_no_row_can_have_are_not_found(
    client: TestClient, db: Database, tenant: Tenant, method: str, url: str, data: dict[str, str] | None
) -> None:
    with db.transaction() as session:
        contact = do_create_contact(session, tenant.actor(), {"first_name": "Ana"})
        team = do_create_team(session, tenant.actor(), "Sales")
        url = url.format(contact=contact.id, team=team.id)  # rows that exist, so only the big id is unknown
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    form = None if data is None else {**data, "csrf_token": token}
    response = client.request(method, url, data=form, follow_redirects=False)
    assert response.status_code == 404, (response.status_code, response.text[:300])
    assert "text/html" in response.headers["content-type"]
