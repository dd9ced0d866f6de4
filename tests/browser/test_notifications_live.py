"""Notifications end to end in a real browser: a teammate @mentions Marta in a note while she is on
another page; the bell counts it without a reload, a browser notification is shown (the page's
Notification is recorded: headless Chromium shows none), and opening it from the bell's list lands
on the conversation. SQLite only, like the other browser tests."""

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import select

from tertulia.channels.service import do_create_channel
from tertulia.conversations import service as inbox
from tertulia.conversations.models import Conversation
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import ActivityStatus, Role, User
from tertulia.users.permissions import Actor
from tertulia.users.service import do_add_member, do_create_user
from tests.browser.conftest import require_chromium, sign_in_at, wait_in_page, watch
from tests.live_server import fresh_sqlite_database, immediate_deliveries, serve_tertulia

pytestmark = pytest.mark.browser

AGENT = ("marta@notify.example.com", "marta-password")
SHOP = "https://shop.example.com"
# Records what the page asks the browser to show, with permission granted.
RECORD_NOTIFICATIONS = """
window.__notes = [];
class RecordedNotification {
  constructor(title, options) {
    this.title = title;
    this.body = (options || {}).body;
    this.onclick = null;
    window.__notes.push(this);
  }
  close() {}
  static get permission() { return "granted"; }
  static requestPermission() { return Promise.resolve("granted"); }
}
window.Notification = RecordedNotification;
"""


@dataclass
class Setup:
    url: str
    database: Database
    owner: Actor
    agent_id: int
    key: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("notifications"))
    with database.transaction() as session:
        created = do_create_workspace_with_owner(session, "Avisos Co", "owner@notify.example.com", "owner-password")
        workspace_id = created.workspace.id
        agent = do_create_user(session, AGENT[0], AGENT[1], first_name="Marta", last_name="Ríos")
        do_add_member(session, workspace_id, agent.id, Role.AGENT)
        owner = Actor(workspace_id=workspace_id, kind="user", user_id=created.owner.id, role=Role.OWNER)
        channel = do_create_channel(session, owner, "webchat", "Tienda", {"allowed_origins": [SHOP]})
        key, agent_id = channel.key, agent.id
    with immediate_deliveries(database), serve_tertulia(database) as url:
        yield Setup(url, database, owner, agent_id, key)
    database.dispose()


def _conversation(setup: Setup) -> int:
    """A visitor writes through the widget's API."""
    headers = {"Origin": SHOP}
    started = httpx.post(f"{setup.url}/widget/{setup.key}/session", headers=headers, json={"name": "Lucía"})
    assert started.status_code == 200, started.text
    token = started.json()["access_token"]
    sent = httpx.post(
        f"{setup.url}/widget/{setup.key}/messages",
        headers={**headers, "Authorization": f"Bearer {token}"},
        json={"text": "¿Tenéis talla M?", "client_msg_id": "talla-m-0001"},
    )
    assert sent.status_code == 201, sent.text
    with setup.database.transaction(write=False) as session:
        return int(session.scalars(select(Conversation.id).order_by(Conversation.id.desc())).first() or 0)


def _status(setup: Setup) -> ActivityStatus:
    with setup.database.transaction(write=False) as session:
        user = session.get(User, setup.agent_id)
        assert user is not None
        return ActivityStatus(user.activity_status)


def test_a_mention_rings_the_bell_notifies_the_browser_and_opens_the_conversation(
    browser: Browser, setup: Setup
) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="en-US")
    context.add_init_script(RECORD_NOTIFICATIONS)
    page = context.new_page()
    watch(page, problems)
    conversation_id = _conversation(setup)

    sign_in_at(page, setup.url, "/contacts", *AGENT)
    bell = page.get_by_test_id("bell")
    # Counted once the page's socket said hello: from here on she is online and gets events.
    expect(bell).to_have_attribute("data-unread", "0")
    assert _status(setup) == ActivityStatus.ONLINE
    expect(page.get_by_test_id("bell-count")).to_be_hidden()

    with setup.database.transaction() as session:
        conversation = inbox.access_conversation(session, setup.owner, conversation_id)
        inbox.do_comment(session, setup.owner, conversation, "@Marta Ríos ¿puedes mirar la talla?", [])

    expect(page.get_by_test_id("bell-count")).to_have_text("1")
    wait_in_page(page, "window.__notes.length === 1")
    title = page.evaluate("window.__notes[0].title")
    assert title.endswith("mentioned you")
    assert "talla" in page.evaluate("window.__notes[0].body")

    # The list, from the bell: the entry opens the conversation and is read from then on.
    bell.click()
    page.wait_for_url(re.compile(r"/notifications$"))
    entry = page.get_by_test_id("notification")
    expect(entry).to_have_count(1)
    expect(entry).to_have_class(re.compile(r"\bunread\b"))
    entry.get_by_test_id("open-notification").click()
    page.wait_for_url(re.compile(rf"/messages/{conversation_id}$"))
    expect(page.locator("[data-pane]")).to_be_visible()
    expect(page.get_by_test_id("bell-count")).to_be_hidden()

    # A second mention, now on the inbox page: clicking the browser notification opens it too.
    page.goto(f"{setup.url}/contacts")
    expect(page.get_by_test_id("bell")).to_have_attribute("data-unread", "0")
    with setup.database.transaction() as session:
        conversation = inbox.access_conversation(session, setup.owner, conversation_id)
        inbox.do_comment(session, setup.owner, conversation, "Otra cosa, @Marta Ríos", [])
    wait_in_page(page, "window.__notes.length === 1")
    page.evaluate("window.__notes[0].onclick()")
    page.wait_for_url(re.compile(rf"/messages/{conversation_id}$"))
    expect(page.get_by_test_id("bell-count")).to_be_hidden()

    context.close()
    assert problems == []
