"""The widget on a third-party site with a strict Content-Security-Policy, as the help centre's
platform guides (docs/channels/webchat-*.md) tell site owners to set it up.

The shop is another origin with a CSP that lists only Tertulia's origin for scripts, Tertulia's http
and ws origins for connections, and no 'unsafe-inline' at all (scripts or styles). The widget must
load, send a message and get the agent's reply there without a single violation: every
`securitypolicyviolation` event on the page and every report the browser posts is recorded, and
there must be none. A signed-in customer's identity comes as data attributes whose hash the shop's
server computed; a site that is not among the allowed websites gets nothing. SQLite only, like the
other browser tests.
"""

import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from tertulia.channels.service import do_create_channel
from tertulia.contacts.models import ContactIdentity
from tertulia.conversations.models import Conversation
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tertulia.users.service import do_create_api_token
from tests.browser.conftest import require_chromium, wait_in_page, watch
from tests.channels.webchat_guides import BASE_URL, KEYS, blocks, guide, section
from tests.live_server import Site, free_port, fresh_sqlite_database, immediate_deliveries, serve_site, serve_tertulia

pytestmark = pytest.mark.browser

WIDGET = "[data-tertulia-widget]"
SHOP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shop</title></head>
<body><h1>Shop</h1>
{snippet}
</body></html>"""
# What the guides tell a site with a CSP to list, and nothing more: the platforms' strictest.
CSP = (
    "default-src 'self'; script-src 'self' {http}; connect-src 'self' {http} {ws}; style-src 'self'; "
    "img-src 'self' data:; font-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'; "
    "form-action 'self'; require-trusted-types-for 'script'; report-uri /csp-report"
)
# Every violation the page sees, kept where the test can read it (init scripts run before the page's own).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push({directive: event.violatedDirective, blocked: event.blockedURI, sample: event.sample});
}, true);
"""


def _guide_loader(widget_url: str) -> str:
    """The Shopify guide's loader (an app proxy answers who is signed in; a script of the site's own
    adds the tag, as the Wix custom element does), pointed at this server's widget."""
    english = section(guide("shopify"), "English")
    code = next(block.code for block in blocks(english, "js") if "/apps/tertulia/identity" in block.code)
    placeholder = f"{BASE_URL}/widget/{KEYS['English']}.js"
    assert placeholder in code
    return code.replace(placeholder, widget_url)


@dataclass
class Setup:
    url: str
    shop: Site
    stranger: Site
    database: Database
    api_token: str
    channel_id: int
    key: str


def _snippet(server: str, key: str, identity: dict[str, str] | None = None) -> str:
    """The channel page's snippet; with `identity`, its data attributes as the site's server writes them."""
    attributes = "".join(f' data-{name}="{value}"' for name, value in (identity or {}).items())
    return f'<script src="{server}/widget/{key}.js" async{attributes}></script>'


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("widget-csp"))
    shop_port, stranger_port = free_port(), free_port()
    with database.transaction() as session:
        created = do_create_workspace_with_owner(
            session, "Shop Co", "owner@csp.example.com", "owner-password", default_language="en"
        )
        owner = Actor(workspace_id=created.workspace.id, kind="user", user_id=created.owner.id, role=Role.OWNER)
        channel = do_create_channel(
            session,
            owner,
            "webchat",
            "Shop",
            {"allowed_origins": [f"http://127.0.0.1:{shop_port}"], "identity_verification": True},
        )
        channel_id, key, secret = channel.id, channel.key, str(channel.secrets["identity_secret"])
        api_token = do_create_api_token(session, created.workspace.id, "replies").secret
    # What the shop's server does for a signed-in customer (the guides' PHP and Velo examples).
    user_hash = hmac.new(secret.encode(), b"customer-4711", hashlib.sha256).hexdigest()
    loaded_hash = hmac.new(secret.encode(), b"customer-4712", hashlib.sha256).hexdigest()
    with immediate_deliveries(database), serve_tertulia(database) as url:
        policy = CSP.format(http=url, ws=url.replace("http://", "ws://", 1))
        pages = {
            "/": SHOP_PAGE.format(snippet=_snippet(url, key)),
            "/account": SHOP_PAGE.format(
                snippet=_snippet(
                    url,
                    key,
                    {
                        "user-id": "customer-4711",
                        "user-hash": user_hash,
                        "name": "Ada Lovelace",
                        "email": "ada@example.com",
                    },
                )
            ),
            "/orders": SHOP_PAGE.format(snippet='<script src="/assets/tertulia-chat.js" async></script>'),
            "/assets/tertulia-chat.js": ("text/javascript", _guide_loader(f"{url}/widget/{key}.js")),
            "/apps/tertulia/identity": (
                "application/json",
                json.dumps({"user_id": "customer-4712", "user_hash": loaded_hash, "name": "Grace Hopper"}),
            ),
        }
        headers = {"Content-Security-Policy": policy}
        with serve_site(shop_port, pages, headers) as shop, serve_site(stranger_port, pages, headers) as stranger:
            yield Setup(url, shop, stranger, database, api_token, channel_id, key)
    database.dispose()


@pytest.fixture
def visitor(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.add_init_script(RECORD_VIOLATIONS)
    problems: list[str] = []
    watch(page, problems)
    yield page
    context.close()
    assert problems == []


def _violations(page: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate("window.__cspViolations")
    return found


def _reply_to_latest(setup: Setup, text: str) -> None:
    with setup.database.transaction(write=False) as session:
        conversation_id = session.scalars(select(Conversation.id).order_by(Conversation.id.desc())).first()
    answer = httpx.post(
        f"{setup.url}/api/v1/conversations/{conversation_id}/messages",
        headers={"Authorization": f"Bearer {setup.api_token}"},
        json={"text": text},
    )
    assert answer.status_code == 201, answer.text


def _chat(page: Page, setup: Setup, text: str, reply: str) -> None:
    page.locator(f"{WIDGET} .launcher").click()
    composer = page.locator(f"{WIDGET} textarea")
    composer.fill(text)
    composer.press("Enter")
    expect(page.locator(f"{WIDGET} .msg.in").last).to_have_attribute("data-id", re.compile(r"\d+"))
    _reply_to_latest(setup, reply)
    expect(page.locator(f"{WIDGET} .msg.out").last).to_have_text(reply)


def test_the_widget_works_under_a_strict_csp(visitor: Page, setup: Setup) -> None:
    frames: list[str] = []
    visitor.on("websocket", lambda socket: socket.on("framereceived", lambda frame: frames.append(str(frame))))
    visitor.goto(setup.shop.url("/"))
    expect(visitor.locator(f"{WIDGET} .launcher")).to_be_visible()
    # Its styles apply (a constructed stylesheet, which style-src does not govern): round and coloured.
    launcher = visitor.locator(f"{WIDGET} .launcher")
    assert launcher.evaluate("b => getComputedStyle(b).borderRadius") == "50%"
    assert launcher.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(37, 99, 235)"
    _chat(visitor, setup, "Is my order on its way?", "Yes, it left this morning.")
    # The reply came over the visitor's socket: the ws origin in connect-src is enough for it.
    assert any('"type":"ready"' in frame for frame in frames)
    assert any("Yes, it left this morning." in frame for frame in frames)
    assert _violations(visitor) == []
    assert setup.shop.csp_reports == []


def _chat_as_customer(visitor: Page, setup: Setup, path: str, user_id: str) -> None:
    """On the shop's `path`, a chat from the customer the shop's server vouched for: stored as theirs."""
    visitor.goto(setup.shop.url(path))
    _chat(visitor, setup, f"Where is my order, from {path}?", "On its way.")
    with setup.database.transaction(write=False) as session:
        identities = session.scalars(select(ContactIdentity.external_id).where(ContactIdentity.channel == "webchat"))
        assert f"{setup.channel_id}:u:{user_id}" in set(identities)
    assert _violations(visitor) == []
    assert setup.shop.csp_reports == []


def test_a_signed_in_customer_is_known_by_the_shops_id(visitor: Page, setup: Setup) -> None:
    _chat_as_customer(visitor, setup, "/account", "customer-4711")


def test_a_loader_script_of_the_site_may_add_the_tag(visitor: Page, setup: Setup) -> None:
    """The widget finds its key and the data attributes on a tag another script inserted."""
    _chat_as_customer(visitor, setup, "/orders", "customer-4712")


def test_a_site_not_allowed_gets_no_widget(browser: Browser, setup: Setup) -> None:
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.add_init_script(RECORD_VIOLATIONS)
    with page.expect_event("requestfailed", lambda request: request.url.endswith("/config")):
        page.goto(setup.stranger.url("/"))
    page.wait_for_timeout(500)
    expect(page.locator(WIDGET)).to_have_count(0)
    # The browser refused the answer because the server refused the site: 403 without a CORS header.
    refused = httpx.get(f"{setup.url}/widget/{setup.key}/config", headers={"Origin": setup.stranger.origin})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in refused.headers
    assert _violations(page) == []
    # The recorder hears a real violation (an origin connect-src does not list): its silence counts.
    page.evaluate("fetch('http://127.0.0.1:9/elsewhere').catch(function () {})")
    wait_in_page(page, "window.__cspViolations.length > 0")
    assert _violations(page)[0]["directive"] == "connect-src"
    context.close()
