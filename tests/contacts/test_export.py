"""CSV export: fields, filters, streaming in bounded chunks, formula safety, round trip through the importer."""

import csv
import io
from typing import Any

import pytest
from sqlalchemy import insert, select

from tertulia.contacts import service
from tertulia.contacts.exporter import export_contacts, safe_cell
from tertulia.contacts.importer import ImportOptions, import_contacts
from tertulia.contacts.models import Contact, FieldType
from tertulia.contacts.schemas import ContactOut
from tertulia.kit.db import Database
from tertulia.kit.errors import PermissionDenied, ValidationFailed
from tertulia.users.models import Role
from tests.conftest import Tenant


def define_fields(db: Database, tenant: Tenant) -> None:
    actor = tenant.actor()
    with db.transaction() as session:
        service.do_create_custom_field(session, actor, "plan", "Plan", FieldType.LIST, ["Gratis", "Pro"])
        service.do_create_custom_field(session, actor, "points", "Puntos", FieldType.NUMBER)
        service.do_create_custom_field(session, actor, "birthday", "Cumpleaños", FieldType.DATE)
        service.do_create_custom_field(session, actor, "since", "Since", FieldType.DATETIME)
        service.do_create_custom_field(session, actor, "newsletter", "Boletín", FieldType.CHECKBOX)
        service.do_create_custom_field(session, actor, "notes", "Notas", FieldType.TEXT)


SAMPLE: list[dict[str, Any]] = [
    {
        "first_name": "José",
        "last_name": "Núñez",
        "email": "jose@example.com",
        "phone": "55 1234 5678",
        "language": "es",
        "country": "MX",
        "avatar_url": "https://example.com/j.png",
        "custom_fields": {
            "plan": "Pro",
            "points": -12.5,
            "birthday": "1990-12-31",
            "since": "2024-05-01T10:00:00Z",
            "newsletter": True,
            "notes": "dos\nlíneas, con coma",
        },
        "tags": ["vip", "cliente"],
    },
    {"first_name": '=HYPERLINK("http://evil")', "email": "evil@example.com", "tags": ["lead"]},
    {"first_name": "Emma", "phone": "+44 7911 123456", "custom_fields": {"newsletter": False, "points": 3}},
    {"last_name": "-minus", "custom_fields": {"notes": "+1 of these"}},
]


def seed(db: Database, tenant: Tenant, items: list[dict[str, Any]]) -> list[int]:
    with db.transaction() as session:
        return [service.do_create_contact(session, tenant.actor(), dict(item)).id for item in items]


def contacts(db: Database, tenant: Tenant) -> list[ContactOut]:
    with db.transaction(write=False) as session:
        rows = session.scalars(select(Contact).where(Contact.workspace_id == tenant.workspace_id).order_by(Contact.id))
        return service.contacts_out(session, list(rows))


def export_text(db: Database, tenant: Tenant, **options: Any) -> str:
    with db.transaction(write=False) as session:
        return "".join(export_contacts(session, tenant.actor(), **options))


def test_safe_cell_rule() -> None:
    assert safe_cell("=SUM(A1)") == "'=SUM(A1)"
    assert safe_cell("@cmd") == "'@cmd"
    assert safe_cell("+cmd|' /C calc'!A0") == "'+cmd|' /C calc'!A0"
    assert safe_cell("-2+3") == "'-2+3"
    assert safe_cell("\tx") == "'\tx"
    assert safe_cell("\r=1+1") == "'\r=1+1"
    # Phone numbers and negative numbers stay as they are.
    assert safe_cell("+525512345678") == "+525512345678"
    assert safe_cell("+52 55 1234 5678") == "+52 55 1234 5678"
    assert safe_cell("-12.5") == "-12.5"
    assert safe_cell("Ana") == "Ana"


def test_export_then_import_into_an_empty_workspace_gives_the_same_contacts(
    db: Database, tenant: Tenant, make_tenant: Any
) -> None:
    define_fields(db, tenant)
    seed(db, tenant, SAMPLE)
    text = export_text(db, tenant)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["id", "first_name", "last_name"]
    assert rows[0][-1] == "tags"
    assert '\'=HYPERLINK("http://evil")' in [row[1] for row in rows]
    other = make_tenant(default_country="MX")
    define_fields(db, other)
    with db.transaction() as session:
        report = import_contacts(session, other.actor(), text.encode(), ImportOptions(workers=0))
    assert (report.created, report.rejected) == (len(SAMPLE), [])

    def comparable(contact: ContactOut) -> dict[str, Any]:
        # The raw phone input is not exported; the E.164 number is, and becomes the new raw input.
        return contact.model_dump(exclude={"id", "created_at", "updated_at", "phone_raw"})

    assert [comparable(c) for c in contacts(db, other)] == [comparable(c) for c in contacts(db, tenant)]


def test_chosen_fields_ids_and_where_clause(db: Database, tenant: Tenant) -> None:
    define_fields(db, tenant)
    ids = seed(db, tenant, SAMPLE)
    text = export_text(db, tenant, fields=["email", "custom:points", "tags"], ids=[ids[0], ids[2], 10**9])
    assert list(csv.reader(io.StringIO(text))) == [
        ["email", "custom:points", "tags"],
        ["jose@example.com", "-12.5", "cliente, vip"],
        ["", "3", ""],
    ]
    where = export_text(db, tenant, fields=["first_name"], where=Contact.first_name == "Emma")
    assert where.splitlines() == ["first_name", "Emma"]


def test_blocked_contacts_can_be_exported_as_such(db: Database, tenant: Tenant) -> None:
    ids = seed(db, tenant, [{"first_name": "Luz"}, {"first_name": "Ada"}])
    with db.transaction() as session:
        ada = session.get(Contact, ids[1])
        assert ada is not None
        service.do_block_contact(session, tenant.actor(), ada)
    text = export_text(db, tenant, fields=["first_name", "blocked"])
    assert list(csv.reader(io.StringIO(text))) == [["first_name", "blocked"], ["Luz", "false"], ["Ada", "true"]]


def test_bad_fields_and_permission_are_checked_before_the_first_chunk(db: Database, tenant: Tenant) -> None:
    with db.transaction(write=False) as session:
        with pytest.raises(ValidationFailed) as raised:
            export_contacts(session, tenant.actor(), fields=["email", "nickname", "custom:nope", "email"])
        assert set(raised.value.details) == {"fields.nickname", "fields.custom:nope", "fields.email"}
        with pytest.raises(PermissionDenied):
            export_contacts(session, tenant.actor(Role.AGENT))


def test_bom_option_and_other_workspaces_are_never_exported(db: Database, tenant: Tenant, make_tenant: Any) -> None:
    seed(db, tenant, [{"first_name": "Mine"}])
    other = make_tenant()
    seed(db, other, [{"first_name": "Theirs"}])
    text = export_text(db, tenant, fields=["first_name"], bom=True)
    assert text.startswith("\ufefffirst_name\r\n")
    assert "Theirs" not in text
    assert "Mine" in text
    assert not export_text(db, tenant, fields=["first_name"]).startswith("\ufeff")


def test_export_streams_in_bounded_chunks(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        session.execute(
            insert(Contact),
            [
                {"workspace_id": tenant.workspace_id, "first_name": f"P{i}", "email": f"p{i}@example.com", "custom": {}}
                for i in range(250)
            ],
        )
    with db.transaction(write=False) as session:
        chunks = export_contacts(session, tenant.actor(), fields=["id", "first_name", "email"], batch_size=20)
        header = next(chunks)
        assert header == "id,first_name,email\r\n"
        body = list(chunks)
    assert len(body) == 13  # ceil(250 / 20): one chunk per keyset batch
    assert max(len(chunk) for chunk in body) < 20 * 60
    assert sum(chunk.count("\r\n") for chunk in body) == 250
