"""An email conversation in a real browser: the customer's mail with its subject, the quoted history
and signature collapsed, the HTML shown in a sandboxed frame with remote images held back until asked;
the composer's subject, CC and BCC, with a bad address refused beside its field; and the mailbox's
settings page.

With TERTULIA_SCREENSHOT_DIR set, the conversation and the settings page are saved there
(docs/screenshots/ is refreshed so)."""

import base64
import os
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tertulia.channels.adapters.email import parse_mail
from tertulia.channels.models import Channel
from tertulia.channels.service import do_create_channel
from tertulia.conversations.inbound import do_receive
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tests.browser.conftest import require_chromium, sign_in_at, watch
from tests.live_server import fresh_sqlite_database, serve_tertulia
from tests.webhooks.tls import TestAuthority

pytestmark = pytest.mark.browser

OWNER = ("owner@mail.example.com", "owner-password")
RAW = (
    b"From: Ana Ruiz <ana@example.com>\r\nTo: support@shop.example.com\r\nSubject: Factura de marzo\r\n"
    b"Message-ID: <m1@example.com>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    b"Hola, no me lleg\xc3\xb3 la factura.\r\n\r\n-- \r\nAna Ruiz\r\n\r\n"
    b"El lun, Soporte escribi\xc3\xb3:\r\n> Le enviamos la factura.\r\n"
    b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<p>Hola, no me lleg\xc3\xb3 la <b>factura</b>.</p>"
    b'<img src="https://tracker.example/p.gif"><script>x()</script>\r\n'
    b"--b--\r\n"
)


@dataclass
class Setup:
    url: str
    conversation_id: int
    channel_id: int
    database: Database


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    database: Database = fresh_sqlite_database(tmp_path_factory.mktemp("email-composer"))
    with database.transaction() as session:
        created = do_create_workspace_with_owner(session, "Tienda Co", *OWNER, default_language="en")
        owner = Actor(workspace_id=created.workspace.id, kind="user", user_id=created.owner.id, role=Role.OWNER)
        # Servers on this machine that answer nothing (the discard port): the running server's
        # periodic fetch tries them and the page shows its error; nothing leaves the machine.
        config = {
            "address": "support@shop.example.com",
            "incoming_host": "127.0.0.1",
            "incoming_port": 9,
            "incoming_security": "plain",
            "smtp_host": "127.0.0.1",
            "smtp_port": 9,
            "smtp_security": "plain",
            "from_name": "Soporte",
        }
        channel = do_create_channel(session, owner, "email", "Soporte", config, {"password": "x"})
        [inbound] = parse_mail(channel, RAW).messages
        received = do_receive(session, channel, inbound)
        assert received.conversation is not None
        conversation_id, channel_id = received.conversation.id, channel.id
    queue.use_database(database)
    with serve_tertulia(database) as base:
        yield Setup(base, conversation_id, channel_id, database)
    queue.use_database(None)
    database.dispose()


def test_an_email_conversation_and_its_composer(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    page = browser.new_context().new_page()
    watch(page, problems)
    sign_in_at(page, setup.url, f"/messages/{setup.conversation_id}", *OWNER)
    thread = page.get_by_test_id("thread")
    expect(thread).to_contain_text("Factura de marzo")
    expect(thread).to_contain_text("Hola, no me llegó la factura.")
    quoted = page.get_by_test_id("email-quoted")
    expect(quoted).not_to_have_attribute("open", "")
    html = page.get_by_test_id("email-html")
    html.locator("summary").click()
    frame = html.locator("iframe")
    expect(frame).to_have_attribute("sandbox", "")
    inner = page.frame_locator('[data-testid="email-html"] iframe')
    expect(inner.locator("b")).to_have_text("factura")
    expect(inner.locator("img")).to_have_attribute("data-src", "https://tracker.example/p.gif")
    assert inner.locator("script").count() == 0
    expect(page.get_by_test_id("email-load-images")).to_be_visible()

    expect(page.get_by_test_id("email-fields")).to_be_visible()
    page.get_by_test_id("email-subject").fill("Su factura de marzo")
    page.get_by_test_id("email-cc").fill("contabilidad@example.com")
    page.get_by_test_id("composer-input").fill("Se la reenviamos hoy.")
    folder = os.environ.get("TERTULIA_SCREENSHOT_DIR")
    if folder:
        page.screenshot(path=str(Path(folder) / "65-inbox-email.png"))
    page.get_by_test_id("email-cc").fill("no es correo")
    page.get_by_test_id("composer-input").press("Enter")
    expect(page.get_by_test_id("email-cc-error")).to_have_text("is not a valid email address")
    expect(page.get_by_test_id("email-cc")).to_have_attribute("aria-invalid", "true")
    page.get_by_test_id("email-cc").fill("contabilidad@example.com")
    page.get_by_test_id("email-bcc").fill("a@b")
    page.get_by_test_id("composer-input").press("Enter")
    expect(page.get_by_test_id("email-bcc-error")).to_have_text("is not a valid email address")
    expect(page.get_by_test_id("email-cc-error")).to_have_text("")
    page.get_by_test_id("email-bcc").fill("")
    page.get_by_test_id("mode-note").click()
    expect(page.get_by_test_id("email-fields")).to_be_hidden()
    page.goto(f"{setup.url}/settings/channels/{setup.channel_id}")
    expect(page.get_by_test_id("email-status")).to_contain_text("support@shop.example.com")
    if folder:
        page.screenshot(path=str(Path(folder) / "66-settings-email.png"), full_page=True)
    problems = [p for p in problems if "tracker.example" not in p]
    assert problems == []


def test_the_composer_refuses_a_bad_address_in_the_reader_s_language(browser: Browser, setup: Setup) -> None:
    page = browser.new_context(locale="es-ES").new_page()
    sign_in_at(page, setup.url, f"/messages/{setup.conversation_id}", *OWNER)
    expect(page.get_by_test_id("email-fields")).to_be_visible()
    page.get_by_test_id("email-cc").fill("no es correo")
    page.get_by_test_id("composer-input").fill("Se la reenviamos hoy.")
    page.get_by_test_id("composer-input").press("Enter")
    expect(page.get_by_test_id("email-cc-error")).to_have_text("no es una dirección de correo válida")
    expect(page.get_by_test_id("email-cc")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("composer-input")).to_have_value("Se la reenviamos hoy.")  # nothing was sent


# A 1x1 PNG (the smallest valid one): a remote image the browser can decode and size.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@dataclass
class ImageHost:
    """A remote image host on this machine, over HTTPS (the page's CSP allows remote images over
    https: only), with a certificate from the test authority; it notes every path asked for."""

    url: str
    asked: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def image_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageHost]:
    certificate = TestAuthority(tmp_path_factory.mktemp("image-ca")).issue("127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert_file, certificate.key_file)
    host = ImageHost(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            host.asked.append(self.path)
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-length", str(len(PIXEL)))
            self.end_headers()
            self.wfile.write(PIXEL)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    host.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield host
    finally:
        server.shutdown()
        server.server_close()


def test_load_images_shows_the_remote_image_only_when_clicked(
    browser: Browser, setup: Setup, image_host: ImageHost
) -> None:
    raw = (
        b"From: Bea Gil <bea@example.com>\r\nTo: support@shop.example.com\r\nSubject: Mi logo\r\n"
        b"Message-ID: <logo1@example.com>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b'<p>Este es el logo:</p><img alt="logo" src="' + image_host.url.encode() + b'/logo.png">\r\n'
    )
    with setup.database.transaction() as session:
        channel = session.get(Channel, setup.channel_id)
        assert channel is not None
        [inbound] = parse_mail(channel, raw).messages
        received = do_receive(session, channel, inbound)
        assert received.conversation is not None
        conversation_id = received.conversation.id
    # The test authority is not in Chromium's store: this context accepts the host's certificate.
    page = browser.new_context(ignore_https_errors=True).new_page()
    problems: list[str] = []
    watch(page, problems)
    sign_in_at(page, setup.url, f"/messages/{conversation_id}", *OWNER)
    html = page.get_by_test_id("email-html")
    html.locator("summary").click()
    inner = page.frame_locator('[data-testid="email-html"] iframe')
    expect(inner.locator("p")).to_have_text("Este es el logo:")
    expect(inner.locator("img")).to_have_attribute("data-src", f"{image_host.url}/logo.png")
    assert image_host.asked == []  # held back: the sender cannot tell the mail was opened
    # The button sits under the open frame, below the thread's visible part: scrolled to, as an
    # agent scrolls the thread.
    button = page.get_by_test_id("email-load-images")
    button.scroll_into_view_if_needed()
    button.click()
    image = inner.locator("img")
    expect(image).to_have_attribute("src", f"{image_host.url}/logo.png")
    # Loaded and decoded: the browser knows its size (asked inside the sandboxed frame).
    deadline = time.monotonic() + 10
    while image.evaluate("img => img.complete ? img.naturalWidth : -1") != 1:
        assert time.monotonic() < deadline, "the image did not load"
        time.sleep(0.1)
    assert image_host.asked == ["/logo.png"]
    expect(page.get_by_test_id("email-load-images")).to_have_count(0)
    assert problems == []
