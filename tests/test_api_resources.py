"""Every REST resource through the same generic cases, the way NetBox tests its API: list, create,
get, update and delete; a token without the resource's scope refused; a read-only token reading but
not writing; another workspace's object not found (never forbidden); no credential, 401.

A resource is described once in RESOURCES; a new API resource adds a line here."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tertulia.kit.db import Database
from tertulia.users.service import do_create_api_token
from tests.conftest import Tenant


@dataclass(frozen=True)
class Resource:
    name: str  # the path segment after /api/v1/
    scope: str  # the token scope that writes it
    create: dict[str, Any] | None = None  # a valid new object; None: read-only resource
    update: dict[str, Any] = field(default_factory=dict)
    key: str = "id"  # the field that names an object in its path
    prefix: str = ""  # before the key in the path ("id:" for contacts)
    has_detail: bool = True  # GET /name/{key}
    deletable: bool = True
    under: str = ""  # a resource whose objects live below its name ("entries" of the knowledge)

    @property
    def collection(self) -> str:
        return f"/api/v1/{self.name}" + (f"/{self.under}" if self.under else "")

    def path(self, created: dict[str, Any]) -> str:
        return f"{self.collection}/{self.prefix}{created[self.key]}"


RESOURCES = [
    Resource(
        "contacts",
        "contacts",
        {"first_name": "Ana", "email": "ana@example.com"},
        {"first_name": "Ana María"},
        prefix="id:",
    ),
    Resource("tags", "contacts", {"name": "VIP"}, {"name": "Oro"}),
    Resource(
        "custom-fields",
        "contacts",
        {"key": "plan", "label": "Plan", "type": "text"},
        {"label": "Plan"},
        key="key",
        has_detail=False,
    ),
    Resource("segments", "contacts", {"name": "Clientes de Madrid"}, {"name": "Clientes de Sevilla"}),
    Resource("snippets", "messages", {"shortcut": "hola", "text": "¡Hola!"}, {"text": "¡Buenas!"}, has_detail=False),
    # A workspace setting: tokens read it (closing a conversation names one), owners and managers edit it.
    Resource("closing-categories", "messages", has_detail=False),
    Resource("broadcasts", "broadcasts", {"name": "Rebajas"}, {"name": "Rebajas de enero"}),
    Resource(
        "webhooks",
        "admin",
        {"url": "https://example.com/hook", "events": ["contact.created"]},
        {"description": "CRM"},
    ),
    Resource(
        "knowledge",
        "admin",
        {"question": "¿Hacen envíos a Canarias?", "answer": "Sí, en 3 a 5 días.", "language": "es"},
        {"answer": "Sí, en 3 a 5 días laborables."},
        under="entries",
    ),
    Resource("conversations", "messages"),
    Resource("channels", "admin"),
    Resource("users", "admin", has_detail=False),
    Resource("teams", "admin", has_detail=False),
]
WRITABLE = [r for r in RESOURCES if r.create is not None]


def _ids(resources: list[Resource]) -> list[str]:
    return [r.name for r in resources]


def _items(body: Any) -> list[dict[str, Any]]:
    return list(body["items"] if isinstance(body, dict) else body)


def _token(db: Database, tenant: Tenant, *scopes: str) -> dict[str, str]:
    with db.transaction() as session:
        secret = do_create_api_token(session, tenant.workspace_id, "generic", scopes=scopes).secret
    return {"Authorization": f"Bearer {secret}"}


def _create(client: TestClient, resource: Resource, headers: dict[str, str]) -> dict[str, Any]:
    response = client.post(resource.collection, headers=headers, json=resource.create)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _listed(client: TestClient, resource: Resource, headers: dict[str, str], created: dict[str, Any]) -> bool:
    response = client.get(resource.collection, headers=headers)
    assert response.status_code == 200, response.text
    return any(item[resource.key] == created[resource.key] for item in _items(response.json()))


@pytest.mark.parametrize("resource", RESOURCES, ids=_ids(RESOURCES))
def test_list_needs_a_credential_and_answers_a_token(client: TestClient, tenant: Tenant, resource: Resource) -> None:
    assert client.get(resource.collection).status_code == 401
    response = client.get(resource.collection, headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert isinstance(_items(response.json()), list)


@pytest.mark.parametrize("resource", WRITABLE, ids=_ids(WRITABLE))
def test_create_get_update_delete(client: TestClient, tenant: Tenant, resource: Resource) -> None:
    headers = tenant.headers
    created = _create(client, resource, headers)
    assert _listed(client, resource, headers, created)
    path = resource.path(created)
    if resource.has_detail:
        fetched = client.get(path, headers=headers)
        assert fetched.status_code == 200, fetched.text
        assert fetched.json()[resource.key] == created[resource.key]
    updated = client.patch(path, headers=headers, json=resource.update)
    assert updated.status_code == 200, updated.text
    for name, value in resource.update.items():
        assert updated.json()[name] == value
    if resource.deletable:
        assert client.delete(path, headers=headers).status_code == 204
        assert not _listed(client, resource, headers, created)
        if resource.has_detail:
            assert client.get(path, headers=headers).status_code == 404


@pytest.mark.parametrize("resource", WRITABLE, ids=_ids(WRITABLE))
def test_another_workspace_finds_nothing(
    client: TestClient, tenant: Tenant, make_tenant: Callable[..., Tenant], resource: Resource
) -> None:
    created = _create(client, resource, tenant.headers)
    other = make_tenant().headers
    path = resource.path(created)
    assert not _listed(client, resource, other, created)
    if resource.has_detail:
        assert client.get(path, headers=other).status_code == 404
    assert client.patch(path, headers=other, json=resource.update).status_code == 404
    if resource.deletable:
        assert client.delete(path, headers=other).status_code == 404
    assert _listed(client, resource, tenant.headers, created)  # untouched


@pytest.mark.parametrize("resource", RESOURCES, ids=_ids(RESOURCES))
def test_scopes_decide_who_reads_and_writes(
    client: TestClient, db: Database, tenant: Tenant, resource: Resource
) -> None:
    other_scope = "broadcasts" if resource.scope != "broadcasts" else "contacts"
    outside = _token(db, tenant, other_scope)
    reader = _token(db, tenant, "read_only")
    writer = _token(db, tenant, resource.scope)
    refused = client.get(resource.collection, headers=outside)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "token_scope"
    assert client.get(resource.collection, headers=reader).status_code == 200
    assert client.get(resource.collection, headers=writer).status_code == 200
    if resource.create is not None:
        for headers in (outside, reader):
            assert client.post(resource.collection, headers=headers, json=resource.create).status_code == 403
        assert client.post(resource.collection, headers=writer, json=resource.create).status_code == 201


@pytest.mark.parametrize("resource", WRITABLE, ids=_ids(WRITABLE))
def test_a_body_of_the_wrong_shape_is_a_422_naming_the_field(
    client: TestClient, tenant: Tenant, resource: Resource
) -> None:
    assert resource.create is not None
    response = client.post(resource.collection, headers=tenant.headers, json={**resource.create, "no_such_field": 1})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert "no_such_field" in str(error["details"])


def test_every_api_resource_is_described_here(client: TestClient) -> None:
    resources = {
        path.removeprefix("/api/v1/").split("/", 1)[0]
        for path in client.app.openapi()["paths"]  # type: ignore[attr-defined]
        if path.startswith("/api/v1/")
    }
    # Resources tested elsewhere in their own shape: files are uploads (multipart); broadcast
    # settings and opt-outs are a singleton and a set keyed by contact.
    # Not collections: the assistant's answer and per-channel settings (tests/assistant), the
    # workspace's business hours, away message and auto-close (tests/workspaces, tests/conversations),
    # the reports and the dashboard (tests/reports); workflows, whose bodies are whole definitions
    # and their templates, and the workflows' settings (a singleton list of allowed HTTP hosts,
    # tests/workflows/test_http_hosts.py); the signed-in person's notifications, which no token
    # reads (tests/notifications); data exports, jobs created with 202 and never edited
    # (tests/reports/test_data_export.py).
    elsewhere = {
        "files",
        "broadcast-settings",
        "broadcast-opt-outs",
        "assistant",
        "workspace",
        "reports",
        "workflows",
        "workflow-templates",
        "workflow-settings",
        "dashboard",
        "notifications",
        "exports",
    }
    assert resources - elsewhere - {r.name for r in RESOURCES} == set()
