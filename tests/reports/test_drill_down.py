"""Drill-down: the list of conversations behind a bar of a report has as many rows as the bar's
number, with the report's range and filters, for every bar of the conversations series and every
bucket of first responses; the reply-time and assignment-to-response bars list exactly their
conversations (page and API, filters, tag, business hours, pending and applied events); a list's
CSV has the JSON's rows, and a database failure while it is read is an error, not a shorter file."""

import csv
import html
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import Connection, event

from tertulia.kit.db import Database
from tertulia.reports import repository, service
from tertulia.users.models import Role
from tests.broadcasts.support import fake_channel
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, fake_provider
from tests.reports.support import (
    BUSY_DAY,
    DRIFT,
    MONDAY,
    REPLY_DAY,
    TUESDAY,
    Shop,
    a_weekend_in_business_hours,
    as_cell,
    at,
    busy_day,
    feed,
    reassignments_and_reopenings,
    report,
    report_csv,
)
from tests.web.helpers import sign_in_as

COUNT = re.compile(r'data-testid="list-count" data-count="(\d+)"')


def _listed(client: TestClient, name: str, params: dict[str, Any]) -> tuple[int, int]:
    """The count the list page shows, and its rows."""
    page = client.get(f"/reports/{name}/list", params=params)
    assert page.status_code == 200, page.text
    found = COUNT.search(page.text)
    assert found is not None, page.text
    return int(found.group(1)), page.text.count('data-testid="list-row"')


def _more_days(shop: Shop, tenant: Tenant) -> None:
    """The next day: a reopening and a second closing of one conversation, and a new conversation
    assigned to the agent (left waiting)."""
    start = datetime.fromisoformat("2026-11-03 08:00")
    category = shop.category("Soporte")
    with at(start.isoformat(sep=" ")):
        first = shop.customer_writes("+5215550000100")  # the busy day's first, closed: a new conversation
    with at((start + timedelta(minutes=5)).isoformat(sep=" ")):
        shop.assign(first, tenant.agent_id)
        shop.reply(first, tenant.actor(Role.AGENT))
        shop.close(first, category)
    with at((start + timedelta(minutes=20)).isoformat(sep=" ")):
        shop.reopen(first)
    with at((start + timedelta(minutes=40)).isoformat(sep=" ")):
        shop.close(first, category)
    with at((start + timedelta(hours=2)).isoformat(sep=" ")):
        shop.customer_writes("+5215550009999")


def test_every_bar_lists_as_many_conversations_as_it_counts(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    shop = busy_day(db, tenant)
    _more_days(shop, tenant)  # not fed: these are pending events, which the bars count too
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    ranges: list[dict[str, Any]] = [
        {"range": "custom", "from": BUSY_DAY, "to": BUSY_DAY},  # one day: bars by hour
        {"range": "custom", "from": "2026-11-01", "to": "2026-11-04"},
        {"range": "custom", "from": "2026-11-01", "to": "2026-11-04", "user_id": tenant.agent_id},
        {"range": "custom", "from": "2026-11-01", "to": "2026-11-04", "channel_id": shop.channel_id},
        {"range": "custom", "from": "2026-11-01", "to": "2026-11-04", "source": "user"},  # nothing opened so
    ]
    bars = 0
    nonzero = 0
    for params in ranges:
        series = report(client, tenant, "conversations", **params)["tables"]["series"]
        for row in series["rows"]:
            for metric in ("opened", "closed", "reopened"):
                expected = row[series["columns"].index(metric)]
                count, rows = _listed(client, "conversations", {**params, "metric": metric, "period": row[0]})
                assert (count, rows) == (expected, expected), (params, row[0], metric)
                bars += 1
                nonzero += expected > 0
        buckets = report(client, tenant, "responses", **params)["tables"]["buckets"]
        for name, expected, _percent in buckets["rows"]:
            count, rows = _listed(client, "responses", {**params, "metric": "first_response", "bucket": name})
            assert (count, rows) == (expected, expected), (params, name)
            bars += 1
            nonzero += expected > 0
    assert bars > 100
    assert nonzero >= 15  # the lists are not all empty
    # Applied to the rollups, the same numbers and lists.
    feed(db)
    params = {"range": "custom", "from": "2026-11-01", "to": "2026-11-04"}
    series = report(client, tenant, "conversations", **params)["tables"]["series"]
    day = next(row for row in series["rows"] if row[0] == "2026-11-03")
    assert day[1:4] == [2, 2, 1]  # opened, closed, reopened
    assert _listed(client, "conversations", {**params, "metric": "closed", "period": "2026-11-03"}) == (2, 2)
    assert _listed(client, "conversations", {**params, "metric": "reopened", "period": "2026-11-03"}) == (1, 1)


def test_the_report_links_its_bars_to_their_lists_and_the_list_links_to_the_inbox(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    busy_day(db, tenant)
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    params = {"range": "custom", "from": BUSY_DAY, "to": BUSY_DAY}
    page = client.get("/reports/conversations", params=params)
    assert page.status_code == 200
    assert f"/reports/conversations/list?metric=opened&amp;period={BUSY_DAY}T09" in page.text
    listed = client.get(
        "/reports/conversations/list", params={**params, "metric": "opened", "period": f"{BUSY_DAY}T09"}
    )
    assert listed.status_code == 200
    assert re.search(r'href="/messages/\d+"', listed.text)
    responses = client.get("/reports/responses", params=params)
    assert "/reports/responses/list?metric=first_response&amp;bucket=%3C30s" in responses.text
    # Out of the range, an unknown metric or bucket: the request is refused, not answered wrong.
    outside = {**params, "metric": "opened", "period": "2026-11-05"}
    assert client.get("/reports/conversations/list", params=outside).status_code == 422
    assert client.get("/reports/conversations/list", params={**params, "metric": "incoming"}).status_code == 422
    wrong_bucket = {**params, "metric": "first_response", "bucket": "1h"}
    assert client.get("/reports/responses/list", params=wrong_bucket).status_code == 422
    assert client.get("/reports/messages/list", params={**params, "metric": "opened"}).status_code == 404


def test_an_agents_list_is_their_own_numbers(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    busy_day(db, tenant)
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    params = {"range": "custom", "from": BUSY_DAY, "to": BUSY_DAY, "metric": "first_response"}
    # The agent answered two of the four (90 s and 4000 s): only theirs are listed.
    assert _listed(client, "responses", params) == (2, 2)
    assert _listed(client, "responses", {**params, "bucket": ">1h"}) == (1, 1)
    assert _listed(client, "responses", {**params, "bucket": "<30s"}) == (0, 0)


def _conversations(client: TestClient, tenant: Tenant, params: dict[str, Any]) -> list[int]:
    """The conversations the API lists behind one bar, oldest first (one per occurrence); the
    count is theirs."""
    response = client.get("/api/v1/reports/responses/list", headers=tenant.headers, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(body["items"]), body
    return [item["conversation_id"] for item in body["items"]]


REPLY_CHARTS = {
    "reply_time": ("reply_series", "reply_buckets"),
    "first_assign_response": ("first_assign_series", "first_assign_buckets"),
    "last_assign_response": ("last_assign_series", "last_assign_buckets"),
}


def test_the_reply_time_and_assignment_to_response_bars_list_their_conversations(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        shop = Shop(db, tenant, fake_channel(db, tenant, provider.url).id)
        first, second = reassignments_and_reopenings(shop)
        tag_id = shop.tag(second, "VIP")
    day = {"range": "custom", "from": REPLY_DAY, "to": REPLY_DAY}
    # Replies at 09:25 (the owner), 09:50, 11:20 and 12:47 (the agent); the first assignment is
    # answered at 09:25, the latest at 09:25 (the owner's) and 09:50 (the agent's).
    expected: dict[tuple[str, str], list[int]] = {
        ("reply_time", REPLY_DAY): [first, first, first, second],
        ("reply_time", f"{REPLY_DAY}T09"): [first, first],
        ("reply_time", f"{REPLY_DAY}T11"): [first],
        ("reply_time", f"{REPLY_DAY}T12"): [second],
        ("reply_time", f"{REPLY_DAY}T10"): [],
        ("first_assign_response", REPLY_DAY): [first],
        ("first_assign_response", f"{REPLY_DAY}T09"): [first],
        ("first_assign_response", f"{REPLY_DAY}T12"): [],
        ("last_assign_response", REPLY_DAY): [first, first],
        ("last_assign_response", f"{REPLY_DAY}T09"): [first, first],
    }
    # The same filters as the report: the person who replied, the channel, what opened it, the tag.
    filtered: list[tuple[dict[str, Any], dict[str, list[int]]]] = [
        (
            {"user_id": tenant.owner_id},
            {"reply_time": [first], "first_assign_response": [first], "last_assign_response": [first]},
        ),
        (
            {"user_id": tenant.agent_id},
            {"reply_time": [first, first, second], "first_assign_response": [], "last_assign_response": [first]},
        ),
        (
            {"source": "incoming"},
            {"reply_time": [first, first, first, second], "first_assign_response": [first]},
        ),
        ({"source": "user"}, {"reply_time": [], "last_assign_response": []}),
        ({"tag_id": tag_id}, {"reply_time": [second], "first_assign_response": [], "last_assign_response": []}),
        ({"tag": "vip"}, {"reply_time": [second]}),
    ]

    def check() -> None:
        for (metric, period), conversations in expected.items():
            assert _conversations(client, tenant, {**day, "metric": metric, "period": period}) == conversations
        for extra, lists in filtered:
            for metric, conversations in lists.items():
                params = {**day, **extra, "metric": metric, "period": REPLY_DAY}
                assert _conversations(client, tenant, params) == conversations, (extra, metric)
        # Every bucket lists its count, and the buckets together list the day's occurrences; so
        # does every hour of the series.
        body = report(client, tenant, "responses", **day)
        for metric, (series, buckets) in REPLY_CHARTS.items():
            in_buckets: list[int] = []
            for name, count, _share in body["tables"][buckets]["rows"]:
                listed = _conversations(client, tenant, {**day, "metric": metric, "bucket": name})
                assert len(listed) == count, (metric, name)
                in_buckets += listed
            in_hours: list[int] = []
            for row in body["tables"][series]["rows"]:
                listed = _conversations(client, tenant, {**day, "metric": metric, "period": row[0]})
                assert len(listed) == row[1], (metric, row[0])
                in_hours += listed
            whole = _conversations(client, tenant, {**day, "metric": metric})
            assert sorted(in_buckets) == sorted(in_hours) == sorted(whole) == sorted(expected[(metric, REPLY_DAY)])
        # 900 s from the first assignment; nothing took an hour.
        assert _conversations(client, tenant, {**day, "metric": "first_assign_response", "bucket": "10m-30m"}) == [
            first
        ]
        assert _conversations(client, tenant, {**day, "metric": "reply_time", "bucket": ">1h"}) == []

    check()  # pending: the consumer has not applied the events yet
    feed(db)
    check()


def test_the_reply_time_lists_in_business_hours_and_on_the_page(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        conversation = a_weekend_in_business_hours(Shop(db, tenant, fake_channel(db, tenant, provider.url).id))
        feed(db)
    week = {"range": "custom", "from": MONDAY, "to": TUESDAY}
    # On the calendar both replies took more than an hour; in business hours, 10 and 5 minutes.
    over_an_hour = {**week, "metric": "reply_time", "bucket": ">1h"}
    assert _conversations(client, tenant, over_an_hour) == [conversation, conversation]
    assert _conversations(client, tenant, {**over_an_hour, "business_hours": "true"}) == []
    listed = client.get(
        "/api/v1/reports/responses/list",
        headers=tenant.headers,
        params={**week, "metric": "reply_time", "period": TUESDAY, "business_hours": "true"},
    ).json()
    assert listed["business_hours"] is True
    assert [item["conversation_id"] for item in listed["items"]] == [conversation]
    assert abs(listed["items"][0]["seconds"] - 300) <= DRIFT
    assigned = {**week, "metric": "last_assign_response", "period": MONDAY, "business_hours": "true"}
    assert _conversations(client, tenant, assigned) == [conversation]
    # The page links each count of the new tables to its list, with the toggle kept.
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    page = client.get("/reports/responses", params={**week, "business_hours": "1"})
    assert page.status_code == 200, page.text
    for metric, (series, buckets) in REPLY_CHARTS.items():
        assert f'data-testid="drill-{series}-count"' in page.text, metric
        assert f'data-testid="drill-{buckets}-count"' in page.text, metric
    assert f"/reports/responses/list?metric=reply_time&amp;period={MONDAY}&amp;" in page.text
    assert "/reports/responses/list?metric=last_assign_response&amp;bucket=2m-5m&amp;" in page.text
    assert "business_hours=1" in page.text
    count, rows = _listed(client, "responses", {**week, "metric": "reply_time", "business_hours": "1"})
    assert (count, rows) == (2, 2)
    in_hours = client.get("/reports/responses/list", params={**week, "metric": "reply_time", "business_hours": "1"})
    assert in_hours.text.count('data-testid="list-time"') == 2
    assert 'data-testid="list-business-hours"' in in_hours.text
    # Refused, not answered wrong: a metric the report has no list of, a bucket that is none.
    refused = client.get("/api/v1/reports/responses/list", headers=tenant.headers, params={**week, "metric": "replies"})
    assert refused.status_code == 422
    assert "metric" in refused.json()["error"]["details"]
    no_metric = client.get("/api/v1/reports/responses/list", headers=tenant.headers, params=week)
    assert no_metric.status_code == 422
    wrong = {**week, "metric": "reply_time", "bucket": "2h"}
    assert client.get("/api/v1/reports/responses/list", headers=tenant.headers, params=wrong).status_code == 422


def test_a_lists_csv_has_the_json_lists_rows_with_names_made_safe(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    busy_day(db, tenant)  # on the channel "=Tienda"
    day = {"range": "custom", "from": BUSY_DAY, "to": BUSY_DAY}
    # The contact of the conversation answered after 90 s gets a name a spreadsheet would run.
    (answered,) = _conversations(client, tenant, {**day, "metric": "first_response", "bucket": "30s-2m"})
    contact_id = client.get(f"/api/v1/conversations/{answered}", headers=tenant.headers).json()["contact_id"]
    renamed = client.patch(
        f"/api/v1/contacts/id:{contact_id}",
        headers=tenant.headers,
        json={"first_name": "=HYPERLINK(1)", "last_name": None},
    )
    assert renamed.status_code == 200, renamed.text
    bars: list[tuple[str, dict[str, Any]]] = [
        ("conversations", {"metric": "opened"}),
        ("conversations", {"metric": "closed", "period": f"{BUSY_DAY}T10"}),
        ("responses", {"metric": "first_response"}),
        ("responses", {"metric": "first_response", "bucket": "30s-2m"}),
        ("responses", {"metric": "reply_time", "business_hours": "false"}),
        ("responses", {"metric": "first_response", "bucket": "<30s"}),
    ]
    for name, bar in bars:
        params = {**day, **bar}
        listed = client.get(f"/api/v1/reports/{name}/list", headers=tenant.headers, params=params).json()
        rows = report_csv(client, tenant, name, "list", params)
        assert rows[0] == ["conversation_id", "at", "contact", "channel_id", "channel", "seconds"]
        assert len(rows) - 1 == len(listed["items"]) == listed["count"] == listed["total"], (name, bar)
        assert listed["truncated"] is False
        for row, item in zip(rows[1:], listed["items"], strict=True):
            json_columns = ("conversation_id", "channel_id", "seconds")
            assert [row[0], row[3], row[5]] == [as_cell(item[key]) for key in json_columns], (name, bar)
            # The JSON's instant to the second, in the workspace's time zone (Mexico City: UTC-6).
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d-06:00", row[1]), row[1]
            instant = datetime.fromisoformat(item["at"]).replace(microsecond=0)
            assert datetime.fromisoformat(row[1]) == instant, (row[1], item["at"])
            assert row[4] == "'=Tienda"  # a formula-looking channel name, neutralised
            assert row[2]
    # The renamed contact: neutralised, not a formula.
    rows = report_csv(client, tenant, "responses", "list", {**day, "metric": "first_response", "bucket": "30s-2m"})
    assert [row[2] for row in rows[1:]] == ["'=HYPERLINK(1)"]
    response = client.get(
        "/api/v1/reports/responses/list.csv", headers=tenant.headers, params={**day, "metric": "first_response"}
    )
    assert response.headers["content-disposition"] == (
        f'attachment; filename="responses-first_response-list-{BUSY_DAY}-{BUSY_DAY}.csv"'
    )
    # The JSON list's refusals, with the error's shape.
    for name, bad, field in [
        ("responses", {"metric": "replies"}, "metric"),
        ("responses", {"metric": "reply_time", "bucket": "2h"}, "bucket"),
        ("conversations", {"metric": "opened", "period": "2026-11-05"}, "period"),
        ("conversations", {"metric": "opened", "range": "custom", "from": "2026-11-05", "to": BUSY_DAY}, None),
    ]:
        for suffix in ("list", "list.csv"):
            refused = client.get(f"/api/v1/reports/{name}/{suffix}", headers=tenant.headers, params={**day, **bad})
            assert refused.status_code == 422, (suffix, bad)
            error = refused.json()["error"]
            assert set(error) == {"code", "message", "details"}
            if field is not None:
                assert field in error["details"], (suffix, error)
    assert client.get("/api/v1/reports/messages/list.csv", headers=tenant.headers, params=day).status_code == 404
    # An agent's CSV is their own list, as the JSON; the page links to it with the same query.
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    mine = {**day, "metric": "first_response"}
    own = client.get("/api/v1/reports/responses/list", params=mine).json()
    assert own["count"] == 2
    rows = list(csv.reader(io.StringIO(client.get("/api/v1/reports/responses/list.csv", params=mine).text)))
    assert [int(row[0]) for row in rows[1:]] == [item["conversation_id"] for item in own["items"]]
    page = client.get("/reports/responses/list", params={**mine, "bucket": ">1h"})
    assert page.status_code == 200
    link = re.search(r'href="(/api/v1/reports/responses/list\.csv\?[^"]*)"[^>]*data-testid="list-csv"', page.text)
    assert link is not None, page.text
    address = html.unescape(link.group(1))
    assert f"range=custom&from={BUSY_DAY}&to={BUSY_DAY}&metric=first_response&bucket=%3E1h" in address
    linked = list(csv.reader(io.StringIO(client.get(address).text)))
    assert len(linked) - 1 == _listed(client, "responses", {**mine, "bucket": ">1h"})[0] == 1


def test_a_long_list_says_it_is_cut_and_its_csv_has_every_row_in_order(
    db: Database, make_tenant: Callable[..., Tenant], client: TestClient
) -> None:
    """More items than a list shows (some sharing an instant across the CSV's pages): the JSON and
    the page say how many there are and that they show the first 500; the CSV has them all, once
    each, oldest first, timed in the workspace's zone (Buenos Aires: UTC-3)."""
    tenant = make_tenant(default_country="AR", timezone="America/Argentina/Buenos_Aires")
    zone = ZoneInfo("America/Argentina/Buenos_Aires")
    start = datetime(2026, 11, 4, 3, 0, tzinfo=UTC)  # 00:00 in Buenos Aires
    total = service.DRILL_PAGE + 203
    # Seven items per instant (then in id order), written newest first: the order is the time's, not the ids'.
    moments = [start + timedelta(seconds=30 * (n // 7)) for n in range(total)][::-1]
    items = [
        {
            "workspace_id": tenant.workspace_id,
            "conversation_id": 1_000_000 + n,
            "metric": "opened",
            "period": moment.astimezone(zone).strftime("%Y-%m-%dT%H"),
            "at": moment,
        }
        for n, moment in enumerate(moments)
    ]
    with db.transaction() as session:
        repository.add_items(session, items)
    day = {"range": "custom", "from": "2026-11-04", "to": "2026-11-04", "metric": "opened"}
    expected = [item["conversation_id"] for item in sorted(items, key=lambda i: (i["at"], i["conversation_id"]))]
    listed = client.get("/api/v1/reports/conversations/list", headers=tenant.headers, params=day).json()
    assert (listed["count"], listed["total"], listed["truncated"]) == (total, total, True)
    assert [item["conversation_id"] for item in listed["items"]] == expected[: service.DRILL_LIMIT]
    rows = report_csv(client, tenant, "conversations", "list", day)
    assert [int(row[0]) for row in rows[1:]] == expected
    assert rows[1][1] == "2026-11-04T00:00:00-03:00"
    assert rows[-1][1] == (start + timedelta(seconds=30 * ((total - 1) // 7))).astimezone(zone).isoformat()
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    for language, said, link in (
        ("en", f"Showing the first 500 of {total:,}.", "Download the full list as CSV"),
        ("es", f"Se muestran las primeras 500 de {total:,}.".replace(",", "."), "Descargar la lista completa en CSV"),
    ):
        client.cookies.set("tertulia_lang", language)
        page = client.get("/reports/conversations/list", params=day)
        assert page.status_code == 200
        assert said in page.text, language
        assert page.text.count('data-testid="list-row"') == service.DRILL_LIMIT
        found = re.search(r'href="([^"]*)" download data-testid="list-truncated-csv">([^<]*)<', page.text)
        assert found is not None, page.text
        assert found.group(2) == link
        assert len(report_csv(client, tenant, "conversations", "list", day)) - 1 == total
        assert html.unescape(found.group(1)).startswith("/api/v1/reports/conversations/list.csv?range=custom")


@contextmanager
def _connection_lost_at_second_page(db: Database) -> Iterator[list[str]]:
    """The database connection reading a list's items is lost for real just before its second page
    is read: on PostgreSQL its server process is terminated from another connection, on SQLite the
    connection is closed. The statements of the pages read, as they are read."""
    pages: list[str] = []

    def before(conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
        if "FROM report_items" not in statement or "ORDER BY report_items.at" not in statement:
            return
        pages.append(statement)
        if len(pages) != 2:
            return
        raw: Any = conn.connection.dbapi_connection
        if db.engine.dialect.name == "postgresql":
            url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            with psycopg.connect(url, autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s)", [raw.info.backend_pid])
        else:
            raw.close()

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        yield pages
    finally:
        event.remove(db.engine, "before_cursor_execute", before)


def test_a_lists_csv_cut_short_by_the_database_is_an_error_not_a_shorter_file(
    db: Database, tenant: Tenant, client: TestClient
) -> None:
    """The list's CSV is written whole before it is sent: when the database fails after the first
    page of items, the answer is the error (500, the error JSON, no file), not the first page's rows
    looking like a whole file; once the database answers again, the same CSV is whole, with its
    length said."""
    start = datetime(2026, 11, 4, 15, 0, tzinfo=UTC)  # 09:00 in Mexico City
    total = service.DRILL_PAGE + 5
    with db.transaction() as session:
        repository.add_items(
            session,
            [
                {
                    "workspace_id": tenant.workspace_id,
                    "conversation_id": 2_000_000 + n,
                    "metric": "opened",
                    "period": "2026-11-04T09",
                    "at": start + timedelta(seconds=n),
                }
                for n in range(total)
            ],
        )
    day = {"range": "custom", "from": "2026-11-04", "to": "2026-11-04", "metric": "opened"}
    address = "/api/v1/reports/conversations/list.csv"
    with _connection_lost_at_second_page(db) as pages:
        failed = client.get(address, headers=tenant.headers, params=day)
    assert len(pages) == 2  # the first page was read, the second failed
    assert failed.status_code == 500, failed.text[:200]
    assert failed.headers["content-type"].startswith("application/json")
    assert "content-disposition" not in failed.headers
    assert failed.json()["error"]["code"] == "internal_error"
    whole = client.get(address, headers=tenant.headers, params=day)
    assert whole.status_code == 200
    assert int(whole.headers["content-length"]) == len(whole.content)
    rows = list(csv.reader(io.StringIO(whole.text)))
    assert [int(row[0]) for row in rows[1:]] == [2_000_000 + n for n in range(total)]
