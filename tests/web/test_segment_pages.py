"""The segments sidebar, a segment's contacts, the filter panel and its live count, saving."""

import re
from datetime import date
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tertulia.contacts.models import FieldType
from tertulia.contacts.service import do_add_tags, do_create_contact, do_create_custom_field
from tertulia.kit.db import Database
from tertulia.segments.models import Segment
from tertulia.segments.panel import STANDARD_KINDS, Catalogue, FieldChoice, from_filter, to_filter
from tertulia.segments.service import DEFAULT_SEGMENTS, do_create_segment
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as

HX = {"HX-Request": "true"}


def _people(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        actor = tenant.actor()
        do_create_custom_field(session, actor, "plan", "Plan", FieldType.LIST, ["Free", "Pro"])
        do_create_custom_field(session, actor, "score", "Score", FieldType.NUMBER)
        rows: list[dict[str, Any]] = [
            {"first_name": "<b>Ana</b>", "country": "MX", "custom_fields": {"plan": "Pro", "score": 5}},
            {"first_name": "Beto", "country": "ES", "custom_fields": {"plan": "Free", "score": 1}},
            {"first_name": "Caro", "country": "AR", "custom_fields": {"plan": "Pro"}},
        ]
        for n, row in enumerate(rows):
            contact = do_create_contact(session, actor, {**row, "email": f"p{n}@example.com"})
            if n != 1:
                do_add_tags(session, actor, contact, ["vip"])


def _panel_form(token: str, groups: list[list[dict[str, str]]], **extra: str) -> dict[str, Any]:
    data: dict[str, Any] = {"csrf_token": token, "match": "all", **extra}
    for g, conditions in enumerate(groups):
        data[f"g{g}.match"] = "any"
        for c, fields in enumerate(conditions):
            for key, value in fields.items():
                data[f"g{g}.c{c}.{key}"] = value
    return data


def _count(html: str) -> int | None:
    match = re.search(r'data-testid="filter-count" data-count="(\d*)"', html)
    assert match, html[:500]
    return int(match.group(1)) if match.group(1) else None


def test_sidebar_lists_segments_with_counts_and_escapes_names(client: TestClient, db: Database, tenant: Tenant) -> None:
    _people(db, tenant)
    with db.transaction() as session:
        do_create_segment(
            session,
            tenant.actor(),
            "<img src=x onerror=alert(1)>",
            {"groups": [{"conditions": [{"category": "tag", "operator": "has_any_of", "value": ["vip"]}]}]},
        )
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    assert 'hx-get="/contacts/segments/sidebar?active=all"' in client.get("/contacts").text
    sidebar = client.get("/contacts/segments/sidebar?active=all", headers=HX)
    assert sidebar.status_code == 200
    assert "&lt;img src=x onerror=alert(1)&gt;" in sidebar.text
    assert "<img src=x" not in sidebar.text
    # Counts older than a minute (here: never counted) load after the page, one request each.
    count_urls = re.findall(r'hx-get="(/contacts/segments/\d+/count)"', sidebar.text)
    assert len(count_urls) == 6
    counts = [client.get(url, headers=HX).text for url in count_urls]
    assert all("Counted " in text for text in counts)
    assert sorted(int(re.sub(r"<[^>]+>", "", text).strip()) for text in counts) == [0, 0, 2, 2, 3, 3]
    # Now cached: shown at once, with when they were counted.
    again = client.get("/contacts/segments/sidebar?active=all", headers=HX)
    assert "Contacts with tags" in again.text
    assert "/count" not in again.text
    assert again.text.count("Counted ") == 6
    # Agents see the list but cannot add segments.
    assert 'data-testid="add-segment"' not in sidebar.text


def test_a_segment_page_lists_its_contacts_with_keyset_paging(client: TestClient, db: Database, tenant: Tenant) -> None:
    _people(db, tenant)
    with db.transaction() as session:
        segment = do_create_segment(
            session,
            tenant.actor(),
            "Pro",
            {
                "groups": [
                    {"conditions": [{"category": "contact_field", "field": "plan", "operator": "is", "value": "Pro"}]}
                ]
            },
        )
        segment_id = segment.id
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    page = client.get(f"/contacts/segments/{segment_id}")
    assert page.status_code == 200
    assert "&lt;b&gt;Ana&lt;/b&gt;" in page.text
    assert "Caro" in page.text
    assert "Beto" not in page.text
    assert '<span class="filter-badge">1</span>' in page.text
    assert client.get("/contacts/segments/999999").status_code == 404


def test_panel_offers_operators_by_type_and_counts_live(client: TestClient, db: Database, tenant: Tenant) -> None:
    _people(db, tenant)
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    panel = client.get("/contacts/filter?new=true", headers=HX)
    assert panel.status_code == 200
    assert _count(panel.text) == 3
    # A list field offers its options; a date field the date operators; tags the tag catalogue.
    as_list = client.post(
        "/contacts/filter/panel", data=_panel_form(token, [[{"cat": "field:plan", "op": "is"}]]), headers=HX
    )
    assert '<option value="Pro"' in as_list.text
    assert "starts with" not in as_list.text.split('data-testid="operator"')[1].split("</select>")[0]
    as_date = client.post(
        "/contacts/filter/panel", data=_panel_form(token, [[{"cat": "field:created_at", "op": "is"}]]), headers=HX
    )
    operators = as_date.text.split('data-testid="operator"')[1].split("</select>")[0]
    assert "less than ... ago" in operators
    assert "contains" not in operators
    as_tag = client.post("/contacts/filter/panel", data=_panel_form(token, [[{"cat": "tag", "op": "has_any_of"}]]))
    assert '<option value="vip"' in as_tag.text

    two_groups = _panel_form(
        token,
        [
            [{"cat": "field:plan", "op": "is", "value": "Pro"}],
            [{"cat": "field:country", "op": "is_any_of", "value": "MX, ES"}, {"cat": "tag", "op": "not_exists"}],
        ],
    )
    counted = client.post("/contacts/filter/count", data=two_groups, headers=HX)
    assert counted.status_code == 200
    assert _count(counted.text) == 1  # Ana: Pro and in MX


def test_a_bad_value_is_shown_beside_its_condition(client: TestClient, db: Database, tenant: Tenant) -> None:
    _people(db, tenant)
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    data = _panel_form(
        token,
        [[{"cat": "field:plan", "op": "is", "value": "Pro"}], [{"cat": "field:score", "op": "gt", "value": "abc"}]],
    )
    counted = client.post("/contacts/filter/count", data=data, headers=HX)
    assert counted.status_code == 422
    assert _count(counted.text) is None
    assert re.search(r'id="err-g1-c0" hx-swap-oob="true" role="alert">must be a number<', counted.text)
    assert re.search(r'id="err-g0-c0" hx-swap-oob="true" role="alert"><', counted.text)
    saved = client.post("/contacts/segments", data={**data, "name": "Scores"}, headers=HX)
    assert saved.status_code == 422
    assert 'value="abc"' in saved.text
    assert 'value="Scores"' in saved.text
    assert re.search(r'id="err-g1-c0" role="alert">must be a number<', saved.text)
    with db.transaction(write=False) as session:
        assert session.scalar(select(Segment.id).where(Segment.name == "Scores")) is None


def test_save_as_new_update_rename_and_delete(client: TestClient, db: Database, tenant: Tenant) -> None:
    _people(db, tenant)
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    data = _panel_form(
        token,
        [[{"cat": "field:plan", "op": "is", "value": "Pro"}], [{"cat": "tag", "op": "has_any_of", "values": "vip"}]],
    )
    created = client.post("/contacts/segments", data={**data, "name": "Pro VIPs"}, headers=HX)
    assert created.status_code == 204
    with db.transaction(write=False) as session:
        segment = session.scalar(select(Segment).where(Segment.name == "Pro VIPs"))
        assert segment is not None
        segment_id = segment.id
        assert len(segment.filter["groups"]) == 2
    assert created.headers["HX-Redirect"] == f"/contacts/segments/{segment_id}"
    duplicate = client.post("/contacts/segments", data={**data, "name": "pro vips"}, headers=HX)
    assert duplicate.status_code == 422
    assert "Another segment already has this name." in duplicate.text

    narrower = _panel_form(token, [[{"cat": "field:country", "op": "is", "value": "AR"}]], segment=str(segment_id))
    updated = client.post(f"/contacts/segments/{segment_id}/filter", data=narrower, headers=HX)
    assert updated.status_code == 204
    page = client.get(f"/contacts/segments/{segment_id}")
    assert "Caro" in page.text
    assert "Beto" not in page.text

    bad_name = client.post(f"/contacts/segments/{segment_id}/rename", data={"name": "  ", "csrf_token": token})
    assert bad_name.status_code == 422
    assert "field-error" in bad_name.text
    client.post(f"/contacts/segments/{segment_id}/rename", data={"name": "Argentina", "csrf_token": token})

    with db.transaction() as session:
        user = do_create_segment(
            session,
            tenant.actor(),
            "Uses it",
            {"groups": [{"conditions": [{"category": "segment", "operator": "in", "value": segment_id}]}]},
        )
        user_id = user.id
    confirm = client.get(f"/contacts/segments/{segment_id}/delete")
    assert "permanently" in confirm.text
    refused = client.post(f"/contacts/segments/{segment_id}/delete", data={"csrf_token": token})
    assert refused.status_code == 409
    assert "Uses it" in refused.text
    client.post(f"/contacts/segments/{user_id}/delete", data={"csrf_token": token})
    client.post(f"/contacts/segments/{segment_id}/delete", data={"csrf_token": token})
    with db.transaction(write=False) as session:
        assert session.scalar(select(Segment.id).where(Segment.name.in_(["Argentina", "Uses it"]))) is None


def test_agents_may_filter_but_not_save(client: TestClient, db: Database, tenant: Tenant) -> None:
    _people(db, tenant)
    token = sign_in_as(client, db, tenant.agent_id, "agent-password")
    panel = client.get("/contacts/filter", headers=HX)
    assert 'data-testid="save-new"' not in panel.text
    data = _panel_form(token, [[{"cat": "tag", "op": "exists"}]], name="Mine")
    assert _count(client.post("/contacts/filter/count", data=data, headers=HX).text) == 2
    assert client.post("/contacts/segments", data=data, headers=HX).status_code == 403


def test_the_panel_round_trips_every_default_segment() -> None:
    fields = {name: FieldChoice(name, name, kind) for name, kind in STANDARD_KINDS.items()}
    catalogue = Catalogue(fields=fields, tags=[], segments=[], people={})
    for _name, stored in DEFAULT_SEGMENTS:
        assert to_filter(from_filter(stored, catalogue), catalogue) == stored


def _catalogue() -> Catalogue:
    fields = {name: FieldChoice(name, name, kind) for name, kind in STANDARD_KINDS.items()}
    fields["plan"] = FieldChoice("plan", "Plan", "list", ("Free", "Pro"))
    fields["score"] = FieldChoice("score", "Score", "number")
    fields["birthday"] = FieldChoice("birthday", "Birthday", "date")
    fields["newsletter"] = FieldChoice("newsletter", "Newsletter", "checkbox")
    return Catalogue(fields=fields, tags=["vip"], segments=[(7, "Seven")], people={3: "Ana"})


_words = st.text(alphabet="abcxyzñé ", min_size=1, max_size=8).map(str.strip).filter(bool)
_codes = st.lists(st.sampled_from(["MX", "ES", "AR"]), min_size=1, max_size=3, unique=True)
_dates = st.dates(min_value=date(1990, 1, 1), max_value=date(2030, 12, 31)).map(date.isoformat)
_ago = st.fixed_dictionaries(
    {"amount": st.integers(0, 500), "unit": st.sampled_from(["minutes", "hours", "days", "weeks", "months"])}
)
_number = st.one_of(st.integers(-1000, 1000), st.sampled_from([1.5, -2.25, 0.5]))


def _condition(category: str, operator: str, value: Any = None, field: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"operator": operator, "category": category}
    if field is not None:
        out["field"] = field
    if value is not None:
        out["value"] = value
    return out


_conditions = st.one_of(
    st.builds(
        lambda op, v: _condition("contact_field", op, v, "first_name"), st.sampled_from(["is", "contains"]), _words
    ),
    st.builds(lambda op: _condition("contact_field", op, None, "email"), st.sampled_from(["exists", "not_exists"])),
    st.builds(lambda v: _condition("contact_field", "is_any_of", v, "country"), _codes),
    st.builds(lambda v: _condition("contact_field", "is", v, "plan"), st.sampled_from(["Free", "Pro"])),
    st.builds(lambda v: _condition("contact_field", "is_none_of", v, "plan"), st.just(["Pro"])),
    st.builds(lambda op, v: _condition("contact_field", op, v, "score"), st.sampled_from(["gt", "lte"]), _number),
    st.builds(lambda a, b: _condition("contact_field", "between", [a, b], "score"), _number, _number),
    st.builds(lambda op, v: _condition("contact_field", op, v, "birthday"), st.sampled_from(["before", "on"]), _dates),
    st.builds(lambda a, b: _condition("contact_field", "between", [a, b], "created_at"), _dates, _dates),
    st.builds(lambda v: _condition("contact_field", "less_than_ago", v, "updated_at"), _ago),
    st.builds(lambda op: _condition("contact_field", op, None, "newsletter"), st.sampled_from(["is_true", "is_false"])),
    st.builds(lambda v: _condition("contact_field", "is", v, "assignee"), st.sampled_from(["me", 3])),
    st.builds(lambda v: _condition("tag", "has_all_of", v), st.lists(_words, min_size=1, max_size=3)),
    st.builds(lambda v: _condition("last_incoming_message", "more_than_ago", v), _ago),
    st.builds(lambda op: _condition("last_outgoing_message", op), st.sampled_from(["exists", "not_exists"])),
    st.builds(lambda op: _condition("segment", op, 7), st.sampled_from(["in", "not_in"])),
)
_filters = st.fixed_dictionaries(
    {
        "match": st.sampled_from(["all", "any"]),
        "groups": st.lists(
            st.fixed_dictionaries(
                {"match": st.sampled_from(["all", "any"]), "conditions": st.lists(_conditions, min_size=1, max_size=4)}
            ),
            max_size=3,
        ),
    }
)


@given(_filters)
@settings(max_examples=200, deadline=None)
def test_what_the_panel_shows_is_what_it_saves(stored: dict[str, Any]) -> None:
    """A saved filter opened in the panel and saved again is the same filter (no edit, no change)."""
    catalogue = _catalogue()
    assert to_filter(from_filter(stored, catalogue), catalogue) == stored
