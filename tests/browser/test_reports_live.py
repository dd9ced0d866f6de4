"""The Reports page in a real browser: the charts draw under the CSP (no script errors, no
violations), the range changes, a table downloads as CSV with the numbers shown, and clicking a bar
opens the list of conversations behind it. SQLite only,
like the other browser tests. With TERTULIA_SCREENSHOT_DIR set, the screens are saved there."""

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, expect

from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.channels.service import do_create_channel
from tertulia.contacts.models import Contact
from tertulia.contacts.service import do_add_tags
from tertulia.conversations import service as inbox
from tertulia.conversations.inbound import do_receive
from tertulia.conversations.models import Conversation
from tertulia.events import dispatcher
from tertulia.kit.clock import travel
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.reports.rollups import CONSUMER, apply_event
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tertulia.workspaces.service import do_set_business_hours
from tests.browser.conftest import require_chromium, shot, sign_in_at, watch
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

OWNER = ("owner@reports.example.com", "owner-password")
# A second workspace, open 09:00-19:00 on weekdays, where a customer wrote at 18:55 on Friday
# 6 November 2026 and was answered at 09:05 on Monday: 2 d 14 h 10 min, or 10 business minutes.
HOURS_OWNER = ("owner@hours.example.com", "owner-password")
ZONE = ZoneInfo("America/Mexico_City")


def _at(local: str) -> timedelta:
    return datetime.fromisoformat(local).replace(tzinfo=ZONE) - datetime.now(UTC)


def _weekend_reply(database: Database) -> None:
    with travel(_at("2026-11-02 08:00")), database.transaction() as session:
        created = do_create_workspace_with_owner(
            session, "Horario Co", HOURS_OWNER[0], HOURS_OWNER[1], timezone="America/Mexico_City"
        )
        owner = Actor(workspace_id=created.workspace.id, kind="user", user_id=created.owner.id, role=Role.OWNER)
        weekdays = ("monday", "tuesday", "wednesday", "thursday", "friday")
        week = {day: [{"start": "09:00", "end": "19:00"}] for day in weekdays}
        do_set_business_hours(session, owner, {"timezone": "America/Mexico_City", "week": week})
        channel = do_create_channel(session, owner, "webchat", "Web", {"allowed_origins": ["https://shop.example"]})
        channel_id = channel.id
    with travel(_at("2026-11-06 18:55")), database.transaction() as session:
        found = session.get(Channel, channel_id)
        assert found is not None
        received = do_receive(
            session, found, InboundMessage(sender_id=f"{channel_id}:v:late", provider_message_id="late", text="hola")
        )
        assert received.conversation is not None
        conversation_id = received.conversation.id
    with travel(_at("2026-11-09 09:05")), database.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        inbox.do_reply(session, owner, conversation, text="Buenos días")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("reports"))
    with database.transaction() as session:
        created = do_create_workspace_with_owner(
            session, "Tienda Co", OWNER[0], OWNER[1], timezone="America/Mexico_City", default_language="es"
        )
        owner = Actor(workspace_id=created.workspace.id, kind="user", user_id=created.owner.id, role=Role.OWNER)
        channel = do_create_channel(session, owner, "webchat", "Web", {"allowed_origins": ["https://shop.example"]})
        for n in range(3):
            received = do_receive(
                session,
                channel,
                InboundMessage(sender_id=f"{channel.id}:v:visitor{n}", provider_message_id=f"p{n}", text="hola"),
            )
            assert received.conversation is not None
            inbox.do_reply(session, owner, received.conversation, text="¡Hola! ¿En qué te ayudo?")
            if n:
                inbox.do_close(session, owner, received.conversation, category_id=None, summary=None)
            else:  # the one customer with the VIP tag, still waiting
                contact = session.get(Contact, received.conversation.contact_id)
                assert contact is not None
                do_add_tags(session, owner, contact, ["VIP"])
    _weekend_reply(database)
    # The consumer as the app's worker runs it, on this database.
    consumer = dispatcher.Consumer(CONSUMER.name, lambda event: apply_event(database, event), CONSUMER.types)
    assert dispatcher.dispatch(database, [consumer]).delivered > 0
    with serve_tertulia(database) as url:
        yield url
    database.dispose()


def test_open_a_report_change_the_range_and_download_a_csv(browser: Browser, base_url: str) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES", accept_downloads=True)
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, base_url, "/reports/conversations", *OWNER)
    summary = page.get_by_test_id("report-table-summary")
    expect(summary.locator("tbody tr").first).to_contain_text("Abiertas")
    expect(summary.locator("tbody tr").first.locator("td").first).to_have_text("3")
    expect(page.locator("canvas[data-chart=series]")).to_have_attribute("data-drawn", "true")

    shot(page, "96-reports-conversations.png")
    page.select_option("[data-testid=range]", "today")
    page.get_by_test_id("apply-filters").click()
    page.wait_for_url(re.compile(r"range=today"))
    expect(page.get_by_test_id("range")).to_have_value("today")
    expect(summary.locator("tbody tr").nth(1).locator("td").first).to_have_text("2")  # closed today
    expect(page.locator("canvas[data-chart=series]")).to_have_attribute("data-drawn", "true")

    page.get_by_test_id("report-tab-messages").click()
    page.wait_for_url(re.compile(r"/reports/messages\?range=today"))
    expect(page.get_by_test_id("report-table-heatmap")).to_be_visible()
    expect(page.locator("canvas[data-chart=outgoing_by_sender]")).to_have_attribute("data-drawn", "true")
    shot(page, "97-reports-messages.png")

    page.get_by_test_id("report-tab-conversations").click()
    with page.expect_download() as download:
        page.get_by_test_id("csv-summary").click()
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert rows[0][:2] == ["metric", "count"]
    assert rows[1][:2] == ["opened", "3"]
    assert rows[2][:2] == ["closed", "2"]
    assert download.value.suggested_filename.startswith("conversations-summary-")
    context.close()
    assert problems == []


def test_clicking_a_bar_lists_the_conversations_behind_it(browser: Browser, base_url: str) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES")
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, base_url, "/reports/responses?range=today", *OWNER)
    canvas = page.locator("canvas[data-chart=buckets]")
    expect(canvas).to_have_attribute("data-drawn", "true")
    # The first bar (answered in under 30 s: all three) where Chart.js drew it.
    point = page.evaluate(
        """() => {
          const chart = window.Chart.getChart(document.querySelector("canvas[data-chart=buckets]"));
          const bar = chart.getDatasetMeta(0).data[0];
          return {x: bar.x, y: (bar.y + bar.base) / 2};
        }"""
    )
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])
    page.wait_for_url(re.compile(r"/reports/responses/list\?metric=first_response&bucket=%3C30s&range=today"))
    expect(page.get_by_test_id("list-count")).to_have_attribute("data-count", "3")
    expect(page.get_by_test_id("list-row")).to_have_count(3)
    shot(page, "98-reports-list.png")
    # The reply-time buckets open the replies behind them, one row per timed reply.
    page.go_back()
    replies = page.locator("canvas[data-chart=reply_buckets]")
    expect(replies).to_have_attribute("data-drawn", "true")
    found = page.evaluate(
        """() => {
          const chart = window.Chart.getChart(document.querySelector("canvas[data-chart=reply_buckets]"));
          const bar = chart.getDatasetMeta(0).data[0];
          const data = JSON.parse(document.getElementById("report-data").textContent);
          return {x: bar.x, y: (bar.y + bar.base) / 2, count: data.tables.reply_buckets.rows[0][1]};
        }"""
    )
    assert found["count"] >= 3  # every first response is a reply time too
    replies.scroll_into_view_if_needed()
    box = replies.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + found["x"], box["y"] + found["y"])
    page.wait_for_url(re.compile(r"/reports/responses/list\?metric=reply_time&bucket=%3C30s&range=today"))
    expect(page.get_by_test_id("list-count")).to_have_attribute("data-count", str(found["count"]))
    expect(page.get_by_test_id("list-time")).to_have_count(found["count"])
    context.close()
    assert problems == []


def test_the_new_reports_draw_their_charts(browser: Browser, base_url: str) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, base_url, "/reports/resolutions?range=today", *OWNER)
    expect(page.locator("canvas[data-chart=by_closer]")).to_have_attribute("data-drawn", "true")
    expect(page.locator("canvas[data-chart=series]")).to_have_attribute("data-drawn", "true")
    for name, chart in [
        ("assignments", "by_source"),
        ("contacts", "added_by_source"),
        ("users", "users"),
        ("leaderboard", "leaderboard"),
        ("broadcasts", "by_broadcast"),
        ("responses", "reply_series"),
        ("responses", "reply_buckets"),
    ]:
        page.get_by_test_id(f"report-tab-{name}").click()
        page.wait_for_url(re.compile(rf"/reports/{name}\?range=today"))
        expect(page.locator(f"canvas[data-chart={chart}]")).to_have_attribute("data-drawn", "true")
    page.get_by_test_id("report-tab-leaderboard").click()
    page.wait_for_url(re.compile(r"/reports/leaderboard\?range=today"))
    page.select_option("[data-testid=leaderboard-metric]", "messages_sent")
    page.get_by_test_id("apply-filters").click()
    page.wait_for_url(re.compile(r"metric=messages_sent"))
    leaderboard = page.get_by_test_id("report-table-leaderboard")
    expect(leaderboard.locator("tbody tr").first.locator("td").nth(2)).to_have_text("3")  # the owner's replies
    shot(page, "98-reports-leaderboard.png")
    context.close()
    assert problems == []


def test_the_business_hours_toggle_changes_the_times(browser: Browser, base_url: str) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES")
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, base_url, "/reports/responses?range=custom&from=2026-11-09&to=2026-11-09", *HOURS_OWNER)
    first_response = page.get_by_test_id("report-table-summary").locator("tbody tr").first
    median = first_response.locator("td").nth(2)
    expect(median).to_have_text(re.compile(r"^2 d 14 h$"))
    # The reply time (the third row): the same reply, so the same times.
    reply_median = page.get_by_test_id("report-table-summary").locator("tbody tr").nth(2).locator("td").nth(2)
    expect(reply_median).to_have_text(re.compile(r"^2 d 14 h$"))
    toggle = page.get_by_test_id("business-hours")
    expect(toggle).to_be_enabled()
    expect(toggle).not_to_be_checked()
    expect(page.get_by_label("Solo horario laboral", exact=True)).to_be_visible()
    toggle.check()
    page.get_by_test_id("apply-filters").click()
    page.wait_for_url(re.compile(r"business_hours=1"))
    expect(page.get_by_test_id("business-hours")).to_be_checked()
    expect(median).to_have_text(re.compile(r"^(9 min 59 s|10 min [0-2] s)$"))  # the clock runs on a moment
    expect(reply_median).to_have_text(re.compile(r"^(9 min 59 s|10 min [0-2] s)$"))
    expect(page.get_by_test_id("report-business-hours")).to_be_visible()
    expect(page.locator("canvas[data-chart=buckets]")).to_have_attribute("data-drawn", "true")
    shot(page, "98-reports-business-hours.png")
    # The first workspace has no business hours: the toggle is there, disabled, with the reason.
    context.close()
    context = browser.new_context(locale="es-ES")
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, base_url, "/reports/responses?business_hours=1", *OWNER)
    expect(page.get_by_test_id("business-hours")).to_be_disabled()
    expect(page.get_by_test_id("business-hours")).not_to_be_checked()
    expect(page.get_by_test_id("business-hours-unavailable")).to_be_visible()
    context.close()
    assert problems == []


def test_the_tag_filter_narrows_a_report_to_the_tagged_contacts(browser: Browser, base_url: str) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES")
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, base_url, "/reports/conversations", *OWNER)
    opened = page.get_by_test_id("report-table-summary").locator("tbody tr").first.locator("td").first
    expect(opened).to_have_text("3")
    page.get_by_test_id("report-tag").fill("VIP")
    page.get_by_test_id("apply-filters").click()
    page.wait_for_url(re.compile(r"tag=VIP"))
    expect(page.get_by_test_id("report-tag")).to_have_value("VIP")
    expect(opened).to_have_text("1")
    expect(page.get_by_test_id("report-tag-note")).to_be_visible()
    expect(page.locator("canvas[data-chart=series]")).to_have_attribute("data-drawn", "true")
    shot(page, "98-reports-tag.png")
    # The tabs keep the tag; a report it does not filter says so.
    page.get_by_test_id("report-tab-contacts").click()
    page.wait_for_url(re.compile(r"/reports/contacts\?.*tag=VIP"))
    expect(page.get_by_test_id("report-tag-ignored")).to_be_visible()
    context.close()
    assert problems == []
