"""Web chat end to end in a real browser: a visitor on another site, an agent in the inbox.

A second local HTTP server (another origin, listed in the channel's allowed origins) serves a shop
page that embeds the widget with the one-line snippet. The visitor and the agent are two browser
contexts driven by Playwright against one real uvicorn server; everything between them travels over
the real HTTP endpoints and WebSockets. SQLite only, like the other browser tests.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import select

from tertulia.channels.service import do_create_channel
from tertulia.conversations import service as inbox
from tertulia.conversations.models import Conversation, ConversationStatus
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tertulia.users.service import do_add_member, do_create_user
from tests.browser.conftest import require_chromium, sign_in_at, watch
from tests.live_server import free_port, fresh_sqlite_database, immediate_deliveries, serve_site, serve_tertulia

pytestmark = pytest.mark.browser

AGENT = ("marta@inbox.example.com", "marta-password")
# The host page's own CSS tries hard to restyle buttons; the widget's Shadow DOM must not care.
SHOP_PAGE = """<!doctype html>
<html lang="es"><head><meta charset="utf-8"><title>Tienda</title>
<style>button, div, textarea {{ background: #ff00ff !important; font-size: 40px !important; }}</style>
</head><body><h1>Tienda de prueba</h1>
<script src="{server}/widget/{key}.js" async></script>
</body></html>"""


@dataclass
class Setup:
    url: str
    shop_url: str
    database: Database
    workspace_id: int
    agent_id: int


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("inbox"))
    shop_port = free_port()
    shop_origin = f"http://127.0.0.1:{shop_port}"
    with database.transaction() as session:
        created = do_create_workspace_with_owner(session, "Tienda Co", "owner@inbox.example.com", "owner-password")
        workspace_id = created.workspace.id
        agent = do_create_user(session, AGENT[0], AGENT[1], first_name="Marta")
        do_add_member(session, workspace_id, agent.id, Role.MANAGER)
        owner = Actor(workspace_id=workspace_id, kind="user", user_id=created.owner.id, role=Role.OWNER)
        inbox.do_create_snippet(session, owner, "saludo", "Hola {{contact.first_name}}, soy {{user.first_name}}.")
        inbox.do_create_closing_category(session, owner, "Resuelto")
        channel = do_create_channel(
            session,
            owner,
            "webchat",
            "Tienda",
            {
                "allowed_origins": [shop_origin],
                "ask_name": True,
                "theme": {"color": "#0e9384", "greeting": "¡Hola! ¿En qué te ayudamos?", "position": "left"},
            },
        )
        key, agent_id = channel.key, agent.id
    # Deliveries (the outbox task) run right after each commit, against this database.
    with (
        immediate_deliveries(database),
        serve_tertulia(database) as url,
        serve_site(shop_port, {"/": SHOP_PAGE.format(server=url, key=key)}) as shop,
    ):
        yield Setup(url, shop.url(), database, workspace_id, agent_id)
    database.dispose()


def test_visitor_and_agent_talk_live(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    agent_context = browser.new_context(locale="es-ES")
    visitor_context = browser.new_context(locale="es-ES")
    agent = agent_context.new_page()
    visitor = visitor_context.new_page()
    watch(agent, problems)
    watch(visitor, problems)

    sign_in_at(agent, setup.url, "/messages", *AGENT)
    expect(agent.get_by_test_id("conversation-list")).to_contain_text("No hay conversaciones")

    # Every URL the widget asks for (its socket's included) is free of credentials: URLs end up in
    # access logs. It used to open /widget/ws?key=...&token=<the visitor's year-long token>.
    urls: list[str] = []
    visitor.on("request", lambda request: urls.append(request.url))
    visitor.on("websocket", lambda socket: urls.append(socket.url))

    # The visitor, on another site: the launcher is themed and the host page's CSS does not reach it.
    visitor.goto(setup.shop_url)
    launcher = visitor.locator("[data-tertulia-widget] .launcher")
    expect(launcher).to_be_visible()
    assert launcher.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(14, 147, 132)"
    launcher.click()
    expect(visitor.locator("[data-tertulia-widget] .msg.greeting")).to_have_text("¡Hola! ¿En qué te ayudamos?")
    visitor.fill("[data-tertulia-widget] input[name=name]", "Lucía Pérez")
    visitor.click("[data-tertulia-widget] .prechat button[type=submit]")
    composer = visitor.locator("[data-tertulia-widget] textarea")
    composer.fill("Hola, ¿hacéis envíos a Canarias? <b>gracias</b>")
    composer.press("Enter")
    expect(visitor.locator("[data-tertulia-widget] .msg.in")).to_have_text(
        "Hola, ¿hacéis envíos a Canarias? <b>gracias</b>"
    )

    # The agent sees it arrive without reloading, opens it, assigns it to herself.
    row = agent.locator("[data-conversation]", has_text="Lucía Pérez")
    expect(row).to_be_visible()
    expect(row.get_by_test_id("unread")).to_have_text("1")
    row.click()
    thread = agent.get_by_test_id("thread")
    expect(thread.locator(".msg-incoming .msg-text")).to_have_text("Hola, ¿hacéis envíos a Canarias? <b>gracias</b>")
    expect(agent.get_by_test_id("contact-panel")).to_contain_text("Lucía Pérez")
    agent.get_by_test_id("assign-me").click()
    expect(agent.get_by_test_id("assign-user")).to_have_value(str(setup.agent_id))
    # System lines are stored in English and shown in the reader's language.
    expect(thread.locator(".msg-system").last).to_have_text("Asignada a Marta")

    # A snippet typed with "/", filled in by the server, then sent.
    box = agent.get_by_test_id("composer-input")
    box.click()
    box.press_sequentially("/salu")
    expect(agent.locator("[data-snippet-menu] [data-snippet=saludo]")).to_be_visible()
    box.press("Enter")
    expect(box).to_have_value("Hola Lucía, soy Marta.")
    box.press("Enter")
    expect(thread.locator(".msg-outgoing .msg-text")).to_have_text("Hola Lucía, soy Marta.")

    # The visitor sees the reply live, and still sees the conversation after a reload.
    expect(visitor.locator("[data-tertulia-widget] .msg.out")).to_have_text("Hola Lucía, soy Marta.")
    visitor.reload()
    visitor.locator("[data-tertulia-widget] .launcher").click()
    expect(visitor.locator("[data-tertulia-widget] .msg.out")).to_have_text("Hola Lucía, soy Marta.")
    expect(visitor.locator("[data-tertulia-widget] input[name=name]")).to_have_count(0)

    # Over the open socket: the agent sees the visitor typing, and the message goes without HTTP.
    posted: list[str] = []
    visitor.on("request", lambda r: posted.append(r.url) if r.method == "POST" and "/messages" in r.url else None)
    composer = visitor.locator("[data-tertulia-widget] textarea")
    composer.press_sequentially("¿Y a Baleares?", delay=120)
    expect(agent.get_by_test_id("typing")).to_be_visible()
    expect(agent.get_by_test_id("typing")).to_have_text("escribiendo…")
    composer.press("Enter")
    expect(thread.locator(".msg-incoming .msg-text").last).to_have_text("¿Y a Baleares?")
    expect(agent.get_by_test_id("typing")).to_be_hidden()
    expect(visitor.locator("[data-tertulia-widget] .msg.in").last).to_have_attribute("data-id", re.compile(r"\d+"))
    assert posted == []
    # And the other way: the agent writing a reply shows on the visitor's side.
    box.fill("")
    box.press_sequentially("Sí, también", delay=50)
    expect(visitor.locator("[data-tertulia-widget] .typing")).to_have_text("Escribiendo…")
    box.fill("")

    # The agent closes it with a closing note.
    agent.get_by_test_id("close-conversation").click()
    agent.get_by_test_id("close-category").select_option(label="Resuelto")
    agent.get_by_test_id("close-summary").fill("Envío a Canarias confirmado.")
    agent.get_by_test_id("confirm-close").click()
    expect(agent.get_by_test_id("reopen-conversation")).to_be_visible()
    expect(agent.locator("[data-pane-status]")).to_have_text("Cerrada")
    expect(thread.locator(".msg-system").last).to_have_text("Cerrada: Resuelto")

    with setup.database.transaction(write=False) as session:
        conversation = session.scalars(
            select(Conversation).where(Conversation.workspace_id == setup.workspace_id)
        ).one()
        assert conversation.status == ConversationStatus.CLOSED
        assert conversation.assignee_id == setup.agent_id
        assert conversation.closing_summary == "Envío a Canarias confirmado."
        assert conversation.closing_category_id is not None

    kept = visitor.evaluate("() => Object.values(localStorage).join(' ')")
    assert "token" in kept
    sockets = [url for url in urls if url.startswith("ws")]
    assert sockets
    assert all("token" not in url.lower() for url in urls), [u for u in urls if "token" in u.lower()]

    agent_context.close()
    visitor_context.close()
    assert problems == []
