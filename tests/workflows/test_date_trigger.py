"""The date trigger on both databases: a yearly birthday in the workspace's time zone, a date-time
field with an offset in hours, re-arming when the field changes, blocked contacts left out, and a
sweep that crashes mid-window and restarts later neither skipping nor doubling an occurrence.

The sweep is called by hand with the instant it runs at (`dates.sweep(db, now=...)`); a crash is an
exception raised from `dates.crash_point`, which rolls the window's transaction back as a killed
process would."""

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.workflows import dates
from tertulia.workflows.models import WorkflowDateFire, WorkflowRun
from tertulia.workspaces.models import Workspace
from tests.conftest import Tenant
from tests.workflows.support import advance

pytestmark = pytest.mark.usefixtures("no_background_work")

ZONE = ZoneInfo("America/Mexico_City")


class Crash(Exception):
    pass


@pytest.fixture
def zoned(db: Database, tenant: Tenant) -> Tenant:
    with db.transaction() as session:
        session.execute(update(Workspace).where(Workspace.id == tenant.workspace_id).values(timezone=ZONE.key))
    return tenant


@pytest.fixture
def no_crash() -> Iterator[None]:
    yield
    dates.crash_point = None


def publish(client: TestClient, tenant: Tenant, trigger: dict[str, Any]) -> int:
    definition = {
        "trigger": trigger,
        "steps": [
            {"id": "note", "type": "update_field", "config": {"field": "note", "value": "{{trigger.date}}"}},
        ],
    }
    created = client.post("/api/v1/workflows", headers=tenant.headers, json={"name": "Fecha", "definition": definition})
    assert created.status_code == 201, created.text
    workflow_id = int(created.json()["id"])
    assert client.post(f"/api/v1/workflows/{workflow_id}/publish", headers=tenant.headers).status_code == 200
    return workflow_id


def fields(client: TestClient, tenant: Tenant, *extra: tuple[str, str]) -> None:
    for key, kind in (("note", "text"), *extra):
        body = {"key": key, "label": key.title(), "type": kind}
        assert client.post("/api/v1/custom-fields", headers=tenant.headers, json=body).status_code == 201


def contact(client: TestClient, tenant: Tenant, email: str, **custom: str) -> int:
    body = {"email": email, "custom_fields": custom}
    response = client.post("/api/v1/contacts", headers=tenant.headers, json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def note(client: TestClient, tenant: Tenant, contact_id: int) -> Any:
    return client.get(f"/api/v1/contacts/id:{contact_id}", headers=tenant.headers).json()["custom_fields"].get("note")


def ahead(days: int) -> date:
    """A local date `days` ahead that exists in 1992 and every year (not 29 February)."""
    found = (utcnow() + timedelta(days=days)).astimezone(ZONE).date()
    return found + timedelta(days=1) if (found.month, found.day) == (2, 29) else found


def runs_by_contact(db: Database, workflow_id: int) -> dict[int, int]:
    with db.transaction(write=False) as session:
        rows = session.execute(
            select(WorkflowRun.contact_id, func.count())
            .where(WorkflowRun.workflow_id == workflow_id)
            .group_by(WorkflowRun.contact_id)
        )
        return {int(contact_id): int(count) for contact_id, count in rows}


def test_a_yearly_birthday_fires_once_in_the_workspace_time_zone_and_rearms(
    client: TestClient, db: Database, zoned: Tenant
) -> None:
    tenant = zoned
    fields(client, tenant, ("birthday", "date"))
    birthday = ahead(3)
    born = birthday.replace(year=1992).isoformat()
    ana = contact(client, tenant, "ana@example.com", birthday=born)
    blocked = contact(client, tenant, "bloq@example.com", birthday=born)
    client.post(f"/api/v1/contacts/id:{blocked}/block", headers=tenant.headers)
    contact(client, tenant, "otra@example.com", birthday=(birthday + timedelta(days=5)).replace(year=1992).isoformat())
    workflow_id = publish(
        client,
        tenant,
        {
            "type": "date",
            "config": {
                "field": "birthday",
                "direction": "before",
                "offset": {"amount": 1, "unit": "days"},
                "time": "09:00",
                "repeat": "yearly",
            },
        },
    )
    # 09:00 in Mexico City on the day before the birthday.
    fire = datetime.combine(birthday - timedelta(days=1), time(9, 0), tzinfo=ZONE)

    assert dates.sweep(db, now=fire - timedelta(minutes=1)) == 0
    assert dates.sweep(db, now=fire + timedelta(minutes=1)) == 1
    assert dates.sweep(db, now=fire + timedelta(minutes=2)) == 0
    advance(db)
    assert runs_by_contact(db, workflow_id) == {ana: 1}
    assert note(client, tenant, ana) == birthday.isoformat()

    # A new date is a new occurrence: the trigger fires again for it.
    moved = (birthday + timedelta(days=1)).replace(year=1992).isoformat()
    client.patch(f"/api/v1/contacts/id:{ana}", headers=tenant.headers, json={"custom_fields": {"birthday": moved}})
    assert dates.sweep(db, now=fire + timedelta(days=1, minutes=1)) == 1
    advance(db)
    assert runs_by_contact(db, workflow_id) == {ana: 2}
    assert note(client, tenant, ana) == (birthday + timedelta(days=1)).isoformat()


def test_a_datetime_field_fires_hours_after_it(client: TestClient, db: Database, zoned: Tenant) -> None:
    tenant = zoned
    fields(client, tenant, ("trial_ends", "datetime"))
    ends = (utcnow() + timedelta(days=1)).replace(microsecond=0)
    ana = contact(client, tenant, "ana@example.com", trial_ends=ends.isoformat())
    publish(
        client,
        tenant,
        {
            "type": "date",
            "config": {"field": "trial_ends", "direction": "after", "offset": {"amount": 3, "unit": "hours"}},
        },
    )
    assert dates.sweep(db, now=ends + timedelta(hours=2, minutes=59)) == 0
    assert dates.sweep(db, now=ends + timedelta(hours=3)) == 1
    advance(db)
    assert note(client, tenant, ana) == ends.date().isoformat()


def test_a_sweep_that_crashes_and_restarts_later_neither_skips_nor_doubles(
    client: TestClient, db: Database, zoned: Tenant, no_crash: None
) -> None:
    tenant = zoned
    fields(client, tenant, ("renewal", "date"))
    renewal = ahead(2)
    people = [contact(client, tenant, f"c{n}@example.com", renewal=renewal.isoformat()) for n in range(4)]
    workflow_id = publish(
        client,
        tenant,
        {
            "type": "date",
            "config": {
                "field": "renewal",
                "direction": "after",
                "offset": {"amount": 2, "unit": "hours"},
                "time": "10:00",
            },
        },
    )
    fire = datetime.combine(renewal, time(10, 0), tzinfo=ZONE) + timedelta(hours=2)

    for crash_after in (1, 3):
        fired: list[str] = []

        def crash(point: str, crash_after: int = crash_after, fired: list[str] = fired) -> None:
            fired.append(point)
            if len(fired) == crash_after:
                raise Crash(point)

        dates.crash_point = crash
        with pytest.raises(Crash):
            dates.sweep(db, now=fire + timedelta(minutes=1))
        assert runs_by_contact(db, workflow_id) == {}  # the whole window rolled back

    dates.crash_point = None
    # Restarted an hour later: the window still starts where the last committed sweep ended.
    assert dates.sweep(db, now=fire + timedelta(hours=1)) == 4
    assert dates.sweep(db, now=fire + timedelta(hours=1, minutes=1)) == 0
    assert runs_by_contact(db, workflow_id) == dict.fromkeys(people, 1)
    with db.transaction(write=False) as session:
        occurrences = session.scalars(
            select(WorkflowDateFire.occurrence).where(WorkflowDateFire.workflow_id == workflow_id)
        )
        assert sorted(occurrences) == [renewal.isoformat()] * 4
