"""The reports' definitions against hand-computed scenarios, through the real inbox, the event log
and the consumer, on both databases. The workspace is in America/Mexico_City (UTC-6, no DST)."""

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tertulia.events import service as event_log
from tertulia.events.models import ConsumerPosition, EventRecord
from tertulia.events.types import EventType
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.reports import rollups
from tertulia.reports.models import ConversationFact, Rollup
from tertulia.users.models import Role
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, fake_provider
from tests.reports.support import DRIFT, at, feed, make_shop, report, system
from tests.web.helpers import sign_in_as

DAY = "2026-11-02"  # a Monday


def _summary(body: dict[str, Any]) -> dict[str, list[Any]]:
    table = body["tables"]["summary"]
    return {row[0]: dict(zip(table["columns"], row, strict=True)) for row in table["rows"]}  # type: ignore[misc]


def _custom(first: str, last: str) -> dict[str, str]:
    return {"range": "custom", "from": first, "to": last}


def test_opened_at_23_50_and_answered_next_morning_counts_each_on_its_own_day(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        shop = make_shop(db, tenant, provider.url)
        with at(f"{DAY} 23:50"):
            conversation = shop.customer_writes("+5215550000001")
        with at("2026-11-03 09:05"):
            shop.reply(conversation, tenant.actor())
        feed(db)
    monday = _summary(report(client, tenant, "conversations", **_custom(DAY, DAY)))
    tuesday = _summary(report(client, tenant, "conversations", **_custom("2026-11-03", "2026-11-03")))
    assert monday["opened"]["count"] == 1
    assert tuesday["opened"]["count"] == 0
    # The clock runs overnight: 9 h 15 min, counted on the day of the reply.
    assert monday["first_response"]["count"] == 0
    assert tuesday["first_response"]["count"] == 1
    assert abs(tuesday["first_response"]["median_seconds"] - 33_300) <= DRIFT
    assert abs(tuesday["first_response"]["average_seconds"] - 33_300) <= DRIFT
    # A one-day range is drawn by the hour: the opening falls in the 23:00 hour, local time.
    series = report(client, tenant, "conversations", **_custom(DAY, DAY))["tables"]["series"]["rows"]
    assert [row[0] for row in series if row[1]] == [f"{DAY}T23"]
    messages = report(client, tenant, "messages", **_custom(DAY, "2026-11-03"))["tables"]
    heat = {row[0]: row[1:] for row in messages["heatmap"]["rows"]}
    assert heat["mon"][23] == 1
    assert sum(sum(r) for r in heat.values()) == 1


def test_bot_workflow_and_broadcast_messages_do_not_stop_the_clock(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        shop = make_shop(db, tenant, provider.url)
        with at(f"{DAY} 10:00"):
            conversation = shop.customer_writes("+5215550000002")
        with at(f"{DAY} 10:00:05"):
            shop.reply(conversation, system(tenant, "bot"), "soy un bot")
        with at(f"{DAY} 10:01"):
            shop.reply(conversation, system(tenant, "workflow"), "te atendemos pronto")
        with at(f"{DAY} 10:02"):
            shop.reply(conversation, system(tenant, "api"), "integración")
        with at(f"{DAY} 10:04"):
            shop.reply(conversation, tenant.actor(), "hola, soy Ana")
        with at(f"{DAY} 10:09"):
            shop.reply(conversation, tenant.actor(), "otra respuesta")
        feed(db)
    body = report(client, tenant, "responses", **_custom(DAY, DAY))
    summary = _summary(body)
    assert summary["first_response"]["count"] == 1
    assert abs(summary["first_response"]["median_seconds"] - 240) <= DRIFT
    buckets = {row[0]: row[1] for row in body["tables"]["buckets"]["rows"]}
    assert buckets == {"<30s": 0, "30s-2m": 0, "2m-5m": 1, "5m-10m": 0, "10m-30m": 0, "30m-1h": 0, ">1h": 0}
    senders = dict(report(client, tenant, "messages", **_custom(DAY, DAY))["tables"]["outgoing_by_sender"]["rows"])
    assert senders["bot"] == 1
    assert senders["workflow"] == 1
    assert senders["api"] == 1
    assert senders["user"] == 2


def test_a_reopen_counts_and_starts_a_new_first_response_and_resolution(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        shop = make_shop(db, tenant, provider.url)
        category = shop.category("Venta")
        with at(f"{DAY} 09:00"):
            conversation = shop.customer_writes("+5215550000003")
        with at(f"{DAY} 09:01"):
            shop.assign(conversation, tenant.agent_id)
        with at(f"{DAY} 09:02"):
            shop.reply(conversation, tenant.actor(Role.AGENT))
        with at(f"{DAY} 09:30"):
            shop.close(conversation, category)
        with at(f"{DAY} 12:00"):
            shop.reopen(conversation)
        with at(f"{DAY} 12:10"):
            shop.customer_writes("+5215550000003", "otra cosa")
        with at(f"{DAY} 12:20"):
            shop.reply(conversation, tenant.actor(Role.AGENT))
        with at(f"{DAY} 13:00"):
            shop.close(conversation, category)
        feed(db)
    summary = _summary(report(client, tenant, "conversations", **_custom(DAY, DAY)))
    assert summary["opened"]["count"] == 1
    assert summary["reopened"]["count"] == 1
    assert summary["closed"]["count"] == 2
    # First responses: 120 s, then 600 s (the clock restarts at the customer's message after the reopen).
    assert summary["first_response"]["count"] == 2
    assert abs(summary["first_response"]["average_seconds"] - 360) <= DRIFT
    # Resolutions: 30 min from the opening, then 60 min from the reopening.
    assert abs(summary["resolution"]["average_seconds"] - 2700) <= DRIFT
    assert abs(summary["resolution"]["p90_seconds"] - 3600) <= DRIFT
    by_category = report(client, tenant, "conversations", **_custom(DAY, DAY), category_id=category)
    assert _summary(by_category)["closed"]["count"] == 2
    assert _summary(by_category)["opened"]["count"] == 1  # the category filters closings only
    # The agent sees their own numbers (both replies were theirs; the owner's report has them too),
    # and may not ask for someone else's.
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    own = client.get("/api/v1/reports/responses", params=_custom(DAY, DAY))
    assert own.status_code == 200, own.text
    assert own.json()["filters"] == {"user_id": tenant.agent_id}
    assert _summary(own.json())["first_response"]["count"] == 2
    other = client.get("/api/v1/reports/responses", params={**_custom(DAY, DAY), "user_id": tenant.owner_id})
    assert other.status_code == 422
    assert other.json()["error"]["details"] == {"user_id": "you may see only your own numbers"}


# Every event is applied at the end, after the closing: the merge must still fold into the
# conversation open when it happened (with background dispatch it was applied at once, most runs).
@pytest.mark.usefixtures("no_background_work")
def test_a_merge_of_two_contacts_with_open_conversations(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        shop = make_shop(db, tenant, provider.url)
        with at(f"{DAY} 08:00"):
            first = shop.customer_writes("+5215550000004")
        with at(f"{DAY} 08:30"):
            second = shop.customer_writes("+5215550000005")
        with at(f"{DAY} 09:00"):
            shop.merge(shop.contact_of(first), shop.contact_of(second))
        with at(f"{DAY} 09:10"):
            shop.reply(first, tenant.actor())
        with at(f"{DAY} 10:00"):
            shop.close(first)
        feed(db)
    summary = _summary(report(client, tenant, "conversations", **_custom(DAY, DAY)))
    # Both openings happened and stay counted; one conversation remains, answered and closed once.
    assert summary["opened"]["count"] == 2
    assert summary["closed"]["count"] == 1
    assert summary["first_response"]["count"] == 1
    assert abs(summary["first_response"]["median_seconds"] - 4200) <= 2  # from 08:00
    with db.transaction(write=False) as session:
        merged = session.get(ConversationFact, second)
        assert merged is not None
        assert merged.status == "merged"
        assert merged.merged_into_id == first


def test_an_event_delivered_twice_counts_once(db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter) -> None:
    with fake_provider() as provider:
        shop = make_shop(db, tenant, provider.url)
        conversation = shop.customer_writes("+5215550000006")
        shop.reply(conversation, tenant.actor())
        feed(db)

    def totals() -> list[tuple[str, str, int]]:
        with db.transaction(write=False) as session:
            rows = session.execute(
                select(Rollup.grain, Rollup.metric, func.sum(Rollup.count)).group_by(Rollup.grain, Rollup.metric)
            )
            return sorted((g, m, int(c)) for g, m, c in rows)

    before = totals()
    assert ("d", "opened", 1) in before
    assert ("d", "first_response", 1) in before
    with db.transaction(write=False) as session:
        events = list(session.scalars(select(EventRecord).order_by(EventRecord.id)))
        session.expunge_all()
    for event in events:
        assert rollups.apply_event(db, event) is False
    assert totals() == before


def test_a_failed_message_counts_with_its_reason_on_its_channel(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        shop = make_shop(db, tenant, provider.url)
        provider.script.append((400, {"error": "number not on the service"}))
        with at(f"{DAY} 11:00"):
            conversation = shop.customer_writes("+5215550000007")
            shop.reply(conversation, tenant.actor())
        feed(db)
    tables = report(client, tenant, "messages", **_custom(DAY, DAY))["tables"]
    summary = _summary({"tables": tables})
    assert (summary["incoming"]["count"], summary["outgoing"]["count"], summary["failed"]["count"]) == (1, 1, 1)
    assert tables["failed_reasons"]["rows"] == [["number not on the service", 1]]
    assert tables["by_channel"]["rows"] == [[shop.channel_id, "Tienda", 1, 1, 1]]


def test_bad_parameters_are_field_errors(client: TestClient, tenant: Tenant) -> None:
    cases = [
        ({"range": "forever"}, "range"),
        ({"range": "custom", "from": "2026-01-01"}, "to"),
        ({"range": "custom", "from": "2026-02-01", "to": "2026-01-01"}, "to"),
        ({"range": "custom", "from": "2024-01-01", "to": "2026-01-01"}, "to"),
        ({"channel_id": 999_999}, "channel_id"),
        ({"source": "pigeon"}, "source"),
    ]
    for params, field in cases:
        response = client.get("/api/v1/reports/conversations", headers=tenant.headers, params=params)
        assert response.status_code == 422, (params, response.text)
        assert field in response.json()["error"]["details"], (params, response.text)
    assert client.get("/api/v1/reports/nope", headers=tenant.headers).status_code == 404
    missing = client.get("/api/v1/reports/messages/nope.csv", headers=tenant.headers)
    assert missing.status_code == 404
    assert "heatmap" in missing.json()["error"]["details"]["tables"]


def test_events_not_yet_applied_show_at_once_and_are_not_counted_twice_once_applied(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    queue.huey.immediate = False  # nothing runs inline: the consumer waits until fed
    try:
        with fake_provider() as provider:
            shop = make_shop(db, tenant, provider.url)
            with at(f"{DAY} 10:00"):
                conversation = shop.customer_writes("+5215550000008")
            with at(f"{DAY} 10:03"):
                shop.reply(conversation, tenant.actor())
            with at(f"{DAY} 10:30"):
                shop.close(conversation)
            with db.transaction(write=False) as session:
                assert session.scalar(select(func.count()).select_from(Rollup)) == 0
            before = report(client, tenant, "conversations", **_custom(DAY, DAY))["tables"]
            feed(db)
            with db.transaction(write=False) as session:
                assert session.scalar(select(func.count()).select_from(Rollup)) > 0
            after = report(client, tenant, "conversations", **_custom(DAY, DAY))["tables"]
    finally:
        queue.huey.flush()
    assert before == after
    summary = _summary({"tables": after})
    assert (summary["opened"]["count"], summary["closed"]["count"], summary["first_response"]["count"]) == (1, 1, 1)
    assert abs(summary["first_response"]["median_seconds"] - 180) <= DRIFT


def test_a_crash_before_the_commit_leaves_nothing_and_the_retry_counts_once(
    db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    queue.huey.immediate = False
    try:
        with fake_provider() as provider:
            shop = make_shop(db, tenant, provider.url)
            shop.customer_writes("+5215550000009")
    finally:
        queue.huey.flush()
    with db.transaction(write=False) as session:
        events = list(
            session.scalars(
                select(EventRecord).where(EventRecord.type.in_(sorted(rollups.TYPES))).order_by(EventRecord.id)
            )
        )
        session.expunge_all()
    assert [e.type for e in events] == ["contact.created", "conversation.opened", "message.received"]

    class Crash(Exception):
        pass

    for event in events:  # the worker dies after applying, before its transaction commits
        try:
            with db.transaction() as session:
                assert rollups.apply(session, event) is True
                raise Crash
        except Crash:
            pass
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Rollup)) == 0
        assert session.scalar(select(func.count()).select_from(ConversationFact)) == 0
    assert [rollups.apply_event(db, e) for e in events] == [True, True, True]
    assert [rollups.apply_event(db, e) for e in events] == [False, False, False]
    with db.transaction(write=False) as session:
        counts = dict(
            session.execute(
                select(Rollup.metric, func.sum(Rollup.count)).where(Rollup.grain == "d").group_by(Rollup.metric)
            ).all()
        )
    assert counts == {"contacts_added": 1, "opened": 1, "incoming": 1}


def test_an_event_without_the_catalogues_shape_is_passed_over_not_retried(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        event_log.emit(session, event_log.Event(EventType.MESSAGE_RECEIVED, tenant.workspace_id, {"n": 1}))
        event_log.emit(session, event_log.Event(EventType.CONVERSATION_CLOSED, tenant.workspace_id, {}))
    feed(db)
    with db.transaction(write=False) as session:
        newest = session.scalar(select(func.max(EventRecord.id)))
        assert session.scalar(select(func.count()).select_from(Rollup)) == 0
        assert session.get(ConsumerPosition, rollups.CONSUMER_NAME).last_event_id == newest  # type: ignore[union-attr]
