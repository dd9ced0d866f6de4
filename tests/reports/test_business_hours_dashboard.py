"""The business-hours toggle on the Dashboard (waiting times, today's median first response and
resolution), through the real inbox, the event log and the consumer, on both databases. The
workspace is in America/Mexico_City and open Monday to Friday, 09:00-19:00."""

from fastapi.testclient import TestClient

from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter
from tests.reports.support import (
    FIRST_RESPONSE,
    FRIDAY,
    MONDAY,
    RESOLUTION,
    at,
    feed,
    near,
    shop_open_nine_to_seven,
    weekend,
)
from tests.web.helpers import sign_in_as


def test_the_dashboard_times_in_business_hours(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with shop_open_nine_to_seven(db, tenant) as shop:
        weekend(shop, tenant)  # Friday 18:55, answered Monday 09:05, closed 09:35
        with at(f"{FRIDAY} 18:58"):
            shop.customer_writes("+5215550000102")  # still waiting on Monday: 2 + 10 business minutes
        with at(f"{MONDAY} 09:10"):
            calendar = client.get("/api/v1/dashboard", headers=tenant.headers).json()
            # Today's times come from the rollups plus the events not applied yet, as the reports'.
            pending = client.get("/api/v1/dashboard", headers=tenant.headers, params={"business_hours": "true"})
            feed(db)
            business = client.get("/api/v1/dashboard", headers=tenant.headers, params={"business_hours": "true"})
            sign_in_as(client, db, tenant.manager_id, "manager-password")
            page = client.get("/dashboard", params={"business_hours": "1"})
            live = client.get("/dashboard/live", params={"business_hours": "1"})
    assert pending.status_code == business.status_code == 200, business.text
    board = business.json()
    assert calendar["business_hours"] is False
    assert board["business_hours"] is True
    assert pending.json()["times_today"] == board["times_today"]
    assert near(board["times_today"]["first_response_median_seconds"], FIRST_RESPONSE[1])
    assert near(board["times_today"]["resolution_median_seconds"], RESOLUTION[1])
    assert near(calendar["times_today"]["first_response_median_seconds"], FIRST_RESPONSE[0])
    assert near(calendar["times_today"]["resolution_median_seconds"], RESOLUTION[0])
    [waiting] = board["waiting"]["oldest"]
    assert 12 * 60 <= waiting["waiting_seconds"] <= 12 * 60 + 30  # the clock runs on inside the instant
    assert calendar["waiting"]["oldest"][0]["waiting_seconds"] > 2 * 86400
    # Counts do not change.
    assert board["today"] == calendar["today"] == {"opened": 0, "closed": 1}
    assert page.status_code == 200
    toggle = page.text.split('data-testid="business-hours"', 1)[1].split(">", 1)[0]
    assert "checked" in toggle
    assert "disabled" not in toggle
    assert 'data-testid="dashboard-business-hours"' in page.text
    # The live part asks for itself again with the toggle kept.
    assert 'hx-get="/dashboard/live?business_hours=1"' in live.text
    assert "12 min " in live.text


def test_without_business_hours_the_dashboard_refuses_and_disables_the_toggle(
    db: Database, tenant: Tenant, client: TestClient
) -> None:
    response = client.get("/api/v1/dashboard", headers=tenant.headers, params={"business_hours": "true"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert "business_hours" in error["details"]
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    for language, text in (("es", "Solo horario laboral"), ("en", "Business hours only")):
        client.cookies.set("tertulia_lang", language)
        page = client.get("/dashboard", params={"business_hours": "1"})
        assert page.status_code == 200
        assert text in page.text
        assert 'data-testid="business-hours-unavailable"' in page.text
        toggle = page.text.split('data-testid="business-hours"', 1)[1].split(">", 1)[0]
        assert "disabled" in toggle
        assert "checked" not in toggle
        assert 'hx-get="/dashboard/live"' in page.text
