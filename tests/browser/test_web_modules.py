"""Settings, segments and import/export in a real browser (Chromium + uvicorn, SQLite only)."""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import FilePayload, Page, expect

from tertulia.contacts.models import FieldType
from tertulia.contacts.service import do_add_tags, do_create_contact, do_create_custom_field
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.permissions import Actor
from tests.browser.conftest import require_chromium, sign_in_at
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

OWNER = ("owner@modules.example.com", "owner-password")


@dataclass
class Server:
    url: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("modules"))
    with database.transaction() as session:
        created = do_create_workspace_with_owner(session, "Modules Co", OWNER[0], OWNER[1], default_country="MX")
        actor = Actor(workspace_id=created.workspace.id, kind="system")
        do_create_custom_field(session, actor, "tier", "Tier", FieldType.LIST, ["Free", "Pro"])
        people = [("Ana", "Pro", True), ("Beto", "Pro", False), ("Caro", "Free", True), ("Dani", None, True)]
        for name, tier, vip in people:
            values = {"first_name": name, "email": f"{name.lower()}@example.com"}
            contact = do_create_contact(session, actor, {**values, "custom_fields": {"tier": tier}})
            if vip:
                do_add_tags(session, actor, contact, ["vip"])
    with serve_tertulia(database) as url:
        yield Server(url)
    database.dispose()


def sign_in(page: Page, server: Server) -> None:
    sign_in_at(page, server.url, "/contacts", *OWNER)


def test_custom_field_then_a_segment_with_two_groups(page: Page, server: Server) -> None:
    sign_in(page, server)
    page.click("nav a[href='/settings']")
    page.click("[data-testid=settings-fields]")
    page.fill("#f-label", "Birthday")
    page.fill("#f-key", "birthday date")
    page.select_option("#f-type", "date")
    expect(page.locator("#f-options")).to_be_hidden()
    page.click("[data-testid=create-field]")
    expect(page.locator("#key-error")).to_be_visible()
    expect(page.locator("#f-label")).to_have_value("Birthday")
    page.fill("#f-key", "birthday")
    page.click("[data-testid=create-field]")
    expect(page.locator("[data-testid=field-row]")).to_have_count(2)
    expect(page.locator(".flash")).to_contain_text("saved")

    page.goto(f"{server.url}/contacts")
    page.click("[data-testid=add-segment]")
    panel = page.locator("[data-testid=filter-panel]")
    expect(panel.locator("[data-testid=filter-count]")).to_have_attribute("data-count", "4")
    # Each picker re-renders the panel; wait for the operators that only the new field type has.
    page.click("[data-testid=add-group]")
    first = panel.locator("[data-testid=filter-group]").nth(0).locator("[data-testid=condition]")
    first.locator("[data-testid=category]").select_option("field:tier")
    expect(first.locator("[data-testid=operator] option[value=is_any_of]")).to_have_count(1)
    first.locator("[data-testid=operator]").select_option("is")
    first.locator("[data-testid=value] select").select_option("Pro")
    expect(panel.locator("[data-testid=filter-count]")).to_have_attribute("data-count", "2")
    page.click("[data-testid=add-group]")
    second = panel.locator("[data-testid=filter-group]").nth(1).locator("[data-testid=condition]")
    second.locator("[data-testid=category]").select_option("tag")
    expect(second.locator("[data-testid=operator] option[value=has_any_of]")).to_have_count(1)
    second.locator("[data-testid=operator]").select_option("has_any_of")
    second.locator("[data-testid=value] select").select_option(["vip"])
    expect(panel.locator("[data-testid=filter-count]")).to_have_attribute("data-count", "1")

    panel.locator("[data-testid=segment-name]").fill("Pro VIPs")
    panel.locator("[data-testid=save-new]").click()
    page.wait_for_url(re.compile(r"/contacts/segments/\d+$"))
    expect(page.locator(".topbar h1")).to_have_text("Pro VIPs")
    expect(page.locator("#contact-rows tr[data-row]")).to_have_count(1)
    expect(page.locator(".segment-link.active .segment-count")).to_have_text("1")
    expect(page.locator(".segment-item .filter-badge")).to_have_text("2")

    page.click("[data-testid=segment-menu]")
    page.click("[data-testid=rename-segment]")
    page.fill("#f-name", "Best customers")
    page.click("[data-testid=save-name]")
    expect(page.locator(".topbar h1")).to_have_text("Best customers")

    page.click("[data-testid=open-filter]")
    panel = page.locator("[data-testid=filter-panel]")
    expect(panel.locator("[data-testid=filter-group]")).to_have_count(2)
    panel.locator("[data-testid=segment-name]").fill("Best customers copy")
    panel.locator("[data-testid=save-new]").click()
    expect(page.locator(".topbar h1")).to_have_text("Best customers copy")
    expect(page.locator("[data-testid=segment-link]", has_text="Best customers")).to_have_count(2)

    page.click("[data-testid=segment-menu]")
    page.click("[data-testid=delete-segment]")
    expect(page.locator("form.danger-card")).to_contain_text("permanently")
    page.click("[data-testid=confirm-delete]")
    page.wait_for_url(re.compile(r"/contacts$"))
    expect(page.locator("[data-testid=segment-link]", has_text="Best customers")).to_have_count(1)


def test_import_with_a_bad_row_then_export(page: Page, server: Server) -> None:
    sign_in(page, server)
    page.click("[data-testid=import]")
    body = "Name,E-mail,Tier\nEva,eva@example.com,Pro\nBad,nope,Free\nFito,fito@example.com,Gold\n"
    page.set_input_files("#f-file", files=[FilePayload(name="people.csv", mimeType="text/csv", buffer=body.encode())])
    page.click("[data-testid=upload]")
    page.wait_for_url(re.compile(r"/contacts/import/\d+$"))
    expect(page.locator("[data-testid=map-1]")).to_have_value("email")
    expect(page.locator("[data-testid=map-2]")).to_have_value("custom:tier")
    page.click("[data-testid=start-import]")
    expect(page.locator("[data-testid=import-progress]")).to_have_attribute("data-status", "done", timeout=20_000)
    expect(page.locator("[data-testid=created-count]")).to_have_text("1")
    expect(page.locator("[data-testid=rejected-count]")).to_have_text("2")
    with page.expect_download() as rejected:
        page.click("[data-testid=download-rejected]")
    text = Path(rejected.value.path()).read_text(encoding="utf-8")
    assert text.splitlines()[0] == "Name,E-mail,Tier,error"
    assert "Bad,nope,Free" in text
    assert "Fito" in text

    page.goto(f"{server.url}/contacts")
    with page.expect_download() as exported:
        page.click("[data-testid=export]")
    content = Path(exported.value.path()).read_text(encoding="utf-8-sig")
    assert "eva@example.com" in content
    assert "ana@example.com" in content
