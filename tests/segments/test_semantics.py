"""What the operators mean, checked through both the SQL and the in-memory evaluator."""

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from tertulia.contacts.models import Contact, FieldType
from tertulia.contacts.service import FieldContext, apply_cleaned, clean_contact_values, do_create_custom_field
from tertulia.kit.db import Database
from tertulia.segments import repository as repo
from tertulia.segments.compiler import compile_filter
from tertulia.segments.evaluator import ContactSnapshot, matches
from tertulia.segments.language import Ago, CheckContext, check_filter
from tertulia.segments.timing import EvalContext, ago_instant, shift_months
from tests.conftest import Tenant

NOW = datetime(2024, 3, 31, 18, 0, tzinfo=UTC)  # 12:00 in Mexico City


def one(condition: dict[str, Any]) -> dict[str, Any]:
    return {"match": "all", "groups": [{"match": "all", "conditions": [condition]}]}


def field(name: str, operator: str, value: Any = None) -> dict[str, Any]:
    condition = {"category": "contact_field", "field": name, "operator": operator}
    return one(condition | ({} if value is None else {"value": value}))


def message(operator: str, value: Any = None) -> dict[str, Any]:
    return one(
        {"category": "last_incoming_message", "operator": operator} | ({} if value is None else {"value": value})
    )


@pytest.fixture
def people(db: Database, tenant: Tenant) -> dict[str, int]:
    """Named contacts of the tenant (time zone America/Mexico_City) plus one in another workspace."""
    rows: dict[str, dict[str, Any]] = {
        "jose": {
            "first_name": "José",
            "custom_fields": {"city": "Querétaro"},
            "_in": datetime(2024, 3, 1, tzinfo=UTC),
            "_created": datetime(2024, 3, 1, 12, tzinfo=UTC),
        },
        "ana": {
            "first_name": "Ana",
            "custom_fields": {"city": "Lima"},
            "_in": datetime(2024, 2, 29, 17, tzinfo=UTC),
            "_created": datetime(2024, 2, 29, 17, tzinfo=UTC),
        },
        "nobody": {"first_name": "Nadie", "_in": None, "_created": datetime(2024, 3, 2, 7, tzinfo=UTC)},
        # 05:30 UTC on 1 March is still 29 February in Mexico City.
        "late": {
            "first_name": "Late",
            "_in": datetime(2024, 3, 1, 5, 30, tzinfo=UTC),
            "_created": datetime(2024, 3, 1, 5, 30, tzinfo=UTC),
        },
    }
    ids: dict[str, int] = {}
    with db.transaction() as session:
        do_create_custom_field(session, tenant.actor(), "city", "City", FieldType.TEXT)
        ctx = FieldContext.load(session, tenant.workspace_id)
        for name, values in rows.items():
            contact = Contact(workspace_id=tenant.workspace_id, custom={})
            apply_cleaned(contact, clean_contact_values({k: v for k, v in values.items() if k[0] != "_"}, ctx))
            contact.last_incoming_at = values["_in"]
            contact.created_at = values["_created"]
            session.add(contact)
            session.flush()
            ids[name] = contact.id
    return ids


def run(db: Database, tenant: Tenant, raw: dict[str, Any], people: dict[str, int]) -> set[str]:
    """Names selected; asserts the SQL and the evaluator say the same."""
    ctx = EvalContext(tenant.workspace_id, ZoneInfo("America/Mexico_City"), NOW)
    with db.transaction(write=False) as session:
        checked = check_filter(raw, CheckContext({"city": FieldType.TEXT}, lambda _id: None))
        by_sql = set(session.scalars(select(Contact.id).where(compile_filter(checked, ctx))))
        contacts = session.scalars(select(Contact)).all()
        by_memory = {
            c.id for c in contacts if matches(checked, ContactSnapshot.of(c, repo.contact_tag_keys(session, c.id)), ctx)
        }
    assert by_sql == by_memory
    names = {v: k for k, v in people.items()}
    return {names[i] for i in by_sql}


def test_text_is_case_and_accent_insensitive(db: Database, tenant: Tenant, people: dict[str, int]) -> None:
    assert run(db, tenant, field("first_name", "is", "jose"), people) == {"jose"}
    assert run(db, tenant, field("first_name", "is", "JOSÉ"), people) == {"jose"}
    assert run(db, tenant, field("city", "contains", "queretaro"), people) == {"jose"}
    assert run(db, tenant, field("city", "starts_with", "LI"), people) == {"ana"}


def test_negative_operators_match_missing_values(db: Database, tenant: Tenant, people: dict[str, int]) -> None:
    assert run(db, tenant, field("city", "is_not", "lima"), people) == {"jose", "nobody", "late"}
    assert run(db, tenant, field("city", "not_contains", "e"), people) == {"ana", "nobody", "late"}
    assert run(db, tenant, field("city", "not_exists"), people) == {"nobody", "late"}


def test_never_wrote_is_not_inactive(db: Database, tenant: Tenant, people: dict[str, int]) -> None:
    # One month before noon on 31 March (local) is noon on 29 February local, 18:00 UTC.
    assert run(db, tenant, message("more_than_ago", {"amount": 1, "unit": "months"}), people) == {"ana"}
    assert run(db, tenant, message("less_than_ago", {"amount": 1, "unit": "months"}), people) == {"jose", "late"}
    assert run(db, tenant, message("not_exists"), people) == {"nobody"}
    assert run(db, tenant, message("exists"), people) == {"jose", "ana", "late"}


def test_dates_are_read_in_the_workspace_time_zone(db: Database, tenant: Tenant, people: dict[str, int]) -> None:
    # "late" was created at 05:30 UTC on 1 March: 23:30 on 29 February in Mexico City.
    assert run(db, tenant, field("created_at", "on", "2024-02-29"), people) == {"ana", "late"}
    assert run(db, tenant, field("created_at", "on", "2024-03-01"), people) == {"jose"}
    assert run(db, tenant, field("created_at", "before", "2024-03-01"), people) == {"ana", "late"}
    assert run(db, tenant, field("created_at", "after", "2024-02-29"), people) == {"jose", "nobody"}
    between = field("created_at", "between", ["2024-03-01", "2024-03-02"])
    assert run(db, tenant, between, people) == {"jose", "nobody"}


def test_month_arithmetic_clamps_to_the_month_end() -> None:
    assert shift_months(datetime(2024, 3, 31, 12, tzinfo=UTC), -1) == datetime(2024, 2, 29, 12, tzinfo=UTC)
    assert shift_months(datetime(2023, 3, 31, 12, tzinfo=UTC), -1) == datetime(2023, 2, 28, 12, tzinfo=UTC)
    assert shift_months(datetime(2024, 1, 31, tzinfo=UTC), -2) == datetime(2023, 11, 30, tzinfo=UTC)
    ctx = EvalContext(1, ZoneInfo("America/Mexico_City"), NOW)
    # Noon on 31 March in Mexico City, one month back: noon on 29 February there (18:00 UTC).
    assert ago_instant(ctx, Ago(1, "months")) == datetime(2024, 2, 29, 18, tzinfo=UTC)


def test_sql_is_always_scoped_to_the_workspace(
    db: Database, tenant: Tenant, make_tenant: Any, people: dict[str, int]
) -> None:
    other = make_tenant()
    with db.transaction() as session:
        session.add(Contact(workspace_id=other.workspace_id, first_name="José", first_name_folded="jose", custom={}))
    assert run(db, tenant, {}, people) == set(people)
    assert run(db, tenant, field("first_name", "is", "jose"), people) == {"jose"}
    ctx = EvalContext(tenant.workspace_id, ZoneInfo("UTC"), NOW)
    sql = str(compile_filter(check_filter({}, CheckContext({}, lambda _id: None)), ctx))
    assert "contacts.workspace_id = " in sql
