"""The contacts module in the browser: list, search, paging, bulk actions, contact page, merge, split."""

import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.contacts import repository as repo
from tertulia.contacts.models import Contact, ContactIdentity, FieldType
from tertulia.contacts.service import do_add_tags, do_create_contact, do_create_custom_field
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.fakes import Statement, sql_statements
from tests.web.helpers import sign_in_as

XSS = "<script>alert(1)</script>"


def make_contact(db: Database, tenant: Tenant, **values: Any) -> int:
    with db.transaction() as session:
        return do_create_contact(session, tenant.actor(), values).id


def as_sent(statement: Statement) -> str:
    """The statement's SQL. SQLite renders every LIMIT as "LIMIT ? OFFSET ?" with an offset of 0, so
    a statement counts as using OFFSET only when that offset is not zero."""
    parameters = statement.parameters
    if "OFFSET" in statement.sql.upper() and isinstance(parameters, tuple | list) and parameters[-1] == 0:
        return re.sub("offset", "zero_offset_of", statement.sql, flags=re.IGNORECASE)
    return statement.sql


def test_typed_names_are_escaped_everywhere(client: TestClient, db: Database, tenant: Tenant) -> None:
    contact_id = make_contact(db, tenant, first_name=XSS, last_name="<b>bold</b>")
    with db.transaction() as session:
        contact = repo.contact_by_id(session, tenant.workspace_id, contact_id)
        assert contact is not None
        do_add_tags(session, tenant.actor(), contact, ['"><img src=x onerror=alert(1)>'])
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    for path in ("/contacts", f"/contacts/{contact_id}", f"/contacts/{contact_id}/merge?q=alert"):
        html = client.get(path).text
        assert XSS not in html, path
        assert "<b>bold</b>" not in html
        assert "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path


def test_list_search_and_unassigned_view(client: TestClient, db: Database, tenant: Tenant) -> None:
    make_contact(db, tenant, first_name="José", last_name="Núñez", email="jose@example.com")
    make_contact(db, tenant, first_name="Lucía", phone="+52 55 1234 5678", assignee_id=tenant.agent_id)
    make_contact(db, tenant, first_name="Emma", email="emma@example.org")
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    everyone = client.get("/contacts").text
    assert all(name in everyone for name in ("José Núñez", "Lucía", "Emma"))
    assert "José Núñez" in client.get("/contacts?q=jose").text
    assert "Emma" not in client.get("/contacts?q=jose").text
    by_phone = client.get("/contacts?q=1234 5678").text
    assert "Lucía" in by_phone
    assert "Emma" not in by_phone
    by_email = client.get("/contacts?q=emma@").text
    assert "Emma" in by_email
    assert "José" not in by_email
    unassigned = client.get("/contacts?view=unassigned").text
    assert "Lucía" not in unassigned
    assert "Emma" in unassigned
    empty = client.get("/contacts?q=zzz-nobody")
    assert "No contacts match" in empty.text
    # The search box swaps only the table body.
    fragment = client.get("/contacts?q=emma", headers={"HX-Request": "true", "HX-Target": "contact-rows"})
    assert fragment.text.lstrip().startswith("<tr")
    assert "<html" not in fragment.text


def test_keyset_paging_without_offset_or_full_count(client: TestClient, db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        for index in range(55):
            do_create_contact(session, tenant.actor(), {"first_name": f"Person{index:02d}"})
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    with sql_statements(db) as executed:
        first = client.get("/contacts").text
    statements = [as_sent(statement) for statement in executed]
    contact_sql = [s for s in statements if "FROM contacts" in s]
    assert contact_sql
    assert not any(re.search(r"\boffset\b", s, re.IGNORECASE) for s in contact_sql)
    assert not any("count(" in s.lower() for s in statements)
    assert first.count("data-row") == 50
    more = re.search(r'hx-get="/contacts\?after=(\d+)"', first)
    assert more
    rest = client.get(f"/contacts?after={more.group(1)}", headers={"HX-Request": "true", "HX-Target": "load-more"})
    assert rest.text.count("data-row") == 5
    assert "Person00" in rest.text
    assert "Person54" not in rest.text
    assert "after=" not in rest.text


def test_create_contact_keeps_input_on_error(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = sign_in_as(client, db, tenant.agent_id, "agent-password")
    form = {
        "first_name": "Ana",
        "last_name": "Ruiz",
        "email": "ana@",
        "phone": "",
        "tags": "vip, lead",
        "csrf_token": token,
    }
    bad = client.post("/contacts", data=form)
    assert bad.status_code == 422
    assert 'value="Ana"' in bad.text
    assert 'value="ana@"' in bad.text
    assert 'value="vip, lead"' in bad.text
    assert re.search(r'id="email-error"[^>]*>[^<]+<', bad.text)
    created = client.post("/contacts", data={**form, "email": "ana@example.com"}, follow_redirects=False)
    assert created.status_code == 303
    page = client.get(created.headers["location"])
    assert "Contact created." in page.text
    assert "ana@example.com" in page.text
    duplicate = client.post("/contacts", data={**form, "email": "ANA@example.com"})
    assert duplicate.status_code == 422
    assert "Another contact already has this email." in duplicate.text


def test_edit_in_place_shows_error_beside_field_and_keeps_value(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with db.transaction() as session:
        do_create_custom_field(session, tenant.actor(), "plan", "Plan", FieldType.LIST, ["Free", "Pro"])
        do_create_custom_field(session, tenant.actor(), "ltv", "Lifetime value", FieldType.NUMBER)
    contact_id = make_contact(db, tenant, first_name="Ana")
    token = sign_in_as(client, db, tenant.agent_id, "agent-password")
    htmx = {"HX-Request": "true", "X-CSRF-Token": token}
    form = client.get(f"/contacts/{contact_id}/fields/email/edit", headers=htmx)
    assert 'name="value"' in form.text
    bad = client.post(f"/contacts/{contact_id}/fields/email", data={"value": "not-an-email"}, headers=htmx)
    assert bad.status_code == 422
    assert 'value="not-an-email"' in bad.text
    assert "field-error" in bad.text
    good = client.post(f"/contacts/{contact_id}/fields/email", data={"value": "ana@example.com"}, headers=htmx)
    assert good.status_code == 200
    assert "ana@example.com" in good.text
    assert "editing" not in good.text
    bad_number = client.post(f"/contacts/{contact_id}/fields/custom_fields.ltv", data={"value": "lots"}, headers=htmx)
    assert bad_number.status_code == 422
    assert 'value="lots"' in bad_number.text
    plan = client.post(f"/contacts/{contact_id}/fields/custom_fields.plan", data={"value": "pro"}, headers=htmx)
    assert plan.status_code == 200
    # Without JavaScript the same form posts normally and the whole page comes back with the error.
    plain = client.post(f"/contacts/{contact_id}/fields/phone", data={"value": "12", "csrf_token": token})
    assert plain.status_code == 422
    assert 'value="12"' in plain.text
    assert "<html" in plain.text
    with db.transaction(write=False) as session:
        contact = repo.contact_by_id(session, tenant.workspace_id, contact_id)
        assert contact is not None
        assert (contact.email, contact.custom) == ("ana@example.com", {"plan": "Pro"})
    page = client.get(f"/contacts/{contact_id}").text
    assert "changed" in page  # the activity log shows the edit


def test_tags_add_and_remove(client: TestClient, db: Database, tenant: Tenant) -> None:
    contact_id = make_contact(db, tenant, first_name="Ana")
    token = sign_in_as(client, db, tenant.agent_id, "agent-password")
    htmx = {"HX-Request": "true", "X-CSRF-Token": token}
    added = client.post(f"/contacts/{contact_id}/tags", data={"tag": "VIP, lead"}, headers=htmx)
    assert added.status_code == 200
    assert ">VIP<" in added.text
    assert ">lead<" in added.text
    too_long = client.post(f"/contacts/{contact_id}/tags", data={"tag": "x" * 101}, headers=htmx)
    assert too_long.status_code == 422
    assert "x" * 101 in too_long.text
    removed = client.post(f"/contacts/{contact_id}/tags/remove", data={"tag": "vip"}, headers=htmx)
    assert ">VIP<" not in removed.text
    with db.transaction(write=False) as session:
        assert repo.tag_names_by_contact(session, [contact_id]) == {contact_id: ["lead"]}


def test_bulk_tag_assign_and_delete_with_confirmation(client: TestClient, db: Database, tenant: Tenant) -> None:
    ids = [make_contact(db, tenant, first_name=f"P{n}") for n in range(3)]
    other_tenant_contact = make_contact(db, tenant, first_name="Keep")
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    tagged = client.post(
        "/contacts/bulk",
        data={"action": "add_tag", "ids": ids, "tag": "evento", "csrf_token": token},
        follow_redirects=False,
    )
    assert tagged.status_code == 303
    assigned = client.post(
        "/contacts/bulk",
        data={"action": "assign", "ids": ids[:2], "assignee": str(tenant.agent_id), "csrf_token": token},
        follow_redirects=False,
    )
    assert assigned.status_code == 303
    with db.transaction(write=False) as session:
        assert repo.tag_names_by_contact(session, ids) == {key: ["evento"] for key in ids}
        assignees = session.scalars(select(Contact.assignee_id).where(Contact.id.in_(ids)).order_by(Contact.id))
        assert list(assignees) == [tenant.agent_id, tenant.agent_id, None]
    confirm = client.post("/contacts/bulk", data={"action": "delete", "ids": ids, "csrf_token": token})
    assert confirm.status_code == 200
    assert "Delete 3 contacts?" in confirm.text
    with db.transaction(write=False) as session:
        assert session.scalar(select(Contact.id).where(Contact.id == ids[0])) is not None
    deleted = client.post(
        "/contacts/bulk",
        data={"action": "delete", "ids": ids, "confirm": "yes", "csrf_token": token},
        follow_redirects=False,
    )
    assert deleted.status_code == 303
    with db.transaction(write=False) as session:
        remaining = set(session.scalars(select(Contact.id)))
    assert remaining == {other_tenant_contact}


def test_agents_cannot_bulk_delete_or_touch_other_workspaces(
    client: TestClient, db: Database, tenant: Tenant, make_tenant: Any
) -> None:
    other = make_tenant()
    foreign = make_contact(db, other, first_name="Foreign")
    mine = make_contact(db, tenant, first_name="Mine")
    token = sign_in_as(client, db, tenant.agent_id, "agent-password")
    refused = client.post(
        "/contacts/bulk", data={"action": "delete", "ids": [mine], "confirm": "yes", "csrf_token": token}
    )
    assert refused.status_code == 403
    assert client.get(f"/contacts/{foreign}").status_code == 404
    client.post("/contacts/bulk", data={"action": "add_tag", "ids": [foreign], "tag": "x", "csrf_token": token})
    with db.transaction(write=False) as session:
        assert repo.tag_names_by_contact(session, [foreign]) == {}


def test_merge_picking_values_and_split(client: TestClient, db: Database, tenant: Tenant) -> None:
    survivor = make_contact(db, tenant, first_name="Ana", email="ana@example.com", country="MX")
    duplicate = make_contact(db, tenant, first_name="Anita", email="anita@example.com", phone="+52 55 1234 5678")
    token = sign_in_as(client, db, tenant.agent_id, "agent-password")
    found = client.get(f"/contacts/{survivor}/merge?q=anita")
    assert f"/contacts/{survivor}/merge/{duplicate}" in found.text
    pick = client.get(f"/contacts/{survivor}/merge/{duplicate}")
    assert 'name="keep.first_name"' in pick.text
    assert 'name="keep.email"' in pick.text
    merged = client.post(
        f"/contacts/{survivor}/merge/{duplicate}",
        data={"keep.first_name": "theirs", "keep.email": "mine", "csrf_token": token},
        follow_redirects=False,
    )
    assert merged.headers["location"] == f"/contacts/{survivor}"
    with db.transaction() as session:
        contact = repo.contact_by_id(session, tenant.workspace_id, survivor)
        assert contact is not None
        assert (contact.first_name, contact.email, contact.phone) == ("Anita", "ana@example.com", "+525512345678")
        assert repo.contact_by_id(session, tenant.workspace_id, duplicate) is None
        for channel, external in (("whatsapp", "5215512345678"), ("telegram", "777")):
            session.add(
                ContactIdentity(
                    workspace_id=tenant.workspace_id, contact_id=survivor, channel=channel, external_id=external
                )
            )
        session.flush()
        identity_id = session.scalars(select(ContactIdentity.id).where(ContactIdentity.channel == "telegram")).one()
    page = client.get(f"/contacts/{survivor}").text
    assert "merged another contact into this one" in page
    assert f"/identities/{identity_id}/split" in page
    split = client.post(
        f"/contacts/{survivor}/identities/{identity_id}/split", data={"csrf_token": token}, follow_redirects=False
    )
    new_id = int(split.headers["location"].rsplit("/", 1)[1])
    assert new_id != survivor
    with db.transaction(write=False) as session:
        moved = session.get(ContactIdentity, identity_id)
        assert moved is not None
        assert moved.contact_id == new_id
