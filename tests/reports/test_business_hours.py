"""The business-hours toggle against hand-computed scenarios, through the real inbox, the event log
and the consumer, on both databases. The workspace is in America/Mexico_City (UTC-6, no DST) and open
Monday to Friday, 09:00-19:00."""

import csv
import io
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.conversations import service as inbox
from tertulia.conversations.models import Conversation
from tertulia.kit.db import Database
from tertulia.reports.models import ConversationFact
from tertulia.users.teams import do_create_team
from tertulia.workspaces.service import do_set_business_hours
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, fake_provider
from tests.reports.support import (
    ASSIGNMENT,
    FIRST_RESPONSE,
    FRIDAY,
    MONDAY,
    NINE_TO_SEVEN,
    RESOLUTION,
    WEEKDAYS,
    at,
    feed,
    make_shop,
    near,
    report,
    set_hours,
    shop_open_nine_to_seven,
    weekend,
)
from tests.web.helpers import sign_in_as

ALWAYS = {
    "timezone": "America/Mexico_City",
    "week": {day: [{"start": "00:00", "end": "24:00"}] for day in (*WEEKDAYS, "saturday", "sunday")},
}


def _custom(first: str, last: str, **more: Any) -> dict[str, Any]:
    return {"range": "custom", "from": first, "to": last, **more}


def _summary(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    table = body["tables"]["summary"]
    return {row[0]: dict(zip(table["columns"], row, strict=True)) for row in table["rows"]}


def test_a_friday_evening_message_answered_on_monday_is_ten_business_minutes(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with shop_open_nine_to_seven(db, tenant) as shop:
        conversation = weekend(shop, tenant)
        # Before the consumer applies them, the report replays the pending events: same numbers.
        pending = report(client, tenant, "conversations", **_custom(MONDAY, MONDAY, business_hours="true"))
        feed(db)
    for name, metrics in [
        ("conversations", {"first_response": FIRST_RESPONSE, "resolution": RESOLUTION}),
        ("responses", {"first_response": FIRST_RESPONSE, "assignment": ASSIGNMENT}),
        ("resolutions", {"resolution": RESOLUTION, "assignment": ASSIGNMENT}),
        ("assignments", {"assignment": ASSIGNMENT}),
        ("users", {"first_response": FIRST_RESPONSE, "resolution": RESOLUTION}),
    ]:
        calendar = report(client, tenant, name, **_custom(MONDAY, MONDAY))
        business = report(client, tenant, name, **_custom(MONDAY, MONDAY, business_hours="true"))
        assert calendar["business_hours"] is False
        assert business["business_hours"] is True
        plain, in_hours = _summary(calendar), _summary(business)
        for metric, (calendar_seconds, business_seconds) in metrics.items():
            assert plain[metric]["count"] == in_hours[metric]["count"] == 1, (name, metric)
            for column in ("average_seconds", "median_seconds", "p90_seconds"):
                assert near(plain[metric][column], calendar_seconds), (name, metric, column)
                assert near(in_hours[metric][column], business_seconds), (name, metric, column)
        # Counts do not change.
        for metric in plain:
            if plain[metric]["average_seconds"] is None:
                assert plain[metric]["count"] == in_hours[metric]["count"]
    assert (
        pending["tables"]
        == report(client, tenant, "conversations", **_custom(MONDAY, MONDAY, business_hours=1))["tables"]
    )
    # The per-person row and the leaderboard read the same times.
    users = report(client, tenant, "users", **_custom(MONDAY, MONDAY, business_hours="true"))["tables"]["users"]
    owner = next(dict(zip(users["columns"], row, strict=True)) for row in users["rows"] if row[0] == tenant.owner_id)
    assert near(owner["first_response_median_seconds"], 600)
    assert near(owner["resolution_median_seconds"], 2400)
    board = report(client, tenant, "leaderboard", **_custom(MONDAY, MONDAY, metric="first_response", business_hours=1))
    assert near(board["tables"]["leaderboard"]["rows"][0][3], 600)
    # The bucket table moves the reply from "> 1 h" to the ten-minute edge ("5-10 min" below 600 s,
    # "10-30 min" from 600 s: the scenario's clock may add a fraction of a second either side).
    calendar_buckets = report(client, tenant, "responses", **_custom(MONDAY, MONDAY))["tables"]["buckets"]["rows"]
    business_buckets = report(client, tenant, "responses", **_custom(MONDAY, MONDAY, business_hours=1))["tables"][
        "buckets"
    ]["rows"]
    assert [row[0] for row in calendar_buckets if row[1]] == [">1h"]
    assert [row[0] for row in business_buckets if row[1]] in (["5m-10m"], ["10m-30m"])
    # The conversation's row keeps both.
    with db.transaction(write=False) as session:
        fact = session.scalar(select(ConversationFact).where(ConversationFact.conversation_id == conversation))
        assert fact is not None
        assert fact.first_response_seconds is not None
        assert fact.first_response_business_seconds is not None
        assert fact.resolution_business_seconds is not None
        assert near(fact.first_response_seconds, FIRST_RESPONSE[0])
        assert near(fact.first_response_business_seconds, 600)
        assert near(fact.resolution_business_seconds, 2400)


def test_the_csv_and_the_drill_down_follow_the_toggle(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with shop_open_nine_to_seven(db, tenant) as shop:
        conversation = weekend(shop, tenant)
        feed(db)
    params = _custom(MONDAY, MONDAY, business_hours="1")
    body = report(client, tenant, "conversations", **params)
    response = client.get("/api/v1/reports/conversations/summary.csv", headers=tenant.headers, params=params)
    assert response.status_code == 200, response.text
    rows = list(csv.reader(io.StringIO(response.text)))
    by_metric = {row[0]: row for row in rows[1:]}
    json_rows = {row[0]: row for row in body["tables"]["summary"]["rows"]}
    assert by_metric["first_response"][2] == str(json_rows["first_response"][2])
    assert near(float(by_metric["first_response"][3]), 600)

    def listed(**more: Any) -> dict[str, Any]:
        found = client.get(
            "/reports/responses/list", params={"metric": "first_response", **_custom(MONDAY, MONDAY, **more)}
        )
        assert found.status_code == 200, found.text
        return {"text": found.text}

    buckets = report(client, tenant, "responses", **params)["tables"]["buckets"]["rows"]
    ten = next(row[0] for row in buckets if row[1])
    assert ten in ("5m-10m", "10m-30m")  # about 600 s: see the test above
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    in_hours = listed(bucket=ten, business_hours="1")["text"]
    assert 'data-count="1"' in in_hours
    assert f"/messages/{conversation}" in in_hours
    assert 'data-testid="list-business-hours"' in in_hours
    assert 'data-count="0"' in listed(bucket=ten)["text"]
    assert 'data-count="1"' in listed(bucket=">1h")["text"]
    assert 'data-count="0"' in listed(bucket=">1h", business_hours="1")["text"]


def test_opened_at_23_50_and_answered_next_morning_counts_the_five_open_minutes(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with shop_open_nine_to_seven(db, tenant) as shop:
        with at("2026-11-02 23:50"):
            conversation = shop.customer_writes("+5215550000102")
        with at("2026-11-03 09:05"):
            shop.reply(conversation, tenant.actor())
        feed(db)
    day = _custom("2026-11-03", "2026-11-03")
    assert near(_summary(report(client, tenant, "responses", **day))["first_response"]["average_seconds"], 33_300)
    business = _summary(report(client, tenant, "responses", **day, business_hours=1))
    assert near(business["first_response"]["average_seconds"], 300)


def test_the_hours_in_force_then_count_not_those_saved_later(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    """The consumer applies the events only after the hours changed to open around the clock: the
    weekend still counts as closed, because those were the hours while the customer waited."""
    with shop_open_nine_to_seven(db, tenant) as shop:
        weekend(shop, tenant)
        with at(f"{MONDAY} 12:00"):
            set_hours(db, tenant, ALWAYS)
        feed(db)
    business = _summary(report(client, tenant, "conversations", **_custom(MONDAY, MONDAY, business_hours=1)))
    assert near(business["first_response"]["median_seconds"], 600)
    assert near(business["resolution"]["median_seconds"], 2400)


def test_a_team_with_its_own_hours_measures_its_conversations_by_them(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    """The workspace is open 9-19 on weekdays; the team works weekends too (around the clock), so its
    conversation waited the whole weekend in business hours."""
    with at("2026-11-02 08:00"):
        set_hours(db, tenant, NINE_TO_SEVEN)
        with db.transaction() as session:
            team = do_create_team(session, tenant.actor(), "Guardia")
            do_set_business_hours(session, tenant.actor(), ALWAYS, team_id=team.id)
            team_id = team.id
    with fake_provider() as provider:
        shop = make_shop(db, tenant, provider.url)
        with at(f"{FRIDAY} 18:55"):
            conversation = shop.customer_writes("+5215550000103")
            with db.transaction() as session:
                found = session.get(Conversation, conversation)
                assert found is not None
                inbox.do_assign(session, tenant.actor(), found, user_id=None, team_id=team_id)
        with at(f"{MONDAY} 09:05"):
            shop.reply(conversation, tenant.actor())
        feed(db)
    business = _summary(report(client, tenant, "responses", **_custom(MONDAY, MONDAY, business_hours=1)))
    assert near(business["first_response"]["median_seconds"], FIRST_RESPONSE[0])


def test_without_business_hours_the_toggle_is_refused_and_disabled(
    db: Database, tenant: Tenant, client: TestClient
) -> None:
    response = client.get("/api/v1/reports/responses", headers=tenant.headers, params={"business_hours": "true"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert set(error) >= {"code", "message", "details"}
    assert "business_hours" in error["details"]
    # Reports without times ignore it.
    assert report(client, tenant, "messages", business_hours="true")["business_hours"] is False
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    client.cookies.set("tertulia_lang", "es")
    page = client.get("/reports/responses", params={"business_hours": "1"})
    assert page.status_code == 200
    assert "Solo horario laboral" in page.text
    assert 'data-testid="business-hours-unavailable"' in page.text
    toggle = page.text.split('data-testid="business-hours"', 1)[1].split(">", 1)[0]
    assert "disabled" in toggle
    assert "checked" not in toggle
    # Not carried into the CSV links and the tabs.
    assert 'summary.csv?range=last_7_days" download' in page.text
    assert "&amp;business_hours=1" not in page.text
    # Once the workspace has hours, the toggle is there, and checked when asked for.
    set_hours(db, tenant, NINE_TO_SEVEN)
    page = client.get("/reports/responses", params={"business_hours": "1"})
    toggle = page.text.split('data-testid="business-hours"', 1)[1].split(">", 1)[0]
    assert "disabled" not in toggle
    assert "checked" in toggle
    assert 'data-testid="report-business-hours"' in page.text
    assert "/api/v1/reports/responses/summary.csv?range=last_7_days&amp;business_hours=1" in page.text
    # Reports without times have no toggle.
    assert 'data-testid="business-hours"' not in client.get("/reports/messages").text
