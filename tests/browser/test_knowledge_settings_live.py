"""Settings > Assistant > Knowledge in a real browser: a manager's mistake is shown beside the field
in Spanish, the entry is created, and trying a customer's question shows the entry's answer.
SQLite only, like the other browser tests."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import serve_workspace, shot, sign_in_at

pytestmark = pytest.mark.browser

MANAGER = ("lucia@bicis.example.com", "lucia-password")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("knowledge")
    with serve_workspace(directory, "Rodada", "owner@bicis.example.com", MANAGER, first_name="Lucía") as served:
        yield served.url


def test_a_manager_adds_an_entry_and_tries_a_question(spanish_page: Page, base_url: str) -> None:
    page = spanish_page
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
    shot(page, "95-settings-knowledge.png")

    page.fill("#f-ask", "¿venden motos?")
    page.get_by_test_id("try-question").get_by_role("button", name="Preguntar").click()
    expect(page.get_by_test_id("tried-answer")).not_to_contain_text("Los pedidos llegan")
