"""The widget in a real browser against a server with short access tokens and tight limits: tokens
renew without the visitor noticing, a visitor from before keeps their conversation, and every
refusal is shown to the visitor, never dropped silently. SQLite, like the other browser tests."""

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import func, select

from tertulia.app import create_app
from tertulia.channels.adapters.webchat import Visitor
from tertulia.channels.service import do_create_channel
from tertulia.conversations.models import Message
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tests.browser.conftest import require_chromium, watch
from tests.conversations.support import token_from_before
from tests.live_server import free_port, fresh_sqlite_database, immediate_deliveries, serve_app, serve_site

pytestmark = pytest.mark.browser

ACCESS_SECONDS = 9
MESSAGES_PER_MINUTE = 4
SHOP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shop</title></head><body><h1>Shop</h1>
<script src="{server}/widget/{key}.js" async></script>
</body></html>"""
WIDGET = "[data-tertulia-widget]"
NUMBER = re.compile(r"\d+")


@dataclass
class Setup:
    url: str
    shop_url: str
    shop_origin: str
    database: Database
    channel_id: int
    key: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("widget-limits"))
    shop_port, port = free_port(), free_port()
    shop_origin = f"http://127.0.0.1:{shop_port}"
    with database.transaction() as session:
        created = do_create_workspace_with_owner(session, "Shop Co", "owner@widget.example.com", "owner-password")
        owner = Actor(workspace_id=created.workspace.id, kind="user", user_id=created.owner.id, role=Role.OWNER)
        channel = do_create_channel(session, owner, "webchat", "Shop", {"allowed_origins": [shop_origin]})
        channel_id, key = channel.id, channel.key
    settings = Settings(
        base_url=f"http://127.0.0.1:{port}",
        widget_access_token_seconds=ACCESS_SECONDS,
        widget_messages_per_minute=MESSAGES_PER_MINUTE,
        widget_sockets_per_visitor=1,
    )
    with (
        immediate_deliveries(database),
        serve_app(create_app(settings, database), port) as url,
        serve_site(shop_port, {"/": SHOP_PAGE.format(server=url, key=key)}) as shop,
    ):
        yield Setup(url, shop.url(), shop_origin, database, channel_id, key)
    database.dispose()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(locale="en-US")
    yield context
    context.close()


def _open_chat(page: Page, setup: Setup) -> None:
    page.goto(setup.shop_url)
    page.locator(f"{WIDGET} .launcher").click()


def _say(page: Page, text: str) -> None:
    composer = page.locator(f"{WIDGET} textarea")
    composer.fill(text)
    composer.press("Enter")


def _stored(setup: Setup, text: str) -> int:
    with setup.database.transaction(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(Message).where(Message.text == text)) or 0)


def test_access_tokens_renew_without_the_visitor_noticing(context: BrowserContext, setup: Setup) -> None:
    problems: list[str] = []
    page = context.new_page()
    watch(page, problems)
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    _open_chat(page, setup)
    _say(page, "first, before any renewal")
    expect(page.locator(f"{WIDGET} .msg.in").last).to_have_attribute("data-id", NUMBER)
    # Long enough for the first access token, and the next, to expire: the widget renews them ahead
    # and hands each to its socket, which the server would otherwise close at expiry.
    page.wait_for_timeout((2 * ACCESS_SECONDS + 2) * 1000)
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" and r.url.endswith("/messages") else None)
    _say(page, "second, tokens later")
    expect(page.locator(f"{WIDGET} .msg.in").last).to_have_attribute("data-id", NUMBER)
    expect(page.locator(f"{WIDGET} .status")).to_be_hidden()
    assert len(sockets) == 1  # the one socket stayed open throughout
    assert posted == []  # and carried the message
    assert _stored(setup, "second, tokens later") == 1
    assert problems == []


def test_a_visitor_from_before_keeps_their_conversation(context: BrowserContext, setup: Setup) -> None:
    """A browser that kept a visitor token from an earlier version of the widget."""
    external_id = f"{setup.channel_id}:v:from-before-{time.time_ns()}"
    kept = token_from_before(Visitor(setup.channel_id, external_id, "Old Friend", None, int(time.time()) + 86400))
    started = httpx.post(
        f"{setup.url}/widget/{setup.key}/session", headers={"Origin": setup.shop_origin}, json={"token": kept}
    ).json()
    said = httpx.post(
        f"{setup.url}/widget/{setup.key}/messages",
        headers={"Origin": setup.shop_origin, "Authorization": f"Bearer {started['access_token']}"},
        json={"text": "said long ago", "client_msg_id": "from-before-0001"},
    )
    assert said.status_code == 201, said.text
    context.add_init_script(
        f"localStorage.setItem('tertulia-widget:{setup.key}', {json.dumps(json.dumps({'token': kept}))})"
    )
    page = context.new_page()
    _open_chat(page, setup)
    expect(page.locator(f"{WIDGET} .msg.in")).to_have_text("said long ago")


def test_refusals_are_shown_to_the_visitor(context: BrowserContext, setup: Setup) -> None:
    page = context.new_page()
    _open_chat(page, setup)
    for n in range(MESSAGES_PER_MINUTE):
        _say(page, f"message {n}")
        expect(page.locator(f"{WIDGET} .msg.in").nth(n)).to_have_attribute("data-id", NUMBER)
    _say(page, "one too many")
    refused = page.locator(f"{WIDGET} .msg.in.failed")
    expect(refused).to_contain_text("one too many")
    expect(refused.locator(".note")).to_have_text(
        "You are sending messages too fast. Wait a moment, then tap to retry."
    )
    assert _stored(setup, "one too many") == 0

    # The same visitor in a second tab: over the one socket allowed, and told so.
    second = context.new_page()
    _open_chat(second, setup)
    expect(second.locator(f"{WIDGET} .status")).to_have_text(
        "This chat is open in too many tabs: close some to see replies as they arrive."
    )
