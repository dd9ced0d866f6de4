"""The platform guides (docs/channels/webchat-*.md) against what the widget really needs.

Every `<script>` tag the guides show (HTML, Liquid and PHP blocks) is parsed: it must load the
widget's script from the path widget.js recognises, be async, and carry only the data attributes
widget.js reads; the plain one-line snippet must be the very line the channel's page shows. The
server-side examples compute the same `user_hash` as Tertulia checks: the Shopify app-proxy check is
run against Shopify's documented signature vector, the Velo HMAC expression under Node when Node is
installed. The browser test (tests/browser/test_widget_csp_live.py) runs the Shopify loader itself.
"""

import hashlib
import hmac
import html
import re
import shutil
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from tertulia.channels.adapters import webchat
from tertulia.kit.db import Database
from tests.channels.webchat_guides import (
    BASE_URL,
    KEYS,
    PLATFORMS,
    blocks,
    guide,
    section,
    widget_attributes,
    widget_path,
)
from tests.conftest import Tenant
from tests.conversations.support import make_webchat
from tests.web.helpers import sign_in_as

CSP_LINES = (
    f"script-src  {BASE_URL}",
    f"connect-src {BASE_URL} {BASE_URL.replace('https://', 'wss://')}",
)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs))


def _widget_tags(code: str) -> list[dict[str, str | None]]:
    parser = _Tags()
    parser.feed(code)
    return [tag for tag in parser.scripts if "/widget/" in (tag.get("src") or "")]


def _python(code: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(code, "<guide>", "exec"), namespace)  # noqa: S102  (our own documentation's example)
    return namespace


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("language", sorted(KEYS))
def test_every_tag_in_a_guide_is_one_the_widget_understands(platform: str, language: str) -> None:
    text = section(guide(platform), language)
    key = KEYS[language]
    path = widget_path()
    allowed = {"src", "async"} | widget_attributes()
    tags = [tag for block in blocks(text) for tag in _widget_tags(block.code)]
    assert tags, f"the {language} {platform} guide shows no widget tag"
    for tag in tags:
        src = str(tag["src"])
        assert src.startswith(f"{BASE_URL}/widget/"), src
        assert path.search(urlsplit(src).path), f"widget.js would not find its key in {src}"
        assert urlsplit(src).path == f"/widget/{key}.js"
        assert "async" in tag
        assert set(tag) <= allowed, f"attributes the widget does not read: {set(tag) - allowed}"
    # The plain line, copied from the channel's page, is shown as it is.
    assert webchat.snippet(BASE_URL, key) in [block.code.strip() for block in blocks(text, "html")]
    # Whatever data attribute the prose or code names is one the widget reads.
    named = set(re.findall(r"data-[a-z]+(?:-[a-z]+)*", text))
    assert named <= widget_attributes(), named - widget_attributes()
    # And the CSP entries are the ones the browser test proves sufficient.
    csp = [block.code for block in blocks(text, "text") if "connect-src" in block.code]
    assert [tuple(line.strip() for line in block.strip().splitlines()) for block in csp] == [CSP_LINES]


def test_the_snippet_is_the_line_the_channel_page_shows(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = client.get(f"/settings/channels/{channel.id}")
    assert page.status_code == 200
    shown = re.search(r'<input type="text" readonly value="([^"]*)" id="widget-snippet"', page.text)
    assert shown is not None
    line = html.unescape(shown.group(1))
    base = str(client.app.state.settings.base_url).rstrip("/")  # type: ignore[attr-defined]
    assert line == webchat.snippet(base, channel.key)
    # The same tag as the guides', this server and this key in place of the placeholders.
    assert line.replace(base, BASE_URL).replace(channel.key, KEYS["English"]) == webchat.snippet(
        BASE_URL, KEYS["English"]
    )


def test_the_server_examples_sign_what_tertulia_checks(db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant, identity_verification=True)
    secret = str(channel.secrets["identity_secret"])
    english = section(guide("shopify"), "English")
    code = next(block.code for block in blocks(english, "python") if "def shopify_signed" in block.code)
    examples = _python(code)
    signed = cast(Callable[[dict[str, list[str]], str], bool], examples["shopify_signed"])
    identity = cast(Callable[[dict[str, list[str]], str, str], dict[str, str]], examples["identity"])
    # Shopify's own example ("Authenticate app proxies", shopify.dev): shared secret "hush".
    documented = parse_qs(
        "extra=1&extra=2&shop=shop-name.myshopify.com&logged_in_customer_id=1&path_prefix=%2Fapps%2Fawesome_reviews"
        "&timestamp=1317327555&signature=4c68c8624d737112c91818c11017d24d334b524cb5c2b8ba08daa056f7395ddb",
        keep_blank_values=True,
    )
    assert signed(documented, "hush")
    assert not signed({**documented, "logged_in_customer_id": ["2"]}, "hush")
    assert identity(documented, "hush", secret) == {
        "user_id": "1",
        "user_hash": webchat.user_hash(channel, "1"),
    }
    assert identity({**documented, "signature": ["0" * 64]}, "hush", secret) == {}
    # The metafield job hashes the customer id the theme prints as data-user-id.
    metafield = next(block.code for block in blocks(english, "python") if "def store_user_hash" in block.code)
    assert "hmac.new(SECRET.encode(), str(customer_id).encode(), hashlib.sha256).hexdigest()" in metafield
    assert 'data-user-id="{{ customer.id }}"' in english
    # WordPress: PHP's hash_hmac over the very id it prints.
    wordpress = section(guide("wordpress"), "English")
    assert "$hash = hash_hmac('sha256', $user_id, TERTULIA_IDENTITY_SECRET);" in wordpress
    assert "esc_attr($user_id), esc_attr($hash)" in wordpress


NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed")
def test_the_velo_example_hashes_like_tertulia(db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant, identity_verification=True)
    secret = str(channel.secrets["identity_secret"])
    code = next(block.code for block in blocks(section(guide("wix"), "English"), "js") if "createHmac" in block.code)
    expression = re.search(r"createHmac\(.*?\.digest\(\"hex\"\)", code)
    assert expression is not None
    script = (
        'const { createHmac } = require("crypto");'
        f"const secret = {secret!r}; const userId = 'c0ffee-médium';"
        f"process.stdout.write({expression.group(0)});"
    )
    node = subprocess.run(  # noqa: S603  (our own documentation's expression, our own values)
        [str(NODE), "-e", script], capture_output=True, text=True, check=True, timeout=30
    )
    assert node.stdout == webchat.user_hash(channel, "c0ffee-médium")
    expected = hmac.new(secret.encode(), "c0ffee-médium".encode(), hashlib.sha256).hexdigest()
    assert node.stdout == expected
