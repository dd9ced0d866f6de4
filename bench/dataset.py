"""A benchmark dataset: one workspace with N contacts, built fast and reused when already there.

20 custom fields of mixed types, ~50 tags on 30% of the contacts, a realistic spread of countries,
languages, creation and message times, and 50 saved segments (the 5 defaults + 45 more). Rows go in
through the drivers directly (sqlite3 `executemany`, PostgreSQL `COPY`) in big batches; the schema
comes from the Alembic history like any real installation.
"""

import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text

from tertulia.contacts.models import Contact, CustomField, FieldType, Tag
from tertulia.kit.db import Database
from tertulia.kit.text import fold
from tertulia.migrations import upgrade
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.segments.service import do_create_segment
from tertulia.users.permissions import Actor
from tertulia.users.service import do_create_api_token
from tertulia.workspaces.models import Workspace

WORKSPACE = "Bench"
NOW = datetime.now(UTC).replace(microsecond=0)
BATCH = 20_000

FIELDS: list[tuple[str, FieldType, list[str] | None]] = [
    ("plan", FieldType.LIST, ["Free", "Starter", "Pro", "Enterprise"]),
    ("segment_tier", FieldType.LIST, ["A", "B", "C"]),
    ("source", FieldType.LIST, ["web", "whatsapp", "instagram", "referral", "ads"]),
    ("city", FieldType.TEXT, None),
    ("company", FieldType.TEXT, None),
    ("job_title", FieldType.TEXT, None),
    ("notes", FieldType.TEXT, None),
    ("website", FieldType.URL, None),
    ("work_email", FieldType.EMAIL, None),
    ("score", FieldType.NUMBER, None),
    ("lifetime_value", FieldType.NUMBER, None),
    ("orders", FieldType.NUMBER, None),
    ("age", FieldType.NUMBER, None),
    ("birthday", FieldType.DATE, None),
    ("renewal_date", FieldType.DATE, None),
    ("first_order_on", FieldType.DATE, None),
    ("last_login", FieldType.DATETIME, None),
    ("trial_ends", FieldType.DATETIME, None),
    ("newsletter", FieldType.CHECKBOX, None),
    ("vip_program", FieldType.CHECKBOX, None),
]
FIRST = ["José", "María", "Ana", "Luis", "Sofía", "Carlos", "Lucía", "Jorge", "Camila", "Andrés", "Zoë", "John"]
LAST = ["García", "Martínez", "López", "Pérez", "Gómez", "Núñez", "Rodríguez", "Smith", "Díaz", "Muñoz"]
CITIES = ["Ciudad de México", "Bogotá", "Madrid", "Lima", "Medellín", "Querétaro", "Sevilla", "Austin"]
COUNTRIES = [("MX", 30), ("ES", 14), ("US", 10), ("CO", 9), ("AR", 7), ("PE", 5), ("CL", 4), ("BR", 4), (None, 17)]
LANGUAGES = [("es", 50), ("en", 20), ("pt", 8), (None, 22)]


@dataclass
class DatasetInfo:
    url: str
    workspace_id: int
    owner_id: int
    contacts: int
    token: str
    built_seconds: float
    reused: bool


def _weighted(rng: random.Random, pairs: list[tuple[str | None, int]]) -> str | None:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def _custom(rng: random.Random, i: int) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, field_type, options in FIELDS:
        if rng.random() < 0.5:
            continue
        if field_type == FieldType.LIST:
            assert options
            values[key] = rng.choice(options)
        elif field_type == FieldType.TEXT:
            values[key] = rng.choice(CITIES) if key == "city" else f"{rng.choice(LAST)} {key} {i % 997}"
        elif field_type == FieldType.URL:
            values[key] = f"https://example.com/{i}"
        elif field_type == FieldType.EMAIL:
            values[key] = f"work{i}@example.org"
        elif field_type == FieldType.NUMBER:
            values[key] = rng.randint(0, 1000) if key != "lifetime_value" else round(rng.uniform(0, 5000), 2)
        elif field_type == FieldType.DATE:
            values[key] = (NOW - timedelta(days=rng.randint(-365, 365 * 30))).date().isoformat()
        elif field_type == FieldType.DATETIME:
            values[key] = (NOW - timedelta(seconds=rng.randint(-86_400 * 30, 86_400 * 400))).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
        else:
            values[key] = rng.random() < 0.4
    return values


def _contact_rows(
    rng: random.Random, workspace_id: int, owner_id: int, first_id: int, count: int
) -> list[dict[str, Any]]:
    rows = []
    for n in range(count):
        i = first_id + n
        first, last = rng.choice(FIRST), rng.choice(LAST)
        # Three years of sign-ups, a little more recent activity; ~1% in the last week.
        age_days = rng.uniform(0, 7) if rng.random() < 0.01 else rng.uniform(0, 3 * 365)
        created = NOW - timedelta(days=age_days)
        incoming = None
        if rng.random() < 0.7:
            incoming = NOW - timedelta(days=min(age_days, rng.expovariate(1 / 60)))
        outgoing = None
        if incoming is not None and rng.random() < 0.9:
            outgoing = incoming + timedelta(minutes=rng.randint(1, 600))
        custom = _custom(rng, i)
        rows.append(
            {
                "id": i,
                "workspace_id": workspace_id,
                "first_name": first,
                "last_name": last,
                "first_name_folded": fold(first),
                "last_name_folded": fold(last),
                "email": f"user{i}@example.com" if rng.random() < 0.8 else None,
                "phone": f"+5255{i:08d}" if rng.random() < 0.6 else None,
                "language": _weighted(rng, LANGUAGES),
                "country": _weighted(rng, COUNTRIES),
                "assignee_id": owner_id if rng.random() < 0.3 else None,
                "created_at": created,
                "updated_at": created + timedelta(days=rng.uniform(0, min(age_days, 30))),
                "last_incoming_at": incoming,
                "last_outgoing_at": outgoing,
                "custom": custom,
                "custom_folded": {k: fold(v) for k, v in custom.items() if isinstance(v, str)},
            }
        )
    return rows


COLUMNS = [
    "id",
    "workspace_id",
    "first_name",
    "last_name",
    "first_name_folded",
    "last_name_folded",
    "email",
    "phone",
    "language",
    "country",
    "assignee_id",
    "created_at",
    "updated_at",
    "last_incoming_at",
    "last_outgoing_at",
    "custom",
    "custom_folded",
]


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def _insert(db: Database, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if db.dialect == "postgresql":
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns)
            cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        raw.commit()
    finally:
        raw.close()


def _pg_value(value: Any) -> Any:
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def build_dataset(url: str, contacts: int, seed: int = 1) -> DatasetInfo:
    """One workspace named "Bench" with `contacts` contacts in the database at `url` (migrated here)."""
    started = time.perf_counter()
    upgrade(url)
    db = Database(url)
    try:
        with db.transaction() as session:
            workspace = session.scalar(select(Workspace).where(Workspace.name == WORKSPACE))
            if workspace is not None:
                have = session.scalar(
                    select(func.count()).select_from(Contact).where(Contact.workspace_id == workspace.id)
                )
                if have == contacts:
                    owner_id = int(
                        session.scalar(
                            text("SELECT user_id FROM memberships WHERE workspace_id = :w LIMIT 1"), {"w": workspace.id}
                        )
                    )
                    token = do_create_api_token(session, workspace.id, "bench").secret
                    return DatasetInfo(
                        url, workspace.id, owner_id, contacts, token, time.perf_counter() - started, True
                    )
                raise SystemExit(
                    f"{url} holds a Bench workspace with {have} contacts, not {contacts}; use a fresh database"
                )
        return _build(db, url, contacts, seed, started)
    finally:
        db.dispose()


def _build(db: Database, url: str, contacts: int, seed: int, started: float) -> DatasetInfo:
    rng = random.Random(seed)
    with db.transaction() as session:
        created = do_create_workspace_with_owner(
            session,
            WORKSPACE,
            "bench-owner@example.com",
            "bench-password",
            default_country="MX",
            timezone="America/Mexico_City",
        )
        workspace_id, owner_id = created.workspace.id, created.owner.id
        for position, (key, field_type, options) in enumerate(FIELDS):
            session.add(
                CustomField(
                    workspace_id=workspace_id,
                    key=key,
                    label=key.replace("_", " ").title(),
                    type=field_type,
                    options=options,
                    position=position,
                )
            )
        tag_names = [f"tag-{n:02d}" for n in range(45)] + ["VIP", "Lead", "Cliente", "Café", "Newsletter"]
        tags = [Tag(workspace_id=workspace_id, name=name, name_key=fold(name)) for name in tag_names]
        session.add_all(tags)
        session.flush()
        tag_ids = [t.id for t in tags]
        token = do_create_api_token(session, workspace_id, "bench").secret
        first_id = int(session.scalar(select(func.coalesce(func.max(Contact.id), 0))) or 0) + 1

    convert = _pg_value if db.dialect == "postgresql" else _sqlite_value
    # Popular tags are popular: a skewed pick, so "has VIP" and "has tag-40" differ in size.
    weights = [1 / (rank + 1) for rank in range(len(tag_ids))]
    done = 0
    while done < contacts:
        size = min(BATCH, contacts - done)
        rows = _contact_rows(rng, workspace_id, owner_id, first_id + done, size)
        _insert(db, "contacts", COLUMNS, [tuple(convert(row[c]) for c in COLUMNS) for row in rows])
        links: list[tuple[Any, ...]] = []
        for row in rows:
            if rng.random() < 0.3:
                chosen = set(rng.choices(tag_ids, weights=weights, k=rng.randint(1, 3)))
                links.extend((row["id"], tag_id, convert(NOW)) for tag_id in chosen)
        _insert(db, "contact_tags", ["contact_id", "tag_id", "created_at"], links)
        done += size
    with db.transaction() as session:
        if db.dialect == "postgresql":
            session.execute(
                text("SELECT setval(pg_get_serial_sequence('contacts', 'id'), (SELECT max(id) FROM contacts))")
            )
        actor = Actor.system(workspace_id)
        for n, raw in enumerate(extra_segment_filters(tag_names)):
            do_create_segment(session, actor, f"Bench segment {n + 1:02d}", raw)
    if db.dialect == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    return DatasetInfo(url, workspace_id, owner_id, contacts, token, time.perf_counter() - started, False)


def _one(condition: dict[str, Any]) -> dict[str, Any]:
    return {"match": "all", "groups": [{"match": "all", "conditions": [condition]}]}


def complex_filter() -> dict[str, Any]:
    """The 6-condition, 2-group filter of the benchmark: custom field, tags, country, last message."""
    return {
        "match": "all",
        "groups": [
            {
                "match": "any",
                "conditions": [
                    {"category": "contact_field", "field": "country", "operator": "is_any_of", "value": ["MX", "CO"]},
                    {"category": "contact_field", "field": "language", "operator": "is", "value": "pt"},
                    {
                        "category": "contact_field",
                        "field": "plan",
                        "operator": "is_any_of",
                        "value": ["pro", "enterprise"],
                    },
                ],
            },
            {
                "match": "all",
                "conditions": [
                    {"category": "tag", "operator": "has_any_of", "value": ["VIP", "Lead", "tag-03"]},
                    {
                        "category": "last_incoming_message",
                        "operator": "less_than_ago",
                        "value": {"amount": 90, "unit": "days"},
                    },
                    {"category": "contact_field", "field": "score", "operator": "gte", "value": 100},
                ],
            },
        ],
    }


def extra_segment_filters(tag_names: list[str]) -> list[dict[str, Any]]:
    """45 varied saved segments, so the list holds 50 with the defaults."""
    filters: list[dict[str, Any]] = [complex_filter()]
    for code in ("MX", "ES", "US", "CO", "AR", "PE", "CL", "BR"):
        filters.append(_one({"category": "contact_field", "field": "country", "operator": "is", "value": code}))
    for code in ("es", "en", "pt"):
        filters.append(_one({"category": "contact_field", "field": "language", "operator": "is", "value": code}))
    for name in [*tag_names[:10], "VIP", "Lead"]:
        filters.append(_one({"category": "tag", "operator": "has_any_of", "value": [name]}))
    for days in (1, 7, 30, 90, 180):
        filters.append(
            _one(
                {
                    "category": "last_incoming_message",
                    "operator": "less_than_ago",
                    "value": {"amount": days, "unit": "days"},
                }
            )
        )
    for plan in ("Free", "Starter", "Pro", "Enterprise"):
        filters.append(_one({"category": "contact_field", "field": "plan", "operator": "is", "value": plan}))
    filters.append(_one({"category": "contact_field", "field": "score", "operator": "between", "value": [100, 200]}))
    filters.append(_one({"category": "contact_field", "field": "newsletter", "operator": "is_true"}))
    filters.append(_one({"category": "contact_field", "field": "city", "operator": "contains", "value": "mexico"}))
    filters.append(_one({"category": "contact_field", "field": "assignee", "operator": "not_exists"}))
    filters.append(
        _one(
            {
                "category": "contact_field",
                "field": "created_at",
                "operator": "less_than_ago",
                "value": {"amount": 1, "unit": "months"},
            }
        )
    )
    filters.append(_one({"category": "last_outgoing_message", "operator": "not_exists"}))
    filters.append(_one({"category": "contact_field", "field": "first_name", "operator": "is", "value": "jose"}))
    filters.append(_one({"category": "tag", "operator": "not_exists"}))
    filters.append(
        _one({"category": "contact_field", "field": "birthday", "operator": "on", "value": NOW.date().isoformat()})
    )
    filters.append(
        _one({"category": "contact_field", "field": "email", "operator": "ends_with", "value": "7@example.com"})
    )
    filters.append(
        _one(
            {
                "category": "contact_field",
                "field": "trial_ends",
                "operator": "more_than_ago",
                "value": {"amount": 2, "unit": "weeks"},
            }
        )
    )
    filters.append(_one({"category": "contact_field", "field": "score", "operator": "gt", "value": 900}))
    return filters[:45]
