"""Settings > Assistant > Knowledge in a real browser: a manager's mistake is shown beside the field
in Spanish, the entry is created, and trying a customer's question shows the entry's answer.
SQLite only, like the other browser tests."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.service import do_add_member, do_create_user
from tests.browser.conftest import require_chromium, sign_in_at, watch
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

MANAGER = ("lucia@bicis.example.com", "lucia-password")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("knowledge"))
    with database.transaction() as session:
        created = do_create_workspace_with_owner(session, "Rodada", "owner@bicis.example.com", "owner-password")
        manager = do_create_user(session, MANAGER[0], MANAGER[1], first_name="Lucía")
        do_add_member(session, created.workspace.id, manager.id, Role.MANAGER)
    with serve_tertulia(database) as url:
        yield url
    database.dispose()


def _shot(page: Page, name: str) -> None:
    folder = os.environ.get("TERTULIA_SCREENSHOT_DIR")
    if folder:
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_a_manager_adds_an_entry_and_tries_a_question(browser: Browser, base_url: str) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES")
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, base_url, "/settings/knowledge", *MANAGER)
    expect(page.get_by_test_id("settings-knowledge")).to_have_attribute("aria-current", "page")

    form = page.get_by_test_id("new-entry")
    form.locator("#f-question").fill("¿Cuánto tarda en llegar mi pedido?")
    form.get_by_role("button").click()
    expect(page.locator("#answer-error")).to_have_text("Escribe la respuesta.")
    expect(page.locator("#f-question")).to_have_value("¿Cuánto tarda en llegar mi pedido?")

    form = page.get_by_test_id("new-entry")
    form.locator("#f-alternatives").fill("Plazo de entrega\n¿En cuántos días llega el paquete?")
    form.locator("#f-answer").fill("Los pedidos llegan en 2 a 4 días hábiles.")
    form.locator("#f-topic").fill("envíos")
    form.get_by_role("button").click()
    expect(page.get_by_test_id("entry-row")).to_have_count(1)
    expect(page.get_by_test_id("entry-row")).to_contain_text("Plazo de entrega")

    page.fill("#f-ask", "en cuantos dias llega mi pedido?")
    page.get_by_test_id("try-question").get_by_role("button", name="Preguntar").click()
    tried = page.get_by_test_id("tried-answer")
    expect(tried).to_contain_text("Respondida desde el conocimiento.")
    expect(tried).to_contain_text("Los pedidos llegan en 2 a 4 días hábiles.")
    _shot(page, "95-settings-knowledge.png")

    page.fill("#f-ask", "¿venden motos?")
    page.get_by_test_id("try-question").get_by_role("button", name="Preguntar").click()
    expect(page.get_by_test_id("tried-answer")).not_to_contain_text("Los pedidos llegan")
    assert problems == []
    context.close()
