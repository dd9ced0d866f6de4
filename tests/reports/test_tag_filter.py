"""The contact tag filter: a report filtered on a tag equals the same report of a workspace where only
the tagged contacts' conversations happened (hypothesis, through the real inbox, the event log and
the consumer, with the events both pending and applied), and the filter's API, CSV, page and
drill-down."""

import csv
import io
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tertulia.contacts.models import Contact, Tag
from tertulia.contacts.service import do_add_tags, do_create_tag
from tertulia.kit import queue
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, fake_provider
from tests.reports.plays import CUSTOMERS, DAY, Step, phone, play, steps, tag_customers
from tests.reports.support import Shop, at, feed, make_shop, report
from tests.web.helpers import sign_in_as

WIDE = {"range": "custom", "from": "2026-11-03", "to": "2026-11-06"}
ONE_DAY = {"range": "custom", "from": DAY, "to": DAY}
# The users report and the leaderboard last: see _reports.
TAGGED_REPORTS = ("conversations", "responses", "messages", "resolutions", "assignments", "users", "leaderboard")
# The tables whose rows name a team member (True) or a channel (False) by id (and name), at this
# column. Which one matters: a channel's id can equal a team member's (two tables, two sequences).
KEYED_TABLES = {
    ("assignments", "by_user"): (0, True),
    ("users", "users"): (0, True),
    ("leaderboard", "leaderboard"): (1, True),
    ("messages", "by_channel"): (0, False),
}


def _comparable(name: str, tables: dict[str, Any], people: dict[int, str]) -> dict[str, Any]:
    """The tables, with the team members named by role and the channel unnamed (the two
    workspaces' ids differ), in an order that does not depend on ids."""
    found = dict(tables)
    for (report_name, table), (column, of_people) in KEYED_TABLES.items():
        if report_name != name:
            continue
        rows = [
            [
                *row[:column],
                people.get(row[column], "someone else") if of_people else "channel",
                None,
                *row[column + 2 :],
            ]
            for row in tables[table]["rows"]
        ]
        found[table] = {"columns": tables[table]["columns"], "rows": sorted(rows, key=str)}
    return found


def _reports(client: TestClient, tenant: Tenant, **params: Any) -> dict[str, Any]:
    people = {tenant.agent_id: "agent", tenant.manager_id: "manager", tenant.owner_id: "owner"}
    found: dict[str, Any] = {}
    for window in (ONE_DAY, WIDE):
        # The users report and the leaderboard have no series: one range reads both grains' items.
        for name in TAGGED_REPORTS if window is WIDE else TAGGED_REPORTS[:5]:
            body = report(client, tenant, name, **window, **params)
            found[f"{name} {window['from']}"] = _comparable(name, body["tables"], people)
    return found


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    # No shrinking: each example plays two workspaces through the inbox, and shrinking a failure
    # took over five minutes; the failing plan is printed whole, and short enough to read.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(plan=steps, tagged=st.sets(st.integers(0, CUSTOMERS - 1), max_size=CUSTOMERS))
def test_a_tag_filtered_report_is_the_report_of_the_tagged_contacts_alone(
    db: Database,
    make_tenant: Callable[..., Tenant],
    client: TestClient,
    fakehttp_adapter: FakeHttpAdapter,
    plan: list[Step],
    tagged: set[int],
) -> None:
    everyone = make_tenant(default_country="MX", timezone="America/Mexico_City")
    alone = make_tenant(default_country="MX", timezone="America/Mexico_City")
    queue.huey.immediate = False  # the consumer runs only when fed
    try:
        with fake_provider() as provider:
            shop = make_shop(db, everyone, provider.url)
            conversations = play(shop, everyone, plan, set(range(CUSTOMERS)))
            play(make_shop(db, alone, provider.url), alone, plan, tagged)
            tag_customers(db, everyone, shop, conversations, tagged)
            pending = _reports(client, everyone, tag="vip")
            feed(db)
            applied = _reports(client, everyone, tag="VIP")
            expected = _reports(client, alone)
    finally:
        queue.huey.flush()
    assert _alike(applied, expected)
    assert _alike(pending, expected)


def _alike(found: Any, expected: Any) -> bool:
    """Equal, times to within two seconds. The two workspaces play the same steps one after the
    other on a travelling clock, so their durations differ by what the steps took to write: a few
    milliseconds on a quiet machine, 0.2 s and more on a busy one. A duration is a sum of the steps'
    waits (plays.steps), and those sums stay 3 s or more from a histogram bucket's edge (603 s is
    the closest), so a drift under that does not move a duration to another bucket."""
    if isinstance(found, dict) and isinstance(expected, dict):
        return found.keys() == expected.keys() and all(_alike(found[k], expected[k]) for k in found)
    if isinstance(found, list) and isinstance(expected, list):
        return len(found) == len(expected) and all(_alike(a, b) for a, b in zip(found, expected, strict=True))
    if isinstance(found, float) and isinstance(expected, float):
        return abs(found - expected) <= 2.0
    return bool(found == expected)


def _two_customers(db: Database, tenant: Tenant) -> tuple[Shop, int]:
    """On DAY a tagged customer (VIP) answered after 5 minutes and closed at 09:30, and an untagged
    one answered after 20 minutes and left open; the VIP tag's id."""
    with fake_provider() as provider:
        shop = make_shop(db, tenant, provider.url)
        with at(f"{DAY} 09:00"):
            vip = shop.customer_writes(phone(1))
        with at(f"{DAY} 09:05"):
            shop.reply(vip, tenant.actor())
        with at(f"{DAY} 09:30"):
            shop.close(vip)
        with at(f"{DAY} 10:00"):
            other = shop.customer_writes(phone(2))
        with at(f"{DAY} 10:20"):
            shop.reply(other, tenant.actor())
        with db.transaction() as session:
            contact = session.get(Contact, shop.contact_of(vip))
            assert contact is not None
            do_add_tags(session, tenant.actor(), contact, ["VIP"])
            tag_id = session.scalar(select(Tag.id).where(Tag.workspace_id == tenant.workspace_id, Tag.name == "VIP"))
            assert tag_id is not None
        feed(db)
    return shop, tag_id


def _summary(body: dict[str, Any]) -> dict[str, list[Any]]:
    return {row[0]: row for row in body["tables"]["summary"]["rows"]}


def test_the_tag_filter_in_the_api_the_csv_and_the_reports_it_does_not_apply_to(
    db: Database,
    tenant: Tenant,
    make_tenant: Callable[..., Tenant],
    client: TestClient,
    fakehttp_adapter: FakeHttpAdapter,
) -> None:
    _, tag_id = _two_customers(db, tenant)
    conversations = report(client, tenant, "conversations", **ONE_DAY, tag_id=tag_id)
    assert conversations["filters"] == {"tag_id": tag_id}
    summary = _summary(conversations)
    assert [summary["opened"][1], summary["closed"][1]] == [1, 1]
    assert summary["first_response"][1:3] == [1, pytest.approx(300, abs=1)]
    assert summary["resolution"][1:3] == [1, pytest.approx(1800, abs=1)]
    whole = _summary(report(client, tenant, "conversations", **ONE_DAY))
    assert [whole["opened"][1], whole["first_response"][1]] == [2, 2]
    assert report(client, tenant, "conversations", **ONE_DAY, tag="vip")["tables"] == conversations["tables"]
    csv_file = client.get(
        "/api/v1/reports/responses/summary.csv", headers=tenant.headers, params={**ONE_DAY, "tag_id": tag_id}
    )
    assert csv_file.status_code == 200, csv_file.text
    rows = list(csv.reader(io.StringIO(csv_file.text)))
    assert rows[1][:2] == ["first_response", "1"]
    assert float(rows[1][2]) == pytest.approx(300, abs=1)
    # The messages, users and leaderboard reports count the tagged customer's conversation only.
    messages = report(client, tenant, "messages", **ONE_DAY, tag_id=tag_id)
    assert messages["filters"] == {"tag_id": tag_id}
    assert [_summary(messages)[metric][1] for metric in ("incoming", "outgoing")] == [1, 1]
    assert _summary(report(client, tenant, "messages", **ONE_DAY))["incoming"][1] == 2
    users = report(client, tenant, "users", **ONE_DAY, tag="VIP")
    assert users["filters"] == {"tag_id": tag_id}
    owner = next(row for row in users["tables"]["users"]["rows"] if row[0] == tenant.owner_id)
    columns = users["tables"]["users"]["columns"]
    assert owner[columns.index("messages_sent")] == 1
    assert owner[columns.index("first_response_median_seconds")] == pytest.approx(300, abs=1)
    leaderboard = report(client, tenant, "leaderboard", **ONE_DAY, tag_id=tag_id, metric="messages_sent")
    assert leaderboard["filters"] == {"tag_id": tag_id}
    assert [row[1:4] for row in leaderboard["tables"]["leaderboard"]["rows"] if row[3]] == [
        [tenant.owner_id, owner[1], 1]
    ]
    # Contacts belong to no conversation: that report ignores the tag, and says so in its filters.
    assert report(client, tenant, "contacts", **ONE_DAY, tag_id=tag_id)["filters"] == {}
    # A tag of no workspace, another workspace's tag, a name nobody has: 422 naming the field.
    with db.transaction() as session:
        elsewhere = make_tenant()
        foreign = do_create_tag(session, elsewhere.actor(), "VIP").id
    for params, field in (
        ({"tag_id": 999_999_999}, "tag_id"),
        ({"tag_id": foreign}, "tag_id"),
        ({"tag": "nadie"}, "tag"),
        ({"tag": "VIP", "tag_id": tag_id}, "tag"),
    ):
        refused = client.get("/api/v1/reports/conversations", headers=tenant.headers, params=params)
        assert refused.status_code == 422, params
        error = refused.json()["error"]
        assert set(error) == {"code", "message", "details"}
        assert field in error["details"], params
        refused_csv = client.get("/api/v1/reports/conversations/summary.csv", headers=tenant.headers, params=params)
        assert refused_csv.status_code == 422


@pytest.mark.parametrize(
    ("language", "label", "note", "unknown", "presence"),
    [
        (
            "es",
            "Etiqueta del contacto",
            "Conversaciones de contactos con la etiqueta VIP ahora",
            "Ninguna etiqueta",
            "El tiempo en línea y ausente no se filtra por la etiqueta",
        ),
        (
            "en",
            "Contact tag",
            "Conversations of contacts tagged VIP now",
            "No tag of this workspace",
            "Time online and away is not narrowed by the tag",
        ),
    ],
)
def test_the_page_and_the_drill_down_with_a_tag(
    db: Database,
    tenant: Tenant,
    client: TestClient,
    fakehttp_adapter: FakeHttpAdapter,
    language: str,
    label: str,
    note: str,
    unknown: str,
    presence: str,
) -> None:
    _two_customers(db, tenant)
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    client.cookies.set("tertulia_lang", language)
    page = client.get("/reports/conversations", params={**ONE_DAY, "tag": "VIP"})
    assert page.status_code == 200, page.text
    assert label in page.text
    assert note in page.text
    assert 'name="tag" value="VIP"' in page.text
    assert '<option value="VIP">' in page.text
    # The CSV links, the tabs and the lists keep the tag.
    assert (
        f"/api/v1/reports/conversations/summary.csv?range=custom&amp;from={DAY}&amp;to={DAY}&amp;tag=VIP" in page.text
    )
    assert "drill-series-opened" in page.text
    listed = client.get(
        "/reports/conversations/list", params={**ONE_DAY, "tag": "VIP", "metric": "opened", "period": f"{DAY}T09"}
    )
    assert listed.status_code == 200, listed.text
    assert 'data-count="1"' in listed.text
    nobody = client.get(
        "/reports/conversations/list", params={**ONE_DAY, "tag": "VIP", "metric": "opened", "period": f"{DAY}T10"}
    )
    assert 'data-count="0"' in nobody.text
    bad = client.get("/reports/responses", params={**ONE_DAY, "tag": "nadie"})
    assert bad.status_code == 200
    assert unknown in bad.text
    assert 'id="report-data"' not in bad.text
    # The users report filters on the tag too, and says time online is not narrowed by it.
    users = client.get("/reports/users", params={**ONE_DAY, "tag": "VIP"})
    assert 'data-testid="report-tag"' in users.text
    assert 'data-testid="report-tag-presence"' in users.text
    assert presence in users.text
    assert 'data-testid="report-tag-presence"' not in client.get("/reports/users", params=ONE_DAY).text
    leaderboard = client.get("/reports/leaderboard", params={**ONE_DAY, "tag": "VIP"})
    assert 'data-testid="report-tag"' in leaderboard.text
    assert presence in leaderboard.text
    # A report the tag does not filter shows no tag field and says it is not applied.
    contacts = client.get("/reports/contacts", params={**ONE_DAY, "tag": "VIP"})
    assert 'data-testid="report-tag"' not in contacts.text
    assert 'data-testid="report-tag-ignored"' in contacts.text
