"""Reply buttons and lists from the inbox composer in a real browser, on a WhatsApp channel against the
local fake Graph API (tests/channels/fake_graph.py).

A customer writes; the agent opens **Add buttons**, gets the errors beside the fields in Spanish (a
title over WhatsApp's 20 characters, an empty one), fixes them and sends two reply buttons; Meta
receives an interactive message, and the thread shows the buttons. The customer taps one (Meta's
signed `interactive.button_reply` callback, quoting our message): the thread shows their choice and
marks the button picked. Then the same with a list (button label, a section, two rows with
descriptions) and a `list_reply`. SQLite only, like the other browser tests.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tertulia.channels.adapters.whatsapp import signature
from tertulia.channels.models import Channel
from tertulia.conversations import outbox as _outbox  # noqa: F401  (registers the queue tasks)
from tertulia.kit import queue
from tertulia.kit.clock import travel
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tests.browser.conftest import require_chromium, shot, sign_in_at, watch
from tests.channels import whatsapp_samples as wa
from tests.channels.fake_graph import TOKEN, FakeGraph, fake_graph
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

OWNER = ("owner@botones.example.com", "owner-password")
SHEENA = [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}]


@dataclass
class Setup:
    url: str
    database: Database
    graph: FakeGraph


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("choices"))
    with database.transaction() as session:
        do_create_workspace_with_owner(session, "Tienda Co", *OWNER)
    queue.huey.immediate = True
    queue.use_database(database)
    with fake_graph([]) as graph, serve_tertulia(database) as url:
        yield Setup(url, database, graph)
    queue.huey.immediate = False
    queue.use_database(None)
    database.dispose()


def _wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def _callback(setup: Setup, key: str, data: dict[str, Any]) -> None:
    """Meta's delivery of a callback: the body signed with the app secret (X-Hub-Signature-256)."""
    raw = wa.body(data)
    signed = signature(Channel(secrets={"app_secret": wa.APP_SECRET}), raw)
    answer = httpx.post(
        f"{setup.url}/webhooks/{key}",
        content=raw,
        headers={"X-Hub-Signature-256": f"sha256={signed}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text


def _pick(message_id: str, answered: str, kind: str, choice: dict[str, str]) -> dict[str, Any]:
    """The customer's tap on a button or a list row, in the shape of Meta's interactive reply
    (developers.facebook.com/docs/whatsapp/cloud-api/webhooks/payload-examples#reply-button and
    #list-message; the same skeleton as wa.BUTTON_REPLY), quoting the message it answers."""
    return wa.envelope(
        contacts=SHEENA,
        messages=[
            {
                "context": {"from": "15550783881", "id": answered},
                "from": "16505551234",
                "id": message_id,
                "timestamp": "1749416400",
                "type": "interactive",
                "interactive": {"type": kind, kind: choice},
            }
        ],
    )


def test_reply_buttons_and_a_list_from_the_composer_with_the_customers_pick(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, setup.url, "/messages", *OWNER)
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    created = page.request.post(
        f"{setup.url}/api/v1/channels",
        data={
            "type": "whatsapp",
            "name": "Ventas",
            "config": {
                "phone_number_id": wa.PHONE_NUMBER_ID,
                "business_account_id": wa.BUSINESS_ACCOUNT_ID,
                "api_base_url": setup.graph.url,
            },
            "secrets": {"access_token": TOKEN, "app_secret": wa.APP_SECRET},
        },
        headers={"X-CSRF-Token": csrf},
    )
    assert created.status == 201, created.text()
    key = created.json()["key"]

    page.goto(f"{setup.url}/messages")
    expect(page.locator("[data-inbox]")).to_have_attribute("data-live", "on")
    _callback(setup, key, wa.TEXT)
    page.locator("[data-conversation]", has_text="Sheena Nelson").click()
    thread = page.get_by_test_id("thread")
    expect(thread.locator(".msg-incoming")).to_have_count(1)

    # Reply buttons: WhatsApp's limit of 3, each title checked beside its field.
    add = page.get_by_test_id("add-buttons")
    expect(add).to_be_visible()
    add.click()
    choices = page.get_by_test_id("choices")
    expect(choices).to_be_visible()
    expect(page.get_by_test_id("choices-kind-list")).to_be_visible()  # WhatsApp has lists
    expect(page.get_by_test_id("choices-hint")).to_contain_text("Hasta 3 botones de hasta 20 caracteres")
    titles = page.get_by_test_id("choice-title")
    expect(titles).to_have_count(2)
    page.get_by_test_id("add-choice").click()
    expect(titles).to_have_count(3)
    expect(page.get_by_test_id("add-choice")).to_have_count(0)  # no fourth button on WhatsApp
    titles.nth(0).fill("Un título de veintiún")
    titles.nth(1).fill("Rojo")
    box = page.get_by_test_id("composer-input")
    box.fill("¿Qué color prefiere?")
    box.press("Enter")
    errors = choices.locator("[data-choice-error]")
    expect(errors.nth(0)).to_have_text("Como máximo 20 caracteres.")
    expect(titles.nth(0)).to_have_attribute("aria-invalid", "true")
    expect(errors.nth(2)).to_have_text("Escribe un título.")
    expect(page.get_by_test_id("composer-error")).to_have_text("Corrige los botones marcados abajo.")
    titles.nth(0).fill("Rojo")
    box.press("Enter")
    expect(errors.nth(1)).to_have_text("Cada opción necesita un título distinto.")
    assert setup.graph.sent == []  # nothing left the browser while a field was wrong

    titles.nth(0).fill("Azul")
    page.get_by_test_id("choice-remove").nth(2).click()
    expect(titles).to_have_count(2)
    expect(errors.nth(1)).to_have_text("")
    shot(page, "60-inbox-reply-buttons.png")
    box.press("Enter")
    sent = thread.locator(".msg-outgoing").last
    expect(sent.get_by_test_id("message-buttons").locator("[data-choice-id]")).to_have_text(["Azul", "Rojo"])
    expect(choices).to_be_hidden()
    _wait_for(lambda: len(setup.graph.sent) == 1)
    interactive = setup.graph.sent[0]["body"]["interactive"]
    assert interactive == {
        "type": "button",
        "body": {"text": "¿Qué color prefiere?"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "Azul", "title": "Azul"}},
                {"type": "reply", "reply": {"id": "Rojo", "title": "Rojo"}},
            ]
        },
    }

    # The customer taps "Rojo": their choice arrives live and the button shows it was picked.
    _callback(setup, key, _pick("wamid.tap1", "wamid.sent1", "button_reply", {"id": "Rojo", "title": "Rojo"}))
    expect(thread.locator(".msg-incoming .msg-choice").last).to_have_text("Eligió: Rojo")
    expect(sent.locator('[data-choice-id="Rojo"]')).to_have_attribute("data-picked", "true")
    expect(sent.locator('[data-choice-id="Azul"]')).not_to_have_attribute("data-picked", "true")

    # A list, seven seconds later by the server's clock (WhatsApp takes one message every 6 s to the
    # same customer; the outbox would hold it back until then): the label of its button, a section,
    # rows with descriptions.
    with travel(timedelta(seconds=7)):
        add.click()
        page.get_by_test_id("choices-kind-list").click()
        expect(page.get_by_test_id("choices-hint")).to_contain_text("Hasta 10 filas")
        page.get_by_test_id("list-button").fill("Ver tallas")
        page.get_by_test_id("section-title").fill("Tallas")
        page.get_by_test_id("row-title").nth(0).fill("Talla S")
        page.get_by_test_id("row-description").nth(0).fill("Pequeña")
        page.get_by_test_id("add-row").click()
        page.get_by_test_id("row-title").nth(1).fill("Talla M")
        page.get_by_test_id("row-description").nth(1).fill("Mediana")
        box.fill("¿Qué talla?")
        box.press("Enter")
        listed = thread.locator(".msg-outgoing").last.get_by_test_id("message-list")
        expect(listed.locator(".msg-list-button")).to_have_text("☰ Ver tallas")
        expect(listed.locator(".msg-list-title")).to_have_text(["Talla S", "Talla M"])
        _wait_for(lambda: len(setup.graph.sent) == 2)
        assert setup.graph.sent[1]["body"]["interactive"]["action"] == {
            "button": "Ver tallas",
            "sections": [
                {
                    "title": "Tallas",
                    "rows": [
                        {"id": "Talla S", "title": "Talla S", "description": "Pequeña"},
                        {"id": "Talla M", "title": "Talla M", "description": "Mediana"},
                    ],
                }
            ],
        }
        pick = {"id": "Talla M", "title": "Talla M", "description": "Mediana"}
        _callback(setup, key, _pick("wamid.tap2", "wamid.sent2", "list_reply", pick))
        expect(thread.locator(".msg-incoming .msg-choice").last).to_have_text("Eligió: Talla M")
        expect(listed.locator('[data-choice-id="Talla M"]')).to_have_attribute("data-picked", "true")
        shot(page, "61-inbox-reply-buttons-picked.png")

    # After a reload the picks are still shown (drawn from the history, not from live events).
    page.reload()
    thread = page.get_by_test_id("thread")
    expect(thread.locator('[data-picked="true"]')).to_have_count(2)
    context.close()
    assert problems == []
