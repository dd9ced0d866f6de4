"""WhatsApp end to end in a real browser, against the local fake Graph API (tests/channels/fake_graph.py).

A manager connects a WhatsApp number (through the channels API with the browser's own session, the
same `do_connect_channel` Settings uses; the number's templates are read from the fake's
message_templates endpoint on connect) and finds them in Settings > Channels > Templates. A customer
writes (Meta's signed callback, posted to our callback URL); the agent sees it arrive live, answers
inside the 24-hour window (the composer says until when), then the application's clock moves 25 hours
(`kit.clock.travel`, honoured by the server in this process; nothing sleeps): the composer switches to
templates only, the agent sends an approved template whose body parameter is the variable
`{{contact.first_name | "cliente"}}` (the preview shows it filled in), Meta's status callbacks say
delivered, then read, and the ticks follow live. SQLite only, like the other browser tests.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

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
from tests.channels import whatsapp_template_samples as samples
from tests.channels.fake_graph import TOKEN, FakeGraph, fake_graph
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

OWNER = ("owner@whatsapp.example.com", "owner-password")


@dataclass
class Setup:
    url: str
    database: Database
    graph: FakeGraph


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("whatsapp"))
    with database.transaction() as session:
        do_create_workspace_with_owner(session, "Tienda Co", *OWNER)
    queue.huey.immediate = True
    queue.use_database(database)
    with fake_graph(samples.TEMPLATES) as graph, serve_tertulia(database) as url:
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


def _callback(setup: Setup, key: str, data: dict[str, object]) -> None:
    """Meta's delivery of a callback: the body signed with the app secret (X-Hub-Signature-256)."""
    raw = wa.body(data)
    signed = signature(Channel(secrets={"app_secret": wa.APP_SECRET}), raw)
    answer = httpx.post(
        f"{setup.url}/webhooks/{key}",
        content=raw,
        headers={"X-Hub-Signature-256": f"sha256={signed}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text


def test_connect_receive_answer_then_only_templates_after_a_day(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, setup.url, "/settings/channels", *OWNER)

    # Connect the number with the signed-in manager's session (and its CSRF token).
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    config = {
        "phone_number_id": wa.PHONE_NUMBER_ID,
        "business_account_id": wa.BUSINESS_ACCOUNT_ID,
        "api_base_url": setup.graph.url,
    }
    created = page.request.post(
        f"{setup.url}/api/v1/channels",
        data={
            "type": "whatsapp",
            "name": "Ventas",
            "config": config,
            "secrets": {"access_token": TOKEN, "app_secret": wa.APP_SECRET},
        },
        headers={"X-CSRF-Token": csrf},
    )
    assert created.status == 201, created.text()
    channel = created.json()

    # The templates were read on connect; Settings shows them with their status.
    page.goto(f"{setup.url}/settings/channels")
    page.get_by_test_id("templates-link").click()
    rows = page.get_by_test_id("template-row")
    expect(rows).to_have_count(len(samples.TEMPLATES))
    seguimiento = page.locator('[data-template="seguimiento_pedido"]')
    expect(seguimiento.get_by_test_id("template-status")).to_have_text("Aprobada")
    expect(seguimiento.get_by_test_id("template-body")).to_have_text("Hola {{1}}, tu pedido llega el {{2}}.")
    expect(page.locator('[data-template="abandoned_cart"]').get_by_test_id("template-status")).to_have_text(
        "En revisión"
    )
    shot(page, "45-settings-whatsapp-templates.png")

    # The customer writes; the inbox shows it live.
    page.goto(f"{setup.url}/messages")
    expect(page.locator("[data-inbox]")).to_have_attribute("data-live", "on")
    _callback(setup, channel["key"], wa.TEXT)
    row = page.locator("[data-conversation]", has_text="Sheena Nelson")
    expect(row).to_be_visible()
    row.click()
    thread = page.get_by_test_id("thread")
    expect(thread.locator(".msg-incoming .msg-text")).to_have_text("Does it come in another color?")
    notice = page.locator("[data-window-notice]")
    expect(notice).to_contain_text("Ventana de 24 horas abierta hasta")

    # Inside the window: a free-form answer goes out as text.
    box = page.get_by_test_id("composer-input")
    box.fill("¡Sí, también en azul!")
    box.press("Enter")
    expect(thread.locator(".msg-outgoing .msg-text")).to_have_text("¡Sí, también en azul!")
    _wait_for(lambda: len(setup.graph.sent) == 1)
    assert setup.graph.sent[0]["body"]["text"]["body"] == "¡Sí, también en azul!"

    with travel(timedelta(hours=25)):
        # A day and an hour later (by the server's clock): free text is off, templates only.
        page.reload()
        expect(page.get_by_test_id("thread").locator(".msg-incoming")).to_have_count(1)
        expect(notice).to_contain_text("La ventana de 24 horas se cerró el")
        expect(page.get_by_test_id("composer-input")).to_be_disabled()
        expect(page.get_by_test_id("composer-input")).to_have_attribute(
            "placeholder", "Fuera de la ventana de 24 horas no se puede enviar texto libre; elige una plantilla."
        )
        picker = page.get_by_test_id("template-picker")
        expect(picker).to_be_visible()
        select = page.get_by_test_id("template-select")
        expect(select.locator("option")).to_have_count(5)  # "choose" + the four APPROVED templates
        select.select_option(label="seguimiento_pedido (es_MX)")
        page.get_by_test_id("template-param-header-1").fill("#42")
        page.get_by_test_id("template-param-body-1").fill('{{contact.first_name | "cliente"}}')
        page.get_by_test_id("template-param-body-2").fill("lunes")
        preview = page.get_by_test_id("template-preview")
        expect(preview).to_contain_text("Hola Sheena, tu pedido llega el lunes.")
        expect(preview).to_contain_text("Pedido #42")
        page.get_by_test_id("template-param-body-2").fill("{{contact.apodo}}")
        expect(page.get_by_test_id("template-error")).to_contain_text("unknown variable {{contact.apodo}}")
        expect(page.get_by_test_id("template-send")).to_be_disabled()
        page.get_by_test_id("template-param-body-2").fill("lunes")
        expect(page.get_by_test_id("template-send")).to_be_enabled()
        shot(page, "46-inbox-whatsapp-template.png")
        page.get_by_test_id("template-send").click()
        sent = page.get_by_test_id("thread").locator(".msg-outgoing").last
        expect(sent.locator(".msg-text")).to_contain_text("Hola Sheena, tu pedido llega el lunes.")
        _wait_for(lambda: len(setup.graph.sent) == 2)
        template = setup.graph.sent[1]["body"]["template"]
        assert template["name"] == "seguimiento_pedido"
        assert template["components"][1]["parameters"][0] == {"type": "text", "text": "Sheena"}
        expect(sent.locator(".msg-meta")).to_contain_text("Enviado")

        # Meta's status callbacks: delivered, then read; the ticks follow live.
        _callback(setup, channel["key"], wa.status("wamid.sent2", "delivered"))
        expect(sent.locator(".msg-meta")).to_contain_text("Entregado")
        _callback(setup, channel["key"], wa.status("wamid.sent2", "read"))
        expect(sent.locator(".msg-meta")).to_contain_text("Leído")
        shot(page, "47-inbox-whatsapp-read.png")
    context.close()
    assert problems == []
