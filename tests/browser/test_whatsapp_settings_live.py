"""Settings > Channels > a WhatsApp number in a real browser, against the local Graph API
(tests/channels/whatsapp_graph.py): the manager sees the callback URL and verify token to paste into
Meta's dashboard, presses "Test connection" and sees the number's verified name, quality rating and
messaging limit; when Meta refuses, Meta's error is shown beside the button. SQLite only, like the
other browser tests."""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, expect

from tertulia.channels.models import Channel
from tertulia.channels.service import do_create_channel
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
