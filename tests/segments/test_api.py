import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from tertulia.kit import queue
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.errors import PermissionDenied
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.segments import service
from tertulia.segments import tasks as segment_tasks
from tertulia.segments.models import Segment
from tertulia.users.models import Role
from tests.conftest import Tenant

DEFAULT_NAMES = {
    "Contacts created <7 days ago",
    "Contacts inactive >30 days",
    "Contacts with tags",
    "Country known",
    "Language known",
}


def one(condition: dict[str, Any]) -> dict[str, Any]:
    return {"match": "all", "groups": [{"match": "all", "conditions": [condition]}]}


def country_is(code: str) -> dict[str, Any]:
    return one({"category": "contact_field", "field": "country", "operator": "is", "value": code})


def add_contact(client: TestClient, tenant: Tenant, **body: Any) -> int:
    response = client.post("/api/v1/contacts", headers=tenant.headers, json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def create(client: TestClient, tenant: Tenant, name: str, filter_: Any) -> Any:
    return client.post("/api/v1/segments", headers=tenant.headers, json={"name": name, "filter": filter_})


def test_new_workspace_has_the_default_segments_with_counts(client: TestClient, tenant: Tenant) -> None:
    add_contact(client, tenant, first_name="Ana", country="MX", tags=["vip"])
    add_contact(client, tenant, first_name="Bea", language="es")
    listed = client.get("/api/v1/segments", headers=tenant.headers)
    assert listed.status_code == 200
    by_name = {s["name"]: s for s in listed.json()}
    assert set(by_name) == DEFAULT_NAMES
    assert by_name["Country known"]["count"] == 1
    assert by_name["Language known"]["count"] == 1
    assert by_name["Contacts with tags"]["count"] == 1
    assert by_name["Contacts created <7 days ago"]["count"] == 2
    assert by_name["Contacts inactive >30 days"]["count"] == 0  # neither ever wrote
    assert all(s["count_computed_at"] is not None for s in by_name.values())


def test_create_rename_edit_save_as_new_delete(client: TestClient, tenant: Tenant) -> None:
    mx = add_contact(client, tenant, first_name="José", country="MX")
    es = add_contact(client, tenant, first_name="Juan", country="ES")
    created = create(client, tenant, "Mexico", country_is("mx"))
    assert created.status_code == 201, created.text
    segment = created.json()
    assert (segment["count"], segment["filter"]["groups"][0]["conditions"][0]["value"]) == (1, "mx")

    assert create(client, tenant, "MEXICO", {}).status_code == 409
    renamed = client.patch(f"/api/v1/segments/{segment['id']}", headers=tenant.headers, json={"name": "México"})
    assert renamed.json()["name"] == "México"
    edited = client.patch(
        f"/api/v1/segments/{segment['id']}", headers=tenant.headers, json={"filter": country_is("ES")}
    )
    assert edited.json()["count"] == 1
    copy = client.post(
        "/api/v1/segments",
        headers=tenant.headers,
        json={
            "name": "Spain or Mexico",
            "copy_of": segment["id"],
            "filter": {
                "match": "any",
                "groups": [
                    {
                        "match": "any",
                        "conditions": [
                            country_is("ES")["groups"][0]["conditions"][0],
                            country_is("MX")["groups"][0]["conditions"][0],
                        ],
                    }
                ],
            },
        },
    )
    assert copy.status_code == 201, copy.text
    assert copy.json()["count"] == 2
    members = client.get(f"/api/v1/segments/{segment['id']}/contacts", headers=tenant.headers).json()
    assert [c["id"] for c in members["items"]] == [es] != [mx]

    assert client.delete(f"/api/v1/segments/{segment['id']}", headers=tenant.headers).status_code == 204
    assert client.get(f"/api/v1/segments/{segment['id']}", headers=tenant.headers).status_code == 404


@pytest.mark.parametrize(
    ("filter_", "path"),
    [
        (one({"category": "nope", "operator": "is", "value": 1}), "filter.groups[0].conditions[0].category"),
        (
            one({"category": "contact_field", "field": "shoe", "operator": "is", "value": "x"}),
            "filter.groups[0].conditions[0].field",
        ),
        (
            one({"category": "contact_field", "field": "country", "operator": "gt", "value": 1}),
            "filter.groups[0].conditions[0].operator",
        ),
        (
            one({"category": "contact_field", "field": "country", "operator": "is", "value": 3}),
            "filter.groups[0].conditions[0].value",
        ),
        (
            one({"category": "contact_field", "field": "country", "operator": "is"}),
            "filter.groups[0].conditions[0].value",
        ),
        (one({"category": "tag", "operator": "has_any_of", "value": []}), "filter.groups[0].conditions[0].value"),
        (
            one(
                {
                    "category": "last_incoming_message",
                    "operator": "more_than_ago",
                    "value": {"amount": 3, "unit": "years"},
                }
            ),
            "filter.groups[0].conditions[0].value.unit",
        ),
        (
            one({"category": "contact_field", "field": "created_at", "operator": "on", "value": "2024-02-30"}),
            "filter.groups[0].conditions[0].value",
        ),
        (one({"category": "segment", "operator": "in", "value": 999_999}), "filter.groups[0].conditions[0].value"),
        ({"match": "all", "groups": [{"conditions": []}]}, "filter.groups[0].conditions"),
        ({"match": "most"}, "filter.match"),
        ({"groups": [], "extra": 1}, "filter.extra"),
        (
            {
                "match": "all",
                "groups": [
                    country_is("MX")["groups"][0],
                    {
                        "match": "all",
                        "conditions": [
                            {"category": "contact_field", "field": "score", "operator": "eq", "value": "high"}
                        ],
                    },
                ],
            },
            "filter.groups[1].conditions[0].field",
        ),
    ],
)
def test_bad_filters_are_422_naming_the_place(
    client: TestClient, tenant: Tenant, filter_: dict[str, Any], path: str
) -> None:
    response = create(client, tenant, "Bad", filter_)
    assert response.status_code == 422, response.text
    assert path in response.json()["error"]["details"], response.json()
    preview = client.post("/api/v1/segments/preview", headers=tenant.headers, json={"filter": filter_})
    assert preview.status_code == 422
    assert path in preview.json()["error"]["details"]


def test_wrong_value_type_for_custom_number_names_the_value(client: TestClient, tenant: Tenant) -> None:
    field = {"key": "score", "label": "Score", "type": "number"}
    assert client.post("/api/v1/custom-fields", headers=tenant.headers, json=field).status_code == 201
    bad = one({"category": "contact_field", "field": "score", "operator": "between", "value": [1, "x"]})
    response = create(client, tenant, "Bad", bad)
    assert response.status_code == 422
    assert "filter.groups[0].conditions[0].value[1]" in response.json()["error"]["details"]


def test_segment_references_cycles_and_delete_protection(client: TestClient, tenant: Tenant) -> None:
    add_contact(client, tenant, first_name="Ana", country="MX")
    base = create(client, tenant, "Base", country_is("MX")).json()
    user = create(client, tenant, "Uses base", one({"category": "segment", "operator": "in", "value": base["id"]}))
    assert user.status_code == 201
    assert user.json()["count"] == 1
    outside = create(client, tenant, "Outside", one({"category": "segment", "operator": "not_in", "value": base["id"]}))
    assert outside.json()["count"] == 0

    cycle = client.patch(
        f"/api/v1/segments/{base['id']}",
        headers=tenant.headers,
        json={"filter": one({"category": "segment", "operator": "in", "value": user.json()["id"]})},
    )
    assert cycle.status_code == 422
    assert "filter.groups[0].conditions[0].value" in cycle.json()["error"]["details"]
    myself = client.patch(
        f"/api/v1/segments/{base['id']}",
        headers=tenant.headers,
        json={"filter": one({"category": "segment", "operator": "in", "value": base["id"]})},
    )
    assert myself.status_code == 422

    refused = client.delete(f"/api/v1/segments/{base['id']}", headers=tenant.headers)
    assert refused.status_code == 409
    used_by = {u["name"] for u in refused.json()["error"]["details"]["used_by"]}
    assert used_by == {"Uses base", "Outside"}
    assert "Uses base" in refused.json()["error"]["message"]


def test_preview_contacts_filter_param_and_contact_segments(client: TestClient, tenant: Tenant) -> None:
    jose = add_contact(client, tenant, first_name="José", country="MX", tags=["VIP"])
    add_contact(client, tenant, first_name="Ana", country="ES")
    tagged = one({"category": "tag", "operator": "has_any_of", "value": ["vip"]})
    preview = client.post("/api/v1/segments/preview", headers=tenant.headers, json={"filter": tagged})
    assert preview.status_code == 200
    assert preview.json()["count"] == 1
    assert [c["id"] for c in preview.json()["contacts"]] == [jose]

    by_name = one({"category": "contact_field", "field": "first_name", "operator": "is", "value": "jose"})
    listed = client.get("/api/v1/contacts", headers=tenant.headers, params={"filter": json.dumps(by_name)})
    assert [c["id"] for c in listed.json()["items"]] == [jose]
    bad = client.get("/api/v1/contacts", headers=tenant.headers, params={"filter": "{nope"})
    assert bad.status_code == 422
    assert "filter" in bad.json()["error"]["details"]

    mexico = create(client, tenant, "Mexico", country_is("MX")).json()
    names = {s["name"] for s in client.get(f"/api/v1/contacts/id:{jose}/segments", headers=tenant.headers).json()}
    assert names == {"Mexico", "Contacts with tags", "Country known", "Contacts created <7 days ago"}
    assert mexico["count"] == 1


def test_segment_contacts_keyset_pages(client: TestClient, tenant: Tenant) -> None:
    ids = {add_contact(client, tenant, first_name=f"C{i}", country="MX") for i in range(5)}
    add_contact(client, tenant, first_name="Other", country="ES")
    segment = create(client, tenant, "MX", country_is("MX")).json()
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get(f"/api/v1/segments/{segment['id']}/contacts", headers=tenant.headers, params=params).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(ids, reverse=True)


def test_other_workspace_segments_and_contacts_stay_out(client: TestClient, tenant: Tenant, make_tenant: Any) -> None:
    other = make_tenant()
    add_contact(client, other, first_name="Theirs", country="MX")
    theirs = create(client, other, "Theirs", country_is("MX")).json()
    assert theirs["count"] == 1
    assert client.get(f"/api/v1/segments/{theirs['id']}", headers=tenant.headers).status_code == 404
    assert client.delete(f"/api/v1/segments/{theirs['id']}", headers=tenant.headers).status_code == 404
    sneaky = create(client, tenant, "Sneaky", one({"category": "segment", "operator": "in", "value": theirs["id"]}))
    assert sneaky.status_code == 422
    mine = create(client, tenant, "Everyone", {}).json()
    assert mine["count"] == 0  # an empty filter is every contact of *this* workspace


def test_counts_are_cached_for_at_most_a_minute(client: TestClient, tenant: Tenant, db: Database) -> None:
    add_contact(client, tenant, first_name="Ana", country="MX")
    segment = create(client, tenant, "MX", country_is("MX")).json()
    with db.transaction() as session:  # a fresh cached figure is served as it is
        session.execute(
            update(Segment).where(Segment.id == segment["id"]).values(contact_count=41, count_computed_at=utcnow())
        )
    assert client.get(f"/api/v1/segments/{segment['id']}", headers=tenant.headers).json()["count"] == 41
    with db.transaction() as session:  # a figure over a minute old is recomputed before it is shown
        old = utcnow() - timedelta(seconds=61)
        session.execute(update(Segment).where(Segment.id == segment["id"]).values(count_computed_at=old))
    shown = client.get(f"/api/v1/segments/{segment['id']}", headers=tenant.headers).json()
    assert shown["count"] == 1
    assert shown["count_computed_at"] > old.isoformat()
    with db.transaction(write=False) as session:
        stored = session.get(Segment, segment["id"])
        assert stored is not None
        assert stored.contact_count == 1  # and written back for the next reader


def test_permissions(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        agent = tenant.actor(Role.AGENT)
        assert {c.segment.name for c in service.list_segments(session, agent)} == DEFAULT_NAMES
        with pytest.raises(PermissionDenied):
            service.do_create_segment(session, agent, "Mine", {})
        segment = service.do_create_segment(session, tenant.actor(Role.MANAGER), "Managers", {})
        with pytest.raises(PermissionDenied):
            service.do_delete_segment(session, agent, segment)
        with pytest.raises(PermissionDenied):
            service.do_update_segment(session, agent, segment, name="Renamed")


def test_custom_text_filters_follow_updates_merges_and_field_deletion(
    client: TestClient, tenant: Tenant, db: Database
) -> None:
    field = {"key": "city", "label": "City", "type": "text"}
    assert client.post("/api/v1/custom-fields", headers=tenant.headers, json=field).status_code == 201
    city_is = one({"category": "contact_field", "field": "city", "operator": "is", "value": "queretaro"})

    def matching() -> list[int]:
        response = client.post("/api/v1/segments/preview", headers=tenant.headers, json={"filter": city_is})
        return sorted(c["id"] for c in response.json()["contacts"])

    first = add_contact(client, tenant, first_name="Ana", custom_fields={"city": "QUERÉTARO"})
    second = add_contact(client, tenant, first_name="Bea", custom_fields={"city": "Lima"})
    assert matching() == [first]
    client.patch(f"/api/v1/contacts/id:{second}", headers=tenant.headers, json={"custom_fields": {"city": "Querétaro"}})
    assert matching() == [first, second]
    client.patch(f"/api/v1/contacts/id:{first}", headers=tenant.headers, json={"custom_fields": {"city": None}})
    assert matching() == [second]
    merged = client.post(f"/api/v1/contacts/id:{first}/merge", headers=tenant.headers, json={"other": f"id:{second}"})
    assert merged.status_code == 200, merged.text
    assert matching() == [first]  # the survivor took the other's city, folded copy included
    assert client.delete("/api/v1/custom-fields/city", headers=tenant.headers).status_code == 204
    assert client.post("/api/v1/custom-fields", headers=tenant.headers, json=field).status_code == 201
    assert matching() == []  # a re-created field does not see the deleted field's values


@pytest.fixture
def immediate_queue(db: Database) -> Iterator[None]:
    queue.huey.immediate = True
    queue.use_database(db)
    segment_tasks._last_enqueued.clear()
    yield
    queue.huey.immediate = False
    queue.use_database(None)


def test_ageing_counts_are_shown_then_refreshed_in_the_background(
    client: TestClient, tenant: Tenant, db: Database, immediate_queue: None
) -> None:
    add_contact(client, tenant, first_name="Ana", country="MX")
    segment = create(client, tenant, "MX", country_is("MX")).json()
    with db.transaction() as session:  # 40 s old: still shown, but due for a refresh
        aged = utcnow() - timedelta(seconds=40)
        session.execute(
            update(Segment).where(Segment.id == segment["id"]).values(contact_count=41, count_computed_at=aged)
        )
    assert client.get(f"/api/v1/segments/{segment['id']}", headers=tenant.headers).json()["count"] == 41
    with db.transaction(write=False) as session:  # the queued refresh ran after that read committed
        stored = session.get(Segment, segment["id"])
        assert stored is not None
        assert stored.contact_count == 1
        assert stored.count_computed_at is not None
        assert stored.count_computed_at > aged


def test_a_segment_whose_field_was_deleted_reports_it_and_holds_no_one(client: TestClient, tenant: Tenant) -> None:
    field = {"key": "plan", "label": "Plan", "type": "list", "options": ["Free", "Pro"]}
    assert client.post("/api/v1/custom-fields", headers=tenant.headers, json=field).status_code == 201
    ana = add_contact(client, tenant, first_name="Ana", custom_fields={"plan": "Pro"})
    pro = one({"category": "contact_field", "field": "plan", "operator": "is", "value": "pro"})
    segment = create(client, tenant, "Pro", pro).json()
    assert segment["count"] == 1
    assert client.delete("/api/v1/custom-fields/plan", headers=tenant.headers).status_code == 204
    client.patch(f"/api/v1/segments/{segment['id']}", headers=tenant.headers, json={"name": "Pro plan"})
    listed = {s["name"]: s for s in client.get("/api/v1/segments", headers=tenant.headers).json()}
    assert listed["Pro plan"]["count"] is None
    assert "filter.groups[0].conditions[0].field" in listed["Pro plan"]["filter_error"]["details"]
    in_segments = client.get(f"/api/v1/contacts/id:{ana}/segments", headers=tenant.headers).json()
    assert "Pro plan" not in {s["name"] for s in in_segments}
    members = client.get(f"/api/v1/segments/{segment['id']}/contacts", headers=tenant.headers)
    assert members.status_code == 422
    fixed = client.patch(f"/api/v1/segments/{segment['id']}", headers=tenant.headers, json={"filter": {}})
    assert fixed.json()["count"] == 1


def test_a_spanish_workspace_gets_the_default_segments_named_in_spanish(db: Database) -> None:
    with db.transaction() as session:
        created = do_create_workspace_with_owner(
            session, "Tienda Sur", "duena@sur.example.com", "duena-password", default_language="es"
        )
        names = set(session.scalars(select(Segment.name).where(Segment.workspace_id == created.workspace.id)))
    assert names == {
        "Contactos creados hace <7 días",
        "Contactos inactivos >30 días",
        "Contactos con etiquetas",
        "País conocido",
        "Idioma conocido",
    }
