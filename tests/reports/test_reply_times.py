"""The responses report's reply times (every reply, first and last assignment to response) and
responses per conversation against hand-computed scenarios, through the real inbox, the event log
and the consumer, on both databases. The workspace is in America/Mexico_City (UTC-6, no DST).

The scenario's clock keeps running for a moment inside each travelled instant, so a time is checked
to within 2 seconds of its hand-computed value."""

from typing import Any

from fastapi.testclient import TestClient

from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, fake_provider
from tests.reports.support import (
    DRIFT,
    MONDAY,
    REPLY_DAY,
    TUESDAY,
    a_weekend_in_business_hours,
    at,
    feed,
    make_shop,
    reassignments_and_reopenings,
    report,
    system,
)

DAY = REPLY_DAY  # a Monday
TIMES = ("reply_time", "first_assign_response", "last_assign_response")


def _custom(first: str, last: str, **more: Any) -> dict[str, Any]:
    return {"range": "custom", "from": first, "to": last, **more}


def _rows(body: dict[str, Any], table: str) -> dict[str, dict[str, Any]]:
    columns = body["tables"][table]["columns"]
    return {row[0]: dict(zip(columns, row, strict=True)) for row in body["tables"][table]["rows"]}


def _near(value: float | None, expected: float) -> bool:
    return value is not None and abs(value - expected) <= DRIFT


def _times(row: dict[str, Any], count: int, average: float, median: float, p90: float) -> None:
    assert row["count"] == count, row
    for column, expected in (("average_seconds", average), ("median_seconds", median), ("p90_seconds", p90)):
        assert _near(row[column], expected), (row, column, expected)


def test_every_reply_is_timed_from_the_oldest_message_it_answers_and_bots_do_not_stop_the_clock(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        shop = make_shop(db, tenant, provider.url)
        with at(f"{DAY} 10:00"):
            conversation = shop.customer_writes("+5215550000201")
        with at(f"{DAY} 10:01"):
            shop.customer_writes("+5215550000201", "¿hay alguien?")
        with at(f"{DAY} 10:02"):
            shop.reply(conversation, system(tenant, "bot"), "soy un bot")
        with at(f"{DAY} 10:04"):
            shop.reply(conversation, tenant.actor(), "hola")  # 240 s, from 10:00 (not 10:01, not the bot's)
        with at(f"{DAY} 10:05"):
            shop.reply(conversation, tenant.actor(), "¿en qué te ayudo?")  # answers nothing: a reply, no time
        with at(f"{DAY} 10:10"):
            shop.customer_writes("+5215550000201", "quiero un pedido")
        with at(f"{DAY} 10:12"):
            shop.customer_writes("+5215550000201", "de tres cajas")
        with at(f"{DAY} 10:13"):
            shop.reply(conversation, system(tenant, "workflow"), "te atendemos pronto")
        with at(f"{DAY} 10:15"):
            shop.reply(conversation, system(tenant, "api"), "integración")
        with at(f"{DAY} 10:19"):
            shop.reply(conversation, tenant.actor(), "listo")  # 540 s, from 10:10
        with at(f"{DAY} 10:30"):
            shop.customer_writes("+5215550000201", "gracias")
        with at(f"{DAY} 10:33"):
            shop.reply(conversation, tenant.actor(), "a ti")  # 180 s
        with at(f"{DAY} 11:00"):
            other = shop.customer_writes("+5215550000202")
        with at(f"{DAY} 11:01"):
            shop.reply(other, tenant.actor(), "hola")  # 60 s
        pending = report(client, tenant, "responses", **_custom(DAY, DAY))
        feed(db)
    body = report(client, tenant, "responses", **_custom(DAY, DAY))
    # Read before the consumer applied the events (replayed in memory): the same numbers.
    assert pending["tables"] == body["tables"]
    summary = _rows(body, "summary")
    # Sorted 60, 180, 240, 540: the median is the 2nd (nearest rank), the 90th percentile the 4th.
    _times(summary["reply_time"], 4, 255, 180, 540)
    # The first reply of each conversation is its first response, timed alike.
    _times(summary["first_response"], 2, 150, 60, 240)
    # Nobody was assigned: no assignment to response time.
    assert summary["first_assign_response"]["count"] == 0
    assert summary["last_assign_response"]["count"] == 0
    assert summary["first_assign_response"]["median_seconds"] is None
    buckets = {row[0]: row[1] for row in body["tables"]["reply_buckets"]["rows"]}
    assert buckets == {"<30s": 0, "30s-2m": 1, "2m-5m": 2, "5m-10m": 1, "10m-30m": 0, "30m-1h": 0, ">1h": 0}
    # Five replies of a person (the bot's, the workflow's and the API's are not) to two conversations.
    per = _rows(body, "per_conversation")["replies_per_conversation"]
    assert (per["replies"], per["conversations"], per["average"]) == (5, 2, 2.5)
    assert (per["previous_replies"], per["previous_conversations"], per["previous_average"]) == (0, 0, None)
    # The series draws the replies by the hour of the reply.
    series = {row[0]: row[1] for row in body["tables"]["reply_series"]["rows"] if row[1]}
    assert series == {f"{DAY}T10": 3, f"{DAY}T11": 1}
    # The CSV of the new tables is the JSON table.
    csv_text = client.get(
        "/api/v1/reports/responses/per_conversation.csv", headers=tenant.headers, params=_custom(DAY, DAY)
    ).text
    assert csv_text.splitlines()[1] == "replies_per_conversation,5,2,2.5,0,0,,"


def test_reassignment_reopen_and_closing_for_the_assignment_and_reply_clocks(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        # A closing stops the clocks that run: neither the assignment nor the unanswered message
        # before it is measured after the reopening (the scenario's second conversation).
        reassignments_and_reopenings(make_shop(db, tenant, provider.url))
        feed(db)
    summary = _rows(report(client, tenant, "responses", **_custom(DAY, DAY)), "summary")
    # Sorted 420, 600, 900, 1500.
    _times(summary["reply_time"], 4, 855, 600, 1500)
    _times(summary["first_assign_response"], 1, 900, 900, 900)
    _times(summary["last_assign_response"], 2, 450, 300, 600)
    # Each time belongs to the person who replied.
    owner = _rows(report(client, tenant, "responses", **_custom(DAY, DAY, user_id=tenant.owner_id)), "summary")
    _times(owner["reply_time"], 1, 1500, 1500, 1500)
    _times(owner["first_assign_response"], 1, 900, 900, 900)
    _times(owner["last_assign_response"], 1, 600, 600, 600)
    agent_body = report(client, tenant, "responses", **_custom(DAY, DAY, user_id=tenant.agent_id))
    mine = _rows(agent_body, "summary")
    _times(mine["reply_time"], 3, 640, 600, 900)
    assert mine["first_assign_response"]["count"] == 0
    _times(mine["last_assign_response"], 1, 300, 300, 300)
    per = _rows(agent_body, "per_conversation")["replies_per_conversation"]
    assert (per["replies"], per["conversations"], per["average"]) == (3, 2, 1.5)
    # The other filters apply: another channel has none of it; the category filters closings only.
    with fake_provider() as provider:
        elsewhere = make_shop(db, tenant, provider.url)
    on_other = _rows(
        report(client, tenant, "responses", **_custom(DAY, DAY, channel_id=elsewhere.channel_id)), "summary"
    )
    assert all(on_other[metric]["count"] == 0 for metric in TIMES)
    by_source = _rows(report(client, tenant, "responses", **_custom(DAY, DAY, source="incoming")), "summary")
    assert by_source["reply_time"]["count"] == 4
    # The next day compares with this one.
    tuesday = report(client, tenant, "responses", **_custom("2026-11-03", "2026-11-03"))
    assert _rows(tuesday, "summary")["last_assign_response"]["previous_count"] == 2
    per_tuesday = _rows(tuesday, "per_conversation")["replies_per_conversation"]
    assert (per_tuesday["replies"], per_tuesday["previous_replies"], per_tuesday["previous_conversations"]) == (0, 4, 2)
    assert per_tuesday["previous_average"] == 2.0


def test_an_unassignment_stops_the_last_assignment_clock(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        shop = make_shop(db, tenant, provider.url)
        with at(f"{DAY} 09:00"):
            conversation = shop.customer_writes("+5215550000221")
        with at(f"{DAY} 09:10"):
            shop.assign(conversation, tenant.agent_id)
        with at(f"{DAY} 09:20"):
            shop.unassign(conversation)
        with at(f"{DAY} 09:30"):
            shop.reply(conversation, tenant.actor())
        feed(db)
    summary = _rows(report(client, tenant, "responses", **_custom(DAY, DAY)), "summary")
    # The first assignment runs on (1200 s); the latest was taken away, so it has no response time.
    _times(summary["first_assign_response"], 1, 1200, 1200, 1200)
    assert summary["last_assign_response"]["count"] == 0
    _times(summary["reply_time"], 1, 1800, 1800, 1800)


def test_a_merge_moves_the_unanswered_customer_and_drops_the_folded_assignment(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        shop = make_shop(db, tenant, provider.url)
        with at(f"{DAY} 08:00"):
            first = shop.customer_writes("+5215550000241")
        with at(f"{DAY} 08:05"):
            shop.reply(first, tenant.actor())  # 300 s
        with at(f"{DAY} 08:30"):
            second = shop.customer_writes("+5215550000242")
        with at(f"{DAY} 08:35"):
            shop.assign(second, tenant.agent_id)
        with at(f"{DAY} 09:00"):
            # The second conversation is folded into the first: its customer, unanswered since
            # 08:30, now waits there; its assignment is gone with it.
            shop.merge(shop.contact_of(first), shop.contact_of(second))
        with at(f"{DAY} 09:10"):
            shop.reply(first, tenant.actor())  # 2400 s, from 08:30
        feed(db)
    body = report(client, tenant, "responses", **_custom(DAY, DAY))
    summary = _rows(body, "summary")
    _times(summary["reply_time"], 2, 1350, 300, 2400)
    # The first conversation had its first response at 08:05; the folded one never had one.
    _times(summary["first_response"], 1, 300, 300, 300)
    assert summary["first_assign_response"]["count"] == 0
    assert summary["last_assign_response"]["count"] == 0
    per = _rows(body, "per_conversation")["replies_per_conversation"]
    assert (per["replies"], per["conversations"], per["average"]) == (2, 1, 2.0)


def test_reply_and_assignment_times_in_business_hours(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        a_weekend_in_business_hours(make_shop(db, tenant, provider.url))
        feed(db)
    week = _custom(MONDAY, TUESDAY)
    calendar = _rows(report(client, tenant, "responses", **week), "summary")
    business = _rows(report(client, tenant, "responses", **week, business_hours="true"), "summary")
    weekend_reply, evening_reply = 2 * 86400 + 14 * 3600 + 600, 14 * 3600 + 300
    _times(calendar["reply_time"], 2, (weekend_reply + evening_reply) / 2, evening_reply, weekend_reply)
    _times(business["reply_time"], 2, 450, 300, 600)
    # Assigned at 09:02 and answered at 09:05, within the hours: 180 s either way.
    for summary in (calendar, business):
        _times(summary["first_assign_response"], 1, 180, 180, 180)
        _times(summary["last_assign_response"], 1, 180, 180, 180)
    buckets = report(client, tenant, "responses", **week, business_hours=1)["tables"]["reply_buckets"]["rows"]
    # 300 s and 600 s, each on a limit of the table (the scenario's clock may add a fraction of a
    # second either side).
    found = {row[0]: row[1] for row in buckets if row[1]}
    assert sum(found.values()) == 2
    assert set(found) <= {"2m-5m", "5m-10m", "10m-30m"}
