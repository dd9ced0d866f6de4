"""Two manager settings pages in a real browser, in Spanish: Settings > Data export (a mistake shown
beside the dates, then an export built in the background and downloaded as a zip of CSV files; the
report data rebuilt in the background) and
Settings > Assistant > Language model (turning it on without an endpoint is refused beside the
field, and nothing is saved). SQLite only, like the other browser tests."""

import io
import re
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import serve_workspace, shot, sign_in_at

pytestmark = pytest.mark.browser

MANAGER = ("lucia@export.example.com", "lucia-password")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("export")
    with serve_workspace(directory, "Papelería Sol", "owner@export.example.com", MANAGER, first_name="Lucía") as served:
        yield served.url


def test_a_manager_exports_the_workspace_data_and_downloads_it(spanish_page: Page, base_url: str) -> None:
    page = spanish_page
    sign_in_at(page, base_url, "/settings/data-export", *MANAGER)
    today = datetime.now(UTC).date()
    page.fill("#f-from", today.isoformat())
    page.fill("#f-to", (today - timedelta(days=3)).isoformat())  # the end before the start
    page.get_by_test_id("start-export").click()
    expect(page.locator("#f-from[aria-invalid=true], #f-to[aria-invalid=true]")).to_have_count(1)
    expect(page.locator(".field-error").first).to_be_visible()

    page.fill("#f-from", (today - timedelta(days=30)).isoformat())
    page.fill("#f-to", today.isoformat())
    for box in page.locator("input[name=files]").all():
        box.check()
    page.get_by_test_id("start-export").click()
    row = page.get_by_test_id("export-row").first
    expect(row).to_be_visible()
    for _ in range(60):  # the embedded queue builds it in the background; the page refreshes the row
        if row.get_attribute("data-status") == "done":
            break
        page.wait_for_timeout(250)
    expect(row).to_have_attribute("data-status", "done")
    expect(page.locator("#export-running")).to_have_count(0)  # the hint goes with the running export
    expect(row).to_contain_text("Contactos")  # the files by their names, not their keys
    shot(page, "99-settings-data-export.png")
    expect(page.locator(".flash")).to_be_hidden(timeout=10_000)  # the toast fades out after a few seconds
    with page.expect_download() as download:
        row.get_by_test_id("export-download").click()
    path = download.value.path()
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
        names = archive.namelist()
    assert any(name.startswith("contacts") and name.endswith(".csv") for name in names), names
    assert any(name.startswith("conversations") for name in names), names


def test_a_manager_rebuilds_the_report_data(spanish_page: Page, base_url: str) -> None:
    page = spanish_page
    sign_in_at(page, base_url, "/settings/data-export", *MANAGER)
    card = page.get_by_test_id("rebuild-reports")
    expect(card).to_contain_text("Datos de los informes")
    with page.expect_response(lambda r: r.request.method == "POST" and "/reports/rebuild" in r.url) as answer:
        card.get_by_test_id("rebuild-reports-button").click()
    assert answer.value.status == 303  # started: the deletes and the mark done, the batches queued
    # The embedded queue replays the workspace's events; the card stops polling once it is done.
    card = page.get_by_test_id("rebuild-reports")
    expect(card).not_to_have_attribute("data-status", "running", timeout=15_000)
    expect(card.get_by_test_id("rebuild-reports-button")).to_have_text("Reconstruir los datos de los informes")
    shot(card, "99-settings-rebuild-reports.png")


def test_turning_the_language_model_on_needs_an_endpoint(spanish_page: Page, base_url: str) -> None:
    page = spanish_page
    sign_in_at(page, base_url, "/settings/assistant-model", *MANAGER)
    page.get_by_test_id("model-enabled").check()
    page.get_by_test_id("model-form").get_by_role("button").first.click()
    expect(page.locator("#base_url-error")).to_have_text(
        "Escribe la URL base del endpoint, como https://api.openai.com/v1."
    )
    expect(page.locator("#f-base_url")).to_have_attribute("aria-invalid", "true")
    page.fill("#f-base_url", "http://127.0.0.1:9/v1")
    page.fill("#f-model", "llama3.1")
    page.get_by_test_id("model-form").get_by_role("button").first.click()
    expect(page.locator("#base_url-error")).to_have_count(0)
    page.reload()
    expect(page.locator("#f-model")).to_have_value("llama3.1")
    expect(page).to_have_url(re.compile(r"/settings/assistant-model"))
    shot(page, "99-settings-assistant-model.png")
