"""Telegram end to end in a real browser, against the local fake Bot API server.

A manager connects a bot from Settings > Channels by pasting its token (the fake plays Telegram:
getMe names the bot, setWebhook registers our callback URL and secret); the fake then delivers a
customer's update to that URL as Telegram does, the agent sees it arrive live in the inbox with the
channel's icon and name, sees the customer's edit replace it, answers, and the answer reaches the
fake's sendMessage. SQLite only, like the other browser tests.

With TERTULIA_SCREENSHOT_DIR set, the screens are saved there (docs/screenshots/ is refreshed so).
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import telegram
from playwright.sync_api import Browser, expect

from tertulia.conversations import outbox as _outbox  # noqa: F401  (registers the queue tasks)
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tests.browser.conftest import require_chromium, shot, sign_in_at, watch
from tests.channels.fake_telegram import BOT_TOKEN, FakeTelegram, fake_telegram
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

OWNER = ("owner@telegram.example.com", "owner-password")
CUSTOMER = telegram.User(id=424242, first_name="Lucía", last_name="Gómez", is_bot=False, username="lucia")
CHAT = telegram.Chat(id=424242, type="private", first_name="Lucía", last_name="Gómez", username="lucia")


@dataclass
class Setup:
    url: str
    database: Database
    fake: FakeTelegram


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("telegram"))
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


def _update(update_id: int, text: str) -> str:
    message = telegram.Message(message_id=500, date=datetime.now(UTC), chat=CHAT, from_user=CUSTOMER, text=text)
    return telegram.Update(update_id=update_id, message=message).to_json()


def _edit(update_id: int, text: str) -> str:
    now = datetime.now(UTC)
    message = telegram.Message(message_id=500, date=now, chat=CHAT, from_user=CUSTOMER, text=text, edit_date=now)
    return telegram.Update(update_id=update_id, edited_message=message).to_json()


def _wait_for(condition: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not callable(condition) or not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_connect_receive_live_and_answer(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES", viewport={"width": 1280, "height": 860})
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, setup.url, "/settings/channels", *OWNER)

    # A wrong token: Telegram's refusal beside the field, in the reader's language.
    form = page.get_by_test_id("connect-telegram")
    form.locator("input[name=bot_token]").fill("999:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    form.locator("summary").click()
    form.locator("input[name=api_base_url]").fill(setup.fake.url)
    form.locator("button[type=submit]").click()
    expect(page.locator(".has-error")).to_contain_text("Telegram rechazó el token: Unauthorized")
    shot(page, "32-settings-telegram-error.png")

    form = page.get_by_test_id("connect-telegram")
    form.locator("input[name=bot_token]").fill(BOT_TOKEN)
    if not form.locator("input[name=api_base_url]").is_visible():
        form.locator("summary").click()
    form.locator("input[name=api_base_url]").fill(setup.fake.url)
    form.locator("button[type=submit]").click()
    expect(page.get_by_test_id("bot-name")).to_contain_text("@tertulia_test_bot")
    expect(page.get_by_test_id("channel-state")).to_have_text("Conectado")
    assert setup.fake.webhooks[BOT_TOKEN]["url"].startswith(f"{setup.url}/webhooks/")
    shot(page, "33-settings-telegram.png")

    # The chat menu: saved, pushed to Telegram, Telegram's answer shown.
    page.get_by_test_id("chat-menu-link").click()
    page.get_by_test_id("menu-commands").fill("/precios Ver precios\n/horario Horario de atención")
    page.get_by_test_id("chat-menu").locator("button[type=submit]").click()
    expect(page.get_by_test_id("provider-answer")).to_contain_text('"ok": true')
    assert [c["command"] for c in setup.fake.commands[BOT_TOKEN]] == ["precios", "horario"]
    shot(page, "34-telegram-chat-menu.png")

    # The customer writes; Telegram delivers the update to our webhook; the inbox shows it live.
    page.goto(f"{setup.url}/messages")
    expect(page.locator("[data-inbox]")).to_have_attribute("data-live", "on")
    assert setup.fake.deliver(_update(1, "Hola, ¿tienen envíos a Puebla?")).status_code == 200
    row = page.locator("[data-conversation]", has_text="Lucía Gómez")
    expect(row).to_be_visible()
    expect(row.get_by_test_id("channel-badge")).to_have_text("@tertulia_test_bot")
    row.click()
    thread = page.get_by_test_id("thread")
    incoming = thread.locator(".msg-incoming")
    expect(incoming.locator(".msg-text")).to_have_text("Hola, ¿tienen envíos a Puebla?")
    expect(incoming.get_by_test_id("channel-badge")).to_have_text("@tertulia_test_bot")

    # The customer edits it: the same message changes, marked edited; no new message.
    assert setup.fake.deliver(_edit(2, "Hola, ¿tienen envíos a Puebla y a Oaxaca?")).status_code == 200
    expect(incoming.locator(".msg-text")).to_have_text("Hola, ¿tienen envíos a Puebla y a Oaxaca?")
    expect(incoming).to_have_attribute("data-edited", "true")
    expect(incoming.locator(".msg-meta")).to_contain_text("editado")
    expect(thread.locator(".msg-incoming")).to_have_count(1)

    # The agent answers; it reaches Telegram's sendMessage as typed.
    box = page.get_by_test_id("composer-input")
    box.fill("¡Sí! Enviamos a todo México <3")
    box.press("Enter")
    expect(thread.locator(".msg-outgoing .msg-text")).to_have_text("¡Sí! Enviamos a todo México <3")
    _wait_for(lambda: len(setup.fake.sent("sendMessage")) == 1)
    [call] = setup.fake.sent("sendMessage")
    assert (call.params["chat_id"], call.params["text"]) == (424242, "¡Sí! Enviamos a todo México &lt;3")
    expect(thread.locator(".msg-outgoing .msg-meta")).to_contain_text("Enviado")
    shot(page, "35-inbox-telegram.png")

    page.goto(f"{setup.url}/settings/channels")
    expect(page.get_by_test_id("channel-today")).to_have_text("1 / 1")
    shot(page, "36-settings-channels.png")
    context.close()
    assert problems == []
