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
from tertulia.contacts.models import Contact
from tertulia.kit.db import Database
from tertulia.kit.http import DbSession
from tertulia.kit.settings import Settings
from tests.conftest import Tenant
from tests.conversations.support import make_webchat, new_visitor

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
