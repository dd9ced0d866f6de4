"""The SQL compiler and the in-memory evaluator agree, on SQLite and on PostgreSQL.

Hypothesis generates contacts (missing values, accents, LIKE wildcards, month ends, microseconds)
and filters (every category and operator, nested segments, odd time zones, odd "now"s), stores the
contacts through the contacts service's own cleaning, then compares the ids the SQL selects with
the contacts the evaluator accepts.
"""

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from tertulia.contacts.models import Contact, ContactTag, FieldType
from tertulia.contacts.service import (
    FieldContext,
    apply_cleaned,
    clean_contact_values,
    do_create_custom_field,
    ensure_tags,
)
from tertulia.kit.db import Database
from tertulia.segments import repository as repo
from tertulia.segments.compiler import compile_filter
from tertulia.segments.evaluator import ContactSnapshot, matches
from tertulia.segments.language import CheckContext, check_filter
from tertulia.segments.timing import EvalContext
from tests.conftest import Tenant

CUSTOM = {
    "note": FieldType.TEXT,
    "mail": FieldType.EMAIL,
    "score": FieldType.NUMBER,
    "birthday": FieldType.DATE,
    "seen": FieldType.DATETIME,
    "plan": FieldType.LIST,
    "optin": FieldType.CHECKBOX,
}
PLAN_OPTIONS = ["Free", "Pro", "Énterprise"]
TAGS = ["VIP", "lead", "Café", "niño"]
ZONES = [
    "UTC",
    "America/Mexico_City",
    "Pacific/Chatham",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "Europe/Madrid",
]
BASE = datetime(2024, 3, 31, 23, 30, tzinfo=UTC)

names = st.sampled_from([None, "José", "jose", "JOSÉ", "Ana", "ána", "Zoë", "o'Brien", "100%_x", "Ñandú", "ß"])
texts = st.sampled_from(["José Pérez", "jose", "50% off", "a_b", "Café", "CAFE", "zoë", "x\\y"])
instants = st.builds(
    lambda days, seconds, micro: BASE + timedelta(days=days, seconds=seconds, microseconds=micro),
    st.integers(-120, 40),
    st.integers(0, 86_399),
    st.sampled_from([0, 1, 999_999]),
)
month_ends = st.sampled_from(
    [
        datetime(2024, 3, 31, 12, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
        datetime(2023, 12, 31, 0, 0, tzinfo=UTC),
        datetime(2024, 5, 31, 6, 15, tzinfo=UTC),
        datetime(2024, 10, 27, 1, 30, tzinfo=UTC),  # a DST change in Europe
    ]
)
moments = st.one_of(instants, month_ends)
days = st.builds(lambda n: (BASE + timedelta(days=n)).date(), st.integers(-130, 45))


@st.composite
def contact_values(draw: st.DrawFn) -> dict[str, Any]:
    custom: dict[str, Any] = {}
    if draw(st.booleans()):
        custom["note"] = draw(texts)
    if draw(st.booleans()):
        custom["mail"] = draw(st.sampled_from(["jose@example.com", "ANA@ejemplo.es"]))
    if draw(st.booleans()):
        custom["score"] = draw(st.one_of(st.integers(-5, 5), st.sampled_from([2.5, -0.5, 1e6])))
    if draw(st.booleans()):
        custom["birthday"] = draw(days).isoformat()
    if draw(st.booleans()):
        custom["seen"] = draw(moments).isoformat()
    if draw(st.booleans()):
        custom["plan"] = draw(st.sampled_from([*PLAN_OPTIONS, "pro", "ÉNTERPRISE"]))
    if draw(st.booleans()):
        custom["optin"] = draw(st.booleans())
    return {
        "first_name": draw(names),
        "last_name": draw(names),
        "language": draw(st.sampled_from([None, "es", "en", "pt"])),
        "country": draw(st.sampled_from([None, "MX", "ES", "US"])),
        "custom_fields": custom,
        "_assignee": draw(st.sampled_from([None, "owner", "manager"])),
        "_created_at": draw(moments),
        "_updated_at": draw(moments),
        "_last_incoming_at": draw(st.one_of(st.none(), moments)),
        "_last_outgoing_at": draw(st.one_of(st.none(), moments)),
        "_tags": draw(st.lists(st.sampled_from(TAGS), unique=True, max_size=3)),
        "_email_stem": draw(st.sampled_from([None, "jose", "ana.perez", "o_k"])),
        "_blocked": draw(st.booleans()),
    }


ago = st.builds(
    lambda amount, unit: {"amount": amount, "unit": unit},
    st.integers(0, 40),
    st.sampled_from(["minutes", "hours", "days", "weeks", "months"]),
)
day_text = days.map(date.isoformat)


def _date_condition(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    op = draw(
        st.sampled_from(["before", "after", "on", "between", "less_than_ago", "more_than_ago", "exists", "not_exists"])
    )
    base["operator"] = op
    if op in ("before", "after", "on"):
        base["value"] = draw(day_text)
    elif op == "between":
        first, second = sorted([draw(days), draw(days)])
        base["value"] = [first.isoformat(), second.isoformat()]
    elif op in ("less_than_ago", "more_than_ago"):
        base["value"] = draw(ago)
    return base


@st.composite
def conditions(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    kinds = ["text", "code", "list", "number", "checkbox", "date", "datetime", "assignee", "tag", "message"]
    if depth == 0:
        kinds.append("segment")
    kind = draw(st.sampled_from(kinds))
    value: Any
    if kind == "text":
        field = draw(st.sampled_from(["first_name", "last_name", "email", "note", "mail"]))
        op = draw(
            st.sampled_from(
                ["is", "is_not", "contains", "not_contains", "starts_with", "ends_with", "exists", "not_exists"]
            )
        )
        value = draw(
            st.sampled_from(["jose", "JOSÉ", "o", "É", "s", "%", "_", "ana", "Zoë", "cafe", "ss", "\\", "Pérez"])
        )
        return {"category": "contact_field", "field": field, "operator": op, "value": value}
    if kind in ("code", "list"):
        field = draw(st.sampled_from(["language", "country"] if kind == "code" else ["plan"]))
        pool = {"language": ["es", "EN", "pt"], "country": ["mx", "ES", "US"], "plan": ["pro", "ENTERPRISE", "Free"]}
        op = draw(st.sampled_from(["is", "is_not", "is_any_of", "is_none_of", "exists", "not_exists"]))
        value = draw(st.sampled_from(pool[field]))
        if op in ("is_any_of", "is_none_of"):
            value = draw(st.lists(st.sampled_from(pool[field]), min_size=1, max_size=3))
        return {"category": "contact_field", "field": field, "operator": op, "value": value}
    if kind == "number":
        op = draw(st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte", "between", "exists", "not_exists"]))
        number = draw(st.sampled_from([-1, 0, 2, 2.5, 5, 1e6]))
        value = sorted([number, draw(st.sampled_from([-1, 0, 3, 1e6]))]) if op == "between" else number
        return {"category": "contact_field", "field": "score", "operator": op, "value": value}
    if kind == "checkbox":
        return {
            "category": "contact_field",
            "field": draw(st.sampled_from(["optin", "blocked"])),  # a custom checkbox, a boolean column
            "operator": draw(st.sampled_from(["is_true", "is_false"])),
        }
    if kind in ("date", "datetime"):
        field = "birthday" if kind == "date" else draw(st.sampled_from(["created_at", "updated_at", "seen"]))
        return _date_condition(draw, {"category": "contact_field", "field": field})
    if kind == "assignee":
        op = draw(st.sampled_from(["is", "is_not", "exists", "not_exists"]))
        return {
            "category": "contact_field",
            "field": "assignee",
            "operator": op,
            "value": draw(st.sampled_from(["me", "manager"])),
        }
    if kind == "tag":
        op = draw(st.sampled_from(["has_any_of", "has_all_of", "has_none_of", "exists", "not_exists"]))
        value = draw(st.lists(st.sampled_from([*TAGS, "vip", "CAFE", "ghost"]), min_size=1, max_size=3))
        return {"category": "tag", "operator": op, "value": value}
    if kind == "message":
        category = draw(st.sampled_from(["last_incoming_message", "last_outgoing_message"]))
        op = draw(st.sampled_from(["less_than_ago", "more_than_ago", "exists", "not_exists"]))
        return {"category": category, "operator": op, "value": draw(ago)}
    return {
        "category": "segment",
        "operator": draw(st.sampled_from(["in", "not_in"])),
        "value": draw(filters(depth + 1)),
    }


@st.composite
def filters(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    groups = draw(
        st.lists(
            st.builds(
                lambda match, conds: {"match": match, "conditions": conds},
                st.sampled_from(["all", "any"]),
                st.lists(conditions(depth), min_size=1, max_size=3),
            ),
            min_size=1,
            max_size=3 if depth == 0 else 2,
        )
    )
    return {"match": draw(st.sampled_from(["all", "any"])), "groups": groups}


LIST_POOLS = {"country": ["mx", "ES", "US"], "language": ["es", "EN", "pt"], "plan": ["pro", "ENTERPRISE", "Free"]}


@st.composite
def list_condition(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly lists on one field, so that an AND or an OR often has several to merge."""
    field = draw(st.sampled_from(["country", "country", "country", "language", "plan", "tag"]))
    if field == "tag":
        operator = draw(st.sampled_from(["has_any_of", "has_all_of", "has_none_of"]))
        tags = draw(st.lists(st.sampled_from([*TAGS, "vip", "ghost"]), min_size=1, max_size=3))
        return {"category": "tag", "operator": operator, "value": tags}
    operator = draw(st.sampled_from(["is", "is_any_of", "is_any_of", "is_none_of"]))
    values = draw(st.lists(st.sampled_from(LIST_POOLS[field]), min_size=1, max_size=2))
    value: Any = values[0] if operator == "is" else values
    return {"category": "contact_field", "field": field, "operator": operator, "value": value}


@st.composite
def list_filters(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    """Filters of value lists and tags only, many to a group and nested through segments: what the
    compiler merges (lists on one field) and rewrites (tags: all of them in one subquery, and past
    MAX_TAG_JOINS subqueries kept out of joins)."""
    condition = list_condition()
    if depth < 2:
        nested = st.builds(
            lambda operator, value: {"category": "segment", "operator": operator, "value": value},
            st.sampled_from(["in", "not_in"]),
            list_filters(depth + 1),
        )
        condition = st.one_of(condition, condition, nested)
    groups = draw(
        st.lists(
            st.builds(
                lambda match, conds: {"match": match, "conditions": conds},
                st.sampled_from(["all", "any"]),
                st.lists(condition, min_size=1, max_size=6),
            ),
            min_size=1,
            max_size=4 if depth == 0 else 2,
        )
    )
    return {"match": draw(st.sampled_from(["all", "any"])), "groups": groups}


single_condition = conditions().map(lambda c: {"match": "all", "groups": [{"match": "all", "conditions": [c]}]})


def _resolve(raw: dict[str, Any], tenant: Tenant, nested: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Give nested segment filters ids, and user placeholders real ids (values are not JSON-typed in drawing)."""
    out = {"match": raw["match"], "groups": []}
    for group in raw["groups"]:
        conds = []
        for drawn in group["conditions"]:
            cond = dict(drawn)
            if cond["category"] == "segment":
                segment_id = 1000 + len(nested)
                nested[segment_id] = {}  # the id is taken before the segments inside get theirs
                nested[segment_id] = _resolve(cond["value"], tenant, nested)
                cond["value"] = segment_id
            if cond.get("field") == "assignee":
                if cond["operator"] in ("exists", "not_exists"):
                    cond.pop("value")
                elif cond["value"] == "manager":
                    cond["value"] = tenant.manager_id
            if cond["category"] in ("last_incoming_message", "last_outgoing_message") and cond["operator"] in (
                "exists",
                "not_exists",
            ):
                cond.pop("value")
            if cond["operator"] in ("exists", "not_exists", "is_true", "is_false"):
                cond.pop("value", None)
            conds.append(cond)
        out["groups"].append({"match": group["match"], "conditions": conds})
    return out


@pytest.fixture
def seeded(db: Database, tenant: Tenant) -> Tenant:
    with db.transaction() as session:
        actor = tenant.actor()
        for key, field_type in CUSTOM.items():
            options = PLAN_OPTIONS if field_type == FieldType.LIST else None
            do_create_custom_field(session, actor, key, key.title(), field_type, options)
        ensure_tags(session, tenant.workspace_id, TAGS)
    return tenant


def _store(db: Database, tenant: Tenant, values: list[dict[str, Any]]) -> None:
    with db.transaction() as session:
        ctx = FieldContext.load(session, tenant.workspace_id)
        tags = {t.name: t.id for t in ensure_tags(session, tenant.workspace_id, TAGS)}
        users = {None: None, "owner": tenant.owner_id, "manager": tenant.manager_id}
        for index, item in enumerate(values):
            plain = {k: v for k, v in item.items() if not k.startswith("_")}
            if item["_email_stem"]:
                plain["email"] = f"{item['_email_stem']}{index}@example.com"
            plain["assignee_id"] = users[item["_assignee"]]
            cleaned = clean_contact_values(plain, ctx)
            contact = Contact(workspace_id=tenant.workspace_id, custom={})
            apply_cleaned(contact, cleaned)
            contact.created_at = item["_created_at"]
            contact.updated_at = item["_updated_at"]
            contact.last_incoming_at = item["_last_incoming_at"]
            contact.last_outgoing_at = item["_last_outgoing_at"]
            contact.blocked = item["_blocked"]
            session.add(contact)
            session.flush()
            contact.updated_at = item["_updated_at"]  # the onupdate default must not win
            for name in item["_tags"]:
                session.add(ContactTag(contact_id=contact.id, tag_id=tags[name]))
        session.flush()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    contacts=st.lists(contact_values(), min_size=1, max_size=8),
    raw_filters=st.lists(st.one_of(single_condition, filters()), min_size=4, max_size=10),
    now=moments,
    zone=st.sampled_from(ZONES),
    me=st.sampled_from(["owner", None]),
)
def test_sql_and_evaluator_agree(
    db: Database,
    seeded: Tenant,
    contacts: list[dict[str, Any]],
    raw_filters: list[dict[str, Any]],
    now: datetime,
    zone: str,
    me: str | None,
) -> None:
    _assert_agree(db, seeded, contacts, raw_filters, now, zone, me)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    contacts=st.lists(contact_values(), min_size=1, max_size=8),
    raw_filters=st.lists(list_filters(), min_size=2, max_size=5),
    now=moments,
    zone=st.sampled_from(ZONES),
)
def test_sql_and_evaluator_agree_on_merged_lists_and_many_tags(
    db: Database,
    seeded: Tenant,
    contacts: list[dict[str, Any]],
    raw_filters: list[dict[str, Any]],
    now: datetime,
    zone: str,
) -> None:
    _assert_agree(db, seeded, contacts, raw_filters, now, zone, None)


def _assert_agree(
    db: Database,
    tenant: Tenant,
    contacts: list[dict[str, Any]],
    raw_filters: list[dict[str, Any]],
    now: datetime,
    zone: str,
    me: str | None,
) -> None:
    _store(db, tenant, contacts)
    try:
        ctx = EvalContext(
            workspace_id=tenant.workspace_id,
            timezone=ZoneInfo(zone),
            now=now,
            me_user_id=tenant.owner_id if me else None,
        )
        with db.transaction(write=False) as session:
            stored = list(session.scalars(select(Contact).where(Contact.workspace_id == tenant.workspace_id)))
            snapshots = [ContactSnapshot.of(c, repo.contact_tag_keys(session, c.id)) for c in stored]
            for raw in raw_filters:
                nested: dict[int, dict[str, Any]] = {}
                resolved = _resolve(raw, tenant, nested)
                check_ctx = CheckContext(custom_fields=CUSTOM, load_segment=nested.get)
                checked = check_filter(resolved, check_ctx)
                clause = compile_filter(checked, ctx)
                by_sql = set(session.scalars(select(Contact.id).where(clause)))
                by_memory = {s.id for s in snapshots if matches(checked, s, ctx)}
                assert by_sql == by_memory, resolved
    finally:
        with db.transaction() as session:
            session.execute(delete(Contact).where(Contact.workspace_id == tenant.workspace_id))
