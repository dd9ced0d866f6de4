"""WhatsApp in a real browser, against the local Graph API (tests/channels/whatsapp_graph.py).

Settings > Channels > the number: the manager sees the callback URL and verify token to paste into
Meta's dashboard, presses "Test connection" and sees the number's verified name, quality rating and
messaging limit; when Meta refuses, Meta's error is shown beside the button. In the inbox, an agent
quotes the customer's message and the reply reaches Meta with that message as its context. SQLite
only, like the other browser tests."""

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tertulia.channels.adapters.whatsapp import signature
from tertulia.channels.models import Channel
from tertulia.channels.service import do_create_channel
from tertulia.conversations import outbox as _outbox  # noqa: F401  (registers the queue tasks)
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tests.browser.conftest import require_chromium, sign_in_at, watch
from tests.channels import whatsapp_samples as wa
from tests.channels.whatsapp_graph import TOKEN, FakeGraph, fake_graph
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

OWNER = ("owner@whatsapp.example.com", "owner-password")


@dataclass
class Setup:
    url: str
    database: Database
    graph: FakeGraph
    channel: Channel


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("whatsapp"))
    queue.huey.immediate = True
    queue.use_database(database)
    with fake_graph() as graph, serve_tertulia(database) as url:
        with database.transaction() as session:
            created = do_create_workspace_with_owner(session, "Tienda Co", *OWNER)
            owner = Actor(workspace_id=created.workspace.id, kind="user", user_id=created.owner.id, role=Role.OWNER)
            config = {
                "phone_number_id": wa.PHONE_NUMBER_ID,
                "business_account_id": wa.BUSINESS_ACCOUNT_ID,
                "api_base_url": graph.base_url,
            }
            secrets = {"access_token": TOKEN, "app_secret": wa.APP_SECRET}
            channel = do_create_channel(session, owner, "whatsapp", "Ventas MX", config, secrets)
            session.expunge(channel)
        yield Setup(url, database, graph, channel)
    queue.huey.immediate = False
    queue.use_database(None)
    database.dispose()


def test_paste_into_meta_and_test_the_connection(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES", viewport={"width": 1280, "height": 860})
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, setup.url, "/settings/channels", *OWNER)
    page.get_by_role("link", name="Ventas MX").first.click()

    expect(page.get_by_test_id("callback-url")).to_have_value(f"{setup.url}/webhooks/{setup.channel.key}")
    expect(page.get_by_test_id("verify-token")).to_have_value(setup.channel.secrets["verify_token"])
    expect(page.get_by_test_id("phone-number-id")).to_have_text(wa.PHONE_NUMBER_ID)

    page.get_by_role("button", name="Probar la conexión").click()
    expect(page.get_by_test_id("verified-name")).to_have_text("Tienda Tertulia")
    expect(page.get_by_test_id("quality-rating")).to_have_text("Alta (verde) · GREEN")
    expect(page.get_by_test_id("messaging-limit")).to_have_text(
        "1.000 clientes fuera de la ventana de atención en 24 horas · TIER_1K"
    )
    assert [r.kind for r in setup.graph.received] == ["number"]

    setup.graph.fail_next("number", 401, wa.graph_error(190, "Error validating access token: Session has expired"))
    page.get_by_role("button", name="Probar la conexión").click()
    expect(page.get_by_test_id("test-error")).to_have_text(
        "WhatsApp respondió: (#190) Error validating access token: Session has expired"
    )
    expect(page.get_by_test_id("whatsapp-number")).to_have_count(0)
    assert problems == []
    context.close()


def test_an_agent_quotes_the_customer_s_message(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES", viewport={"width": 1280, "height": 860})
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, setup.url, "/messages", *OWNER)
    expect(page.locator("[data-inbox]")).to_have_attribute("data-live", "on")
    raw = wa.body(wa.TEXT)
    headers = {"X-Hub-Signature-256": f"sha256={signature(setup.channel, raw)}"}
    assert httpx.post(f"{setup.url}/webhooks/{setup.channel.key}", content=raw, headers=headers).status_code == 200
    page.locator("[data-conversation]", has_text="Sheena Nelson").click()
    incoming = page.get_by_test_id("thread").locator(".msg-incoming")
    expect(incoming.locator(".msg-text")).to_have_text("Does it come in another color?")

    incoming.get_by_test_id("quote-button").click()
    expect(page.get_by_test_id("composer-quote").locator("[data-quote-text]")).to_have_text(
        "Respondiendo a: Does it come in another color?"
    )
    box = page.get_by_test_id("composer-input")
    box.fill("Sí, en azul y en rojo")
    box.press("Enter")
    expect(page.get_by_test_id("thread").locator(".msg-outgoing .msg-text")).to_have_text("Sí, en azul y en rojo")
    expect(page.get_by_test_id("composer-quote")).to_be_hidden()
    deadline = time.monotonic() + 15
    while not setup.graph.sent() and time.monotonic() < deadline:
        time.sleep(0.1)
    (sent,) = setup.graph.sent()
    assert sent.body["text"]["body"] == "Sí, en azul y en rojo"
    assert sent.body["context"] == {"message_id": wa.TEXT_ID}
    assert problems == []
    context.close()
