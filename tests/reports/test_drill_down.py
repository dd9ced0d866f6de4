"""Drill-down: the list of conversations behind a bar of a report has as many rows as the bar's
number, with the report's range and filters, for every bar of the conversations series and every
bucket of first responses."""

import re
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from tertulia.kit.db import Database
from tertulia.users.models import Role
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter
from tests.reports.support import Shop, at, feed, report
from tests.reports.test_pages import DAY, _busy_day
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
    shop = _busy_day(db, tenant)
    _more_days(shop, tenant)  # not fed: these are pending events, which the bars count too
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    ranges: list[dict[str, Any]] = [
        {"range": "custom", "from": DAY, "to": DAY},  # one day: bars by hour
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
    _busy_day(db, tenant)
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    params = {"range": "custom", "from": DAY, "to": DAY}
    page = client.get("/reports/conversations", params=params)
    assert page.status_code == 200
    assert f"/reports/conversations/list?metric=opened&amp;period={DAY}T09" in page.text
    listed = client.get("/reports/conversations/list", params={**params, "metric": "opened", "period": f"{DAY}T09"})
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
    _busy_day(db, tenant)
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    params = {"range": "custom", "from": DAY, "to": DAY, "metric": "first_response"}
    # The agent answered two of the four (90 s and 4000 s): only theirs are listed.
    assert _listed(client, "responses", params) == (2, 2)
    assert _listed(client, "responses", {**params, "bucket": ">1h"}) == (1, 1)
    assert _listed(client, "responses", {**params, "bucket": "<30s"}) == (0, 0)
