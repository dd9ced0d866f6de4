"""Reply buttons from the inbox composer on a Telegram bot, in English, against the local fake Bot API
(tests/channels/fake_telegram.py).

Telegram has no lists, so the composer offers buttons only, up to its 20; a title over 64 characters,
and one whose id (the title) would be over Telegram's 64 bytes of callback_data, are refused beside
the field in English. The buttons go out as an inline keyboard; the customer presses one (a
callback query, built by python-telegram-bot) and the inbox marks it picked. SQLite only, like the
other browser tests.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import telegram
from playwright.sync_api import Browser, expect

from tertulia.conversations import outbox as _outbox  # noqa: F401  (registers the queue tasks)
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tests.browser.conftest import require_chromium, sign_in_at, watch
from tests.channels.fake_telegram import BOT_TOKEN, FakeTelegram, fake_telegram
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

OWNER = ("owner@buttons.example.com", "owner-password")
CUSTOMER = telegram.User(id=515151, first_name="Ana", last_name="Ruiz", is_bot=False, username="ana")
CHAT = telegram.Chat(id=515151, type="private", first_name="Ana", last_name="Ruiz", username="ana")


@dataclass
class Setup:
    url: str
    database: Database
    fake: FakeTelegram


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("telegram-buttons"))
    with database.transaction() as session:
        do_create_workspace_with_owner(session, "Tienda Co", *OWNER)
    queue.huey.immediate = True
    queue.use_database(database)
    with fake_telegram() as fake, serve_tertulia(database) as url:
        fake.add_bot(name="Tienda Co")
        yield Setup(url, database, fake)
    queue.huey.immediate = False
    queue.use_database(None)
    database.dispose()


def _wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_inline_keyboard_from_the_composer_and_the_pressed_button(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, setup.url, "/messages", *OWNER)
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    created = page.request.post(
        f"{setup.url}/api/v1/channels",
        data={"type": "telegram", "config": {"api_base_url": setup.fake.url}, "secrets": {"bot_token": BOT_TOKEN}},
        headers={"X-CSRF-Token": csrf},
    )
    assert created.status == 201, created.text()

    page.goto(f"{setup.url}/messages")
    expect(page.locator("[data-inbox]")).to_have_attribute("data-live", "on")
    hello = telegram.Message(message_id=700, date=datetime.now(UTC), chat=CHAT, from_user=CUSTOMER, text="Hi")
    assert setup.fake.deliver(telegram.Update(update_id=1, message=hello).to_json()).status_code == 200
    page.locator("[data-conversation]", has_text="Ana Ruiz").click()

    page.get_by_test_id("add-buttons").click()
    expect(page.get_by_test_id("choices-kind-list")).to_be_hidden()  # Telegram has no lists
    expect(page.get_by_test_id("choices-hint")).to_have_text(
        "Up to 20 buttons of up to 64 characters; the customer's pick comes back as their answer."
    )
    titles = page.get_by_test_id("choice-title")
    errors = page.get_by_test_id("choices").locator("[data-choice-error]")
    titles.nth(0).fill("x" * 65)
    titles.nth(1).fill("ñ" * 33)  # 33 characters, 66 bytes: over Telegram's 64 bytes of callback_data
    box = page.get_by_test_id("composer-input")
    box.fill("Shall I book it?")
    box.press("Enter")
    expect(errors.nth(0)).to_have_text("At most 64 characters.")
    expect(errors.nth(1)).to_have_text("Too long for this channel (at most 64 bytes): shorten it.")
    expect(page.get_by_test_id("composer-error")).to_have_text("Fix the buttons marked below.")
    titles.nth(0).fill("Yes")
    titles.nth(1).fill("No")
    box.press("Enter")
    thread = page.get_by_test_id("thread")
    sent = thread.locator(".msg-outgoing").last
    expect(sent.locator("[data-choice-id]")).to_have_text(["Yes", "No"])
    _wait_for(lambda: len(setup.fake.sent("sendMessage")) == 1)
    [call] = setup.fake.sent("sendMessage")
    markup = telegram.InlineKeyboardMarkup.de_json(call.params["reply_markup"], None)
    assert markup is not None
    assert [(row[0].text, row[0].callback_data) for row in markup.inline_keyboard] == [("Yes", "Yes"), ("No", "No")]

    # The customer presses "No" under our message: a callback query for it.
    ours = telegram.Message(
        message_id=701, date=datetime.now(UTC), chat=CHAT, text="Shall I book it?", reply_markup=markup
    )
    press = telegram.CallbackQuery(id="cbq-1", from_user=CUSTOMER, chat_instance="ci-1", data="No", message=ours)
    assert setup.fake.deliver(telegram.Update(update_id=2, callback_query=press).to_json()).status_code == 200
    expect(thread.locator(".msg-incoming .msg-choice")).to_have_text("Chose: No")
    expect(sent.locator('[data-choice-id="No"]')).to_have_attribute("data-picked", "true")
    expect(sent.locator('[data-choice-id="Yes"]')).not_to_have_attribute("data-picked", "true")
    context.close()
    assert problems == []
