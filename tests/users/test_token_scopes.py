"""API tokens limited to scopes and to a date, and the X-RateLimit-* headers on every token's response."""

from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from tertulia.app import create_app
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.settings import Settings
from tertulia.users.auth import RESOURCE_SCOPES, resource_scope
from tertulia.users.models import ApiToken, TokenScope, User
from tertulia.users.service import do_create_api_token
from tertulia.web import i18n
from tertulia.workspaces.models import Workspace
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as


def _token(db: Database, tenant: Tenant, *scopes: str) -> dict[str, str]:
    with db.transaction() as session:
        secret = do_create_api_token(session, tenant.workspace_id, "scoped", scopes=scopes).secret
    return {"Authorization": f"Bearer {secret}"}


NEW_CONTACT = {"first_name": "Scoped", "email": "scoped@example.com"}


def test_a_contacts_token_reaches_contacts_and_nothing_else(client: TestClient, db: Database, tenant: Tenant) -> None:
    headers = _token(db, tenant, "contacts")
    assert client.get("/api/v1/contacts", headers=headers).status_code == 200
    assert client.post("/api/v1/contacts", headers=headers, json=NEW_CONTACT).status_code == 201
    assert client.get("/api/v1/tags", headers=headers).status_code == 200
    for path in ("/api/v1/conversations", "/api/v1/webhooks", "/api/v1/broadcasts", "/api/v1/users"):
        refused = client.get(path, headers=headers)
        assert refused.status_code == 403, path
        assert refused.json()["error"]["code"] == "token_scope"
        assert refused.json()["error"]["details"]["token_scopes"] == ["contacts"]


def test_a_read_only_token_reads_everything_and_changes_nothing(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    headers = _token(db, tenant, "read_only")
    for path in ("/api/v1/contacts", "/api/v1/conversations", "/api/v1/webhooks", "/api/v1/users"):
        assert client.get(path, headers=headers).status_code == 200, path
    # A POST that only reads (a filter's preview) is a read.
    preview = client.post("/api/v1/segments/preview", headers=headers, json={"filter": None, "limit": 5})
    assert preview.status_code == 200, preview.text
    refused = client.post("/api/v1/contacts", headers=headers, json=NEW_CONTACT)
    assert refused.status_code == 403
    assert refused.json()["error"]["details"]["needed"] == "contacts"
    assert client.get("/api/v1/contacts?q=scoped", headers=headers).json()["items"] == []  # nothing was written


def test_read_only_and_a_group_together_write_that_group_only(client: TestClient, db: Database, tenant: Tenant) -> None:
    headers = _token(db, tenant, "read_only", "messages")
    assert client.get("/api/v1/contacts", headers=headers).status_code == 200
    assert client.post("/api/v1/contacts", headers=headers, json=NEW_CONTACT).status_code == 403
    snippet = client.post("/api/v1/snippets", headers=headers, json={"shortcut": "hola", "text": "¡Hola!"})
    assert snippet.status_code == 201, snippet.text


def test_an_admin_token_reaches_everything_a_token_may(client: TestClient, db: Database, tenant: Tenant) -> None:
    headers = _token(db, tenant, "admin")
    for path in ("/api/v1/contacts", "/api/v1/conversations", "/api/v1/webhooks", "/api/v1/broadcasts"):
        assert client.get(path, headers=headers).status_code == 200, path


def test_every_named_resource_exists_and_unnamed_ones_need_admin(client: TestClient) -> None:
    resources = {
        path.removeprefix("/api/v1/").split("/", 1)[0]
        for path in client.app.openapi()["paths"]  # type: ignore[attr-defined]
        if path.startswith("/api/v1/")
    }
    assert set(RESOURCE_SCOPES) <= resources  # no stale name
    assert resource_scope("/api/v1/channels/3") == TokenScope.ADMIN
    assert resource_scope("/api/v1/contacts/id:3/tags") == TokenScope.CONTACTS
    assert resource_scope("/api/v1/contactsx") == TokenScope.ADMIN
    assert resource_scope("/widget/k/config") == TokenScope.ADMIN


def test_an_expired_token_is_refused_with_its_reason(client: TestClient, db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        issued = do_create_api_token(session, tenant.workspace_id, "soon", expires_at=utcnow() + timedelta(days=1))
        token_id, secret = issued.token.id, issued.secret
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/contacts", headers=headers).status_code == 200
    with db.transaction() as session:
        session.execute(
            update(ApiToken).where(ApiToken.id == token_id).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    for response in (
        client.get("/api/v1/contacts", headers=headers),
        client.post("/api/v1/contacts", headers=headers, json=NEW_CONTACT),  # refused before its body is read
    ):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "token_expired"


@pytest.mark.parametrize(
    ("scopes", "expires_in", "field"),
    [
        ((), None, "scopes"),
        (("everything",), None, "scopes"),
        (("admin",), timedelta(seconds=-1), "expires_at"),
        (("admin",), timedelta(days=6 * 366), "expires_at"),
    ],
)
def test_bad_scopes_and_expiry_are_refused(
    db: Database, tenant: Tenant, scopes: tuple[str, ...], expires_in: timedelta | None, field: str
) -> None:
    with db.transaction() as session, pytest.raises(ValidationFailed) as refused:
        do_create_api_token(
            session,
            tenant.workspace_id,
            "bad",
            scopes=scopes,
            expires_at=utcnow() + expires_in if expires_in else None,
        )
    assert field in refused.value.details


def test_every_token_response_tells_the_budget_left(db: Database, tenant: Tenant) -> None:
    app = create_app(Settings(api_rate_limit_per_minute=3), db)
    with TestClient(app, raise_server_exceptions=False) as client:
        seen = []
        for _ in range(3):
            response = client.get("/api/v1/users", headers=tenant.headers)
            assert response.status_code == 200
            assert response.headers["X-RateLimit-Limit"] == "3"
            assert 0 < int(response.headers["X-RateLimit-Reset"]) <= 60
            seen.append(int(response.headers["X-RateLimit-Remaining"]))
        assert seen == [2, 1, 0]
        limited = client.get("/api/v1/teams", headers=tenant.headers)
        assert limited.status_code == 429
        assert limited.headers["X-RateLimit-Remaining"] == "0"
        assert limited.headers["X-RateLimit-Reset"] == limited.headers["Retry-After"]
        # Pages and the widget are not counted against a token, so they carry no such header.
        assert "X-RateLimit-Limit" not in client.get("/healthz").headers


def test_the_tokens_page_sets_scopes_and_expiry_and_explains_refusals_in_spanish(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    created = client.post(
        "/settings/tokens",
        data={"name": "Tienda", "scopes": ["contacts", "read_only"], "expires_on": "2030-06-30", "csrf_token": csrf},
    )
    assert created.status_code == 200, created.text
    with db.transaction(write=False) as session:
        stored = session.query(ApiToken).filter(ApiToken.name == "Tienda").one()
        assert stored.scopes == ["read_only", "contacts"]
        owner = session.get(User, tenant.owner_id)
        workspace = session.get(Workspace, tenant.workspace_id)
        assert owner is not None
        assert workspace is not None
        zone = i18n.safe_zone(owner.timezone or workspace.timezone)
        # Through the chosen day, in the person's time zone.
        assert stored.expires_at == datetime(2030, 7, 1, tzinfo=zone)
    client.post("/language", data={"language": "es", "next": "/settings/tokens", "csrf_token": csrf})
    refused = client.post("/settings/tokens", data={"name": "Nada", "expires_on": "2020-01-01", "csrf_token": csrf})
    assert refused.status_code == 422
    assert "elige al menos un alcance" in refused.text
    # The scopes' names and hints are in Spanish too, in the form and in the list of tokens.
    assert "Solo lectura" in refused.text
    assert "Read only" not in refused.text
    assert "Everything (admin)" not in refused.text
    with db.transaction(write=False) as session:
        assert session.query(ApiToken).filter(ApiToken.name == "Nada").count() == 0
    past = client.post(
        "/settings/tokens", data={"name": "Pasado", "scopes": "admin", "expires_on": "2020-01-01", "csrf_token": csrf}
    )
    assert past.status_code == 422
    assert "debe ser una fecha futura" in past.text
