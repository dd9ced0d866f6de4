"""Settings > General > Business hours in a real browser, in Spanish: an overlapping block is refused
with the message beside the weekday, what was typed stays, and the fixed hours are saved. SQLite
only, like the other browser tests."""

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.service import do_add_member, do_create_user
from tertulia.workspaces.hours import is_open
from tertulia.workspaces.service import current_hours
from tests.browser.conftest import require_chromium, sign_in_at, watch
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

MANAGER = ("lucia@horario.example.com", "lucia-password")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Database, int]]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("hours"))
    with database.transaction() as session:
        created = do_create_workspace_with_owner(
            session, "Panadería Sol", "owner@horario.example.com", "owner-password", timezone="Europe/Madrid"
        )
        manager = do_create_user(session, MANAGER[0], MANAGER[1], first_name="Lucía")
        do_add_member(session, created.workspace.id, manager.id, Role.MANAGER)
        workspace_id = created.workspace.id
    with serve_tertulia(database) as url:
        yield url, database, workspace_id
    database.dispose()


def _shot(page: Page, name: str) -> None:
    folder = os.environ.get("TERTULIA_SCREENSHOT_DIR")
    if folder:
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_a_manager_fixes_an_overlapping_block_and_saves(browser: Browser, served: tuple[str, Database, int]) -> None:
    base_url, database, workspace_id = served
    problems: list[str] = []
    context = browser.new_context(locale="es-ES")
    page = context.new_page()
    watch(page, problems)
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
    _shot(page, "90-settings-business-hours-error.png")

    page.get_by_test_id("hours-monday").fill("09:00-14:00, 16:00-19:00")
    page.get_by_role("button", name="Guardar horario").click()
    expect(page.locator(".flash").first).to_contain_text("Tus cambios se han guardado")
    expect(page.locator("#monday-error")).to_have_count(0)
    expect(page.get_by_test_id("hours-monday")).to_have_value("09:00-14:00, 16:00-19:00")
    expect(page.get_by_test_id("hours-holidays")).to_have_value("2026-12-25 Navidad")
    _shot(page, "91-settings-business-hours.png")

    page.get_by_role("link", name="Volver a General").click()
    page.select_option("#f-auto_close_minutes", "1440")
    page.get_by_role("button", name="Guardar cierre automático").click()
    expect(page.locator("#f-auto_close_minutes")).to_have_value("1440")
    _shot(page, "92-settings-general-auto-close.png")

    page.get_by_test_id("settings-away-message").click()
    page.get_by_test_id("away-enabled").check()
    page.get_by_test_id("away-text").fill('Hola {{contact.first_name | "cliente"}}, abrimos el lunes a las 9.')
    page.get_by_role("button", name="Guardar mensaje de fuera de horario").click()
    expect(page.locator(".flash").first).to_contain_text("Tus cambios se han guardado")
    expect(page.get_by_test_id("away-hours-off")).to_have_count(0)  # business hours are on now
    _shot(page, "93-settings-away-message.png")
    context.close()
    assert problems == []

    with database.transaction(write=False) as session:
        hours = current_hours(session, workspace_id)
        assert hours is not None
        assert is_open(hours, datetime(2026, 11, 30, 15, 30, tzinfo=UTC))  # Monday 16:30 in Madrid
        assert not is_open(hours, datetime(2026, 11, 30, 14, 30, tzinfo=UTC))  # Monday 15:30
