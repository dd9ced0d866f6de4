"""Business hours and auto-close as settings: the API (field paths in refusals), the versions that
reports read (hours_at), team hours, and the pages (errors beside the weekday, in Spanish)."""

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.kit.clock import as_utc, travel, utcnow
from tertulia.kit.db import Database
from tertulia.users.teams import do_create_team
from tertulia.workspaces.hours import WEEKDAYS, is_open, open_time
from tertulia.workspaces.models import BusinessHoursVersion
from tertulia.workspaces.service import hours_at, hours_history
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as

OFFICE = {
    "enabled": True,
    "timezone": "America/Mexico_City",
    "week": {
        day: [{"start": "09:00", "end": "18:00"}] for day in ("monday", "tuesday", "wednesday", "thursday", "friday")
    },
    "holidays": [{"date": "2026-12-25", "name": "Navidad"}],
}


def _signed_in(client: TestClient, db: Database, tenant: Tenant) -> dict[str, str]:
    return {"X-CSRF-Token": sign_in_as(client, db, tenant.owner_id, "owner-password")}


def test_put_and_get_workspace_hours(client: TestClient, db: Database, tenant: Tenant) -> None:
    initial = client.get("/api/v1/workspace/business-hours", headers=tenant.headers)
    assert initial.status_code == 200
    assert initial.json()["enabled"] is False
    assert initial.json()["timezone"] == "America/Mexico_City"
    # An API token reads, but cannot change settings.
    assert client.put("/api/v1/workspace/business-hours", headers=tenant.headers, json=OFFICE).status_code == 403
    headers = _signed_in(client, db, tenant)
    saved = client.put("/api/v1/workspace/business-hours", headers=headers, json=OFFICE)
    assert saved.status_code == 200, saved.text
    assert saved.json()["week"]["monday"] == [{"start": "09:00", "end": "18:00"}]
    assert saved.json()["week"]["sunday"] == []
    assert client.get("/api/v1/workspace/business-hours", headers=tenant.headers).json() == saved.json()


def test_refusals_carry_field_paths(client: TestClient, db: Database, tenant: Tenant) -> None:
    headers = _signed_in(client, db, tenant)
    body = {
        "timezone": "Nowhere/Land",
        "week": {"monday": [{"start": "09:00", "end": "14:00"}, {"start": "13:00", "end": "18:00"}]},
        "holidays": [{"date": "25/12/2026"}],
    }
    refused = client.put("/api/v1/workspace/business-hours", headers=headers, json=body)
    assert refused.status_code == 422
    assert refused.json()["error"]["details"] == {
        "timezone": "is not a known time zone",
        "week.monday[1]": "overlaps another block of the same day",
        "holidays[0].date": "must be a date YYYY-MM-DD",
    }
    shape = client.put("/api/v1/workspace/business-hours", headers=headers, json={"week": {"monday": "9-5"}})
    assert shape.status_code == 422
    assert client.get("/api/v1/workspace/business-hours", headers=headers).json()["enabled"] is False


def test_hours_at_reads_the_version_in_force_then(client: TestClient, db: Database, tenant: Tenant) -> None:
    headers = _signed_in(client, db, tenant)
    before = utcnow()
    assert client.put("/api/v1/workspace/business-hours", headers=headers, json=OFFICE).status_code == 200
    first = utcnow()
    with travel(timedelta(hours=1)):
        late = {**OFFICE, "timezone": "UTC", "week": {"monday": [{"start": "00:00", "end": "24:00"}]}}
        assert client.put("/api/v1/workspace/business-hours", headers=headers, json=late).status_code == 200
    with db.transaction(write=False) as session:
        assert hours_at(session, tenant.workspace_id, before - timedelta(seconds=1)).enabled is False
        assert hours_at(session, tenant.workspace_id, first).timezone == "America/Mexico_City"
        now = hours_at(session, tenant.workspace_id, first + timedelta(hours=2))
        assert now.timezone == "UTC"
        assert is_open(now, datetime(2026, 11, 30, 3, tzinfo=UTC))  # a Monday


def test_team_hours_of_its_own_or_the_workspaces(client: TestClient, db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        team_id = do_create_team(session, tenant.actor(), "Soporte").id
    headers = _signed_in(client, db, tenant)
    assert client.put("/api/v1/workspace/business-hours", headers=headers, json=OFFICE).status_code == 200
    url = f"/api/v1/teams/{team_id}/business-hours"
    follows = client.get(url, headers=headers).json()
    assert follows["follow_workspace"] is True
    assert follows["timezone"] == "America/Mexico_City"
    night = {"timezone": "Europe/Madrid", "week": {"saturday": [{"start": "10:00", "end": "14:00"}]}}
    own = client.put(url, headers=headers, json=night)
    assert own.status_code == 200, own.text
    assert own.json()["follow_workspace"] is False
    saturday = datetime(2026, 11, 28, 11, tzinfo=UTC)  # 12:00 in Madrid
    with db.transaction(write=False) as session:
        assert is_open(hours_at(session, tenant.workspace_id, utcnow(), team_id), saturday)
        assert not is_open(hours_at(session, tenant.workspace_id, utcnow()), saturday)
    with travel(timedelta(seconds=1)):
        back = client.put(url, headers=headers, json={"follow_workspace": True})
    assert back.json()["follow_workspace"] is True
    with db.transaction(write=False) as session:
        later = utcnow() + timedelta(seconds=2)
        assert not is_open(hours_at(session, tenant.workspace_id, later, team_id), saturday)
    assert client.get("/api/v1/teams/999999/business-hours", headers=headers).status_code == 404


def test_a_team_of_another_workspace_is_not_found(
    client: TestClient, db: Database, make_tenant: Callable[..., Tenant]
) -> None:
    mine, theirs = make_tenant(), make_tenant()
    with db.transaction() as session:
        their_team = do_create_team(session, theirs.actor(), "Ventas").id
    headers = _signed_in(client, db, mine)
    url = f"/api/v1/teams/{their_team}/business-hours"
    assert client.get(url, headers=headers).status_code == 404
    assert client.put(url, headers=headers, json=OFFICE).status_code == 404


def test_auto_close_range(client: TestClient, db: Database, tenant: Tenant) -> None:
    headers = _signed_in(client, db, tenant)
    assert client.get("/api/v1/workspace/auto-close", headers=headers).json() == {"minutes": None}
    for minutes in (29, 14 * 24 * 60 + 1, -5):
        refused = client.put("/api/v1/workspace/auto-close", headers=headers, json={"minutes": minutes})
        assert refused.status_code == 422
        assert refused.json()["error"]["details"] == {"auto_close_minutes": "must be between 30 minutes and 14 days"}
    for minutes in (30, 20160, None):
        saved = client.put("/api/v1/workspace/auto-close", headers=headers, json={"minutes": minutes})
        assert saved.json() == {"minutes": minutes}


def test_pages_show_the_error_beside_the_weekday_in_spanish(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    client.post("/language", data={"language": "es", "next": "/settings/general", "csrf_token": token})
    general = client.get("/settings/general")
    assert "Horario de atención" in general.text
    assert 'href="/settings/general/business-hours"' in general.text
    form = {
        "csrf_token": token,
        "enabled": "1",
        "timezone": "Europe/Madrid",
        "monday": "09:00-14:00, 13:00-18:00",
        "tuesday": "22:00-06:00",
        "holidays": "2026-12-25 Navidad",
    }
    refused = client.post("/settings/general/business-hours", data=form)
    assert refused.status_code == 422
    assert 'id="monday-error"' in refused.text
    assert "13:00-18:00: se solapa con otro bloque del mismo día" in refused.text
    assert 'id="tuesday-error"' in refused.text
    assert 'value="09:00-14:00, 13:00-18:00"' in refused.text
    fixed = client.post(
        "/settings/general/business-hours",
        data={**form, "monday": "09:00-14:00, 16:00-19:00", "tuesday": "22:00-24:00"},
        follow_redirects=False,
    )
    assert fixed.status_code == 303
    shown = client.get("/settings/general/business-hours").text
    assert 'value="09:00-14:00, 16:00-19:00"' in shown
    assert "2026-12-25 Navidad" in shown
    auto = client.post("/settings/general/auto-close", data={"csrf_token": token, "auto_close_minutes": "1440"})
    assert auto.status_code == 200  # followed the redirect back to the page
    assert '<option value="1440" selected>1 día</option>' in auto.text


def test_team_page_sets_own_hours_and_follows_again(client: TestClient, db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        team_id = do_create_team(session, tenant.actor(), "Soporte nocturno").id
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    assert f'href="/settings/general/business-hours/teams/{team_id}"' in client.get("/settings/general").text
    url = f"/settings/general/business-hours/teams/{team_id}"
    page = client.get(url)
    assert page.status_code == 200
    assert re.search(r'data-testid="follow-workspace"[^>]* checked', page.text)
    own = {"csrf_token": token, "enabled": "1", "timezone": "UTC", "monday": "22:00-24:00", "tuesday": "00:00-06:00"}
    assert client.post(url, data=own, follow_redirects=False).status_code == 303
    api = client.get(f"/api/v1/teams/{team_id}/business-hours", headers=tenant.headers).json()
    assert api["follow_workspace"] is False
    assert api["week"]["tuesday"] == [{"start": "00:00", "end": "06:00"}]
    assert not re.search(r'data-testid="follow-workspace"[^>]* checked', client.get(url).text)
    with travel(timedelta(seconds=1)):
        back = client.post(url, data={**own, "follow_workspace": "1"}, follow_redirects=False)
    assert back.status_code == 303
    assert client.get(f"/api/v1/teams/{team_id}/business-hours", headers=tenant.headers).json()["follow_workspace"]
    assert client.get("/settings/general/business-hours/teams/999999").status_code == 404


def test_history_measures_each_part_under_the_hours_then(client: TestClient, db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        team_id = do_create_team(session, tenant.actor(), "Ventas").id
    headers = _signed_in(client, db, tenant)
    nine_to_five = {"timezone": "UTC", "week": {day: [{"start": "09:00", "end": "17:00"}] for day in WEEKDAYS}}
    all_day = {"timezone": "UTC", "week": {day: [{"start": "00:00", "end": "24:00"}] for day in WEEKDAYS}}
    assert client.put("/api/v1/workspace/business-hours", headers=headers, json=nine_to_five).status_code == 200
    start = utcnow()
    with travel(timedelta(days=1)):
        assert client.put("/api/v1/workspace/business-hours", headers=headers, json=all_day).status_code == 200
    with travel(timedelta(days=2)):
        url = f"/api/v1/teams/{team_id}/business-hours"
        assert client.put(url, headers=headers, json={"timezone": "UTC"}).status_code == 200  # never open
    end = start + timedelta(days=3)
    with db.transaction(write=False) as session:
        saved = session.scalars(select(BusinessHoursVersion.valid_from).order_by(BusinessHoursVersion.id)).all()
        changed, team_from = as_utc(saved[1]), as_utc(saved[2])
        history = hours_history(session, tenant.workspace_id)
        expected = open_time(hours_at(session, tenant.workspace_id, start), start, changed) + (end - changed)
        assert history.open_time(start, end) == expected
        team_expected = expected - (end - team_from)
        assert history.open_time(start, end, team_id) == team_expected
        for offset in range(0, 72, 5):
            at = start + timedelta(hours=offset)
            for team in (None, team_id):
                assert history.at(at, team) == hours_at(session, tenant.workspace_id, at, team), (offset, team)
