"""Messenger end to end in a real browser, against the local fake Graph API.

A manager connects a Facebook Page from Settings > Channels (the fake plays Meta: the Page's name,
the app's subscription) and sees the verify token once. Meta's callbacks are then posted to our
callback URL, signed as Meta signs them: a comment on the Page's post shows in the inbox with "Reply
privately"; the agent answers it, the answer goes to the comment, and the person's reply in Messenger
lands in the same conversation. A day later (the clock moved) the composer offers the message tags,
each explained; the agent sends with HUMAN_AGENT and it reaches Meta tagged. SQLite only, like the
other browser tests."""

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import select, update

from tertulia.channels.adapters.messenger import PROFILES
from tertulia.channels.adapters.meta_graph import hub_signature
from tertulia.channels.models import Channel
from tertulia.contacts.models import Contact
from tertulia.conversations import outbox as _outbox  # noqa: F401  (registers the queue tasks)
from tertulia.kit import queue
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tests.browser.conftest import require_chromium, sign_in_at, watch
from tests.channels import meta_samples as meta
from tests.channels.fake_meta_graph import FakeGraph, fake_graph
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

OWNER = ("owner@messenger.example.com", "owner-password")
COMMENT_ID = "1067280970047460_555_777"


@dataclass
class Setup:
    url: str
    database: Database
    graph: FakeGraph


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    PROFILES.clear()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("messenger"))
    with database.transaction() as session:
        do_create_workspace_with_owner(session, "Tienda Co", *OWNER)
    queue.huey.immediate = True
    queue.use_database(database)
    with fake_graph(meta.PAGE_TOKEN) as graph, serve_tertulia(database) as url:
        graph.pages[meta.PAGE_ID] = "Café La Tertulia"
        graph.commenters[COMMENT_ID] = meta.PSID
        yield Setup(url, database, graph)
    queue.huey.immediate = False
    queue.use_database(None)
    database.dispose()
    PROFILES.clear()


def _deliver(setup: Setup, data: dict[str, Any]) -> None:
    """Post a callback to the channel's URL, signed with the app secret as Meta signs it."""
    with setup.database.transaction(write=False) as session:
        key = session.scalar(select(Channel.key).where(Channel.type == "messenger"))
    raw = json.dumps(data).encode()
    signature = f"sha256={hub_signature(meta.APP_SECRET, raw)}"
    answer = httpx.post(f"{setup.url}/webhooks/{key}", content=raw, headers={"X-Hub-Signature-256": signature})
    assert answer.status_code == 200


def _wait_for(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_connect_reply_privately_and_tag_a_late_answer(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES", viewport={"width": 1280, "height": 860})
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, setup.url, "/settings/channels", *OWNER)

    form = page.get_by_test_id("connect-messenger")
    form.locator("input[name=page_id]").fill(meta.PAGE_ID)
    form.locator("input[name=page_access_token]").fill(meta.PAGE_TOKEN)
    form.locator("input[name=app_secret]").fill(meta.APP_SECRET)
    form.locator("summary").click()
    form.locator("input[name=api_base_url]").fill(setup.graph.url)
    form.locator("button[type=submit]").click()
    expect(page.get_by_test_id("account-name")).to_have_text("Café La Tertulia")
    expect(page.get_by_test_id("verify-token")).to_be_visible()
    assert meta.PAGE_ID in setup.graph.subscribed

    # A comment on the Page's post: an inbox item to answer privately.
    page.goto(f"{setup.url}/messages")
    expect(page.locator("[data-inbox]")).to_have_attribute("data-live", "on")
    _deliver(setup, meta.feed_comment(COMMENT_ID))
    row = page.locator("[data-conversation]", has_text="Marta Ruiz")
    expect(row).to_be_visible()
    row.click()
    thread = page.get_by_test_id("thread")
    expect(thread.locator(".msg-incoming .msg-text")).to_have_text("¿Tienen envíos a Guadalajara?")
    thread.get_by_test_id("reply-privately").click()
    expect(page.get_by_test_id("private-reply-notice")).to_be_visible()
    box = page.get_by_test_id("composer-input")
    box.fill("¡Hola Marta! Sí, te cuento por aquí.")
    box.press("Enter")
    expect(thread.locator(".msg-outgoing .msg-text")).to_have_text("¡Hola Marta! Sí, te cuento por aquí.")
    expect(thread.locator(".msg-private-reply")).to_have_text("Respondido en privado")
    _wait_for(lambda: len(setup.graph.sent()) == 1)
    assert setup.graph.sent()[0].body["recipient"] == {"comment_id": COMMENT_ID}

    # Marta answers in Messenger: the same conversation.
    _deliver(setup, meta.envelope(meta.TEXT))
    expect(thread.locator(".msg-incoming .msg-text").last).to_have_text("hello, world!")

    # A day later the window has closed: the composer offers the tags, each explained.
    with setup.database.transaction() as session:
        since = utcnow() - timedelta(hours=25)
        session.execute(update(Contact).values(last_incoming_at=since))
    page.reload()
    page.locator("[data-conversation]", has_text="Marta Ruiz").click()
    expect(page.locator("[data-window-notice]")).to_contain_text("24 horas")
    select = page.get_by_test_id("message-tag-select")
    select.select_option("HUMAN_AGENT")
    expect(page.get_by_test_id("message-tag-hint")).to_contain_text("hasta 7 días")
    box = page.get_by_test_id("composer-input")
    box.fill("Perdón la demora: ya salió tu pedido.")
    box.press("Enter")
    expect(thread.locator(".msg-outgoing .msg-text").last).to_have_text("Perdón la demora: ya salió tu pedido.")
    _wait_for(lambda: len(setup.graph.sent()) == 2)
    late = setup.graph.sent()[1].body
    assert (late["messaging_type"], late["tag"], late["recipient"]) == ("MESSAGE_TAG", "HUMAN_AGENT", {"id": meta.PSID})
    context.close()
    assert problems == []
