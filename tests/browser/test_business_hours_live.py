"""Settings > General > Business hours in a real browser, in Spanish: an overlapping block is refused
with the message beside the weekday, what was typed stays, and the fixed hours are saved. SQLite
only, like the other browser tests."""

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect

from tertulia.workspaces.hours import is_open
from tertulia.workspaces.service import current_hours
from tests.browser.conftest import Served, serve_workspace, shot, sign_in_at

pytestmark = pytest.mark.browser

MANAGER = ("lucia@horario.example.com", "lucia-password")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("hours")
    owner = "owner@horario.example.com"
    with serve_workspace(
        directory, "Panadería Sol", owner, MANAGER, first_name="Lucía", timezone="Europe/Madrid"
    ) as workspace:
        yield workspace


def test_a_manager_fixes_an_overlapping_block_and_saves(spanish_page: Page, served: Served) -> None:
    page, base_url, database = spanish_page, served.url, served.database
    sign_in_at(page, base_url, "/settings/general", *MANAGER)
    page.get_by_test_id("business-hours-link").click()
    page.wait_for_url(f"{base_url}/settings/general/business-hours")
    expect(page.get_by_test_id("settings-general")).to_have_attribute("aria-current", "page")

    page.get_by_test_id("hours-enabled").check()
    page.select_option("#f-timezone", "Europe/Madrid")
    page.get_by_test_id("hours-monday").fill("09:00-14:00, 13:30-18:00")
    page.get_by_test_id("hours-tuesday").fill("09:00-14:00")
    page.get_by_test_id("hours-holidays").fill("2026-12-25 Navidad")
    page.get_by_role("button", name="Guardar horario").click()
    expect(page.locator("#monday-error")).to_have_text("13:30-18:00: se solapa con otro bloque del mismo día")
    expect(page.get_by_test_id("hours-monday")).to_have_value("09:00-14:00, 13:30-18:00")
    expect(page.locator("#tuesday-error")).to_have_count(0)
    shot(page, "90-settings-business-hours-error.png")

    page.get_by_test_id("hours-monday").fill("09:00-14:00, 16:00-19:00")
    page.get_by_role("button", name="Guardar horario").click()
    expect(page.locator(".flash").first).to_contain_text("Tus cambios se han guardado")
    expect(page.locator("#monday-error")).to_have_count(0)
    expect(page.get_by_test_id("hours-monday")).to_have_value("09:00-14:00, 16:00-19:00")
    expect(page.get_by_test_id("hours-holidays")).to_have_value("2026-12-25 Navidad")
    shot(page, "91-settings-business-hours.png")

    page.get_by_role("link", name="Volver a General").click()
    page.select_option("#f-auto_close_minutes", "1440")
    page.get_by_role("button", name="Guardar cierre automático").click()
    expect(page.locator("#f-auto_close_minutes")).to_have_value("1440")
    shot(page, "92-settings-general-auto-close.png")

    page.get_by_test_id("settings-away-message").click()
    page.get_by_test_id("away-enabled").check()
    page.get_by_test_id("away-text").fill('Hola {{contact.first_name | "cliente"}}, abrimos el lunes a las 9.')
    page.get_by_role("button", name="Guardar mensaje de fuera de horario").click()
    expect(page.locator(".flash").first).to_contain_text("Tus cambios se han guardado")
    expect(page.get_by_test_id("away-hours-off")).to_have_count(0)  # business hours are on now
    shot(page, "93-settings-away-message.png")

    with database.transaction(write=False) as session:
        hours = current_hours(session, served.workspace_id)
        assert hours is not None
        assert is_open(hours, datetime(2026, 11, 30, 15, 30, tzinfo=UTC))  # Monday 16:30 in Madrid
        assert not is_open(hours, datetime(2026, 11, 30, 14, 30, tzinfo=UTC))  # Monday 15:30
