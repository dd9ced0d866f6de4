"""One person on two channels, answered on either, in a real browser.

A customer writes on the shop's web chat and later, under the same name, on the blog's: the blog
visitor becomes a contact of its own with a merge suggestion, which the agent accepts on the contact
page. The merged contact's conversation offers both channels in the composer, the blog (where they
last wrote) chosen; the agent answers there, then picks the shop and answers there, and each answer
goes through the channel picked.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import select

from tertulia.channels.service import do_create_channel
from tertulia.contacts.models import MergeSuggestion
from tertulia.conversations import outbox as _outbox  # noqa: F401  (registers the queue tasks)
from tertulia.conversations.models import Conversation, ConversationStatus, Direction, Message
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tertulia.users.service import do_add_member, do_create_user
from tests.browser.conftest import require_chromium, sign_in_at, watch
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

AGENT = ("rosa@channels.example.com", "rosa-password")
SITE = "https://shop.example"


@dataclass
class Setup:
    url: str
    database: Database
    shop_id: int
    blog_id: int
    older_id: int
    newer_id: int


def _say(base: str, key: str, text: str, client_msg_id: str) -> None:
    headers = {"Origin": SITE}
    started = httpx.post(f"{base}/widget/{key}/session", headers=headers, json={"name": "Lucía Pérez"})
    assert started.status_code == 200, started.text
    said = httpx.post(
        f"{base}/widget/{key}/messages",
        headers={**headers, "Authorization": f"Bearer {started.json()['access_token']}"},
        json={"text": text, "client_msg_id": client_msg_id},
    )
    assert said.status_code == 201, said.text


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("reply-channel"))
    with database.transaction() as session:
        created = do_create_workspace_with_owner(
            session, "Tienda Co", "owner@channels.example.com", "owner-password", default_language="en"
        )
        workspace_id = created.workspace.id
        agent = do_create_user(session, AGENT[0], AGENT[1], first_name="Rosa", last_name="Gil")
        do_add_member(session, workspace_id, agent.id, Role.AGENT)
        owner = Actor(workspace_id=workspace_id, kind="user", user_id=created.owner.id, role=Role.OWNER)
        shop = do_create_channel(session, owner, "webchat", "Shop chat", {"allowed_origins": [SITE]})
        blog = do_create_channel(session, owner, "webchat", "Blog chat", {"allowed_origins": [SITE]})
        shop_id, shop_key, blog_id, blog_key = shop.id, shop.key, blog.id, blog.key
    queue.huey.immediate = True
    queue.use_database(database)
    with serve_tertulia(database) as base:
        _say(base, shop_key, "Hi from the shop", "reply-channel-1")
        _say(base, blog_key, "Hi from the blog", "reply-channel-2")
        with database.transaction(write=False) as session:
            suggestion = session.scalars(select(MergeSuggestion)).one()
            older_id, newer_id = suggestion.contact_id, suggestion.other_contact_id
        yield Setup(base, database, shop_id, blog_id, older_id, newer_id)
    queue.huey.immediate = False
    queue.use_database(None)
    database.dispose()


def _outgoing_channels(database: Database) -> list[int | None]:
    with database.transaction(write=False) as session:
        query = select(Message.channel_id).where(Message.direction == Direction.OUTGOING).order_by(Message.id)
        return list(session.scalars(query))


def test_the_composer_answers_on_the_channel_picked(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    page = browser.new_context().new_page()
    watch(page, problems)

    # The suggestion is on the newer contact's page; accepting it merges the two.
    sign_in_at(page, setup.url, f"/contacts/{setup.newer_id}", *AGENT)
    expect(page.locator(f'.merge-suggestion a[href="/contacts/{setup.older_id}"]')).to_be_visible()
    page.get_by_test_id("suggestion-accept").click()
    page.wait_for_url(f"{setup.url}/contacts/{setup.older_id}")
    expect(page.locator(".merge-suggestion")).to_have_count(0)
    expect(page.locator(".identity-list .channel-badge")).to_have_count(2)

    with setup.database.transaction(write=False) as session:
        conversation_id = session.scalars(
            select(Conversation.id).where(
                Conversation.contact_id == setup.older_id, Conversation.status == ConversationStatus.OPEN
            )
        ).one()
    page.goto(f"{setup.url}/messages/{conversation_id}")
    thread = page.get_by_test_id("thread")
    expect(thread.locator(".msg-incoming")).to_have_count(2)
    expect(thread.locator(".msg-incoming [data-testid=channel-badge]").last).to_have_text("Blog chat")
    expect(page.get_by_test_id("pane-channel")).to_have_text("Blog chat")

    # Two channels: the choice is shown, on the one the customer last wrote on.
    picker = page.get_by_test_id("composer-channel")
    expect(picker).to_be_visible()
    expect(picker.locator("option")).to_have_text(["Shop chat", "Blog chat"])
    expect(picker).to_have_value(str(setup.blog_id))
    box = page.get_by_test_id("composer-input")
    box.fill("Answer on the blog")
    page.get_by_test_id("send").click()
    expect(thread.locator(".msg-outgoing")).to_have_count(1)
    expect(thread.locator(".msg-outgoing [data-testid=channel-badge]").last).to_have_text("Blog chat")

    picker.select_option(str(setup.shop_id))
    box.fill("Answer on the shop")
    page.get_by_test_id("send").click()
    expect(thread.locator(".msg-outgoing")).to_have_count(2)
    expect(thread.locator(".msg-outgoing [data-testid=channel-badge]").last).to_have_text("Shop chat")
    assert _outgoing_channels(setup.database) == [setup.blog_id, setup.shop_id]
    page.reload()  # the conversation is now on the shop's channel, as its header says
    expect(page.get_by_test_id("pane-channel")).to_have_text("Shop chat")

    # A note goes to no channel, so the choice steps aside.
    page.get_by_test_id("mode-note").click()
    expect(picker).to_be_hidden()
    assert problems == []
