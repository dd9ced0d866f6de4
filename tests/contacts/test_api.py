from fastapi.testclient import TestClient

from tests.conftest import Tenant


def test_create_then_get_by_each_identifier(client: TestClient, tenant: Tenant) -> None:
    created = client.post(
        "/api/v1/contacts",
        headers=tenant.headers,
        json={
            "first_name": "José",
            "last_name": "Núñez",
            "email": " Jose@Example.COM ",
            "phone": "55 1234 5678",
            "language": "ES",
            "country": "mx",
            "tags": ["VIP", "lead"],
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["email"] == "jose@example.com"
    assert body["phone"] == "+525512345678"
    assert body["phone_raw"] == "55 1234 5678"
    assert (body["language"], body["country"]) == ("es", "MX")
    assert body["tags"] == ["lead", "VIP"]
    for identifier in (f"id:{body['id']}", "email:JOSE@example.com", "phone:+525512345678"):
        got = client.get(f"/api/v1/contacts/{identifier}", headers=tenant.headers)
        assert got.status_code == 200, (identifier, got.text)
        assert got.json()["id"] == body["id"]


def test_invalid_fields_are_422_naming_each_field(client: TestClient, tenant: Tenant) -> None:
    response = client.post(
        "/api/v1/contacts",
        headers=tenant.headers,
        json={"first_name": "Ana", "email": "not-an-email", "phone": "12", "country": "XX", "language": "zz"},
    )
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert set(details) == {"email", "phone", "country", "language"}


def test_duplicate_email_is_409(client: TestClient, tenant: Tenant) -> None:
    first = client.post("/api/v1/contacts", headers=tenant.headers, json={"email": "a@example.com"})
    assert first.status_code == 201
    again = client.post("/api/v1/contacts", headers=tenant.headers, json={"email": "A@example.com"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "duplicate_email"


def test_unknown_body_field_is_422(client: TestClient, tenant: Tenant) -> None:
    response = client.post("/api/v1/contacts", headers=tenant.headers, json={"first_name": "A", "nickname": "x"})
    assert response.status_code == 422
    assert "nickname" in response.json()["error"]["details"]


def test_patch_custom_fields_by_key_validates_type(client: TestClient, tenant: Tenant) -> None:
    for field in (
        {"key": "plan", "label": "Plan", "type": "list", "options": ["Free", "Pro"]},
        {"key": "ltv", "label": "LTV", "type": "number"},
        {"key": "birthday", "label": "Birthday", "type": "date"},
    ):
        assert client.post("/api/v1/custom-fields", headers=tenant.headers, json=field).status_code == 201
    contact = client.post("/api/v1/contacts", headers=tenant.headers, json={"first_name": "Ana"}).json()
    ok = client.patch(
        f"/api/v1/contacts/id:{contact['id']}",
        headers=tenant.headers,
        json={"custom_fields": {"plan": "pro", "ltv": "1234,5", "birthday": "1990-02-03"}},
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["custom_fields"] == {"plan": "Pro", "ltv": 1234.5, "birthday": "1990-02-03"}
    bad = client.patch(
        f"/api/v1/contacts/id:{contact['id']}",
        headers=tenant.headers,
        json={"custom_fields": {"plan": "Gold", "ltv": "lots", "nope": 1}},
    )
    assert bad.status_code == 422
    assert set(bad.json()["error"]["details"]) == {"custom_fields.plan", "custom_fields.ltv", "custom_fields.nope"}
    unchanged = client.get(f"/api/v1/contacts/id:{contact['id']}", headers=tenant.headers).json()
    assert unchanged["custom_fields"]["plan"] == "Pro"


def test_tags_add_and_remove(client: TestClient, tenant: Tenant) -> None:
    contact = client.post("/api/v1/contacts", headers=tenant.headers, json={"first_name": "Ana"}).json()
    url = f"/api/v1/contacts/id:{contact['id']}/tags"
    added = client.post(url, headers=tenant.headers, json={"tags": ["vip", "Lead", "VIP"]})
    assert added.json()["tags"] == ["Lead", "vip"]
    removed = client.request("DELETE", url, headers=tenant.headers, json={"tags": ["LEAD"]})
    assert removed.status_code == 200
    assert removed.json()["tags"] == ["vip"]
    catalogue = client.get("/api/v1/tags", headers=tenant.headers).json()
    assert sorted(t["name"] for t in catalogue) == ["Lead", "vip"]
    empty = client.post(url, headers=tenant.headers, json={"tags": []})
    assert empty.status_code == 422


def test_other_workspace_contact_is_404(client: TestClient, tenant: Tenant, make_tenant) -> None:  # type: ignore[no-untyped-def]
    other = make_tenant()
    contact = client.post("/api/v1/contacts", headers=other.headers, json={"email": "x@example.com"}).json()
    for method, path in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/tags")):
        response = client.request(
            method,
            f"/api/v1/contacts/id:{contact['id']}{path}",
            headers=tenant.headers,
            json={"tags": ["a"]} if path else {},
        )
        assert response.status_code == 404, (method, path, response.text)
    listed = client.get("/api/v1/contacts", headers=tenant.headers).json()
    assert listed["items"] == []


def test_auth_errors(client: TestClient, tenant: Tenant) -> None:
    assert client.get("/api/v1/contacts").status_code == 401
    bad = client.get("/api/v1/contacts", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "unauthorized"


def test_keyset_pages_cover_every_contact_once(client: TestClient, tenant: Tenant) -> None:
    ids = {
        client.post("/api/v1/contacts", headers=tenant.headers, json={"first_name": f"C{i}"}).json()["id"]
        for i in range(7)
    }
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/contacts", headers=tenant.headers, params=params).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(ids, reverse=True)
    assert client.get("/api/v1/contacts", headers=tenant.headers, params={"cursor": "@@"}).status_code == 422


def test_search_is_accent_and_case_insensitive(client: TestClient, tenant: Tenant) -> None:
    for body in (
        {"first_name": "José", "last_name": "Pérez"},
        {"first_name": "Ana", "email": "ana@shop.com"},
        {"first_name": "Luis", "phone": "+34 612 345 678"},
    ):
        client.post("/api/v1/contacts", headers=tenant.headers, json=body)

    def names(q: str) -> list[str]:
        items = client.get("/api/v1/contacts", headers=tenant.headers, params={"search": q}).json()["items"]
        return [c["first_name"] for c in items]

    assert names("jose") == ["José"]
    assert names("PEREZ") == ["José"]
    assert names("jose per") == ["José"]
    assert names("ana@") == ["Ana"]
    assert names("612 345") == ["Luis"]
    assert names("100%") == []
