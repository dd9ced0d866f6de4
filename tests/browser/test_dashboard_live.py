"""The Dashboard in a real browser: it is where a signed-in person lands, its numbers show, the
waiting conversation links to the inbox, and its live part swaps in under the CSP (no script
errors, no violations). SQLite only, like the other browser tests. With TERTULIA_SCREENSHOT_DIR set,
the screen is saved there."""

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.channels.service import do_create_channel
from tertulia.conversations import service as inbox
from tertulia.conversations.inbound import do_receive
from tertulia.conversations.models import Conversation
from tertulia.events import dispatcher
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.reports.rollups import CONSUMER, apply_event
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tests.browser.conftest import require_chromium, watch
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

OWNER = ("owner@dashboard.example.com", "owner-password")


def _customer_writes(database: Database, channel_id: int, visitor: str) -> int:
    with database.transaction() as session:
        channel = session.get(Channel, channel_id)
        assert channel is not None
        received = do_receive(
            session,
            channel,
            InboundMessage(sender_id=f"{channel_id}:v:{visitor}", provider_message_id=visitor, text="hola"),
        )
        assert received.conversation is not None
        return received.conversation.id


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Database, int, int]]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("dashboard"))
    with database.transaction() as session:
        created = do_create_workspace_with_owner(
            session, "Tienda Co", OWNER[0], OWNER[1], timezone="America/Mexico_City", default_language="es"
        )
        owner = Actor(workspace_id=created.workspace.id, kind="user", user_id=created.owner.id, role=Role.OWNER)
        channel = do_create_channel(session, owner, "webchat", "Web", {"allowed_origins": ["https://shop.example"]})
        channel_id = channel.id
    answered = _customer_writes(database, channel_id, "visitor1")
    with database.transaction() as session:
        conversation = session.get(Conversation, answered)
        assert conversation is not None
        inbox.do_reply(session, owner, conversation, text="¡Hola! ¿En qué te ayudo?")
    waiting = _customer_writes(database, channel_id, "visitor2")
    consumer = dispatcher.Consumer(CONSUMER.name, lambda event: apply_event(database, event), CONSUMER.types)
    assert dispatcher.dispatch(database, [consumer]).delivered > 0
    with serve_tertulia(database) as url:
        yield url, database, channel_id, waiting
    database.dispose()


def test_land_on_the_dashboard_and_see_it_update(browser: Browser, shop: tuple[str, Database, int, int]) -> None:
    base_url, database, channel_id, waiting = shop
    problems: list[str] = []
    context = browser.new_context(locale="es-ES")
    page = context.new_page()
    watch(page, problems)
    page.goto(f"{base_url}/")
    page.wait_for_url(re.compile(r"/login\?next="))
    page.fill("input[name=email]", OWNER[0])
    page.fill("input[name=password]", OWNER[1])
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard$"))

    expect(page.get_by_test_id("stat-open").locator(".stat-value")).to_have_text("2")
    expect(page.get_by_test_id("stat-waiting").locator(".stat-value")).to_have_text("1")
    expect(page.get_by_test_id("stat-opened-today").locator(".stat-value")).to_have_text("2")
    expect(page.get_by_test_id("getting-started")).to_contain_text("Primeros pasos")
    expect(page.get_by_test_id("step-connect_channel")).to_have_attribute("data-done", "true")
    expect(page.get_by_test_id("waiting-list").locator(f'a[href="/messages/{waiting}"]')).to_be_visible()
    folder = os.environ.get("TERTULIA_SCREENSHOT_DIR")
    if folder:
        page.screenshot(path=str(Path(folder) / "98-dashboard.png"), full_page=True)

    # A third customer writes; the live part, fetched as the 30 s poll fetches it, shows them.
    _customer_writes(database, channel_id, "visitor3")
    page.evaluate("htmx.ajax('GET', '/dashboard/live', {target: '#dashboard-live', swap: 'outerHTML'})")
    expect(page.get_by_test_id("stat-waiting").locator(".stat-value")).to_have_text("2")
    expect(page.get_by_test_id("dashboard-live")).to_have_attribute("hx-trigger", "every 30s")
    context.close()
    assert problems == []
